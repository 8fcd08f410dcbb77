"""DSLA paper Table 1, Impr 5: core zone + IoU coupling. Paper AP 37.9 (COCO val, R-50 1x).

``fcos_dsla_R_50_FPN_1x.py`` with core zone on, interval relaxation off, IoU coupling
cls_target='iou_product'.
"""
from ..fcos_dsla_R_50_FPN_1x import dataloader, lr_multiplier, model, optimizer, train

model.assigner.core_zone = True
model.assigner.relaxation = False
model.quality.cls_target = "iou_product"
