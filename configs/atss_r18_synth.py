"""ATSS on the embedded synthetic dataset (same budget as ``fcos_r18_synth.py``).

The COCO ATSS model made small by ``to_embedded_small`` (small ResNet-18-style FPN from
random init, 2-conv 64-channel head, 6 classes), images of 176-208 px, batch 8; budget,
optimiser and schedule imported from ``fcos_r18_synth.py`` so the embedded-dataset rows of
the methods compare.

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
from .common.models.embedded import to_embedded_small

to_embedded_small(model)

# Budget, optimiser and schedule exactly as configs/fcos_r18_synth.py.
from .fcos_r18_synth import lr_multiplier, optimizer, train  # noqa: E402,F401
