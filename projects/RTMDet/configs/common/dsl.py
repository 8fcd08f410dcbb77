"""RTMDet's dynamic soft-label assignment (Lyu et al., "RTMDet: An Empirical Study of
Designing Real-Time Object Detectors", arXiv:2212.07784; mmdetection 3.3's
``DynamicSoftLabelAssigner`` and ``RTMDetHead`` where they are more specific) as config
switches on any FCOS / ATSS model node (``configs/common/models/``).

``to_dsl(model)`` is the one line that turns a detector into its DSL variant:

* assignment: ``DynamicSoftLabelAssigner`` — cost = soft classification cost (QFL form of
  the class logits against the soft label u) + 3·(−log IoU) + 10^(d − 3) (d in strides from
  the gt centre), on the priors inside some gt; each gt takes its k = max(1, ⌊Σ top-13 u⌋)
  cheapest priors; a prior taken twice goes to the cheapest gt; soft target u = the IoU of
  the prior's detached predicted box with its gt;
* quality coupling: none — u *is* the classification target (``cls_target="static"`` hands
  the assigner's score to the loss), so the head loses its centerness branch and the class
  probability alone ranks detections, as in RTMDet;
* loss (RTMDet's ``loss_cls`` / ``loss_bbox``): QFL (β 2, weight 1) on every prior and class
  with u on the positives' class, GIoU × 2 on the positives weighted by u, both divided by
  max(all-reduced mean of Σ u, 1).
"""
from detectron2.config import LazyCall as L

from dsla_d2.assigners import DynamicSoftLabelAssigner
from dsla_d2.losses import DenseDetectionLoss
from dsla_d2.quality import QualityCoupling


def dsl_assigner(topk=13, soft_center_radius=3.0, iou_weight=3.0):
    """DSL with RTMDet's constants: top-13 IoUs for k, centre prior 10^(d − 3), IoU cost × 3."""
    return L(DynamicSoftLabelAssigner)(topk=topk, soft_center_radius=soft_center_radius, iou_weight=iou_weight)


def dsl_loss():
    """RTMDet's loss: QFL (β 2) and GIoU (weight 2, per positive × u), both over
    max(all-reduced Σ u, 1) (the module docstring)."""
    return L(DenseDetectionLoss)(
        cls_loss="qfl",
        qfl_beta=2.0,
        cls_normalizer="sum_scores",
        cls_normalizer_min=1.0,
        box_loss="giou",
        box_weight=2.0,
        box_normalizer="sum_weights",
        box_normalizer_min=1.0,
        normalizer_floor="clamp",
    )


def to_dsl(model, **assigner_kwargs):
    """DSL on an FCOS / ATSS ``model`` node, in place (returned for chaining): the assigner
    (``assigner_kwargs`` to :func:`dsl_assigner`), no quality branch (u is the
    classification target) and RTMDet's loss."""
    model.assigner = dsl_assigner(**assigner_kwargs)
    model.head.quality_branch = None
    model.quality = L(QualityCoupling)(branch=None, cls_target="static")
    model.loss = dsl_loss()
    return model
