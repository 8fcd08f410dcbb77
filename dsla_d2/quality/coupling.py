"""Quality coupling: how localisation quality enters the classification score.

Three ways, combinable, shared by every meta-architecture:

* a separate **branch** predicting the quality of each positive: "centerness" (FCOS,
  ATSS) or "iou" (IoU of the detached predicted box with its gt: Dynamic ATSS, DDOD),
  trained with BCE on the regression positives; or "objectness" (DW), a branch with no
  target of its own that learns only through the loss's use of cls·objectness. At
  inference the class score is multiplied by the branch's sigmoid;
* **soft classification targets** ("cls_target"): "static" keeps the assigner's score
  (1 for hard assignments, DSLA's static label_s); "iou_product" multiplies it by the IoU
  of the detached predicted box with the target (DSLA's dynamic label_d = label_s·IoU,
  Dynamic ATSS's y = PIoU for hard assigners); "iou" uses the IoU alone (DSLA's "IoU only"
  ablation);
* nothing at all (DSLA, FoveaBox): the class score alone ranks detections.
"""
from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..assigners.base import Assignment
from ..box_ops import aligned_ltrb, centerness_from_ltrb
from ..priors import Priors
from ..utils.comm import normalizer

__all__ = ["QualityCoupling"]

BRANCHES = (None, "centerness", "iou", "objectness")
SUPERVISED_BRANCHES = ("centerness", "iou")
CLS_TARGETS = ("static", "iou_product", "iou")
THRESHOLD_ON = ("cls", "score")


class QualityCoupling(nn.Module):
    """
    Args:
        branch: None, "centerness", "iou" or "objectness" — the extra output of the head.
        cls_target: "static", "iou_product" or "iou" (see module docstring).
        branch_weight: weight of the branch's BCE loss.
        score_sqrt: at inference use sqrt(cls·quality) instead of cls·quality (the
            geometric mean, as Detectron2's and AdelaiDet's FCOS report).
        threshold_on: what ``test_score_thresh`` is compared with at inference: "cls",
            the class probability before the quality factor (FCOS, ATSS, DDOD), or
            "score", the final cls·quality score (DW).
    """

    def __init__(
        self,
        branch: Optional[str] = None,
        cls_target: str = "static",
        branch_weight: float = 1.0,
        score_sqrt: bool = False,
        threshold_on: str = "cls",
    ):
        super().__init__()
        if branch not in BRANCHES:
            raise ValueError(f"branch={branch!r} is not one of {BRANCHES}")
        if cls_target not in CLS_TARGETS:
            raise ValueError(f"cls_target={cls_target!r} is not one of {CLS_TARGETS}")
        if threshold_on not in THRESHOLD_ON:
            raise ValueError(f"threshold_on={threshold_on!r} is not one of {THRESHOLD_ON}")
        self.branch = branch
        self.cls_target = cls_target
        self.branch_weight = branch_weight
        self.score_sqrt = score_sqrt
        self.threshold_on = threshold_on

    @property
    def supervises_branch(self) -> bool:
        """Whether the branch has a target and a loss of its own ("centerness", "iou")."""
        return self.branch in SUPERVISED_BRANCHES

    def classification_targets(self, assignment: Assignment, ious: Tensor) -> Tensor:
        """(N, R) target score of the labelled class; 0 on background.

        ``ious`` is the (N, R) IoU of the detached predicted box of each classification
        positive with *its classification gt* (``Assignment.cls_box_targets``), 0 off the
        classification positives. A static positive whose IoU is 0 becomes a
        classification negative (DSLA) but keeps its regression loss.
        """
        pos = assignment.pos_mask
        if self.cls_target == "static":
            scores = assignment.cls_scores
        elif self.cls_target == "iou_product":
            scores = assignment.cls_scores * ious
        else:
            scores = ious
        return torch.where(pos, scores, torch.zeros_like(scores))

    def branch_targets(self, priors: Priors, assignment: Assignment, ious: Tensor) -> Tensor:
        if self.branch == "centerness":
            return centerness_from_ltrb(aligned_ltrb(priors.points, assignment.box_targets))
        return ious

    def branch_loss(
        self,
        quality_logits: Tensor,
        priors: Priors,
        assignment: Assignment,
        ious: Tensor,
        weights: Optional[Tensor] = None,
        norm: Optional[Tensor] = None,
    ) -> Tensor:
        """BCE on the regression positives, normalised by their all-reduced count.

        Args:
            quality_logits: (N, R) branch output.
            weights: (N, R) optional per-prior weights of the BCE (DDOD's per-level
                regression weights); None: unweighted.
            norm: the normaliser, if the loss chooses another one (DDOD: Σ_images
                max(regression positives, 1)); None: max(all-reduced #positives, 1).
        """
        mask = assignment.reg_mask
        targets = self.branch_targets(priors, assignment, ious).detach()
        weight = None if weights is None else weights[mask]
        loss = F.binary_cross_entropy_with_logits(quality_logits[mask], targets[mask], weight=weight, reduction="sum")
        loss = loss + 0.0 * quality_logits.sum()
        if norm is None:
            norm = normalizer(mask.sum().float())
        return self.branch_weight * loss / norm

    def inference_scores(self, cls_logits: Tensor, quality_logits: Optional[Tensor]) -> Tensor:
        """(N, R, C) class probabilities times the quality (if there is a branch)."""
        scores = cls_logits.sigmoid()
        if self.branch is None:
            return scores
        scores = scores * quality_logits.sigmoid()
        return scores.sqrt() if self.score_sqrt else scores

    def thresholded_quantity(self, probs: Tensor, scores: Tensor) -> Tensor:
        """What ``test_score_thresh`` is compared with (``threshold_on``): the class
        probabilities ("cls") or the final scores ("score")."""
        return probs if self.threshold_on == "cls" else scores

    def thresholded_scores(self, probs: Tensor, scores: Tensor, threshold: float) -> Tensor:
        """``scores`` where the thresholded quantity (``threshold_on``) exceeds
        ``threshold``, −1 elsewhere (never kept)."""
        keep = self.thresholded_quantity(probs, scores) > threshold
        return torch.where(keep, scores, torch.full_like(scores, -1.0))
