"""TOOD's task alignment learning (Feng et al., "TOOD: Task-aligned One-stage Object
Detection", ICCV 2021, arXiv:2108.07755; the authors' code where it is more specific) as
config switches on any FCOS / ATSS model node (``configs/common/models/``).

``to_tal(model)`` is the one line that turns a detector into its TAL variant:

* assignment: ``TaskAlignedAssigner`` — t = s^α·u^β from the detached class probability and
  predicted-box IoU, the top m = 13 priors per gt over all levels, centre inside (0.01 px),
  largest IoU wins, soft target t̂ = t / (max t + 1e-7) · max u; optionally the authors'
  ATSS warm-up (``warmup_iters``);
* quality coupling: none — t̂ *is* the classification target (``cls_target="static"``
  hands the assigner's score to the loss), so the head loses its centerness branch and the
  class probability alone ranks detections, as in TOOD;
* loss: the task-aligned loss — QFL form (γ 2) on every prior and class with t̂ on the
  positives' class, GIoU × 2 on the positives weighted by t̂, both divided by the
  all-reduced mean of Σ t̂, or by 1 when it is below 1e-12 (the authors'; ``tal_loss(
  mmdet_normalizer=True)`` divides by max(Σ t̂, 1) as mmdetection 3.x). During a warm-up:
  sigmoid focal loss (α 0.25, γ 2) on hard targets over the number of positives,
  centerness-weighted GIoU over Σ centerness, with the same "1 below 1e-12" rule.
"""
from detectron2.config import LazyCall as L

from dsla_d2.assigners import ATSSAssigner, TaskAlignedAssigner
from dsla_d2.losses import DenseDetectionLoss
from dsla_d2.quality import QualityCoupling

#: The authors' normaliser floor: Σ t̂ (or the warm-up's counts) below it divides by 1.
AUTHORS_NORMALIZER_EPS = 1e-12


def tal_assigner(topk=13, alpha=1.0, beta=6.0, warmup_iters=0):
    """TAL (the paper's m, α, β) with the authors' ATSS warm-up for ``warmup_iters``
    iterations (k = 9, centerness-weighted box loss) when > 0."""
    warmup = None
    if warmup_iters:
        warmup = L(ATSSAssigner)(topk=9, center_margin=0.01, regression_weight="centerness")
    return L(TaskAlignedAssigner)(
        topk=topk, alpha=alpha, beta=beta, center_margin=0.01, warmup_iters=warmup_iters, warmup_assigner=warmup
    )


def tal_loss(mmdet_normalizer=False):
    """The task-aligned loss (module docstring); ``mmdet_normalizer``: max(N, 1) instead of
    the authors' N (1 when N < 1e-12)."""
    low = 1.0 if mmdet_normalizer else AUTHORS_NORMALIZER_EPS
    return L(DenseDetectionLoss)(
        cls_loss="qfl",
        qfl_beta=2.0,
        warmup_cls_loss="focal",
        focal_alpha=0.25,
        focal_gamma=2.0,
        cls_normalizer="sum_scores",
        cls_normalizer_min=low,
        box_loss="giou",
        box_weight=2.0,
        box_normalizer="sum_weights",
        box_normalizer_min=low,
        normalizer_floor="clamp" if mmdet_normalizer else "one",
    )


def to_tal(model, warmup_iters=0):
    """TAL on an FCOS / ATSS ``model`` node, in place (returned for chaining): the assigner,
    no quality branch (t̂ is the classification target) and the task-aligned loss."""
    model.assigner = tal_assigner(warmup_iters=warmup_iters)
    model.head.quality_branch = None
    model.quality = L(QualityCoupling)(branch=None, cls_target="static")
    model.loss = tal_loss()
    return model
