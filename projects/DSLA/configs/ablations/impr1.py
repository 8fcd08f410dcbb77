"""DSLA paper Table 1, Impr 1: core zone. Paper AP 37.2 (COCO val, R-50 1x).

``fcos_dsla_R_50_FPN_1x.py`` with core zone on, interval relaxation off, IoU coupling
cls_target='static'.
"""
from ..fcos_dsla_R_50_FPN_1x import dataloader, lr_multiplier, model, optimizer, train

model.assigner.core_zone = True
model.assigner.relaxation = False
model.quality.cls_target = "static"
