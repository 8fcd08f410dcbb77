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

* region pairs — the priors in each gt's box ∪ centre square, from the grid geometry
  (:func:`~dsla_d2.assigners.pairs.region_pair_chunks`) — give S, every in-both pair and the
  IoUs of the region;
* k_g needs the 10 largest u over S: with θ_g = the 10th largest region IoU (0 if the region
  has fewer than 10 overlapping predictions), every pair with u ≥ θ_g is found in TAL's
  bucketed index of the candidates' predicted boxes (``tal._PredictedBoxIndex``, which returns
  a superset of the boxes with IoU ≥ θ), and no other pair can be among the 10;
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
gt takes the exhaustive path).

Bits: probabilities are computed once on the whole logit tensor and gathered (sigmoid's
vectorised and scalar paths may differ in the last bit), the BCE row sums in one (pairs, C)
layout, −log(u + ε) in float64 then rounded to float32, and the top-10 IoUs summed largest
first, one addition at a time, so that ⌊·⌋ never depends on how a reduction kernel groups the
terms (a float32 sum of 0.9, 0.8, 0.7, 0.3, 0.2, 0.1 is 3.0 that way; 2.9999998 → k = 2).
Non-finite or empty predicted boxes have u = 0; a NaN probability counts as 0 (its BCE with
target 1 is the clamp, 100).
"""
from typing import Dict, Mapping, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

from ..box_ops import aligned_box_iou
from ..priors import Priors
from ..utils.progress import TrainingProgress
from .base import ASSIGNER_REGISTRY, Assignment, DenseAssigner, GTBatch
from .pairs import CandidatePairs, _row_chunks, rank_in_segments, region_pair_chunks
from .regions import level_stride_table
from .tal import _expand_runs, _PredictedBoxIndex
from .winners import PriorWinners

__all__ = ["SimOTAAssigner", "CANDIDATE_RULES", "center_region", "classification_cost", "simota_cost", "dynamic_k"]

#: "box_or_center": YOLOX 0.2/0.3 (candidates in a gt's box or its centre square, penalty off
#: "both"); "center": the authors' Jan-2023 rule (the centre square alone, penalty off it).
CANDIDATE_RULES = ("box_or_center", "center")
#: Pairs evaluated at once (geometry, IoU); about 15 tensors of 1-8 bytes live per pair.
_MAX_PAIRS = 2**18
#: (pair, class) elements of one BCE block of the classification cost.
_MAX_COST_ELEMENTS = 2**22


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
        return torch.nan_to_num(probs, nan=0.0)

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
        region = self.region_pairs(priors, gt, ctx["pred"])
        m.candidates[region.image * n_pri + region.prior] = True
        if len(region) == 0:
            return
        m.k = self.dynamic_ks(region, m.candidates, gt, pred_boxes, ctx)
        both, marks = self.marks(region, m, ctx)
        self.resolve(marks, both, m, ctx)

    def region_pairs(self, priors: Priors, gt: GTBatch, pred_flat: Tensor) -> CandidatePairs:
        """Steps 1-2: every (image, prior, gt) with the prior a candidate of the valid gt, with
        ``values`` "inside" (in box and in centre) and "iou" (u)."""
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
            keep = region.nonzero().squeeze(1)
            pairs = pairs.take(keep)
            pairs.values = {"inside": inside.index_select(0, keep), "iou": _pair_iou(pred_flat, pairs, gt, len(priors))}
            kept.append(pairs)
        return CandidatePairs.cat(kept, n_gt, gt.boxes.device)

    def geometry(self, pairs: CandidatePairs, priors: Priors, gt: GTBatch) -> Tuple[Tensor, Tensor]:
        """(P,) candidate and inside flags of pairs (:func:`center_region`)."""
        points, strides = pairs.of_prior(priors.points), pairs.of_prior(priors.strides)
        return center_region(points, strides, pairs.of_gt(gt.boxes), self.center_radius, self.candidate_rule)

    def costs(self, pairs: CandidatePairs, iou: Tensor, inside: Tensor, ctx: Dict) -> Tensor:
        """(P,) step-4 cost of pairs, the BCE in blocks of bounded size."""
        probs, n_pri = ctx["probs"], len(ctx["priors"])
        rows = pairs.image * n_pri + pairs.prior
        labels = ctx["labels"].index_select(0, pairs.bag)
        cls = torch.empty(len(pairs), device=iou.device)
        step = max(1, _MAX_COST_ELEMENTS // max(probs.shape[1], 1))
        for a in range(0, len(pairs), step):  # blocks bound the (pairs × classes) BCE
            cls[a : a + step] = classification_cost(probs.index_select(0, rows[a : a + step]), labels[a : a + step])
        return simota_cost(cls, iou, inside, self.iou_weight, self.outside_penalty, self.iou_eps)

    def dynamic_ks(
        self, region: CandidatePairs, candidates: Tensor, gt: GTBatch, pred_boxes: Tensor, ctx: Dict
    ) -> Tensor:
        """Step 5: (N·G,) k_g over all of S (0 for invalid gts and images without candidates).

        The region's pairs, plus the pairs off the region whose predicted box has u ≥ θ_g, the
        10th largest region IoU (module docstring), found in the index of the candidates'
        predicted boxes."""
        n_img, n_gt = gt.classes.shape
        n_pri = pred_boxes.shape[1]
        m = self.candidate_topk
        device = pred_boxes.device
        u = region.values["iou"]
        overlap = (u > 0).nonzero().squeeze(1)
        bags, ious = [region.bag.index_select(0, overlap)], [u.index_select(0, overlap)]
        theta = torch.zeros(n_img * n_gt, dtype=torch.float64, device=device)
        rank = rank_in_segments(bags[0], -ious[0])
        at = (rank == m - 1).nonzero().squeeze(1)
        theta[bags[0].index_select(0, at)] = ious[0].index_select(0, at).double()
        # the index holds the candidates' predicted boxes only (others: NaN, left out)
        boxes = torch.where(candidates.view(n_img, n_pri, 1), pred_boxes, torch.full_like(pred_boxes, float("nan")))
        index = _PredictedBoxIndex(boxes)
        pending = gt.valid.reshape(-1).nonzero().squeeze(1)
        image = torch.div(pending, n_gt, rounding_mode="floor")
        gt_boxes = gt.boxes.float().reshape(-1, 4)
        start, end, row = index.ranges(gt_boxes.index_select(0, pending), image, theta.index_select(0, pending))
        counts = torch.zeros(pending.numel(), dtype=torch.long, device=device).index_add_(0, row, end - start)
        for a, b in _row_chunks(counts, _MAX_PAIRS):  # chunks of whole gts
            lo, hi = (int(v) for v in torch.searchsorted(row, torch.tensor([a, b], device=device)))
            pos, run = _expand_runs(start[lo:hi], end[lo:hi])
            bag = pending.index_select(0, row[lo:hi].index_select(0, run))
            image = torch.div(bag, n_gt, rounding_mode="floor")
            pairs = CandidatePairs(image, index.prior.index_select(0, pos), bag % n_gt, n_gt)
            iou = _pair_iou(ctx["pred"], pairs, gt, n_pri)
            in_region, _ = self.geometry(pairs, ctx["priors"], gt)
            off = ((iou > 0) & ~in_region).nonzero().squeeze(1)  # the region's pairs are counted already
            bags.append(bag.index_select(0, off))
            ious.append(iou.index_select(0, off))
        bag, iou = torch.cat(bags), torch.cat(ious)
        rank = rank_in_segments(bag, -iou)
        top = (rank < m).nonzero().squeeze(1)
        table = torch.zeros(n_img * n_gt, m, device=device)
        table[bag.index_select(0, top), rank.index_select(0, top)] = iou.index_select(0, top)
        has_candidates = candidates.view(n_img, n_pri).any(dim=1)
        alive = (gt.valid & has_candidates[:, None]).reshape(-1)
        return torch.where(alive, dynamic_k(table), torch.zeros_like(alive, dtype=torch.long))

    def marks(self, region: CandidatePairs, m: _Match, ctx: Dict) -> Tuple[CandidatePairs, CandidatePairs]:
        """Step 6: (every in-both pair with its "cost", the marked pairs with "cost" and "iou").

        A gt whose k-th cheapest in-both pair costs less than ``outside_floor`` marks its k
        cheapest in-both pairs; the others are ranked over every (p ∈ S, g)."""
        inside = region.values["inside"].nonzero().squeeze(1)
        both = region.take(inside)  # sorted by (image, gt, prior)
        both.values["cost"] = self.costs(both, both.values["iou"], torch.ones_like(inside, dtype=torch.bool), ctx)
        bag, cost = both.bag, both.values["cost"]
        k = m.k.index_select(0, bag)
        rank = rank_in_segments(bag, cost)  # ties: input order = prior order
        count = torch.bincount(bag, minlength=m.k.numel())
        kth = torch.full_like(m.k, float("inf"), dtype=torch.float64)
        at = (rank == k - 1).nonzero().squeeze(1)
        kth[bag.index_select(0, at)] = cost.index_select(0, at).double()
        settled = (count >= m.k) & (kth < self.outside_floor)
        chosen = both.select((rank < k) & settled.index_select(0, bag))
        exhaustive = self.exhaustive_marks(((m.k > 0) & ~settled).nonzero().squeeze(1), m, ctx)
        return both, CandidatePairs.cat([c for c in (chosen, exhaustive) if len(c)], both.num_gts, bag.device)

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
            pairs = CandidatePairs(image[a:b].index_select(0, run), flat % n_pri, gts, n_gt)
            pairs = self.evaluated(pairs, ctx)
            rank = rank_in_segments(run, pairs.values["cost"])  # ties: prior order
            kept.append(pairs.select(rank < m.k.index_select(0, bags[a:b]).index_select(0, run)))
        return CandidatePairs.cat(kept, n_gt, device)

    def evaluated(self, pairs: CandidatePairs, ctx: Dict) -> CandidatePairs:
        """``pairs`` with ``values`` "iou", "inside" and "cost" computed from scratch."""
        _, inside = self.geometry(pairs, ctx["priors"], ctx["gt"])
        iou = _pair_iou(ctx["pred"], pairs, ctx["gt"], len(ctx["priors"]))
        pairs.values = {"iou": iou, "inside": inside, "cost": self.costs(pairs, iou, inside, ctx)}
        return pairs

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
        at = both.select(contested.index_select(0, both.image * n_pri + both.prior))
        winners = PriorWinners(n_img, n_pri, ("min", "min"), device=flat.device)
        winners.update(at, [at.values["cost"]], {"iou": at.values["iou"], "cost": at.values["cost"]})
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
            pairs = self.evaluated(pairs.select(pairs.of_gt(gt.valid)), ctx)
            winners.update(pairs, [pairs.values["cost"]], {k: pairs.values[k] for k in ("iou", "cost")})
        m.put(flat, winners.matched.reshape(-1)[flat], winners.value("iou").reshape(-1)[flat],
              winners.value("cost").reshape(-1)[flat])
