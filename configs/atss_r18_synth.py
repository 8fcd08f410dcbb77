"""ATSS on the embedded synthetic dataset (same budget as ``fcos_r18_synth.py``).

Small ResNet-18-style FPN (random init), 2-conv 64-channel head, images of 176-208 px,
batch 8; budget, optimiser and schedule imported from ``fcos_r18_synth.py`` so the
embedded-dataset rows of the methods compare.

Anchors: ``anchor_scale = 4`` (sides 32, 64, 128, 256, 512 on P3-P7) instead of COCO's 8.
The images are about a third of COCO's size (objects from ~6 px to almost the image), so
8·stride anchors (64 … 1024 px) would make P6/P7 anchors larger than every image; halving
them mirrors ``fcos_r18_synth.py``, which halves the FCOS size ranges (P3 objects ≤ 32 px ↔
P3 anchors of 32 px). ATSS's adaptive threshold makes the assignment fairly insensitive to
this choice (ATSS paper, anchor-scale ablation); set ``model.prior_generator.anchor_scale=8``
to keep the COCO anchors.
"""
from .common.data.synthetic import dataloader
from .common.models.atss import model
from .common.models.small_backbone import FPN_CHANNELS, small_fpn

SYNTH_ANCHOR_SCALE = 4

model.backbone = small_fpn
model.num_classes = 6
model.head.in_channels = FPN_CHANNELS
model.head.channels = 64
model.head.num_convs = 2
model.prior_generator.anchor_scale = SYNTH_ANCHOR_SCALE
model.pixel_std = [57.375, 57.120, 58.395]  # random init: normalise inputs fully

# Budget, optimiser and schedule exactly as configs/fcos_r18_synth.py.
from .fcos_r18_synth import lr_multiplier, optimizer, train  # noqa: E402,F401
