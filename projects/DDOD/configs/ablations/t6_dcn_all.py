"""DDOD paper Table 6 (DCN position in both towers): all four tower convs deformable, not a row of the paper's table.

``t4_spatial.py`` (spatial disentanglement only) with the deformable conv moved.
"""
from .t4_spatial import dataloader, lr_multiplier, model, optimizer, train  # noqa: F401

model.head.deformable_convs = [0, 1, 2, 3]
