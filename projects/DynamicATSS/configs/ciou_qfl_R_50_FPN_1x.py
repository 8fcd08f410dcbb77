"""Dynamic ATSS paper, Table 2 row 4: CIoUs + QFL (soft target y = PIoU, β = 2) +
centerness branch: 40.07 AP (COCO val2017, R-50, 1x).
"""
from .ciou_R_50_FPN_1x import dataloader, lr_multiplier, model, optimizer, train  # noqa: F401

model.quality.cls_target = "iou"  # y = IoU(detached predicted box, assigned gt)
model.loss.cls_loss = "qfl"
model.loss.qfl_beta = 2.0
