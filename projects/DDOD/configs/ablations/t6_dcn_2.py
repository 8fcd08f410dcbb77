"""DDOD paper Table 6 (DCN position in both towers): position 2. Paper AP 40.3.

``t4_spatial.py`` (spatial disentanglement only) with the deformable conv moved.
"""
from .t4_spatial import dataloader, lr_multiplier, model, optimizer, train  # noqa: F401

model.head.deformable_convs = [1]
