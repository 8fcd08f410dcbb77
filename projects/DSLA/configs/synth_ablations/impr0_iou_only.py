"""DSLA paper Table 1, Impr 0 with the IoU instead of the centerness as the target (label_d =
IoU), on the embedded synthetic dataset (paper: 35.2 AP on COCO, R-50 1x).

``fcos_dsla_r18_synth.py`` with core zone off, interval relaxation off, IoU coupling
cls_target='iou'.
"""
from ..fcos_dsla_r18_synth import dataloader, lr_multiplier, model, optimizer, train

model.assigner.core_zone = False
model.assigner.relaxation = False
model.quality.cls_target = "iou"
