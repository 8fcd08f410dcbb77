"""ATSS steps 1–2 without the (N, R, G) distance grid: the k priors nearest to each gt
centre on every level, found in a small window of grid cells around the centre.

The result must equal the dense selection bit for bit: on each level, the first
k_l = min(k, n_l) priors of the *stable* sort of all the level's priors by the float32
distance d = sqrt((x − cx)² + (y − cy)²), computed as ``diff.pow(2).sum(-1).sqrt()``
(ties — equal float distances — go to the lower prior index), in that order.

**Window.** On a grid level with column coordinates xs (W,) and row coordinates ys (H,)
(:func:`~dsla_d2.assigners.pairs.grid_axes`), take the cell (i0, j0) nearest to the centre
and the rectangle Win of (2h+1) × (2h+1) cells around it, shifted inside the grid where
it would stick out. Its cells are enumerated row-major, i.e. by increasing prior index,
so a stable sort of Win by d gives Win's order of the dense sort.

**Lemma (certificate).** Let D_k be the k-th smallest d in Win and B a lower bound of d
over all priors outside Win. If D_k < B, the dense top-k of the level is Win's top-k, in
the same order. Proof: the dense order restricted to Win is Win's stable order (same key,
same index tie-break); Win's first k priors have d ≤ D_k < B ≤ d of every outside prior,
so they precede every outside prior, and they precede the rest of Win. ∎

**Bound B.** Rounding is monotone, so d is a non-decreasing function of |fl(x − cx)| and
|fl(y − cy)| (fl(a − c) is monotone in a; the square, the sum of two and the square root
too). With xs increasing, if the column just left of Win lies at x ≤ cx, every column
left of Win has |fl(x − cx)| ≥ ex_left := |fl(xs[ja−1] − cx)|, and likewise on the right
(x ≥ cx); if a neighbour column lies on the wrong side, no bound is claimed (the
certificate fails). With ex = min(ex_left, ex_right) (∞ if Win reaches both borders), ey
the same for rows, and dx_min ≤ |fl(x − cx)| for every column (the smallest over Win's
columns and ex), dy_min likewise: an outside prior has its column or its row outside Win,
so d ≥ B := min(F(ex, dy_min), F(dx_min, ey)), F(a, b) = fl(sqrt(fl(a²) + fl(b²))) — the
same float operations as d, hence an exact lower bound, no epsilon involved.

**Window size.** For a centre inside the grid's hull with uniform spacing s: |dx| ≤ s/2
for the nearest column, so the (2m+1)² block around (i0, j0), (2m+1)² ≥ k, has every
cell within sqrt(2)·(m + 1/2)·s of the centre, hence D_k ≤ sqrt(2)·(m + 1/2)·s; a column
or row outside Win is at ≥ (h + 1/2)·s. h = ⌊sqrt(2)·(m + 1/2) − 1/2⌋ + 1 makes the
second strictly larger (k = 9: m = 1, h = 2, 2.5·s > 2.12·s), so the certificate holds
unless float ties at exactly that margin intervene. Near a border Win is shifted inward
and the bound on the clamped side only grows. A centre outside the hull (a box partly
outside the image) can have its k nearest in one column (or row) along the border: the k
nearest of any level form, up to exact ties, a down-set in (rank of |dx| among columns,
rank of |dy| among rows), so they lie in the k nearest columns × k nearest rows; a second
window with h' = max(h, ⌈(k − 1)/2⌉) (2h' + 1 ≥ k cells per axis) is tried for those.
On a level too thin to hold k cells in the window, the window grows along its long axis. Whatever is still not certified —
exact ties across the window border, centres so far away that float32 cannot tell the
columns apart (d ≳ 10⁶ px) — takes the exact path: all priors of the level, sorted
(chunked). Point sets (no grid) always take the exact path. The result is therefore
always the dense selection; the windows only make it cheap.
"""
import math
from typing import List, Optional, Tuple

import torch
from torch import Tensor

from ..priors import Priors
from .pairs import grid_axes

__all__ = ["window_half_widths", "nearest_candidates", "exact_nearest", "select_topk_candidates"]

#: Elements of one (gts × level priors) distance block on the exact path.
MAX_EXACT_BLOCK = 2**22


def select_topk_candidates(distances: Tensor, num_per_level: List[int], topk: int) -> Tensor:
    """Per level, the ``min(topk, n_level)`` priors nearest to each gt (ATSS step 2), from
    a dense distance block: the definition :func:`nearest_candidates` reproduces, and its
    exact path (on one level's block at a time).

    Ties in distance go to the lower prior index (stable sort), so the selection is
    deterministic on every device.

    Args:
        distances: (N, R, G) distances between prior centres and gt centres, levels
            concatenated along R in the order of ``num_per_level``.
        num_per_level: priors per level (sums to R).
        topk: k.
    Returns:
        (N, K, G) int64 prior indices into R, K = Σ_l min(k, n_l); within one (image, gt)
        column they are distinct.
    """
    chunks = []
    start = 0
    for n in num_per_level:  # ≤ 5 FPN levels: the only Python loop
        k = min(int(topk), int(n))
        if k > 0:
            d = distances[:, start : start + n]
            order = torch.sort(d, dim=1, stable=True).indices[:, :k]
            chunks.append(order + start)
        start += n
    if not chunks:
        n_img, _, g = distances.shape
        return torch.zeros(n_img, 0, g, dtype=torch.long, device=distances.device)
    return torch.cat(chunks, dim=1)


def window_half_widths(topk: int) -> Tuple[int, ...]:
    """The half-widths h (then h' for centres outside the grid) of the windows tried, in
    order (see the module docstring)."""
    m = math.ceil((math.sqrt(topk) - 1) / 2)
    h = math.floor(math.sqrt(2) * (m + 0.5) - 0.5) + 1
    h_out = max(h, math.ceil((topk - 1) / 2))
    return (h,) if h_out == h else (h, h_out)


def _distances(px: Tensor, py: Tensor, center: Tensor) -> Tensor:
    """float32 d exactly as the dense code: (prior − centre) → pow(2) → sum → sqrt."""
    return torch.stack([px - center[..., 0], py - center[..., 1]], dim=-1).pow(2).sum(-1).sqrt()


def exact_nearest(centers_l: Tensor, center: Tensor, k: int) -> Tensor:
    """First k of the stable sort of all the level's priors by d, for T centres.

    Args:
        centers_l: (n_l, 2) the level's prior centres; center: (T, 2).
    Returns:
        (T, k) int64 indices into the level, in sorted order.
    """
    out = []
    step = max(1, MAX_EXACT_BLOCK // max(centers_l.shape[0], 1))
    for a in range(0, center.shape[0], step):  # blocks bound the memory
        c = center[a : a + step]
        d = _distances(centers_l[:, None, 0], centers_l[:, None, 1], c[None])  # (n_l, T)
        out.append(select_topk_candidates(d[None], [centers_l.shape[0]], k)[0].T)
    return torch.cat(out) if out else center.new_zeros(0, k, dtype=torch.long)


def _axis_window(axis: Tensor, c: Tensor, half: int):
    """Window along one axis: first index (M,), width w, and the per-axis quantities of
    the certificate: the bound e on |fl(coord − c)| outside the window (∞ if none), a
    lower bound on |fl(coord − c)| over all indices, and whether the bound holds."""
    size = axis.numel()
    w = min(size, 2 * half + 1)
    if size > 1:
        idx = torch.searchsorted(axis, c.contiguous()).clamp(1, size - 1)
        nearest = torch.where((c - axis[idx - 1]).abs() <= (axis[idx] - c).abs(), idx - 1, idx)
    else:
        nearest = torch.zeros_like(c, dtype=torch.long)
    first = (nearest - half).clamp(min=0).clamp(max=size - w)
    inf = torch.full_like(c, float("inf"))
    left = axis[(first - 1).clamp(min=0)] - c
    right = axis[(first + w).clamp(max=size - 1)] - c
    has_left, has_right = first > 0, first + w < size
    ok = (~has_left | (left <= 0)) & (~has_right | (right >= 0))
    bound = torch.minimum(torch.where(has_left, left.abs(), inf), torch.where(has_right, right.abs(), inf))
    inside = (axis[first[:, None] + torch.arange(w, device=c.device)] - c[:, None]).abs().amin(1)
    return first, w, bound, torch.minimum(inside, bound), ok


def _window_nearest(xs: Tensor, ys: Tensor, start: int, center: Tensor, k: int, half: int):
    """Window top-k of one grid level for M centres: (M, k) prior indices and (M,)
    whether the certificate holds (see the module docstring)."""
    width, height = xs.numel(), ys.numel()
    hx = hy = half
    while min(width, 2 * hx + 1) * min(height, 2 * hy + 1) < k:  # a thin level: widen
        if 2 * hx + 1 < width:
            hx += 1
        else:
            hy += 1
    c0, wx, ex, dx_min, ok_x = _axis_window(xs, center[:, 0], hx)
    r0, wy, ey, dy_min, ok_y = _axis_window(ys, center[:, 1], hy)
    ar = torch.arange(wy, device=center.device)
    ac = torch.arange(wx, device=center.device)
    rows = (r0[:, None] + ar)[:, :, None].expand(-1, wy, wx).reshape(-1, wy * wx)  # row-major cells
    cols = (c0[:, None] + ac)[:, None, :].expand(-1, wy, wx).reshape(-1, wy * wx)
    d = _distances(xs[cols], ys[rows], center[:, None, :])  # (M, wy·wx)
    dist, order = torch.sort(d, dim=1, stable=True)
    order = order[:, :k]
    prior = start + torch.gather(rows, 1, order) * width + torch.gather(cols, 1, order)
    zero = torch.zeros_like(ex)
    bound = torch.minimum(_distances(ex, dy_min, torch.stack([zero, zero], -1)),
                          _distances(dx_min, ey, torch.stack([zero, zero], -1)))
    return prior, ok_x & ok_y & (dist[:, k - 1] < bound)


def nearest_candidates(priors: Priors, anchor_centers: Tensor, centers: Tensor, active: Tensor, topk: int) -> Tensor:
    """ATSS candidates: per level the min(k, n_l) priors nearest to each gt centre, as the
    dense stable sort gives them (module docstring), without a priors × gts grid.

    Args:
        priors: R priors; anchor_centers: (R, 2) the coordinates distances are measured
            from (ATSS: anchor centres).
        centers: (N, G, 2) gt centres; active: (N, G) the gts to select for (others get
            an arbitrary fixed candidate set: callers mask them out).
    Returns:
        (N, K, G) int64 prior indices, K = Σ_l min(k, n_l), levels in order.
    """
    n_img, n_gt = active.shape
    axes: Optional[List[Tuple[Tensor, Tensor]]] = grid_axes(priors, anchor_centers)
    flat = centers.reshape(-1, 2)
    ids = active.reshape(-1).nonzero().squeeze(1)
    chunks, start = [], 0
    for level, n in enumerate(priors.num_per_level):  # ≤ 5 levels
        k = min(int(topk), int(n))
        if k == 0:
            continue
        cand = (start + torch.arange(k, device=flat.device)).expand(n_img * n_gt, k).clone()
        todo = ids
        if axes is not None:
            xs, ys = axes[level]
            for half in window_half_widths(topk):  # ≤ 2 windows
                if todo.numel() == 0 or xs.numel() * ys.numel() <= (2 * half + 1) ** 2:
                    break
                prior, certified = _window_nearest(xs, ys, start, flat[todo], k, half)
                cand[todo[certified]] = prior[certified]
                todo = todo[~certified]
        if todo.numel():
            cand[todo] = start + exact_nearest(anchor_centers[start : start + n], flat[todo], k)
        chunks.append(cand.view(n_img, n_gt, k).transpose(1, 2))
        start += n
    if not chunks:
        return torch.zeros(n_img, 0, n_gt, dtype=torch.long, device=flat.device)
    return torch.cat(chunks, dim=1).contiguous()
