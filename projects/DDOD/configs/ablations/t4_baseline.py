"""DDOD paper Table 4 row 1: ATSS baseline (no disentanglement) — the authors' ATSS with the IoU branch.
Paper AP 39.4.

COCO val2017, R-50 1x, on ATSS; ``ddod_R_50_FPN_1x.py`` with only the three switches below.
"""
from ..common.ddod import atss_assigner
from ..ddod_R_50_FPN_1x import dataloader, lr_multiplier, model, optimizer, train  # noqa: F401

model.assigner = atss_assigner()  # assignment: off (IoU-based ATSS)
model.head.deformable_convs = []  # spatial: off
model.loss.level_weighting = None  # supervision: off
