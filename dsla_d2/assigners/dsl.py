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
of C is ≥ 0 up to rounding, C_center grows by 10× per stride of distance, and cheap lower
bounds of the other two terms let most pairs be skipped without their exact cost:

* step 1: each gt covers one rectangle of grid indices per level, painted with a 2-D
  difference array (a point set: sparse pairs in chunks);
* k_g only needs ⌊Σ⌋ of g's m = 13 largest u among the valid priors' predicted boxes:
  TOOD's IoU-bounded box index (:class:`~dsla_d2.assigners.box_index.PredictedBoxIndex`; a
  search at θ finds every box with u ≥ θ), first at θ = 0.5. A gt is settled once m boxes
  with u ≥ θ are found (its top m), at θ = 0 (every overlapping box), or once Σ is pinned:
  it lies in [Σ of the top m found, Σ of those ≥ θ + (m − their number)·θ), and when both
  ends give the same max(1, ⌊·⌋) that is k_g. Otherwise the next θ is the m-th largest u
  found (which settles it), or the largest θ that would pin Σ if no box in between was
  missed, whichever is larger; a gt with no overlapping box found goes to θ = 0 when that
  search is short (an empty region). The search also bounds g's largest u from above;
* bounds (float32 terms with a 1e−4 relative margin, far above their error): per valid
  prior, an upper bound of S = Σ_c BCE(x_c, 0)·σ(x_c)² and a floor of C_cls for every gt
  (S less its largest term); per gt, F_g = the lowest floor over the image's valid priors
  + λ2·C_reg at g's largest u. A valid prior farther than D strides from g's centre costs
  more than B_g(D) = F_g + 10^(D − β) (less a rounding slack, :func:`cost_lower_bound`);
* steps 2 and 4: a probe costs g's valid priors within INITIAL_RADIUS = 1 stride (Euclidean)
  on every level with S replaced by its upper bound (C is monotone in S): with k_g of them,
  the k_g-th lowest, T_g, bounds g's k_g-th lowest cost L_g from above. The search then
  enumerates the valid priors within the D_g with B_g(D_g) > T_g (a disc per level, by grid
  rows; a square for a point set) and costs exactly only those whose lower bound — the
  prior's floor, the centre term and g's IoU floor, then the pair's own IoU term — is
  ≤ T_g: every other prior costs more than T_g ≥ L_g, so g's k_g lowest costed (by C, then
  prior index, from one stable sort of integer keys) are its k_g lowest over all valid
  priors. A gt whose probe found fewer than k_g priors searches without T_g at 2·INITIAL_RADIUS,
  then at the D with B_g(D) > the k_g-th lowest found (or 2·D), and from D = 30 on over
  the whole image (beyond 30 strides every centre cost is the same 1e27, so only an
  exhaustive search orders them by prior index). The exact float64 S of a prior is
  computed the first time one of its pairs is costed;
* step 5 needs, for a prior taken more than once, the lowest cost over every gt; the
  lowest cost U among the gts that took it bounds it, so only gts whose centre is within
  the D with B(D) > U (B with p's floor of C_cls, in p's strides) can win: found by a
  search of the gt centres sorted by image and x, costed only where their lower bound is
  ≤ U.

Memory follows the pairs near the gt centres (a disc of radius ~4-5 strides per gt and
level, in chunks of 2^15 pairs), plus per-prior tables (the float32 bounds are built in
cache-sized blocks of the (priors × classes) logits); never priors × gts.

Numbers: every transcendental term of C (10^x, log, BCE, sigmoid) is computed in float64 and
rounded to float32 before the three terms are summed in float32, in the code's order
(cls + IoU) + centre. The soft class term is Σ_c over a per-prior sum of the negative terms
BCE(x_c, 0)·σ(x_c)², minus g's class's negative term, plus its soft term. (Vectorised and
scalar float64 kernels may differ in the last bit, so two pairs with the same inputs can
differ in C only where that bit crosses a float32 rounding boundary.)

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

from ..priors import Priors
from ..utils.progress import TrainingProgress
from . import pairs as _pairs
from .base import ASSIGNER_REGISTRY, Assignment, DenseAssigner, GTBatch
from .pairs import CandidatePairs, _row_chunks, grid_axes, region_pair_chunks
from .regions import centered_regions
from .box_index import PredictedBoxIndex, expand_runs
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
#: Radius of every gt's first search, the probe, in strides of each level (module docstring).
INITIAL_RADIUS = 1.0
#: Searches per gt before the exhaustive one is forced (a guard: a gt needs at most ~5).
MAX_ROUNDS = 8
#: Rounding slack of the lower bound B(D): relative, and absolute (+ iou_weight × this).
_REL_SLACK = 1e-5
_ABS_SLACK = 1e-5
_IOU_SLACK = 1e-6
#: Relative margin of the bounds built from float32 terms (their relative error is < 1e-5):
#: the floors F, the per-pair lower bounds and the upper bound of the negative-class sum.
_BOUND_MARGIN = 1e-4
_LN10 = math.log(10.0)
#: Gt-centre search keys: image · SPAN + x clamped to ±LIMIT px (disjoint ranges per image).
_KEY_LIMIT = 2.0**24
_KEY_SPAN = 2.0**26
#: Elements of a (priors × classes) block of negative-class terms computed at once (cache-sized).
_NEGATIVE_BLOCK = 2**16
#: θ of every gt's first search of the top-IoU search of step 3 (module docstring).
_FIRST_THETA = 0.5
#: Bins of u per gt in the top-IoU search (only a gt's highest bins holding ``topk`` u are sorted).
_IOU_BINS = 64
#: A θ aimed at pinning k (step 3) below this is replaced by θ = 0.
_MIN_PINNED_THETA = 0.02
#: A gt with no overlapping box at the first θ searches θ = 0 next if that enumerates at
#: most this many boxes.
_LONELY_PAIRS = 256
#: Searches per gt before θ = 0 is forced (a guard: a gt needs at most 4).
_MAX_IOU_ROUNDS = 6
#: Pairs enumerated at once (or :data:`~dsla_d2.assigners.pairs.MAX_PAIRS_PER_CHUNK`, if smaller).
_MAX_PAIRS = 2**15


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


def _approximate_negative_terms(x: Tensor) -> Tensor:
    """BCE(x, 0)·σ(x)² = softplus(x)·σ(x)² of finite float32 ``x`` (overwritten), for the
    bounds, from p = σ(x) alone: softplus(x) = max(x, 0) − log(max(p, 1 − p)) (x − log p
    for x > 0, −log(1 − p) otherwise). Relative error a few ulp, except where softplus is
    small (x ≪ 0): there its absolute error (≤ 1.2e−7) is multiplied by p²: below 1e−5
    relative wherever softplus > 6e−3, below 3e−12 absolute elsewhere."""
    p = x.sigmoid()
    terms = torch.maximum(p, 1 - p).log_()
    return x.clamp_(min=0).sub_(terms).mul_(p).mul_(p)


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


def _lowered_floor(floor: Optional[Tensor]):
    """A floor F less its margin (0 without one)."""
    if floor is None:
        return 0.0
    f = floor.double()
    return f - _BOUND_MARGIN * f.abs()


def cost_lower_bound(
    radius: Tensor, soft_center_radius: float, iou_weight: float, floor: Optional[Tensor] = None
) -> Tensor:
    """B(D): every pair whose distance exceeds D strides costs more than this (float64).

    C ≥ 10^(min(d, 30) − β) + C_cls + λ2·C_reg with C_cls ≥ 0 and λ2·C_reg ≥ −λ2·log(1 + 1e−7);
    the float32 rounding of the terms and sums is far inside the slack. With a ``floor`` F
    (broadcastable to ``radius``), a lower bound of C_cls + λ2·C_reg of every pair concerned,
    B(D) = the above + F − 1e−4·|F|."""
    slack = _ABS_SLACK + iou_weight * _IOU_SLACK
    return torch.pow(10.0, radius.double() - soft_center_radius) * (1 - _REL_SLACK) - slack + _lowered_floor(floor)


def _radius_beyond(cost: Tensor, soft_center_radius: float, iou_weight: float, floor: Optional[Tensor] = None) -> Tensor:
    """The smallest D (strides, float64) with B(D) > ``cost`` (the inverse of
    :func:`cost_lower_bound`, with a margin; very negative where any D will do)."""
    slack = _ABS_SLACK + iou_weight * _IOU_SLACK
    excess = (cost.double() + slack - _lowered_floor(floor)) / (1 - _REL_SLACK)
    return soft_center_radius + torch.log10(excess.clamp(min=1e-300)) + 1e-6


def _order_key(cost: Tensor) -> Tensor:
    """int64 keys in [1, 2^32) ordered as the (finite) float32 ``cost`` (−0 as +0)."""
    bits = (cost.float() + 0.0).view(torch.int32).long()
    return torch.where(bits < 0, -(bits + 2**31), bits) + 2**31


def _k_lowest(segment: Tensor, cost: Tensor, need: Tensor, num_segments: int) -> Tuple[Tensor, Tensor, Tensor]:
    """Each segment's ``need`` lowest by (cost ↑, input order ↑), from one stable sort of
    integer keys.

    Args:
        segment: (P,) int64 in [0, num_segments) (< 2^31); cost: (P,) float32, finite;
            need: (P,) int64, the k of each element's segment.
    Returns:
        (P,) bool taken; (S,) float32 the k-th lowest cost of each segment (inf where it has
        fewer than k elements); (S,) int64 elements per segment.
    """
    count = torch.bincount(segment, minlength=num_segments)
    kth = torch.full((num_segments,), math.inf, dtype=torch.float32, device=cost.device)
    if segment.numel() == 0:
        return torch.zeros_like(segment, dtype=torch.bool), kth, count
    order = torch.sort(segment * 2**32 + _order_key(cost), stable=True).indices
    first = (torch.cumsum(count, 0) - count).index_select(0, segment.index_select(0, order))
    rank = torch.empty_like(segment).index_copy_(0, order, torch.arange(order.numel(), device=order.device) - first)
    at_k = (rank == need - 1).nonzero().squeeze(1)
    kth.index_copy_(0, segment.index_select(0, at_k), cost.index_select(0, at_k).float())
    return rank < need, kth, count


# ------------------------------------------------------------------ per-pair cost
class _PairCosts:
    """C and u of sparse (image, prior, gt) pairs of one batch, and bounds of C.

    Holds the (N·R, C) logits (sanitised as they are read), the predicted boxes' (N·R,)
    coordinates (NaN where not finite: u = 0) and areas, the gts' coordinates, areas and
    float64 centres and, per valid prior, float32-built bounds of its classes' negative
    terms: an upper bound of their sum S and a floor of C_cls (S less its largest term, so
    of every gt's pair, and ≥ 0; NaN for a prior that is not valid). The exact float64 S of a prior is
    computed the first time one of its pairs is costed (:meth:`__call__`)."""

    def __init__(self, assigner: "DynamicSoftLabelAssigner", priors: Priors, gt: GTBatch, logits: Tensor,
                 pred_boxes: Tensor, valid: Tensor):
        n, r, c = logits.shape
        device = logits.device
        self.num_priors, self.num_classes, self.num_gts, self.num_rows = r, c, gt.valid.shape[1], n * r
        self.radius, self.iou_weight, self.max_distance = (
            assigner.soft_center_radius, assigner.iou_weight, assigner.max_center_distance)
        self.flat_logits = logits.reshape(-1)  # (N·R·C,), raw: sanitised when read
        boxes = pred_boxes.float().reshape(n * r, 4)
        boxes = torch.where(torch.isfinite(boxes).all(dim=1, keepdim=True), boxes, torch.full_like(boxes, math.nan))
        self.box_sides, self.box_areas = _sides_and_areas(boxes)
        self.gt_sides, self.gt_areas = _sides_and_areas(gt.boxes.float().reshape(-1, 4))  # (N·G,) each
        points = priors.points.double()
        self.px, self.py = points[:, 0].contiguous(), points[:, 1].contiguous()
        self.strides = priors.strides.double()
        box = gt.boxes.double().reshape(-1, 4)
        self.cx, self.cy = ((box[:, 0] + box[:, 2]) / 2).contiguous(), ((box[:, 1] + box[:, 3]) / 2).contiguous()
        self.classes = gt.classes.clamp(min=0).reshape(-1)
        self.negative_sum = torch.zeros(n * r, dtype=torch.float64, device=device)
        self.known = torch.zeros(n * r, dtype=torch.bool, device=device)
        self.negative_upper = torch.zeros(n * r, dtype=torch.float64, device=device)
        self.cls_floor = torch.full((n * r,), math.nan, dtype=torch.float32, device=device)  # NaN: not valid
        valid_flat = valid.reshape(-1)
        step = max(1, _NEGATIVE_BLOCK // max(c, 1))
        padded = torch.cat([valid_flat, valid_flat.new_zeros((-(n * r)) % step)])
        blocks = padded.view(-1, step).any(dim=1).nonzero().squeeze(1) * step
        table = self.flat_logits.view(n * r, c)
        for a in blocks.tolist():  # blocks of consecutive priors holding a valid one
            terms = _approximate_negative_terms(sanitize_logits(table[a : a + step]))  # |error| < 1e-5·S + 1e-10
            total = terms.sum(dim=1)
            largest = terms.amax(dim=1) if c else torch.zeros_like(total)
            self.negative_upper[a : a + step] = total.double() * (1 + _BOUND_MARGIN) + 1e-6
            floor = (total * (1 - _BOUND_MARGIN) - largest * (1 + _BOUND_MARGIN) - 2e-6).clamp(min=0)
            self.cls_floor[a : a + step] = torch.where(valid_flat[a : a + step], floor, torch.full_like(floor, math.nan))
        # per image: the lowest floor of C_cls over its valid priors (inf without one)
        floors = torch.where(valid, self.cls_floor.view(n, r), torch.full_like(self.cls_floor.view(n, r), math.inf))
        self.image_cls_floor = (floors.amin(dim=1) if r else floors.new_full((n,), math.inf)).double()

    def _blocks(self, rows: Tensor) -> Iterator[Tensor]:
        step = max(1, _NEGATIVE_BLOCK // max(self.num_classes, 1))
        for a in range(0, rows.numel(), step):  # blocks of priors, cache-sized
            yield rows[a : a + step]

    def _rows(self, block: Tensor) -> Tensor:
        """(B, C) sanitised float32 logits of the flat priors ``block`` (a new tensor)."""
        return sanitize_logits(self.flat_logits.view(self.num_rows, self.num_classes).index_select(0, block))

    def _exact_negative_sums(self, flat: Tensor) -> Tensor:
        """(P,) float64 S of the flat priors, computed once per prior (float64 terms, summed
        per prior over its classes: the same bits whichever pairs ask first)."""
        want = torch.zeros_like(self.known).index_fill_(0, flat, True) & ~self.known
        rows = want.nonzero().squeeze(1)
        for block in self._blocks(rows):
            self.negative_sum[block] = _negative_terms(self._rows(block).double()).sum(dim=1)
        self.known[rows] = True
        return self.negative_sum.index_select(0, flat)

    def iou(self, flat: Tensor, bag: Tensor) -> Tensor:
        """(P,) float32 u of the flat priors' predicted boxes with the flat gts n·G + g:
        :func:`~dsla_d2.box_ops.aligned_box_iou`'s arithmetic with the areas precomputed
        (the same bits), 0 for a box that is not finite."""
        a = [t.index_select(0, flat) for t in self.box_sides]
        b = [t.index_select(0, bag) for t in self.gt_sides]
        w = (torch.minimum(a[2], b[2]) - torch.maximum(a[0], b[0])).clamp_(min=0)
        h = (torch.minimum(a[3], b[3]) - torch.maximum(a[1], b[1])).clamp_(min=0)
        inter = w * h
        union = self.box_areas.index_select(0, flat) + self.gt_areas.index_select(0, bag) - inter
        return (inter / union.clamp_(min=1e-6)).nan_to_num_(0.0, 0.0, 0.0)

    def distance(self, prior: Tensor, bag: Tensor) -> Tensor:
        """(P,) float64 d: |point − gt centre| / the prior's stride."""
        ox = self.px.index_select(0, prior) - self.cx.index_select(0, bag)
        oy = self.py.index_select(0, prior) - self.cy.index_select(0, bag)
        return (ox * ox + oy * oy).sqrt() / self.strides.index_select(0, prior)

    def center_cost_lower(self, distance: Tensor) -> Tensor:
        """(P,) float32 10^(min(d, D_max) − β) = exp(ln 10·(…)), the exponent rounded to
        float32 (≤ 88: finite; relative error < 1e−5)."""
        return ((distance.clamp(max=self.max_distance) - self.radius) * _LN10).float().exp_()

    def iou_cost_lower(self, u: Tensor) -> Tensor:
        """(P,) float32 −λ2·log(u + 1e−7) in float32 (error < 1e−6 relative + λ2·2e−7)."""
        return -self.iou_weight * torch.log(u + IOU_EPS)

    def below(self, parts: Tensor, threshold: Tensor) -> Tensor:
        """(P,) bool: a pair whose cost is at least ``parts`` (float32 sum of a floor of C_cls,
        a float32 lower term of C_reg and the float32 centre term; each term ≥ 0 but λ2·C_reg
        ≥ −λ2·1.2e−7) may cost ≤ ``threshold`` (float32, rounded up). The margin is far
        above the float32 errors: a pair costing ≤ the threshold is never dropped."""
        slack = _ABS_SLACK + self.iou_weight * _IOU_SLACK
        return parts * (1 - _BOUND_MARGIN) - slack <= threshold

    def geometry(self, pairs: CandidatePairs) -> Tuple[Tensor, Tensor, Tensor]:
        """(P,) flat prior n·R + r, float32 IoU u and float64 distance d in strides."""
        flat = pairs.image * self.num_priors + pairs.prior
        bag = pairs.bag
        return flat, self.iou(flat, bag), self.distance(pairs.prior, bag)

    def __call__(self, pairs: CandidatePairs, geometry: Optional[Tuple[Tensor, Tensor, Tensor]] = None,
                 negative_sum: Optional[Tensor] = None) -> Tuple[Tensor, Tensor]:
        """(P,) float32 cost C and IoU u of each pair (``geometry`` as :meth:`geometry`
        returns it, if known). With ``negative_sum`` in place of the exact S: C is monotone
        in S, so an upper bound of S gives an upper bound of C."""
        flat, u, distance = self.geometry(pairs) if geometry is None else geometry
        if negative_sum is None:
            negative_sum = self._exact_negative_sums(flat)
        index = flat * self.num_classes + self.classes.index_select(0, pairs.bag)
        label_logit = sanitize_logits(self.flat_logits.index_select(0, index)).double()
        cls = _cls_cost(negative_sum, label_logit, u.double())
        center = soft_center_prior(distance, self.radius, self.max_distance)
        return (cls + iou_cost(u, self.iou_weight)) + center, u

    def upper_cost(self, pairs: CandidatePairs, geometry: Tuple[Tensor, Tensor, Tensor]) -> Tensor:
        """(P,) float32 upper bounds of C (S replaced by its float32-built upper bound)."""
        return self(pairs, geometry, self.negative_upper.index_select(0, geometry[0]))[0]

    def may_cost_at_most(self, geometry: Tuple[Tensor, Tensor, Tensor], threshold: Tensor) -> Tensor:
        """(P,) bool: the pair's lower bound (floor of C_cls + C_reg + C_center from float32
        terms) is ≤ the (P,) float64 ``threshold``."""
        flat, u, distance = geometry
        parts = self.cls_floor.index_select(0, flat) + self.iou_cost_lower(u) + self.center_cost_lower(distance)
        return self.below(parts, _round_up(threshold))


def _sides_and_areas(boxes: Tensor) -> Tuple[Tuple[Tensor, ...], Tensor]:
    """(M, 4) boxes as four contiguous (M,) coordinates x1, y1, x2, y2, and (M,) areas as
    :func:`~dsla_d2.box_ops.aligned_box_iou` computes them."""
    sides = tuple(boxes[:, i].contiguous() for i in range(4))
    return sides, (boxes[:, 2:] - boxes[:, :2]).clamp(min=0).prod(dim=-1)


def _round_up(threshold: Tensor) -> Tensor:
    """float64 → float32 thresholds, never below the float64 value (inf stays inf)."""
    return (threshold.double() * (1 + 1e-6)).float()


def _level_strides(priors: Priors) -> Tensor:
    """(L,) float64 largest stride of each level's priors (0 for an empty level)."""
    table = torch.zeros(len(priors.num_per_level), dtype=torch.float64, device=priors.points.device)
    return table.scatter_reduce(0, priors.levels, priors.strides.double(), "amax")


def _grid_disc_rows(priors: Priors, axes, centers: Tensor, half: Tensor, max_pairs: int) -> Iterator[Tuple[Tensor, Tensor]]:
    """(row m, prior) of every grid prior within ``half[m, l]`` px (Euclidean) of
    ``centers[m]`` on level l, in chunks of whole rows, sorted by (m, prior).

    The priors of a disc are enumerated by grid rows: per (m, level) the rows within reach,
    per row the run of columns, each run one range of prior indices."""
    m_count, num_levels = half.shape
    device = centers.device
    cx, cy = centers[:, 0].contiguous(), centers[:, 1].contiguous()
    starts = [0]
    for n in priors.num_per_level[:-1]:
        starts.append(starts[-1] + n)
    first_row = torch.zeros(m_count, num_levels, dtype=torch.long, device=device)
    num_rows = torch.zeros(m_count, num_levels, dtype=torch.long, device=device)
    for level, (xs, ys) in enumerate(axes):  # ≤ 5 levels
        if xs.numel() == 0 or ys.numel() == 0:
            continue
        yv = ys.double().contiguous()
        lo = torch.searchsorted(yv, cy - half[:, level], side="left")
        hi = torch.searchsorted(yv, cy + half[:, level], side="right")
        first_row[:, level] = lo
        num_rows[:, level] = (hi - lo).clamp(min=0)
    counts = num_rows.reshape(-1)  # (m, level) order
    entry = torch.repeat_interleave(torch.arange(counts.numel(), device=device), counts)
    line = first_row.reshape(-1).index_select(0, entry) + torch.arange(entry.numel(), device=device) - (
        torch.cumsum(counts, 0) - counts).index_select(0, entry)
    owner = torch.div(entry, num_levels, rounding_mode="floor")
    level_of = entry % num_levels
    run_start = torch.zeros_like(entry)
    run_length = torch.zeros_like(entry)
    for level, (xs, ys) in enumerate(axes):  # ≤ 5 levels
        sel = (level_of == level).nonzero().squeeze(1)
        if sel.numel() == 0:
            continue
        m, i = owner.index_select(0, sel), line.index_select(0, sel)
        dy = ys.double().index_select(0, i) - cy.index_select(0, m)
        h = half[:, level].index_select(0, m)
        w = (h * h - dy * dy).clamp(min=0).sqrt()
        x = cx.index_select(0, m)
        xv = xs.double().contiguous()
        c0 = torch.searchsorted(xv, x - w, side="left")
        c1 = torch.searchsorted(xv, x + w, side="right")
        run_start[sel] = starts[level] + i * xs.numel() + c0
        run_length[sel] = (c1 - c0).clamp(min=0)
    per_row = torch.zeros(m_count, dtype=torch.long, device=device).index_add_(0, owner, run_length)
    for a, b in _row_chunks(per_row, max_pairs):  # chunks of whole rows m
        ra, rb = (int(v) for v in torch.searchsorted(owner, torch.tensor([a, b], device=device)))
        prior, run = expand_runs(run_start[ra:rb], run_start[ra:rb] + run_length[ra:rb])
        yield owner[ra:rb].index_select(0, run), prior


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
        costs = _PairCosts(self, priors, gt, logits, boxes, valid)
        k, top_iou = self._dynamic_ks(priors, gt, boxes, valid, costs)  # (N, G) step 3
        iou_floor = -self.iou_weight * torch.log(top_iou.double() + IOU_EPS)  # λ2·C_reg of every valid prior ≥ it
        picks, cost, u = self.lowest_cost_pairs(priors, gt, costs, k, valid, iou_floor)  # steps 2 and 4
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
        code's ``deltas.min(dim=-1) > 0`` on l, t, r, b).

        Grid priors: each gt covers one rectangle of grid indices per level (the columns
        with x1 < x < x2 and the rows with y1 < y < y2, found by binary search in the same
        dtype as the point-box comparison), painted with a 2-D difference array. A point
        set: sparse pairs in chunks."""
        n_img, n_gt = gt.valid.shape
        r = len(priors)
        device = priors.points.device
        axes = grid_axes(priors)
        if axes is None:
            valid = torch.zeros(n_img * r, dtype=torch.bool, device=device)
            lo, hi, active = centered_regions(gt.boxes, gt.valid, len(priors.num_per_level))
            for pairs in region_pair_chunks(priors, lo, hi, active, max_pairs=_pairs.MAX_PAIRS_PER_CHUNK):
                points, box = pairs.of_prior(priors.points), pairs.of_gt(gt.boxes)
                inside = (points > box[:, :2]).all(dim=1) & (points < box[:, 2:]).all(dim=1)
                valid[(pairs.image * r + pairs.prior)[inside]] = True
            return valid.view(n_img, r)
        dtype = torch.promote_types(priors.points.dtype, gt.boxes.dtype)
        bags = gt.valid.reshape(-1).nonzero().squeeze(1)
        image = torch.div(bags, max(n_gt, 1), rounding_mode="floor")
        box = gt.boxes.reshape(-1, 4).index_select(0, bags).to(dtype)
        levels = []
        for (xs, ys), count in zip(axes, priors.num_per_level):  # ≤ 5 levels
            h, w = ys.numel(), xs.numel()
            if count == 0:
                levels.append(torch.zeros(n_img, 0, dtype=torch.bool, device=device))
                continue
            xv, yv = xs.to(dtype).contiguous(), ys.to(dtype).contiguous()
            c0 = torch.searchsorted(xv, box[:, 0].contiguous(), right=True)  # first x > x1
            c1 = torch.searchsorted(xv, box[:, 2].contiguous(), right=False)  # first x ≥ x2
            r0 = torch.searchsorted(yv, box[:, 1].contiguous(), right=True)
            r1 = torch.searchsorted(yv, box[:, 3].contiguous(), right=False)
            keep = ((c1 > c0) & (r1 > r0)).nonzero().squeeze(1)
            c0, c1, r0, r1, img = (t.index_select(0, keep) for t in (c0, c1, r0, r1, image))
            base = img * ((h + 1) * (w + 1))
            corners = torch.cat([base + r0 * (w + 1) + c0, base + r0 * (w + 1) + c1,
                                 base + r1 * (w + 1) + c0, base + r1 * (w + 1) + c1])
            one = torch.ones_like(c0, dtype=torch.int32)
            signs = torch.cat([one, -one, -one, one])
            paint = torch.zeros(n_img * (h + 1) * (w + 1), dtype=torch.int32, device=device).index_add_(0, corners, signs)
            cover = paint.view(n_img, h + 1, w + 1).cumsum(1, dtype=torch.int32).cumsum(2, dtype=torch.int32)
            levels.append((cover[:, :h, :w] > 0).reshape(n_img, h * w))
        return torch.cat(levels, dim=1)

    # -------------------------------------------------------------- step 3
    def dynamic_ks(self, priors: Priors, gt: GTBatch, pred_boxes: Tensor, valid: Tensor) -> Tensor:
        """(N, G) int64 k_g = max(1, ⌊Σ of g's ``topk`` largest u over the valid priors⌋)."""
        return self._dynamic_ks(priors, gt, pred_boxes, valid)[0]

    def _dynamic_ks(
        self, priors: Priors, gt: GTBatch, pred_boxes: Tensor, valid: Tensor, costs: Optional[_PairCosts] = None
    ) -> Tuple[Tensor, Tensor]:
        """(N, G) int64 k_g and (N, G) float32 an upper bound of g's largest u over the
        valid priors (its largest u where it was searched to the end; 0 if none overlaps it).

        TOOD's IoU-bounded search over the predicted boxes of the valid priors
        (:class:`~dsla_d2.assigners.box_index.PredictedBoxIndex`): a search at θ finds every pair
        with u ≥ θ. With m = ``topk``, a gt is settled when m of them are found (its top m,
        summed), when θ = 0 (every overlapping box), or when the sum is pinned between the
        top m found and those ≥ θ plus (m − their number)·θ (module docstring). Per gt only
        the found u in its highest 1/64-wide bins that hold m of them are sorted."""
        n_img, n_gt = gt.classes.shape
        n_pri = pred_boxes.shape[1]
        device = pred_boxes.device
        m = self.topk
        k = torch.ones(n_img * n_gt, dtype=torch.long, device=device)
        top_iou = torch.zeros(n_img * n_gt, dtype=torch.float32, device=device)
        pending = gt.valid.reshape(-1).nonzero().squeeze(1)
        if n_pri == 0 or pending.numel() == 0:
            return k.view(n_img, n_gt), top_iou.view(n_img, n_gt)
        hidden = torch.where(valid[..., None], pred_boxes, torch.full_like(pred_boxes, float("nan")))
        index = PredictedBoxIndex(hidden)
        gt_boxes = gt.boxes.float().reshape(-1, 4)
        if costs is None:  # only its IoU is used: any logits will do
            costs = _PairCosts(self, priors, gt, pred_boxes.new_zeros(n_img, n_pri, 0), pred_boxes, valid)
        theta = torch.full((pending.numel(),), _FIRST_THETA, dtype=torch.float64, device=device)
        for attempt in range(_MAX_IOU_ROUNDS):
            if pending.numel() == 0:
                break
            if attempt == _MAX_IOU_ROUNDS - 1:
                theta = torch.zeros_like(theta)  # a guard: θ = 0 settles every gt
            p_count = pending.numel()
            image = torch.div(pending, n_gt, rounding_mode="floor")
            boxes = gt_boxes.index_select(0, pending)
            start, end, row = index.ranges(boxes, image, theta)
            found = torch.zeros(p_count, dtype=torch.long, device=device).index_add_(0, row, end - start)
            tops = torch.zeros(p_count, m, dtype=torch.float64, device=device)  # top m found, descending
            for a, b in _row_chunks(found, _MAX_PAIRS):  # chunks of whole gts
                lo, hi = (int(v) for v in torch.searchsorted(row, torch.tensor([a, b], device=device)))
                pos, run = expand_runs(start[lo:hi], end[lo:hi])
                local = row[lo:hi].index_select(0, run)
                flat = index.prior.index_select(0, pos)
                if n_img > 1:
                    flat = flat + image.index_select(0, local) * n_pri
                u = costs.iou(flat, pending.index_select(0, local))
                # only the top m of a gt matter: keep the u > 0 in its highest 1/64-wide bins
                # that hold m of them (a histogram per gt), then sort those
                bins = (u * _IOU_BINS).long().clamp_(max=_IOU_BINS - 1)
                cell = (local - a) * _IOU_BINS + bins
                hist = torch.bincount(cell, minlength=(b - a) * _IOU_BINS).view(b - a, _IOU_BINS)
                reach = hist[:, 1:].flip(1).cumsum(1).flip(1) >= m  # ≥ m in bins ≥ j (j ≥ 1)
                lowest = reach.sum(1)  # the highest bin j ≥ 1 with m at or above it (0: none)
                hit = ((u > 0) & (bins >= lowest.index_select(0, local - a))).nonzero().squeeze(1)
                local, u = local.index_select(0, hit), u.index_select(0, hit)
                # one sort by (gt ↑, u ↓): a positive float32's bit pattern grows with it
                order = torch.sort(local * 2**31 + (2**31 - 1 - u.view(torch.int32).long())).indices
                seg = local.index_select(0, order)
                per = torch.bincount(seg, minlength=p_count)
                rank = torch.arange(seg.numel(), device=device) - (torch.cumsum(per, 0) - per).index_select(0, seg)
                top = (rank < m).nonzero().squeeze(1)
                slot = seg.index_select(0, top) * m + rank.index_select(0, top)
                tops.view(-1).index_copy_(0, slot, u.index_select(0, order.index_select(0, top)).double())
            prefix = torch.cumsum(tops, 1)  # sums in descending order
            total = prefix[:, m - 1]  # Σ of the top m found
            is_above = tops >= theta[:, None]  # ≥ θ: every such pair is found
            above = is_above.sum(1)
            above_sum = torch.where(is_above, tops, torch.zeros_like(tops)).sum(1)
            count_m = tops[:, m - 1] > 0  # m pairs with u > 0 found
            mth, largest = tops[:, m - 1], tops[:, 0].float()
            # Σ of the top m lies in [total, above_sum + (m − above)·θ): the pairs not found have u < θ
            exact = (above >= m) | (theta == 0)
            k_low = torch.floor(total - 1e-9).clamp(min=1)
            k_high = torch.floor(above_sum + (m - above).double() * theta + 1e-9).clamp(min=1)
            done = exact | (k_low == k_high)
            k_done = torch.where(exact, dynamic_k(total), k_low.long())
            iou_done = torch.where(exact | (above > 0), largest, theta.float())
            settled = done.nonzero().squeeze(1)
            k.index_copy_(0, pending.index_select(0, settled), k_done.index_select(0, settled))
            top_iou.index_copy_(0, pending.index_select(0, settled), iou_done.index_select(0, settled))
            # next θ: the largest that would pin k if no pair in [θ', θ) were missed (upper
            # is then Σ of the found ≥ θ' + (m − their number)·θ', increasing in θ'), or the
            # m-th largest found (the top m are then ≥ θ', and found), whichever is larger
            # (θ' in (v_{j+1}, v_j], v_0 = θ, the found values capped at θ: j of them ≥ θ')
            values = torch.cat([theta[:, None], torch.minimum(tops, theta[:, None]), torch.zeros_like(theta)[:, None]], 1)
            prefix = torch.cat([torch.zeros_like(theta)[:, None], prefix], 1)[:, :m]  # S_j, j < m
            slots = torch.arange(m, 0, -1, device=device, dtype=torch.float64)  # m − j
            tau = (k_low[:, None] + 1 - prefix) / slots  # upper < k_low + 1 ⇔ θ' < τ_j
            lo, hi = values[:, 1 : m + 1], values[:, :m]
            pinned = torch.where((lo < hi) & (tau > lo), torch.minimum(tau, hi), torch.zeros_like(tau)).amax(1)
            pinned = torch.where(pinned >= _MIN_PINNED_THETA, pinned, torch.zeros_like(pinned))
            adaptive = torch.where(count_m, mth, torch.zeros_like(mth))
            next_theta = torch.minimum(torch.maximum(pinned, adaptive), theta) * (1 - 1e-3)
            # a gt with no overlapping box found searches θ = 0 (every overlapping box: its k
            # and its exact largest u) where that is a short search, as in an empty region
            lonely = (~done & (tops[:, 0] == 0) & (theta > 0)).nonzero().squeeze(1)
            if lonely.numel():
                zero_start, zero_end, run_of = index.ranges(
                    boxes.index_select(0, lonely), image.index_select(0, lonely),
                    torch.zeros(lonely.numel(), dtype=torch.float64, device=device))
                size = torch.zeros(lonely.numel(), dtype=torch.long, device=device).index_add_(0, run_of, zero_end - zero_start)
                short = lonely.index_select(0, (size <= _LONELY_PAIRS).nonzero().squeeze(1))
                next_theta.index_fill_(0, short, 0.0)
            rest = (~done).nonzero().squeeze(1)
            pending, theta = pending.index_select(0, rest), next_theta.index_select(0, rest)
        return k.view(n_img, n_gt), top_iou.view(n_img, n_gt)

    # -------------------------------------------------------------- steps 2 and 4
    def lowest_cost_pairs(
        self, priors: Priors, gt: GTBatch, costs: _PairCosts, k: Tensor, valid: Tensor,
        iou_floor: Optional[Tensor] = None,
    ) -> Tuple[CandidatePairs, Tensor, Tensor]:
        """Each valid gt's k_g lowest-cost valid priors by (C ↑, prior ↑), exactly, from a
        probe of its nearest priors and searches of growing radius (module docstring).

        Args:
            iou_floor: (N, G) a lower bound of λ2·C_reg of every valid prior of the gt
                (λ2·C_reg at its largest u), or None (−λ2·log(1 + 1e−7) ≈ 0).
        Returns:
            the picked pairs (no particular order), their (P,) float32 cost and IoU.
        """
        n_gt = gt.valid.shape[1]
        device = priors.points.device
        valid_flat = valid.reshape(-1)
        bags = (gt.valid & valid.any(dim=1, keepdim=True)).reshape(-1).nonzero().squeeze(1)
        none = torch.zeros(0, device=device)
        if bags.numel() == 0:
            return CandidatePairs.empty(n_gt, device), none, none
        m_count = bags.numel()
        need = k.reshape(-1).index_select(0, bags)
        iou_part = torch.zeros(m_count, dtype=torch.float64, device=device)
        if iou_floor is not None:
            iou_part = iou_floor.reshape(-1).index_select(0, bags).double()
        # F_g: C_cls + λ2·C_reg of every valid prior of the image is at least this
        floor = costs.image_cls_floor.index_select(0, torch.div(bags, n_gt, rounding_mode="floor")) + iou_part
        axes = grid_axes(priors)
        level_strides = _level_strides(priors)
        beta, weight = self.soft_center_radius, self.iou_weight

        # The probe: upper bounds of the costs within INITIAL_RADIUS give T ≥ the k-th lowest.
        probe = torch.full((m_count,), float(INITIAL_RADIUS), dtype=torch.float64, device=device)
        count = torch.zeros(m_count, dtype=torch.long, device=device)
        kth = torch.full((m_count,), math.inf, dtype=torch.float32, device=device)
        for row, prior in self._disc_pairs(priors, axes, level_strides, costs, bags, probe):
            image = torch.div(bags.index_select(0, row), n_gt, rounding_mode="floor")
            keep = valid_flat.index_select(0, image * costs.num_priors + prior).nonzero().squeeze(1)
            row = row.index_select(0, keep)
            bag = bags.index_select(0, row)
            pairs = CandidatePairs(image.index_select(0, keep), prior.index_select(0, keep), bag % n_gt, n_gt)
            upper = costs.upper_cost(pairs, costs.geometry(pairs))
            _, kth_chunk, count_chunk = _k_lowest(row, upper, need.index_select(0, row), m_count)
            count += count_chunk
            kth = torch.minimum(kth, kth_chunk)  # chunks hold whole gts
        threshold = torch.where(count >= need, kth.double() * (1 + 1e-6) + 1e-6, torch.full_like(probe, math.inf))
        radius = torch.where(torch.isfinite(threshold), _radius_beyond(threshold, beta, weight, floor), 2 * probe)
        radius = torch.maximum(radius, probe * (1 + 1e-6) + 1e-6)

        pending = torch.arange(m_count, device=device)
        found = []
        for attempt in range(MAX_ROUNDS):
            if pending.numel() == 0:
                break
            if attempt == MAX_ROUNDS - 1:  # a guard, never reached in exact arithmetic
                radius.index_fill_(0, pending, math.inf)
                threshold.index_fill_(0, pending, math.inf)
            p_count = pending.numel()
            r_now, t_now, k_now, part_now = (x.index_select(0, pending) for x in (radius, threshold, need, iou_part))
            whole = r_now >= self.max_center_distance  # beyond: all tie at the clamp
            count = torch.zeros(p_count, dtype=torch.long, device=device)
            kth = torch.full((p_count,), math.inf, dtype=torch.float32, device=device)
            kept = []
            search = torch.where(whole, torch.full_like(r_now, math.inf), r_now)
            chunks = self._disc_pairs(priors, axes, level_strides, costs, bags.index_select(0, pending), search)
            for pairs, geometry, row in self._below_threshold(costs, bags.index_select(0, pending), chunks, t_now,
                                                              part_now):
                cost, u = costs(pairs, geometry)
                # sorted by (gt, prior) and a stable sort: ties go to the lower prior index
                top, kth_chunk, count_chunk = _k_lowest(row, cost, k_now.index_select(0, row), p_count)
                count += count_chunk
                kth = torch.minimum(kth, kth_chunk)
                top = top.nonzero().squeeze(1)
                kept.append((pairs.take(top), cost.index_select(0, top), u.index_select(0, top), row.index_select(0, top)))
            enough = count >= k_now
            # exact: every pair left out by T costs more than the k-th lowest kept (T ≥ it)
            exact = torch.isinf(t_now) | (enough & (kth.double() <= t_now))
            bound = cost_lower_bound(r_now, beta, weight, floor.index_select(0, pending))
            done = exact & (whole | (enough & (kth.double() < bound)))
            for pairs, cost, u, row in kept:
                keep = done.index_select(0, row).nonzero().squeeze(1)
                found.append((pairs.take(keep), cost.index_select(0, keep), u.index_select(0, keep)))
            # next: T the k-th lowest found, D where B(D) exceeds it (or twice as far)
            t_next = torch.where(enough, torch.minimum(t_now, kth.double() * (1 + 1e-6) + 1e-6),
                                 torch.full_like(t_now, math.inf))
            grown = torch.where(enough, _radius_beyond(t_next, beta, weight, floor.index_select(0, pending)), 2 * r_now)
            grown = torch.maximum(grown, r_now * (1 + 1e-6) + 1e-6)
            threshold.index_copy_(0, pending, t_next)
            radius.index_copy_(0, pending, grown)
            pending = pending.index_select(0, (~done).nonzero().squeeze(1))
        if not found:
            return CandidatePairs.empty(n_gt, device), none, none
        picks = CandidatePairs.cat([f[0] for f in found], n_gt, device)
        return picks, torch.cat([f[1] for f in found]), torch.cat([f[2] for f in found])

    @staticmethod
    def _below_threshold(
        costs: _PairCosts, bags: Tensor, chunks: Iterator[Tuple[Tensor, Tensor]], threshold: Tensor,
        iou_floor: Tensor,
    ) -> Iterator[Tuple[CandidatePairs, Tuple[Tensor, Tensor, Tensor], Tensor]]:
        """The valid pairs of ``chunks`` ((row in ``bags``, prior) chunks) whose lower bound
        of C is ≤ the (M,) ``threshold`` of their gt: first with the gt's ``iou_floor`` (no
        IoU needed), then with the pair's u (:meth:`_PairCosts.below`, its terms moved to
        the threshold side). Yields (pairs, geometry, row)."""
        n_gt, r = costs.num_gts, costs.num_priors
        slack = _ABS_SLACK + costs.iou_weight * _IOU_SLACK
        cap = (_round_up(threshold).double() + slack) / (1 - _BOUND_MARGIN)
        cap_b = _round_up(cap)  # floor + centre + IoU term ≤ this
        cap_a = _round_up(cap - iou_floor.double() * (1 - 1e-6))  # floor + centre ≤ this
        image = torch.div(bags, n_gt, rounding_mode="floor")
        cx, cy = costs.cx.index_select(0, bags), costs.cy.index_select(0, bags)
        for row, prior in chunks:
            flat = prior if costs.num_rows == r else image.index_select(0, row) * r + prior
            ox = costs.px.index_select(0, prior) - cx.index_select(0, row)
            oy = costs.py.index_select(0, prior) - cy.index_select(0, row)
            distance = (ox * ox + oy * oy).sqrt() / costs.strides.index_select(0, prior)  # as _PairCosts.distance
            base = costs.cls_floor.index_select(0, flat) + costs.center_cost_lower(distance)  # NaN: not valid
            keep = (base <= cap_a.index_select(0, row)).nonzero().squeeze(1)
            row, prior, flat, distance, base = (x.index_select(0, keep) for x in (row, prior, flat, distance, base))
            bag = bags.index_select(0, row)
            u = costs.iou(flat, bag)
            keep = (base + costs.iou_cost_lower(u) <= cap_b.index_select(0, row)).nonzero().squeeze(1)
            bag = bag.index_select(0, keep)
            pairs = CandidatePairs(torch.div(bag, n_gt, rounding_mode="floor"), prior.index_select(0, keep), bag % n_gt, n_gt)
            geometry = (flat.index_select(0, keep), u.index_select(0, keep), distance.index_select(0, keep))
            yield pairs, geometry, row.index_select(0, keep)

    def _disc_pairs(
        self, priors: Priors, axes, level_strides: Tensor, costs: _PairCosts, bags: Tensor, radius: Tensor,
    ) -> Iterator[Tuple[Tensor, Tensor]]:
        """(row in ``bags``, prior) of every prior within ``radius`` (M,) strides (inf: all)
        of the centres of the (M,) sorted flat gts n·G + g (valid or not), a superset by
        rounding, sorted by (row, prior), in chunks of whole gts."""
        centers = torch.stack([costs.cx.index_select(0, bags), costs.cy.index_select(0, bags)], 1)
        half = radius[:, None] * level_strides[None, :]
        half = (half * (1 + 1e-6) + 1e-6).nan_to_num(nan=math.inf)  # px; widened against rounding
        max_pairs = min(_MAX_PAIRS, _pairs.MAX_PAIRS_PER_CHUNK)
        if axes is not None:
            yield from _grid_disc_rows(priors, axes, centers, half, max_pairs)
        else:  # a point set: squares of half-side D·s_l (one image of M "gts")
            lo, hi = centers[None, :, None, :] - half[None, ..., None], centers[None, :, None, :] + half[None, ..., None]
            active = torch.ones(half.shape, dtype=torch.bool, device=half.device)[None]
            for p in region_pair_chunks(priors, lo, hi, active, max_pairs=max_pairs):
                yield p.gt, p.prior

    # -------------------------------------------------------------- step 5
    def resolve_shared(
        self, priors: Priors, gt: GTBatch, costs: _PairCosts, picks: CandidatePairs, winners: PriorWinners
    ) -> None:
        """Priors taken by two gts or more go to the lowest cost over **all** gts of their
        image (ties: lowest gt index), merged into ``winners`` (which holds the picks).

        The lowest cost U among the gts that took the prior bounds the winner's; only gts
        whose centre lies within the radius D with B(D) > U (B with the prior's floor of
        C_cls, in its strides) can reach it: they are found in the gt centres sorted by
        (image, x), in chunks; pairs whose lower bound exceeds U are not costed."""
        if len(picks) == 0:
            return
        r = len(priors)
        claims = torch.bincount(picks.image * r + picks.prior, minlength=winners.matched.numel())
        shared = (claims >= 2).nonzero().squeeze(1)
        if shared.numel() == 0:
            return
        bound = winners.value("cost").reshape(-1).index_select(0, shared)
        floor = costs.cls_floor.index_select(0, shared).double()
        for pairs, row in self._gts_near(priors, gt, shared, bound, floor):
            geometry = costs.geometry(pairs)
            keep = costs.may_cost_at_most(geometry, bound.index_select(0, row)).nonzero().squeeze(1)
            pairs = pairs.take(keep)
            cost, u = costs(pairs, tuple(x.index_select(0, keep) for x in geometry))
            winners.update(pairs, [cost], {"cost": cost, "u": u})

    def _gts_near(
        self, priors: Priors, gt: GTBatch, flat: Tensor, bound: Tensor, floor: Optional[Tensor] = None
    ) -> Iterator[Tuple[CandidatePairs, Tensor]]:
        """(image, prior, gt) pairs of the (M,) flat priors n·R + r with every valid gt of
        image n whose centre may cost less than ``bound`` (M,): |Δx|, |Δy| ≤ D·s_r + 1 px,
        D = the radius with B(D) > bound (B with the (M,) ``floor`` of C_cls, if given; all
        gts from ``max_center_distance`` on), and the row of each pair's prior in ``flat``."""
        n_gt = gt.valid.shape[1]
        r = len(priors)
        image = torch.div(flat, r, rounding_mode="floor")
        prior = flat % r
        radius = _radius_beyond(bound, self.soft_center_radius, self.iou_weight, floor)
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
            pos, run = expand_runs(start[a:b], torch.maximum(end[a:b], start[a:b]))
            row = run + a
            which = order.index_select(0, pos)
            near = (centers[:, 1].index_select(0, which) - points[:, 1].index_select(0, row)).abs()
            keep = (near <= reach.index_select(0, row)).nonzero().squeeze(1)
            row, which = row.index_select(0, keep), which.index_select(0, keep)
            pairs = CandidatePairs(image.index_select(0, row), prior.index_select(0, row), bags.index_select(0, which) % n_gt, n_gt)
            yield pairs, row
