"""FoveaBox R-50-FPN (COCO): the base of the FoveaBox and DSLA-FoveaBox configs.

Facts from the FoveaBox paper (Kong et al., IEEE TIP 2020) and mmdetection's
``configs/foveabox/fovea_r50_fpn_4x4_1x_coco.py`` (36.5 AP):

- ResNet-50 + FPN P3-P7, strides 8..128; P6 is computed from C5 (mmdetection's
  ``add_extra_convs='on_input'``), P7 from P6;
- FoveaBoxHead: 4 × [3×3 conv 256, GN(32), ReLU] towers (the spec's head; mmdetection's
  36.5 config has no norm in the head — set ``model.head.norm = ""`` to match it), linear
  box output in log space, no per-level scale, no quality branch;
- points at cell centres (offset 0.5); base edges z_l = 16..256 (FoveaLogBoxCoder:
  log(clamp(d/z_l, 1/16, 16)));
- FoveaAssigner: sqrt(w·h) scale ranges ((1,64), (32,128), (64,256), (128,512),
  (256,2048)) inclusive, fovea σ = 0.4;
- sigmoid focal loss γ 1.5 α 0.4 over #pos + #images; SmoothL1 β 0.11 over #pos on the
  log targets;
- test: top 1000 per level, score > 0.05, NMS 0.5 (mmdetection's FoveaBox test_cfg),
  100 detections.

:func:`to_dsla_fovea` turns this model into DSLA-FoveaBox (our design).
"""
from detectron2.config import LazyCall as L

from dsla_d2.assigners.dsla_fovea import DSLAFoveaAssigner
from dsla_d2.assigners.fovea import FoveaAssigner
from dsla_d2.box_coders import FoveaLogBoxCoder
from dsla_d2.heads import FoveaBoxHead
from dsla_d2.losses import DenseDetectionLoss
from dsla_d2.meta_arch import DslaFoveaBox
from dsla_d2.priors import PriorGenerator
from dsla_d2.quality import QualityCoupling

from .dsla_parts import dsla_loss, dsla_quality
from .resnet_fpn import resnet_fpn

STRIDES = [8, 16, 32, 64, 128]
BASE_EDGES = [16, 32, 64, 128, 256]
SCALE_RANGES = [[1, 64], [32, 128], [64, 256], [128, 512], [256, 2048]]

model = L(DslaFoveaBox)(
    backbone=resnet_fpn(depth=50, p6_from="res5"),
    head=L(FoveaBoxHead)(
        in_channels=256,
        num_classes="${..num_classes}",
        num_levels=5,
        channels=256,
        num_convs=4,
        norm="GN",
    ),
    head_in_features=["p3", "p4", "p5", "p6", "p7"],
    prior_generator=L(PriorGenerator)(strides=STRIDES, offset=0.5),
    box_coder=L(FoveaLogBoxCoder)(base_edges=BASE_EDGES, clamp=[1.0 / 16, 16.0]),
    assigner=L(FoveaAssigner)(scale_ranges=SCALE_RANGES, sigma=0.4),
    quality=L(QualityCoupling)(branch=None, cls_target="static"),
    loss=L(DenseDetectionLoss)(
        cls_loss="focal",
        focal_gamma=1.5,
        focal_alpha=0.4,
        cls_normalizer="num_pos_plus_images",
        box_loss="smooth_l1",
        smooth_l1_beta=0.11,
        box_normalizer="num_pos",
    ),
    num_classes=80,
    test_score_thresh=0.05,
    test_topk_candidates=1000,
    test_nms_thresh=0.5,
    max_detections_per_image=100,
    pixel_mean=[103.530, 116.280, 123.675],
    pixel_std=[1.0, 1.0, 1.0],
    input_format="BGR",
)


def to_dsla_fovea(model, box_loss="iou"):
    """Turn a FoveaBox ``model`` node into DSLA-FoveaBox **(our design; the DSLA paper
    reports FoveaBox w/ DSLA 36.5 -> 37.5 AP without a recipe)**, in place.

    Keeps the baseline's backbone, head, priors, box coder, scale ranges and σ; swaps:

    - assigner -> DSLAFoveaAssigner: label_s = centerness (core zone -> 1) × relaxed scale
      score h_l(sqrt(area)) on FoveaBox's ranges (κ 0.2), positives = points inside the
      box with label_s > 0, highest label_s wins;
    - quality -> IoU coupling: QFL target label_d = label_s · IoU(detached decoded box);
    - loss -> QFL (β 2, weight 2.0, over Σ label_d) + box loss weighted by label_s over
      Σ label_s. ``box_loss`` "iou" (−log IoU on decoded boxes, DSLA's R-50 recipe; our
      default), "giou", or "smooth_l1" (FoveaBox's own loss on the log targets).

    Ablation switches: ``model.assigner.core_zone`` / ``.relaxation`` / ``.kappa`` /
    ``.fovea_region``, ``model.quality.cls_target`` ("static": no IoU coupling; "iou":
    IoU only), ``model.loss.box_loss``.
    """
    model.assigner = L(DSLAFoveaAssigner)(
        scale_ranges=model.assigner.scale_ranges,
        kappa=0.2,
        core_zone=True,
        relaxation=True,
        fovea_region=False,
        sigma=model.assigner.sigma,
        centerness_eps=0.01,
    )
    model.quality = dsla_quality()
    model.loss = dsla_loss(box_loss=box_loss)
    return model
