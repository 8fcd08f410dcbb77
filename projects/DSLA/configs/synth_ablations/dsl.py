"""DSLA paper Table 1, DSL(A): core zone + interval relaxation + IoU coupling, on the embedded
synthetic dataset (paper: 38.1 AP on COCO, R-50 1x).

``fcos_dsla_r18_synth.py`` with core zone on, interval relaxation on, IoU coupling
cls_target='iou_product'.
"""
from ..fcos_dsla_r18_synth import dataloader, lr_multiplier, model, optimizer, train

model.assigner.core_zone = True
model.assigner.relaxation = True
model.quality.cls_target = "iou_product"
