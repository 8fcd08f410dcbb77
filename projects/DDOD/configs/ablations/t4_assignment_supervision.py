"""DDOD paper Table 4, a pair the paper does not report: assignment + supervision disentanglement.

COCO val2017, R-50 1x, on ATSS; ``ddod_R_50_FPN_1x.py`` with only the three switches below.
"""
from ..common.ddod import cost_assigner, level_weighting
from ..ddod_R_50_FPN_1x import dataloader, lr_multiplier, model, optimizer, train  # noqa: F401

model.assigner = cost_assigner(cls_alpha=0.8, reg_alpha=0.5)  # assignment: on
model.head.deformable_convs = []  # spatial: off
model.loss.level_weighting = level_weighting("linear_interpolate", accumulate=True)  # supervision: on
