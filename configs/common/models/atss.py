"""ATSS R-50-FPN (COCO): the base of every anchor-based ATSS / Dynamic ATSS config.

Parts (ATSS paper and the authors' / mmdetection's code):

* ResNet-50 + FPN P3-P7 (P6/P7 from the P5 output), strides 8..128;
* one square anchor per location, side 8·stride (octave base scale 8, one scale, ratio 1),
  centred on the cell (offset 0.5);
* ATSSHead: two towers of 4 × [3×3 conv 256, GN(32), ReLU], cls conv (prior 0.01),
  reg conv → 4 deltas with a learnable scale per level (linear, no activation),
  centerness conv on the reg tower;
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
from dsla_d2.losses import DenseDetectionLoss
from dsla_d2.meta_arch import DslaATSS
from dsla_d2.priors import PriorGenerator
from dsla_d2.quality import QualityCoupling

from .resnet_fpn import resnet_fpn

STRIDES = [8, 16, 32, 64, 128]

model = L(DslaATSS)(
    backbone=resnet_fpn(depth=50),
    head=L(ATSSHead)(
        in_channels=256,
        num_classes="${..num_classes}",
        num_levels=5,
        channels=256,
        num_convs=4,
        norm="GN",
        prior_prob=0.01,
        quality_branch="reg",
        box_activation="none",
        learnable_scale=True,
    ),
    head_in_features=["p3", "p4", "p5", "p6", "p7"],
    prior_generator=L(PriorGenerator)(strides=STRIDES, offset=0.5, anchor_scale=8),
    box_coder=L(DeltaBoxCoder)(weights=[10.0, 10.0, 5.0, 5.0], scale_clamp=math.log(1000.0 / 16)),
    assigner=L(ATSSAssigner)(topk=9, center_margin=0.01, regression_weight="centerness"),
    quality=L(QualityCoupling)(branch="centerness", cls_target="static"),
    loss=L(DenseDetectionLoss)(
        cls_loss="focal",
        focal_alpha=0.25,
        focal_gamma=2.0,
        cls_normalizer="num_pos",
        box_loss="giou",
        box_weight=2.0,
        box_normalizer="sum_weights",
    ),
    num_classes=80,
    test_score_thresh=0.05,
    test_topk_candidates=1000,
    test_nms_thresh=0.6,
    max_detections_per_image=100,
    pixel_mean=[103.530, 116.280, 123.675],
    pixel_std=[1.0, 1.0, 1.0],
    input_format="BGR",
)
