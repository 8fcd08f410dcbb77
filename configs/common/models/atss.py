"""ATSS R-50-FPN (COCO): the base of every anchor-based ATSS / Dynamic ATSS config.

The dense base (``dense.py``: ResNet-50 + FPN P3-P7, 4-conv GN towers, strides 8..128,
inference settings) with the ATSS parts (ATSS paper and the authors' / mmdetection's code):

* one square anchor per location, side 8·stride (octave base scale 8, one scale, ratio 1),
  centred on the cell (offset 0.5);
* ATSSHead: cls conv (prior 0.01), reg conv → 4 deltas with a learnable scale per level
  (linear, no activation), centerness conv on the reg tower;
* DeltaBoxCoder: (dx, dy, dw, dh) with weights (10, 10, 5, 5), wh clamp log(1000/16);
* ATSSAssigner: k = 9 candidates per level, threshold mean + std, centre inside (0.01 px),
  box loss weighted by the centerness target;
* losses: sigmoid focal (α 0.25, γ 2) / all-reduced #positives; GIoU (weight 2.0) on the
  decoded boxes weighted by the centerness targets / all-reduced Σ centerness; centerness
  BCE / #positives;
* inference: sigmoid(cls)·sigmoid(centerness), per level top 1000 with cls > 0.05,
  class-aware NMS 0.6, top 100.
"""
import math

from detectron2.config import LazyCall as L

from dsla_d2.assigners.atss import ATSSAssigner
from dsla_d2.box_coders import DeltaBoxCoder
from dsla_d2.heads import ATSSHead
from dsla_d2.meta_arch import DslaATSS

from .dense import model

model._target_ = DslaATSS
model.head._target_ = ATSSHead
model.head.prior_prob = 0.01
model.head.quality_branch = "reg"
model.head.box_activation = "none"
model.head.learnable_scale = True
model.prior_generator.anchor_scale = 8
model.box_coder = L(DeltaBoxCoder)(weights=[10.0, 10.0, 5.0, 5.0], scale_clamp=math.log(1000.0 / 16))
model.assigner = L(ATSSAssigner)(topk=9, center_margin=0.01, regression_weight="centerness")
model.loss.box_loss = "giou"  # focal loss and centerness branch: the dense base
model.loss.box_weight = 2.0
