"""ATSS (Zhang et al., CVPR 2020) and Dynamic ATSS (combined anchor / predicted IoUs).

ATSS, per ground truth g (ATSS Alg. 1; the Dynamic ATSS paper §3.1, steps 1-5):

1. L2 distances between the centres of all anchors and the centre of g;
2. on every pyramid level the k anchors nearest to g (all of them if the level has fewer
   than k) → k·L *candidates*;
3. IoU(anchor, g) of the candidates, their mean m_g and unbiased std v_g;
4. threshold t_g = m_g + v_g; a candidate with IoU ≥ t_g is a positive candidate;
5. it is positive if its anchor centre is strictly inside g (margin 0.01 px:
   min(cx − x1, cy − y1, x2 − cx, y2 − cy) > 0.01).

An anchor that is positive for several gts takes the gt with the highest IoU; exact ties
go to the lowest gt index (``torch.max`` returns the first maximum). Everything else is
background.

Dynamic ATSS (the paper's eqs. 1-4) replaces the anchor IoU (AIoU) of step 3-4 by the
*combined* IoU of each candidate, using the IoU of the candidate's own decoded predicted box
with g (PIoU, from detached predictions)::

    CIoU         = w_a·AIoU + w_p·PIoU                                   (eq. 1)
    mean(CIoU)   = w_a·mean(AIoU) + w_p·mean(PIoU)                       (eq. 2)
    std(CIoU)    = w_a·std(AIoU)  + w_p·std(PIoU)   (sum of two stds)    (eq. 3)
    threshold    = mean(CIoU) + std(CIoU)                                (eq. 4)

The weights multiply each IoU set *before* its statistics are taken: with w ≥ 0,
mean(w·X) = w·mean(X) and std(w·X) = w·std(X), so eqs. 2-3 are the paper's equations
applied to the weighted terms w_a·AIoU and w_p·PIoU. The paper's method is w_a = w_p = 1;
(w_a, w_p) = (1, 0) is ATSS exactly, (0, 1) is Table 2's "PIoU only" row; Table 3's rows
are other constants and the iteration-dependent weights D_up = iter/max_iter and
D_down = 1 − iter/max_iter. Eq. 3 is deliberately *not* the std of the summed IoUs.
Positives satisfy CIoU ≥ threshold and the centre-inside rule; several gts → highest CIoU.

Candidates are always chosen by anchor-centre distance (steps 1-2), for every variant.
Soft classification targets (y = PIoU with QFL/VFL) and the IoU branch are not part of the
assigner: they are ``QualityCoupling(cls_target="iou", branch="iou")`` and
``DenseDetectionLoss(cls_loss="qfl"|"vfl")``.
"""
import logging
from typing import List, Mapping, Optional, Tuple, Union

import torch
from torch import Tensor

from ..box_ops import aligned_box_iou
from ..priors import Priors
from ..utils.progress import TrainingProgress
from .atss_core import (
    CandidateQuality, atss_match, candidate_predicted_iou, centerness_weights, select_topk_candidates, unbiased_std,
)
from .base import ASSIGNER_REGISTRY, Assignment, DenseAssigner, GTBatch

# select_topk_candidates and unbiased_std live in atss_core; re-exported here.
__all__ = ["ATSSAssigner", "DynamicATSSAssigner", "resolve_iou_weight", "select_topk_candidates", "unbiased_std"]

logger = logging.getLogger(__name__)

#: Iteration-dependent weights of Table 3: "up" = D_up = iter/max_iter,
#: "down" = D_down = 1 − iter/max_iter.
WEIGHT_SCHEDULES = ("up", "down")

IoUWeight = Union[float, int, str]


def resolve_iou_weight(weight: IoUWeight, progress: float) -> float:
    """The numeric weight of an IoU term at training progress ``iter/max_iter`` ∈ [0, 1].

    ``"up"`` → D_up = progress, ``"down"`` → D_down = 1 − progress (Table 3), a number →
    itself.
    """
    if isinstance(weight, str):
        if weight == "up":
            return float(progress)
        if weight == "down":
            return 1.0 - float(progress)
        raise ValueError(f"IoU weight {weight!r} is neither a number nor one of {WEIGHT_SCHEDULES}")
    return float(weight)


def _check_weight(name: str, weight: IoUWeight) -> IoUWeight:
    if isinstance(weight, str):
        if weight not in WEIGHT_SCHEDULES:
            raise ValueError(f"{name}={weight!r}: expected a number ≥ 0 or one of {WEIGHT_SCHEDULES}")
        return weight
    weight = float(weight)
    if not weight >= 0:  # also rejects NaN
        raise ValueError(f"{name}={weight} must be ≥ 0")
    return weight


@ASSIGNER_REGISTRY.register()
class ATSSAssigner(DenseAssigner):
    """ATSS adaptive training sample selection, with the Dynamic ATSS combined IoU as an
    option (see the module docstring for the algorithm and equations).

    With the defaults (``anchor_iou_weight=1``, ``pred_iou_weight=0``) this is ATSS and
    ignores predictions. :class:`DynamicATSSAssigner` is the same class with the paper's
    defaults (both weights 1).

    Args:
        topk: candidates per level and gt (k = 9).
        center_margin: an anchor centre must be more than this many pixels inside every
            side of the gt (0.01 in the ATSS code).
        regression_weight: "centerness" weights each positive's box loss by the centerness
            of its anchor centre w.r.t. its gt sides (FCOS eq. 3; the ATSS code); "uniform"
            weights them 1.
        anchor_iou_weight: w_a, the weight of the anchor IoUs: a number ≥ 0, or "up" /
            "down" for D_up / D_down (Table 3).
        pred_iou_weight: w_p, the weight of the predicted IoUs; same values. Non-zero (or a
            schedule) makes the assigner read the detached predicted boxes.

    D_up / D_down need the training progress iter/max_iter: it arrives as the ``progress``
    argument of the call (:class:`~dsla_d2.utils.progress.TrainingProgress`, set on the
    model by the trainer's :class:`~dsla_d2.engine.TrainingProgressHook`). Without one
    (an assigner called on its own) a schedule is evaluated at iteration 0, with a warning.

    ``extras`` of the returned :class:`Assignment`:
        ``threshold`` (N, G): t_g (eq. 4; mean + std of the AIoUs for ATSS), 0 for
        invalid gts; ``matched_iou`` (N, R): the (combined) IoU of each positive with its
        gt, 0 on background; ``iou_weights`` (2,): (w_a, w_p) used for this batch.
    """

    def __init__(
        self,
        topk: int = 9,
        center_margin: float = 0.01,
        regression_weight: str = "centerness",
        anchor_iou_weight: IoUWeight = 1.0,
        pred_iou_weight: IoUWeight = 0.0,
    ):
        super().__init__()
        if int(topk) < 1:
            raise ValueError(f"topk={topk} must be ≥ 1")
        if regression_weight not in ("centerness", "uniform"):
            raise ValueError(f"regression_weight must be 'centerness' or 'uniform', got {regression_weight!r}")
        self.topk = int(topk)
        self.center_margin = float(center_margin)
        self.regression_weight = regression_weight
        self.anchor_iou_weight = _check_weight("anchor_iou_weight", anchor_iou_weight)
        self.pred_iou_weight = _check_weight("pred_iou_weight", pred_iou_weight)
        if self.anchor_iou_weight == 0.0 and self.pred_iou_weight == 0.0:
            raise ValueError("anchor_iou_weight and pred_iou_weight cannot both be 0")
        self._warned_no_progress = False

    @property
    def required_predictions(self):  # overrides DenseAssigner's class attribute
        return ("pred_boxes",) if self.pred_iou_weight != 0.0 else ()

    def extra_repr(self) -> str:
        return (
            f"topk={self.topk}, center_margin={self.center_margin}, regression_weight={self.regression_weight!r}, "
            f"anchor_iou_weight={self.anchor_iou_weight!r}, pred_iou_weight={self.pred_iou_weight!r}"
        )

    # ------------------------------------------------------------------ weights
    def _uses_schedule(self) -> bool:
        return isinstance(self.anchor_iou_weight, str) or isinstance(self.pred_iou_weight, str)

    def iou_weights(self, progress: Optional[TrainingProgress] = None):
        """(w_a, w_p) at the given training progress (iteration 0 if None)."""
        if progress is None:
            if self._uses_schedule() and not self._warned_no_progress:
                logger.warning("%s: no training progress given; D_up/D_down use iteration 0", type(self).__name__)
                self._warned_no_progress = True
            fraction = 0.0
        else:
            fraction = progress.fraction
        return (
            resolve_iou_weight(self.anchor_iou_weight, fraction),
            resolve_iou_weight(self.pred_iou_weight, fraction),
        )

    # ------------------------------------------------------------------ assignment
    def candidate_quality(
        self, priors: Priors, gt: GTBatch, predictions: Mapping[str, Tensor], weights
    ) -> CandidateQuality:
        """The thresholded quantity of ATSS / Dynamic ATSS: the weighted terms
        [(w_a, AIoU), (w_p, PIoU)] of each candidate (terms of weight 0 are left out)."""
        w_a, w_p = weights
        anchors = priors.anchors
        pred_boxes = predictions.get("pred_boxes")
        if self.required_predictions and pred_boxes is None:
            raise ValueError(f"{type(self).__name__} with pred_iou_weight={self.pred_iou_weight!r} needs pred_boxes")
        gt_b = gt.boxes.to(anchors.dtype)[:, None]  # (N, 1, G, 4)

        def quality(cand: Tensor) -> List[Tuple[float, Tensor]]:
            terms = []
            if w_a != 0.0:
                terms.append((w_a, aligned_box_iou(anchors[cand], gt_b)))  # AIoU (N, K, G)
            if w_p != 0.0:
                terms.append((w_p, candidate_predicted_iou(pred_boxes.to(anchors.dtype), cand, gt_b)))  # PIoU
            return terms

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
            priors: R priors; ``priors.anchors`` (R, 4) are the square anchors.
            gt: padded gts (N, G).
            predictions: ``"pred_boxes"`` (N, R, 4), the detached decoded predicted boxes,
                is read when w_p ≠ 0 (:attr:`required_predictions`).
            progress: training progress, for D_up / D_down.
        """
        weights = self.iou_weights(progress)
        quality = self.candidate_quality(priors, gt, predictions, weights)
        match = atss_match(priors, gt, quality, self.topk, self.center_margin)
        reg_weights = None
        if self.regression_weight == "centerness" and gt.boxes.shape[1] and len(priors):
            reg_weights = centerness_weights(priors, gt, match.matched)
        extras = {
            "threshold": match.threshold,
            "matched_iou": match.quality,
            "iou_weights": torch.tensor(list(weights), device=priors.anchors.device),
        }
        return Assignment.from_matches(gt, match.matched, num_classes, reg_weights=reg_weights, extras=extras)


@ASSIGNER_REGISTRY.register()
class DynamicATSSAssigner(ATSSAssigner):
    """Dynamic ATSS: :class:`ATSSAssigner` with the combined IoU CIoU = AIoU + PIoU
    (eqs. 1-4, weights 1:1 by default). Always reads the (detached) predicted boxes, even
    for a weight schedule that is momentarily 0.

    Args: as :class:`ATSSAssigner`, with ``pred_iou_weight=1.0`` by default.
    """

    def __init__(self, *, anchor_iou_weight: IoUWeight = 1.0, pred_iou_weight: IoUWeight = 1.0, **kwargs):
        super().__init__(anchor_iou_weight=anchor_iou_weight, pred_iou_weight=pred_iou_weight, **kwargs)

    @property
    def required_predictions(self):
        return ("pred_boxes",)
