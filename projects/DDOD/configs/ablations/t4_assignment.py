"""DDOD paper Table 4 row 2: + assignment disentanglement (cost assigner α_cls 0.8 / α_reg 0.5). Paper
AP 40.4.

COCO val2017, R-50 1x, on ATSS; ``ddod_R_50_FPN_1x.py`` with only the three switches below.
"""
from ..common.ddod import cost_assigner
from ..ddod_R_50_FPN_1x import dataloader, lr_multiplier, model, optimizer, train  # noqa: F401

model.assigner = cost_assigner(cls_alpha=0.8, reg_alpha=0.5)  # assignment: on
model.head.deformable_convs = []  # spatial: off
model.loss.level_weighting = None  # supervision: off
