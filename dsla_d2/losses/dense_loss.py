"""Classification + box (+ quality-branch) losses of a dense detector, driven by an
:class:`Assignment`.

The loss contract (every loss module of dsla_d2 follows it)::

    losses = loss(outputs, priors, assignment, box_coder=..., quality=...)  # {"loss_*": scalar}

``outputs`` holds **every** flattened head output with gradient, (N, R, K) each
(``"cls_logits"``, ``"box_reg"``, optional ``"quality"``, ...) plus the decoded
``"pred_boxes"`` (N, R, 4); the loss owns every term it returns, so the meta-architecture
has no method-specific branch.
"""
from typing import Dict, Mapping, Optional

import torch
import torch.nn.functional as F
from fvcore.nn import sigmoid_focal_loss
from torch import Tensor, nn

from ..assigners.base import Assignment
from ..box_ops import aligned_box_iou
from ..priors import Priors
from ..utils.comm import normalizer, reduce_mean
from ..utils.events import put_scalar
from .box_losses import BOX_LOSS_TYPES, iou_loss
from .level_weights import LevelWeighting
from .quality_focal import quality_focal_loss, soft_one_hot, varifocal_loss

__all__ = ["DenseDetectionLoss", "count_normalizer", "floored_normalizer"]

CLS_LOSSES = ("focal", "qfl", "vfl")
#: Count normalisers: "num_pos" = Σ positives; "num_pos_per_image_min1" = Σ_images
#: max(positives of the image, 1) (mmdetection's anchor heads: ATSS, DDOD).
COUNT_NORMALIZERS = ("num_pos", "num_pos_per_image_min1")
CLS_NORMALIZERS = COUNT_NORMALIZERS + ("sum_scores", "num_pos_plus_images")
BOX_NORMALIZERS = COUNT_NORMALIZERS + ("sum_weights",)
#: What a normaliser below its minimum becomes: "clamp" = the minimum (max(N, min):
#: mmdetection's ``clamp(min=1)``), "one" = 1 (the TOOD authors: N, or 1 if N < 1e-12).
NORMALIZER_FLOORS = ("clamp", "one")


def count_normalizer(mask: Tensor, kind: str, minimum: float = 1.0, floor: str = "clamp") -> Tensor:
    """max(all-reduce-mean of the count of ``mask`` (N, R), ``minimum``) for ``kind`` in
    :data:`COUNT_NORMALIZERS` (``floor="one"``: 1 instead of the minimum)."""
    if kind == "num_pos_per_image_min1":
        return floored_normalizer(mask.sum(dim=1).clamp(min=1).sum().float(), minimum, floor)
    return floored_normalizer(mask.sum().float(), minimum, floor)


def floored_normalizer(total: Tensor, minimum: float = 1.0, floor: str = "clamp") -> Tensor:
    """The all-reduce-mean N of ``total``; below ``minimum`` it becomes ``minimum``
    (``floor="clamp"``) or 1 (``"one"``), see :data:`NORMALIZER_FLOORS`."""
    if floor == "clamp":
        return normalizer(total, minimum)
    mean = reduce_mean(total.detach().float())
    return torch.where(mean < minimum, torch.ones_like(mean), mean)


class DenseDetectionLoss(nn.Module):
    """Loss terms shared by every assigner.

    Args:
        cls_loss: "focal" (hard targets; sigmoid focal loss, Lin et al. 2017), "qfl"
            (Quality Focal Loss on the soft targets), "vfl" (Varifocal Loss).
        cls_normalizer: "num_pos" (all-reduced count of positives),
            "num_pos_per_image_min1" (Σ_images max(positives, 1): ATSS/DDOD code),
            "sum_scores" (all-reduced Σ soft targets, DSLA's Σ label_d) or
            "num_pos_plus_images" (FoveaBox). Always ≥ 1.
        box_loss: "iou" (−log IoU), "linear_iou", "squared_iou" (1 − IoU², YOLOX), "giou" on
            decoded boxes, or "smooth_l1" on the box coder's encoded targets (FoveaBox).
        box_normalizer: "num_pos", "num_pos_per_image_min1" (of the regression positives)
            or "sum_weights" (Σ regression weights: FCOS/ATSS centerness, DSLA label_s).
        box_normalizer_min: lower bound of the box normaliser: 1 (ATSS, mmdetection's
            ``clamp(min=1)``) or 1e-6 (FCOS's max(Σ centerness targets, 1e-6), so that a
            batch whose positives have a small total weight is not down-weighted).
        cls_normalizer_min: the same for the classification normaliser (1).
        normalizer_floor: what a classification or box normaliser below its minimum
            becomes: "clamp" (the minimum) or "one" (1: the TOOD authors' "N, or 1 if
            N < 1e-12", with both minimums 1e-12), see :data:`NORMALIZER_FLOORS`.
        warmup_cls_loss: the classification loss of assignments that mark themselves as
            warm-up ones (``Assignment.extras["warmup"]`` true: TOOD's first epochs, ATSS
            with hard targets and focal loss before TAL with QFL); None: ``cls_loss``
            always.
        focal_alpha, focal_gamma: focal loss; qfl_beta; vfl_alpha, vfl_gamma.
        smooth_l1_beta: SmoothL1 β for "smooth_l1".
        cls_weight, box_weight: loss weights.
        quality_normalizer: normaliser of the quality branch's BCE (its weight is the
            quality coupling's ``branch_weight``): "num_pos" or "num_pos_per_image_min1",
            of the regression positives.
        level_weighting: a :class:`~dsla_d2.losses.LevelWeighting` (DDOD's per-level
            weights from positive counts: classification loss × the level's cls weight,
            box and quality losses × its reg weight), or None. Level weights multiply the
            per-prior losses, never the normalisers.
    """

    def __init__(
        self,
        *,
        cls_loss: str = "focal",
        cls_normalizer: str = "num_pos",
        box_loss: str = "giou",
        box_normalizer: str = "num_pos",
        box_normalizer_min: float = 1.0,
        focal_alpha: float = 0.25,
        focal_gamma: float = 2.0,
        qfl_beta: float = 2.0,
        vfl_alpha: float = 0.75,
        vfl_gamma: float = 2.0,
        smooth_l1_beta: float = 0.11,
        cls_weight: float = 1.0,
        box_weight: float = 1.0,
        quality_normalizer: str = "num_pos",
        level_weighting: Optional[LevelWeighting] = None,
        cls_normalizer_min: float = 1.0,
        normalizer_floor: str = "clamp",
        warmup_cls_loss: Optional[str] = None,
    ):
        super().__init__()
        for name, value, allowed in (
            ("cls_loss", cls_loss, CLS_LOSSES),
            ("cls_normalizer", cls_normalizer, CLS_NORMALIZERS),
            ("box_loss", box_loss, BOX_LOSS_TYPES + ("smooth_l1",)),
            ("box_normalizer", box_normalizer, BOX_NORMALIZERS),
            ("quality_normalizer", quality_normalizer, COUNT_NORMALIZERS),
            ("normalizer_floor", normalizer_floor, NORMALIZER_FLOORS),
            ("warmup_cls_loss", warmup_cls_loss, (None,) + CLS_LOSSES),
        ):
            if value not in allowed:
                raise ValueError(f"{name}={value!r} is not one of {allowed}")
        self.cls_loss = cls_loss
        self.cls_normalizer = cls_normalizer
        self.box_loss = box_loss
        self.box_normalizer = box_normalizer
        if not box_normalizer_min > 0:
            raise ValueError(f"box_normalizer_min={box_normalizer_min} must be > 0")
        self.box_normalizer_min = float(box_normalizer_min)
        if not cls_normalizer_min > 0:
            raise ValueError(f"cls_normalizer_min={cls_normalizer_min} must be > 0")
        self.cls_normalizer_min = float(cls_normalizer_min)
        self.normalizer_floor = normalizer_floor
        self.warmup_cls_loss = warmup_cls_loss
        self.focal_alpha = focal_alpha
        self.focal_gamma = focal_gamma
        self.qfl_beta = qfl_beta
        self.vfl_alpha = vfl_alpha
        self.vfl_gamma = vfl_gamma
        self.smooth_l1_beta = smooth_l1_beta
        self.cls_weight = cls_weight
        self.box_weight = box_weight
        self.quality_normalizer = quality_normalizer
        self.level_weighting = level_weighting

    def classification(
        self, logits: Tensor, assignment: Assignment, target_scores: Tensor, weights: Optional[Tensor] = None
    ) -> Tensor:
        """
        Args:
            logits: (N, R, C).
            target_scores: (N, R) target for the labelled class (after quality coupling).
            weights: (N, R) per-prior loss weights; default ``assignment.cls_weights``.
        """
        num_classes = logits.shape[-1]
        pos = assignment.pos_mask
        kind = self.cls_loss_of(assignment)
        labelled = self.labelled_class_target(assignment, target_scores).to(logits.dtype)
        target = soft_one_hot(assignment.labels, labelled, num_classes)
        if kind == "focal":
            loss = sigmoid_focal_loss(logits, target, alpha=self.focal_alpha, gamma=self.focal_gamma, reduction="none")
        elif kind == "qfl":
            loss = quality_focal_loss(logits, target, beta=self.qfl_beta)
        else:
            loss = varifocal_loss(logits, target, alpha=self.vfl_alpha, gamma=self.vfl_gamma)
        loss = (loss.sum(dim=-1) * (assignment.cls_weights if weights is None else weights)).sum()

        low, floor = self.cls_normalizer_min, self.normalizer_floor
        if self.cls_normalizer == "sum_scores":
            total = torch.where(pos, target_scores, torch.zeros_like(target_scores)).sum()
            norm = floored_normalizer(total, low, floor)
        elif self.cls_normalizer == "num_pos_plus_images":
            norm = floored_normalizer(pos.sum().float() + pos.shape[0], low, floor)
        else:
            norm = count_normalizer(pos, self.cls_normalizer, low, floor)
        return self.cls_weight * loss / norm

    def regression(
        self,
        pred_boxes: Tensor,
        pred_deltas: Tensor,
        assignment: Assignment,
        box_coder,
        priors,
        weights: Optional[Tensor] = None,
    ) -> Tensor:
        """
        Args:
            pred_boxes: (N, R, 4) decoded predicted boxes (with gradient).
            pred_deltas: (N, R, 4) raw regression output (for "smooth_l1").
            weights: (N, R) per-prior loss weights; default ``assignment.reg_weights``.
                The "sum_weights" normaliser always sums the assignment's weights.
        """
        mask = assignment.reg_mask
        own = assignment.reg_weights[mask]
        weights = own if weights is None else weights[mask]
        if self.box_loss == "smooth_l1":
            targets = box_coder.encode(assignment.box_targets, priors)
            per_pos = F.smooth_l1_loss(pred_deltas[mask], targets[mask], beta=self.smooth_l1_beta, reduction="none")
            per_pos = per_pos.sum(-1)
        else:
            per_pos = iou_loss(pred_boxes[mask], assignment.box_targets[mask], self.box_loss)
        if self.box_normalizer == "sum_weights":
            norm = floored_normalizer(own.sum(), self.box_normalizer_min, self.normalizer_floor)
        else:
            norm = count_normalizer(mask, self.box_normalizer, self.box_normalizer_min, self.normalizer_floor)
        # An empty positive set still returns a loss connected to the graph.
        loss = (per_pos * weights).sum() + 0.0 * pred_deltas.sum()
        return self.box_weight * loss / norm

    def prior_weights(self, priors: Priors, assignment: Assignment, update: bool) -> Dict[str, Optional[Tensor]]:
        """(N, R) per-prior weights of the loss terms (no gradient): ``"cls"`` and ``"reg"``
        the assignment's ``cls_weights`` / ``reg_weights`` times the level weights, and
        ``"quality"`` the quality branch's (None: unweighted). Without a level weighting they
        are the assignment's own.

        ``update``: a training step — the level weighting adds the batch to its cumulative
        counters (otherwise the same weights are computed and nothing is stored).
        """
        weights = {"cls": assignment.cls_weights, "reg": assignment.reg_weights, "quality": None}
        if self.level_weighting is None:
            return weights
        with torch.no_grad():
            # DDOD eqs. 3-5: level l's losses × w_l, classification by the counts of the
            # classification positives, box and IoU branch by those of the regression ones.
            w_cls, w_reg = self.level_weighting(priors, assignment.pos_mask, assignment.reg_mask, update)
            weights["cls"] = assignment.cls_weights * w_cls[priors.levels]
            weights["reg"] = assignment.reg_weights * w_reg[priors.levels]
            weights["quality"] = w_reg[priors.levels].expand_as(assignment.reg_weights)
        if update:
            for level, (wc, wr) in enumerate(zip(w_cls.tolist(), w_reg.tolist())):
                put_scalar(f"level_weight/cls_{level}", wc)
                put_scalar(f"level_weight/reg_{level}", wr)
        return weights

    def forward(
        self, outputs: Mapping[str, Tensor], priors: Priors, assignment: Assignment, *, box_coder, quality
    ) -> Dict[str, Tensor]:
        """
        Args:
            outputs: flattened head outputs with gradient: ``"cls_logits"`` (N, R, C),
                ``"box_reg"`` (N, R, 4), ``"pred_boxes"`` (N, R, 4) decoded, and
                ``"quality"`` (N, R, 1) when the head has a quality branch.
            priors: the R priors.
            assignment: targets (see :class:`~dsla_d2.assigners.Assignment`).
            box_coder: encodes box targets for ``box_loss="smooth_l1"``.
            quality: the model's :class:`~dsla_d2.quality.QualityCoupling` (soft
                classification targets, and the branch loss if it has one).
        Returns:
            ``loss_cls``, ``loss_box_reg`` and, with a supervised quality branch,
            ``loss_quality``.
        """
        t = self.loss_targets(outputs, assignment, quality=quality)
        w = self.prior_weights(priors, assignment, update=self.training)
        put_scalar("num_pos_per_image", assignment.pos_mask.sum().item() / max(len(assignment.labels), 1))
        losses = {
            "loss_cls": self.classification(outputs["cls_logits"], assignment, t["target_scores"], w["cls"]),
            "loss_box_reg": self.regression(
                outputs["pred_boxes"], outputs["box_reg"], assignment, box_coder, priors, w["reg"]
            ),
        }
        if quality.supervises_branch:
            norm = count_normalizer(assignment.reg_mask, self.quality_normalizer)
            losses["loss_quality"] = quality.branch_loss(
                outputs["quality"][..., 0], priors, assignment, t["reg_ious"], weights=w["quality"], norm=norm
            )
        if assignment.reg_mask.any():
            put_scalar("mean_pos_iou", t["reg_ious"][assignment.reg_mask].mean())
        return losses

    def loss_targets(self, outputs: Mapping[str, Tensor], assignment: Assignment, *, quality) -> Dict[str, Tensor]:
        """The per-prior quantities every loss term is computed from (no gradient).

        IoUs of the detached predictions with their targets are the quality coupling's
        input (DSLA label_d, Dynamic ATSS soft targets, IoU branch) and a training
        statistic. Regression positives are measured against their regression gt,
        classification positives against their classification gt (the two differ only for
        DDOD).

        Returns:
            ``"reg_ious"`` (N, R) (0 off ``reg_mask``), ``"cls_ious"`` (N, R) (0 off the
            classification positives) and ``"target_scores"`` (N, R), the quality
            coupling's classification target of the labelled class.
        """
        with torch.no_grad():
            detached = outputs["pred_boxes"].detach()
            reg_ious = _masked_iou(detached, assignment.box_targets, assignment.reg_mask)
            if assignment.shares_positives:
                cls_ious = reg_ious
            else:
                cls_ious = _masked_iou(detached, assignment.cls_box_targets(), assignment.pos_mask)
            target_scores = quality.classification_targets(assignment, cls_ious)
        return {"reg_ious": reg_ious, "cls_ious": cls_ious, "target_scores": target_scores}

    def cls_loss_of(self, assignment: Assignment) -> str:
        """The classification loss for this assignment: ``warmup_cls_loss`` if it is set
        and the assignment is a warm-up one (``extras["warmup"]``), else ``cls_loss``."""
        warmup = assignment.extras.get("warmup")
        if self.warmup_cls_loss is not None and warmup is not None and bool(warmup):
            return self.warmup_cls_loss
        return self.cls_loss

    def labelled_class_target(self, assignment: Assignment, target_scores: Tensor) -> Tensor:
        """(N, R) target of the labelled class the classification loss uses: 1 on every
        positive for the hard focal loss, the quality-coupled soft target for QFL / VFL;
        0 on background."""
        if self.cls_loss_of(assignment) == "focal":
            return assignment.pos_mask.to(target_scores.dtype)
        return target_scores

    def describe_targets(
        self, outputs: Mapping[str, Tensor], priors: Priors, assignment: Assignment, *, box_coder, quality
    ) -> Dict[str, Tensor]:
        """What each prior learns, as the loss sees it (for visualisation and statistics),
        from the same :meth:`loss_targets` as :meth:`forward`, without gradient.

        Args: as :meth:`forward` (``box_coder`` is unused: it only encodes targets).
        Returns:
            (N, R) tensors: ``"cls_target"`` the classification target of the labelled class
            (DSLA label_d, Dynamic ATSS PIoU, 1 for hard methods; 0 on background),
            ``"cls_target_static"`` the assigner's score before quality coupling
            (``Assignment.cls_scores``: DSLA label_s), ``"cls_weight"`` the per-prior
            classification loss weight (DDOD's level weights included), ``"reg_mask"``
            (bool) the regression positives, ``"reg_weight"`` the box-loss weight (level
            weights included; 0 off ``reg_mask``), ``"cls_iou"`` /
            ``"reg_iou"`` the IoUs of the detached predictions with the classification /
            regression gt, and with a supervised branch ``"quality_target"`` (0 off
            ``reg_mask``).
        """
        t = self.loss_targets(outputs, assignment, quality=quality)
        w = self.prior_weights(priors, assignment, update=False)  # the level counters stay as they are
        with torch.no_grad():
            mask = assignment.reg_mask
            zeros = torch.zeros_like(t["reg_ious"])
            out = {
                "cls_target": self.labelled_class_target(assignment, t["target_scores"]),
                "cls_target_static": assignment.cls_scores,
                "cls_weight": w["cls"],
                "reg_mask": mask,
                "reg_weight": torch.where(mask, w["reg"], zeros),
                "cls_iou": t["cls_ious"],
                "reg_iou": t["reg_ious"],
            }
            if quality.supervises_branch:
                branch = quality.branch_targets(priors, assignment, t["reg_ious"])
                out["quality_target"] = torch.where(mask, branch, zeros)
        return out


def _masked_iou(pred_boxes: Tensor, targets: Tensor, mask: Tensor) -> Tensor:
    """(N, R) IoU of aligned boxes where ``mask``, 0 elsewhere."""
    ious = aligned_box_iou(pred_boxes, targets)
    return torch.where(mask, ious, torch.zeros_like(ious))
