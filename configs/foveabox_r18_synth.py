"""FoveaBox on the embedded synthetic dataset (same backbone, budget and schedule as
``configs/fcos_r18_synth.py``, so the embedded-dataset rows of the methods compare).

Small ResNet-18-style FPN (random init), 2-conv 64-channel head, images of 176-208 px,
batch 8, the budget of fcos_r18_synth.py. The images are about a third of COCO's size; like the FCOS
synth config (which halves FCOS's size ranges) we **halve FoveaBox's scale ranges and its
base edges together**: ranges ((0.5,32), (16,64), (32,128), (64,256), (128,1024)), base
edges (8, 16, 32, 64, 128). Scaling both by the same factor keeps η = 2, keeps every
range at the same multiple of its level's base edge, and so gives the assigned points the
same distribution of log(d/z_l) targets as on COCO; the strides stay 8..128 (the feature
maps are the backbone's).
"""
from .common.data.synthetic import dataloader
from .common.models.foveabox import BASE_EDGES, SCALE_RANGES, model
from .common.models.small_backbone import FPN_CHANNELS
from .common.models.small_backbone import small_fpn as _small_fpn

SYNTH_SCALE = 0.5
SYNTH_SCALE_RANGES = [[lo * SYNTH_SCALE, hi * SYNTH_SCALE] for lo, hi in SCALE_RANGES]
SYNTH_BASE_EDGES = [z * SYNTH_SCALE for z in BASE_EDGES]

model.backbone = _small_fpn
model.num_classes = 6
model.head.in_channels = FPN_CHANNELS
model.head.channels = 64
model.head.num_convs = 2
model.assigner.scale_ranges = SYNTH_SCALE_RANGES
model.box_coder.base_edges = SYNTH_BASE_EDGES
model.pixel_std = [57.375, 57.120, 58.395]  # random init: normalise inputs fully

# Budget, optimiser and schedule exactly as configs/fcos_r18_synth.py.
from .fcos_r18_synth import lr_multiplier, optimizer, train  # noqa: E402,F811
