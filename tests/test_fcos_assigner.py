"""FCOS assigner (Tian et al. 2019, §3.1-3.3) on hand-worked grids.

Grid used below: two levels, strides 8 and 16, a 32×32 image, offset 0.5, so
level 0 points are x, y ∈ {4, 12, 20, 28} (prior index 4·i + j) and level 1 points are
x, y ∈ {8, 24} (indices 16 + 2·i + j). Size ranges [[0, 12], [12, 1e8]].
"""

import pytest
import torch

from dsla_d2.assigners import FCOSAssigner
from dsla_d2.priors import PriorGenerator

from tiny import gt_instances


def priors_32():
    feats = [torch.zeros(1, 1, 4, 4), torch.zeros(1, 1, 2, 2)]
    return PriorGenerator([8, 16], offset=0.5)(feats)


def test_prior_points_follow_offset():
    p = priors_32()
    assert p.points[:4].tolist() == [[4, 4], [12, 4], [20, 4], [28, 4]]
    assert p.points[16:].tolist() == [[8, 8], [24, 8], [8, 24], [24, 24]]
    assert p.strides.tolist() == [8.0] * 16 + [16.0] * 4
    corner = PriorGenerator([8, 16], offset=0.0)([torch.zeros(1, 1, 4, 4), torch.zeros(1, 1, 2, 2)])
    assert corner.points[:2].tolist() == [[0, 0], [8, 0]]  # DSLA: (j·s, i·s)


def test_ranges_min_area_and_centerness():
    # A = (0,0,32,32) cls 0 (area 1024); B = (2,2,14,14) cls 1 (area 144);
    # C = (0,0,20,20) cls 2 (area 400).
    gt = gt_instances([[0, 0, 32, 32], [2, 2, 14, 14], [0, 0, 20, 20]], [0, 1, 2], (32, 32))
    a = FCOSAssigner(size_ranges=[[0, 12], [12, 1e8]])(priors_32(), [gt], num_classes=3)
    m = a.matched_gt[0].tolist()
    # Level 0:
    # (4,4):  B l,t,r,b = 2,2,10,10 → m = 10 ≤ 12 → B. C: m = 16 > 12; A: m = 28.
    # (12,4): B 10,2,2,10 → m 10 → B.   (4,12), (12,12) likewise B.
    # (12,12): C 12,12,8,8 → m = 12 ≤ 12 (inclusive) also a candidate; min area → B.
    # (20,4): x = 20 = C's x2 → r = 0, not strictly inside; A m = 28 → none.
    expected_l0 = [1, 1, -1, -1, 1, 1, -1, -1] + [-1] * 8
    assert m[:16] == expected_l0
    # Level 1: (8,8): A (m 24) and C (8,8,12,12 → m = 12 ≥ 12) → C by min area.
    # (24,8), (8,24), (24,24): only A (C does not contain them).
    assert m[16:] == [2, 0, 0, 0]
    assert a.labels[0].tolist() == [1, 1, 3, 3, 1, 1, 3, 3] + [3] * 8 + [2, 0, 0, 0]
    assert a.box_targets[0, 16].tolist() == [0, 0, 20, 20]
    # Centerness (FCOS eq. 3): B at (4,4): sqrt(2/10 · 2/10) = 0.2;
    # C at (8,8): sqrt(8/12 · 8/12) = 2/3; A at (24,8): l,t,r,b = 24,8,8,24 → 1/3.
    w = a.reg_weights[0]
    assert w[0].item() == pytest.approx(0.2, abs=1e-6)
    assert w[16].item() == pytest.approx(2 / 3, abs=1e-6)
    assert w[17].item() == pytest.approx(1 / 3, abs=1e-6)
    assert w[2].item() == 0 and not a.reg_mask[0, 2]


def test_uniform_regression_weight():
    gt = gt_instances([[2, 2, 14, 14]], [1], (32, 32))
    a = FCOSAssigner(size_ranges=[[0, 12], [12, 1e8]], regression_weight="uniform")(priors_32(), [gt], 3)
    assert a.reg_weights[0][a.reg_mask[0]].tolist() == [1.0, 1.0, 1.0, 1.0]


def test_center_sampling_radius():
    # One level, stride 8, 64×64 image: points 4, 12, ..., 60. D = (0,0,64,64), centre 32.
    # Radius 1.5 → half side 12 → open interval (20, 44) → x, y ∈ {28, 36}: 4 positives.
    # Without it every point is inside (smallest distance 4 > 0): 64 positives.
    priors = PriorGenerator([8], offset=0.5)([torch.zeros(1, 1, 8, 8)])
    gt = gt_instances([[0, 0, 64, 64]], [0])
    cs = FCOSAssigner(size_ranges=[[0, 1e8]], center_sampling_radius=1.5)(priors, [gt], 1)
    pos = priors.points[cs.pos_mask[0]]
    assert sorted(pos.tolist()) == [[28, 28], [28, 36], [36, 28], [36, 36]]
    plain = FCOSAssigner(size_ranges=[[0, 1e8]])(priors, [gt], 1)
    assert int(plain.pos_mask.sum()) == 64
    # Clipping to the box: a 10-px box E = (0,0,10,10) (centre 5): square (−7, 17) ∩ (0, 10)
    # → only the point (4, 4) qualifies.
    gt_e = gt_instances([[0, 0, 10, 10]], [0])
    e = FCOSAssigner(size_ranges=[[0, 1e8]], center_sampling_radius=1.5)(priors, [gt_e], 1)
    assert priors.points[e.pos_mask[0]].tolist() == [[4, 4]]


def test_empty_degenerate_and_out_of_image():
    priors = priors_32()
    empty = gt_instances(torch.zeros(0, 4), [], (32, 32))
    # degenerate (zero width) and non-finite boxes never match; a box sticking out of the
    # image is a normal gt: (4,4) has l,t,r,b = 14,14,6,6 w.r.t. (-10,-10,10,10) → m = 14 on
    # level 1's range? No: it is a level-0 point (range [0,12]) → not assigned; (8,8) on
    # level 1: 18,18,2,2 → m = 18 ∈ [12, ∞) → assigned.
    odd = gt_instances([[5, 5, 5, 10], [float("nan"), 0, 4, 4], [-10, -10, 10, 10]], [0, 1, 2], (32, 32))
    a = FCOSAssigner(size_ranges=[[0, 12], [12, 1e8]])(priors, [empty, odd], num_classes=3)
    assert (a.matched_gt[0] == -1).all() and (a.labels[0] == 3).all()
    assert a.matched_gt[1].tolist().count(0) == 0 and a.matched_gt[1].tolist().count(1) == 0
    assert a.matched_gt[1, 16].item() == 2
    for t in (a.cls_scores, a.reg_weights, a.box_targets):
        assert torch.isfinite(t).all()
    none = FCOSAssigner()(PriorGenerator([8, 16, 32, 64, 128])([torch.zeros(1, 1, s, s) for s in (4, 2, 1, 1, 1)]), [empty], 3)
    assert not none.pos_mask.any()


def test_thousand_boxes():
    g = torch.Generator().manual_seed(0)
    xy = torch.rand(1000, 2, generator=g) * 200
    wh = torch.rand(1000, 2, generator=g) * 50 + 1
    boxes = torch.cat([xy, xy + wh], dim=1)
    priors = PriorGenerator([8, 16, 32, 64, 128])([torch.zeros(1, 1, s, s) for s in (32, 16, 8, 4, 2)])
    a = FCOSAssigner()(priors, [gt_instances(boxes, torch.zeros(1000))], 1)
    assert a.pos_mask.any()
    # every positive's target contains its point (strictly)
    p = priors.points[a.pos_mask[0]]
    t = a.box_targets[0][a.pos_mask[0]]
    assert ((p > t[:, :2]) & (p < t[:, 2:])).all()
    # and, checked by brute force on a sample, it is the smallest-area gt among those that
    # contain the point strictly and whose max distance falls in the point's level range
    ranges = torch.tensor([[0, 64], [64, 128], [128, 256], [256, 512], [512, 1e8]])
    idx = a.pos_mask[0].nonzero()[:, 0]
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    for r in idx[:: max(1, len(idx) // 40)].tolist():
        x, y = priors.points[r].tolist()
        lo, hi = ranges[priors.levels[r]].tolist()
        ok = []
        for k, (x1, y1, x2, y2) in enumerate(boxes.tolist()):
            d = (x - x1, y - y1, x2 - x, y2 - y)
            if min(d) > 0 and lo <= max(d) <= hi:
                ok.append(k)
        best = min(ok, key=lambda k: (areas[k].item(), k))
        assert a.matched_gt[0, r].item() == best
