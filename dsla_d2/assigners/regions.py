"""Where an assigner's candidates can lie: one pixel rectangle per (image, gt, level).

The point assigners (FCOS, DSLA, FoveaBox, DSLA-FoveaBox) accept a prior for a gt only
inside a region of the box that follows from their rule. These helpers turn each rule
into a rectangle per (image, gt, level) — a *superset* of the accepted priors, in float64
— and an "active" flag for the levels where the rule can accept anything;
:func:`~dsla_d2.assigners.pairs.region_pair_chunks` then enumerates the priors inside,
and the assigner applies its exact test (the same float32 arithmetic as the rule's
definition) to those pairs only.
"""
from typing import Sequence, Tuple

import torch
from torch import Tensor

from ..priors import Priors

__all__ = ["level_stride_table", "level_table", "max_distance_regions", "centered_regions", "SLACK"]

#: Relative slack of the level tests below: they compare bounds derived in float64 with
#: values the exact rule computes in float32 (relative error ~1e-7); 1e-5 keeps a superset.
SLACK = 1e-5


def level_stride_table(priors: Priors) -> Tensor:
    """(L,) float64 stride of each level (the largest stride among its priors for a point
    set; 0 for an empty level)."""
    num_levels = len(priors.num_per_level)
    if priors.level_strides is not None:
        return torch.tensor(priors.level_strides, dtype=torch.float64, device=priors.points.device)
    table = torch.zeros(num_levels, dtype=torch.float64, device=priors.points.device)
    return table.scatter_reduce(0, priors.levels, priors.strides.double(), "amax")


def level_table(priors: Priors, table: Sequence[Tuple[float, float]]) -> Tensor:
    """(L, 2) per-level (lo, hi) in the priors' dtype — the values ``Priors.per_level``
    gives each prior of the level, so that per-pair tests match it bit for bit."""
    table = torch.as_tensor(table, dtype=priors.points.dtype, device=priors.points.device)
    if table.shape[0] != len(priors.num_per_level):
        raise ValueError(f"{table.shape[0]} per-level values given for {len(priors.num_per_level)} levels")
    return table


def max_distance_regions(boxes: Tensor, valid: Tensor, ranges: Tensor, level_strides: Tensor, radius: float = 0.0):
    """Regions of the FCOS-style rule "inside the box (or its centre-sampling square) and
    m = max(l, t, r, b) in [lo_l, hi_l]".

    A point inside the box with m ≤ hi has r = x2 − x ≤ hi and l = x − x1 ≤ hi, so
    x ∈ [x2 − hi, x1 + hi] ∩ [x1, x2] (and the same for y); with center sampling also
    |x − cx| < radius·s_l. Over the box's interior m ranges within [max(w, h)/2, max(w, h)]
    (l + r = w, t + b = h), so a level whose [lo_l, hi_l] misses that interval is inactive.

    Args:
        boxes: (N, G, 4); valid: (N, G); ranges: (L, 2) (lo, hi) per level;
        level_strides: (L,) float64; radius: center-sampling radius (0: off).
    Returns:
        lo, hi: (N, G, L, 2) float64 (x, y) corners; active: (N, G, L) bool.
    """
    b = boxes.double()[:, :, None, :]  # (N, G, 1, 4)
    rng = ranges.double()
    lo_r, hi_r = rng[:, 0], rng[:, 1]
    band = hi_r[:, None]  # (L, 1) against (x, y)
    lo = torch.maximum(b[..., :2], b[..., 2:] - band)
    hi = torch.minimum(b[..., 2:], b[..., :2] + band)
    if radius > 0:
        center = (b[..., :2] + b[..., 2:]) / 2
        half = radius * level_strides[:, None]
        lo, hi = torch.maximum(lo, center - half), torch.minimum(hi, center + half)
    span = (b[..., 2:] - b[..., :2]).amax(-1)  # (N, G, 1) max(w, h)
    fits = (span * (1 + SLACK) + 1e-3 >= lo_r) & (span / 2 <= hi_r * (1 + SLACK) + 1e-3)
    return lo, hi, fits & valid[:, :, None]


def centered_regions(boxes: Tensor, valid: Tensor, num_levels: int, fraction: float = 1.0):
    """The central ``fraction`` of each box, |x − cx| ≤ fraction·w/2 (FoveaBox's σ-fovea;
    the whole box for 1), on every level.

    Returns:
        lo, hi: (N, G, L, 2) float64; active: (N, G, L) bool (the valid gts).
    """
    b = boxes.double()
    center, half = (b[..., :2] + b[..., 2:]) / 2, (b[..., 2:] - b[..., :2]) * (fraction / 2)
    lo = (center - half)[:, :, None, :].expand(-1, -1, num_levels, -1)
    hi = (center + half)[:, :, None, :].expand(-1, -1, num_levels, -1)
    return lo, hi, valid[:, :, None].expand(-1, -1, num_levels)
