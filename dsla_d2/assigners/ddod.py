"""DDOD's label-assignment disentanglement (Chen, Yang et al., ACM MM 2021, §4.1).

A cost-based ATSS: for each gt g and candidate prior a (the ATSS candidates, k nearest
prior centres per level)::

    C(a, g) = p(a, c_g)^(1−α) · IoU(b̂(a), g)^α                              (paper eq. 1)

with p(a, c_g) the sigmoid score of g's own class at a and b̂(a) the decoded *predicted* box
at a (both detached). The threshold is mean + unbiased std of C over g's candidates; a
candidate is positive iff C ≥ threshold and its centre is inside g (margin 0.01); several
gts → the highest cost. Everything but the cost is the shared, sparse ATSS core
(:func:`~dsla_d2.assigners.atss_core.atss_match`): the cost is evaluated only on the
(N, K, G) candidates (K = Σ_l min(k, n_l), 45 for k = 9 on 5 levels) by gathering their
scores and predicted boxes, never on a priors × gts grid. ``tests/test_sparse_equivalence.py``
checks it against a dense reference written from the spec.

DDOD runs it twice per image: α_cls = 0.8 gives the classification positives, α_reg = 0.5
the regression positives (the authors' code; the paper's Table 5 names the best pair
α_cls 0.8 / α_reg 0.5). The two sets differ, so the returned :class:`Assignment` carries
both matchings (``matched_gt`` / ``reg_matched_gt``). There is no warm-up: at
initialisation the predicted boxes are ≈ the anchors and p ≈ the prior 0.01 for every
class, so the cost ranks candidates like the anchor IoU (up to the power α).
"""
from typing import List, Mapping, Optional, Tuple

import torch
from torch import Tensor

from ..priors import Priors
from ..utils.progress import TrainingProgress
from .atss_core import CandidateQuality, atss_match, candidate_predicted_iou
from .base import ASSIGNER_REGISTRY, Assignment, DenseAssigner, GTBatch

__all__ = ["DDODAssigner", "ddod_cost"]


def ddod_cost(prob: Tensor, iou: Tensor, alpha: float) -> Tensor:
    """C = p^(1−α) · IoU^α (eq. 1), elementwise. 0^0 = 1, so α = 1 is the IoU alone and
    α = 0 the score alone."""
    return prob.pow(1.0 - alpha) * iou.pow(alpha)


@ASSIGNER_REGISTRY.register()
class DDODAssigner(DenseAssigner):
    """Two cost-based ATSS assignments: classification (``cls_alpha``) and regression
    (``reg_alpha``).

    Args:
        topk: candidates per level and gt (k = 9).
        center_margin: the candidate's centre must be more than this many pixels inside
            every side of the gt (0.01).
        cls_alpha: α of the classification assignment (0.8).
        reg_alpha: α of the regression assignment (0.5).

    Reads the detached ``"pred_boxes"`` (N, R, 4) and ``"cls_logits"`` (N, R, C).
    Regression positives get weight 1 (DDOD's GIoU loss is not centerness-weighted).

    ``extras`` of the returned :class:`Assignment`: ``cls_threshold`` / ``reg_threshold``
    (N, G) the cost thresholds (0 for invalid gts), ``cls_cost`` / ``reg_cost`` (N, R) the
    winning cost of each positive (0 elsewhere).
    """

    required_predictions = ("pred_boxes", "cls_logits")

    def __init__(self, topk: int = 9, center_margin: float = 0.01, cls_alpha: float = 0.8, reg_alpha: float = 0.5):
        super().__init__()
        if int(topk) < 1:
            raise ValueError(f"topk={topk} must be ≥ 1")
        for name, alpha in (("cls_alpha", cls_alpha), ("reg_alpha", reg_alpha)):
            if not 0.0 <= float(alpha) <= 1.0:  # also rejects NaN
                raise ValueError(f"{name}={alpha} must be in [0, 1]")
        self.topk = int(topk)
        self.center_margin = float(center_margin)
        self.cls_alpha = float(cls_alpha)
        self.reg_alpha = float(reg_alpha)

    def extra_repr(self) -> str:
        return (
            f"topk={self.topk}, center_margin={self.center_margin}, "
            f"cls_alpha={self.cls_alpha}, reg_alpha={self.reg_alpha}"
        )

    def candidate_costs(self, gt: GTBatch, predictions: Mapping[str, Tensor]):
        """A function of the (N, K, G) candidate indices returning (prob, iou), each
        (N, K, G): the candidate's score of the gt's class and the IoU of its predicted box
        with the gt. Non-finite predictions give 0."""
        pred_boxes = predictions["pred_boxes"]
        logits = predictions["cls_logits"]
        n_img, n_pri, n_cls = logits.shape
        gt_b = gt.boxes.to(pred_boxes.dtype)[:, None]  # (N, 1, G, 4)
        classes = gt.classes.clamp(min=0)  # padding rows: any class, they are never positive

        def costs(cand: Tensor) -> Tuple[Tensor, Tensor]:
            _, k_total, n_gt = cand.shape
            iou = candidate_predicted_iou(pred_boxes, cand, gt_b)
            idx = (cand * n_cls + classes[:, None, :]).reshape(n_img, k_total * n_gt)
            prob = torch.gather(logits.reshape(n_img, n_pri * n_cls), 1, idx).view(n_img, k_total, n_gt).sigmoid()
            return torch.nan_to_num(prob, nan=0.0), iou

        return costs

    def cost_quality(self, costs, alpha: float) -> CandidateQuality:
        """The ATSS core's quality: one term, the cost C = p^(1−α)·IoU^α."""

        def quality(cand: Tensor) -> List[Tuple[float, Tensor]]:
            prob, iou = costs(cand)
            return [(1.0, ddod_cost(prob, iou, alpha))]

        return quality

    def assign(
        self,
        priors: Priors,
        gt: GTBatch,
        num_classes: int,
        predictions: Mapping[str, Tensor],
        progress: Optional[TrainingProgress] = None,
    ) -> Assignment:
        """
        Args:
            priors: R priors (their centres and per-level counts choose the candidates).
            gt: padded gts (N, G).
            predictions: ``"pred_boxes"`` (N, R, 4) and ``"cls_logits"`` (N, R, C), detached.
        """
        logits = predictions["cls_logits"]
        if logits.shape[-1] != num_classes:
            raise ValueError(f"cls_logits has {logits.shape[-1]} classes, expected num_classes={num_classes}")
        costs = self.candidate_costs(gt, predictions)
        cls = atss_match(priors, gt, self.cost_quality(costs, self.cls_alpha), self.topk, self.center_margin)
        reg = atss_match(priors, gt, self.cost_quality(costs, self.reg_alpha), self.topk, self.center_margin)
        extras = {
            "cls_threshold": cls.threshold,
            "reg_threshold": reg.threshold,
            "cls_cost": cls.quality,
            "reg_cost": reg.quality,
        }
        return Assignment.from_matches(gt, cls.matched, num_classes, extras=extras, reg_matched=reg.matched)
