"""FCOS with the "FCOSv2" improvements, R-50-FPN 1x on COCO 2017: mmdetection's
``configs/fcos/fcos_center-normbbox-centeronreg-giou_r50_caffe_fpn_gn-head_1x_coco.py``
(its README: 38.7 AP; AdelaiDet's FCOS_R_50_1x also 38.7; the DSLA paper's FCOSv2 R-50 row:
38.6). That config is the 36.6 one (``fcos_R_50_FPN_1x.py``) with:

* center sampling radius 1.5, GIoU loss (weight 1), norm_on_bbox (ReLU(s·x) in stride
  units), centerness on the regression tower, tower convs **with** bias
  (``conv_bias=True``);
* no gradient clipping (``grad_clip=None``);
* linear warm-up from 1/3 over 500 iterations (``lr_config = dict(warmup='linear')`` over
  the base's ``warmup_ratio=1.0 / 3``, ``warmup_iters=500``);
* test NMS 0.6.

Optimiser (bias lr ×2 without decay), 12-epoch schedule and top-1000 locations per level
at test time: as the base.
"""
from detectron2.config import LazyCall as L

from dsla_d2.box_coders import LTRBBoxCoder

from .common.schedules import epoch_schedule
from .fcos_R_50_FPN_1x import dataloader, model, optimizer, train

model.assigner.center_sampling_radius = 1.5
model.loss.box_loss = "giou"
model.head.box_activation = "relu"
model.head.quality_branch = "reg"
model.head.conv_bias = True
model.box_coder = L(LTRBBoxCoder)(normalize_by_stride=True)
model.test_nms_thresh = 0.6

train.clip_grad_norm = 0.0
train.max_iter, lr_multiplier = epoch_schedule(12, [8, 11], warmup_iters=500, warmup_factor=1.0 / 3, warmup_method="linear")
