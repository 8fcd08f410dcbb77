"""DDOD paper Table 7: Sum-Reweight (the counts of each batch). Paper AP 39.7.

``t4_supervision.py`` (supervision disentanglement only) with another level weighting.
"""
from .t4_supervision import dataloader, lr_multiplier, model, optimizer, train  # noqa: F401

model.loss.level_weighting.method = "sum_reweight"
model.loss.level_weighting.accumulate = False
