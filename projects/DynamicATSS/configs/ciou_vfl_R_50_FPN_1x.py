"""Dynamic ATSS paper, Table 2 row 5: CIoUs + VFL (y = PIoU; α 0.75, γ 2) + centerness
branch: 39.83 AP (COCO val2017, R-50, 1x).
"""
from .ciou_R_50_FPN_1x import dataloader, lr_multiplier, model, optimizer, train  # noqa: F401

model.quality.cls_target = "iou"  # y = IoU(detached predicted box, assigned gt)
model.loss.cls_loss = "vfl"
model.loss.vfl_alpha = 0.75
model.loss.vfl_gamma = 2.0
