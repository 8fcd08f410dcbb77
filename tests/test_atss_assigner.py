"""ATSS (Zhang et al. 2020) and Dynamic ATSS (eqs. 1-4 and Tables 2-3 of the paper) on
hand-worked grids.

Grid used below ("grid3"): a 32×32 image, three levels with strides 8, 16, 32, offset 0.5
and anchor_scale 2 (anchor sides 16, 32, 64):

* level 0: 4×4 points x, y ∈ {4, 12, 20, 28}, prior index 4·i + j (i: row/y, j: column/x),
  anchors (x − 8, y − 8, x + 8, y + 8);
* level 1: 2×2 points x, y ∈ {8, 24}, indices 16 + 2·i + j, anchors of side 32;
* level 2: one point (16, 16), index 20, anchor (−16, −16, 48, 48).

With topk = 4, level 1 has exactly k points and level 2 fewer than k (one): K = 4 + 4 + 1.

GT "A" = (2, 2, 26, 18), centre (14, 10), w × h = 24 × 16, area 384. Its candidates:
  level 0, squared distances to (14, 10): (12,12) 8, (12,4) 40, (20,12) 40, (20,4) 72,
  then (4,12)/(12,20) 104 → the 4 nearest are priors 5, 1, 6, 2;
  level 1: all of 16..19; level 2: 20.
Anchor IoUs (inter / union, union = area_anchor + 384 − inter):
  1  (12,4)  (4,−4,20,12):   16·10 = 160 / 480  = 0.333333
  2  (20,4)  (12,−4,28,12):  14·10 = 140 / 500  = 0.28
  5  (12,12) (4,4,20,20):    16·14 = 224 / 416  = 0.538462
  6  (20,12) (12,4,28,20):   14·14 = 196 / 444  = 0.441441
  16 (8,8)   (−8,−8,24,24):  22·16 = 352 / 1056 = 0.333333
  17 (24,8)  (8,−8,40,24):   18·16 = 288 / 1120 = 0.257143
  18 (8,24)  (−8,8,24,40):   22·10 = 220 / 1188 = 0.185185
  19 (24,24) (8,8,40,40):    18·10 = 180 / 1228 = 0.146580
  20 (16,16) (−16,−16,48,48): 384 / 4096        = 0.09375
  Σ = 2.609227, mean = 0.289914; Σ(x − mean)² = 0.159672, unbiased var = /8 = 0.019959,
  std = 0.141276 (the biased std, /9, would be 0.133197); threshold = 0.431191.
Centres strictly inside A (margin 0.01): 1, 2, 5, 6, 16, 17, 20 (18, 19 have y = 24 > 18).
"""
import pytest
import torch

import dsla_d2  # noqa: F401
from detectron2.utils.events import EventStorage

from dsla_d2.assigners.atss import (
    ATSSAssigner,
    DynamicATSSAssigner,
    resolve_iou_weight,
    select_topk_candidates,
    unbiased_std,
)
from dsla_d2.assigners.base import ASSIGNER_REGISTRY
from dsla_d2.priors import PriorGenerator
from dsla_d2.utils.progress import TrainingProgress

from tiny import gt_instances

GT_A = [2.0, 2.0, 26.0, 18.0]
FAR = [200.0, 200.0, 210.0, 210.0]  # a predicted box with PIoU 0 with every gt here


def grid3():
    feats = [torch.zeros(1, 1, 4, 4), torch.zeros(1, 1, 2, 2), torch.zeros(1, 1, 1, 1)]
    return PriorGenerator([8, 16, 32], offset=0.5, anchor_scale=2)(feats)


def grid1():
    """One level, stride 8, 4×4 points, anchors of side 16."""
    return PriorGenerator([8], offset=0.5, anchor_scale=2)([torch.zeros(1, 1, 4, 4)])


def positives(a, image=0):
    return torch.nonzero(a.matched_gt[image] >= 0).flatten().tolist()


def pred_boxes_a(num_priors=21, **boxes):
    """(1, R, 4) predicted boxes: FAR everywhere except the given priors."""
    pred = torch.tensor(FAR).repeat(1, num_priors, 1)
    for idx, box in boxes.items():
        pred[0, int(idx[1:])] = torch.tensor(box)
    return pred


# PIoUs for GT A: prior 16 predicts A itself (PIoU 1); prior 17 predicts (2,2,20,18):
# 18·16 / 384 = 0.75; prior 20 predicts (2,2,14,18): 12·16 / 384 = 0.5; others 0.
PRED_A = dict(p16=GT_A, p17=[2.0, 2.0, 20.0, 18.0], p20=[2.0, 2.0, 14.0, 18.0])


def test_registered_and_priors():
    assert ASSIGNER_REGISTRY.get("ATSSAssigner") is ATSSAssigner
    assert ASSIGNER_REGISTRY.get("DynamicATSSAssigner") is DynamicATSSAssigner
    p = grid3()
    assert p.anchors[5].tolist() == [4, 4, 20, 20]
    assert p.anchors[16].tolist() == [-8, -8, 24, 24]
    assert p.anchors[20].tolist() == [-16, -16, 48, 48]
    assert p.num_per_level == [16, 4, 1]
    assert ATSSAssigner().required_predictions == ()
    assert DynamicATSSAssigner().required_predictions == ("pred_boxes",)
    assert ATSSAssigner(pred_iou_weight="up").required_predictions == ("pred_boxes",)


def test_candidates_default_k9_levels_smaller_than_k():
    # k = 9: level 0 (16 points) gives 9, level 1 (4 points) all 4, level 2 (1 point) 1.
    p = grid3()
    gt = torch.tensor([[GT_A]])
    centers = (gt[..., :2] + gt[..., 2:]) / 2
    dist = (p.points[None, :, None] - centers[:, None]).norm(dim=-1)  # (1, 21, 1)
    cand = select_topk_candidates(dist, p.num_per_level, 9)
    assert cand.shape == (1, 14, 1)
    idx = cand[0, :, 0].tolist()
    # Level 0 squared distances to (14,10): (12,12) 8; (12,4), (20,12) 40; (20,4) 72;
    # (4,12), (12,20) 104; (4,4), (20,20) 136; then (28,12) [index 7] and (4,20) [index 8]
    # both 200 — a tie for the 9th place, broken by the lower prior index: 7.
    assert sorted(idx[:9]) == sorted([5, 1, 6, 2, 4, 9, 0, 10, 7])
    assert 8 not in idx
    assert sorted(idx[9:13]) == [16, 17, 18, 19]
    assert idx[13] == 20


def test_unbiased_std():
    # [1, 2, 3, 4]: mean 2.5, Σ(x−m)² = 2.25 + 0.25 + 0.25 + 2.25 = 5; unbiased var 5/3,
    # std 1.290994 (biased would be sqrt(5/4) = 1.118034).
    assert unbiased_std(torch.tensor([[1.0, 2.0, 3.0, 4.0]]), dim=1).item() == pytest.approx(1.290994, abs=1e-6)
    # Fewer than two values: defined as 0 (torch.std would give NaN).
    assert unbiased_std(torch.tensor([[0.7]]), dim=1).item() == 0.0


def test_atss_threshold_and_positives_hand_derived():
    a = ATSSAssigner(topk=4)(grid3(), [gt_instances([GT_A], [2], (32, 32))], num_classes=3)
    # Threshold = mean + unbiased std = 0.289914 + 0.141276 = 0.431191 (module docstring).
    assert a.extras["threshold"][0, 0].item() == pytest.approx(0.431191, abs=1e-5)
    # IoU ≥ 0.431191 and centre inside: prior 5 (0.538462) and prior 6 (0.441441). With the
    # biased std (0.133197) the threshold would be 0.423111 — same positives here, but the
    # value above pins the unbiased estimator.
    assert positives(a) == [5, 6]
    assert a.labels[0, 5].item() == 2 and a.labels[0, 0].item() == 3
    assert a.box_targets[0, 5].tolist() == GT_A
    assert a.extras["matched_iou"][0, 5].item() == pytest.approx(0.538462, abs=1e-5)
    # Centerness of the anchor centre w.r.t. A (regression weight):
    # prior 5 (12,12): l,t,r,b = 10,10,14,6 → sqrt(10/14 · 6/10) = 0.654654;
    # prior 6 (20,12): 18,10,6,6 → sqrt(6/18 · 6/10) = 0.447214.
    assert a.reg_weights[0, 5].item() == pytest.approx(0.654654, abs=1e-5)
    assert a.reg_weights[0, 6].item() == pytest.approx(0.447214, abs=1e-5)
    assert a.reg_weights[0].sum().item() == pytest.approx(0.654654 + 0.447214, abs=1e-5)
    u = ATSSAssigner(topk=4, regression_weight="uniform")(grid3(), [gt_instances([GT_A], [2], (32, 32))], 3)
    assert u.reg_weights[0, 5].item() == 1.0 and u.reg_weights[0].sum().item() == 2.0


def symmetric_gt(d):
    """(12 − d, 12 − d, 20 + d, 20 + d): centre (16, 16); the 4 nearest grid1 points
    (12,12), (20,12), (12,20), (20,20) [priors 5, 6, 9, 10] are all at distance √32 (the
    next at √160) and sit exactly d inside the gt's sides. By symmetry their anchor IoUs
    are equal: (8 + d)² / (256 + (8 + 2d)² − (8 + d)²), exact in float32 for dyadic d, so
    std = 0, threshold = mean = that IoU and IoU ≥ threshold holds: only the centre rule
    decides."""
    return [12 - d, 12 - d, 20 + d, 20 + d]


@pytest.mark.parametrize(
    "d, expected",
    [
        (0.0, []),  # centres on the gt's sides: not strictly inside
        (1 / 128, []),  # 0.0078125 inside: not more than the 0.01 margin
        (1 / 64, [5, 6, 9, 10]),  # 0.015625 inside: more than 0.01
    ],
)
def test_center_inside_margin(d, expected):
    a = ATSSAssigner(topk=4)(grid1(), [gt_instances([symmetric_gt(d)], [0], (32, 32))], 1)
    assert positives(a) == expected
    if expected:
        # d = 1/64: (8.015625)² / (256 + 8.03125² − 8.015625²) = 64.250244 / 256.250733
        # = 0.250732 = the threshold.
        assert a.extras["threshold"][0, 0].item() == pytest.approx(0.250732, abs=1e-5)
    # The margin is an argument: with 0, d = 1/128 is inside.
    no_margin = ATSSAssigner(topk=4, center_margin=0.0)
    assert no_margin(grid1(), [gt_instances([symmetric_gt(1 / 128)], [0], (32, 32))], 1).pos_mask.sum() == 4


def test_two_gts_same_iou_lowest_index_wins():
    box = symmetric_gt(1 / 64)
    for classes in ([0, 1], [1, 0]):
        a = ATSSAssigner(topk=4)(grid1(), [gt_instances([box, box], classes, (32, 32))], 2)
        assert positives(a) == [5, 6, 9, 10]
        assert set(a.matched_gt[0, [5, 6, 9, 10]].tolist()) == {0}  # exact tie → first gt
        assert set(a.labels[0, [5, 6, 9, 10]].tolist()) == {classes[0]}


def test_two_gts_different_iou_highest_wins():
    # gt 0 = symmetric_gt(1/64): priors 5, 6, 9, 10 positive with IoU 0.250732.
    # gt 1 = (4, 4, 20, 20) = anchor of prior 5 → IoU 1 with it. Its candidates: prior 5
    # (distance 0) and 3 of the 4 priors at distance 8 (1, 4, 6, 9; ties → lowest indices),
    # each with IoU 16·8 / (512 − 128) = 1/3: mean 0.5, unbiased std
    # sqrt((0.25 + 3/36) / 3) = 0.333333 → threshold 0.833333 → only prior 5.
    gt = gt_instances([symmetric_gt(1 / 64), [4, 4, 20, 20]], [0, 1], (32, 32))
    a = ATSSAssigner(topk=4)(grid1(), [gt], 2)
    assert a.extras["threshold"][0, 1].item() == pytest.approx(0.833333, abs=1e-5)
    assert positives(a) == [5, 6, 9, 10]
    # Prior 5: IoU 1 with gt 1 beats 0.250732 with gt 0, although gt 0 comes first.
    assert a.matched_gt[0].tolist()[5] == 1 and a.labels[0, 5].item() == 1
    assert a.matched_gt[0, [6, 9, 10]].tolist() == [0, 0, 0]


# ---------------------------------------------------------------------- Dynamic ATSS
def test_dynamic_sum_of_stds_not_std_of_sum():
    """Eqs. 1-4 on GT A with PRED_A (PIoU 1 at prior 16, 0.75 at 17, 0.5 at 20, else 0).

    PIoU over the 9 candidates: [0,0,0,0, 1, 0.75, 0, 0, 0.5]: mean 2.25/9 = 0.25;
    Σ(x − 0.25)² = 6·0.0625 + 0.5625 + 0.25 + 0.0625 = 1.25, unbiased var 1.25/8 = 0.15625,
    std 0.395285.
    Eq. 3 (sum of stds): threshold = (0.289914 + 0.25) + (0.141276 + 0.395285) = 1.076475.
    CIoU = AIoU + PIoU: 1: 0.333333, 2: 0.28, 5: 0.538462, 6: 0.441441, 16: 1.333333,
    17: 1.007143, 18: 0.185185, 19: 0.146580, 20: 0.59375.
    → positives: prior 16 only (17's 1.007143 < 1.076475).
    The std of the summed CIoUs would be 0.395473 (threshold 0.539914 + 0.395473 =
    0.935387), which would also make prior 17 (inside A) positive: that is *not* eq. 3.
    """
    priors = grid3()
    gt = [gt_instances([GT_A], [0], (32, 32))]
    a = DynamicATSSAssigner(topk=4)(priors, gt, 1, {"pred_boxes": pred_boxes_a(**PRED_A)})
    assert a.extras["threshold"][0, 0].item() == pytest.approx(1.076475, abs=1e-5)
    assert positives(a) == [16]
    assert a.extras["matched_iou"][0, 16].item() == pytest.approx(1.333333, abs=1e-5)
    assert a.extras["iou_weights"].tolist() == [1.0, 1.0]
    # Sanity of the hand numbers: the std-of-sum threshold would have taken prior 17.
    ciou_17 = 0.257143 + 0.75
    assert 0.935387 <= ciou_17 < 1.076475


def test_dynamic_with_pred_equal_anchor_is_atss():
    # PIoU = AIoU for every prior → CIoU = 2·AIoU and threshold = 2·(mean + std): ATSS.
    priors = grid3()
    gt = [gt_instances([GT_A], [0], (32, 32))]
    a = DynamicATSSAssigner(topk=4)(priors, gt, 1, {"pred_boxes": priors.anchors[None].clone()})
    assert positives(a) == [5, 6]
    assert a.extras["threshold"][0, 0].item() == pytest.approx(2 * 0.431191, abs=1e-5)


def test_table2_piou_only_and_aiou_only():
    priors = grid3()
    gt = [gt_instances([GT_A], [0], (32, 32))]
    pred = pred_boxes_a(**PRED_A)
    # "PIoU only" (w_a = 0): threshold = mean(PIoU) + std(PIoU) = 0.25 + 0.395285 = 0.645285;
    # PIoU ≥ it and inside: priors 16 (1.0) and 17 (0.75); prior 20 (0.5) is below.
    p = DynamicATSSAssigner(topk=4, anchor_iou_weight=0.0)(priors, gt, 1, {"pred_boxes": pred})
    assert p.extras["threshold"][0, 0].item() == pytest.approx(0.645285, abs=1e-5)
    assert positives(p) == [16, 17]
    # "AIoU only" (w_p = 0) is ATSS: priors 5, 6 whatever the predictions.
    a = DynamicATSSAssigner(topk=4, pred_iou_weight=0.0)(priors, gt, 1, {"pred_boxes": pred})
    assert positives(a) == [5, 6]
    assert a.extras["threshold"][0, 0].item() == pytest.approx(0.431191, abs=1e-5)


def test_table3_constant_weights():
    # (PIoU, AIoU) = (0.5, 1): threshold = 1·0.431191 + 0.5·0.645285 = 0.753833;
    # CIoU = AIoU + 0.5·PIoU: 16: 0.333333 + 0.5 = 0.833333 ✓; 17: 0.257143 + 0.375 =
    # 0.632143 ✗; 5: 0.538462 ✗ → prior 16.
    priors = grid3()
    gt = [gt_instances([GT_A], [0], (32, 32))]
    asg = DynamicATSSAssigner(topk=4, pred_iou_weight=0.5, anchor_iou_weight=1.0)
    a = asg(priors, gt, 1, {"pred_boxes": pred_boxes_a(**PRED_A)})
    assert a.extras["threshold"][0, 0].item() == pytest.approx(0.753833, abs=1e-5)
    assert positives(a) == [16]
    assert a.extras["matched_iou"][0, 16].item() == pytest.approx(0.833333, abs=1e-5)


def test_resolve_weights_d_up_d_down():
    # D_up = iter / max_iter, D_down = 1 − iter / max_iter (Table 3).
    assert resolve_iou_weight("up", 0.25) == 0.25
    assert resolve_iou_weight("down", 0.25) == 0.75
    assert resolve_iou_weight(1.5, 0.25) == 1.5
    a = DynamicATSSAssigner(pred_iou_weight="up", anchor_iou_weight="down")
    assert a.iou_weights(TrainingProgress(250, 1000)) == (0.75, 0.25)  # (w_a, w_p)
    assert a.iou_weights(TrainingProgress(600, 1000)) == pytest.approx((0.4, 0.6))
    assert a.iou_weights(None) == (1.0, 0.0)  # no progress given: iteration 0
    with EventStorage(600):  # the global EventStorage is never read
        assert a.iou_weights(None) == (1.0, 0.0)
    assert a.iou_weights(TrainingProgress(5000, 1000)) == (0.0, 1.0)  # past max_iter: clamped to 1


def test_table3_dup_ddown_at_iteration():
    # At iteration 250 of 1000: w_p = D_up = 0.25, w_a = D_down = 0.75.
    # threshold = 0.75·0.431191 + 0.25·0.645285 = 0.323393 + 0.161321 = 0.484714;
    # CIoU = 0.75·AIoU + 0.25·PIoU: 16: 0.25 + 0.25 = 0.5 ✓; 5: 0.403846 ✗;
    # 17: 0.192857 + 0.1875 = 0.380357 ✗; 6: 0.331081 ✗ → prior 16.
    priors = grid3()
    gt = [gt_instances([GT_A], [0], (32, 32))]
    asg = DynamicATSSAssigner(topk=4, pred_iou_weight="up", anchor_iou_weight="down")
    a = asg(priors, gt, 1, {"pred_boxes": pred_boxes_a(**PRED_A)}, progress=TrainingProgress(250, 1000))
    assert a.extras["iou_weights"].tolist() == [0.75, 0.25]
    assert a.extras["threshold"][0, 0].item() == pytest.approx(0.484714, abs=1e-5)
    assert positives(a) == [16]
    # At iteration 0, D_up = 0: ATSS.
    assert positives(asg(priors, gt, 1, {"pred_boxes": pred_boxes_a(**PRED_A)}, progress=TrainingProgress(0, 1000))) == [5, 6]


def test_dynamic_ties_to_highest_ciou():
    # gt 0 = A = (2,2,26,18), gt 1 = (6,2,30,20) (24×18, area 432). Prior 5's anchor
    # (4,4,20,20): AIoU with A 0.538462; with gt 1: 14·16 = 224 / (256 + 432 − 224) =
    # 0.482759 → ATSS prefers A. Prior 5 predicts gt 1 itself: PIoU 1 with gt 1, and with A
    # IoU(gt1, A) = 20·16 = 320 / (432 + 384 − 320) = 0.645161. CIoU: A 0.538462 + 0.645161
    # = 1.183623; gt 1: 0.482759 + 1 = 1.482759 → Dynamic ATSS prefers gt 1.
    priors = grid3()
    g1 = [6.0, 2.0, 30.0, 20.0]
    pred = pred_boxes_a(p5=g1)
    dyn = DynamicATSSAssigner(topk=4)
    atss = ATSSAssigner(topk=4)
    # Precondition: prior 5 is positive for each gt alone, under both assigners.
    for box in (GT_A, g1):
        single = [gt_instances([box], [0], (32, 32))]
        assert 5 in positives(dyn(priors, single, 1, {"pred_boxes": pred}))
        assert 5 in positives(atss(priors, single, 1))
    both = [gt_instances([GT_A, g1], [0, 1], (32, 32))]
    a = dyn(priors, both, 2, {"pred_boxes": pred})
    assert a.matched_gt[0, 5].item() == 1
    assert a.extras["matched_iou"][0, 5].item() == pytest.approx(1.482759, abs=1e-5)
    s = atss(priors, both, 2)
    assert s.matched_gt[0, 5].item() == 0
    assert s.extras["matched_iou"][0, 5].item() == pytest.approx(0.538462, abs=1e-5)


def test_predictions_required_and_non_finite_predictions():
    priors = grid3()
    gt = [gt_instances([GT_A], [0], (32, 32))]
    with pytest.raises(ValueError):
        DynamicATSSAssigner(topk=4)(priors, gt, 1)
    pred = pred_boxes_a(**PRED_A)
    pred[0, :8] = float("nan")
    pred[0, 8:10] = float("inf")
    a = DynamicATSSAssigner(topk=4)(priors, gt, 1, {"pred_boxes": pred})
    assert torch.isfinite(a.extras["threshold"]).all() and torch.isfinite(a.reg_weights).all()
    assert torch.isfinite(a.extras["matched_iou"]).all()


def test_invalid_arguments():
    for kwargs in (
        dict(anchor_iou_weight=0.0, pred_iou_weight=0.0),
        dict(pred_iou_weight=-1.0),
        dict(pred_iou_weight="sideways"),
        dict(regression_weight="iou"),
        dict(topk=0),
    ):
        with pytest.raises(ValueError):
            ATSSAssigner(**kwargs)


# ---------------------------------------------------------------------- bad input
@pytest.mark.parametrize("cls", [ATSSAssigner, DynamicATSSAssigner])
def test_empty_degenerate_and_padded(cls):
    priors = grid3()
    # Predicted boxes = the anchors: PIoU = AIoU, so CIoU = 2·AIoU with twice ATSS's
    # threshold, and Dynamic ATSS must find exactly ATSS's positives (deterministic).
    kwargs = dict(pred_boxes=priors.anchors.expand(3, 21, 4).clone())
    # No gts at all (G = 0).
    empty = [gt_instances([], [], (32, 32)), gt_instances([], [], (32, 32))]
    a = cls(topk=4)(priors, empty, 3, {"pred_boxes": kwargs["pred_boxes"][:2]})
    assert (a.matched_gt == -1).all() and (a.labels == 3).all() and not a.reg_mask.any()
    assert a.extras["threshold"].shape == (2, 0)
    # Image 0 has A, image 1 only degenerate boxes, image 2 nothing (padding rows).
    batch = [
        gt_instances([GT_A], [1], (32, 32)),
        gt_instances([[5, 5, 5, 20], [8, 8, 20, 8]], [0, 2], (32, 32)),
        gt_instances([], [], (32, 32)),
    ]
    a = cls(topk=4)(priors, batch, 3, kwargs)
    assert a.matched_gt.shape == (3, 21)
    assert (a.matched_gt[1:] == -1).all() and (a.labels[1:] == 3).all()
    assert a.extras["threshold"][1:].abs().sum() == 0
    assert len(positives(a, 0)) > 0
    assert positives(a, 0) == positives(ATSSAssigner(topk=4)(priors, batch, 3), 0)
    assert torch.isfinite(a.reg_weights).all() and torch.isfinite(a.box_targets).all()


def test_batched_equals_per_image_and_many_boxes():
    priors = grid3()
    g = torch.Generator().manual_seed(0)
    xy = torch.rand(2, 60, 2, generator=g) * 28
    wh = torch.rand(2, 60, 2, generator=g) * 20 + 1
    boxes = torch.cat([xy, xy + wh], dim=-1)
    boxes[1, 40:] = 0  # degenerate rows in image 1
    pred = torch.cat([torch.rand(2, 21, 2, generator=g) * 20, torch.rand(2, 21, 2, generator=g) * 20 + 20], dim=-1)
    gts = [gt_instances(boxes[i], torch.arange(60) % 3, (32, 32)) for i in range(2)]
    for asg in (ATSSAssigner(), DynamicATSSAssigner()):
        both = asg(priors, gts, 3, {"pred_boxes": pred})
        for i in range(2):
            one = asg(priors, [gts[i]], 3, {"pred_boxes": pred[i : i + 1]})
            assert torch.equal(one.matched_gt[0], both.matched_gt[i])
            assert torch.allclose(one.reg_weights[0], both.reg_weights[i])
        m = both.matched_gt
        assert ((m == -1) | ((m >= 0) & (m < 60))).all()
        assert not ((m[1] >= 40)).any()  # degenerate boxes never positive
        assert torch.isfinite(both.reg_weights).all()
