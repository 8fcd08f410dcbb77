"""Dynamic ATSS, the paper's full method: CIoUs + QFL + IoU branch (Table 2 row 6):
40.30 AP on COCO val2017 (R-50, 1x); 40.3 AP on test-dev (Table 5, "Dynamic ATSS R-50 1x").

The IoU branch replaces centerness: the head's 1-channel quality output on the reg tower
predicts the IoU of its own (detached) box with the assigned gt (BCE on the positives);
inference score = sigmoid(cls)·sigmoid(iou). The box loss keeps ATSS's centerness
weighting (the assigner's regression weights), which the paper does not say it changed.
"""
from .ciou_qfl_R_50_FPN_1x import dataloader, lr_multiplier, model, optimizer, train  # noqa: F401

model.quality.branch = "iou"
