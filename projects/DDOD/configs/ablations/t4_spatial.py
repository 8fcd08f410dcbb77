"""DDOD paper Table 4 row 3: + spatial feature disentanglement (DCNv1 first tower conv). Paper AP 40.6.

COCO val2017, R-50 1x, on ATSS; ``ddod_R_50_FPN_1x.py`` with only the three switches below.
"""
from ..common.ddod import atss_assigner, DCN_FIRST
from ..ddod_R_50_FPN_1x import dataloader, lr_multiplier, model, optimizer, train  # noqa: F401

model.assigner = atss_assigner()  # assignment: off (IoU-based ATSS)
model.head.deformable_convs = DCN_FIRST  # spatial: on
model.loss.level_weighting = None  # supervision: off
