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
"""
from dsla_d2.meta_arch import DslaATSS, DslaFCOS, DslaFoveaBox

from .foveabox import BASE_EDGES, SCALE_RANGES
from .small_backbone import FPN_CHANNELS, small_fpn

PIXEL_STD = [57.375, 57.120, 58.395]  # ImageNet std (BGR): random init normalises fully
FCOS_SIZE_RANGES = [[0, 32], [32, 64], [64, 128], [128, 256], [256, 1e8]]
ATSS_ANCHOR_SCALE = 4
FOVEA_SCALE = 0.5
FOVEA_SCALE_RANGES = [[lo * FOVEA_SCALE, hi * FOVEA_SCALE] for lo, hi in SCALE_RANGES]
FOVEA_BASE_EDGES = [z * FOVEA_SCALE for z in BASE_EDGES]


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
