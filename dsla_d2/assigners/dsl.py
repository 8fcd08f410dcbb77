"""RTMDet's dynamic soft-label assignment, DSL (Lyu, Zhang, Huang, Zhou, Wang, Liu, Zhang,
Chen, "RTMDet: An Empirical Study of Designing Real-Time Object Detectors",
arXiv:2212.07784), as mmdetection 3.3's ``DynamicSoftLabelAssigner`` (the authors'
release) has it where it is more specific than the paper.

Per image, with the class logits x and the decoded predicted boxes detached:

1. valid priors: those whose point lies strictly inside at least one gt (all four distances
   to its sides > 0). Every other prior is background and never enters a cost;
2. for every valid prior p and **every** gt g of the image (no per-pair "inside g" test:
   a prior inside A only still has a finite cost for B), the paper's cost
   C = λ1·C_cls + λ2·C_reg + λ3·C_center with λ = (1, 3, 1):

   * C_center = α^(d − β), α = 10, β = 3 (``soft_center_radius``), d = |point − gt centre|
     (Euclidean) divided by p's own stride (the code; the paper writes the distance without
     a unit). d is clamped to 30 (below);
   * C_reg = −log(u + 1e−7), u = IoU(predicted box of p, g);
   * C_cls = Σ_c BCE(x_c, y_c)·|y_c − σ(x_c)|², the soft label y = u at g's class and 0
     elsewhere: the paper's CE(P, Y_soft)·(Y_soft − P)², summed over every class as the
     code does (a class other than g's adds BCE(x_c, 0)·σ(x_c)²);
3. dynamic k_g = max(1, ⌊Σ of the min(13, #valid) largest u(·, g)⌋) over the valid priors;
4. each gt takes its k_g lowest-cost valid priors (ties: the lower prior index);
5. a prior taken by two gts or more goes to the gt of lowest cost **among all gts of the
   image** — the code's ``cost[multiple, :].min(dim=1)``, which may be a gt that did not
   take it (exact ties: the lowest gt index);
6. the soft target of a positive is u of its final pair: the QFL target of its class and the
   weight of its GIoU loss (``cls_scores`` = ``reg_weights`` = u).

The code builds the (valid priors × gts × classes) cost. This implementation is exact and
sparse — the same positives as the dense rules above, ties included
(``tests/test_dsl_assigner.py`` checks it against a dense reference) — because every term
of C is ≥ 0 up to rounding and C_center grows by 10× per stride of distance:

* k_g only needs g's 13 largest u among the valid priors' predicted boxes: TOOD's exact
  IoU-bounded search (:meth:`~dsla_d2.assigners.tal.TaskAlignedAssigner.candidates` with
  t = s^0·u^1 = u), on the predicted boxes of the valid priors only;
* a valid prior farther than D strides from g's centre costs more than B(D) = 10^(D − β)
  (less a rounding slack, :func:`cost_lower_bound`). Each gt enumerates the valid priors
  within D = 5 strides of its centre on every level (:func:`~dsla_d2.assigners.pairs.
  region_pair_chunks`, a square of half-side D·s_l); once it has k_g of them and the k_g-th
  lowest cost L is below B(D), its k_g lowest are its k_g lowest over all valid priors.
  Otherwise it searches again at the D with B(D) > L (or 2·D, with fewer than k_g found),
  and from D = 30 on over the whole image (beyond 30 strides every centre cost is the
  same 1e27, so only an exhaustive search orders them by prior index);
* step 5 needs, for a prior taken more than once, the lowest cost over every gt; the
  lowest cost U among the gts that took it bounds it, so only gts whose centre is within
  the D with B(D) > U (in p's strides) can win: found by a search of the gt centres sorted
  by image and x.

Memory follows the pairs near the gt centres (about (2·5 + 1)² per gt and level, in chunks
of :data:`~dsla_d2.assigners.pairs.MAX_PAIRS_PER_CHUNK`), plus one (priors × classes)
table of the valid priors' negative-class terms, computed in chunks; never priors × gts.

Numbers: every transcendental term (10^x, log, BCE, sigmoid) is computed in float64 and
rounded to float32 before the three terms are summed in float32, in the code's order
(cls + IoU) + centre; ties between pairs with the same inputs stay ties whichever path
computed them. The soft class term is Σ_c over a per-prior sum of the negative terms
BCE(x_c, 0)·σ(x_c)², minus g's class's negative term, plus its soft term.

Edge cases (defined, never NaN): no gt, or no point inside any gt, gives an empty
assignment for the image; a gt with no point inside it still takes its k = 1 (or more)
lowest-cost valid priors of other gts and may lose them in step 5 (the code). Degenerate
gts (zero width or height) and padding are ignored altogether (every assigner here does;
the code would give them a cost). d is clamped to 30 strides (centre cost ≤ 1e27; the
code's float32 10^(d − 3) overflows to inf beyond d ≈ 41.5). Logits: NaN counts as
probability 0 (logit −100, as TOOD's s = 0), ±inf as ±100, all clamped to ±100; a predicted
box that is not finite has u = 0. The top-13 IoUs are summed in float64 (the code: float32).
Masks' centres of mass (the code's option for instance segmentation) are not supported: the
gt centre is the box centre.
"""
import math
from typing import Iterator, Mapping, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

from ..box_ops import aligned_box_iou
from ..priors import Priors
from ..utils.progress import TrainingProgress
from . import pairs as _pairs
from .base import ASSIGNER_REGISTRY, Assignment, DenseAssigner, GTBatch
from .pairs import CandidatePairs, _row_chunks, rank_in_segments, region_pair_chunks
from .regions import centered_regions, level_stride_table
from .tal import TaskAlignedAssigner, _expand_runs
from .winners import PriorWinners

__all__ = [
    "DynamicSoftLabelAssigner",
    "soft_center_prior",
    "iou_cost",
    "soft_classification_cost",
    "dynamic_k",
    "sanitize_logits",
    "cost_lower_bound",
]

#: The code's ε of C_reg = −log(u + ε).
IOU_EPS = 1e-7
#: d (in strides) is clamped to this before 10^(d − β): the spec's guard against overflow.
MAX_CENTER_DISTANCE = 30.0
#: Logits are clamped to ±this (NaN → −this: probability 0); BCE stays finite.
LOGIT_LIMIT = 100.0
#: First search radius of every gt, in strides of each level (module docstring).
INITIAL_RADIUS = 5.0
#: Searches per gt before the exhaustive one is forced (a guard: a gt needs at most ~5).
MAX_ROUNDS = 8
#: Rounding slack of the lower bound B(D): relative, and absolute (+ iou_weight × this).
_REL_SLACK = 1e-5
_ABS_SLACK = 1e-5
_IOU_SLACK = 1e-6
#: Gt-centre search keys: image · SPAN + x clamped to ±LIMIT px (disjoint ranges per image).
_KEY_LIMIT = 2.0**24
_KEY_SPAN = 2.0**26
#: Rows of the (valid priors × classes) table of negative-class terms built at once.
_NEGATIVE_BLOCK = 2**20


# ------------------------------------------------------------------ cost terms
def sanitize_logits(logits: Tensor) -> Tensor:
    """Finite float32 logits: NaN → −100 (probability 0), ±inf → ±100, clamped to ±100."""
    limit = LOGIT_LIMIT
    return torch.nan_to_num(logits.float(), nan=-limit, posinf=limit, neginf=-limit).clamp(-limit, limit)


def soft_center_prior(
    distance: Tensor, soft_center_radius: float = 3.0, max_distance: float = MAX_CENTER_DISTANCE
) -> Tensor:
    """The paper's C_center = 10^(d − β) (β = ``soft_center_radius``) of (P,) distances d in
    strides, d clamped to ``max_distance``; float64 inside, float32 out."""
    d = distance.double().clamp(max=max_distance)
    return torch.pow(10.0, d - soft_center_radius).float()


def iou_cost(ious: Tensor, weight: float = 3.0) -> Tensor:
    """λ2·C_reg = −λ2·log(u + 1e−7) of (P,) IoUs (the paper's λ2 = 3); float32 out."""
    return (-weight * torch.log(ious.double() + IOU_EPS)).float()


def _negative_terms(x: Tensor) -> Tensor:
    """BCE(x, 0)·σ(x)² elementwise (float64): a class whose soft label is 0."""
    p = x.sigmoid()
    return F.binary_cross_entropy_with_logits(x, torch.zeros_like(x), reduction="none") * p * p


def _cls_cost(negative_sum: Tensor, label_logit: Tensor, ious: Tensor) -> Tensor:
    """Σ_c BCE(x_c, y_c)·|y_c − σ(x_c)|² from its parts (all (P,) float64): the sum of every
    class's negative term, minus the labelled class's, plus its soft term; float32 out."""
    p = label_logit.sigmoid()
    soft = F.binary_cross_entropy_with_logits(label_logit, ious, reduction="none") * (ious - p) ** 2
    return (negative_sum - _negative_terms(label_logit) + soft).float()


def soft_classification_cost(logits: Tensor, labels: Tensor, ious: Tensor) -> Tensor:
    """The paper's soft C_cls as the code sums it over every class.

    Args:
        logits: (P, C) class logits (sanitised here, :func:`sanitize_logits`).
        labels: (P,) int64 gt class of each pair; ious: (P,) u, the soft label.
    Returns:
        (P,) float32 Σ_c BCE(x_c, y_c)·|y_c − σ(x_c)|², y = u·onehot(label).
    """
    x = sanitize_logits(logits).double()
    label_logit = x.gather(1, labels[:, None].long())[:, 0]
    return _cls_cost(_negative_terms(x).sum(dim=1), label_logit, ious.double())


def dynamic_k(top_iou_sum: Tensor) -> Tensor:
    """k = max(1, ⌊Σ of the top IoUs⌋) (RTMDet/SimOTA's dynamic k) of (...) sums -> int64."""
    return torch.floor(top_iou_sum).clamp(min=1).long()


def cost_lower_bound(radius: Tensor, soft_center_radius: float, iou_weight: float) -> Tensor:
    """B(D): every pair whose distance exceeds D strides costs more than this (float64).

    C ≥ 10^(min(d, 30) − β) + C_cls + λ2·C_reg with C_cls ≥ 0 and λ2·C_reg ≥ −λ2·log(1 + 1e−7);
    the float32 rounding of the terms and sums is far inside the slack."""
    slack = _ABS_SLACK + iou_weight * _IOU_SLACK
    return torch.pow(10.0, radius.double() - soft_center_radius) * (1 - _REL_SLACK) - slack


def _radius_beyond(cost: Tensor, soft_center_radius: float, iou_weight: float) -> Tensor:
    """The smallest D (strides, float64) with B(D) > ``cost`` (the inverse of
    :func:`cost_lower_bound`, with a margin)."""
    slack = _ABS_SLACK + iou_weight * _IOU_SLACK
    return soft_center_radius + torch.log10((cost.double() + slack) / (1 - _REL_SLACK)) + 1e-6


# ------------------------------------------------------------------ per-pair cost
class _PairCosts:
    """C and u of sparse (image, prior, gt) pairs of one batch.

    Holds (N·R, C) sanitised logits, (N·R, 4) predicted boxes, the (N·R,) per-prior sum of
    negative-class terms (valid priors only) and the gts' box centres in float64."""

    def __init__(self, assigner: "DynamicSoftLabelAssigner", priors: Priors, gt: GTBatch, logits: Tensor,
                 pred_boxes: Tensor, valid: Tensor):
        n, r, c = logits.shape
        self.num_priors, self.num_classes = r, c
        self.radius, self.iou_weight, self.max_distance = (
            assigner.soft_center_radius, assigner.iou_weight, assigner.max_center_distance)
        self.logits = sanitize_logits(logits).reshape(-1)  # (N·R·C,)
        self.boxes = pred_boxes.float().reshape(n * r, 4)
        self.finite = torch.isfinite(self.boxes).all(dim=1)
        self.negative_sum = torch.zeros(n * r, dtype=torch.float64, device=logits.device)
        rows = valid.reshape(-1).nonzero().squeeze(1)
        step = max(1, _NEGATIVE_BLOCK // max(c, 1))
        table = self.logits.view(n * r, c)
        for a in range(0, rows.numel(), step):  # chunks of valid priors
            block = rows[a : a + step]
            self.negative_sum[block] = _negative_terms(table.index_select(0, block).double()).sum(dim=1)
        self.points = priors.points.double()
        self.strides = priors.strides.double()
        box = gt.boxes.double()
        self.centers = (box[..., :2] + box[..., 2:]) / 2  # (N, G, 2)
        self.gt_boxes = gt.boxes.float()
        self.classes = gt.classes.clamp(min=0)

    def __call__(self, pairs: CandidatePairs) -> Tuple[Tensor, Tensor]:
        """(P,) float32 cost C and IoU u of each pair."""
        flat = pairs.image * self.num_priors + pairs.prior
        u = aligned_box_iou(self.boxes.index_select(0, flat), pairs.of_gt(self.gt_boxes))
        u = torch.where(self.finite.index_select(0, flat), u.nan_to_num(0.0, 0.0, 0.0), torch.zeros_like(u))
        offset = pairs.of_prior(self.points) - pairs.of_gt(self.centers)
        distance = (offset[:, 0] * offset[:, 0] + offset[:, 1] * offset[:, 1]).sqrt() / pairs.of_prior(self.strides)
        label_logit = self.logits.index_select(0, flat * self.num_classes + pairs.of_gt(self.classes)).double()
        cls = _cls_cost(self.negative_sum.index_select(0, flat), label_logit, u.double())
        center = soft_center_prior(distance, self.radius, self.max_distance)
        return (cls + iou_cost(u, self.iou_weight)) + center, u


# ------------------------------------------------------------------ the assigner
@ASSIGNER_REGISTRY.register()
class DynamicSoftLabelAssigner(DenseAssigner):
    """RTMDet's dynamic soft-label assignment (see the module docstring for the rules, the
    exact sparse search and the edge cases).

    Args:
        soft_center_radius: β of C_center = 10^(d − β), in strides (3).
        topk: how many of a gt's largest IoUs are summed for its dynamic k (13).
        iou_weight: λ2 of the IoU cost (3).
        max_center_distance: d is clamped to this many strides (30) before 10^(d − β).

    Reads the detached ``"pred_boxes"`` (N, R, 4) and ``"cls_logits"`` (N, R, C).
    ``cls_scores`` and ``reg_weights`` of the returned :class:`Assignment` are u, the IoU of
    each positive's predicted box with its gt (so ``QualityCoupling(cls_target="static")``
    hands u to QFL, and u weights the box loss). ``extras``: ``matched_iou`` (N, R) u,
    ``cost`` (N, R) C of each positive's pair (0 on background), ``dynamic_k`` (N, G)
    int64 k of every gt (1 for padding, degenerate gts and images without a valid prior).
    """

    required_predictions = ("pred_boxes", "cls_logits")

    def __init__(
        self,
        soft_center_radius: float = 3.0,
        topk: int = 13,
        iou_weight: float = 3.0,
        max_center_distance: float = MAX_CENTER_DISTANCE,
    ):
        super().__init__()
        if int(topk) < 1:
            raise ValueError(f"topk={topk} must be ≥ 1")
        if not math.isfinite(float(soft_center_radius)):
            raise ValueError(f"soft_center_radius={soft_center_radius} must be finite")
        if not float(iou_weight) >= 0:  # also rejects NaN
            raise ValueError(f"iou_weight={iou_weight} must be ≥ 0")
        if not 0 < float(max_center_distance) < 60:  # 10^(60 − β) would overflow float32 for β ≤ 21
            raise ValueError(f"max_center_distance={max_center_distance} must be in (0, 60)")
        if float(max_center_distance) - float(soft_center_radius) > 38:
            raise ValueError(
                f"10^(max_center_distance − soft_center_radius) = 10^{max_center_distance - soft_center_radius} "
                "overflows float32 (at most 10^38)"
            )
        self.soft_center_radius = float(soft_center_radius)
        self.topk = int(topk)
        self.iou_weight = float(iou_weight)
        self.max_center_distance = float(max_center_distance)

    def extra_repr(self) -> str:
        return (
            f"soft_center_radius={self.soft_center_radius}, topk={self.topk}, iou_weight={self.iou_weight}, "
            f"max_center_distance={self.max_center_distance}"
        )

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
            priors: R priors (their ``points`` and ``strides`` give the centre prior).
            gt: padded gts (N, G); classes must lie in [0, num_classes).
            predictions: ``"pred_boxes"`` (N, R, 4) and ``"cls_logits"`` (N, R, C), detached.
        """
        logits, boxes = predictions["cls_logits"], predictions["pred_boxes"].float()
        if logits.shape[-1] != num_classes:
            raise ValueError(f"cls_logits has {logits.shape[-1]} classes, expected num_classes={num_classes}")
        bad = gt.valid & ((gt.classes < 0) | (gt.classes >= num_classes))
        if bad.any():
            raise ValueError(f"gt classes {gt.classes[bad].unique().tolist()} outside [0, {num_classes})")
        n_img = gt.classes.shape[0]
        device = priors.points.device
        valid = self.valid_priors(priors, gt)  # (N, R) step 1
        k = self.dynamic_ks(priors, gt, boxes, valid)  # (N, G) step 3
        costs = _PairCosts(self, priors, gt, logits, boxes, valid)
        picks, cost, u = self.lowest_cost_pairs(priors, gt, costs, k, valid)  # steps 2 and 4
        winners = PriorWinners(n_img, len(priors), ("min", "min"), device=device)
        winners.update(picks, [cost], {"cost": cost, "u": u})
        self.resolve_shared(priors, gt, costs, picks, winners)  # step 5
        u_win = winners.value("u", torch.float32)
        extras = {"matched_iou": u_win, "cost": winners.value("cost", torch.float32), "dynamic_k": k}
        # Step 6: u is the soft class target (QFL) and the weight of the box loss.
        return Assignment.from_matches(gt, winners.matched, num_classes, cls_scores=u_win, reg_weights=u_win, extras=extras)

    # -------------------------------------------------------------- step 1
    @staticmethod
    def valid_priors(priors: Priors, gt: GTBatch) -> Tensor:
        """(N, R) bool: the prior's point lies strictly inside at least one valid gt (the
        code's ``deltas.min(dim=-1) > 0`` on l, t, r, b), from sparse pairs in chunks."""
        n_img = gt.valid.shape[0]
        r = len(priors)
        valid = torch.zeros(n_img * r, dtype=torch.bool, device=priors.points.device)
        lo, hi, active = centered_regions(gt.boxes, gt.valid, len(priors.num_per_level))
        for pairs in region_pair_chunks(priors, lo, hi, active, max_pairs=_pairs.MAX_PAIRS_PER_CHUNK):
            points, box = pairs.of_prior(priors.points), pairs.of_gt(gt.boxes)
            inside = (points > box[:, :2]).all(dim=1) & (points < box[:, 2:]).all(dim=1)
            valid[(pairs.image * r + pairs.prior)[inside]] = True
        return valid.view(n_img, r)

    # -------------------------------------------------------------- step 3
    def dynamic_ks(self, priors: Priors, gt: GTBatch, pred_boxes: Tensor, valid: Tensor) -> Tensor:
        """(N, G) int64 k_g = max(1, ⌊Σ of g's ``topk`` largest u over the valid priors⌋).

        TOOD's exact IoU-bounded top-m search with t = s^0·u^1 = u finds each gt's largest
        IoUs among the predicted boxes of the valid priors (the others are hidden as NaN
        boxes, which it skips); pairs with u = 0 add nothing to the sum."""
        n_img, n_gt = gt.classes.shape
        hidden = torch.where(valid[..., None], pred_boxes, torch.full_like(pred_boxes, float("nan")))
        one_class = GTBatch(gt.boxes, torch.zeros_like(gt.classes), gt.valid)
        scores = pred_boxes.new_zeros(n_img, pred_boxes.shape[1], 1)
        search = TaskAlignedAssigner(topk=self.topk, alpha=0.0, beta=1.0)
        pairs, _, u = search.candidates(priors, one_class, scores, hidden)
        total = torch.zeros(n_img * n_gt, dtype=torch.float64, device=pred_boxes.device)
        total.index_add_(0, pairs.bag, u.double())
        return dynamic_k(total).view(n_img, n_gt)

    # -------------------------------------------------------------- steps 2 and 4
    def lowest_cost_pairs(
        self, priors: Priors, gt: GTBatch, costs: _PairCosts, k: Tensor, valid: Tensor
    ) -> Tuple[CandidatePairs, Tensor, Tensor]:
        """Each valid gt's k_g lowest-cost valid priors by (C ↑, prior ↑), exactly, from
        searches of growing radius around its centre (module docstring).

        Returns:
            the picked pairs (no particular order), their (P,) float32 cost and IoU.
        """
        n_img, n_gt = gt.valid.shape
        num_levels = len(priors.num_per_level)
        r = len(priors)
        device = priors.points.device
        level_strides = level_stride_table(priors)[None, None, :, None]  # (1, 1, L, 1)
        box = gt.boxes.double()
        centers = ((box[..., :2] + box[..., 2:]) / 2)[:, :, None, :]  # (N, G, 1, 2)
        valid_flat = valid.reshape(-1)
        k_flat = k.reshape(-1)
        pending = gt.valid & valid.any(dim=1, keepdim=True)
        radius = torch.full((n_img, n_gt), INITIAL_RADIUS, dtype=torch.float64, device=device)
        found = []
        for attempt in range(MAX_ROUNDS):
            if not bool(pending.any()):
                break
            if attempt == MAX_ROUNDS - 1:  # a guard, never reached in exact arithmetic
                radius = torch.where(pending, torch.full_like(radius, math.inf), radius)
            whole = (radius >= self.max_center_distance)[..., None, None]  # beyond: all tie at the clamp
            half = radius[..., None, None] * level_strides
            lo = torch.where(whole, torch.full_like(half, -math.inf), centers - half)
            hi = torch.where(whole, torch.full_like(half, math.inf), centers + half)
            active = pending[:, :, None].expand(n_img, n_gt, num_levels)
            count = torch.zeros(n_img * n_gt, dtype=torch.long, device=device)
            kth = torch.full((n_img * n_gt,), math.inf, dtype=torch.float32, device=device)
            kept = []
            for pairs in region_pair_chunks(priors, lo, hi, active, max_pairs=_pairs.MAX_PAIRS_PER_CHUNK):
                pairs = pairs.select(valid_flat.index_select(0, pairs.image * r + pairs.prior))
                cost, u = costs(pairs)
                # sorted by (image, gt, prior) and stable: ties go to the lower prior index
                rank = rank_in_segments(pairs.bag, cost)
                need = k_flat.index_select(0, pairs.bag)
                count.index_add_(0, pairs.bag, torch.ones_like(rank))
                at_k = (rank == need - 1).nonzero().squeeze(1)
                kth.index_copy_(0, pairs.bag.index_select(0, at_k), cost.index_select(0, at_k))
                top = (rank < need).nonzero().squeeze(1)
                kept.append((pairs.take(top), cost.index_select(0, top), u.index_select(0, top)))
            enough = count >= k_flat
            bound = cost_lower_bound(radius.reshape(-1), self.soft_center_radius, self.iou_weight)
            done = pending.reshape(-1) & (whole.reshape(-1) | (enough & (kth.double() < bound)))
            for pairs, cost, u in kept:
                keep = done.index_select(0, pairs.bag).nonzero().squeeze(1)
                found.append((pairs.take(keep), cost.index_select(0, keep), u.index_select(0, keep)))
            # next radius: where B(D) exceeds the k-th lowest cost found, or twice as far
            beyond = _radius_beyond(kth, self.soft_center_radius, self.iou_weight)
            grown = torch.where(enough, beyond, 2 * radius.reshape(-1))
            grown = torch.maximum(grown, radius.reshape(-1) * (1 + 1e-6) + 1e-6).view(n_img, n_gt)
            pending = pending & ~done.view(n_img, n_gt)
            radius = torch.where(pending, grown, radius)
        if not found:
            none = torch.zeros(0, device=device)
            return CandidatePairs.empty(n_gt, device), none, none
        picks = CandidatePairs.cat([f[0] for f in found], n_gt, device)
        return picks, torch.cat([f[1] for f in found]), torch.cat([f[2] for f in found])

    # -------------------------------------------------------------- step 5
    def resolve_shared(
        self, priors: Priors, gt: GTBatch, costs: _PairCosts, picks: CandidatePairs, winners: PriorWinners
    ) -> None:
        """Priors taken by two gts or more go to the lowest cost over **all** gts of their
        image (ties: lowest gt index), merged into ``winners`` (which holds the picks).

        The lowest cost U among the gts that took the prior bounds the winner's; only gts
        whose centre lies within the radius D with B(D) > U (in the prior's strides) can
        reach it: they are found in the gt centres sorted by (image, x), in chunks."""
        if len(picks) == 0:
            return
        r = len(priors)
        claims = torch.bincount(picks.image * r + picks.prior, minlength=winners.matched.numel())
        shared = (claims >= 2).nonzero().squeeze(1)
        if shared.numel() == 0:
            return
        bound = winners.value("cost").reshape(-1).index_select(0, shared)
        for pairs in self._gts_near(priors, gt, shared, bound):
            cost, u = costs(pairs)
            winners.update(pairs, [cost], {"cost": cost, "u": u})

    def _gts_near(self, priors: Priors, gt: GTBatch, flat: Tensor, bound: Tensor) -> Iterator[CandidatePairs]:
        """(image, prior, gt) pairs of the (M,) flat priors n·R + r with every valid gt of
        image n whose centre may cost less than ``bound`` (M,): |Δx|, |Δy| ≤ D·s_r + 1 px,
        D = the radius with B(D) > bound (all gts from ``max_center_distance`` on)."""
        n_gt = gt.valid.shape[1]
        r = len(priors)
        image = torch.div(flat, r, rounding_mode="floor")
        prior = flat % r
        radius = _radius_beyond(bound, self.soft_center_radius, self.iou_weight)
        radius = torch.where(radius >= self.max_center_distance, torch.full_like(radius, math.inf), radius)
        reach = radius * priors.strides.double().index_select(0, prior) + 1.0  # px, +1 for the key rounding
        points = priors.points.double().index_select(0, prior)
        bags = gt.valid.reshape(-1).nonzero().squeeze(1)
        box = gt.boxes.double().reshape(-1, 4).index_select(0, bags)
        centers = (box[:, :2] + box[:, 2:]) / 2
        img_of = torch.div(bags, n_gt, rounding_mode="floor").double()
        keys = img_of * _KEY_SPAN + centers[:, 0].clamp(-_KEY_LIMIT, _KEY_LIMIT)
        keys, order = torch.sort(keys, stable=True)
        base = image.double() * _KEY_SPAN
        lo = base + (points[:, 0] - reach).clamp(-_KEY_LIMIT, _KEY_LIMIT)
        hi = base + (points[:, 0] + reach).clamp(-_KEY_LIMIT, _KEY_LIMIT)
        start = torch.searchsorted(keys, lo, side="left")
        end = torch.searchsorted(keys, hi, side="right")
        counts = (end - start).clamp(min=0)
        for a, b in _row_chunks(counts, _pairs.MAX_PAIRS_PER_CHUNK):  # chunks of priors
            pos, run = _expand_runs(start[a:b], torch.maximum(end[a:b], start[a:b]))
            row = run + a
            which = order.index_select(0, pos)
            near = (centers[:, 1].index_select(0, which) - points[:, 1].index_select(0, row)).abs()
            keep = (near <= reach.index_select(0, row)).nonzero().squeeze(1)
            row, which = row.index_select(0, keep), which.index_select(0, keep)
            yield CandidatePairs(image.index_select(0, row), prior.index_select(0, row), bags.index_select(0, which) % n_gt, n_gt)
