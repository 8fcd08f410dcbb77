"""DDOD paper Table 7: Linear-Interpolate* (cumulative counts since the start of training). Paper AP 40.0.

``t4_supervision.py`` (supervision disentanglement only) with another level weighting.
"""
from .t4_supervision import dataloader, lr_multiplier, model, optimizer, train  # noqa: F401

model.loss.level_weighting.method = "linear_interpolate"
model.loss.level_weighting.accumulate = True
