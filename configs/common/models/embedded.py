"""``to_embedded_small(model)``: a COCO detector node sized for the embedded synthetic dataset
and 2 CPU cores — what every ``*_r18_synth.py`` config shares.

For every detector: the small ResNet-18-style FPN of ``small_backbone.py`` (random init,
64 channels on P3-P7), 6 classes, towers of 2 convs × 64 channels, and inputs normalised by
the ImageNet pixel std (random init: nothing to match). The images are about a third of
COCO's size (objects from ~6 px to most of the image), so each detector's scale-dependent
parts are halved, as each needs:

* FCOS (and what derives from it): size ranges (0,32), (32,64), (64,128), (128,256),
  (256, ∞) — COCO's halved, the last level still open;
* ATSS: anchors 4·stride (sides 32 … 512) instead of 8·stride: 8·stride anchors
  (64 … 1024 px) would make P6/P7 anchors larger than every image; 4·stride mirrors the
  halved FCOS ranges (P3 objects ≤ 32 px ↔ P3 anchors of 32 px);
* FoveaBox: scale ranges and base edges halved together — ranges (0.5,32), (16,64),
  (32,128), (64,256), (128,1024), edges 8..128 — which keeps η = 2 and every range at the
  same multiple of its level's base edge, so the log(d/z_l) targets keep COCO's
  distribution. The strides stay 8..128 (the backbone's).

Two regimes for the backbone (issue 19). The configs train it **from scratch** (BatchNorm,
nothing frozen), the regime of the first embedded comparison (``synth600``). The
**pre-trained** regime is the papers' (every one of them fine-tunes ImageNet weights):
:func:`use_pretrained_backbone` (or the overrides :data:`PRETRAINED_OVERRIDES` on the
command line) starts from the backbone pre-trained on the synthetic shape classification
set (``dsla_d2://pretrained/synth_r18_shapes10.pth``, ``tools/pretrain_backbone.py``) and
freezes as the COCO recipes do: stem and res2 frozen (``freeze_at=2``), ``FrozenBN``
everywhere.
"""
from dsla_d2.meta_arch import DslaATSS, DslaFCOS, DslaFoveaBox

from dsla_d2.pretrained import EMBEDDED_BACKBONE

from .foveabox import BASE_EDGES, SCALE_RANGES
from .small_backbone import FPN_CHANNELS, small_fpn

PIXEL_STD = [57.375, 57.120, 58.395]  # ImageNet std (BGR): random init normalises fully
FCOS_SIZE_RANGES = [[0, 32], [32, 64], [64, 128], [128, 256], [256, 1e8]]
ATSS_ANCHOR_SCALE = 4
FOVEA_SCALE = 0.5
FOVEA_SCALE_RANGES = [[lo * FOVEA_SCALE, hi * FOVEA_SCALE] for lo, hi in SCALE_RANGES]
FOVEA_BASE_EDGES = [z * FOVEA_SCALE for z in BASE_EDGES]
#: The pre-trained regime as command-line overrides of any embedded config (what
#: :func:`use_pretrained_backbone` sets); the campaign ``synth_pt`` passes them to every run.
PRETRAINED_OVERRIDES = [
    f"train.init_checkpoint={EMBEDDED_BACKBONE}",
    "model.backbone.bottom_up.freeze_at=2",
    "model.backbone.bottom_up.stem.norm=FrozenBN",
    "model.backbone.bottom_up.stages.norm=FrozenBN",
]


def to_embedded_small(model):
    """Edit a COCO FCOS / ATSS / FoveaBox ``model`` node (``configs/common/models/``) in
    place for the embedded dataset, as the module docstring lists; returns it."""
    target = model._target_
    if target not in (DslaFCOS, DslaATSS, DslaFoveaBox):
        raise ValueError(f"to_embedded_small: no embedded-dataset sizes for {target!r}; expected DslaFCOS, DslaATSS or DslaFoveaBox")
    model.backbone = small_fpn
    model.num_classes = 6
    model.head.in_channels = FPN_CHANNELS
    model.head.channels = 64
    model.head.num_convs = 2
    model.pixel_std = PIXEL_STD
    if target is DslaFCOS:
        model.assigner.size_ranges = FCOS_SIZE_RANGES
    elif target is DslaATSS:
        model.prior_generator.anchor_scale = ATSS_ANCHOR_SCALE
    else:
        model.assigner.scale_ranges = FOVEA_SCALE_RANGES
        model.box_coder.base_edges = FOVEA_BASE_EDGES
    return model


def use_pretrained_backbone(model, train):
    """The pre-trained regime (module docstring) for an embedded ``model`` and its ``train``
    node, in place: the shipped pre-trained backbone, stem + res2 frozen, FrozenBN."""
    bottom_up = model.backbone.bottom_up
    bottom_up.freeze_at = 2
    bottom_up.stem.norm = "FrozenBN"
    bottom_up.stages.norm = "FrozenBN"
    train.init_checkpoint = EMBEDDED_BACKBONE
    return model
