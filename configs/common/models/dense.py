"""The dense-detector base every FCOS / ATSS / FoveaBox model node derives from.

What the COCO detectors here share (FCOS, ATSS and FoveaBox papers and their mmdetection /
authors' code):

* ResNet-50 + FPN P3-P7 with 256 channels (P6/P7 from the P5 output; FoveaBox swaps in P6
  from C5), Detectron2's MSRA ImageNet weights: BGR, caffe pixel mean, pixel_std 1;
* a head of two towers, 4 × [3×3 conv 256, GN(32), ReLU], shared over the five levels
  (each detector sets the head class and its outputs);
* one prior per location on strides 8..128, centred in its cell (offset 0.5);
* FCOS's and ATSS's quality coupling and classification loss: a centerness branch (hard
  classification targets) and sigmoid focal loss (α 0.25, γ 2) over the all-reduced number
  of positives; the box loss, weighted by the assigner's regression weights, over their
  all-reduced sum (each detector names its box loss);
* inference: class probability > 0.05, top 1000 candidates per level, class-aware NMS 0.6,
  100 detections per image.

A detector base sets ``model._target_`` (its meta-architecture), ``model.head._target_``
and the head's outputs, adds ``box_coder`` and ``assigner`` and edits (FCOS, ATSS) or
replaces (FoveaBox) ``quality`` and ``loss`` — the way Detectron2's own
``common/models/fcos.py`` edits its RetinaNet base.
"""
from detectron2.config import LazyCall as L

from dsla_d2.heads import TowerHead
from dsla_d2.losses import DenseDetectionLoss
from dsla_d2.meta_arch import AssignedDenseDetector
from dsla_d2.priors import PriorGenerator
from dsla_d2.quality import QualityCoupling

from .resnet_fpn import resnet_fpn

STRIDES = [8, 16, 32, 64, 128]

model = L(AssignedDenseDetector)(
    backbone=resnet_fpn(depth=50),
    head=L(TowerHead)(
        in_channels=256,
        num_classes="${..num_classes}",
        num_levels=len(STRIDES),
        channels=256,
        num_convs=4,
        norm="GN",
    ),
    head_in_features=["p3", "p4", "p5", "p6", "p7"],
    prior_generator=L(PriorGenerator)(strides=STRIDES, offset=0.5),
    quality=L(QualityCoupling)(branch="centerness", cls_target="static"),
    loss=L(DenseDetectionLoss)(
        cls_loss="focal",
        focal_alpha=0.25,
        focal_gamma=2.0,
        cls_normalizer="num_pos",
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
