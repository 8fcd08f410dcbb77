"""DSLA paper Table 2, κ = 0.2, on the embedded synthetic dataset (paper: 38.1 AP on COCO, R-50
1x).

``fcos_dsla_r18_synth.py`` with core zone on, interval relaxation on (κ = 0.2), IoU coupling
cls_target='iou_product'.
"""
from ..fcos_dsla_r18_synth import dataloader, lr_multiplier, model, optimizer, train

model.assigner.core_zone = True
model.assigner.relaxation = True
model.assigner.kappa = 0.2
model.quality.cls_target = "iou_product"
