"""DSLA paper Table 1, Impr 2: interval relaxation, on the embedded synthetic dataset (paper:
37.1 AP on COCO, R-50 1x).

``fcos_dsla_r18_synth.py`` with core zone off, interval relaxation on, IoU coupling
cls_target='static'.
"""
from ..fcos_dsla_r18_synth import dataloader, lr_multiplier, model, optimizer, train

model.assigner.core_zone = False
model.assigner.relaxation = True
model.quality.cls_target = "static"
