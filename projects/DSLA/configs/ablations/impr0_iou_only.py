"""DSLA paper Table 1, Impr 0 with the IoU instead of the centerness as the target (label_d =
IoU). Paper AP 35.2 (COCO val, R-50 1x).

``fcos_dsla_R_50_FPN_1x.py`` with core zone off, interval relaxation off, IoU coupling
cls_target='iou'.
"""
from ..fcos_dsla_R_50_FPN_1x import dataloader, lr_multiplier, model, optimizer, train

model.assigner.core_zone = False
model.assigner.relaxation = False
model.quality.cls_target = "iou"
