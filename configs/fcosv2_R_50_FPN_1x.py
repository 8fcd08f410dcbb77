"""FCOS with the "FCOSv2" improvements (Tian et al., TPAMI 2020 / AdelaiDet FCOS_R_50_1x,
38.7 AP; the DSLA paper's FCOSv2 R-50 row, 38.6 AP): center sampling radius 1.5, GIoU loss,
norm_on_bbox (ReLU(s·x) in stride units), centerness on the regression tower.
"""
from dsla_d2.box_coders import LTRBBoxCoder
from detectron2.config import LazyCall as L

from .fcos_R_50_FPN_1x import dataloader, lr_multiplier, model, optimizer, train

model.assigner.center_sampling_radius = 1.5
model.loss.box_loss = "giou"
model.head.box_activation = "relu"
model.head.quality_branch = "reg"
model.box_coder = L(LTRBBoxCoder)(normalize_by_stride=True)
