"""DW's candidate bags and centre prior (dsla_d2/assigners/dw.py) against the spec's
hand-derived vectors (from the paper and the authors' code) and the paper's Table 4 bags."""
import math

import pytest
import torch

from dsla_d2.assigners import DWAssigner
from dsla_d2.assigners.dw import BAGS, center_prior
from dsla_d2.priors import PriorGenerator, Priors

from tiny import gt_instances

# 2σ² with σ = 1.11: 2·1.2321 = 2.4642
TWO_SIGMA2 = 2.4642


def grid(strides, sizes):
    """Grid priors (offset 0.5) of the given strides and (H, W) sizes."""
    return PriorGenerator(strides, offset=0.5)([torch.zeros(1, 1, h, w) for h, w in sizes])


def pairs_of(assignment, priors):
    """{(image, gt, (x, y)): G} of the assignment's bags."""
    p = assignment.pairs
    pts = priors.points[p.prior].tolist()
    return {(n, g, tuple(xy)): v for n, g, xy, v in zip(p.image.tolist(), p.gt.tolist(), pts, p.values["center_prior"].tolist())}


def test_center_prior_spec_vectors():
    # G = exp(−(dx² + dy²)/(2σ²)) with (dx, dy) in strides, 2σ² = 2.4642:
    # (8, 0) px at s 8 → (1, 0): exp(−1/2.4642) = exp(−0.405812) = 0.666436
    # (8, 8) px at s 8 → (1, 1): exp(−2/2.4642) = exp(−0.811623) = 0.444137
    # (16, 0) px at s 8 → (2, 0): exp(−4/2.4642) = exp(−1.623245) = 0.197258
    # (16, 0) px at s 32 → (0.5, 0): exp(−0.25/2.4642) = exp(−0.101453) = 0.903524
    offsets = torch.tensor([[1.0, 0.0], [1.0, 1.0], [2.0, 0.0], [0.5, 0.0]])
    assert center_prior(offsets, 1.11).tolist() == pytest.approx([0.666436, 0.444137, 0.197258, 0.903524], abs=1e-6)


def test_bags_hold_points_strictly_inside_on_every_level():
    # Levels: s 8 (4×4 points at 4, 12, 20, 28) and s 16 (2×2 at 8, 24). gt (4, 4, 28, 20):
    # s 8: x ∈ (4, 28) → 12, 20 (4 and 28 lie on the edges: out); y ∈ (4, 20) → 12;
    # s 16: x ∈ {8, 24}, y = 8 → both inside. No size ranges: both levels serve the gt.
    # Centre (16, 12): s 8 offsets (±4, 0)/8 = ±0.5 → exp(−0.25/2.4642) = 0.903524;
    # s 16 offsets (∓8, −4)/16 = (∓0.5, −0.25) → exp(−0.3125/2.4642) = exp(−0.126816) = 0.880896.
    priors = grid([8, 16], [(4, 4), (2, 2)])
    a = DWAssigner()(priors, [gt_instances([[4, 4, 28, 20]], [1], (32, 32))], 3)
    got = pairs_of(a, priors)
    assert set(got) == {(0, 0, (12.0, 12.0)), (0, 0, (20.0, 12.0)), (0, 0, (8.0, 8.0)), (0, 0, (24.0, 8.0))}
    assert got[(0, 0, (12.0, 12.0))] == pytest.approx(0.903524, abs=1e-6)
    assert got[(0, 0, (8.0, 8.0))] == pytest.approx(math.exp(-0.3125 / TWO_SIGMA2), abs=1e-6)
    assert a.pairs.values["center_prior"].tolist() == pytest.approx([0.903524, 0.903524, 0.880896, 0.880896], abs=1e-6)
    # Dense fields: every bag member is labelled with class 1 and weighted by its G.
    assert a.labels[0].tolist() == [3, 3, 3, 3, 3, 1, 1, 3, 3, 3, 3, 3, 3, 3, 3, 3, 1, 1, 3, 3]
    assert a.cls_scores[0, 5].item() == pytest.approx(0.903524, abs=1e-6)


def test_spec_center_prior_vectors_on_a_grid():
    # s 8 points at 4 + 8k, s 32 points at 16 + 32k. gt 0 = (0, 0, 40, 40), centre (20, 20):
    # the s 8 points (28, 20), (28, 28), (36, 20) are (8, 0), (8, 8), (16, 0) px away.
    # gt 1 = (0, 0, 64, 32), centre (32, 16): the s 32 point (16, 16) is (16, 0) px away.
    priors = grid([8, 32], [(8, 8), (2, 2)])
    a = DWAssigner()(priors, [gt_instances([[0, 0, 40, 40], [0, 0, 64, 32]], [0, 0], (64, 64))], 2)
    got = pairs_of(a, priors)
    assert got[(0, 0, (28.0, 20.0))] == pytest.approx(0.666436, abs=1e-6)
    assert got[(0, 0, (28.0, 28.0))] == pytest.approx(0.444137, abs=1e-6)
    assert got[(0, 0, (36.0, 20.0))] == pytest.approx(0.197258, abs=1e-6)
    assert got[(0, 1, (16.0, 16.0))] == pytest.approx(0.903524, abs=1e-6)


def test_hard_prior_keeps_every_member_with_g_over_0_3_as_1():
    # Same gt 0 as above, centre (20, 20), s 8: G(8, 0) = 0.666 → 1, G(16, 0) = 0.197 → 0,
    # and the point stays in the bag (P_neg's rescaling still sees it).
    priors = grid([8, 32], [(8, 8), (2, 2)])
    gts = [gt_instances([[0, 0, 40, 40]], [0], (64, 64))]
    soft = pairs_of(DWAssigner()(priors, gts, 2), priors)
    hard = pairs_of(DWAssigner(bag="hard_prior")(priors, gts, 2), priors)
    assert set(hard) == set(soft)
    assert hard[(0, 0, (28.0, 20.0))] == 1.0 and hard[(0, 0, (36.0, 20.0))] == 0.0
    assert all(v == (1.0 if soft[k] > 0.3 else 0.0) for k, v in hard.items())


def test_threshold_and_topk_bags():
    # gt (0, 0, 40, 40), centre (20, 20), s 8 points at 4..36 inside (5×5), s 32 point (16, 16)
    # inside, (4, 4)/32 = 0.125 from the centre in each axis.
    # Threshold 1.3 strides: distances 0 (the centre point), 1 (4 of them), √2 = 1.414 (no),
    # 2 (no); s 32: √(0.125² + 0.125²) = 0.177 → kept. 1 + 4 + 1 = 6 members, G = 1.
    priors = grid([8, 32], [(8, 8), (2, 2)])
    gts = [gt_instances([[0, 0, 40, 40]], [0], (64, 64))]
    thr = pairs_of(DWAssigner(bag="threshold", distance_threshold=1.3)(priors, gts, 2), priors)
    assert set(k[2] for k in thr) == {(20.0, 20.0), (12.0, 20.0), (28.0, 20.0), (20.0, 12.0), (20.0, 28.0), (16.0, 16.0)}
    assert set(thr.values()) == {1.0}
    # Top-2 per level: s 8 → the centre point and the first nearest at distance 1 (ties keep
    # prior order: (20, 12) has the lowest prior index of the four); s 32 → its only inside point.
    top = pairs_of(DWAssigner(bag="topk", topk=2)(priors, gts, 2), priors)
    assert set(k[2] for k in top) == {(20.0, 20.0), (20.0, 12.0), (16.0, 16.0)}


def test_dense_fields_take_the_bag_with_the_largest_prior():
    # One s 8 row of points (4, 4), (12, 4), (20, 4), (28, 4). gt 0 = (0, 0, 16, 8) centre
    # (8, 4); gt 1 = (8, 0, 32, 8) centre (20, 4); gt 2 = gt 1 (a duplicate). Point (12, 4):
    # gt 0 offset 0.5 → 0.903524, gt 1/2 offset 1 → 0.666436 → gt 0. Point (20, 4): only gts 1, 2,
    # G = 1 each → tie → lowest index 1. Point (28, 4): gt 1/2 → 1. Point (4, 4): gt 0.
    priors = grid([8], [(1, 4)])
    box1 = [8, 0, 32, 8]
    a = DWAssigner()(priors, [gt_instances([[0, 0, 16, 8], box1, box1], [0, 1, 1], (8, 32))], 2)
    assert a.matched_gt[0].tolist() == [0, 0, 1, 1]
    assert a.labels[0].tolist() == [0, 0, 1, 1]
    assert a.box_targets[0, 2].tolist() == box1
    assert len(a.pairs) == 2 + 3 + 3


def test_empty_images_one_point_bags_and_degenerate_boxes():
    # Image 0 has no gt; image 1: a 2×2 px gt around the point (12, 12) → a one-point bag
    # (no s 16 point lies strictly inside), a zero-width box (invalid) and a box between grid
    # points, (13, 13, 19, 19), that holds no point (s 8 points at 12 and 20, s 16 at 8 and
    # 24: an empty bag, no positive).
    priors = grid([8, 16], [(4, 4), (2, 2)])
    gts = [gt_instances([], [], (32, 32)), gt_instances([[11, 11, 13, 13], [20, 4, 20, 30], [13, 13, 19, 19]], [2, 0, 1], (32, 32))]
    a = DWAssigner()(priors, gts, 3)
    assert a.pairs.image.tolist() == [1] and a.pairs.gt.tolist() == [0]
    assert priors.points[a.pairs.prior].tolist() == [[12.0, 12.0]]
    assert a.pairs.values["center_prior"].tolist() == [1.0]  # at the centre: exp(0)
    assert (a.labels[0] == 3).all() and a.labels[1].tolist().count(2) == 1
    nobody = DWAssigner()(priors, [gt_instances([], [], (32, 32))] * 2, 3)
    assert len(nobody.pairs) == 0 and (nobody.matched_gt == -1).all() and nobody.pairs.num_gts == 0


def test_thousand_gts_match_the_dense_definition():
    # 1000 random boxes (some partly outside the image) on a 5-level grid: the sparse bags
    # are exactly the dense "strictly inside" pairs, with G from the dense offsets.
    g = torch.Generator().manual_seed(0)
    sizes = [(32, 40), (16, 20), (8, 10), (4, 5), (2, 3)]
    priors = grid([8, 16, 32, 64, 128], sizes)
    xy = torch.rand(1000, 2, generator=g) * 320 - 16
    wh = 2 + torch.rand(1000, 2, generator=g) ** 2 * 200
    boxes = torch.cat([xy, xy + wh], 1)
    a = DWAssigner()(priors, [gt_instances(boxes, torch.zeros(1000, dtype=torch.long), (256, 320))], 1)
    pts = priors.points[:, None]
    dense = ((pts > boxes[None, :, :2]) & (pts < boxes[None, :, 2:])).all(-1)  # (R, G)
    r, gi = dense.nonzero().unbind(1)
    assert set(zip(a.pairs.prior.tolist(), a.pairs.gt.tolist())) == set(zip(r.tolist(), gi.tolist()))
    centre = (boxes[:, :2] + boxes[:, 2:]) / 2
    expect = torch.exp(-(((priors.points[r] - centre[gi]) / priors.strides[r, None]) ** 2).sum(-1) / TWO_SIGMA2)
    got = dict(zip(zip(a.pairs.prior.tolist(), a.pairs.gt.tolist()), a.pairs.values["center_prior"].tolist()))
    assert [got[k] for k in zip(r.tolist(), gi.tolist())] == pytest.approx(expect.tolist(), abs=1e-6)
    key = a.pairs.gt * len(priors) + a.pairs.prior
    assert torch.equal(key, key.sort().values)  # sorted by (image, gt, prior)


@pytest.mark.parametrize("k", [1, 3, 9, 15])
def test_topk_bags_match_the_dense_definition(k):
    # Top-k bags enumerate only a window of k strides around each gt centre; on 1000 random
    # boxes (large, long and thin ones, some partly outside, duplicates) they must equal the
    # dense definition: per (gt, level), the k inside points nearest the centre, ties by prior index.
    g = torch.Generator().manual_seed(k)
    sizes = [(32, 40), (16, 20), (8, 10), (4, 5), (2, 3)]
    priors = grid([8, 16, 32, 64, 128], sizes)
    xy = torch.rand(1000, 2, generator=g) * 320 - 16
    wh = 2 + torch.rand(1000, 2, generator=g) ** 2 * 250
    wh[::7, 0] = 3 + torch.rand(143, generator=g) * 6  # thin columns: long runs of one grid column
    xy[::5] = torch.round(xy[::5] / 8) * 8  # centres and edges on grid lines: distance ties
    boxes = torch.cat([xy, xy + wh], 1)
    boxes[1::97] = boxes[0::97][: len(boxes[1::97])]  # duplicates
    a = DWAssigner(bag="topk", topk=k)(priors, [gt_instances(boxes, torch.zeros(1000, dtype=torch.long), (256, 320))], 1)
    pts = priors.points[:, None]
    inside = ((pts > boxes[None, :, :2]) & (pts < boxes[None, :, 2:])).all(-1)  # (R, G)
    centre = (boxes[:, :2] + boxes[:, 2:]) / 2
    dist2 = (((pts - centre[None]) / priors.strides[:, None, None]) ** 2).sum(-1)  # (R, G)
    expect = set()
    for level in range(len(sizes)):  # dense per level: rank by (distance, prior index)
        rows = (priors.levels == level).nonzero().squeeze(1)
        d = torch.where(inside[rows], dist2[rows], torch.full_like(dist2[rows], float("inf")))
        order = torch.sort(d, dim=0, stable=True).indices[:k]  # (≤ k, G)
        for gi in range(len(boxes)):
            expect |= {(int(rows[r]), gi) for r in order[:, gi].tolist() if torch.isfinite(d[r, gi])}
    assert set(zip(a.pairs.prior.tolist(), a.pairs.gt.tolist())) == expect


def test_bad_arguments_and_point_sets():
    with pytest.raises(ValueError, match="bag='center'"):
        DWAssigner(bag="center")
    with pytest.raises(ValueError, match="sigma=0"):
        DWAssigner(sigma=0)
    with pytest.raises(ValueError, match="hard_prior_threshold=1.5"):
        DWAssigner(hard_prior_threshold=1.5)
    priors = grid([8], [(2, 2)])
    with pytest.raises(ValueError, match=r"gt classes \[7\] outside \[0, 3\)"):
        DWAssigner()(priors, [gt_instances([[0, 0, 8, 8]], [7], (16, 16))], 3)
    # A point set (no grid) holds the same bags as the grid it was taken from.
    priors = grid([8, 16], [(4, 4), (2, 2)])
    free = Priors(priors.points, priors.anchors, priors.strides, priors.levels, priors.num_per_level)
    gts = [gt_instances([[4, 4, 28, 20], [1, 9, 30, 31]], [0, 1], (32, 32))]
    for bag in BAGS:
        on_grid, on_points = DWAssigner(bag=bag, topk=2)(priors, gts, 2), DWAssigner(bag=bag, topk=2)(free, gts, 2)
        assert pairs_of(on_grid, priors) == pairs_of(on_points, free) and len(on_grid.pairs) > 0
        assert torch.equal(on_grid.matched_gt, on_points.matched_gt)
