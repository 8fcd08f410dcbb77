"""An index of predicted boxes for IoU-bounded searches: the batch's predicted boxes bucketed
by (image, size class, top-left cell), so that the boxes whose IoU with a gt is at least θ
are found as a few contiguous runs of one sorted key array, never priors × gts.

Used by TOOD's task-aligned assignment (:mod:`dsla_d2.assigners.tal`, whose docstring derives
the search region), YOLOX's SimOTA and RTMDet's dynamic soft labels (their top-k IoU sums).
"""
from typing import Tuple

import torch
from torch import Tensor

__all__ = ["PredictedBoxIndex", "expand_runs"]

# Size classes of the predicted-box buckets: class j holds the boxes whose longest side lies
# in [_SIZE_BOUNDS[j-1], _SIZE_BOUNDS[j]) (quarter octaves from 1 px to 16384 px; class 0
# everything below 1 px, the last class everything from 16384 px on, in one bucket per
# image), bucketed by the cell of their top-left corner, of side half the class's smallest.
_SIZE_BOUNDS = [2.0 ** (j / 4) for j in range(57)]
_NUM_CLASSES = len(_SIZE_BOUNDS) + 1
_CELL_FACTOR = 0.5
_CELL_LIMIT = 2**20  # cell indices are clamped to ±this (monotone: a superset stays one)
_CELL_SPAN = 2 * _CELL_LIMIT + 1
_THETA_SLACK = 1e-4


class PredictedBoxIndex:
    """The batch's predicted boxes bucketed by (image, size class, top-left cell), sorted by
    bucket key, for IoU-level searches: every box whose IoU with a gt is ≥ θ lies in the runs
    :meth:`ranges` returns (TAL, SimOTA and DSL search it; the geometry is in
    :mod:`dsla_d2.assigners.tal`'s docstring). Boxes that are not finite or have an empty side are left out (their IoU
    with every gt is 0)."""

    def __init__(self, boxes: Tensor):
        n, r, _ = boxes.shape
        b = boxes.double().reshape(n * r, 4)
        wh = b[:, 2:] - b[:, :2]
        ok = torch.isfinite(b).all(1) & (wh.amin(1) > 0)
        longest = wh.amax(1)
        bounds = torch.tensor(_SIZE_BOUNDS, dtype=torch.float64, device=boxes.device)
        size_class = torch.searchsorted(bounds, longest.nan_to_num(0.0), right=True)  # bounds[j−1] ≤ side < bounds[j]
        huge = size_class == _NUM_CLASSES - 1
        cell = _class_table(boxes.device)[2].index_select(0, size_class)
        cx = torch.where(huge, 0, _cell_index(b[:, 0], cell))
        cy = torch.where(huge, 0, _cell_index(b[:, 1], cell))
        image = torch.arange(n, device=boxes.device).repeat_interleave(r)
        keep = ok.nonzero().squeeze(1)
        key = _bucket_key(image, size_class, cy, cx).index_select(0, keep)
        order = torch.sort(key, stable=True).indices
        self.keys = key.index_select(0, order)
        self.prior = keep.index_select(0, order) % max(r, 1)  # prior index within its image
        # per (image, class): the range of occupied cells (empty: lo > hi), to clip searches
        bucket = (image * _NUM_CLASSES + size_class).index_select(0, keep)
        cells = torch.stack([cx, cy], 1).index_select(0, keep)
        big = torch.full((n * _NUM_CLASSES, 2), _CELL_LIMIT + 1, dtype=torch.long, device=boxes.device)
        self.cell_lo = big.scatter_reduce(0, bucket[:, None].expand(-1, 2), cells, "amin").view(n, _NUM_CLASSES, 2)
        self.cell_hi = (-big).scatter_reduce(0, bucket[:, None].expand(-1, 2), cells, "amax").view(n, _NUM_CLASSES, 2)

    def ranges(self, boxes: Tensor, image: Tensor, theta: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
        """Runs of the sorted index that hold every predicted box whose IoU with box i is
        ≥ θ_i (θ_i = 0: every box overlapping it), and possibly more.

        For a box A of a size class (longest side in [S_lo, S)) with IoU(A, G) ≥ θ: the
        x-overlap iw ≥ θ·max(w_A, w_G), so x1_A ≤ x2_G − θ·w_G, and x1_A ≥ x1_G −
        (1 − θ)·w_A with w_A ≤ min(S, w_G/θ); likewise y1_A. The class is searched only where
        [θ·longest side of G, longest side of G / θ] meets [S_lo, S).

        Args:
            boxes: (M, 4) the gts (finite, positive sides); image: (M,) their image;
            theta: (M,) float64 θ per gt.
        Returns:
            (Q,) start, end (exclusive) positions in the index and the row 0..M−1 of each
            run, sorted by row.
        """
        b = boxes.double()
        w, h = (b[:, 2] - b[:, 0])[:, None], (b[:, 3] - b[:, 1])[:, None]  # (M, 1)
        longest = torch.maximum(w, h)
        th = (theta * (1.0 - _THETA_SLACK))[:, None]
        lo_side, hi_side, cell = _class_table(b.device)  # (K,) each
        huge = torch.isinf(hi_side)
        fits = hi_side > th * longest * (1 - 1e-9)
        fits &= lo_side * (1 - 1e-9) <= longest / th  # θ = 0: inf
        bounded = torch.where(huge, 0.0, hi_side)  # huge: one bucket, every cell index 0
        wide = torch.minimum(w / th, bounded)  # largest possible w_A, h_A
        tall = torch.minimum(h / th, bounded)
        tol_x = 1e-9 * (b[:, 0:1].abs() + b[:, 2:3].abs() + bounded)
        tol_y = 1e-9 * (b[:, 1:2].abs() + b[:, 3:4].abs() + bounded)
        cx0 = _cell_index(b[:, 0:1] - (1 - th) * wide - tol_x, cell)
        cx1 = _cell_index(b[:, 2:3] - th * w + tol_x, cell)
        cy0 = _cell_index(b[:, 1:2] - (1 - th) * tall - tol_y, cell)
        cy1 = _cell_index(b[:, 3:4] - th * h + tol_y, cell)
        zero = torch.zeros_like(cx0)
        cx0, cx1, cy0, cy1 = (torch.where(huge, zero, c) for c in (cx0, cx1, cy0, cy1))
        lo, hi = self.cell_lo.index_select(0, image), self.cell_hi.index_select(0, image)  # (M, K, 2)
        cx0, cy0 = torch.maximum(cx0, lo[..., 0]), torch.maximum(cy0, lo[..., 1])
        cx1, cy1 = torch.minimum(cx1, hi[..., 0]), torch.minimum(cy1, hi[..., 1])
        rows = torch.where(fits & (cx1 >= cx0) & (cy1 >= cy0), cy1 - cy0 + 1, zero)
        rows, cy0, cx0, cx1 = (c.flatten() for c in (rows, cy0, cx0, cx1))  # (M·K,), (gt, class) order
        entry = torch.repeat_interleave(torch.arange(rows.numel(), device=rows.device), rows)
        local = torch.arange(entry.numel(), device=rows.device) - (torch.cumsum(rows, 0) - rows).index_select(0, entry)
        size_class = entry % _NUM_CLASSES
        row_of = torch.div(entry, _NUM_CLASSES, rounding_mode="floor")
        img = image.index_select(0, row_of)
        cy = cy0.index_select(0, entry) + local
        lo = _bucket_key(img, size_class, cy, cx0.index_select(0, entry))
        hi = _bucket_key(img, size_class, cy, cx1.index_select(0, entry))
        start = torch.searchsorted(self.keys, lo, side="left")
        end = torch.searchsorted(self.keys, hi, side="right")
        nonempty = (end > start).nonzero().squeeze(1)
        return start.index_select(0, nonempty), end.index_select(0, nonempty), row_of.index_select(0, nonempty)


def _class_table(device) -> Tuple[Tensor, Tensor, Tensor]:
    """(K,) float64 smallest and largest (exclusive) longest side of each size class, and the
    side of its cells (half the smallest side; the last class, one bucket: 1)."""
    bounds = torch.tensor(_SIZE_BOUNDS, dtype=torch.float64, device=device)
    lo = torch.cat([bounds.new_zeros(1), bounds])
    hi = torch.cat([bounds, bounds.new_full((1,), float("inf"))])
    cell = torch.cat([bounds[:1], bounds]) * _CELL_FACTOR
    cell[-1] = 1.0
    return lo, hi, cell


def _cell_index(coord: Tensor, cell) -> Tensor:
    """floor(coord / cell) as int64, clamped to ±_CELL_LIMIT (NaN → 0)."""
    idx = torch.floor(coord / cell).nan_to_num(0.0).clamp(-_CELL_LIMIT, _CELL_LIMIT)
    return idx.long()


def _bucket_key(image: Tensor, size_class: Tensor, cy: Tensor, cx: Tensor) -> Tensor:
    return ((image * _NUM_CLASSES + size_class) * _CELL_SPAN + cy + _CELL_LIMIT) * _CELL_SPAN + cx + _CELL_LIMIT


def expand_runs(start: Tensor, end: Tensor) -> Tuple[Tensor, Tensor]:
    """Positions start..end−1 of every run, and the run of each position."""
    length = end - start
    run = torch.repeat_interleave(torch.arange(length.numel(), device=start.device), length)
    before = (torch.cumsum(length, 0) - length).index_select(0, run)
    pos = start.index_select(0, run) + torch.arange(run.numel(), device=start.device) - before
    return pos, run
