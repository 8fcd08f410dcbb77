"""Sparse candidate pairs from the grid geometry (dsla_d2/assigners/pairs.py)."""
import torch

from dsla_d2.assigners.pairs import (
    CandidatePairs, grid_axes, grid_index_span, grid_rectangle_pairs, inside_box_pairs, rank_in_segments, region_pair_chunks,
)
from dsla_d2.priors import PriorGenerator, Priors


def two_level_grid():
    # level 0: stride 8, 4×4 points at x, y ∈ {4, 12, 20, 28}; priors 0..15 (row-major)
    # level 1: stride 16, 2×2 points at {8, 24}; priors 16..19
    return PriorGenerator([8, 16], offset=0.5)([torch.zeros(1, 1, 4, 4), torch.zeros(1, 1, 2, 2)])


def test_priors_carry_their_grid():
    p = two_level_grid()
    assert p.grid_sizes == [(4, 4), (2, 2)] and p.level_strides == [8.0, 16.0] and p.offset == 0.5


def test_rectangles_become_sorted_pairs():
    p = two_level_grid()
    cols = torch.zeros(2, 2, 2, 2, dtype=torch.long)
    rows = torch.zeros(2, 2, 2, 2, dtype=torch.long)
    active = torch.zeros(2, 2, 2, dtype=torch.bool)
    # image 0, gt 0, level 0: columns 1-2, rows 0-1 → priors 1, 2, 5, 6
    cols[0, 0, 0] = torch.tensor([1, 2]); rows[0, 0, 0] = torch.tensor([0, 1]); active[0, 0, 0] = True
    # image 0, gt 0, level 1: columns −3..5 clamp to 0-1, row 1 → 16 + 2 + {0, 1} = 18, 19
    cols[0, 0, 1] = torch.tensor([-3, 5]); rows[0, 0, 1] = torch.tensor([1, 1]); active[0, 0, 1] = True
    # image 0, gt 1, level 1: empty (last < first), active → nothing
    cols[0, 1, 1] = torch.tensor([1, 0]); rows[0, 1, 1] = torch.tensor([0, 1]); active[0, 1, 1] = True
    # image 1, gt 0, level 0: a rectangle that is NOT active → nothing
    cols[1, 0, 0] = torch.tensor([0, 3]); rows[1, 0, 0] = torch.tensor([0, 3])
    # image 1, gt 1, level 0: column 3, rows 3..9 clamp to 3 → prior 3·4 + 3 = 15
    cols[1, 1, 0] = torch.tensor([3, 3]); rows[1, 1, 0] = torch.tensor([3, 9]); active[1, 1, 0] = True
    pairs = grid_rectangle_pairs(p, cols, rows, active)
    assert pairs.image.tolist() == [0, 0, 0, 0, 0, 0, 1]
    assert pairs.gt.tolist() == [0, 0, 0, 0, 0, 0, 1]
    assert pairs.prior.tolist() == [1, 2, 5, 6, 18, 19, 15]
    assert pairs.bag.tolist() == [0, 0, 0, 0, 0, 0, 3]  # n·G + g with G = 2
    kept = pairs.select(pairs.prior >= 6)
    assert kept.prior.tolist() == [6, 18, 19, 15] and len(kept) == 4


def test_no_active_rectangle_gives_no_pairs():
    p = two_level_grid()
    z = torch.zeros(1, 3, 2, 2, dtype=torch.long)
    pairs = grid_rectangle_pairs(p, z, z, torch.zeros(1, 3, 2, dtype=torch.bool))
    assert len(pairs) == 0 and pairs.num_gts == 3 and pairs.bag.numel() == 0


def test_index_span_is_a_superset():
    # stride 8, offset 0.5: points at 4, 12, 20, 28, ...; [9, 27] holds 12 (j=1) and 20 (j=2).
    # floor(9/8 − 0.5) − 1 = floor(0.625) − 1 = −1; ceil(27/8 − 0.5) + 1 = ceil(2.875) + 1 = 4.
    assert grid_index_span(torch.tensor(9.0), torch.tensor(27.0), torch.tensor(8.0), 0.5).tolist() == [-1, 4]


def test_boxes_enumerate_exactly_the_dense_inside_pairs():
    # The spans of random boxes (some outside the image, some tiny), filtered with the exact
    # "strictly inside" test on the real point coordinates, give the same pairs as testing
    # every (prior, gt) of the dense grid.
    g = torch.Generator().manual_seed(0)
    p = PriorGenerator([8, 16, 32], offset=0.5)([torch.zeros(1, 1, h, w) for h, w in ((12, 10), (6, 5), (3, 3))])
    xy = torch.rand(2, 40, 2, generator=g) * 120 - 20
    wh = torch.rand(2, 40, 2, generator=g) ** 3 * 90
    boxes = torch.cat([xy, xy + wh], -1)  # (N, G, 4)
    s = torch.tensor(p.level_strides)[None, None, :]
    cols = grid_index_span(boxes[..., None, 0], boxes[..., None, 2], s, p.offset)
    rows = grid_index_span(boxes[..., None, 1], boxes[..., None, 3], s, p.offset)
    pairs = grid_rectangle_pairs(p, cols, rows, torch.ones(2, 40, 3, dtype=torch.bool))
    pt = p.points[pairs.prior]
    b = boxes[pairs.image, pairs.gt]
    inside = (pt > b[:, :2]).all(-1) & (pt < b[:, 2:]).all(-1)
    sparse = set(zip(pairs.image[inside].tolist(), pairs.prior[inside].tolist(), pairs.gt[inside].tolist()))
    pts = p.points[None, :, None]
    dense_inside = (pts > boxes[:, None, :, :2]).all(-1) & (pts < boxes[:, None, :, 2:]).all(-1)  # (N, R, G)
    dense = set(map(tuple, dense_inside.nonzero().tolist()))
    assert sparse == dense and len(dense) > 100
    key = pairs.image * 10**6 + pairs.gt * 10**3 + pairs.prior
    assert torch.equal(key, key.sort().values)  # sorted by (image, gt, prior)
    assert isinstance(CandidatePairs.empty(3), CandidatePairs)


# --------------------------------------------------------------------------- region_pair_chunks
def _all_pairs(chunks):
    return [(int(n), int(g), int(r)) for c in chunks for n, g, r in zip(c.image, c.gt, c.prior)]


def _rect_truth(priors, lo, hi, active):
    """Every (n, g, prior) of an active level whose point lies in [lo, hi] (no widening)."""
    out = set()
    for n, g, lv in active.nonzero().tolist():
        sel = (priors.levels == lv) & (priors.points >= lo[n, g, lv]).all(-1) & (priors.points <= hi[n, g, lv]).all(-1)
        out |= {(n, g, r) for r in sel.nonzero().flatten().tolist()}
    return out


def test_region_pairs_superset_sorted_and_chunked():
    # Random pixel rectangles on a 3-level grid: the chunks hold every prior inside its
    # rectangle (a superset: widened by a tolerance and one index), each chunk whole gts in
    # (image, gt) order and sorted by (image, gt, prior); small chunks give the same pairs.
    g = torch.Generator().manual_seed(1)
    p = PriorGenerator([8, 16, 32], offset=0.5)([torch.zeros(1, 1, h, w) for h, w in ((12, 10), (6, 5), (3, 3))])
    lo = torch.rand(2, 30, 3, 2, generator=g) * 100 - 10
    hi = lo + torch.rand(2, 30, 3, 2, generator=g) * 40
    active = torch.rand(2, 30, 3, generator=g) < 0.7
    whole = list(region_pair_chunks(p, lo, hi, active))
    assert len(whole) == 1
    pairs = _all_pairs(whole)
    assert set(pairs) >= _rect_truth(p, lo, hi, active) and len(pairs) == len(set(pairs))
    assert pairs == sorted(pairs)
    small = list(region_pair_chunks(p, lo, hi, active, max_pairs=50))
    assert len(small) > 3 and _all_pairs(small) == pairs
    bags = [sorted(set((n, gt) for n, gt, _ in _all_pairs([c]))) for c in small]
    assert all(a[-1] < b[0] for a, b in zip(bags, bags[1:]))  # no gt split across chunks


def test_region_pairs_point_set_matches_grid():
    # The same priors without their grid geometry take the brute-force path: same pairs
    # up to the widening (one stride instead of one index, i.e. the same here).
    g = torch.Generator().manual_seed(2)
    p = PriorGenerator([8, 16], offset=0.5)([torch.zeros(1, 1, 6, 7), torch.zeros(1, 1, 3, 4)])
    q = Priors(p.points, p.anchors, p.strides, p.levels, p.num_per_level)
    lo = torch.rand(1, 25, 2, 2, generator=g) * 50
    hi = lo + torch.rand(1, 25, 2, 2, generator=g) * 20
    active = torch.rand(1, 25, 2, generator=g) < 0.8
    assert grid_axes(q) is None and grid_axes(p) is not None
    grid = _all_pairs(region_pair_chunks(p, lo, hi, active))
    brute = _all_pairs(region_pair_chunks(q, lo, hi, active, max_pairs=40))
    assert grid == brute and set(grid) >= _rect_truth(p, lo, hi, active)


def test_grid_axes_checks_the_points():
    p = two_level_grid()
    (xs, ys), (xs1, ys1) = grid_axes(p)
    assert xs.tolist() == [4, 12, 20, 28] and ys.tolist() == [4, 12, 20, 28] and xs1.tolist() == [8, 24]
    moved = p.points.clone()
    moved[5, 0] += 1  # one point off its column: not a grid any more
    assert grid_axes(p, moved) is None


# --------------------------------------------------------------------------- inside_box_pairs, rank_in_segments
def test_inside_box_pairs_are_the_dense_strictly_inside_pairs():
    # Random boxes (some outside the image, some tiny) on a 3-level grid and on the same
    # points as a point set (no grid): exactly the (image, prior, box) with the point
    # strictly inside, as testing every (prior, box) of the dense grid, sorted.
    g = torch.Generator().manual_seed(0)
    p = PriorGenerator([8, 16, 32], offset=0.5)([torch.zeros(1, 1, 12, 10), torch.zeros(1, 1, 6, 5), torch.zeros(1, 1, 3, 3)])
    xy = torch.rand(2, 40, 2, generator=g) * 120 - 20
    boxes = torch.cat([xy, xy + torch.rand(2, 40, 2, generator=g) ** 3 * 90], -1)
    valid = torch.rand(2, 40, generator=g) < 0.9
    pts = p.points[None, :, None]
    dense = ((pts > boxes[:, None, :, :2]) & (pts < boxes[:, None, :, 2:])).all(-1) & valid[:, None]  # (N, R, G)
    truth = set(map(tuple, dense.nonzero().tolist()))
    point_set = Priors(p.points, p.anchors, p.strides, p.levels, p.num_per_level)
    for priors in (p, point_set):
        pairs = inside_box_pairs(priors, boxes, valid)
        assert set(zip(pairs.image.tolist(), pairs.prior.tolist(), pairs.gt.tolist())) == truth and len(pairs) == len(truth)
        key = pairs.image * 10**6 + pairs.gt * 10**3 + pairs.prior
        assert torch.equal(key, key.sort().values) and len(truth) > 100
    assert len(inside_box_pairs(p, boxes[:, :0], valid[:, :0])) == 0


def test_rank_in_segments():
    # segments 7: keys [3, 1, 2] → ranks [2, 0, 1]; segment 2: keys [5, 5] → tie keeps input
    # order → [0, 1]; segment 9: a single element → 0. Segments interleaved on purpose.
    segment = torch.tensor([7, 2, 7, 9, 7, 2])
    key = torch.tensor([3.0, 5.0, 1.0, 0.0, 2.0, 5.0])
    assert rank_in_segments(segment, key).tolist() == [2, 0, 0, 0, 1, 1]
    assert rank_in_segments(torch.zeros(0, dtype=torch.long), torch.zeros(0)).numel() == 0
