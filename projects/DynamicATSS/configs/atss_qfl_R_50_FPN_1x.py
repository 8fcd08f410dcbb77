"""Dynamic ATSS paper, Table 1 "ATSS+QFL": ATSS assignment (anchor IoUs only), soft target
y = PIoU with QFL, centerness branch: 39.61 AP (COCO val2017, R-50, 1x).
"""
from ....configs.atss_R_50_FPN_1x import dataloader, lr_multiplier, model, optimizer, train  # noqa: F401

model.quality.cls_target = "iou"
model.loss.cls_loss = "qfl"
model.loss.qfl_beta = 2.0
