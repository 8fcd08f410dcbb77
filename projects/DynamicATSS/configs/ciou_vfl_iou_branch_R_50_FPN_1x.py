"""Dynamic ATSS paper, Table 2 row 7: CIoUs + VFL + IoU branch: 40.15 AP (COCO val2017,
R-50, 1x). See ``ciou_qfl_iou_branch_R_50_FPN_1x.py`` for the IoU branch.
"""
from .ciou_vfl_R_50_FPN_1x import dataloader, lr_multiplier, model, optimizer, train  # noqa: F401

model.quality.branch = "iou"
