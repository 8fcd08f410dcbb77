"""Sparse (image, prior, gt) candidate pairs, enumerated from the grid geometry.

Almost every (prior, gt) pair of an image is irrelevant to label assignment: a gt only
covers the grid cells under its box, ATSS's candidates are a few cells around its centre.
:class:`CandidatePairs` holds just the pairs that matter, as flat index tensors, and
:func:`grid_rectangle_pairs` enumerates the cells of one index rectangle per (image, gt,
level) without a Python loop and without building the priors × gts grid, so cost follows
the number of relevant pairs.

An assigner may also hand its pairs to the loss through ``Assignment.pairs`` (DW's
candidate bags: every point inside a gt, with per-pair weights computed with gradient).
"""
from dataclasses import dataclass, field
from typing import Dict

import torch
from torch import Tensor

from ..priors import Priors

__all__ = ["CandidatePairs", "grid_index_span", "grid_rectangle_pairs", "inside_box_pairs", "rank_in_segments"]


@dataclass
class CandidatePairs:
    """P candidate (image, prior, gt) pairs, sorted by (image, gt, prior).

    Attributes:
        image: (P,) int64 image index n.
        prior: (P,) int64 prior index r (levels concatenated, as :class:`Priors`).
        gt: (P,) int64 index g of the gt in its image (a column of the padded ``GTBatch``).
        num_gts: G, the padded number of gts per image (so ``bag`` is a flat (n, g) id).
        values: per-pair tensors (P, ...), e.g. DW's soft centre prior.
    """

    image: Tensor
    prior: Tensor
    gt: Tensor
    num_gts: int
    values: Dict[str, Tensor] = field(default_factory=dict)

    def __len__(self) -> int:
        return self.image.numel()

    @property
    def bag(self) -> Tensor:
        """(P,) flat id n·G + g of each pair's (image, gt): the pairs of one gt form a
        contiguous run (its candidate "bag"), usable as a segment id for scatter sums."""
        return self.image * self.num_gts + self.gt

    def select(self, keep: Tensor) -> "CandidatePairs":
        """The pairs where the (P,) bool ``keep`` is True (order preserved)."""
        return CandidatePairs(
            self.image[keep], self.prior[keep], self.gt[keep], self.num_gts, {k: v[keep] for k, v in self.values.items()}
        )

    @classmethod
    def empty(cls, num_gts: int, device=None) -> "CandidatePairs":
        z = torch.zeros(0, dtype=torch.long, device=device)
        return cls(z, z.clone(), z.clone(), num_gts)


def grid_index_span(lo: Tensor, hi: Tensor, stride: Tensor, offset: float) -> Tensor:
    """Grid indices j whose coordinate (j + offset)·stride may lie in [lo, hi].

    A conservative superset (widened by one index on each side, so floating-point rounding
    can never drop a point): callers apply their exact inside/outside test on the actual
    prior coordinates afterwards.

    Args:
        lo, hi: (...) interval bounds in pixels.
        stride: broadcastable to ``lo``.
    Returns:
        (..., 2) int64 first and last index (unclamped; may be empty if last < first).
    """
    first = torch.floor(lo / stride - offset) - 1
    last = torch.ceil(hi / stride - offset) + 1
    return torch.stack([first, last], dim=-1).to(torch.long)


def grid_rectangle_pairs(priors: Priors, cols: Tensor, rows: Tensor, active: Tensor) -> CandidatePairs:
    """Every prior of an index rectangle per (image, gt, level), as sparse pairs.

    Args:
        priors: grid priors (``priors.grid_sizes`` must be set).
        cols, rows: (N, G, L, 2) int64 inclusive [first, last] column / row index of the
            rectangle of gt g of image n on level l; clamped here to the level's grid.
        active: (N, G, L) bool; inactive rectangles contribute nothing.
    Returns:
        :class:`CandidatePairs` sorted by (image, gt, prior); the same prior appears at
        most once per (image, gt) because each level's rectangle is a set of cells.
    """
    if priors.grid_sizes is None:
        raise ValueError("grid_rectangle_pairs needs grid priors (Priors.grid_sizes); got an arbitrary point set")
    n, g, num_levels = active.shape
    device = active.device
    if num_levels != len(priors.grid_sizes):
        raise ValueError(f"rectangles for {num_levels} levels given, the priors have {len(priors.grid_sizes)}")
    sizes = torch.tensor(priors.grid_sizes, dtype=torch.long, device=device)  # (L, 2) = (H, W)
    height, width = sizes[:, 0], sizes[:, 1]
    c0 = cols[..., 0].clamp(min=0)
    c1 = torch.minimum(cols[..., 1], width - 1)
    r0 = rows[..., 0].clamp(min=0)
    r1 = torch.minimum(rows[..., 1], height - 1)
    w = (c1 - c0 + 1).clamp(min=0)
    h = (r1 - r0 + 1).clamp(min=0)
    counts = torch.where(active, w * h, torch.zeros_like(w)).flatten()  # (N·G·L,), (n, g, l) order
    rect = counts.nonzero().squeeze(1)
    if rect.numel() == 0:
        return CandidatePairs.empty(g, device)
    cnt = counts[rect]
    rect_of_pair = torch.repeat_interleave(torch.arange(rect.numel(), device=device), cnt)
    start = torch.cumsum(cnt, 0) - cnt
    local = torch.arange(int(cnt.sum()), device=device) - start[rect_of_pair]
    rect = rect[rect_of_pair]  # (P,) flat rectangle id of each pair
    level = rect % num_levels
    rect_w = w.flatten()[rect]
    col = c0.flatten()[rect] + local % rect_w
    row = r0.flatten()[rect] + torch.div(local, rect_w, rounding_mode="floor")
    level_start = torch.cumsum(torch.tensor([0] + list(priors.num_per_level[:-1]), device=device), 0)
    prior = level_start[level] + row * width[level] + col
    image = torch.div(rect, g * num_levels, rounding_mode="floor")
    gt = torch.div(rect, num_levels, rounding_mode="floor") % g
    return CandidatePairs(image, prior, gt, g)


def inside_box_pairs(priors: Priors, boxes: Tensor, valid: Tensor) -> CandidatePairs:
    """Every (image, prior, box) with the prior point strictly inside the valid box (FCOS's
    inside test l, t, r, b > 0), on every level, without a priors × boxes grid.

    Args:
        priors: grid priors.
        boxes: (N, G, 4) XYXY; valid: (N, G) bool.
    Returns:
        pairs sorted by (image, box, prior).
    """
    if priors.grid_sizes is None:
        raise ValueError("inside_box_pairs needs grid priors (Priors.grid_sizes); got an arbitrary point set")
    strides = torch.tensor(priors.level_strides, dtype=boxes.dtype, device=boxes.device)
    b = boxes[:, :, None, :]  # (N, G, 1, 4) against (L,) strides
    cols = grid_index_span(b[..., 0], b[..., 2], strides, priors.offset)
    rows = grid_index_span(b[..., 1], b[..., 3], strides, priors.offset)
    active = valid[:, :, None].expand(-1, -1, len(priors.level_strides))
    pairs = grid_rectangle_pairs(priors, cols, rows, active)
    points = priors.points[pairs.prior]
    box = boxes[pairs.image, pairs.gt]
    return pairs.select((points > box[:, :2]).all(dim=-1) & (points < box[:, 2:]).all(dim=-1))


def rank_in_segments(segment: Tensor, key: Tensor) -> Tensor:
    """Rank of each element by ascending ``key`` among the elements of its segment.

    A sparse per-group top-k (e.g. the k nearest priors per (gt, level)): keep
    ``rank_in_segments(...) < k``. Ties keep the input order (stable sorts).

    Args:
        segment: (P,) int64 segment id of each element (any values, any order).
        key: (P,) sort key.
    Returns:
        (P,) int64 rank, 0 for the smallest key of each segment.
    """
    if segment.numel() == 0:
        return torch.zeros_like(segment)
    by_key = torch.sort(key, stable=True).indices
    order = by_key[torch.sort(segment[by_key], stable=True).indices]  # sorted by (segment, key)
    _, counts = torch.unique_consecutive(segment[order], return_counts=True)
    starts = torch.repeat_interleave(torch.cumsum(counts, 0) - counts, counts)
    rank = torch.empty_like(segment)
    rank[order] = torch.arange(segment.numel(), device=segment.device) - starts
    return rank
