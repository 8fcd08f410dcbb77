"""The FoveaBox assigner (Kong et al., "FoveaBox: Beyond anchor-based object detection",
IEEE TIP 2020), with the facts of mmdetection's ``FoveaHead`` (which produced the 36.5 AP
R-50 1x reference).

For each level l (stride s, scale range [lo_l, hi_l]) and each gt (x1, y1, x2, y2):

* scale assignment (paper §3.2): the gt lives on level l iff lo_l ≤ sqrt(w·h) ≤ hi_l,
  **both bounds inclusive** as in mmdetection's ``(gt_areas >= lower_bound) &
  (gt_areas <= upper_bound)`` on the square-rooted area. The default ranges overlap by a
  factor η = 2, so a gt lives on two levels, and on three when sqrt(w·h) is exactly 64,
  128 or 256 (e.g. 64 is inside (1, 64), (32, 128) and (64, 256)).
* fovea area (paper eq. 1–2, shrink factor σ): in feature coordinates of the level the
  positive columns are ceil(x1/s + (1−σ)·w/(2s) − o) .. floor(x1/s + (1+σ)·w/(2s) − o)
  (inclusive) and likewise the rows, where o = 0.5 is the points' offset (a point at
  column j sits at x = (j + o)·s). Since j is an integer this is exactly
  cx − σw/2 ≤ x ≤ cx + σw/2: the central σ-fraction of the box. A box smaller than about
  a stride can have ceil > floor on a level: it then has **no** positive there.
* painting order: larger gts are painted first, smaller ones overwrite them (see
  :func:`paint_order_match` for the vectorised equivalent).
* sparse: only the (point, gt) pairs of each gt's fovea rectangle on the levels its scale
  fits are built (:func:`~dsla_d2.assigners.pairs.region_pair_chunks`), never an
  (N, R, G) grid.
* positives get the gt's class and the gt box as regression target; the
  :class:`~dsla_d2.box_coders.FoveaLogBoxCoder` turns it into log(clamp(d/z_l, 1/16, 16))
  (paper eq. 4).

Differences from mmdetection, both deliberate:

* mmdetection clamps both fovea bounds to [0, W−1] / [0, H−1] *before* painting, so an
  empty fovea at a border of the map is painted on the border point anyway: at the
  top/left border the upper bound is clamped up to 0 (e.g. (0, 0, 2, 2) on P3: columns
  0 .. −1 → 0 .. 0), and at the bottom/right border the lower bound is clamped down to
  W−1 / H−1 (e.g. (125, 125, 127, 127) on the 16 columns of a 128-px image's P3:
  columns 16 .. 15 → 15 .. 15). We compare the real point indices with the unclamped
  bounds, so an empty fovea stays empty on every side (the spec's rule). Everywhere else
  the two agree exactly (a non-empty fovea reaching past the map keeps the points that
  exist, with or without clamping).
* mmdetection sorts areas with the default (unstable) ``torch.sort``; equal areas are
  painted in an unspecified order. We use the stable order (gt index), see below.
"""
from typing import Sequence, Tuple

import torch
from torch import Tensor

from ..priors import Priors
from .base import ASSIGNER_REGISTRY, Assignment, DenseAssigner, GTBatch
from .pairs import CandidatePairs, region_pair_chunks
from .regions import centered_regions, level_table
from .winners import PriorWinners

__all__ = [
    "FoveaAssigner",
    "FOVEA_SCALE_RANGES",
    "gt_sqrt_areas",
    "fovea_mask",
    "paint_order_match",
    "PAINT_ORDER",
]

#: mmdetection's ``fovea_r50_fpn_4x4_1x_coco`` scale ranges for P3..P7 (η = 2).
FOVEA_SCALE_RANGES = ((1, 64), (32, 128), (64, 256), (128, 512), (256, 2048))


def gt_sqrt_areas(gt: GTBatch) -> Tensor:
    """(N, G) FoveaBox's scale measure sqrt(w·h) (paper §3.2); 0 for padding rows."""
    return gt.areas.sqrt()


def _point_grid_index(coords: Tensor, strides: Tensor) -> Tuple[Tensor, Tensor]:
    """Integer grid index j and offset o of points at (j + o)·s, o ∈ [0, 1).

    Derived from the priors themselves so that the fovea follows the prior generator's
    offset (0.5 for FoveaBox, 0 for DSLA-style grids) without a second setting.

    Args:
        coords: (R,) x (or y) of the points; strides: (R,).
    Returns:
        (R,) float j (an exact integer) and (R,) float o.
    """
    u = coords / strides
    j = torch.floor(u + 1e-4)  # tolerate x/s landing a hair below an integer
    return j, u - j


def fovea_mask(points: Tensor, strides: Tensor, boxes: Tensor, sigma: float = 0.4) -> Tensor:
    """Whether each point lies in the fovea area of its box, on the point's own level.

    Follows mmdetection's float arithmetic (box divided by the stride first, then
    half-sides), so that bounds landing exactly on integers agree with it bit for bit.

    Args (broadcastable, e.g. one row per (point, gt) pair):
        points: (..., 2); strides: (...) stride of each point's level; boxes: (..., 4) XYXY.
        sigma: shrink factor σ (paper eq. 1–2; 0.4).
    Returns:
        (...) bool.
    """
    b = boxes / strides[..., None]  # feature coordinates of the point's level
    half_w = 0.5 * (b[..., 2] - b[..., 0])
    half_h = 0.5 * (b[..., 3] - b[..., 1])
    col, off_x = _point_grid_index(points[..., 0], strides)
    row, off_y = _point_grid_index(points[..., 1], strides)
    left = torch.ceil(b[..., 0] + (1 - sigma) * half_w - off_x)
    right = torch.floor(b[..., 0] + (1 + sigma) * half_w - off_x)
    top = torch.ceil(b[..., 1] + (1 - sigma) * half_h - off_y)
    bottom = torch.floor(b[..., 1] + (1 + sigma) * half_h - off_y)
    # ceil > floor (a box narrower than ~a stride) makes the interval empty: no positive.
    return (col >= left) & (col <= right) & (row >= top) & (row <= bottom)


#: FoveaBox's painting order as :class:`PriorWinners` modes: the smallest sqrt(w·h), then
#: the highest gt index (see :func:`paint_order_match`).
PAINT_ORDER = ("min", "max")


def paint_order_match(pairs: CandidatePairs, sqrt_areas: Tensor, num_images: int, num_priors: int) -> Tensor:
    """The gt FoveaBox's painting leaves at each point, without painting.

    mmdetection paints, per level, the gts of that level sorted by decreasing sqrt area,
    each one overwriting the fovea it covers; what remains at a point is the **last**
    painted gt among those covering it.

    Claim: that gt is the covering gt of smallest sqrt area, and among several of equal
    smallest area the one of highest index (:data:`PAINT_ORDER`). Proof: let the paint
    order be the stable sort of the level's gts by decreasing sqrt area (equal areas keep
    index order). A point's final value is the covering gt that comes last in that order.
    Every covering gt with a larger area comes strictly earlier (decreasing order), so the
    last one has the minimum area a*. Among the covering gts with area a*, the stable sort
    keeps them in increasing index order, consecutively, so the last is the one of highest
    index. Gts of other levels never paint this level's map, and they are not candidates
    here because the pairs are already restricted to the level's scale range. ∎
    (mmdetection's unstable sort leaves ties unspecified; the stable order makes them
    deterministic.)

    Args:
        pairs: the covering (image, point, gt) pairs.
        sqrt_areas: (N, G) the painting key.
    Returns:
        (N, R) int64 matched gt index, −1 where no gt covers the point.
    """
    winners = PriorWinners(num_images, num_priors, PAINT_ORDER, device=sqrt_areas.device)
    winners.update(pairs, [pairs.of_gt(sqrt_areas)])
    return winners.matched


@ASSIGNER_REGISTRY.register()
class FoveaAssigner(DenseAssigner):
    """FoveaBox's hard assignment: fovea area of each gt on the levels whose scale range
    contains sqrt(w·h); smallest gt wins overlaps. Positives get classification target 1
    and regression weight 1; the box target is the absolute gt box.

    Args:
        scale_ranges: (lo, hi) of sqrt(w·h) per level, inclusive (mmdetection).
        sigma: fovea shrink factor σ (0.4).
    """

    def __init__(self, scale_ranges: Sequence[Tuple[float, float]] = FOVEA_SCALE_RANGES, sigma: float = 0.4):
        super().__init__()
        if not 0 < sigma <= 1:
            raise ValueError(f"sigma must be in (0, 1], got {sigma}")
        self.scale_ranges = [tuple(float(v) for v in r) for r in scale_ranges]
        self.sigma = float(sigma)

    def levels_in_range(self, priors: Priors, gt: GTBatch) -> Tensor:
        """(N, G, L) bool: the gt is valid and its sqrt(w·h) lies in level l's range."""
        sqrt_areas = gt_sqrt_areas(gt)[..., None]
        lo, hi = level_table(priors, self.scale_ranges).unbind(-1)
        return (sqrt_areas >= lo) & (sqrt_areas <= hi) & gt.valid[..., None]

    def assign(self, priors: Priors, gt: GTBatch, num_classes: int, **preds) -> Assignment:
        lo, hi, _ = centered_regions(gt.boxes, gt.valid, len(priors.num_per_level), self.sigma)
        sqrt_areas = gt_sqrt_areas(gt)
        winners = PriorWinners(gt.classes.shape[0], len(priors), PAINT_ORDER, device=sqrt_areas.device)
        for pairs in region_pair_chunks(priors, lo, hi, self.levels_in_range(priors, gt)):
            points, strides = pairs.of_prior(priors.points), pairs.of_prior(priors.strides)
            covered = pairs.select(fovea_mask(points, strides, pairs.of_gt(gt.boxes), self.sigma))
            winners.update(covered, [covered.of_gt(sqrt_areas)])
        return Assignment.from_matches(gt, winners.matched, num_classes)
