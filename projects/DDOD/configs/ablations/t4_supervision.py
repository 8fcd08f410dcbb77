"""DDOD paper Table 4 row 4: + pyramid supervision disentanglement (cumulative linear-interpolated level
weights). Paper AP 40.0.

COCO val2017, R-50 1x, on ATSS; ``ddod_R_50_FPN_1x.py`` with only the three switches below.
"""
from ..common.ddod import atss_assigner, level_weighting
from ..ddod_R_50_FPN_1x import dataloader, lr_multiplier, model, optimizer, train  # noqa: F401

model.assigner = atss_assigner()  # assignment: off (IoU-based ATSS)
model.head.deformable_convs = []  # spatial: off
model.loss.level_weighting = level_weighting("linear_interpolate", accumulate=True)  # supervision: on
