"""DW's loss (Li et al., CVPR 2022, §3.2-3.5 and eq. 11-12; the authors' ``dw_head.py``).

For every in-bag pair (point p, gt g) handed over by :class:`~dsla_d2.assigners.DWAssigner`
(``Assignment.pairs``, with the centre prior G), with s = sigmoid(cls)·sigmoid(objectness)
(the objectness has no target: it learns only through s) at g's class c_g::

    L      = 1 − GIoU(predicted box of p, g)                      with gradient
    t      = s·exp(−β·L)               (code; paper eq. 3: s·u^β)  detached
    w_pos  = e^{μt}·t·G / Σ_bag e^{3t}·t·G   (code; paper: / Σ_bag e^{μt}·t·G)  detached
    P_neg  = per-bag rescaled (4/3)(1 − u²), 1 for u < 0.5  (code; paper: fixed curve)

P_neg is written into a (points × classes) grid at c_g (the minimum where same-class bags
overlap) that is 1 everywhere else; w_neg = P_neg·s^γ2 with P_neg detached and s^γ2 **not**
detached (I_neg, eq. 7-8). The three terms (code; the paper's eq. 12 as the code has it)::

    loss_cls_pos = 0.25·Σ_pairs w_pos·(−log s) / N_gt
    loss_loc     = 0.25·Σ_pairs w_pos·(−log p_loc) / N_gt,   −log p_loc = β·L
    loss_cls_neg = Σ_(points, classes) w_neg·(−log(1 − s)) / N_neg

N_gt = max(all-reduce-mean(number of valid gts), 1); N_neg = max(all-reduce-mean(Σ(1 −
P_neg)), 1). Logs use log-sigmoid forms (log s = logσ(c) + logσ(o), 1 − s =
σ(c)·(e^{−c} + σ(−o))): the code's BCE on probabilities, but finite for any logits (the
code clamps log at −100).

Table 5's ablations (``negative_weights``) change only the **in-bag** cells (p, c_g):
"dual" P_neg·s^γ2 (the method), "pos_only" 0 (positive weights only), "no_p_neg" s^γ2,
"no_i_neg" P_neg, "one_minus_pos" 1 − w_pos clamped to [0, 1]. Outside the bags every
variant keeps the focal-style s^γ2 negative the method has there (P_neg = 1): the paper
says anchors outside the bag are plain negatives; an unweighted −log(1 − s) on every
background cell would not be an ablation of the weighting.
"""
from dataclasses import dataclass
from typing import Dict, Mapping

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..assigners.base import Assignment
from ..box_ops import aligned_box_iou
from ..priors import Priors
from ..utils.comm import normalizer
from ..utils.events import put_scalar
from .box_losses import iou_loss
from .dw_weights import FORMS, bag_rescaled_p_neg, consistency, p_neg_curve, positive_weights

__all__ = ["DWLoss", "DWTerms", "NEGATIVE_WEIGHTS", "NEG_NORMALIZERS"]

NEGATIVE_WEIGHTS = ("dual", "pos_only", "no_p_neg", "no_i_neg", "one_minus_pos")
NEG_NORMALIZERS = ("one_minus_p_neg", "num_gts")


@dataclass
class DWTerms:
    """The pieces of DW's loss for a batch (P pairs, N images, R points, C classes).

    Attributes:
        log_score: (P,) log s at each pair's gt class, with gradient.
        loc_loss: (P,) L = 1 − GIoU, with gradient.
        pos_weight: (P,) w_pos, detached.
        neg_factor: (N, R, C) P_neg (or the ablation's in-bag stand-in), 1 outside bags; detached.
        neg_weight: (N, R, C) w_neg (with gradient through s^γ2).
        neg_bce: (N, R, C) −log(1 − s), with gradient.
        num_gts: number of valid gts in this process's batch.
    """

    log_score: Tensor
    loc_loss: Tensor
    pos_weight: Tensor
    neg_factor: Tensor
    neg_weight: Tensor
    neg_bce: Tensor
    num_gts: Tensor


class DWLoss(nn.Module):
    """
    Args:
        beta: β of the consistency (p_loc = e^{−βL}; paper u^β) — 5.
        mu: μ of the positive weights' numerator e^{μt} — 5.
        mu_norm: the code's exponent in the bag denominator e^{3t} — 3 ("code" form only).
        gamma_p_neg: γ1 of the P_neg curve — 2.
        gamma_i_neg: γ2 of I_neg = s^γ2 — 2.
        pos_weight_form: "code" or "paper" (t and the bag normalisation, see above).
        p_neg_form: "code" (per-bag rescaled) or "paper" (fixed curve through (0.95, 0)).
        negative_weights: Table 5's rows, see :data:`NEGATIVE_WEIGHTS` and above.
        neg_normalizer: "one_minus_p_neg" (N_neg = Σ(1 − P_neg), the code) or "num_gts"
            (N_gt; for "no_p_neg", whose Σ(1 − P_neg) is 0, and "pos_only").
        pos_loss_weight: the code's 0.25 on loss_cls_pos and loss_loc.
        neg_loss_weight: weight of loss_cls_neg (1).
    """

    def __init__(
        self,
        *,
        beta: float = 5.0,
        mu: float = 5.0,
        mu_norm: float = 3.0,
        gamma_p_neg: float = 2.0,
        gamma_i_neg: float = 2.0,
        pos_weight_form: str = "code",
        p_neg_form: str = "code",
        negative_weights: str = "dual",
        neg_normalizer: str = "one_minus_p_neg",
        pos_loss_weight: float = 0.25,
        neg_loss_weight: float = 1.0,
    ):
        super().__init__()
        for name, value, allowed in (
            ("pos_weight_form", pos_weight_form, FORMS),
            ("p_neg_form", p_neg_form, FORMS),
            ("negative_weights", negative_weights, NEGATIVE_WEIGHTS),
            ("neg_normalizer", neg_normalizer, NEG_NORMALIZERS),
        ):
            if value not in allowed:
                raise ValueError(f"{name}={value!r} is not one of {allowed}")
        for name, value in (("beta", beta), ("gamma_p_neg", gamma_p_neg)):
            if not value > 0:
                raise ValueError(f"{name}={value} must be > 0")
        self.beta = float(beta)
        self.mu = float(mu)
        self.mu_norm = float(mu_norm)
        self.gamma_p_neg = float(gamma_p_neg)
        self.gamma_i_neg = float(gamma_i_neg)
        self.pos_weight_form = pos_weight_form
        self.p_neg_form = p_neg_form
        self.negative_weights = negative_weights
        self.neg_normalizer = neg_normalizer
        self.pos_loss_weight = float(pos_loss_weight)
        self.neg_loss_weight = float(neg_loss_weight)

    # ------------------------------------------------------------------ the weights
    def terms(self, outputs: Mapping[str, Tensor], assignment: Assignment, quality) -> DWTerms:
        """Every per-pair and per-cell piece of the loss (shared by forward and
        :meth:`describe_targets`)."""
        if getattr(quality, "branch", None) != "objectness" or "quality" not in outputs:
            raise ValueError(
                "DWLoss needs the objectness output: QualityCoupling(branch='objectness') and a head with a "
                f"quality branch; got branch={getattr(quality, 'branch', None)!r}, outputs {sorted(outputs)}"
            )
        pairs, gt = assignment.pairs, assignment.gt
        if pairs is None or gt is None or "center_prior" not in pairs.values:
            raise ValueError("DWLoss needs candidate bags (Assignment.pairs with 'center_prior', from DWAssigner)")
        cls, obj = outputs["cls_logits"], outputs["quality"]  # (N, R, C), (N, R, 1)
        n, r, c = cls.shape
        log_cls, log_obj = F.logsigmoid(cls), F.logsigmoid(obj)
        log_s = log_cls + log_obj
        # 1 − σ(c)σ(o) = σ(−c) + σ(c)σ(−o) = σ(c)·(e^{−c} + σ(−o)); log σ(−o) = log σ(o) − o
        neg_bce = -(log_cls + torch.logaddexp(-cls, log_obj - obj))

        img, pri = pairs.image, pairs.prior
        cls_of_pair = gt.classes[img, pairs.gt]
        log_score = log_s[img, pri, cls_of_pair]
        target = gt.boxes[img, pairs.gt]
        pred = outputs["pred_boxes"][img, pri]
        loc_loss = iou_loss(pred, target, "giou")
        num_bags = n * pairs.num_gts
        with torch.no_grad():
            iou = aligned_box_iou(pred.detach(), target)
            t = consistency(log_score.detach().exp(), loc_loss.detach(), iou, self.beta, self.pos_weight_form)
            w_pos = positive_weights(
                t, pairs.values["center_prior"], pairs.bag, num_bags, self.mu, self.mu_norm, self.pos_weight_form
            )
            in_bag = self._in_bag_factor(iou, w_pos, pairs.bag, num_bags)
            cell = (img * r + pri) * c + cls_of_pair
            factor = torch.ones(n * r * c, dtype=cls.dtype, device=cls.device)
            factor = factor.scatter_reduce(0, cell, in_bag.to(cls.dtype), "amin").view(n, r, c)
        importance = torch.exp(self.gamma_i_neg * log_s)  # I_neg = s^γ2, not detached
        if self.negative_weights in ("no_i_neg", "one_minus_pos"):  # no I_neg on in-bag cells
            bag_cell = torch.zeros(n * r * c, dtype=torch.bool, device=cls.device)
            bag_cell[cell] = True
            neg_weight = torch.where(bag_cell.view(n, r, c), factor, factor * importance)
        else:
            neg_weight = factor * importance
        num_gts = gt.valid.sum().to(cls.dtype)
        if len(pairs):
            put_scalar("dw/pairs_per_gt", len(pairs) / max(num_gts.item(), 1.0))
            put_scalar("dw/mean_pair_iou", iou.mean())
        return DWTerms(log_score, loc_loss, w_pos, factor, neg_weight, neg_bce, num_gts)

    def _in_bag_factor(self, iou: Tensor, w_pos: Tensor, bag: Tensor, num_bags: int) -> Tensor:
        """(P,) what multiplies the in-bag cells' negative loss: P_neg or Table 5's stand-in."""
        if self.negative_weights == "pos_only":
            return torch.zeros_like(iou)
        if self.negative_weights == "no_p_neg":
            return torch.ones_like(iou)
        if self.negative_weights == "one_minus_pos":
            return (1 - w_pos).clamp(min=0, max=1)
        if self.p_neg_form == "code":
            return bag_rescaled_p_neg(iou, bag, num_bags, self.gamma_p_neg)
        return p_neg_curve(iou, self.gamma_p_neg, form="paper")

    # ------------------------------------------------------------------ the loss contract
    def forward(
        self, outputs: Mapping[str, Tensor], priors: Priors, assignment: Assignment, *, box_coder, quality
    ) -> Dict[str, Tensor]:
        """
        Args:
            outputs: flattened head outputs with gradient: ``"cls_logits"`` (N, R, C),
                ``"quality"`` (N, R, 1) objectness logits, ``"pred_boxes"`` (N, R, 4).
            assignment: from :class:`~dsla_d2.assigners.DWAssigner` (bags in ``pairs``).
            box_coder: unused (DW's box loss is on decoded boxes).
            quality: must have ``branch="objectness"``.
        Returns:
            ``loss_cls_pos``, ``loss_loc``, ``loss_cls_neg``.
        """
        terms = self.terms(outputs, assignment, quality)
        num_gts = normalizer(terms.num_gts)
        if self.neg_normalizer == "num_gts":
            num_neg = num_gts
        else:
            num_neg = normalizer((1 - terms.neg_factor).sum())
        put_scalar("dw/neg_normalizer", num_neg)
        w = terms.pos_weight
        return {
            "loss_cls_pos": self.pos_loss_weight * (w * -terms.log_score).sum() / num_gts,
            "loss_loc": self.pos_loss_weight * (w * self.beta * terms.loc_loss).sum() / num_gts,
            "loss_cls_neg": self.neg_loss_weight * (terms.neg_weight * terms.neg_bce).sum() / num_neg,
        }

    @torch.no_grad()
    def describe_targets(
        self, outputs: Mapping[str, Tensor], priors: Priors, assignment: Assignment, *, box_coder, quality
    ) -> Dict[str, Tensor]:
        """Per-prior view of the weights (the assignment visualiser and statistics), (N, R) each:

        ``cls_target`` and ``reg_weight``: w_pos of the prior's best pair (the largest over
        the bags holding it; both terms of a pair carry the same w_pos; the code form's
        weights may exceed 1), 0 outside bags; ``reg_mask``: where that w_pos > 0;
        ``cls_target_static``: the assigner's centre prior G of the prior's bag
        (``Assignment.cls_scores``); ``cls_weight``: 1 (every prior has a negative term);
        ``p_neg``: the smallest P_neg (or stand-in) over classes, 1 outside bags;
        ``neg_weight``: the largest w_neg over classes.
        """
        terms = self.terms(outputs, assignment, quality)
        pairs = assignment.pairs
        n, r, _ = outputs["cls_logits"].shape
        flat = pairs.image * r + pairs.prior
        best = terms.pos_weight.new_zeros(n * r).scatter_reduce(0, flat, terms.pos_weight, "amax").view(n, r)
        return {
            "cls_target": best,
            "cls_target_static": assignment.cls_scores,
            "cls_weight": torch.ones_like(best),
            "reg_mask": best > 0,
            "reg_weight": best.clone(),
            "p_neg": terms.neg_factor.min(dim=-1).values,
            "neg_weight": terms.neg_weight.max(dim=-1).values,
        }
