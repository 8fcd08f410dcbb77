"""FoveaBox assigner (Kong et al., IEEE TIP 2020, §3.2-3.3; mmdetection's FoveaHead) and
its log-space box coder, on hand-worked grids.

Grid: strides 8, 16, 32, 64, 128 (P3-P7), offset 0.5, so a point in column j of a level
of stride s sits at x = (j + 0.5)·s: P3 x ∈ {4, 12, 20, ...}, P4 {8, 24, 40, 56, ...},
P5 {16, 48, 80, ...}, P6 {32, 96, ...}, P7 {64, ...}.

Fovea bounds (σ = 0.4), feature coordinates of the level:
    left = ceil(x1/s + 0.6·w/(2s) − 0.5), right = floor(x1/s + 1.4·w/(2s) − 0.5)
(likewise top/bottom); equivalently the pixel interval [cx − 0.2w, cx + 0.2w].
Scale ranges of sqrt(w·h): (1,64), (32,128), (64,256), (128,512), (256,2048), inclusive.
"""
import math

import pytest
import torch

from dsla_d2.assigners.base import GTBatch
from dsla_d2.assigners.fovea import FoveaAssigner, fovea_mask, paint_order_match
from dsla_d2.assigners.pairs import CandidatePairs
from dsla_d2.box_coders import FoveaLogBoxCoder
from dsla_d2.heads import FoveaBoxHead
from dsla_d2.losses import DenseDetectionLoss
from dsla_d2.meta_arch import DslaFoveaBox
from dsla_d2.priors import PriorGenerator
from dsla_d2.quality import QualityCoupling

from tiny import TwoLevelBackbone, gt_instances, make_inputs

STRIDES = [8, 16, 32, 64, 128]


def priors_for(size):
    feats = [torch.zeros(1, 1, math.ceil(size / s), math.ceil(size / s)) for s in STRIDES]
    return PriorGenerator(STRIDES, offset=0.5)(feats)


def positives(assignment, priors, image=0):
    """{(level, x, y): class} of the positives of one image."""
    out = {}
    for r in torch.nonzero(assignment.pos_mask[image]).flatten().tolist():
        x, y = priors.points[r].tolist()
        out[(int(priors.levels[r]), x, y)] = int(assignment.labels[image, r])
    return out


def assign(boxes, classes, size=128, **kwargs):
    priors = priors_for(size)
    gts = [gt_instances(b, c, (size, size)) for b, c in zip(boxes, classes)]
    return FoveaAssigner(**kwargs)(priors, gts, num_classes=10), priors


def grid(level, xs, ys, cls):
    return {(level, float(x), float(y)): cls for x in xs for y in ys}


# --------------------------------------------------------------------------- fovea area
def test_fovea_bounds_hand_computed_box():
    # Gt A = (10, 20, 90, 60): w = 80, h = 40, sqrt(w·h) = sqrt(3200) = 56.57 → P3 (1..64)
    # and P4 (32..128), not P5 (56.57 < 64).
    # P3 (s 8): x1/s = 1.25, w/(2s) = 5 → left = ceil(1.25 + 3 − 0.5) = ceil(3.75) = 4,
    #   right = floor(1.25 + 7 − 0.5) = floor(7.75) = 7 → columns 4..7, x = 36, 44, 52, 60
    #   (pixel check: [50 − 16, 50 + 16] = [34, 66]).
    #   y1/s = 2.5, h/(2s) = 2.5 → top = ceil(2.5 + 1.5 − 0.5) = ceil(3.5) = 4,
    #   bottom = floor(2.5 + 3.5 − 0.5) = floor(5.5) = 5 → rows 4, 5, y = 36, 44.
    # P4 (s 16): x1/s = 0.625, w/(2s) = 2.5 → ceil(1.625) = 2 .. floor(3.625) = 3 → x = 40, 56;
    #   y1/s = 1.25, h/(2s) = 1.25 → ceil(1.5) = 2 .. floor(2.5) = 2 → y = 40.
    a, priors = assign([[[10, 20, 90, 60]]], [[4]])
    expected = grid(0, [36, 44, 52, 60], [36, 44], 4)
    expected.update(grid(1, [40, 56], [40], 4))
    assert positives(a, priors) == expected
    assert a.cls_scores[0].sum().item() == 10 and a.reg_weights[0].sum().item() == 10
    pos = a.reg_mask[0]
    assert torch.equal(a.box_targets[0, pos], torch.tensor([[10.0, 20, 90, 60]]).expand(10, 4))
    assert (a.box_targets[0, ~pos] == 0).all() and (a.labels[0, ~pos] == 10).all()


def test_small_box_single_point_and_empty_fovea():
    # (10,10,14,14): w = h = 4 < stride 8, sqrt area 4 → P3 only. x1/s = 1.25,
    #   w/(2s) = 0.25 → left = ceil(1.25 + 0.15 − 0.5) = ceil(0.9) = 1,
    #   right = floor(1.25 + 0.35 − 0.5) = floor(1.1) = 1 → column 1 (x = 12), row 1.
    a, priors = assign([[[10, 10, 14, 14]]], [[2]])
    assert positives(a, priors) == {(0, 12.0, 12.0): 2}
    # (13,13,17,17): x1/s = 1.625 → left = ceil(1.275) = 2 > right = floor(1.475) = 1:
    #   empty fovea on its only level (pixel interval [14.2, 15.8] holds no x = 4 + 8j).
    a, priors = assign([[[13, 13, 17, 17]]], [[2]])
    assert positives(a, priors) == {}
    assert not a.reg_mask.any() and (a.labels == 10).all()


def test_empty_fovea_at_border_is_not_clamped():
    # (0,0,2,2) on P3: left = ceil(0.075 − 0.5) = ceil(−0.425) = 0, right =
    # floor(0.175 − 0.5) = floor(−0.325) = −1 → empty. mmdetection clamps right to 0 and
    # would paint column 0; the spec (and we) give no positive.
    a, priors = assign([[[0, 0, 2, 2]]], [[1]])
    assert positives(a, priors) == {}
    # Bottom/right: (125,125,127,127) in a 128-px image, P3 has columns 0..15 (x = 4 + 8j,
    # last x = 124); sqrt area 2 → P3 only. x1/s = 15.625, w/(2s) = 0.125 → left =
    # ceil(15.625 + 0.075 − 0.5) = ceil(15.2) = 16, right = floor(15.625 + 0.175 − 0.5) =
    # floor(15.3) = 15 → empty (likewise the rows). mmdetection clamps left to 15 and would
    # paint (124, 124); we give no positive.
    a, priors = assign([[[125, 125, 127, 127]]], [[1]])
    assert positives(a, priors) == {}


def test_box_in_range_with_empty_fovea_on_one_level():
    # (0,0,64,64): sqrt area 64 → P3, P4, P5 (all inclusive).
    # P3: x1/s = 0, w/(2s) = 4 → ceil(2.4 − 0.5) = 2 .. floor(5.6 − 0.5) = 5 → 4×4 points.
    # P4: w/(2s) = 2 → ceil(0.7) = 1 .. floor(2.3) = 2 → 2×2 points.
    # P5: w/(2s) = 1 → ceil(0.1) = 1 > floor(0.9) = 0 → empty (pixel [19.2, 44.8] holds
    #   neither 16 nor 48).
    a, priors = assign([[[0, 0, 64, 64]]], [[0]])
    expected = grid(0, [20, 28, 36, 44], [20, 28, 36, 44], 0)
    expected.update(grid(1, [24, 40], [24, 40], 0))
    assert positives(a, priors) == expected


def test_fovea_mask_matches_pixel_interval():
    # Equivalent pixel form |x − cx| ≤ σw/2 and |y − cy| ≤ σh/2 (j integer), checked on a
    # spread of boxes whose bounds do not land on integers.
    priors = priors_for(128)
    g = torch.Generator().manual_seed(0)
    xy = torch.rand(1, 40, 2, generator=g) * 100
    boxes = torch.cat([xy, xy + 1 + torch.rand(1, 40, 2, generator=g) * 60], -1)
    # every (point, box) pair: (R, 1, ·) against (1, 40, ·)
    mask = fovea_mask(priors.points[:, None], priors.strides[:, None], boxes[0][None], 0.4)
    c = (boxes[..., :2] + boxes[..., 2:]) / 2
    half = 0.2 * (boxes[..., 2:] - boxes[..., :2])
    d = (priors.points[None, :, None] - c[:, None]).abs()
    assert torch.equal(mask, (d <= half[:, None]).all(-1)[0])


# --------------------------------------------------------------------------- scale ranges
@pytest.mark.parametrize(
    "side, levels",
    [
        # sqrt(w·h) exactly at the η overlaps: both bounds inclusive (mmdetection's
        # (gt_areas >= lower_bound) & (gt_areas <= upper_bound)), so the overlap points
        # 64, 128, 256 sit on three levels and 32 on two.
        (32, {0, 1}),  # (1,64) ∋ 32 and (32,128) ∋ 32
        (64, {0, 1, 2}),  # 64 = hi of P3, inside P4, = lo of P5
        (128, {1, 2, 3}),
        (256, {2, 3, 4}),
        (40, {0, 1}),
        (100, {1, 2}),
    ],
)
def test_level_selection_at_overlaps(side, levels):
    # A square box centred at (256, 256) on a 512 image. Level selection does not depend
    # on σ; with σ = 1 the "fovea" is the whole box, which holds a point of every level in
    # range here (P4 248/264 ∈ [240, 272] for side 32; P5 240 ∈ [224, 288] for 64;
    # P6 224 ∈ [192, 320] for 128; P7 192 ∈ [128, 384] for 256; P5 240 ∈ [206, 306]
    # for 100), so the levels with positives are exactly the levels in range.
    box = [256 - side / 2, 256 - side / 2, 256 + side / 2, 256 + side / 2]
    a, priors = assign([[box]], [[0]], size=512, sigma=1.0)
    assert set(priors.levels[a.pos_mask[0]].tolist()) == levels
    # with FoveaBox's σ = 0.4 the positives are a subset (a level's fovea may be empty)
    a, priors = assign([[box]], [[0]], size=512)
    assert set(priors.levels[a.pos_mask[0]].tolist()) <= levels


def test_just_below_overlap_is_single_level():
    # 31×33: sqrt(1023) = 31.98 < 32 → P3 only (P4 needs ≥ 32).
    a, priors = assign([[[40, 40, 71, 73]]], [[0]])
    assert set(priors.levels[a.pos_mask[0]].tolist()) == {0}


# --------------------------------------------------------------------------- paint order
@pytest.mark.parametrize("outer_first", [True, False])
def test_nested_boxes_smaller_overwrites_larger(outer_first):
    # O = (8,8,120,120): 112×112, sqrt 112 → P4 and P5. I = (40,40,88,88): 48×48 → P3, P4.
    # Both centred at 64.
    # P4: O x1/s = 0.5, w/(2s) = 3.5 → ceil(2.1) = 3 .. floor(4.9) = 4 → x, y ∈ {56, 72};
    #     I x1/s = 2.5, w/(2s) = 1.5 → ceil(2.9) = 3 .. floor(4.1) = 4 → the same 4 points.
    #     Painted O then I → all 4 are I's (class 1).
    # P5: O x1/s = 0.25, w/(2s) = 1.75 → ceil(0.8) = 1 .. floor(2.2) = 2 → {48, 80}: class 0.
    # P3: I x1/s = 5, w/(2s) = 3 → ceil(6.3) = 7 .. floor(8.7) = 8 → {60, 68}: class 1.
    o, i = [8, 8, 120, 120], [40, 40, 88, 88]
    boxes, classes = ([o, i], [0, 1]) if outer_first else ([i, o], [1, 0])
    a, priors = assign([boxes], [classes])
    expected = grid(0, [60, 68], [60, 68], 1)
    expected.update(grid(1, [56, 72], [56, 72], 1))
    expected.update(grid(2, [48, 80], [48, 80], 0))
    assert positives(a, priors) == expected
    inner_index = classes.index(1)
    assert (a.matched_gt[0][priors.levels == 1][a.pos_mask[0][priors.levels == 1]] == inner_index).all()


def test_equal_areas_follow_stable_paint_order():
    # C1 = (40,40,88,88) and C2 = (48,40,96,88): both 48×48 (P3, P4). On P4 C1 covers
    # x ∈ {56, 72}, y ∈ {56, 72}; C2: x1/s = 3 → ceil(3.4) = 4 .. floor(4.6) = 4 → x = 72.
    # At (72, 56) and (72, 72) both cover: a stable sort by decreasing area keeps index
    # order, so the higher index is painted last and wins.
    c1, c2 = [40, 40, 88, 88], [48, 40, 96, 88]
    for boxes, classes, winner in (([c1, c2], [1, 2], 2), ([c2, c1], [2, 1], 1)):
        a, priors = assign([boxes], [classes])
        p = positives(a, priors)
        assert p[(1, 72.0, 56.0)] == winner and p[(1, 72.0, 72.0)] == winner
        assert p[(1, 56.0, 56.0)] == 1  # only C1 covers x = 56


def test_paint_order_match_equals_sequential_painting():
    # Paint by hand (the mmdetection loop) on random candidates and compare.
    g = torch.Generator().manual_seed(3)
    cand = torch.rand(2, 50, 7, generator=g) < 0.3
    areas = torch.randint(1, 4, (2, 7), generator=g).float()  # many ties
    pairs = CandidatePairs(*cand.nonzero().unbind(1), 7)  # (image, point, gt), any order
    matched = paint_order_match(pairs, areas, 2, 50)
    for n in range(2):
        order = sorted(range(7), key=lambda k: -areas[n, k].item())  # stable
        painted = torch.full((50,), -1, dtype=torch.long)
        for k in order:
            painted[cand[n, :, k]] = k
        assert torch.equal(matched[n], painted)
    assert paint_order_match(CandidatePairs.empty(0), torch.zeros(1, 0), 1, 5).tolist() == [[-1] * 5]


# --------------------------------------------------------------------------- bad input
def test_empty_and_degenerate_inputs():
    priors = priors_for(64)
    gts = [
        gt_instances([], [], (64, 64)),
        gt_instances([[5, 5, 5, 30], [10, 10, 10, 10]], [0, 1], (64, 64)),  # degenerate
        gt_instances([[8, 8, 56, 56]], [3], (64, 64)),
    ]
    a = FoveaAssigner()(priors, gts, num_classes=4)
    assert not a.pos_mask[:2].any() and a.pos_mask[2].any()
    assert (a.labels[:2] == 4).all() and (a.matched_gt[:2] == -1).all()
    # no gt at all in the batch (G = 0)
    a = FoveaAssigner()(priors, [gt_instances([], [], (64, 64))] * 2, num_classes=4)
    assert a.labels.shape == (2, len(priors)) and not a.pos_mask.any()
    assert torch.isfinite(a.box_targets).all()


def test_many_boxes_finite():
    g = torch.Generator().manual_seed(1)
    xy = torch.rand(500, 2, generator=g) * 120
    boxes = torch.cat([xy, xy + torch.rand(500, 2, generator=g) * 100], 1)
    a, priors = assign([boxes], [torch.randint(0, 10, (500,), generator=g)])
    assert a.pos_mask.any() and torch.isfinite(a.box_targets).all()


# --------------------------------------------------------------------------- box coder
def test_log_targets_and_round_trip():
    # Paper eq. 4 / mmdetection: t = log(clamp(d / z_l, 1/16, 16)), d = x − x1, y − y1,
    # x2 − x, y2 − y at the point (with offset 0.5), z_l = base edge (P3: 16).
    priors = priors_for(128)
    coder = FoveaLogBoxCoder()
    r = int(torch.nonzero((priors.levels == 0) & (priors.points == torch.tensor([36.0, 36.0])).all(1))[0])
    box = torch.tensor([10.0, 20, 90, 60])
    # Gt A at P3 (36, 36): d = (26, 16, 54, 24) / 16 = (1.625, 1, 3.375, 1.5)
    # → log = (0.485508, 0, 1.216395, 0.405465).
    boxes = torch.zeros(1, len(priors), 4)
    boxes[0, r] = box
    t = coder.encode(boxes, priors)
    assert t[0, r].tolist() == pytest.approx([0.485508, 0.0, 1.216395, 0.405465], abs=1e-6)
    assert torch.allclose(coder.decode(t, priors)[0, r], box, atol=1e-4)
    # Clamps: gt (0,0,600,600) at P3 (4, 4): d/16 = (0.25, 0.25, 37.25, 37.25) → the large
    # sides clamp to 16 → log 16 = 2.772589; l, t: log 0.25 = −1.386294.
    # gt (3.5,3.5,600,600) at (4, 4): l = 0.5/16 = 1/32 < 1/16 → log(1/16) = −2.772589.
    boxes[0, 0] = torch.tensor([0.0, 0, 600, 600])
    expected = [-1.386294, -1.386294, 2.772589, 2.772589]
    assert coder.encode(boxes, priors)[0, 0].tolist() == pytest.approx(expected, abs=1e-6)
    boxes[0, 0] = torch.tensor([3.5, 3.5, 600, 600])
    assert coder.encode(boxes, priors)[0, 0, :2].tolist() == pytest.approx([-2.772589] * 2, abs=1e-6)
    # Decoding caps the output at the largest encodable distance 16·z (P3: 256 px).
    pred = torch.full((1, len(priors), 4), 10.0)
    d = coder.decode(pred, priors)[0, 0]
    assert d.tolist() == pytest.approx([4 - 256, 4 - 256, 4 + 256, 4 + 256])
    # P4 base edge 32: a P4 prior with prediction 0 gives a 32-px distance on every side.
    r4 = int(torch.nonzero(priors.levels == 1)[0])
    x, y = priors.points[r4].tolist()
    assert coder.decode(torch.zeros(1, len(priors), 4), priors)[0, r4].tolist() == [x - 32, y - 32, x + 32, y + 32]


# --------------------------------------------------------------------------- end to end
def tiny_foveabox(**kwargs):
    torch.manual_seed(0)
    return DslaFoveaBox(
        backbone=TwoLevelBackbone(),
        head=FoveaBoxHead(in_channels=16, num_classes=3, num_levels=2, channels=16, num_convs=1, norm=""),
        head_in_features=["p3", "p4"],
        prior_generator=PriorGenerator([8, 16], offset=0.5),
        box_coder=FoveaLogBoxCoder(base_edges=[16, 32]),
        assigner=FoveaAssigner(scale_ranges=[[1, 64], [32, 128]]),
        quality=QualityCoupling(branch=None, cls_target="static"),
        loss=DenseDetectionLoss(
            cls_loss="focal", focal_gamma=1.5, focal_alpha=0.4, cls_normalizer="num_pos_plus_images",
            box_loss="smooth_l1", smooth_l1_beta=0.11, box_normalizer="num_pos",
        ),
        num_classes=3,
        pixel_std=[57.0, 57.0, 57.0],
        **kwargs,
    )


def test_end_to_end_forward_backward():
    model = tiny_foveabox().train()
    batch = make_inputs([[[8, 8, 56, 56], [20, 4, 30, 60]], [], [[3, 3, 3, 9]]], [[0, 2], [], [1]])
    losses = model(batch)
    assert set(losses) == {"loss_cls", "loss_box_reg"}
    assert all(math.isfinite(v.item()) for v in losses.values())
    assert losses["loss_box_reg"].item() > 0
    sum(losses.values()).backward()
    assert model.head.box_reg.weight.grad.abs().sum() > 0 and model.head.cls_logits.weight.grad.abs().sum() > 0
    # no gt at all: a zero box loss still connected to the graph
    model.zero_grad()
    losses = model(make_inputs([[], []]))
    assert losses["loss_box_reg"].item() == 0 and losses["loss_box_reg"].requires_grad
    sum(losses.values()).backward()
    model.eval()
    with torch.no_grad():
        out = model(make_inputs([[]]))
    assert set(out[0]["instances"].get_fields()) == {"pred_boxes", "scores", "pred_classes"}


def test_gtbatch_degenerate_flag_is_what_excludes_boxes():
    # guard on the contract the assigner relies on: zero-width boxes are invalid rows
    gt = GTBatch.from_instances([gt_instances([[5, 5, 5, 30], [1, 1, 9, 9]], [0, 1])])
    assert gt.valid.tolist() == [[False, True]]
