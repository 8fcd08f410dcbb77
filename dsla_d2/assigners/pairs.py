"""Sparse (image, prior, gt) candidate pairs, enumerated from the grid geometry.

Almost every (prior, gt) pair of an image is irrelevant to label assignment: a gt only
covers the grid cells under its box, ATSS's candidates are a few cells around its centre.
:class:`CandidatePairs` holds just the pairs that matter, as flat index tensors, and
:func:`grid_rectangle_pairs` enumerates the cells of one index rectangle per (image, gt,
level) without a Python loop and without building the priors × gts grid, so cost follows
the number of relevant pairs.

:func:`region_pair_chunks` is the one enumeration every assigner uses: given, per
(image, gt, level), a pixel rectangle that contains every prior the assigner's exact rule
can accept, it yields the pairs of those rectangles in chunks of bounded size — from the
grid geometry for grid priors, by a chunked brute-force test for an arbitrary point set.

An assigner may also hand its pairs to the loss through ``Assignment.pairs`` (DW's
candidate bags: every point inside a gt, with per-pair weights computed with gradient).
"""
import math
from dataclasses import dataclass, field
from typing import Dict, Iterator, List, Optional, Tuple

import torch
from torch import Tensor

from ..priors import Priors

__all__ = [
    "CandidatePairs",
    "grid_index_span",
    "grid_rectangle_pairs",
    "grid_axes",
    "region_pair_chunks",
    "inside_box_pairs",
    "rank_in_segments",
    "MAX_PAIRS_PER_CHUNK",
]

#: Pairs evaluated at once by :func:`region_pair_chunks`. An assigner keeps about a dozen
#: 4–8-byte tensors per pair alive, so a chunk costs about 2**19 · 100 B ≈ 50 MiB at most,
#: whatever the number of gts; the per-prior results are merged across chunks.
MAX_PAIRS_PER_CHUNK = 2**19

#: Elements of one (gts × priors of a level) block of the brute-force path for point sets.
MAX_BRUTE_FORCE_BLOCK = 2**22


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

    def of_gt(self, table: Tensor) -> Tensor:
        """Per-pair rows of a per-gt table: (N, G, ...) -> (P, ...)."""
        return table.flatten(0, 1).index_select(0, self.bag)

    def of_prior(self, table: Tensor) -> Tensor:
        """Per-pair rows of a per-prior table: (R, ...) -> (P, ...)."""
        return table.index_select(0, self.prior)

    def select(self, keep: Tensor) -> "CandidatePairs":
        """The pairs where the (P,) bool ``keep`` is True (order preserved)."""
        return self.take(keep.nonzero().squeeze(1))

    def take(self, index: Tensor) -> "CandidatePairs":
        """The pairs at the (Q,) int64 positions ``index``, in that order."""
        take = lambda t: t.index_select(0, index)  # noqa: E731  (faster than boolean indexing)
        return CandidatePairs(
            take(self.image),
            take(self.prior),
            take(self.gt),
            self.num_gts,
            {k: take(v) for k, v in self.values.items()},
        )

    @classmethod
    def empty(cls, num_gts: int, device=None) -> "CandidatePairs":
        z = torch.zeros(0, dtype=torch.long, device=device)
        return cls(z, z.clone(), z.clone(), num_gts)

    @classmethod
    def cat(cls, chunks: List["CandidatePairs"], num_gts: int, device=None) -> "CandidatePairs":
        """The pairs of ``chunks`` (same ``num_gts``, same ``values`` keys) one after another."""
        if not chunks:
            return cls.empty(num_gts, device)
        values = {k: torch.cat([c.values[k] for c in chunks]) for k in chunks[0].values}
        return cls(*(torch.cat([getattr(c, f) for c in chunks]) for f in ("image", "prior", "gt")), num_gts, values)


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
    # clamp before the cast: a far-away box (1e30 px) must not overflow int64
    span = torch.stack([first, last], dim=-1).nan_to_num(0.0).clamp(-(2.0**40), 2.0**40)
    return span.to(torch.long)


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
    # per rectangle (few): its image, gt, width and first prior; then per pair (many):
    # only the position inside the rectangle
    level = rect % num_levels
    level_start = torch.cumsum(torch.tensor([0] + list(priors.num_per_level[:-1]), device=device), 0)
    rect_w = w.flatten()[rect]
    first = level_start[level] + r0.flatten()[rect] * width[level] + c0.flatten()[rect]
    row_step = width[level] - rect_w  # from the end of a rectangle row to the next row's start
    image_of = torch.div(rect, g * num_levels, rounding_mode="floor")
    gt_of = torch.div(rect, num_levels, rounding_mode="floor") % g
    rect_of_pair = torch.repeat_interleave(torch.arange(rect.numel(), device=device), cnt)
    start = torch.cumsum(cnt, 0) - cnt
    local = torch.arange(int(cnt.sum()), device=device) - start.index_select(0, rect_of_pair)
    row = torch.div(local, rect_w.index_select(0, rect_of_pair), rounding_mode="floor")
    # prior = first + row·W + col, col = local − row·w  →  first + local + row·(W − w)
    prior = first.index_select(0, rect_of_pair) + local + row * row_step.index_select(0, rect_of_pair)
    image = image_of.index_select(0, rect_of_pair)
    gt = gt_of.index_select(0, rect_of_pair)
    return CandidatePairs(image, prior, gt, g)


def grid_axes(priors: Priors, centers: Optional[Tensor] = None) -> Optional[List[Tuple[Tensor, Tensor]]]:
    """Per level, the column coordinates ``xs`` (W,) and row coordinates ``ys`` (H,) of a
    grid: the prior at (level l, row i, column j) sits exactly at (xs[j], ys[i]).

    Checked on every prior (O(R)), with strictly increasing axes, so any rectilinear grid
    qualifies and ``Priors`` whose ``grid_sizes`` do not describe their points are treated
    as a point set. Returns None for a point set.

    Args:
        centers: (R, 2) coordinates to use instead of ``priors.points`` (ATSS measures
            distances between anchor centres).
    """
    if priors.grid_sizes is None:
        return None
    pts = priors.points if centers is None else centers
    out, start = [], 0
    for (h, w), n in zip(priors.grid_sizes, priors.num_per_level):  # ≤ 5 levels
        if h * w != n:
            return None
        grid = pts[start : start + n].reshape(h, w, 2)
        xs = grid[0, :, 0].contiguous() if h else pts.new_zeros(0)
        ys = grid[:, 0, 1].contiguous() if w else pts.new_zeros(0)
        on_axes = torch.equal(grid[..., 0], xs.expand(h, w)) and torch.equal(grid[..., 1], ys[:, None].expand(h, w))
        if n and not on_axes:
            return None
        if bool((xs.diff() <= 0).any()) or bool((ys.diff() <= 0).any()):
            return None
        out.append((xs, ys))
        start += n
    return out


def _row_chunks(counts: Tensor, max_pairs: int) -> List[Tuple[int, int]]:
    """Split rows with (M,) pair counts into consecutive [a, b) ranges of at most
    ``max_pairs`` pairs (a single row may exceed it: it is then a chunk of its own)."""
    total = int(counts.sum())
    if total == 0:
        return []
    if total <= max_pairs:
        return [(0, counts.numel())]
    before = torch.cumsum(counts, 0) - counts
    bucket = torch.div(before, max_pairs, rounding_mode="floor")
    first = torch.zeros(1, dtype=torch.long, device=counts.device)
    starts = torch.cat([first, (bucket.diff() != 0).nonzero().squeeze(1) + 1])
    bounds = starts.tolist() + [counts.numel()]
    return list(zip(bounds[:-1], bounds[1:]))


def _brute_force_pairs(priors: Priors, lo: Tensor, hi: Tensor, active: Tensor) -> Tuple[Tensor, Tensor]:
    """Point-set path: (row, prior) of every prior of level l inside [lo − s, hi + s].

    Args: lo, hi: (M, L, 2) float64; active: (M, L). Returns (P,) row and prior indices
    sorted by (row, prior). Memory: blocks of at most MAX_BRUTE_FORCE_BLOCK (row, prior) tests.
    """
    rows, pris = [], []
    start = 0
    for level, n in enumerate(priors.num_per_level):  # ≤ 5 levels
        ids = active[:, level].nonzero().squeeze(1)
        pts = priors.points[start : start + n].double()
        s = priors.strides[start : start + n, None].double()
        step = max(1, MAX_BRUTE_FORCE_BLOCK // max(n, 1))
        for a in range(0, ids.numel(), step):  # blocks bound the (gts × priors) test
            sel = ids[a : a + step]
            inside = ((pts[None] >= lo[sel, level, None] - s) & (pts[None] <= hi[sel, level, None] + s)).all(-1)
            r, p = inside.nonzero().unbind(1)
            rows.append(sel[r])
            pris.append(p + start)
        start += n
    if not rows:
        z = torch.zeros(0, dtype=torch.long, device=lo.device)
        return z, z.clone()
    row, prior = torch.cat(rows), torch.cat(pris)
    order = torch.sort(row * max(len(priors), 1) + prior).indices
    return row[order], prior[order]


def region_pair_chunks(
    priors: Priors, lo: Tensor, hi: Tensor, active: Tensor, max_pairs: int = MAX_PAIRS_PER_CHUNK
) -> Iterator[CandidatePairs]:
    """The (image, prior, gt) pairs of every prior of level l inside the pixel rectangle
    [lo, hi] of (image n, gt g, level l), for the active rectangles, in chunks.

    The rectangle is a superset bound: it is widened by 1e-5 of its coordinates' magnitude
    (+ 1e-3 px) and by one grid index (one stride for a point set), so that rounding in the
    caller's arithmetic never drops a prior; the caller applies its exact rule to the pairs.
    Grid priors (:func:`grid_axes`) are enumerated from the index rectangles
    (:func:`grid_rectangle_pairs`, cost ∝ pairs); a point set is tested by brute force in
    bounded blocks. Each chunk holds whole gts, consecutive in (image, gt) order, at most
    ``max_pairs`` pairs (unless one gt alone has more), sorted by (image, gt, prior).

    Args:
        lo, hi: (N, G, L, 2) (x, y) corners in pixels; active: (N, G, L) bool.
    """
    n, g, num_levels = active.shape
    if num_levels != len(priors.num_per_level):
        raise ValueError(f"rectangles for {num_levels} levels given, the priors have {len(priors.num_per_level)}")
    lo, hi = lo.double(), hi.double()
    tol = 1e-5 * (lo.abs() + hi.abs()) + 1e-3
    lo, hi = (lo - tol).reshape(n * g, num_levels, 2), (hi + tol).reshape(n * g, num_levels, 2)
    active = active.reshape(n * g, num_levels) & (lo <= hi).all(-1)
    axes = grid_axes(priors)
    if axes is not None:
        spans = []
        for (xs, ys), level in zip(axes, range(num_levels)):  # ≤ 5 levels
            spans.append(
                [
                    torch.stack([torch.searchsorted(v.double(), lo[:, level, d].contiguous(), side="left") - 1,
                                 torch.searchsorted(v.double(), hi[:, level, d].contiguous(), side="right")], -1)
                    for d, v in ((0, xs), (1, ys))
                ]
            )
        cols = torch.stack([c for c, _ in spans], 1)  # (M, L, 2) unclamped [first, last]
        rows = torch.stack([r for _, r in spans], 1)
        sizes = torch.tensor(priors.grid_sizes, dtype=torch.long, device=lo.device)
        w = (torch.minimum(cols[..., 1], sizes[:, 1] - 1) - cols[..., 0].clamp(min=0) + 1).clamp(min=0)
        h = (torch.minimum(rows[..., 1], sizes[:, 0] - 1) - rows[..., 0].clamp(min=0) + 1).clamp(min=0)
        counts = torch.where(active, w * h, torch.zeros_like(w)).sum(1)
    else:
        per_level = torch.tensor(priors.num_per_level, dtype=torch.long, device=lo.device)
        counts = (active.long() * per_level).sum(1)
    for a, b in _row_chunks(counts, max_pairs):
        if axes is not None:
            block = grid_rectangle_pairs(priors, cols[None, a:b], rows[None, a:b], active[None, a:b])
            row, prior = block.gt + a, block.prior
        else:
            row, prior = _brute_force_pairs(priors, lo[a:b], hi[a:b], active[a:b])
            row = row + a
        if row.numel():
            yield CandidatePairs(torch.div(row, g, rounding_mode="floor"), prior, row % g, g)


def inside_box_pairs(
    priors: Priors, boxes: Tensor, valid: Tensor, centers: Optional[Tensor] = None, max_offset: Optional[float] = None
) -> CandidatePairs:
    """Every (image, prior, box) with the prior point strictly inside the valid box (FCOS's
    inside test l, t, r, b > 0), on every level: :func:`region_pair_chunks` over the boxes
    themselves, the exact test per chunk, the kept pairs concatenated. Memory follows the
    pairs inside (plus one chunk), never priors × boxes.

    With ``centers`` and ``max_offset`` = k, a grid prior is only enumerated if it also lies
    within k grid spacings Δ of its level (along x and along y) from the centre clamped to
    the level's grid, c' (more may be returned, never fewer). That is all a per-(box, level)
    top-k by distance to the centre c needs: an inside point p with |p_x − c'_x| > k·Δ has k
    grid points of its row strictly between c' and p — inside the box (it holds c and p)
    and strictly closer to c —, likewise along y, so it never ranks among the k nearest.

    Args:
        priors: grid priors or a point set (point sets are not windowed).
        boxes: (N, G, 4) XYXY; valid: (N, G) bool.
        centers: (N, G, 2) the window centres; max_offset: k, in grid spacings of each level.
    Returns:
        pairs sorted by (image, box, prior).
    """
    n, g = valid.shape
    num_levels = len(priors.num_per_level)
    lo = boxes[:, :, None, :2].expand(n, g, num_levels, 2)
    hi = boxes[:, :, None, 2:].expand(n, g, num_levels, 2)
    axes = grid_axes(priors) if max_offset is not None else None
    if axes is not None:
        first, last, spacing = (torch.full((num_levels, 2), v, dtype=boxes.dtype, device=boxes.device)
                                for v in (-math.inf, math.inf, math.inf))
        for level, (xs, ys) in enumerate(axes):  # ≤ 5 levels; an empty level is not windowed
            if len(xs) and len(ys):
                first[level] = torch.stack([xs[0], ys[0]]).to(boxes.dtype)
                last[level] = torch.stack([xs[-1], ys[-1]]).to(boxes.dtype)
                spacing[level] = torch.stack([a.diff().max() if len(a) > 1 else a.new_zeros(()) for a in (xs, ys)]).to(boxes.dtype)
        center = torch.maximum(torch.minimum(centers[:, :, None, :], last), first)  # c', (N, G, L, 2)
        lo = torch.maximum(lo, center - max_offset * spacing)
        hi = torch.minimum(hi, center + max_offset * spacing)
    kept = []
    for pairs in region_pair_chunks(priors, lo, hi, valid[:, :, None].expand(n, g, num_levels)):
        points, box = pairs.of_prior(priors.points), pairs.of_gt(boxes)
        kept.append(pairs.select((points > box[:, :2]).all(dim=-1) & (points < box[:, 2:]).all(dim=-1)))
    return CandidatePairs.cat(kept, g, boxes.device)


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
