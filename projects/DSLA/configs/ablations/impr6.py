"""DSLA paper Table 1, Impr 6: interval relaxation + IoU coupling. Paper AP 37.6 (COCO val,
R-50 1x).

``fcos_dsla_R_50_FPN_1x.py`` with core zone off, interval relaxation on, IoU coupling
cls_target='iou_product'.
"""
from ..fcos_dsla_R_50_FPN_1x import dataloader, lr_multiplier, model, optimizer, train

model.assigner.core_zone = False
model.assigner.relaxation = True
model.quality.cls_target = "iou_product"
