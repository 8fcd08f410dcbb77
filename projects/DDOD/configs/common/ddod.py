"""DDOD's parts (Chen, Yang et al., ACM MM 2021; arXiv:2107.02963, and the authors' code) as config
switches on an ATSS model node (``configs/common/models/atss.py``).

The three disentanglements, each one switch (the paper's Table 4):

* assignment: ``model.assigner = cost_assigner()`` (cost-based ATSS run twice, α_cls 0.8 /
  α_reg 0.5) or ``atss_assigner()`` (IoU-based ATSS, one matching);
* spatial: ``model.head.deformable_convs = [0]`` (DCNv1 as the first conv of each tower)
  or ``[]``; Table 6 moves it to another position;
* supervision: ``model.loss.level_weighting = level_weighting()`` (per-level weights from
  cumulative positive counts) or ``None``; Table 7 picks another weighting.
"""
from detectron2.config import LazyCall as L

from dsla_d2.assigners import ATSSAssigner, DDODAssigner
from dsla_d2.box_coders import LTRBBoxCoder
from dsla_d2.losses import DenseDetectionLoss, LevelWeighting
from dsla_d2.quality import QualityCoupling
from dsla_d2.solver import mmdet_param_groups

#: DCN position of the full DDOD: the first conv of each tower (Table 6, position 1).
DCN_FIRST = [0]


def cost_assigner(cls_alpha=0.8, reg_alpha=0.5):
    """Assignment disentanglement on: C = p^(1−α)·IoU(pred, gt)^α, ATSS candidates and
    threshold, separate classification (α_cls) and regression (α_reg) positives."""
    return L(DDODAssigner)(topk=9, center_margin=0.01, cls_alpha=cls_alpha, reg_alpha=reg_alpha)


def atss_assigner():
    """Assignment disentanglement off: ATSS on anchor IoUs, one matching for both tasks, box
    loss not centerness-weighted (the authors' ATSS-with-IoU-branch baseline)."""
    return L(ATSSAssigner)(topk=9, center_margin=0.01, regression_weight="uniform")


def level_weighting(method="linear_interpolate", accumulate=True):
    """Pyramid supervision disentanglement on: w_l = 2 − (n_l − min n)/(max n − min n) from
    the cumulative per-level positive counts (eqs. 3-5), separately for cls and reg."""
    return L(LevelWeighting)(num_levels=5, method=method, accumulate=accumulate)


def ddod_loss():
    """Focal (α 0.25, γ 2) over N_cls; GIoU × 2 and IoU-branch BCE × 1 over N_reg; N =
    max(1, all-reduce-mean of Σ_images max(#positives, 1)) of each assignment; level
    weights on."""
    return L(DenseDetectionLoss)(
        cls_loss="focal",
        focal_alpha=0.25,
        focal_gamma=2.0,
        cls_normalizer="num_pos_per_image_min1",
        box_loss="giou",
        box_weight=2.0,
        box_normalizer="num_pos_per_image_min1",
        quality_normalizer="num_pos_per_image_min1",
        level_weighting=level_weighting(),
    )


def adamw_offset_lr_groups(offset_lr_mult=0.1):
    """``optimizer.params`` for the embedded-dataset configs (AdamW from random init): the
    shared groups — no weight decay on norm layers and biases — with the deformable convs'
    offset layers at lr × ``offset_lr_mult`` (mmdetection's ``dcn_offset_lr_mult``; 0.1 is
    what Deformable DETR gives its sampling offsets under AdamW).

    Why: AdamW moves every weight by about lr per step whatever its gradient's scale, and
    the offsets are a linear function of unnormalised FPN features (no norm layer follows
    them). At lr 3e-3 on the embedded dataset the offsets of a DDOD run (seed 0) grew far
    outside the feature maps within the first hundred iterations; the head then saw
    padding and the run ended at 0.04 AP. The COCO recipe (SGD, the authors') keeps lr × 1.
    Mmdetection's rules keep weight decay on the offset layer's bias: the one difference
    from the shared groups besides the offset lr.
    """
    return L(mmdet_param_groups)(
        base_lr="${..lr}",
        weight_decay="${..weight_decay}",
        norm_decay_mult=0.0,
        bias_decay_mult=0.0,
        dcn_offset_lr_mult=offset_lr_mult,
    )


def to_ddod(model):
    """The full DDOD on an ATSS model node, in place (returned for chaining):

    * anchors centred at (j·s, i·s) (offset 0, the mmdetection anchor generator);
    * ATSSHead with DCNv1 as the first conv of each tower and the IoU branch on the reg
      tower (no centerness);
    * the cost assigner; hard targets; score = sigmoid(cls)·sigmoid(IoU), threshold on the
      class score before the product, per level the top 1000 locations by class score;
    * the DDOD loss with level weights.
    """
    model.prior_generator.offset = 0.0
    model.head.quality_branch = "reg"
    model.head.deformable_convs = DCN_FIRST
    model.head.modulated_deform = False
    model.assigner = cost_assigner()
    model.quality = L(QualityCoupling)(branch="iou", cls_target="static", threshold_on="cls")
    model.loss = ddod_loss()
    model.test_topk_mode = "locations"
    model.test_topk_rank = "cls"  # the authors' code: top 1000 locations by class score
    return model


def to_ddod_fcos(model):
    """DDOD-FCOS: :func:`to_ddod`, with the FCOS-style per-side regression — distances
    raw·stride from the anchor centre (no ReLU, no exp), box output bias 1.5 — instead of
    anchor deltas; the assignment stays the anchor-based cost assigner."""
    to_ddod(model)
    model.box_coder = L(LTRBBoxCoder)(normalize_by_stride=True)
    model.head.box_activation = "none"
    model.head.box_bias_init = 1.5
    return model
