"""DSLA paper Table 2, κ = 0.2. Paper AP 38.1 (COCO val, R-50 1x).

``fcos_dsla_R_50_FPN_1x.py`` with core zone on, interval relaxation on (κ = 0.2), IoU
coupling cls_target='iou_product'.
"""
from ..fcos_dsla_R_50_FPN_1x import dataloader, lr_multiplier, model, optimizer, train

model.assigner.core_zone = True
model.assigner.relaxation = True
model.assigner.kappa = 0.2
model.quality.cls_target = "iou_product"
