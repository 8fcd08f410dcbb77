"""YOLOX's SimOTA (Ge et al., "YOLOX: Exceeding YOLO Series in 2021", arXiv:2107.08430; the
authors' code at tags 0.2.0 / 0.3.0 where it is more specific) as config switches on any
FCOS / ATSS model node (``configs/common/models/``).

``to_simota(model)`` is the one line that turns a detector into its SimOTA variant:

* assignment: ``SimOTAAssigner`` — candidates in a gt's box or within 2.5 strides of its
  centre, cost = one-hot BCE of the class probability + 3·(−log IoU) + 1e5 off "in box and in
  centre", k = max(1, ⌊Σ top-10 IoUs⌋) lowest-cost priors per gt, a prior claimed twice goes
  to its least cost; ``recent=True``: the authors' Jan-2023 rule (centre square only, radius
  1.5, penalty 1e6);
* quality coupling: none on these heads (they have no objectness branch) — the classification
  target of a positive is its pair's IoU (the assignment's ``cls_scores``, handed on by
  ``cls_target="static"``), so the head loses its centerness branch and the class probability
  alone ranks detections; the cost uses q = σ(cls) instead of YOLOX's sqrt(σ(cls)·σ(obj));
* loss: BCE on every prior and class (``cls_loss="qfl"`` with β = 0 *is* BCE), target
  onehot·IoU on the positives and 0 elsewhere — YOLOX's objectness BCE (target 1 on the
  positives, 0 elsewhere) and its positives-only class BCE (target onehot·IoU) merged into the
  one class score; box loss 1 − IoU² × 5 on the positives; both divided by max(#positives, 1),
  all-reduced (the authors divide by the local count: the same on one GPU).
"""
from detectron2.config import LazyCall as L

from dsla_d2.assigners import SimOTAAssigner
from dsla_d2.losses import DenseDetectionLoss
from dsla_d2.quality import QualityCoupling


def simota_assigner(recent=False, objectness=None):
    """SimOTA as YOLOX 0.2/0.3 (``recent=False``) or after the authors' Jan-2023 commit
    (centre square only, radius 1.5, penalty 1e6); ``objectness``: the prediction with the
    objectness logits for q = sqrt(σ(cls)·σ(obj)), None on FCOS / ATSS heads."""
    if recent:
        return L(SimOTAAssigner)(center_radius=1.5, outside_penalty=1e6, candidate_rule="center", objectness=objectness)
    return L(SimOTAAssigner)(
        center_radius=2.5,
        candidate_topk=10,
        iou_weight=3.0,
        outside_penalty=1e5,
        iou_eps=1e-8,
        candidate_rule="box_or_center",
        objectness=objectness,
    )


def simota_loss():
    """YOLOX's loss on a head without objectness (module docstring)."""
    return L(DenseDetectionLoss)(
        cls_loss="qfl",
        qfl_beta=0.0,
        cls_normalizer="num_pos",
        box_loss="squared_iou",
        box_weight=5.0,
        box_normalizer="num_pos",
    )


def to_simota(model, recent=False):
    """SimOTA on an FCOS / ATSS ``model`` node, in place (returned for chaining): the
    assigner, no quality branch (the IoU is the classification target) and YOLOX's loss."""
    model.assigner = simota_assigner(recent=recent)
    model.head.quality_branch = None
    model.quality = L(QualityCoupling)(branch=None, cls_target="static")
    model.loss = simota_loss()
    return model
