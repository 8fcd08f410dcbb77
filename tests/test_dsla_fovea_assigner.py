"""DSLA on FoveaBox (our design, see dsla_d2/assigners/dsla_fovea.py): static smooth
labels label_s = c · h_l(sqrt(w·h)) on FoveaBox's grid, hand-derived.

Grid as tests/test_fovea_assigner.py: strides 8..128, offset 0.5 (P3 x ∈ {4, 12, ...},
P4 {8, 24, ...}, P5 {16, 48, ...}, P6 {32, 96, ...}, P7 {64, ...}); 128-px images.

Relaxed FoveaBox ranges, κ = 0.2, G = (int(lo·0.8), int(hi·1.2)):
  P3 (1, 64)    → (int 0.8 = 0,    int 76.8 = 76)
  P4 (32, 128)  → (int 25.6 = 25,  int 153.6 = 153)
  P5 (64, 256)  → (int 51.2 = 51,  int 307.2 = 307)
  P6 (128, 512) → (int 102.4 = 102, int 614.4 = 614)
  P7 (256, 2048)→ (int 204.8 = 204, int 2457.6 = 2457)
"""
import math

import pytest
import torch

from dsla_d2.assigners.dsla import core_zone_mask
from dsla_d2.assigners.dsla import relaxation_score as relaxed_scale_score
from dsla_d2.assigners.dsla import relaxed_ranges as relaxed_bounds
from dsla_d2.assigners.dsla_fovea import DSLAFoveaAssigner
from dsla_d2.assigners.fovea import FOVEA_SCALE_RANGES
from dsla_d2.box_coders import FoveaLogBoxCoder
from dsla_d2.heads import FoveaBoxHead
from dsla_d2.losses import DenseDetectionLoss
from dsla_d2.meta_arch import DslaFoveaBox
from dsla_d2.priors import PriorGenerator
from dsla_d2.quality import QualityCoupling

from tiny import TwoLevelBackbone, gt_instances, make_inputs

STRIDES = [8, 16, 32, 64, 128]
GT_A = [10, 20, 90, 60]  # w 80, h 40, centre (50, 40), sqrt area sqrt(3200) = 56.568542


def priors_for(size=128):
    feats = [torch.zeros(1, 1, math.ceil(size / s), math.ceil(size / s)) for s in STRIDES]
    return PriorGenerator(STRIDES, offset=0.5)(feats)


def index(priors, level, x, y):
    hit = (priors.levels == level) & (priors.points == torch.tensor([float(x), float(y)])).all(1)
    return int(torch.nonzero(hit)[0])


def run(boxes, classes, size=128, **kwargs):
    priors = priors_for(size)
    a = DSLAFoveaAssigner(**kwargs)(priors, [gt_instances(boxes, classes, (size, size))], num_classes=10)
    return a, priors


def label_at(a, priors, level, x, y):
    return a.cls_scores[0, index(priors, level, x, y)].item()


# --------------------------------------------------------------------------- relaxation
def test_relaxed_bounds():
    assert relaxed_bounds(FOVEA_SCALE_RANGES, 0.2) == [(0, 76), (25, 153), (51, 307), (102, 614), (204, 2457)]
    assert relaxed_bounds(FOVEA_SCALE_RANGES, 0.0) == [(1, 64), (32, 128), (64, 256), (128, 512), (256, 2048)]


# h_l(m) per level P3..P7 (ramps: up (m − Glo)/(lo − Glo), down (Ghi − m)/(Ghi − hi)):
RELAXED_TABLE = [
    (0.5, [0.5, 0, 0, 0, 0]),  # P3: 0 ≤ 0.5 < 1 → (0.5 − 0)/(1 − 0)
    (1, [1, 0, 0, 0, 0]),
    (25, [1, 0, 0, 0, 0]),  # P4: m = Glo → 0
    (30, [1, 5 / 7, 0, 0, 0]),  # P4: (30 − 25)/(32 − 25)
    (56.568542, [1, 1, 5.568542 / 13, 0, 0]),  # gt A; P5: (56.568542 − 51)/13 = 0.428349
    (64, [1, 1, 1, 0, 0]),  # overlap point: in three ranges
    (70, [0.5, 1, 1, 0, 0]),  # P3: (76 − 70)/(76 − 64)
    (76, [0, 1, 1, 0, 0]),  # P3: m = Ghi → 0
    (140, [0, 13 / 25, 1, 1, 0]),  # P4: (153 − 140)/(153 − 128)
    (300, [0, 0, 7 / 51, 1, 1]),  # P5: (307 − 300)/(307 − 256)
    (600, [0, 0, 0, 14 / 102, 1]),  # P6: (614 − 600)/(614 − 512)
    (2100, [0, 0, 0, 0, 357 / 409]),  # P7: (2457 − 2100)/(2457 − 2048) = 0.872861
    (3000, [0, 0, 0, 0, 0]),
]


@pytest.mark.parametrize("m, expected", RELAXED_TABLE)
def test_relaxed_scale_score_table(m, expected):
    lo, hi = torch.tensor(FOVEA_SCALE_RANGES, dtype=torch.float64).T
    glo, ghi = torch.tensor(relaxed_bounds(FOVEA_SCALE_RANGES, 0.2), dtype=torch.float64).T
    h = relaxed_scale_score(torch.tensor(m, dtype=torch.float64), lo, hi, glo, ghi)
    assert h.tolist() == pytest.approx(expected, abs=1e-6)


@pytest.mark.parametrize(
    "m, expected", [(30, [1, 0, 0, 0, 0]), (64, [1, 1, 1, 0, 0]), (70, [0, 1, 1, 0, 0]), (2100, [0] * 5)]
)
def test_scale_score_without_relaxation_is_the_range_indicator(m, expected):
    lo, hi = torch.tensor(FOVEA_SCALE_RANGES, dtype=torch.float64).T
    assert relaxed_scale_score(torch.tensor(float(m), dtype=torch.float64), lo, hi, lo, hi).tolist() == expected


def test_core_zone_is_inclusive_and_uses_own_stride():
    # centre (64, 64); P4 (s 16) point (72, 72): |8| ≤ 8 → in; P3 (s 8) (72, 72) would
    # need |8| ≤ 4 → out; P6 (s 64) (32, 32): |32| ≤ 32 → in.
    pts = torch.tensor([[72.0, 72.0], [72.0, 72.0], [32.0, 32.0], [96.0, 40.0]])
    strides = torch.tensor([16.0, 8.0, 64.0, 64.0])
    m = core_zone_mask(pts, strides, torch.tensor([[48.0, 48, 80, 80]]))  # one box for all points
    assert m.tolist() == [True, False, True, True]


# --------------------------------------------------------------------------- labels
def test_gt_a_labels_default():
    a, p = run([GT_A], [4])
    # P3 (52, 44): |52 − 50| = 2 ≤ 4, |44 − 40| = 4 ≤ 4 → core zone, c = 1; h_P3 = 1 → 1.
    assert label_at(a, p, 0, 52, 44) == pytest.approx(1.0)
    # P3 (36, 36): l, t, r, b = 26, 16, 54, 24 → c = sqrt(26/54 · 16/24) = 0.566558.
    assert label_at(a, p, 0, 36, 36) == pytest.approx(0.566558, abs=1e-6)
    # P3 (20, 28): 10, 8, 70, 32 → c = sqrt(10/70 · 8/32) = sqrt(1/28) = 0.188982.
    assert label_at(a, p, 0, 20, 28) == pytest.approx(0.188982, abs=1e-6)
    # P4 (56, 40): |6| ≤ 8, |0| ≤ 8 → core; h_P4 = 1 → 1.
    assert label_at(a, p, 1, 56, 40) == pytest.approx(1.0)
    # P4 (24, 24): 14, 4, 66, 36 → c = sqrt(14/66 · 4/36) = 0.153522.
    assert label_at(a, p, 1, 24, 24) == pytest.approx(0.153522, abs=1e-6)
    # P5 (48, 48): |−2| ≤ 16, |8| ≤ 16 → core; h_P5(56.57) = 0.428349 (relaxed ramp).
    assert label_at(a, p, 2, 48, 48) == pytest.approx(0.428349, abs=1e-6)
    # P5 (16, 48): 6, 28, 74, 12 → c = sqrt(6/74 · 12/28) = 0.186411; × 0.428349 = 0.079849.
    assert label_at(a, p, 2, 16, 48) == pytest.approx(0.079849, abs=1e-6)
    # Positives = points strictly inside on P3..P5 (h_P6 = 0: 56.57 < Glo 102):
    # P3 x ∈ {12..84} (10) × y ∈ {28, 36, 44, 52} (4) = 40; P4 {24, 40, 56, 72, 88} ×
    # {24, 40, 56} = 15; P5 {16, 48, 80} × {48} = 3 → 58.
    assert int(a.pos_mask.sum()) == 58
    assert set(p.levels[a.pos_mask[0]].tolist()) == {0, 1, 2}
    # classification score = regression weight = extras label_s; targets are box A
    assert torch.equal(a.cls_scores, a.reg_weights) and torch.equal(a.cls_scores, a.extras["label_s"])
    assert (a.labels[a.pos_mask] == 4).all()
    assert torch.equal(a.box_targets[a.reg_mask], torch.tensor([GT_A], dtype=torch.float32).expand(58, 4))
    assert (a.cls_scores[~a.pos_mask] == 0).all()


def test_gt_a_switches():
    # core_zone off: P3 (52, 44): 42, 24, 38, 16 → c = sqrt(38/42 · 16/24) = 0.776643;
    # P4 (56, 40): 46, 20, 34, 20 → sqrt(34/46 · 1) = 0.859727.
    a, p = run([GT_A], [4], core_zone=False)
    assert label_at(a, p, 0, 52, 44) == pytest.approx(0.776643, abs=1e-6)
    assert label_at(a, p, 1, 56, 40) == pytest.approx(0.859727, abs=1e-6)
    # relaxation off: P5 is out of FoveaBox's range (56.57 < 64) → the 3 P5 points drop.
    a, p = run([GT_A], [4], relaxation=False)
    assert label_at(a, p, 2, 48, 48) == 0 and int(a.pos_mask.sum()) == 55
    assert label_at(a, p, 0, 36, 36) == pytest.approx(0.566558, abs=1e-6)
    # fovea_region: only FoveaBox's fovea (test_fovea_assigner: P3 x ∈ {36..60} × y ∈
    # {36, 44}, P4 (40, 40), (56, 40)); P5 now also in range: x1/s = 0.3125, w/(2s) = 1.25
    # → ceil(0.5625) = 1 .. floor(1.5625) = 1 (x = 48); y1/s = 0.625, h/(2s) = 0.625 →
    # ceil(0.5) = 1 .. floor(1.0) = 1 (y = 48, exactly on the inclusive bound) → 8+2+1.
    a, p = run([GT_A], [4], fovea_region=True)
    assert int(a.pos_mask.sum()) == 11
    assert label_at(a, p, 0, 20, 28) == 0
    assert label_at(a, p, 0, 36, 36) == pytest.approx(0.566558, abs=1e-6)
    assert label_at(a, p, 2, 48, 48) == pytest.approx(0.428349, abs=1e-6)
    # kappa 0.4: P5 bounds (int 38.4 = 38, ...) → h = (56.568542 − 38)/(64 − 38) = 0.714175
    a, p = run([GT_A], [4], kappa=0.4)
    assert label_at(a, p, 2, 48, 48) == pytest.approx(18.568542 / 26, abs=1e-6)


def test_small_boxes_same_as_fovea_cases():
    # (10,10,14,14): sqrt area 4: h_P3 = 1, h_P4 = 0 (4 < Glo 25). Only P3 (12, 12) is
    # strictly inside; l = t = r = b = 2 → c = 1 → one positive with label 1.
    a, p = run([[10, 10, 14, 14]], [2])
    assert torch.nonzero(a.pos_mask[0]).flatten().tolist() == [index(p, 0, 12, 12)]
    assert a.cls_scores[0].sum().item() == pytest.approx(1.0)
    # (13,13,17,17) and (0,0,2,2): no point strictly inside on any level → no positive.
    for box in ([13, 13, 17, 17], [0, 0, 2, 2]):
        a, _ = run([box], [2])
        assert not a.pos_mask.any()


@pytest.mark.parametrize("outer_first", [True, False])
def test_nested_boxes(outer_first):
    # O = (8,8,120,120): sqrt 112 → h_P3 = 0 (> 76), h_P4 = h_P5 = 1,
    #   h_P6 = (112 − 102)/(128 − 102) = 10/26 = 0.384615, h_P7 = 0 (< 204).
    # I = (40,40,88,88): sqrt 48 → h_P3 = h_P4 = 1, h_P5 = 0 (48 < 51).
    o, i = [8, 8, 120, 120], [40, 40, 88, 88]
    boxes, classes = ([o, i], [0, 1]) if outer_first else ([i, o], [1, 0])
    a, p = run(boxes, classes)
    lab = lambda l, x, y: int(a.labels[0, index(p, l, x, y)])  # noqa: E731
    # P4 (72, 72): core for both (|8| ≤ 8) → both 1: tie → the smaller I (FoveaBox's rule).
    assert lab(1, 72, 72) == 1 and label_at(a, p, 1, 72, 72) == pytest.approx(1.0)
    # P4 (56, 40): I has t = 0 (not strictly inside); O: 48, 32, 64, 80 →
    # sqrt(48/64 · 32/80) = sqrt(0.3) = 0.547723.
    assert lab(1, 56, 40) == 0 and label_at(a, p, 1, 56, 40) == pytest.approx(0.547723, abs=1e-6)
    # P6 (32, 32) etc.: |±32| ≤ 32 → core for O → 1 × 10/26.
    for x, y in ((32, 32), (96, 32), (32, 96), (96, 96)):
        assert lab(3, x, y) == 0 and label_at(a, p, 3, x, y) == pytest.approx(10 / 26, abs=1e-6)
    # P3 (60, 60): only I has h > 0 (|4| ≤ 4 → core) → 1.
    assert lab(0, 60, 60) == 1 and label_at(a, p, 0, 60, 60) == pytest.approx(1.0)


def test_ambiguity_highest_label_wins():
    # B = (0,0,100,100) cls 3 (sqrt 100), C = (40,40,120,120) cls 7 (sqrt 80).
    # P4 (56, 56): B core (|6| ≤ 8) → 1 · h_P4(100) = 1; C: 16, 16, 64, 64 → c = 0.25,
    #   h_P4(80) = 1 → 0.25. B wins although C is smaller (FCOS/FoveaBox would pick C).
    # P4 (88, 88): B 88, 88, 12, 12 → 12/88 = 0.136364; C core (|8| ≤ 8) → 1 → C.
    # P4 (104, 104): outside B; C 64, 64, 16, 16 → 0.25 → C.
    # P5 (48, 48): B core → 1; C 8, 8, 72, 72 → 1/9 → B.
    # P3: h_P3(100) = h_P3(80) = 0 (> 76) → no P3 positive.
    a, p = run([[0, 0, 100, 100], [40, 40, 120, 120]], [3, 7])
    cases = [((1, 56, 56), 3, 1.0, 0), ((1, 88, 88), 7, 1.0, 1), ((1, 104, 104), 7, 0.25, 1), ((2, 48, 48), 3, 1.0, 0)]
    for (l, x, y), cls, score, gt_index in cases:
        r = index(p, l, x, y)
        assert int(a.labels[0, r]) == cls and a.cls_scores[0, r].item() == pytest.approx(score, abs=1e-6)
        assert int(a.matched_gt[0, r]) == gt_index
    assert a.box_targets[0, index(p, 1, 56, 56)].tolist() == [0, 0, 100, 100]
    assert not a.pos_mask[0, p.levels == 0].any()


def test_ties_are_deterministic():
    # B1 = (32,32,96,96) cls 1 (64×64), B2 = (48,48,80,80) cls 2 (32×32), both centred at
    # 64. P4 (72, 72): core for both, h_P4(64) = h_P4(32) = 1 → labels tie at 1 → the
    # smaller B2 wins, whatever the gt order.
    b1, b2 = [32, 32, 96, 96], [48, 48, 80, 80]
    for boxes, classes in (([b1, b2], [1, 2]), ([b2, b1], [2, 1])):
        a, p = run(boxes, classes)
        assert int(a.labels[0, index(p, 1, 72, 72)]) == 2
    # identical boxes: equal label and area → the higher index (FoveaBox's stable paint order)
    a, p = run([[32, 32, 96, 96], [32, 32, 96, 96]], [1, 2])
    assert (a.labels[a.pos_mask] == 2).all() and (a.matched_gt[a.pos_mask] == 1).all()


# --------------------------------------------------------------------------- bad input
def test_empty_and_degenerate_inputs():
    priors = priors_for(64)
    gts = [
        gt_instances([], [], (64, 64)),
        gt_instances([[5, 5, 5, 30], [10, 10, 10, 10]], [0, 1], (64, 64)),
        gt_instances([[8, 8, 56, 56]], [3], (64, 64)),
    ]
    a = DSLAFoveaAssigner()(priors, gts, num_classes=4)
    assert not a.pos_mask[:2].any() and a.pos_mask[2].any()
    assert (a.extras["label_s"][:2] == 0).all() and (a.labels[:2] == 4).all()
    a = DSLAFoveaAssigner()(priors, [gt_instances([], [], (64, 64))], num_classes=4)
    assert not a.pos_mask.any() and a.extras["label_s"].shape == (1, len(priors))
    g = torch.Generator().manual_seed(1)
    xy = torch.rand(400, 2, generator=g) * 60
    boxes = torch.cat([xy, xy + torch.rand(400, 2, generator=g) * 80], 1)
    a = DSLAFoveaAssigner()(priors, [gt_instances(boxes, torch.zeros(400, dtype=torch.long), (64, 64))], num_classes=4)
    s = a.extras["label_s"]
    assert torch.isfinite(s).all() and (s >= 0).all() and (s <= 1).all() and a.pos_mask.any()


def test_invalid_arguments():
    with pytest.raises(ValueError):
        DSLAFoveaAssigner(kappa=1.0)
    with pytest.raises(ValueError):
        DSLAFoveaAssigner(sigma=0.0)


# --------------------------------------------------------------------------- end to end
def tiny_dsla_foveabox(box_loss):
    torch.manual_seed(0)
    return DslaFoveaBox(
        backbone=TwoLevelBackbone(),
        head=FoveaBoxHead(in_channels=16, num_classes=3, num_levels=2, channels=16, num_convs=1, norm=""),
        head_in_features=["p3", "p4"],
        prior_generator=PriorGenerator([8, 16], offset=0.5),
        box_coder=FoveaLogBoxCoder(base_edges=[16, 32]),
        assigner=DSLAFoveaAssigner(scale_ranges=[[1, 64], [32, 128]]),
        quality=QualityCoupling(branch=None, cls_target="iou_product"),
        loss=DenseDetectionLoss(
            cls_loss="qfl", cls_normalizer="sum_scores", cls_weight=2.0,
            box_loss=box_loss, box_normalizer="sum_weights",
        ),
        num_classes=3,
        pixel_std=[57.0, 57.0, 57.0],
    )


@pytest.mark.parametrize("box_loss", ["iou", "smooth_l1"])
def test_end_to_end_forward_backward(box_loss):
    model = tiny_dsla_foveabox(box_loss).train()
    batch = make_inputs([[[8, 8, 56, 56], [20, 4, 30, 60]], [], [[3, 3, 3, 9]]], [[0, 2], [], [1]])
    losses = model(batch)
    assert set(losses) == {"loss_cls", "loss_box_reg"}
    assert all(math.isfinite(v.item()) for v in losses.values()) and losses["loss_box_reg"].item() > 0
    sum(losses.values()).backward()
    assert model.head.box_reg.weight.grad.abs().sum() > 0 and model.head.cls_logits.weight.grad.abs().sum() > 0
    model.zero_grad()
    losses = model(make_inputs([[], []]))
    assert losses["loss_box_reg"].item() == 0 and math.isfinite(losses["loss_cls"].item())
    sum(losses.values()).backward()
