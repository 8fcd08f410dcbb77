"""Dynamic ATSS paper, Table 3 row 6: combined IoUs with weights PIoUs D_up : AIoUs 1
(hard targets, centerness branch): 39.22 AP (COCO val2017, R-50, 1x; 1 : 1 gives 39.75).

CIoU = w_a·AIoU + w_p·PIoU; threshold = w_a·(mean + std)(AIoU) + w_p·(mean + std)(PIoU).

D_up = iter/max_iter and D_down = 1 − iter/max_iter: the trainer hands the assigner its
progress (iteration, train.max_iter) at every step (``TrainingProgressHook``).
"""
from .ciou_R_50_FPN_1x import dataloader, lr_multiplier, model, optimizer, train  # noqa: F401

model.assigner.pred_iou_weight = "up"  # w_p
model.assigner.anchor_iou_weight = 1.0  # w_a
