"""FCOSv2 + DSLA, R-50-FPN 1x on COCO 2017 (DSLA paper Table 3: FCOSv2 R-50 38.6 -> 40.4 AP).

``fcos_dsla_R_50_FPN_1x.py`` with the "FCOSv2"-style options the authors used for this row
(spec decision 6): center sampling radius 1.5 (strides, clipped to the gt box), GIoU loss
(weight 1), norm_on_bbox (ReLU(s·x) in stride units, targets divided by the stride),
DCNv2 on the last tower conv of both towers, conv bias on, QFL weight 1.0. Still no quality
branch, offset 0 and the full DSLA assignment + IoU coupling.
"""
from detectron2.config import LazyCall as L

from dsla_d2.box_coders import LTRBBoxCoder

from .fcos_dsla_R_50_FPN_1x import dataloader, lr_multiplier, model, optimizer, train

model.assigner.center_sampling_radius = 1.5
model.loss.box_loss = "giou"
model.loss.box_weight = 1.0
model.loss.cls_weight = 1.0
model.head.box_activation = "relu"
model.box_coder = L(LTRBBoxCoder)(normalize_by_stride=True)
model.head.deformable_convs = [3]
model.head.modulated_deform = True
model.head.conv_bias = True
