"""DSLA static smooth label assignment (Su, He et al. 2022, §3.1, eq. 2-7).

Every expected number is derived by hand in the comments, from the paper and the spec
(derived by hand from the paper's equations and the authors' code); none is read back from the code.

Conventions: COCO ranges (0,64), (64,128), (128,256), (256,512), (512,1e8), κ = 0.2, so
the relaxed bounds G = (int(lo·0.8), int(hi·1.2)) are
P3 (0, 76), P4 (51, 153), P5 (102, 307), P6 (204, 614), P7 (409, int(1.2e8)).
Strides 8, 16, 32, 64, 128; a point on level j is written "Pj (x, y)". Most tests build
the priors by hand (any point on any level), which the assigner allows.
"""
import pytest
import torch

import dsla_d2  # noqa: F401
from dsla_d2.assigners.base import ASSIGNER_REGISTRY, GTBatch
from dsla_d2.assigners.pairs import CandidatePairs
from dsla_d2.assigners.dsla import DSLAAssigner, relaxation_score, relaxed_ranges
from dsla_d2.assigners.fcos import FCOSAssigner
from dsla_d2.priors import PriorGenerator, Priors

from tiny import gt_instances

COCO_RANGES = [(0, 64), (64, 128), (128, 256), (256, 512), (512, 1e8)]
STRIDES = [8, 16, 32, 64, 128]
NC = 10  # number of classes in these tests; label NC = background


def make_priors(points_levels):
    """[(x, y, level), ...] -> Priors over the 5 COCO levels (sorted by level)."""
    pl = sorted(points_levels, key=lambda p: p[2])
    points = torch.tensor([[x, y] for x, y, _ in pl], dtype=torch.float32)
    levels = torch.tensor([lv for _, _, lv in pl], dtype=torch.long)
    strides = torch.tensor(STRIDES, dtype=torch.float32)[levels]
    half = (8 * strides / 2)[:, None]
    anchors = torch.cat([points - half, points + half], dim=1)
    num = [int((levels == i).sum()) for i in range(len(STRIDES))]
    return Priors(points, anchors, strides, levels, num)


def coco_grid(*sizes):
    """Priors on the 5 COCO levels, offset 0, from (H, W) per level."""
    return PriorGenerator(STRIDES, offset=0.0)([torch.zeros(1, 1, h, w) for h, w in sizes])


def assign(priors, boxes_per_image, classes_per_image, size=(1024, 1024), **kwargs):
    gts = [gt_instances(b, c, size) for b, c in zip(boxes_per_image, classes_per_image)]
    return DSLAAssigner(**kwargs)(priors, gts, num_classes=NC)


def label_s(points_levels, box, **kwargs):
    """label_s of each (x, y, level) point for a single gt (class 0), in input order."""
    pl = list(points_levels)
    priors = make_priors(pl)
    a = assign(priors, [[box]], [[0]], **kwargs)
    order = sorted(range(len(pl)), key=lambda i: pl[i][2])
    out = [0.0] * len(pl)
    for pos, i in enumerate(order):
        out[i] = a.extras["label_s"][0, pos].item()
    return out


def test_registered():
    assert ASSIGNER_REGISTRY.get("DSLAAssigner") is DSLAAssigner


def test_relaxed_ranges_integer_truncation():
    # Spec decision 2: G = (int(lo·(1−κ)), int(hi·(1+κ))):
    # 64·0.8 = 51.2 → 51; 64·1.2 = 76.8 → 76; 128·0.8 = 102.4 → 102; 128·1.2 = 153.6 → 153;
    # 256·0.8 = 204.8 → 204; 256·1.2 = 307.2 → 307; 512·0.8 = 409.6 → 409; 512·1.2 = 614.4 → 614.
    g = relaxed_ranges(COCO_RANGES, 0.2)
    assert g[:4] == [(0, 76), (51, 153), (102, 307), (204, 614)]
    assert g[4][0] == 409 and g[4][1] >= 1e8
    # κ = 0.1: 64·0.9 = 57.6 → 57, 64·1.1 = 70.4 → 70.
    assert relaxed_ranges([(64, 64)], 0.1) == [(57, 70)]
    with pytest.raises(ValueError):
        DSLAAssigner(kappa=1.0)


# Spec table h_j(m). Ramps (eq. 4 as the code): lower (m − Glo)/(lo − Glo), upper (Ghi − m)/(Ghi − hi).
# 52: P4 (52−51)/13 = 1/13. 60: P4 9/13. 70: P3 (76−70)/12 = 1/2. 120: P5 (120−102)/26 = 18/26.
# 140: P4 (153−140)/25 = 13/25. 300: P5 (307−300)/51 = 7/51. 600: P6 (614−600)/102 = 14/102.
H_TABLE = {
    42: [1, 0, 0, 0, 0],
    52: [1, 1 / 13, 0, 0, 0],
    60: [1, 9 / 13, 0, 0, 0],
    64: [1, 1, 0, 0, 0],
    70: [0.5, 1, 0, 0, 0],
    76: [0, 1, 0, 0, 0],
    120: [0, 1, 18 / 26, 0, 0],
    140: [0, 13 / 25, 1, 0, 0],
    300: [0, 0, 7 / 51, 1, 0],
    600: [0, 0, 0, 14 / 102, 1],
}


@pytest.mark.parametrize("m", sorted(H_TABLE))
def test_relaxation_score_table(m):
    g = relaxed_ranges(COCO_RANGES, 0.2)
    lo = torch.tensor([r[0] for r in COCO_RANGES], dtype=torch.float32)
    hi = torch.tensor([r[1] for r in COCO_RANGES], dtype=torch.float32)
    glo = torch.tensor([r[0] for r in g], dtype=torch.float32)
    ghi = torch.tensor([r[1] for r in g], dtype=torch.float32)
    h = relaxation_score(torch.full((5,), float(m)), lo, hi, glo, ghi)
    assert h.tolist() == pytest.approx(H_TABLE[m], abs=1e-6)


@pytest.mark.parametrize("m", sorted(H_TABLE))
def test_h_table_through_assigner(m):
    # A gt centred on the point (0, 0): (−m, −m, m, m) → l = t = r = b = m, the point is the
    # centre → core zone → centerness_s = 1, so label_s = h_j(m) on every level.
    pts = [(0, 0, lv) for lv in range(5)]
    assert label_s(pts, [-m, -m, m, m]) == pytest.approx(H_TABLE[m], abs=1e-6)


def test_gt_a_vectors():
    # Gt A = (10, 20, 90, 60), centre (50, 40).
    box = [10, 20, 90, 60]
    pts = [(48, 40, 0), (32, 32, 0), (80, 48, 0), (80, 48, 1), (48, 48, 1)]
    ls = label_s(pts, box)
    # P3 (48,40): l,t,r,b = 38,20,42,20; |48−50| = 2 ≤ 4, |40−40| = 0 ≤ 4 → core, c = 1;
    #   m = 42 ∈ [0,64] → h = 1 → 1.
    assert ls[0] == pytest.approx(1.0, abs=1e-6)
    # P3 (32,32): 22,12,58,28; c = sqrt(22/58 · 12/28) = sqrt(0.162562) = 0.403189; m = 58 → h = 1.
    assert ls[1] == pytest.approx(0.403189, abs=1e-6)
    # (80,48): 70,28,10,12; c = sqrt(10/70 · 12/28) = 0.247436; m = 70:
    #   P3 h = (76−70)/12 = 0.5 → 0.123718; P4 h = 1 → 0.247436.
    assert ls[2] == pytest.approx(0.123718, abs=1e-6)
    assert ls[3] == pytest.approx(0.247436, abs=1e-6)
    # P4 (48,48): |48−50| = 2 ≤ 8, |48−40| = 8 ≤ 8 (inclusive) → core zone, but
    #   38,28,42,12 → m = 42 < Glo = 51 → h = 0 → 0.
    assert ls[4] == 0.0


def test_gt_b_vectors_and_center_sampling():
    # Gt B = (0, 0, 100, 100), centre (50, 50).
    box = [0, 0, 100, 100]
    pts = [(48, 48, 0), (48, 48, 1), (64, 64, 2), (32, 48, 0)]
    ls = label_s(pts, box)
    # P3 (48,48): core (2 ≤ 4); m = 52 → P3 h = 1 → 1.0.
    assert ls[0] == pytest.approx(1.0, abs=1e-6)
    # P4 (48,48): core (2 ≤ 8); m = 52 → P4 h = (52−51)/13 → 0.076923.
    assert ls[1] == pytest.approx(1 / 13, abs=1e-6)
    # P5 (64,64): core (14 ≤ 16), m = 64 < Glo = 102 → 0.
    assert ls[2] == 0.0
    # P3 (32,48): 32,48,68,52 → m = 68, h = (76−68)/12 = 2/3; c = sqrt(32/68 · 48/52)
    #   = sqrt(0.434389) = 0.659082 → 0.439388.
    assert ls[3] == pytest.approx(0.439388, abs=1e-6)
    # Center sampling 1.5: P3 square half-side 12 around (50,50) → x ∈ (38, 62): 32 is out → 0;
    # (48,48) stays inside → 1.0 (core zone still applies).
    cs = label_s(pts, box, center_sampling_radius=1.5)
    assert cs[3] == 0.0
    assert cs[0] == pytest.approx(1.0, abs=1e-6)


def test_two_gt_ambiguity_highest_label_wins():
    # P3 (48,48): B = (0,0,100,100) class 3 → 1.0 (above);
    # C = (40,40,120,120) class 7, centre (80,80): 8,8,72,72 → c = sqrt(8/72 · 8/72) = 1/9,
    #   m = 72 → h = (76−72)/12 = 1/3 → 1/27 = 0.037037 (not core: |48−80| = 32 > 4).
    # → class 3 with target 1.0 and box B; class 7 is a negative there.
    priors = make_priors([(48, 48, 0)])
    a = assign(priors, [[[0, 0, 100, 100], [40, 40, 120, 120]]], [[3, 7]])
    assert a.matched_gt[0, 0].item() == 0
    assert a.labels[0, 0].item() == 3
    assert a.cls_scores[0, 0].item() == pytest.approx(1.0, abs=1e-6)
    assert a.reg_weights[0, 0].item() == pytest.approx(1.0, abs=1e-6)
    assert a.box_targets[0, 0].tolist() == [0, 0, 100, 100]
    # C alone gives 1/27 at that point (the value that lost).
    assert label_s([(48, 48, 0)], [40, 40, 120, 120]) == pytest.approx([1 / 27], abs=1e-6)
    # Where FCOS's minimum-area rule and DSLA's highest label disagree: P3 (50,50) in
    # G1 = (0,0,100,100) (class 3; core → 1.0, m = 50) and G2 = (44,30,100,90) (class 7,
    # area 3360 < 10000; l,t,r,b = 6,20,50,40 → m = 50 ∈ [0,64], centre (72,60) not core,
    # c = sqrt(6/50 · 20/40) = 0.244949). FCOS → G2 (smaller); DSLA → G1 (1.0 > 0.244949).
    priors = make_priors([(50, 50, 0)])
    boxes = [[0, 0, 100, 100], [44, 30, 100, 90]]
    f = FCOSAssigner(size_ranges=COCO_RANGES)(priors, [gt_instances(boxes, [3, 7])], NC)
    assert f.labels[0, 0].item() == 7
    d = assign(priors, [boxes], [[3, 7]])
    assert d.labels[0, 0].item() == 3 and d.cls_scores[0, 0].item() == pytest.approx(1.0)
    assert label_s([(50, 50, 0)], boxes[1]) == pytest.approx([0.244949], abs=1e-6)


def test_range_bounds_exact():
    # m exactly at lo / hi: inclusive → h = 1 on both neighbouring levels.
    #   m = 64: P3 1 (hi), P4 1 (lo). m = 128: P4 1, P5 1. m = 256: P5 1, P6 1. m = 512: P6 1, P7 1.
    # m exactly at a relaxed bound: the ramp is 0 there → not positive:
    #   m = 76 = Ghi(P3), m = 51 = Glo(P4), m = 153 = Ghi(P4), m = 102 = Glo(P5),
    #   m = 409 = Glo(P7), m = 614 = Ghi(P6).
    # One pixel inside the relaxed bound: m = 75 → P3 (76−75)/12 = 1/12; m = 103 → P5 1/26;
    #   m = 410 → P7 1/103.
    cases = {
        64: [1, 1, 0, 0, 0],
        128: [0, 1, 1, 0, 0],
        256: [0, 0, 1, 1, 0],
        512: [0, 0, 0, 1, 1],
        76: [0, 1, 0, 0, 0],
        51: [1, 0, 0, 0, 0],
        153: [0, 0, 1, 0, 0],
        102: [0, 1, 0, 0, 0],
        409: [0, 0, 0, 1, 0],
        614: [0, 0, 0, 0, 1],
        75: [1 / 12, 1, 0, 0, 0],
        103: [0, 1, 1 / 26, 0, 0],
        410: [0, 0, 0, 1, 1 / 103],
    }
    pts = [(0, 0, lv) for lv in range(5)]
    priors = make_priors(pts)
    boxes = [[-m, -m, m, m] for m in cases]
    # One image per m, batched: checks the (N, R, G) vectorisation as well.
    a = assign(priors, [[b] for b in boxes], [[0]] * len(boxes))
    for n, m in enumerate(cases):
        assert a.extras["label_s"][n].tolist() == pytest.approx(cases[m], abs=1e-6), m
        # positive iff label_s > 0
        assert (a.matched_gt[n] >= 0).tolist() == [v > 0 for v in cases[m]], m


def test_no_relaxation_and_kappa_zero():
    # Without relaxation h = 1 iff lo ≤ m ≤ hi: m = 70 → P3 0, P4 1; m = 64 → P3 1, P4 1;
    # m = 52 → P3 1 only. κ = 0 gives G = ranges, so the same values.
    pts = [(0, 0, lv) for lv in range(5)]
    for kwargs in ({"relaxation": False}, {"kappa": 0.0}):
        assert label_s(pts, [-70, -70, 70, 70], **kwargs) == [0, 1, 0, 0, 0]
        assert label_s(pts, [-64, -64, 64, 64], **kwargs) == [1, 1, 0, 0, 0]
        assert label_s(pts, [-52, -52, 52, 52], **kwargs) == [1, 0, 0, 0, 0]
    # And on a real grid with several gts, κ = 0 equals relaxation off exactly.
    priors = coco_grid((16, 16), (8, 8), (4, 4), (2, 2), (1, 1))
    gts = [gt_instances([[3, 5, 90, 70], [20, 10, 128, 128], [60, 60, 70, 75]], [0, 1, 2], (128, 128))]
    a = DSLAAssigner(kappa=0.0)(priors, gts, NC)
    b = DSLAAssigner(relaxation=False)(priors, gts, NC)
    assert torch.equal(a.extras["label_s"], b.extras["label_s"])
    assert torch.equal(a.matched_gt, b.matched_gt)


def test_core_zone_edge_inclusive():
    # Gt B = (0,0,100,100), centre (50,50), P3 (s = 8 → half-side 4):
    # (54,50): |4| ≤ 4 → core → c = 1; m = 54 → h = 1 → 1.
    # (55,50): outside the core → c = sqrt(45/55 · 50/50) = sqrt(0.818182) = 0.904534; m = 55.
    # (50,46): |50−46| = 4 → core → 1.
    # Without the core zone, (54,50): c = sqrt(46/54) = 0.922958.
    box = [0, 0, 100, 100]
    pts = [(54, 50, 0), (55, 50, 0), (50, 46, 0)]
    assert label_s(pts, box) == pytest.approx([1.0, 0.904534, 1.0], abs=1e-6)
    assert label_s(pts[:1], box, core_zone=False) == pytest.approx([0.922958], abs=1e-6)
    # The zone's side is the point's own level stride: (58,50) on P4 (half 8) is core
    # (m = 58 → P4 h = (58−51)/13 = 7/13), on P3 it is not
    # (c = sqrt(42/58) = 0.850963, h = 1).
    ls = label_s([(58, 50, 1), (58, 50, 0)], box)
    assert ls == pytest.approx([7 / 13, 0.850963], abs=1e-6)


def test_gt_smaller_than_one_stride():
    # Points at (j·8, i·8). Gt (2,2,6,6) (4×4) contains no grid point strictly → no
    # positive at all; nothing crashes.
    grid = coco_grid((4, 4), (2, 2), (1, 1), (1, 1), (1, 1))
    a = DSLAAssigner()(grid, [gt_instances([[2, 2, 6, 6]], [1], (32, 32))], NC)
    assert not a.pos_mask.any()
    assert (a.labels == NC).all()
    # Gt (6,5,11,10) (5×5), centre (8.5, 7.5), contains only P3 (8,8): l,t,r,b = 2,3,3,2.
    #   Core: |8−8.5| = 0.5 ≤ 4, |8−7.5| = 0.5 ≤ 4 → c = 1; m = 3 → h = 1 → label_s = 1.
    #   Without core zone: c = sqrt(2/3 · 2/3) = 2/3.
    box = [6, 5, 11, 10]
    assert label_s([(8, 8, 0)], box) == pytest.approx([1.0], abs=1e-6)
    assert label_s([(8, 8, 0)], box, core_zone=False) == pytest.approx([2 / 3], abs=1e-6)
    # P4 (16, 0): inside the unclipped core square (|16−8.5| = 7.5 ≤ 8, |0−7.5| = 7.5 ≤ 8)
    # but outside the box (eq. 5 clips the zone to the box) → 0.
    assert label_s([(16, 0, 1)], box) == [0.0]


def test_same_class_overlap_highest_label_picks_box():
    # G1 = (0,0,100,100), G2 = (40,40,120,120), both class 2.
    # P3 (48,48): G1 1.0 (core, m 52); G2 1/27 → G1.
    # P3 (80,80): G1 80,80,20,20 → m = 80 > 76 → 0; G2 centre (80,80) → core, m = 40 → 1 → G2.
    # P4 (80,80): G1 c = sqrt(20/80 · 20/80) = 0.25, m = 80 → P4 h = 1 → 0.25;
    #   G2 m = 40 < 51 → 0 → G1 with 0.25.
    pts = [(48, 48, 0), (80, 80, 0), (80, 80, 1)]
    a = assign(make_priors(pts), [[[0, 0, 100, 100], [40, 40, 120, 120]]], [[2, 2]])
    assert a.matched_gt[0].tolist() == [0, 1, 0]
    assert a.labels[0].tolist() == [2, 2, 2]
    assert a.cls_scores[0].tolist() == pytest.approx([1.0, 1.0, 0.25], abs=1e-6)
    assert a.box_targets[0, 1].tolist() == [40, 40, 120, 120]
    assert a.box_targets[0, 2].tolist() == [0, 0, 100, 100]


def test_tie_break_area_then_index():
    # P3 (50,50) is the centre of both G1 = (0,0,100,100) and G2 = (20,20,80,80): core → c = 1;
    # m = 50 and 30 → h = 1 → tie at 1.0 → the smaller area wins: G2 (index 1).
    a = assign(make_priors([(50, 50, 0)]), [[[0, 0, 100, 100], [20, 20, 80, 80]]], [[4, 5]])
    assert a.matched_gt[0, 0].item() == 1 and a.labels[0, 0].item() == 5
    # Identical boxes of different classes: equal label and area → the lower index wins.
    a = assign(make_priors([(50, 50, 0)]), [[[0, 0, 100, 100], [0, 0, 100, 100]]], [[6, 5]])
    assert a.matched_gt[0, 0].item() == 0 and a.labels[0, 0].item() == 6


def test_empty_batches_and_degenerate_boxes():
    grid = coco_grid((8, 8), (4, 4), (2, 2), (1, 1), (1, 1))
    r = len(grid)
    # No gts anywhere: G = 0.
    a = DSLAAssigner()(grid, [gt_instances(torch.zeros(0, 4), [], (64, 64))] * 2, NC)
    assert a.labels.shape == (2, r) and (a.labels == NC).all()
    assert (a.matched_gt == -1).all() and not a.reg_mask.any()
    for t in (a.cls_scores, a.reg_weights, a.box_targets, a.extras["label_s"]):
        assert torch.isfinite(t).all() and (t == 0).all()
    # One empty image next to a non-empty one: the empty one gets only padding rows (invalid)
    # → no positives; the other is assigned exactly as alone.
    full = gt_instances([[0, 0, 40, 30], [10, 12, 60, 62]], [1, 2], (64, 64))
    empty = gt_instances(torch.zeros(0, 4), [], (64, 64))
    both = DSLAAssigner()(grid, [empty, full], NC)
    alone = DSLAAssigner()(grid, [full], NC)
    assert not both.pos_mask[0].any() and (both.labels[0] == NC).all()
    assert alone.pos_mask.any()
    assert torch.equal(both.matched_gt[1], alone.matched_gt[0])
    assert torch.equal(both.extras["label_s"][1], alone.extras["label_s"][0])
    # Degenerate (zero-width) and NaN boxes are invalid → never matched, no NaN anywhere.
    bad = gt_instances([[10, 10, 10, 40], [float("nan"), 0, 5, 5], [0, 0, 40, 30]], [1, 2, 3], (64, 64))
    a = DSLAAssigner()(grid, [bad], NC)
    assert set(a.matched_gt[a.pos_mask].tolist()) == {2}
    assert torch.isfinite(a.cls_scores).all() and torch.isfinite(a.box_targets).all()


def test_many_boxes_vectorised_and_bounded():
    # 2 images × 300 random boxes on a 128-px grid: labels within [0, 1], background where
    # unmatched, the matched gt has the row's maximum label_s (recomputed per gt).
    g = torch.Generator().manual_seed(0)
    xy = torch.rand(2, 300, 2, generator=g) * 100
    wh = torch.rand(2, 300, 2, generator=g) * 120 + 1
    boxes = torch.cat([xy, xy + wh], dim=-1)
    gts = [gt_instances(boxes[i], torch.randint(0, NC, (300,), generator=g), (128, 128)) for i in range(2)]
    grid = coco_grid((16, 16), (8, 8), (4, 4), (2, 2), (1, 1))
    asg = DSLAAssigner()
    a = asg(grid, gts, NC)
    ls = a.extras["label_s"]
    assert ((ls >= 0) & (ls <= 1)).all()
    assert torch.equal(a.pos_mask, ls > 0)
    # label_s of every (image, prior, gt) — all 2 × R × 300 pairs — row maximum
    gtb = GTBatch.from_instances(gts)
    n, r, g_ = 2, len(grid), 300
    image, prior, gt_idx = torch.meshgrid(torch.arange(n), torch.arange(r), torch.arange(g_), indexing="ij")
    every = CandidatePairs(image.flatten(), prior.flatten(), gt_idx.flatten(), g_)
    full, _, _ = asg.static_labels(grid, gtb, every)
    assert torch.allclose(ls, full.view(n, r, g_).max(dim=-1).values)


def test_continuity_across_range_boundary():
    # A line of P3 locations x = 60 … 80 (1 px apart) at y = 60 through the centre of
    # G = (0, 0, 120, 120): m = max(x, 120 − x) = x crosses P3's hi = 64.
    # FCOS: label 1 for m ≤ 64, 0 after → a jump of exactly 1 between x = 64 and 65.
    # DSLA (core zone off): label = c·h with c = sqrt((120−x)/x), h = 1 up to 64, then
    #   (76 − x)/12. |Δ(c·h)| ≤ c·|Δh| + h·|Δc| ≤ 1/12 + max|dc/dx|, and
    #   |dc/dx| = 60/(x²·c) ≤ 60/(64²·0.935) = 0.0157 on x ∈ [60, 76] → every step < 0.1
    #   (the largest, x = 64 → 65: 0.935414 − 0.843210 = 0.092204).
    # With the core zone: x = 64 is still core (|64−60| = 4 ≤ 4) → 1; x = 65: c = sqrt(55/65)
    #   = 0.919866, h = 11/12 → 0.843210 → one step of 0.156790; every other step < 0.1.
    pts = [(float(x), 60.0, 0) for x in range(60, 81)]
    priors = make_priors(pts)
    gt = [gt_instances([[0, 0, 120, 120]], [0], (128, 128))]
    fcos = FCOSAssigner(size_ranges=COCO_RANGES)(priors, gt, NC)
    f = fcos.pos_mask[0].float()
    df = (f[1:] - f[:-1]).abs()
    assert df.max().item() == 1.0 and f[4].item() == 1 and f[5].item() == 0
    for core, bound in ((False, 0.1), (True, 0.157)):
        d = DSLAAssigner(size_ranges=COCO_RANGES, core_zone=core)(priors, gt, NC).extras["label_s"][0]
        steps = (d[1:] - d[:-1]).abs()
        assert steps.max().item() < bound, (core, steps.max().item())
        assert d[-1].item() == 0.0  # x = 80 → m = 80 > 76
    d = DSLAAssigner(size_ranges=COCO_RANGES)(priors, gt, NC).extras["label_s"][0]
    assert d[4].item() == pytest.approx(1.0) and d[5].item() == pytest.approx(0.843210, abs=1e-5)


def test_grid_offset_zero_points():
    # Spec decision 3: DSLA's point (i, j) at stride s is (j·s, i·s).
    p = PriorGenerator([8, 16], offset=0.0)([torch.zeros(1, 1, 2, 3), torch.zeros(1, 1, 1, 2)])
    assert p.points.tolist() == [[0, 0], [8, 0], [16, 0], [0, 8], [8, 8], [16, 8], [0, 0], [16, 0]]
