"""DSLA's static smooth label assignment (Su, He et al., "DSLA: Dynamic smooth label
assignment for efficient anchor-free object detection", Pattern Recognition 131, 2022, §3.1).

For every image n, location r (level j, stride s_j) and ground truth g whose box may
hold r (the sparse candidate pairs of :func:`~dsla_d2.assigners.pairs.region_pair_chunks`;
never an (N, R, G) grid):

* centerness_s (eq. 2 with the **core zone** of eq. 5–6): FCOS centerness of the location in
  the box, set to 1 inside the square of side s_j centred on the box centre;
* head_s (eq. 3–4, **interval relaxation**): 1 inside the level's size range [lo_j, hi_j],
  ramping linearly down to 0 at the relaxed bounds int(lo_j·(1−κ)) and int(hi_j·(1+κ));
* label_s = centerness_s · head_s (eq. 7); a location is positive for g iff label_s > 0.

A location positive for several gts takes the gt with the **highest** label_s (§3.1, last
paragraph), not FCOS's smallest area. The dynamic part (eq. 8, label_d = label_s · IoU of
the detached prediction) is not done here: it is ``QualityCoupling(cls_target=
"iou_product")`` in the meta-architecture, which multiplies this assignment's
``cls_scores`` (= label_s) by the IoU; its regression weights stay label_s.

Where the paper's text and the authors' code (github YonghaoHe/DSLA, ``dsla_head.py``,
which produced the published numbers) differ, this follows the code; see the comments.
"""
from typing import List, Sequence, Tuple

import torch
from torch import Tensor

from ..box_ops import aligned_ltrb, center_sampling_mask, centerness_from_ltrb
from ..priors import Priors
from .base import ASSIGNER_REGISTRY, Assignment, DenseAssigner, GTBatch
from .fcos import DEFAULT_SIZE_RANGES
from .pairs import CandidatePairs, region_pair_chunks
from .regions import level_stride_table, level_table, max_distance_regions
from .winners import PriorWinners

__all__ = ["DSLAAssigner", "relaxed_ranges", "relaxation_score", "core_zone_mask"]

#: Lower bound of the ramp denominators of eq. 4 (the authors' code clamps them at 0.01).
RAMP_EPS = 0.01


def relaxed_ranges(size_ranges: Sequence[Tuple[float, float]], kappa: float) -> List[Tuple[float, float]]:
    """Relaxed bounds of eq. 3 with the authors' integer truncation:
    G_j = (int(lo_j·(1−κ)), int(hi_j·(1+κ))).

    With the COCO ranges and κ = 0.2: (0, 76), (51, 153), (102, 307), (204, 614),
    (409, int(1.2e8)). The paper keeps m_0^l = m_0 and m_5^u = m_5; with lo_0 = 0 the first
    is automatic, and the last range's upper bound (1e8) is beyond any box, so relaxing it is
    harmless.
    """
    return [(float(int(lo * (1 - kappa))), float(int(hi * (1 + kappa)))) for lo, hi in size_ranges]


def relaxation_score(m: Tensor, lo: Tensor, hi: Tensor, glo: Tensor, ghi: Tensor) -> Tensor:
    """Head score h_j(m) of the interval relaxation (paper eq. 4, as the authors' code).

    Paper eq. 4 as printed has its two ramps inverted (it gives 0 at the range boundary and
    1 at the relaxed bound, i.e. (m_{i-1} − max)/(m_{i-1} − m^l_{i-1}) on the lower ramp);
    the published numbers come from the code, whose ramps go from 1 at the range boundary
    down to 0 at the relaxed bound:

        h = (m − Glo)/max(lo − Glo, 0.01)   if Glo ≤ m < lo
        h = 1                               if lo ≤ m ≤ hi      (both ends inclusive)
        h = (Ghi − m)/max(Ghi − hi, 0.01)   if hi < m ≤ Ghi
        h = 0                               otherwise

    Args:
        m: (...) max(l, t, r, b) in pixels (e.g. one per (prior, gt) pair).
        lo, hi, glo, ghi: broadcastable to ``m``.
    Returns:
        (...) in [0, 1].
    """
    zero = torch.zeros_like(m)
    left = (m - glo) / (lo - glo).clamp(min=RAMP_EPS)
    right = (ghi - m) / (ghi - hi).clamp(min=RAMP_EPS)
    h = torch.where((m >= glo) & (m < lo), left, zero)
    h = torch.where((m >= lo) & (m <= hi), torch.ones_like(m), h)
    h = torch.where((m > hi) & (m <= ghi), right, h)
    return h


def core_zone_mask(points: Tensor, strides: Tensor, boxes: Tensor) -> Tensor:
    """DSLA's core zone (eq. 5-6): |x − cx| ≤ s/2 and |y − cy| ≤ s/2 (inclusive, as the
    authors' code), s the stride of the point's own level.

    Args (broadcastable, e.g. one row per (prior, gt) pair):
        points: (..., 2); strides: (...); boxes: (..., 4).
    Returns:
        (...) bool, not yet restricted to points inside the box.
    """
    centers = (boxes[..., :2] + boxes[..., 2:]) / 2
    delta = (points - centers).abs()
    half = (strides / 2)[..., None]
    return (delta <= half).all(dim=-1)


@ASSIGNER_REGISTRY.register()
class DSLAAssigner(DenseAssigner):
    """Static smooth labels label_s = centerness_s · head_s (DSLA eq. 2–7).

    Every ablation switch of the paper's Table 1/2 is an argument: ``core_zone`` (Core-Zone),
    ``relaxation`` (Inter-Relax), ``kappa`` (Table 2); IoU-Couple is the meta-architecture's
    ``QualityCoupling.cls_target``.

    Args:
        size_ranges: (lo_j, hi_j) per level in pixels, in the order of the priors' levels.
        kappa: κ ∈ [0, 1) of eq. 3 (0.2 in the paper). κ = 0 equals ``relaxation=False``.
        core_zone: set the centerness to 1 in the core zone (eq. 5–6): the point lies inside
            (see ``center_sampling_radius``) and |x − cx| ≤ s/2 and |y − cy| ≤ s/2
            (inclusive), s the stride of the point's own level. Eq. 5's clipping of the
            zone to the box is the "inside" condition.
        relaxation: interval relaxation (eq. 3–4); off: h = 1 iff lo ≤ m ≤ hi else 0.
        center_sampling_radius: 0 (the R-50 recipe) tests "inside the gt box"; > 0 (1.5 in
            the FCOSv2-style recipe) tests "strictly inside the square of half-side
            radius·s around the box centre, clipped to the box" instead. Centerness and m
            are still measured to the gt box's sides.
        centerness_eps: lower bound of the centerness denominators max(l, r), max(t, b)
            (0.01 in the authors' code).
        strict_inside: "inside the box" means min(l, t, r, b) > 0 (True, the authors' code
            and FCOS) or ≥ 0 (False). Ignored with center sampling (always strict there).

    Ambiguity (DSLA §3.1): a location positive for several gts takes the gt with the highest
    label_s; ties are broken by the smaller box area, then by the lower gt index (so the
    result is deterministic on every device). The other gts' classes are negatives there.

    ``assign`` returns an :class:`Assignment` with ``cls_scores = reg_weights = label_s`` of
    the matched gt and ``extras``: ``label_s``, ``centerness_s`` and ``head_s`` (N, R) of the
    matched gt (0 on background).
    """

    def __init__(
        self,
        size_ranges: Sequence[Tuple[float, float]] = DEFAULT_SIZE_RANGES,
        kappa: float = 0.2,
        core_zone: bool = True,
        relaxation: bool = True,
        center_sampling_radius: float = 0.0,
        centerness_eps: float = 0.01,
        strict_inside: bool = True,
    ):
        super().__init__()
        if not 0.0 <= kappa < 1.0:
            raise ValueError(f"kappa must be in [0, 1), got {kappa}")
        if center_sampling_radius < 0:
            raise ValueError(f"center_sampling_radius must be >= 0, got {center_sampling_radius}")
        self.size_ranges = [tuple(float(v) for v in r) for r in size_ranges]
        self.kappa = float(kappa)
        self.core_zone = bool(core_zone)
        self.relaxation = bool(relaxation)
        self.center_sampling_radius = float(center_sampling_radius)
        self.centerness_eps = float(centerness_eps)
        self.strict_inside = bool(strict_inside)
        self.relaxed_size_ranges = relaxed_ranges(self.size_ranges, self.kappa)

    def extra_repr(self) -> str:
        return (
            f"size_ranges={self.size_ranges}, kappa={self.kappa}, core_zone={self.core_zone}, "
            f"relaxation={self.relaxation}, center_sampling_radius={self.center_sampling_radius}"
        )

    # ------------------------------------------------------------------ label_s
    def static_labels(self, priors: Priors, gt: GTBatch, pairs: CandidatePairs) -> Tuple[Tensor, Tensor, Tensor]:
        """label_s, centerness_s and head_s of (image, location, gt) pairs.

        Returns:
            three (P,) tensors, one value per pair; all 0 where the location is not inside
            the gt (see ``center_sampling_radius`` / ``strict_inside``) or the gt is invalid.
        """
        points, strides = pairs.of_prior(priors.points), pairs.of_prior(priors.strides)
        box = pairs.of_gt(gt.boxes)
        ltrb = aligned_ltrb(points, box)  # (P, 4) = (l, t, r, b)
        if self.center_sampling_radius > 0:
            inside = center_sampling_mask(points, strides, box, self.center_sampling_radius)
        elif self.strict_inside:
            inside = ltrb.min(dim=-1).values > 0
        else:
            inside = ltrb.min(dim=-1).values >= 0
        inside = inside & pairs.of_gt(gt.valid)

        # Eq. 2: FCOS centerness, denominators >= centerness_eps, 0 outside.
        ctr = centerness_from_ltrb(ltrb, eps=self.centerness_eps)
        ctr = torch.where(inside, ctr, torch.zeros_like(ctr))
        if self.core_zone:
            # Eq. 5-6: the core zone is the square of side s (the point's own level stride)
            # around the gt centre, clipped to the box; inclusive edges as the code.
            in_core = core_zone_mask(points, strides, box) & inside
            ctr = torch.where(in_core, torch.ones_like(ctr), ctr)

        # Eq. 3-4: the head score from m = max(l, t, r, b) (pixels).
        m = ltrb.max(dim=-1).values  # (P,)
        level = pairs.of_prior(priors.levels)
        lo, hi = level_table(priors, self.size_ranges).index_select(0, level).unbind(-1)
        if self.relaxation:
            glo, ghi = level_table(priors, self.relaxed_size_ranges).index_select(0, level).unbind(-1)
            head = relaxation_score(m, lo, hi, glo, ghi)
        else:
            head = ((m >= lo) & (m <= hi)).to(m.dtype)
        head = torch.where(inside, head, torch.zeros_like(head))

        label = ctr * head  # eq. 7
        return label, ctr, head

    # ------------------------------------------------------------------ matching
    def assign(self, priors: Priors, gt: GTBatch, num_classes: int, **preds) -> Assignment:
        # label_s > 0 needs the location inside the gt and h > 0, i.e. m within the level's
        # relaxed bounds (the plain range without relaxation): the candidate regions.
        bounds = self.relaxed_size_ranges if self.relaxation else self.size_ranges
        lo, hi, active = max_distance_regions(
            gt.boxes, gt.valid, level_table(priors, bounds), level_stride_table(priors), self.center_sampling_radius
        )
        areas = gt.areas
        # Ambiguity (§3.1): the highest label_s wins; ties: smaller area, then lower index.
        winners = PriorWinners(gt.classes.shape[0], len(priors), ("max", "min", "min"), device=areas.device)
        for pairs in region_pair_chunks(priors, lo, hi, active):
            label, ctr, head = self.static_labels(priors, gt, pairs)
            keep = (label > 0).nonzero().squeeze(1)
            pairs = pairs.take(keep)
            label, ctr, head = (t.index_select(0, keep) for t in (label, ctr, head))
            values = {"label_s": label, "centerness_s": ctr, "head_s": head}
            winners.update(pairs, [label, pairs.of_gt(areas)], values)
        label_s = winners.value("label_s", areas.dtype)
        extras = {name: winners.value(name, areas.dtype) for name in ("label_s", "centerness_s", "head_s")}
        return Assignment.from_matches(
            gt, winners.matched, num_classes, cls_scores=label_s, reg_weights=label_s, extras=extras
        )
