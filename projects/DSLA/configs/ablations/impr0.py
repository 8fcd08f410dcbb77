"""DSLA paper Table 1, Impr 0: the centerness merged into the classification target (QFL), no
improvement. Paper AP 36.9 (COCO val, R-50 1x).

``fcos_dsla_R_50_FPN_1x.py`` with core zone off, interval relaxation off, IoU coupling
cls_target='static'. Everything else (no quality branch, QFL weight 2 / Σ label_d, label_s-
weighted −log IoU, offset 0, highest-label ambiguity rule) is the DSLA recipe, as in the
authors' code.
"""
from ..fcos_dsla_R_50_FPN_1x import dataloader, lr_multiplier, model, optimizer, train

model.assigner.core_zone = False
model.assigner.relaxation = False
model.quality.cls_target = "static"
