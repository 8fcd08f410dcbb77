"""FCOS R-50-FPN (COCO), the base every point-based detector config derives from.

Parts: ResNet-50 + FPN P3-P7 (P6/P7 from P5), FCOSHead (4-conv GN towers, centerness
on the reg tower), points at cell centres (offset 0.5), exp box output, FCOS assigner,
focal + IoU losses. ``configs/fcos_R_50_FPN_1x.py`` and the FCOSv2/DSLA configs edit it.
"""
from detectron2.config import LazyCall as L

from dsla_d2.assigners import FCOSAssigner
from dsla_d2.box_coders import LTRBBoxCoder
from dsla_d2.heads import FCOSHead
from dsla_d2.losses import DenseDetectionLoss
from dsla_d2.meta_arch import DslaFCOS
from dsla_d2.priors import PriorGenerator
from dsla_d2.quality import QualityCoupling

from .resnet_fpn import resnet_fpn

STRIDES = [8, 16, 32, 64, 128]

model = L(DslaFCOS)(
    backbone=resnet_fpn(depth=50),
    head=L(FCOSHead)(
        in_channels=256,
        num_classes="${..num_classes}",
        num_levels=5,
        channels=256,
        num_convs=4,
        norm="GN",
        quality_branch="reg",
        box_activation="exp",
    ),
    head_in_features=["p3", "p4", "p5", "p6", "p7"],
    prior_generator=L(PriorGenerator)(strides=STRIDES, offset=0.5),
    box_coder=L(LTRBBoxCoder)(normalize_by_stride=False),
    assigner=L(FCOSAssigner)(
        size_ranges=[[0, 64], [64, 128], [128, 256], [256, 512], [512, 1e8]],
        center_sampling_radius=0.0,
        regression_weight="centerness",
    ),
    quality=L(QualityCoupling)(branch="centerness", cls_target="static"),
    loss=L(DenseDetectionLoss)(
        cls_loss="focal",
        focal_alpha=0.25,
        focal_gamma=2.0,
        cls_normalizer="num_pos",
        box_loss="iou",
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
