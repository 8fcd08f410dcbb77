"""YOLOX's SimOTA (Ge, Liu, Wang, Li, Sun, "YOLOX: Exceeding YOLO Series in 2021",
arXiv:2107.08430, its "SimOTA" paragraph), as the authors' code has it at tags 0.2.0 / 0.3.0
(github Megvii-BaseDetection/YOLOX, ``YOLOXHead.get_assignments``, the code behind the paper's
numbers), cross-checked with mmdetection 3.3's ``SimOTAAssigner``.

The paper gives SimOTA in words: the cost of a pair is c_ij = L^cls_ij + λ·L^reg_ij, each gt
takes the k lowest-cost predictions inside a fixed centre region, k from the IoUs as in OTA
("dynamic top-k"). The code, per image, with c_p the centre of prior p, s_p its stride:

1. in_box(p, g): c_p strictly inside gt g (four deltas > 0); in_ctr(p, g): c_p strictly inside
   the square of half-side r·s_p (r = 2.5) around g's centre (:func:`center_region`);
2. the image's candidates S = {p : in_box(p, g) or in_ctr(p, g) for some valid g}; every
   other prior is a plain negative and never enters a cost;
3. on S × gts: u(p, g) = IoU of p's detached predicted box with g; the score
   q = sqrt(σ(cls)·σ(obj)) per class, or σ(cls) on a head without objectness;
4. cost(p, g) = Σ_c BCE(q_c, onehot(c_g)_c) + λ·(−log(u + 1e-8)) + 1e5·[not (in_box and in_ctr)],
   λ = 3 (:func:`simota_cost`): a plain one-hot BCE summed over all C classes, in fp32;
5. k_g = max(1, ⌊Σ of the 10 largest u(·, g) over all of S⌋) (:func:`dynamic_k`) — also over
   priors that are candidates only of other gts;
6. g marks its k_g lowest-cost priors of S (ties: the lower prior index);
7. a prior marked by several gts goes to the gt of least cost at it **over all gts of the
   image** (the code's ``torch.min(cost[:, p], dim=0)``; ties: the lowest gt index) — which can
   be a gt that did not mark it;
8. positives = the marked priors after step 7; classification target u(p, matched g).

With the penalty 1e5 a gt takes priors outside "in box and in centre" only when it has fewer
than k_g inside both (tiny or thin boxes between grid points); it then takes the cheapest
candidates of the whole image, wherever they are, and loses every conflict to a gt that holds
the prior inside both. ``candidate_rule="center"`` is the authors' Jan-2023 rule (commit
14c62a7, after 0.3.0): candidates and "inside" are the centre square alone (their radius 1.5,
penalty 1e6; ``projects/YOLOX/configs/common/simota.py`` sets them).

Sparse and exact. A dense implementation builds S × gts (× C) per image; here:

* step 1's tests are exact index ranges of each level's grid: the same float32 bounds
  (x1, x2, cx ± r·s), searched in the grid's sorted axes (x > lo: ``searchsorted`` right;
  x < hi: left, minus one). S is the union of one or two index rectangles per (gt, level),
  painted into 2-D difference arrays (O(gts + priors)); the in-both pairs are the priors of
  their intersection (inside the square: a few per level). Priors off a grid, or with several
  strides on a level, enumerate the pairs of box ∪ square instead
  (:func:`~dsla_d2.assigners.pairs.region_pair_chunks`) and test them with :func:`center_region`;
* k_g needs ⌊Σ of the 10 largest u(·, g) over S⌋. TAL's bucketed index of the candidates'
  predicted boxes (``box_index.PredictedBoxIndex``) returns, at an IoU level θ, every candidate with
  u ≥ θ (and more). Of the 10 largest u found, the n that are ≥ θ are exact and every other
  pair of S has u < θ, so Σ lies in [Σ found, Σ of those n + (10 − n)·θ]: with n = 10 the top
  10 are known and summed as step 5 says; otherwise k_g is decided when both ends give the same
  max(1, ⌊·⌋) (with a margin of 1e-4 over the float32 rounding of the sum). Every gt is
  searched at θ = 0.5 first; an undecided one next at the largest θ at which what it knows
  could decide (Σ_{known ≥ θ} + (10 − #)·θ below ⌊Σ found⌋ + 1; about 0.2 when nothing
  overlaps well, from "Σ < 2: k = 1"); after 4 searches at θ > 0, or when that θ would be below
  0.05, at θ = 0 (every overlapping box: always exact). Cost follows the boxes found, mostly
  near the top of each gt's ranking, never priors × gts;
* costs are bounded before any is computed: per candidate prior, Σ_c BCE(q_c, 0) =
  −log Π_c (1 − q_c) (float32 products of 8 factors, then float64; the clamped logs where a
  product is tiny), once; a pair's class cost is that minus its gt class's term plus
  BCE(q_g, 1), in float64, off the fp32 row sum by at most rel·(Σ_c BCE(q_c, 0) + BCE(q_g, 1))
  + abs, rel = 2C·2⁻²⁴ + 2·10⁻⁶ (the row sum's γ_C and the elements' last bits), abs =
  C·2⁻²¹ (the rounding of 1 − q, as in log(1 − x)); 10⁻⁶ of the cost's magnitude covers the
  fp32 additions of step 4. So every pair has [lo, hi] around its exact cost. A gt's k cheapest
  pairs all have lo ≤ U, the k-th smallest hi (k pairs cost ≤ U, so a pair costing more ranks
  ≥ k): only those get the exact (pairs, C) BCE and are ranked by it (ties: prior order); a
  prior's least-cost pair is likewise among the pairs with lo ≤ its least hi. The bounds never
  decide a result, they only select which pairs are computed exactly;
* a pair outside "in box and in centre" costs at least F = penalty·(1 − 1e-6) − 1e-3 (its BCE and
  −log terms are ≥ 0 up to rounding); a gt whose k_g-th cheapest in-both pair costs less than
  F has its k_g marks among its in-both pairs ("settled": every gt with k_g in-both priors,
  unless C·100 approaches the penalty). The other gts are ranked over every (p ∈ S, g): cost
  follows the number of such gts times |S|, never priors × gts;
* a conflicted prior holding an in-both pair of cost below F is won by its cheapest in-both
  pair (every other pair costs ≥ F); the others (conflicts among penalised picks) are ranked
  over all gts of their image.

``tests/test_simota_assigner.py`` checks the result bit for bit against a dense reference
written from the rules above on hundreds of random batches (penalty 0 included, where every
gt takes the exhaustive path; grid priors and the same priors as a point set), crowded images,
and the cost bounds against the exact cost.

Bits: probabilities are computed once on the whole logit tensor and gathered (sigmoid's
vectorised and scalar paths may differ in the last bit), the BCE row sums in one (pairs, C)
layout, −log(u + ε) in float64 then rounded to float32, and the top-10 IoUs summed largest
first, one addition at a time, so that ⌊·⌋ never depends on how a reduction kernel groups the
terms (a float32 sum of 0.9, 0.8, 0.7, 0.3, 0.2, 0.1 is 3.0 that way; 2.9999998 → k = 2).
Non-finite or empty predicted boxes have u = 0; a NaN probability counts as 0 (its BCE with
target 1 is the clamp, 100).
"""
import math
from typing import Dict, Mapping, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.nn.utils.rnn import pad_sequence

from ..box_ops import aligned_box_iou
from ..priors import Priors
from ..utils.progress import TrainingProgress
from .base import ASSIGNER_REGISTRY, Assignment, DenseAssigner, GTBatch
from .pairs import CandidatePairs, _row_chunks, grid_axes, grid_rectangle_pairs, region_pair_chunks
from .regions import level_stride_table
from .box_index import PredictedBoxIndex, expand_runs
from .winners import PriorWinners

__all__ = ["SimOTAAssigner", "CANDIDATE_RULES", "center_region", "classification_cost", "simota_cost", "dynamic_k"]

#: "box_or_center": YOLOX 0.2/0.3 (candidates in a gt's box or its centre square, penalty off
#: "both"); "center": the authors' Jan-2023 rule (the centre square alone, penalty off it).
CANDIDATE_RULES = ("box_or_center", "center")
#: Pairs evaluated at once (geometry, IoU, cost bounds); about 15 tensors of 1-8 bytes live per pair.
_MAX_PAIRS = 2**18
#: (pair, class) elements of one BCE block of the classification cost.
_MAX_COST_ELEMENTS = 2**22
#: IoU level θ of every gt's first search for its top IoUs (module docstring).
_FIRST_THETA = 0.5
#: Searches at θ > 0 per gt before the last one at θ = 0 (every overlapping box).
_SEARCH_ROUNDS = 4
#: An adaptive θ below this searches at θ = 0 instead (as costly, and always conclusive).
_MIN_THETA = 0.05
#: e^-100: BCE's log clamp, as a probability.
_EXP_M100 = math.exp(-100.0)


def center_region(points: Tensor, strides: Tensor, boxes: Tensor, radius: float, rule: str = "box_or_center"):
    """Step 1 for aligned (prior, gt) rows: (candidate, inside) — the prior is a candidate of the
    gt (in box or in centre square; ``rule="center"``: in the square) and pays no penalty
    (in box and in square; ``"center"``: in the square).

    in_box: x1 < x < x2 and y1 < y < y2; in_ctr: |x − cx| < r·s and |y − cy| < r·s, written as
    the code's deltas x − (cx − r·s) > 0 and (cx + r·s) − x > 0 (the same comparisons in float32).

    Args (broadcastable): points (..., 2); strides (...) the prior's stride; boxes (..., 4) XYXY.
    Returns:
        two (...) bool tensors.
    """
    center = (boxes[..., :2] + boxes[..., 2:]) / 2
    half = (radius * strides)[..., None]
    in_ctr = ((points > center - half) & (points < center + half)).all(dim=-1)
    if rule == "center":
        return in_ctr, in_ctr
    in_box = ((points > boxes[..., :2]) & (points < boxes[..., 2:])).all(dim=-1)
    return in_box | in_ctr, in_box & in_ctr


def classification_cost(scores: Tensor, labels: Tensor) -> Tensor:
    """Σ_c BCE(q_c, onehot(label)_c) per row (step 4's class term; BCE's log is clamped at
    −100 as ``F.binary_cross_entropy``), in fp32 with autocast off.

    Args:
        scores: (P, C) probabilities q in [0, 1]; labels: (P,) int64 class of the gt.
    Returns:
        (P,) float32.
    """
    q = scores.float()
    onehot = torch.zeros_like(q).scatter_(1, labels[:, None], 1.0)
    with torch.autocast(device_type=q.device.type, enabled=False):
        return F.binary_cross_entropy(q, onehot, reduction="none").sum(dim=-1)


def simota_cost(
    cls_cost: Tensor, ious: Tensor, inside: Tensor, iou_weight: float = 3.0, penalty: float = 1e5, eps: float = 1e-8
) -> Tensor:
    """Step 4: cls + λ·(−log(u + ε)) + penalty·[not inside], elementwise, float32 (the log in
    float64, rounded once; see the module docstring).

    Args:
        cls_cost: (P,) :func:`classification_cost`; ious: (P,) u; inside: (P,) bool.
    """
    reg = (-torch.log(ious.double() + eps)).float()
    return cls_cost + iou_weight * reg + penalty * (~inside).float()


def dynamic_k(top_ious: Tensor) -> Tensor:
    """Step 5: k = max(1, ⌊Σ top IoUs⌋) per row.

    Args:
        top_ious: (M, m) float32, each row sorted largest first (zero-padded).
    Returns:
        (M,) int64. The sum runs left to right, one float32 addition at a time.
    """
    total = torch.zeros(top_ious.shape[0], dtype=torch.float32, device=top_ious.device)
    for j in range(top_ious.shape[1]):  # ≤ candidate_topk columns
        total = total + top_ious[:, j].float()
    return torch.floor(total).long().clamp(min=1)


def _pair_iou(pred_flat: Tensor, pairs: CandidatePairs, gt: GTBatch, num_priors: int) -> Tensor:
    """(P,) IoU of each pair's predicted box with its gt; 0 for non-finite boxes."""
    pred = pred_flat.index_select(0, pairs.image * num_priors + pairs.prior)
    iou = aligned_box_iou(pred, pairs.of_gt(gt.boxes.to(pred.dtype)))
    return torch.nan_to_num(iou, nan=0.0, posinf=0.0, neginf=0.0)


def _float_key(x: Tensor) -> Tensor:
    """(P,) int64 in [0, 2^32) that orders as the float32 values x (−0 = +0; no NaN)."""
    bits = (x.float() + 0.0).view(torch.int32).long()  # + 0.0 turns −0 into +0
    return torch.where(bits < 0, -1 - bits, bits + 2**31)  # negative: larger magnitude, smaller key


def _ranks(segment: Tensor, key: Tensor, num_segments: int) -> Tuple[Tensor, Tensor]:
    """Rank of each element by (key ↑, position ↑) in its segment, with one sort; and the
    (num_segments,) counts. segment: (P,) int64 in [0, 2^31); key: (P,) float32 (no NaN)."""
    count = torch.bincount(segment, minlength=num_segments)
    if segment.numel() == 0:
        return torch.zeros_like(segment), count
    order = torch.sort(segment * 2**32 + _float_key(key), stable=True).indices
    first = (torch.cumsum(count, 0) - count).index_select(0, segment.index_select(0, order))
    rank = torch.empty_like(segment)
    rank[order] = torch.arange(segment.numel(), device=segment.device) - first
    return rank, count


def _round_up(x: Tensor) -> Tensor:
    """float64 → the smallest float32 ≥ x."""
    y = x.float()
    return torch.where(y.double() < x, torch.nextafter(y, torch.full_like(y, float("inf"))), y)


class _Match:
    """Per-prior result of the matching (flat over N·R) and the per-gt k."""

    def __init__(self, n_img: int, n_pri: int, n_gt: int, device):
        size = n_img * n_pri
        self.shape = (n_img, n_pri)
        self.matched = torch.full((size,), -1, dtype=torch.long, device=device)
        self.iou = torch.zeros(size, device=device)
        self.cost = torch.zeros(size, device=device)
        self.candidates = torch.zeros(size, dtype=torch.bool, device=device)
        self.k = torch.zeros(n_img * n_gt, dtype=torch.long, device=device)

    def put(self, flat: Tensor, gt: Tensor, iou: Tensor, cost: Tensor) -> None:
        self.matched[flat], self.iou[flat], self.cost[flat] = gt, iou, cost


@ASSIGNER_REGISTRY.register()
class SimOTAAssigner(DenseAssigner):
    """YOLOX's SimOTA (module docstring: the rules, the sparse evaluation, the bits).

    Args:
        center_radius: r, half-side of the centre square in strides (2.5; 1.5 with the 2023 rule).
        candidate_topk: the IoUs summed for k (10, from OTA).
        iou_weight: λ of the IoU cost (3.0; a code value, the paper names no number).
        outside_penalty: the cost added off "in box and in centre" (1e5; 1e6 with the 2023 rule).
        iou_eps: ε of −log(u + ε) (1e-8; mmdetection 1e-7).
        candidate_rule: "box_or_center" (0.2/0.3 code) or "center" (the Jan-2023 commit).
        objectness: the prediction holding objectness logits (N, R, 1) for
            q = sqrt(σ(cls)·σ(obj)) (YOLOX's head); None: q = σ(cls) (FCOS / ATSS heads).

    Reads the detached ``"pred_boxes"`` (N, R, 4) and ``"cls_logits"`` (N, R, C). The returned
    :class:`Assignment` has ``cls_scores`` = u of each positive's pair (YOLOX's classification
    target onehot·IoU; a ``QualityCoupling(cls_target="static")`` hands it to the loss), box
    weight 1. ``extras``: ``matched_iou`` (N, R) u, ``matched_cost`` (N, R) the pair's cost
    (0 on background), ``dynamic_k`` (N, G) k_g (0 for padding, invalid gts and images
    without candidates), ``candidates`` (N, R) bool S.
    """

    required_predictions = ("pred_boxes", "cls_logits")

    def __init__(
        self,
        center_radius: float = 2.5,
        candidate_topk: int = 10,
        iou_weight: float = 3.0,
        outside_penalty: float = 1e5,
        iou_eps: float = 1e-8,
        candidate_rule: str = "box_or_center",
        objectness: Optional[str] = None,
    ):
        super().__init__()
        if candidate_rule not in CANDIDATE_RULES:
            raise ValueError(f"candidate_rule={candidate_rule!r} is not one of {CANDIDATE_RULES}")
        for name, value in (("center_radius", center_radius), ("iou_weight", iou_weight),
                            ("outside_penalty", outside_penalty)):
            if not 0 <= float(value) < float("inf"):  # also rejects NaN
                raise ValueError(f"{name}={value} must be finite and ≥ 0")
        if not float(iou_eps) > 0:
            raise ValueError(f"iou_eps={iou_eps} must be > 0")
        if int(candidate_topk) < 1:
            raise ValueError(f"candidate_topk={candidate_topk} must be ≥ 1")
        self.center_radius = float(center_radius)
        self.candidate_topk = int(candidate_topk)
        self.iou_weight = float(iou_weight)
        self.outside_penalty = float(outside_penalty)
        self.iou_eps = float(iou_eps)
        self.candidate_rule = candidate_rule
        self.objectness = objectness
        if objectness is not None:
            self.required_predictions = ("pred_boxes", "cls_logits", objectness)
        # every pair paying the penalty costs more than this (module docstring)
        self.outside_floor = self.outside_penalty * (1 - 1e-6) - 1e-3 - 1e-5 * self.iou_weight

    def extra_repr(self) -> str:
        return (
            f"center_radius={self.center_radius}, candidate_topk={self.candidate_topk}, iou_weight={self.iou_weight}, "
            f"outside_penalty={self.outside_penalty}, candidate_rule={self.candidate_rule!r}, "
            f"objectness={self.objectness!r}"
        )

    def scores(self, predictions: Mapping[str, Tensor]) -> Tensor:
        """(N, R, C) q: σ(cls), or sqrt(σ(cls)·σ(obj)); NaN → 0. Computed on the whole tensor."""
        probs = predictions["cls_logits"].float().sigmoid()
        if self.objectness is not None:
            probs = (probs * predictions[self.objectness].float().sigmoid()).sqrt()
        return probs.nan_to_num_(nan=0.0)  # a new tensor: in place

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
            priors: R priors (``points`` are the centres of step 1, ``strides`` their s).
            gt: padded gts (N, G).
            predictions: ``"pred_boxes"`` (N, R, 4), ``"cls_logits"`` (N, R, C) and the
                objectness logits if configured, detached.
        """
        logits = predictions["cls_logits"]
        if logits.shape[-1] != num_classes:
            raise ValueError(f"cls_logits has {logits.shape[-1]} classes, expected num_classes={num_classes}")
        n_img, n_gt = gt.classes.shape
        n_pri = len(priors)
        m = _Match(n_img, n_pri, n_gt, priors.points.device)
        if n_pri and n_gt and bool(gt.valid.any()):
            self.match(m, priors, gt, self.scores(predictions), predictions["pred_boxes"].float())
        shape = m.shape
        matched = m.matched.view(shape)
        extras = {
            "matched_iou": m.iou.view(shape),
            "matched_cost": m.cost.view(shape),
            "dynamic_k": m.k.view(n_img, n_gt),
            "candidates": m.candidates.view(shape),
        }
        return Assignment.from_matches(gt, matched, num_classes, cls_scores=m.iou.view(shape), extras=extras)

    # ------------------------------------------------------------------ the steps
    def match(self, m: _Match, priors: Priors, gt: GTBatch, probs: Tensor, pred_boxes: Tensor) -> None:
        """Steps 1-8 into ``m``. probs: (N, R, C) q; pred_boxes: (N, R, 4) float32."""
        n_pri = len(priors)
        ctx = {
            "priors": priors,
            "gt": gt,
            "probs": probs.reshape(-1, probs.shape[-1]),
            "pred": pred_boxes.reshape(-1, 4),
            "labels": gt.classes.clamp(min=0).reshape(-1),
        }
        both = self.regions(priors, gt, m)
        if not bool(m.candidates.any()):
            return
        ctx["neg"] = self.negative_sums(m.candidates, ctx)
        m.k = self.dynamic_ks(m.candidates, gt, pred_boxes, ctx)
        inside = torch.ones_like(both.gt, dtype=torch.bool)
        both.values = {"iou": _pair_iou(ctx["pred"], both, gt, n_pri), "inside": inside}
        self.estimate(both, ctx)
        marks = self.marks(both, m, ctx)
        self.resolve(marks, both, m, ctx)

    # ------------------------------------------------------------------ steps 1-2
    def regions(self, priors: Priors, gt: GTBatch, m: _Match) -> CandidatePairs:
        """Steps 1-2: marks S in ``m.candidates`` and returns every in-both pair (image, prior,
        gt) of a valid gt, sorted by (image, gt, prior)."""
        found = self.grid_regions(priors, gt, m)
        if found is not None:
            return found
        n_img, n_gt = gt.classes.shape
        num_levels = len(priors.num_per_level)
        b = gt.boxes.double()[:, :, None, :]  # (N, G, 1, 4)
        center = (b[..., :2] + b[..., 2:]) / 2
        half = self.center_radius * level_stride_table(priors)[:, None]  # (L, 1)
        lo, hi = center - half, center + half  # (N, G, L, 2)
        if self.candidate_rule == "box_or_center":
            lo, hi = torch.minimum(lo, b[..., :2]), torch.maximum(hi, b[..., 2:])
        active = gt.valid[:, :, None].expand(n_img, n_gt, num_levels)
        kept = []
        for pairs in region_pair_chunks(priors, lo, hi, active):
            region, inside = self.geometry(pairs, priors, gt)
            hit = region.nonzero().squeeze(1)
            m.candidates[(pairs.image * len(priors) + pairs.prior).index_select(0, hit)] = True
            kept.append(pairs.select(inside))
        return CandidatePairs.cat(kept, n_gt, gt.boxes.device)

    def grid_regions(self, priors: Priors, gt: GTBatch, m: _Match) -> Optional[CandidatePairs]:
        """:meth:`regions` on grid priors with one stride per level, from exact index
        rectangles (module docstring); None for other priors."""
        axes = grid_axes(priors)
        if axes is None:
            return None
        strides, start = [], 0
        for n in priors.num_per_level:  # ≤ 5 levels
            s = priors.strides[min(start, len(priors) - 1)]
            if n and not bool((priors.strides[start : start + n] == s).all()):
                return None
            strides.append(s)
            start += n
        level_strides = torch.stack(strides)  # (L,) the priors' own stride values
        boxes = gt.boxes
        # the per-pair arithmetic of center_region, per (image, gt, level)
        center = (boxes[..., :2] + boxes[..., 2:]) / 2  # (N, G, 2)
        half = (self.center_radius * level_strides)[:, None]  # (L, 1)
        lo_c, hi_c = center[:, :, None, :] - half, center[:, :, None, :] + half  # (N, G, L, 2)
        # (N, G, L, 2) inclusive index spans [first, last] of the columns (x) and rows (y); the
        # comparisons of exact (widened) values do not depend on the common dtype
        dtype = torch.promote_types(torch.promote_types(priors.points.dtype, lo_c.dtype), boxes.dtype)
        seqs = [pad_sequence([axis[d].to(dtype) for axis in axes], batch_first=True, padding_value=float("inf"))
                for d in (0, 1)]  # (L, W) sorted per level, padded with +inf
        square = [_open_spans(seqs[d], lo_c[..., d], hi_c[..., d]) for d in (0, 1)]
        rects, (in_cols, in_rows) = [square], square
        if self.candidate_rule == "box_or_center":
            num_levels = len(axes)
            box = [_open_spans(seqs[d], boxes[..., None, d].expand(-1, -1, num_levels),
                               boxes[..., None, d + 2].expand(-1, -1, num_levels)) for d in (0, 1)]
            rects.append(box)
            in_cols, in_rows = (
                torch.stack([torch.maximum(sq[..., 0], bx[..., 0]), torch.minimum(sq[..., 1], bx[..., 1])], -1)
                for sq, bx in zip(square, box)
            )
        active = gt.valid[:, :, None].expand(-1, -1, len(axes))
        m.candidates |= _covered(priors, rects, active)
        return grid_rectangle_pairs(priors, in_cols, in_rows, active)

    def geometry(self, pairs: CandidatePairs, priors: Priors, gt: GTBatch) -> Tuple[Tensor, Tensor]:
        """(P,) candidate and inside flags of pairs (:func:`center_region`)."""
        points, strides = pairs.of_prior(priors.points), pairs.of_prior(priors.strides)
        return center_region(points, strides, pairs.of_gt(gt.boxes), self.center_radius, self.candidate_rule)

    # ------------------------------------------------------------------ costs
    def negative_sums(self, candidates: Tensor, ctx: Dict) -> Tensor:
        """(N·R,) float64 Σ_c BCE(q_c, 0) = −Σ_c max(log(1 − q_c), −100) of the candidate rows
        (0 elsewhere, or for every row when most are candidates): −log of the product
        Π_c (1 − q_c), taken in float32 over groups of 8 classes, then in float64, where every
        group product is a normal float32 and the whole is ≥ e^-100 (so no log reaches the
        clamp); the clamped logs summed otherwise. Error: module docstring."""
        probs = ctx["probs"]
        n_rows, n_cls = probs.shape
        out = torch.zeros(n_rows, dtype=torch.float64, device=probs.device)
        rows = candidates.nonzero().squeeze(1)
        every = 2 * rows.numel() > n_rows  # slices of every row: no gather
        total = n_rows if every else rows.numel()
        groups = max(1, -(-n_cls // 8))
        step = max(1, 2**20 // (8 * groups))
        for a in range(0, total, step):  # blocks bound the (rows × classes) table
            r = torch.arange(a, min(a + step, total), device=probs.device) if every else rows[a : a + step]
            q = probs[a : a + step] if every else probs.index_select(0, r)
            if n_cls == 8 * groups:
                t = torch.rsub(q, 1.0)
            else:  # padded with factors 1
                t = q.new_ones(q.shape[0], 8 * groups)
                t[:, :n_cls] = torch.rsub(q, 1.0)
            x = t
            while x.shape[1] > groups:  # 3 halvings: products of 8 factors
                half = x.shape[1] // 2
                x = x[:, :half] * x[:, half:]
            prod = x.double().prod(dim=1)
            val = -torch.log(prod)
            slow = (~((x.amin(dim=1) >= 1e-30) & (prod >= _EXP_M100))).nonzero().squeeze(1)
            if slow.numel():
                val[slow] = -torch.log(t.index_select(0, slow).double()).clamp(min=-100.0).sum(dim=1)
            out[r] = val
        return out

    def estimate(self, pairs: CandidatePairs, ctx: Dict) -> None:
        """Adds ``values`` "lo" and "hi" (float64): bounds of each pair's exact step-4 cost,
        from the per-prior Σ_c BCE(q_c, 0) with the gt's class term swapped (module docstring).
        Needs ``values`` "iou" and "inside"."""
        probs, n_pri = ctx["probs"], len(ctx["priors"])
        n_cls = probs.shape[1]
        # |exact class cost − its estimate| ≤ rel·(Σ_c BCE(q_c, 0) + BCE(q_g, 1)) + abs
        rel, abs_ = 2 * n_cls * 2.0**-24 + 2e-6, n_cls * 2.0**-21 + 1e-12
        rows = pairs.image * n_pri + pairs.prior
        labels = ctx["labels"].index_select(0, pairs.bag)
        q = probs.reshape(-1).index_select(0, rows * n_cls + labels).double()
        pos = (-torch.log(q)).clamp(max=100.0)  # BCE(q, 1)
        neg = ctx["neg"].index_select(0, rows)
        cls = neg - (-torch.log1p(-q)).clamp(max=100.0) + pos
        reg = self.iou_weight * (-torch.log(pairs.values["iou"].double() + self.iou_eps)).float().double()
        pen = self.outside_penalty * (~pairs.values["inside"]).double()
        mid = cls + reg + pen
        slack = rel * (neg + pos) + abs_ + 1e-6 * (neg + pos + reg.abs() + pen)
        pairs.values["lo"], pairs.values["hi"] = mid - slack, mid + slack

    def exact_costs(self, pairs: CandidatePairs, ctx: Dict) -> Tensor:
        """(P,) float32 step-4 cost of pairs (``values`` "iou", "inside"), the BCE in blocks."""
        probs, n_pri = ctx["probs"], len(ctx["priors"])
        rows = pairs.image * n_pri + pairs.prior
        labels = ctx["labels"].index_select(0, pairs.bag)
        cls = torch.empty(len(pairs), device=rows.device)
        step = max(1, _MAX_COST_ELEMENTS // max(probs.shape[1], 1))
        for a in range(0, len(pairs), step):  # blocks bound the (pairs × classes) BCE
            cls[a : a + step] = classification_cost(probs.index_select(0, rows[a : a + step]), labels[a : a + step])
        return simota_cost(cls, pairs.values["iou"], pairs.values["inside"], self.iou_weight, self.outside_penalty,
                           self.iou_eps)

    def evaluated(self, pairs: CandidatePairs, ctx: Dict) -> CandidatePairs:
        """``pairs`` with ``values`` "iou", "inside" and the cost bounds "lo", "hi"."""
        _, inside = self.geometry(pairs, ctx["priors"], ctx["gt"])
        pairs.values = {"iou": _pair_iou(ctx["pred"], pairs, ctx["gt"], len(ctx["priors"])), "inside": inside}
        self.estimate(pairs, ctx)
        return pairs

    def cheapest(self, pairs: CandidatePairs, segment: Tensor, k: Tensor, ctx: Dict) -> Tuple[CandidatePairs, Tensor]:
        """The k[s] cheapest pairs of each segment s by (exact cost, position) — the pairs of a
        segment are in prior order — with "cost"; and (S,) the k-th cheapest cost (inf where a
        segment has fewer than k[s] pairs or k[s] = 0).

        Only the pairs whose lower bound is at most U_s, the k-th smallest upper bound of the
        segment, can be among them (k pairs cost ≤ U_s); only those get an exact cost."""
        hi = _round_up(pairs.values["hi"])
        rank, count = _ranks(segment, hi, k.numel())
        ks = k.index_select(0, segment)
        bound = torch.full((k.numel(),), float("inf"), dtype=torch.float64, device=k.device)
        at = (rank == ks - 1).nonzero().squeeze(1)
        bound[segment.index_select(0, at)] = hi.index_select(0, at).double()
        near = ((pairs.values["lo"] <= bound.index_select(0, segment)) & (ks > 0)).nonzero().squeeze(1)
        pairs, segment, ks = pairs.take(near), segment.index_select(0, near), ks.index_select(0, near)
        pairs.values["cost"] = cost = self.exact_costs(pairs, ctx)
        rank, _ = _ranks(segment, cost, k.numel())  # ties: position = prior order
        kth = torch.full((k.numel(),), float("inf"), dtype=torch.float64, device=k.device)
        at = (rank == ks - 1).nonzero().squeeze(1)
        kth[segment.index_select(0, at)] = cost.index_select(0, at).double()
        kth = torch.where(count >= k, kth, torch.full_like(kth, float("inf")))
        return pairs.select(rank < ks), kth

    def least(self, pairs: CandidatePairs, winners: PriorWinners, ctx: Dict) -> None:
        """Merges into ``winners`` each prior's least-cost pair of ``pairs`` (then the lowest gt
        index), with "iou" and "cost": only pairs whose lower bound is at most the prior's
        least upper bound (all its pairs are in ``pairs``) get an exact cost."""
        if len(pairs) == 0:
            return
        n_pri = winners.shape[1]
        flat = pairs.image * n_pri + pairs.prior
        best = torch.full((winners.shape[0] * n_pri,), float("inf"), dtype=torch.float64, device=flat.device)
        best = best.scatter_reduce(0, flat, pairs.values["hi"], "amin")
        pairs = pairs.select(pairs.values["lo"] <= best.index_select(0, flat))
        cost = self.exact_costs(pairs, ctx)
        winners.update(pairs, [cost], {"iou": pairs.values["iou"], "cost": cost})

    # ------------------------------------------------------------------ step 5
    def dynamic_ks(self, candidates: Tensor, gt: GTBatch, pred_boxes: Tensor, ctx: Dict) -> Tensor:
        """Step 5: (N·G,) k_g over all of S (0 for invalid gts and images without candidates).

        Searches of the index of the candidates' predicted boxes at IoU levels θ_g, until the
        boxes found decide ⌊Σ of the 10 largest u⌋ (module docstring)."""
        n_img, n_gt = gt.classes.shape
        n_pri = pred_boxes.shape[1]
        m = self.candidate_topk
        device = pred_boxes.device
        k = torch.zeros(n_img * n_gt, dtype=torch.long, device=device)
        has_candidates = candidates.view(n_img, n_pri).any(dim=1)
        pending = (gt.valid & has_candidates[:, None]).reshape(-1).nonzero().squeeze(1)
        # the index holds the candidates' predicted boxes only (others: NaN, left out)
        boxes = torch.where(candidates.view(n_img, n_pri, 1), pred_boxes, torch.full_like(pred_boxes, float("nan")))
        index = PredictedBoxIndex(boxes)
        theta = torch.full((pending.numel(),), _FIRST_THETA, dtype=torch.float64, device=device)
        margin = 1e-4 + m * m * 2.0**-23  # ≥ the float32 rounding of a sum of m IoUs ≤ 1
        for attempt in range(_SEARCH_ROUNDS + 1):
            if pending.numel() == 0:
                break
            if attempt == _SEARCH_ROUNDS:
                theta = torch.zeros_like(theta)
            top = self.top_ious(index, pending, theta, ctx)  # (P, m) float32, largest first
            known = top.double()
            above = known >= theta[:, None]
            n_above = above.sum(dim=1)
            exact = (n_above >= m) | (theta == 0)  # the top m of S are known
            lower = known.sum(dim=1)
            upper = (known * above).sum(dim=1) + (m - n_above) * theta  # the rest is < θ
            f_lo = torch.floor(lower - margin).clamp(min=1)
            f_hi = torch.floor(upper + margin).clamp(min=1)
            value = torch.where(exact, dynamic_k(top), f_lo.long())
            done = exact | (f_lo == f_hi)
            k[pending[done]] = value[done]
            rest = (~done).nonzero().squeeze(1)
            theta = self.next_theta(known.index_select(0, rest), f_lo.index_select(0, rest) + 1 - 2 * margin,
                                    theta.index_select(0, rest))
            pending = pending.index_select(0, rest)
        return k

    def next_theta(self, known: Tensor, target: Tensor, theta: Tensor) -> Tensor:
        """(P,) the next search level: the largest t with Σ_{known v ≥ t} v + (m − #{v ≥ t})·t ≤
        target (this bound of Σ top-m grows with t), below θ; 0 if none or < _MIN_THETA.

        Args:
            known: (P, m) float64 the largest u found, largest first (zero-padded)."""
        m = known.shape[1]
        prefix = torch.cumsum(known, dim=1) - known  # Σ of the j largest
        j = torch.arange(m, dtype=torch.float64, device=known.device)
        t = (target[:, None] - prefix) / (m - j)  # t if exactly the j largest are ≥ t
        prev = torch.cat([torch.full_like(known[:, :1], float("inf")), known[:, :-1]], dim=1)
        fits = (prev >= t) & (known < t) & (t > 0)
        first = torch.where(fits, j, torch.full_like(t, float(m))).amin(dim=1).long()
        t = torch.cat([t, torch.zeros_like(t[:, :1])], dim=1).gather(1, first[:, None]).squeeze(1)
        t = torch.minimum(t, theta * (1 - 1e-3))
        return torch.where(t < _MIN_THETA, torch.zeros_like(t), t)

    def top_ious(self, index: PredictedBoxIndex, pending: Tensor, theta: Tensor, ctx: Dict) -> Tensor:
        """(P, m) float32 the m largest u > 0 of each pending gt (flat n·G + g) among the
        candidates the index returns at θ (every one with u ≥ θ, maybe more), largest first,
        zero-padded."""
        gt, n_pri = ctx["gt"], len(ctx["priors"])
        m = self.candidate_topk
        device = pending.device
        table = torch.zeros(pending.numel(), m, device=device)
        image = torch.div(pending, gt.classes.shape[1], rounding_mode="floor")
        gt_boxes = gt.boxes.float().reshape(-1, 4).index_select(0, pending)
        start, end, row = index.ranges(gt_boxes, image, theta)
        counts = torch.zeros(pending.numel(), dtype=torch.long, device=device).index_add_(0, row, end - start)
        for a, b in _row_chunks(counts, _MAX_PAIRS):  # chunks of whole gts
            lo, hi = (int(v) for v in torch.searchsorted(row, torch.tensor([a, b], device=device)))
            pos, run = expand_runs(start[lo:hi], end[lo:hi])
            local = row[lo:hi].index_select(0, run)
            pred = ctx["pred"].index_select(0, image.index_select(0, local) * n_pri + index.prior.index_select(0, pos))
            iou = aligned_box_iou(pred, gt_boxes.index_select(0, local)).nan_to_num_(nan=0.0, posinf=0.0, neginf=0.0)
            hit = (iou > 0).nonzero().squeeze(1)
            local, iou = local.index_select(0, hit), iou.index_select(0, hit)
            # one sort by (gt ↑, u ↓): a positive float32's bit pattern grows with it
            order = torch.sort(local * 2**31 + (2**31 - 1 - iou.view(torch.int32).long())).indices
            local, iou = local.index_select(0, order), iou.index_select(0, order)
            count = torch.bincount(local, minlength=pending.numel())
            rank = torch.arange(local.numel(), device=device) - (torch.cumsum(count, 0) - count).index_select(0, local)
            top = (rank < m).nonzero().squeeze(1)
            table[local.index_select(0, top), rank.index_select(0, top)] = iou.index_select(0, top)
        return table

    # ------------------------------------------------------------------ steps 6-7
    def marks(self, both: CandidatePairs, m: _Match, ctx: Dict) -> CandidatePairs:
        """Step 6: the marked pairs with "iou" and "cost".

        A gt whose k-th cheapest in-both pair costs less than ``outside_floor`` marks its k
        cheapest in-both pairs; the others are ranked over every (p ∈ S, g)."""
        bag = both.bag
        count = torch.bincount(bag, minlength=m.k.numel())
        # a gt with fewer than k in-both pairs is not settled: none of its pairs is needed
        k = torch.where(count >= m.k, m.k, torch.zeros_like(m.k))
        chosen, kth = self.cheapest(both, bag, k, ctx)
        settled = (count >= m.k) & (kth < self.outside_floor)
        chosen = chosen.select(settled.index_select(0, chosen.bag))
        exhaustive = self.exhaustive_marks(((m.k > 0) & ~settled).nonzero().squeeze(1), m, ctx)
        parts = [_marked(c) for c in (chosen, exhaustive) if len(c)]
        return CandidatePairs.cat(parts, both.num_gts, bag.device)

    def exhaustive_marks(self, bags: Tensor, m: _Match, ctx: Dict) -> CandidatePairs:
        """Step 6 for the gts ``bags`` (flat n·G + g) over every candidate of their image."""
        gt, n_pri = ctx["gt"], len(ctx["priors"])
        n_gt = gt.classes.shape[1]
        device = bags.device
        cand = m.candidates.nonzero().squeeze(1)  # sorted by (image, prior)
        per_image = torch.bincount(torch.div(cand, n_pri, rounding_mode="floor"), minlength=m.shape[0])
        first = torch.cumsum(per_image, 0) - per_image
        image = torch.div(bags, n_gt, rounding_mode="floor")
        counts = per_image.index_select(0, image)
        kept = []
        for a, b in _row_chunks(counts, _MAX_PAIRS):  # chunks of whole gts
            cnt = counts[a:b]
            run = torch.repeat_interleave(torch.arange(b - a, device=device), cnt)
            local = torch.arange(run.numel(), device=device) - (torch.cumsum(cnt, 0) - cnt).index_select(0, run)
            flat = cand.index_select(0, first.index_select(0, image[a:b]).index_select(0, run) + local)
            gts = bags[a:b].index_select(0, run) % n_gt
            pairs = self.evaluated(CandidatePairs(image[a:b].index_select(0, run), flat % n_pri, gts, n_gt), ctx)
            chosen, _ = self.cheapest(pairs, run, m.k.index_select(0, bags[a:b]), ctx)
            kept.append(_marked(chosen))
        return CandidatePairs.cat(kept, n_gt, device)

    def resolve(self, marks: CandidatePairs, both: CandidatePairs, m: _Match, ctx: Dict) -> None:
        """Step 7: a prior marked once keeps its gt; one marked several times goes to the least
        cost over all gts of its image (ties: the lowest gt index)."""
        n_img, n_pri = m.shape
        if len(marks) == 0:
            return
        flat = marks.image * n_pri + marks.prior
        count = torch.bincount(flat, minlength=n_img * n_pri)
        once = (count.index_select(0, flat) == 1).nonzero().squeeze(1)
        m.put(flat[once], marks.gt[once], marks.values["iou"][once], marks.values["cost"][once])
        contested = count > 1
        if not bool(contested.any()):
            return
        # an in-both pair below the floor beats every pair that pays the penalty
        winners = PriorWinners(n_img, n_pri, ("min", "min"), device=flat.device)
        self.least(both.select(contested.index_select(0, both.image * n_pri + both.prior)), winners, ctx)
        w_gt, w_cost = winners.matched.reshape(-1), winners.value("cost").reshape(-1)
        done = contested & (w_gt >= 0) & (w_cost.double() < self.outside_floor)
        idx = done.nonzero().squeeze(1)
        m.put(idx, w_gt[idx], winners.value("iou").reshape(-1)[idx], w_cost[idx])
        self.resolve_exhaustively((contested & ~done).nonzero().squeeze(1), m, ctx)

    def resolve_exhaustively(self, flat: Tensor, m: _Match, ctx: Dict) -> None:
        """Step 7 for the priors ``flat`` (n·R + p) against every valid gt of their image."""
        if flat.numel() == 0:
            return
        gt, n_pri = ctx["gt"], len(ctx["priors"])
        n_img, n_gt = gt.classes.shape
        winners = PriorWinners(n_img, n_pri, ("min", "min"), device=flat.device)
        step = max(1, _MAX_PAIRS // n_gt)
        for a in range(0, flat.numel(), step):  # chunks of priors, each against all G gts
            rows = flat[a : a + step].repeat_interleave(n_gt)
            g = torch.arange(n_gt, device=flat.device).repeat(flat[a : a + step].numel())
            pairs = CandidatePairs(torch.div(rows, n_pri, rounding_mode="floor"), rows % n_pri, g, n_gt)
            self.least(self.evaluated(pairs.select(pairs.of_gt(gt.valid)), ctx), winners, ctx)
        m.put(flat, winners.matched.reshape(-1)[flat], winners.value("iou").reshape(-1)[flat],
              winners.value("cost").reshape(-1)[flat])


def _marked(pairs: CandidatePairs) -> CandidatePairs:
    """The pairs with their "iou" and "cost" values only."""
    return CandidatePairs(pairs.image, pairs.prior, pairs.gt, pairs.num_gts,
                          {"iou": pairs.values["iou"], "cost": pairs.values["cost"]})


def _open_spans(seq: Tensor, lo: Tensor, hi: Tensor) -> Tensor:
    """(N, G, L, 2) int64 [first, last] indices of the grid coordinates x of each level with
    lo < x < hi, the comparisons ``x > lo`` and ``x < hi`` (empty: last < first).

    Args:
        seq: (L, W) each level's sorted coordinates, padded with +inf; lo, hi: (N, G, L)."""
    n, g, num_levels = lo.shape
    lo, hi = (v.permute(2, 0, 1).reshape(num_levels, n * g).to(seq.dtype).contiguous() for v in (lo, hi))
    first = torch.searchsorted(seq, lo, right=True)  # the first x > lo
    last = torch.searchsorted(seq, hi, right=False) - 1  # the last x < hi
    return torch.stack([first, last], -1).view(num_levels, n, g, 2).permute(1, 2, 0, 3)


def _covered(priors: Priors, rects, active: Tensor) -> Tensor:
    """(N·R,) bool: the grid priors inside at least one active index rectangle.

    Args:
        rects: [(cols, rows)], each (N, G, L, 2) int64 inclusive [first, last] (unclamped);
        active: (N, G, L) bool. Cost: O(rectangles + N·R), from 2-D difference arrays."""
    n_img = active.shape[0]
    device = active.device
    sizes = torch.tensor(priors.grid_sizes, dtype=torch.long, device=device).reshape(-1, 2)  # (L, 2) = (H, W)
    height, width = sizes[:, 0], sizes[:, 1]
    area = n_img * (height + 1) * (width + 1)  # one (N, H + 1, W + 1) array per level
    offset = torch.cumsum(area, 0) - area
    diff = torch.zeros(int(area.sum()), dtype=torch.int32, device=device)
    num_levels = len(priors.grid_sizes)
    for cols, rows in rects:  # ≤ 2 rectangles per gt
        c0, c1 = cols[..., 0].clamp(min=0), torch.minimum(cols[..., 1], width - 1)
        r0, r1 = rows[..., 0].clamp(min=0), torch.minimum(rows[..., 1], height - 1)
        at = (active & (c0 <= c1) & (r0 <= r1)).flatten().nonzero().squeeze(1)  # (n, g, l) order
        c0, c1, r0, r1 = (x.flatten().index_select(0, at) for x in (c0, c1, r0, r1))
        n, level = torch.div(at, active[0].numel(), rounding_mode="floor"), at % num_levels
        w1 = width.index_select(0, level) + 1
        base = offset.index_select(0, level) + n * (height.index_select(0, level) + 1) * w1
        top, bottom = base + r0 * w1, base + (r1 + 1) * w1
        corners = torch.cat([top + c0, top + c1 + 1, bottom + c0, bottom + c1 + 1])
        signs = torch.tensor([1, -1, -1, 1], dtype=torch.int32, device=device).repeat_interleave(c0.numel())
        diff.index_add_(0, corners, signs)
    out, start = [], 0
    for h, w in priors.grid_sizes:  # ≤ 5 levels
        size = n_img * (h + 1) * (w + 1)
        cover = diff[start : start + size].view(n_img, h + 1, w + 1).cumsum(1).cumsum(2)[:, :h, :w] > 0
        out.append(cover.reshape(n_img, h * w))
        start += size
    return torch.cat(out, dim=1).reshape(-1)
