"""DDOD paper Table 6 (DCN position in both towers): no deformable conv
(= ``t4_baseline.py``), not a row of the paper's table.

``t4_spatial.py`` (spatial disentanglement only) with the deformable conv moved.
"""
from .t4_spatial import dataloader, lr_multiplier, model, optimizer, train  # noqa: F401

model.head.deformable_convs = []
