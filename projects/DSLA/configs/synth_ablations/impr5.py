"""DSLA paper Table 1, Impr 5: core zone + IoU coupling, on the embedded synthetic dataset
(paper: 37.9 AP on COCO, R-50 1x).

``fcos_dsla_r18_synth.py`` with core zone on, interval relaxation off, IoU coupling
cls_target='iou_product'.
"""
from ..fcos_dsla_r18_synth import dataloader, lr_multiplier, model, optimizer, train

model.assigner.core_zone = True
model.assigner.relaxation = False
model.quality.cls_target = "iou_product"
