"""DW's parts (Li et al., "A Dual Weighting Label Assignment Scheme for Object Detection",
CVPR 2022; arXiv:2203.09730, and the authors' code) as an edit of an FCOS model node:
``to_dw(model, box_refinement=...)`` keeps the backbone, the tower sizes and the inference
budget of the node it is given and swaps in what the authors' ``DWHead`` does."""
from detectron2.config import LazyCall as L

from dsla_d2.assigners import DWAssigner
from dsla_d2.box_coders import LTRBBoxCoder
from dsla_d2.heads import DWHead
from dsla_d2.losses import DWLoss
from dsla_d2.meta_arch import DslaFCOS
from dsla_d2.quality import QualityCoupling


def to_dw(model, box_refinement=True):
    """FCOS → FCOS-DW, in place; returns ``model``.

    * head: ``DWHead`` — the FCOS towers (same width, depth, GN), conv bias on, class prior
      0.02, objectness branch on the regression tower (a 3×3 conv with no target), ReLU box
      output in strides with bias 4.0 (distances start at 4 strides), box refinement
      (§3.4) when ``box_refinement``; its strides and point offset are the priors';
    * points at cell centres (offset 0.5), every level, **no size ranges**: the bags are the
      points strictly inside each gt (``DWAssigner``, soft centre prior σ 1.11);
    * s = cls·objectness ranks detections and is what the 0.05 threshold applies to;
    * ``DWLoss`` with the code's forms (β 5, μ 5 / 3, γ1 = γ2 = 2, 0.25 on the positive terms).

    Ablation keys: ``model.loss.negative_weights`` / ``.neg_normalizer`` (Table 5),
    ``model.assigner.bag`` / ``.distance_threshold`` / ``.topk`` (Table 4),
    ``model.head.box_refinement`` (Table 6), ``model.loss.pos_weight_form`` /
    ``.p_neg_form`` (paper vs code).
    """
    if model._target_ is not DslaFCOS:
        raise ValueError(f"to_dw: DW is defined here on FCOS (DslaFCOS) models, not {model._target_!r}")
    head = model.head
    model.head = L(DWHead)(
        in_channels=head.in_channels,
        num_classes="${..num_classes}",
        num_levels=head.num_levels,
        channels=head.channels,
        num_convs=head.num_convs,
        norm=head.norm,
        conv_bias=True,
        prior_prob=0.02,
        quality_branch="reg",
        box_activation="relu",
        box_bias_init=4.0,
        box_refinement=box_refinement,
        strides="${..prior_generator.strides}",
        point_offset="${..prior_generator.offset}",
    )
    model.prior_generator.offset = 0.5
    model.box_coder = L(LTRBBoxCoder)(normalize_by_stride=True)
    model.assigner = L(DWAssigner)(bag="soft_prior", sigma=1.11, hard_prior_threshold=0.3)
    model.quality = L(QualityCoupling)(branch="objectness", threshold_on="score")
    model.loss = L(DWLoss)(
        beta=5.0,
        mu=5.0,
        mu_norm=3.0,
        gamma_p_neg=2.0,
        gamma_i_neg=2.0,
        pos_weight_form="code",
        p_neg_form="code",
        negative_weights="dual",
        neg_normalizer="one_minus_p_neg",
        pos_loss_weight=0.25,
        neg_loss_weight=1.0,
    )
    # test_cfg: score·objectness > 0.05, top 1000 (location, class) pairs per level, NMS 0.6, 100
    model.test_score_thresh = 0.05
    model.test_topk_candidates = 1000
    model.test_topk_mode = "pairs"
    model.test_nms_thresh = 0.6
    model.max_detections_per_image = 100
    return model
