"""Sparse candidate pairs from the grid geometry (dsla_d2/assigners/pairs.py)."""
import torch

from dsla_d2.assigners.pairs import CandidatePairs, grid_index_span, grid_rectangle_pairs, inside_box_pairs
from dsla_d2.priors import PriorGenerator


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
    p = PriorGenerator([8, 16, 32], offset=0.5)([torch.zeros(1, 1, 12, 10), torch.zeros(1, 1, 6, 5), torch.zeros(1, 1, 3, 3)])
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
    # the same, in one call
    inside_pairs = inside_box_pairs(p, boxes, torch.ones(2, 40, dtype=torch.bool))
    assert set(zip(inside_pairs.image.tolist(), inside_pairs.prior.tolist(), inside_pairs.gt.tolist())) == dense
    key = pairs.image * 10**6 + pairs.gt * 10**3 + pairs.prior
    assert torch.equal(key, key.sort().values)  # sorted by (image, gt, prior)
    assert isinstance(CandidatePairs.empty(3), CandidatePairs)


def test_rank_in_segments():
    from dsla_d2.assigners.pairs import rank_in_segments

    # segments 7: keys [3, 1, 2] → ranks [2, 0, 1]; segment 2: keys [5, 5] → tie keeps input
    # order → [0, 1]; segment 9: a single element → 0. Segments interleaved on purpose.
    segment = torch.tensor([7, 2, 7, 9, 7, 2])
    key = torch.tensor([3.0, 5.0, 1.0, 0.0, 2.0, 5.0])
    assert rank_in_segments(segment, key).tolist() == [2, 0, 0, 0, 1, 1]
    assert rank_in_segments(torch.zeros(0, dtype=torch.long), torch.zeros(0)).numel() == 0
