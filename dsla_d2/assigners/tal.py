"""TOOD's task-aligned assignment, TAL (Feng, Zhong, Gao, Scott, Huang, "TOOD: Task-aligned
One-stage Object Detection", ICCV 2021, arXiv:2108.07755), as the authors' code has it where
it is more specific than the paper (github fcjian/TOOD, ``TaskAlignedAssigner`` and
``TOODHead.get_targets``).

Per image and gt g of class c_g, for every prior p with centre c_p (all levels together):

1. u(p, g) = IoU of p's decoded *predicted* box with g (not of the prior's anchor);
   s(p, g) = p's probability of class c_g; both detached;
2. the alignment metric t(p, g) = s^α · u^β (α = 1, β = 6);
3. g's top m = 13 priors by t over **all levels jointly** (ties: the lower prior index);
4. of those, p is kept if t > 0 and c_p is more than ``center_margin`` (0.01 px) inside g:
   min(cx − x1, cy − y1, x2 − cx, y2 − cy) > 0.01. The centre test comes *after* the
   top-m, so a gt can end with fewer than m positives, or none: the slots are not refilled;
5. a prior kept by several gts takes the gt with the **largest u** (not the largest t);
   exact ties: the lowest gt index;
6. soft target of g's final positives (after step 5): t̂ = t / (max t + 1e-7) · max u,
   both maxima over those positives; 0 on background. t̂ is the classification target of
   the labelled class (QFL form) and the weight of the box loss.

Steps 1-3 of the code are dense, priors × gts. This implementation is exact and sparse:

* only pairs with t > 0 can be kept (step 4), and they rank above every pair with t = 0,
  so the kept pairs are the top-m of Q_g = {p : t(p, g) > 0} that pass the centre test —
  the same pairs as the dense top-m, ties included (both order by (t ↓, p ↑));
* t > 0 needs u > 0 (β > 0): p's predicted box overlaps g. A pair with IoU u < θ has
  t ≤ T_g(θ) = s_max(c_g)^α · θ^β, with s_max(c) the largest probability of class c over
  the image's priors. So if the pairs found with u ≥ θ include m with t > T_g(θ), their
  top-m is g's top-m over all priors: every pair not found has t ≤ T_g(θ) and ranks below;
* each gt is searched at θ = 0.5 first (:data:`IOU_LEVELS`). If that does not settle it but
  m pairs with t > 0 were found, the m-th largest t among them, L, bounds g's m-th largest
  t from below, and a pair with t ≥ L has u ≥ (L / s_max^α)^(1/β): one more search at that
  θ (× (1 − 1e-3)) settles the gt. With fewer than m found, the next level is 0.25, then
  θ = 0: every predicted box overlapping g, all of Q_g;
* IoU(A, G) ≥ θ > 0 bounds A: inter ≥ θ·union ≥ θ·max(area A, area G) and
  inter ≤ iw·min(h_A, h_G) give the x-overlap iw ≥ θ·max(w_A, w_G), hence
  x1_G − (1 − θ)·w_A ≤ x1_A ≤ x2_G − θ·w_G, and w_A ≤ w_G/θ; likewise in y, so the longest
  side of A lies in [θ, 1/θ] × g's. The predicted boxes are bucketed by size class (quarter
  octaves of the longest side) and by the cell of their top-left corner (half the class's
  smallest side); a gt searches the classes that fit and, in each, the cell rows of its
  x1/y1 window (clipped to the occupied cells), each row one contiguous run of the sorted
  bucket keys (:class:`~dsla_d2.assigners.box_index.PredictedBoxIndex`).

Cost follows the pairs enumerated (those near the top of each gt's ranking, the rest of the
overlapping boxes only for gts that need θ = 0), never priors × gts; memory is bounded by
chunks of whole gts (:data:`_MAX_PAIRS` pairs).
``tests/test_tal_assigner.py`` checks the search geometry on boxes built at IoU θ, and the
assignment bit for bit against a dense reference written from the rules above.

Bits: search regions are computed in float64 with slack (θ·(1 − 1e-4), a margin far
above float32 rounding), the kept pairs by the same float32 IoU (``aligned_box_iou``) and
class probabilities (sigmoid of the whole logit tensor, then gathered) as the dense
computation, and integer exponents by repeated multiplication (:func:`alignment_metric`):
``torch.pow`` takes a vectorised or a scalar path depending on where an element sits in
memory, and the two can differ in the last bit. Non-finite or empty predicted boxes have
u = 0 (as :func:`~dsla_d2.assigners.atss_core.candidate_predicted_iou`), NaN probabilities
s = 0. With more than m priors per image the top-m is over all of them; with fewer, every
prior is a candidate (mmdetection clamps m to the number of priors; the authors' code would
fail).

Warm-up (code only; the paper's TAL does not depend on it): the authors train the first 4
epochs with the ATSS assigner (k = 9 per level, anchors 8·stride), hard targets, focal loss
and centerness-weighted GIoU, and switch to TAL from epoch 4 on. ``warmup_iters`` > 0 does
the same by iteration, from the ``progress`` the trainer hands to the assigner; the
assignment then says so in ``extras["warmup"]``, where the loss
(:class:`~dsla_d2.losses.DenseDetectionLoss`'s ``warmup_cls_loss``) reads it.
"""
import logging
from typing import List, Mapping, Optional, Tuple

import torch
from torch import Tensor

from ..box_ops import aligned_box_iou
from ..priors import Priors
from ..utils.progress import TrainingProgress
from .atss import ATSSAssigner
from .base import ASSIGNER_REGISTRY, Assignment, DenseAssigner, GTBatch
from .box_index import PredictedBoxIndex, expand_runs
from .pairs import CandidatePairs, _row_chunks
from .winners import PriorWinners

__all__ = ["TaskAlignedAssigner", "alignment_metric", "top_m_in_segments", "IOU_LEVELS"]

logger = logging.getLogger(__name__)

#: Fixed IoU levels θ of the sparse search (module docstring): the first search of every
#: gt, and the next ones of a gt that found fewer than m pairs with t > 0; must end with 0,
#: the exhaustive level (every predicted box overlapping the gt).
IOU_LEVELS = (0.5, 0.25, 0.0)

#: The authors' ε of t̂ = t / (max t + ε) · max u (written ``10e-8`` in their code).
SOFT_TARGET_EPS = 1e-7

#: Pairs evaluated at once: about 20 tensors of 4-8 bytes live per pair, ~20 MiB per chunk.
_MAX_PAIRS = 2**17


def _power(x: Tensor, exponent: float) -> Tensor:
    """x^exponent; integer exponents 0..64 by left-to-right multiplication (x·x·…·x, the same
    bits wherever x sits in memory), others by ``torch.pow``. 0^0 = 1."""
    e = float(exponent)
    if e.is_integer() and 0 <= e <= 64:
        if e == 0:
            return torch.ones_like(x)
        out = x
        for _ in range(int(e) - 1):
            out = out * x
        return out
    return x.pow(e)


def alignment_metric(scores: Tensor, ious: Tensor, alpha: float = 1.0, beta: float = 6.0) -> Tensor:
    """TOOD's task-alignment metric t = s^α · u^β, elementwise (see :func:`_power`)."""
    return _power(scores, alpha) * _power(ious, beta)


def top_m_in_segments(segment: Tensor, prior: Tensor, metric: Tensor, m: int) -> Tensor:
    """(P,) bool: the pair is among the m first of its segment ordered by (metric ↓,
    prior ↑) — ``torch.topk`` with its unspecified tie order replaced by the prior index.

    Args:
        segment: (P,) int64 in [0, 2^31); metric: (P,) float32 > 0 (finite); prior: (P,).
    """
    keep = torch.zeros_like(segment, dtype=torch.bool)
    if segment.numel() == 0:
        return keep
    # One sort on (segment ↑, metric ↓): a positive float32's bit pattern grows with it.
    bits = metric.float().view(torch.int32).long()
    order = torch.sort(segment * 2**31 + (2**31 - 1 - bits)).indices
    seg = segment.index_select(0, order)
    counts = torch.bincount(seg)
    first = (torch.cumsum(counts, 0) - counts).index_select(0, seg)
    rank = torch.arange(seg.numel(), device=seg.device) - first
    # the m-th value of each segment (0 if it has fewer): strictly above it is in; equal to
    # it (ties across the m-th place) is in by the lowest prior indices, to fill m
    mth = torch.zeros(counts.numel(), dtype=metric.dtype, device=metric.device)
    at_m = (rank == m - 1).nonzero().squeeze(1)
    mth[seg.index_select(0, at_m)] = metric.index_select(0, order.index_select(0, at_m))
    value = mth.index_select(0, segment)
    above = metric > value
    keep |= above
    tied = (metric == value).nonzero().squeeze(1)
    if tied.numel():
        n_above = torch.zeros_like(counts).index_add_(0, segment, above.long())
        t_seg, t_prior = segment.index_select(0, tied), prior.index_select(0, tied)
        by = torch.sort(t_prior, stable=True).indices
        by = by.index_select(0, torch.sort(t_seg.index_select(0, by), stable=True).indices)
        t_sorted = t_seg.index_select(0, by)
        t_counts = torch.bincount(t_sorted, minlength=counts.numel())
        t_first = (torch.cumsum(t_counts, 0) - t_counts).index_select(0, t_sorted)
        t_rank = torch.arange(by.numel(), device=by.device) - t_first
        fill = t_rank < (m - n_above).index_select(0, t_sorted)
        keep[tied.index_select(0, by)] = fill
    return keep


@ASSIGNER_REGISTRY.register()
class TaskAlignedAssigner(DenseAssigner):
    """TOOD's task-aligned assignment (see the module docstring for the rules, the sparse
    search and the warm-up).

    Args:
        topk: m, candidates per gt over all levels (13).
        alpha, beta: exponents of t = s^α · u^β (1, 6); β > 0.
        center_margin: a kept prior's centre must be more than this many pixels inside every
            side of its gt (0.01, the code).
        warmup_iters: iterations (from the start) assigned by ``warmup_assigner`` instead of
            TAL: the authors' 4 ATSS epochs (``initial_epoch = 4``); 0: TAL throughout.
        warmup_assigner: the warm-up assigner; default ATSS with k = 9, margin 0.01 and
            centerness-weighted box loss (the code's ``initial_assigner``), on the priors'
            anchors.

    Reads the detached ``"pred_boxes"`` (N, R, 4) and ``"cls_logits"`` (N, R, C).
    ``cls_scores`` and ``reg_weights`` of the returned :class:`Assignment` are t̂ (so a
    ``QualityCoupling(cls_target="static")`` hands t̂ to QFL). ``extras``: ``alignment``
    (N, R) the metric t of each positive's pair, ``matched_iou`` (N, R) its IoU u (0 on
    background), ``warmup`` a bool scalar (True for the warm-up assigner's assignments,
    which carry its own extras besides).

    Without a ``progress`` (an assigner called on its own) a warm-up counts as iteration 0,
    with a warning, as Dynamic ATSS's schedules.
    """

    required_predictions = ("pred_boxes", "cls_logits")

    def __init__(
        self,
        topk: int = 13,
        alpha: float = 1.0,
        beta: float = 6.0,
        center_margin: float = 0.01,
        warmup_iters: int = 0,
        warmup_assigner: Optional[DenseAssigner] = None,
    ):
        super().__init__()
        if int(topk) < 1:
            raise ValueError(f"topk={topk} must be ≥ 1")
        if not float(alpha) >= 0:  # also rejects NaN
            raise ValueError(f"alpha={alpha} must be ≥ 0")
        if not float(beta) > 0:
            raise ValueError(f"beta={beta} must be > 0 (t > 0 must need a predicted box overlapping the gt)")
        if int(warmup_iters) < 0:
            raise ValueError(f"warmup_iters={warmup_iters} must be ≥ 0")
        self.topk = int(topk)
        self.alpha = float(alpha)
        self.beta = float(beta)
        self.center_margin = float(center_margin)
        self.warmup_iters = int(warmup_iters)
        if self.warmup_iters and warmup_assigner is None:
            warmup_assigner = ATSSAssigner(topk=9, center_margin=0.01, regression_weight="centerness")
        self.warmup_assigner = warmup_assigner
        self._warned_no_progress = False

    def extra_repr(self) -> str:
        return (
            f"topk={self.topk}, alpha={self.alpha}, beta={self.beta}, center_margin={self.center_margin}, "
            f"warmup_iters={self.warmup_iters}"
        )

    def in_warmup(self, progress: Optional[TrainingProgress]) -> bool:
        """Whether this iteration is assigned by the warm-up assigner."""
        if not self.warmup_iters:
            return False
        if progress is None:
            if not self._warned_no_progress:
                logger.warning("%s: no training progress given; the warm-up counts as iteration 0", type(self).__name__)
                self._warned_no_progress = True
            return True
        return int(progress.iteration) < self.warmup_iters

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
            priors: R priors (their ``points`` are the centres of step 4).
            gt: padded gts (N, G).
            predictions: ``"pred_boxes"`` (N, R, 4) and ``"cls_logits"`` (N, R, C), detached.
            progress: training progress, for the warm-up.
        """
        logits = predictions["cls_logits"]
        if logits.shape[-1] != num_classes:
            raise ValueError(f"cls_logits has {logits.shape[-1]} classes, expected num_classes={num_classes}")
        device = priors.points.device
        if self.in_warmup(progress):
            a = self.warmup_assigner.assign(priors, gt, num_classes, predictions, progress=progress)
            a.extras["warmup"] = torch.tensor(True, device=device)
            return a
        n_img, n_gt = gt.classes.shape
        n_pri = len(priors)
        pairs, t, u = self.candidates(priors, gt, logits, predictions["pred_boxes"].float())

        # Step 4: the centre more than center_margin inside the gt.
        points = pairs.of_prior(priors.points)
        box = pairs.of_gt(gt.boxes.to(points.dtype))
        ltrb = torch.cat([points - box[:, :2], box[:, 2:] - points], dim=1)
        inside = (ltrb.min(dim=1).values > self.center_margin).nonzero().squeeze(1)
        pairs, t, u = pairs.take(inside), t.index_select(0, inside), u.index_select(0, inside)

        # Step 5: the largest IoU wins (exact ties: the lowest gt index).
        winners = PriorWinners(n_img, n_pri, ("max", "min"), device=device)
        winners.update(pairs, [u], {"t": t, "u": u})
        matched = winners.matched
        t_win = winners.value("t", torch.float32)
        u_win = winners.value("u", torch.float32)

        # Step 6: t̂ = t / (max t + ε) · max u over each gt's final positives.
        pos = matched >= 0
        bag = (torch.arange(n_img, device=device)[:, None] * n_gt + matched.clamp(min=0))[pos]
        max_t = torch.zeros(n_img * max(n_gt, 1), device=device).scatter_reduce(0, bag, t_win[pos], "amax")
        max_u = torch.zeros_like(max_t).scatter_reduce(0, bag, u_win[pos], "amax")
        soft = torch.zeros_like(t_win)
        soft[pos] = t_win[pos] / (max_t[bag] + SOFT_TARGET_EPS) * max_u[bag]
        extras = {"alignment": t_win, "matched_iou": u_win, "warmup": torch.tensor(False, device=device)}
        return Assignment.from_matches(gt, matched, num_classes, cls_scores=soft, reg_weights=soft, extras=extras)

    def candidates(
        self, priors: Priors, gt: GTBatch, logits: Tensor, pred_boxes: Tensor
    ) -> Tuple[CandidatePairs, Tensor, Tensor]:
        """Steps 1-3 plus t > 0: each valid gt's top-m pairs of Q_g = {p : t > 0} by (t ↓, p ↑),
        with their t and u (the centre test is not applied yet).

        Args:
            logits: (N, R, C) class logits; pred_boxes: (N, R, 4) float32.
        Returns:
            pairs in no particular order, (P,) t and (P,) u.
        """
        n_img, n_gt = gt.classes.shape
        n_pri, n_cls = logits.shape[1], logits.shape[2]
        device = logits.device
        empty = CandidatePairs.empty(n_gt, device)
        none = torch.zeros(0, device=device)
        if n_pri == 0 or not bool(gt.valid.any()):
            return empty, none, none
        # sigmoid of the whole tensor, then gathered (NaN → 0 per pair): the same bits as a
        # dense computation (sigmoid's vectorised and scalar paths may differ in the last bit)
        probs = logits.float().sigmoid()
        index = PredictedBoxIndex(pred_boxes)
        flat_probs = probs.reshape(-1)
        flat_boxes = pred_boxes.reshape(-1, 4)
        gt_boxes = gt.boxes.float().reshape(-1, 4)
        classes = gt.classes.clamp(min=0).reshape(-1)
        # (N·C,) largest probability of each class per image (1 if a NaN hides it)
        s_max = probs.amax(dim=1).nan_to_num(nan=1.0).reshape(-1)
        # flat (image, gt) ids n·G + g of the valid gts some pair can give t > 0 (s_max^α > 0)
        reachable = _power(s_max.view(n_img, n_cls).gather(1, gt.classes.clamp(min=0)), self.alpha) > 0
        pending = (gt.valid & reachable).reshape(-1).nonzero().squeeze(1)
        theta = torch.full((pending.numel(),), IOU_LEVELS[0], dtype=torch.float64, device=device)
        found: List[Tuple[Tensor, Tensor, Tensor, Tensor]] = []
        for attempt in range(len(IOU_LEVELS) + 2):  # each gt: ≤ 2 searches above θ = 0, then θ = 0
            if pending.numel() == 0:
                break
            if attempt == len(IOU_LEVELS) + 1:
                theta = torch.zeros_like(theta)  # never reached in exact arithmetic; a guard
            image = torch.div(pending, n_gt, rounding_mode="floor")
            gt_class = image * n_cls + classes.index_select(0, pending)
            start, end, row = index.ranges(gt_boxes.index_select(0, pending), image, theta)
            # T_g(θ): a pair with IoU < θ has t ≤ T_g(θ) (t is monotone in s and u).
            bound = alignment_metric(s_max.index_select(0, gt_class), theta.float(), self.alpha, self.beta)
            counts = torch.zeros(pending.numel(), dtype=torch.long, device=device).index_add_(0, row, end - start)
            resolved = theta == 0
            next_theta = torch.zeros_like(theta)
            for a, b in _row_chunks(counts, _MAX_PAIRS):  # chunks of whole gts
                lo, hi = (int(v) for v in torch.searchsorted(row, torch.tensor([a, b], device=device)))
                pos, run = expand_runs(start[lo:hi], end[lo:hi])
                local = row[lo:hi].index_select(0, run)  # row of the pending gt
                bag = pending.index_select(0, local)
                prior = index.prior.index_select(0, pos)
                flat = torch.div(bag, n_gt, rounding_mode="floor") * n_pri + prior
                iou = aligned_box_iou(flat_boxes.index_select(0, flat), gt_boxes.index_select(0, bag))
                iou = torch.nan_to_num(iou, nan=0.0, posinf=0.0, neginf=0.0)
                score = flat_probs.index_select(0, flat * n_cls + classes.index_select(0, bag)).nan_to_num(nan=0.0)
                metric = alignment_metric(score, iou, self.alpha, self.beta)
                positive = (metric > 0).nonzero().squeeze(1)
                local, bag, prior, metric, iou = (x.index_select(0, positive) for x in (local, bag, prior, metric, iou))
                top = top_m_in_segments(local, prior, metric, self.topk)
                # exact once m of the top pairs are above T_g(θ) (or θ = 0: all of Q_g)
                above = torch.zeros_like(counts).index_add_(0, local, (top & (metric > bound[local])).long())
                done = (above >= self.topk) | (theta == 0)
                done[:a] = False
                done[b:] = False
                resolved |= done
                keep = (top & done.index_select(0, local)).nonzero().squeeze(1)
                found.append(tuple(x.index_select(0, keep) for x in (bag, prior, metric, iou)))
                # not done: the m-th best t found, L, bounds the m-th best of Q_g from below;
                # pairs with t ≥ L have u ≥ (L / s_max^α)^(1/β) — search there next.
                n_top = torch.zeros_like(counts).index_add_(0, local, top.long())
                m_th = torch.full_like(theta, float("inf")).scatter_reduce(
                    0, local[top], metric[top].double(), "amin", include_self=True
                )
                adaptive = (m_th / _power(s_max.index_select(0, gt_class).double(), self.alpha)).pow(1.0 / self.beta)
                adaptive = torch.minimum(adaptive * (1 - 1e-3), theta * (1 - 1e-3))
                fallback = torch.full_like(theta, 0.0)
                for level in IOU_LEVELS:  # the next fixed level below θ
                    fallback = torch.where((fallback == 0) & (level < theta) & (level > 0), level, fallback)
                candidate = torch.where(n_top >= self.topk, adaptive, fallback)
                next_theta[a:b] = candidate[a:b]
            keep_pending = (~resolved).nonzero().squeeze(1)
            pending, theta = pending.index_select(0, keep_pending), next_theta.index_select(0, keep_pending)
        if not found:
            return empty, none, none
        bag, prior, metric, iou = (torch.cat(x) for x in zip(*found))
        pairs = CandidatePairs(torch.div(bag, n_gt, rounding_mode="floor"), prior, bag % n_gt, n_gt)
        return pairs, metric, iou
