"""FCOS-DW + box refinement on the embedded synthetic dataset: ``fcos_dw_r18_synth.py`` with
``model.head.box_refinement = True`` (same data, backbone, optimiser and budget as
``configs/fcos_r18_synth.py``)."""
from .fcos_dw_r18_synth import dataloader, lr_multiplier, model, optimizer, train  # noqa: F401

model.head.box_refinement = True
