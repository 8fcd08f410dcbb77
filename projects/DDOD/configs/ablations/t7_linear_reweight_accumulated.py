"""DDOD paper Table 7: Linear-Reweight* (cumulative counts since the start of training). Paper AP 39.8.

``t4_supervision.py`` (supervision disentanglement only) with another level weighting. The
weights do not depend on the counts, so the batch and accumulated rows train the same
model.
"""
from .t4_supervision import dataloader, lr_multiplier, model, optimizer, train  # noqa: F401

model.loss.level_weighting.method = "linear_reweight"
model.loss.level_weighting.accumulate = True
