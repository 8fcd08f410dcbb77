"""YOLOX's SimOTA (Ge et al., "YOLOX: Exceeding YOLO Series in 2021", arXiv:2107.08430; the
authors' code at 0.2.0 / 0.3.0 where it is more specific, ``/work/shared/specs/yolox_simota.md``):
hand-worked vectors, edge cases, the sparse evaluation against a dense reference, the
all-reduced normaliser, the visualiser's view and the YOLOX configs.

Grids ("grid9": 24×24 image, one level, stride 8, offset 0.5; "grid36": 48×48, 6×6): points
x, y ∈ {4, 12, 20(, 28, 36, 44)}, prior index W·i + j (i: row/y, j: column/x). grid9:

    0 (4,4)   1 (12,4)   2 (20,4)
    3 (4,12)  4 (12,12)  5 (20,12)
    6 (4,20)  7 (12,20)  8 (20,20)

Every prior predicts the box FAR = (100, 100, 110, 110) (IoU 0 with every gt here) unless a
case says otherwise; the class logits are 0 (σ = 0.5) unless a case says otherwise.

Numbers used below (natural logs):
  BCE(0.5, 0) = BCE(0.5, 1) = ln 2 = 0.693147; BCE(0.9, 1) = −ln 0.9 = 0.105361;
  BCE(0.9, 0) = −ln 0.1 = 2.302585;
  −ln(0 + 1e-8) = 18.420681 → 3× = 55.262042 (ε 1e-7: 3·16.118096 = 48.354287);
  −ln 0.5 = 0.693147 → 3× = 2.079442; −ln 0.7 = 0.356675 → 3× = 1.070025.
"""
import math
import os

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F

import dsla_d2  # noqa: F401
from detectron2.config import LazyConfig, instantiate
from detectron2.utils.events import EventStorage

from dsla_d2.assigners import SimOTAAssigner, center_region, dynamic_k, simota_cost
from dsla_d2.assigners.base import ASSIGNER_REGISTRY, GTBatch
from dsla_d2.assigners.pairs import CandidatePairs
from dsla_d2.assigners.simota import classification_cost
from dsla_d2.box_ops import aligned_box_iou
from dsla_d2.engine.config_checks import validate_config
from dsla_d2.losses import DenseDetectionLoss
from dsla_d2.losses.box_losses import iou_loss
from dsla_d2.priors import PriorGenerator, Priors
from dsla_d2.quality import QualityCoupling

from tiny import gt_instances, make_inputs

FAR = [100.0, 100.0, 110.0, 110.0]
LN9 = math.log(9.0)  # sigmoid(ln 9) = 0.9
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
YOLOX_CONFIGS = os.path.join(ROOT, "projects", "YOLOX", "configs")


def grid(n=3):
    return PriorGenerator([8], offset=0.5, anchor_scale=2)([torch.zeros(1, 1, n, n)])


def predictions(boxes=None, logits=None, num_priors=9, num_classes=2):
    """(1, R, 4) predicted boxes (FAR unless given per prior index) and (1, R, C) logits (0
    unless given as {(prior, class): logit})."""
    pred = torch.tensor(FAR).repeat(1, num_priors, 1)
    for p, box in (boxes or {}).items():
        pred[0, p] = torch.tensor(box, dtype=torch.float32)
    cls = torch.zeros(1, num_priors, num_classes)
    for (p, c), v in (logits or {}).items():
        cls[0, p, c] = v
    return {"pred_boxes": pred, "cls_logits": cls}


def positives(a, image=0):
    return torch.nonzero(a.matched_gt[image] >= 0).flatten().tolist()


# ------------------------------------------------------------------ hand-worked vectors
def test_registered_and_arguments():
    assert ASSIGNER_REGISTRY.get("SimOTAAssigner") is SimOTAAssigner
    a = SimOTAAssigner()
    assert (a.center_radius, a.candidate_topk, a.iou_weight, a.outside_penalty, a.iou_eps) == (2.5, 10, 3.0, 1e5, 1e-8)
    assert a.candidate_rule == "box_or_center" and a.required_predictions == ("pred_boxes", "cls_logits")
    assert SimOTAAssigner(objectness="quality").required_predictions == ("pred_boxes", "cls_logits", "quality")
    for bad in (dict(candidate_topk=0), dict(center_radius=-1), dict(iou_weight=float("nan")),
                dict(outside_penalty=float("inf")), dict(iou_eps=0), dict(candidate_rule="square")):
        with pytest.raises(ValueError):
            SimOTAAssigner(**bad)
    with pytest.raises(ValueError, match="classes"):
        a(grid(), [gt_instances([[0, 0, 20, 20]], [0])], 3, predictions())
    with pytest.raises(ValueError, match="quality"):
        SimOTAAssigner(objectness="quality")(grid(), [gt_instances([[0, 0, 20, 20]], [0])], 2, predictions())


def test_center_region_spec_vector():
    # Stride 8, gt (0,0,4,4), centre (2,2); prior centre (4,4): not in the box (4 − 4 = 0 is
    # not > 0), in the centre square: 4 − (2 − 20) = 22 > 0 and (2 + 20) − 4 = 18 > 0 →
    # a candidate that pays the penalty.
    cand, inside = center_region(torch.tensor([[4.0, 4.0]]), torch.tensor([8.0]), torch.tensor([[0.0, 0, 4, 4]]), 2.5)
    assert cand.tolist() == [True] and inside.tolist() == [False]


def test_center_region_membership_on_a_grid():
    # grid36, the tall gt (18, 2, 22, 46), centre (20, 24), stride 8, r = 2.5 (half-side 20):
    #   in box: x ∈ (18, 22) → x = 20 (j = 2); y ∈ (2, 46) → every row: priors 2, 8, 14, 20, 26, 32;
    #   in square: x ∈ (0, 40) → j = 0..4; y ∈ (4, 44) strictly → y = 12..36 (i = 1..4; the rows at
    #   y = 4 and y = 44 sit on the edges): 20 priors 6i + j;
    #   candidates = the square ∪ {2, 32} (22 priors); inside both = {8, 14, 20, 26}.
    # The 2023 rule (the square alone, r = 1.5, half-side 12): x ∈ (8, 32) → j = 1..3,
    # y ∈ (12, 36) → i = 2, 3: {13, 14, 15, 19, 20, 21}, candidates and inside alike.
    priors = grid(6)
    box = torch.tensor([[18.0, 2, 22, 46]])
    square = {6 * i + j for i in range(1, 5) for j in range(5)}
    cand, inside = center_region(priors.points, priors.strides, box, 2.5)
    assert set(cand.nonzero().flatten().tolist()) == square | {2, 32}
    assert inside.nonzero().flatten().tolist() == [8, 14, 20, 26]
    cand, inside = center_region(priors.points, priors.strides, box, 1.5, rule="center")
    assert cand.nonzero().flatten().tolist() == [13, 14, 15, 19, 20, 21] and torch.equal(cand, inside)
    # the assigner's candidate set is the same
    pred = predictions(num_priors=36)
    a = SimOTAAssigner()(priors, [gt_instances(box, [0], (48, 48))], 2, pred)
    assert set(a.extras["candidates"][0].nonzero().flatten().tolist()) == square | {2, 32}


def test_cost_vectors_with_objectness():
    # C = 2, gt class 0, σ(cls) = [0.8, 0.1], σ(obj) = 0.5: q = [sqrt(0.4), sqrt(0.05)] =
    # [0.632456, 0.223607]; cls = −ln 0.632456 − ln(1 − 0.223607) = 0.458145 + 0.253096 = 0.711242.
    logit = lambda p: math.log(p / (1 - p))  # noqa: E731
    preds = {"cls_logits": torch.tensor([[[logit(0.8), logit(0.1)]]]), "quality": torch.zeros(1, 1, 1)}
    q = SimOTAAssigner(objectness="quality").scores(preds)[0]
    assert q[0].tolist() == pytest.approx([0.632456, 0.223607], rel=1e-6)
    cls = classification_cost(q, torch.tensor([0]))
    assert cls.item() == pytest.approx(0.711242, rel=1e-6)
    # cost = cls + 3·(−ln(u + 1e-8)) + 1e5·[not inside]:
    #   u 0.5, inside: 0.711242 + 2.079442 = 2.790684;
    #   u 0, outside: 0.711242 + 55.262042 + 1e5 = 100055.973284 (float32: ulp 1/128);
    #   u 0 with mmdetection's ε 1e-7: 0.711242 + 48.354287 = 49.065529.
    c = simota_cost(cls.repeat(2), torch.tensor([0.5, 0.0]), torch.tensor([True, False]))
    assert c[0].item() == pytest.approx(2.790684, rel=1e-6)
    assert c[1].item() == pytest.approx(100055.973284, abs=0.01)
    mmdet = simota_cost(cls, torch.tensor([0.0]), torch.tensor([True]), eps=1e-7)
    assert mmdet.item() == pytest.approx(49.065529, rel=1e-6)


def test_dynamic_k_vectors():
    rows = [
        # 1 + .75 + .5 + .5 + .5 + .25 + .125 + .0625 + .03125 + 0 = 3.71875 → 3 (dyadic: exact)
        [1.0, 0.75, 0.5, 0.5, 0.5, 0.25, 0.125, 0.0625, 0.03125, 0.0],
        # the spec's vector: 0.9 + 0.8 + 0.7 + 0.3 + 0.2 + 0.1; in float32, added one at a
        # time, every partial sum (1.7, 2.4, 2.7, 2.9, 3.0) is the float nearest the decimal → 3
        [0.9, 0.8, 0.7, 0.3, 0.2, 0.1, 0, 0, 0, 0],
        [0.75, 0.75, 0.75, 0.75, 0, 0, 0, 0, 0, 0],  # exactly 3.0 → 3
        [0.75, 0.75, 0.75, 0.74, 0, 0, 0, 0, 0, 0],  # 2.99 → 2 (floor, not round)
        [0.3, 0.2, 0, 0, 0, 0, 0, 0, 0, 0],  # 0.5 → 1 (clamped)
        [0.0] * 10,  # 0 → 1
    ]
    assert dynamic_k(torch.tensor(rows)).tolist() == [3, 3, 3, 2, 1, 1]


def test_dynamic_k_and_top_k_through_the_assigner():
    # grid9, gt (0,0,20,20) class 0 (area 400): priors 0, 1, 3, 4 are inside it (points 4, 12 <
    # 20) and all nine in its centre square (10 ± 20). Prior 1 predicts the gt (u 1), priors 3
    # and 4 predict (0,0,20,15) (u 300/400 = 0.75), prior 0 (0,0,20,10) (u 0.5):
    # Σ top = 1 + .75 + .75 + .5 = 3.0 → k = 3. Equal class costs: the three largest IoUs win.
    box = [0, 0, 20, 20]
    pred = predictions({1: box, 3: [0, 0, 20, 15], 4: [0, 0, 20, 15], 0: [0, 0, 20, 10]})
    a = SimOTAAssigner()(grid(), [gt_instances([box], [0])], 2, pred)
    assert a.extras["dynamic_k"].tolist() == [[3]] and positives(a) == [1, 3, 4]
    # Prior 0 now predicts FAR: Σ = 2.5 → k = 2: prior 1, then a tie between 3 and 4 (equal
    # cost) → the lower prior index, 3.
    pred["pred_boxes"][0, 0] = torch.tensor(FAR)
    a = SimOTAAssigner()(grid(), [gt_instances([box], [0])], 2, pred)
    assert a.extras["dynamic_k"].tolist() == [[2]] and positives(a) == [1, 3]


def test_dynamic_k_counts_candidates_of_other_gts():
    # 8×8 grid (64×64, stride 8, points 4..60, prior 8i + j). G1 = (0,0,40,40): its box and its
    # centre square (20 ± 20) hold the 25 points 4..36, all inside both; each predicts
    # (0,0,40,20), u = 800/1600 = 0.5. G2 = (48,48,64,64): its square (56 ± 20) reaches the
    # points at 44, so priors 45 (44,44) and 46 (52,44) are candidates of G2 only; both predict
    # G1 itself (u(·, G1) = 1). G1's ten largest IoUs over all candidates: 1 + 1 + 8·0.5 = 6 →
    # k = 6 (its region alone: 10·0.5 = 5). Its six cheapest: equal costs, so the lowest prior
    # indices inside both, 0-4 and 8 (45 and 46 pay the penalty). G2: every u 0, k = 1, the
    # lowest index of its in-both priors {54, 55, 62, 63}: 54.
    priors = grid(8)
    inside = [8 * i + j for i in range(5) for j in range(5)]
    pred = predictions({**{p: [0, 0, 40, 20] for p in inside}, 45: [0, 0, 40, 40], 46: [0, 0, 40, 40]}, num_priors=64)
    gts = [gt_instances([[0, 0, 40, 40], [48, 48, 64, 64]], [0, 1], (64, 64))]
    a = SimOTAAssigner()(priors, gts, 2, pred)
    assert a.extras["dynamic_k"].tolist() == [[6, 1]]
    assert positives(a) == [0, 1, 2, 3, 4, 8, 54] and a.matched_gt[0, 54].item() == 1


def test_soft_targets_and_cost_of_a_positive():
    # gt (0,0,20,20) of class 3 (C = 4); prior 4 predicts (0,0,20,14): u = 280/400 = 0.7, all
    # others FAR (u 0). k = 1 (Σ = 0.7); equal class costs 4·ln 2 = 2.772589, so prior 4 wins
    # with cost 2.772589 + 3·0.356675 = 3.842614. Target: 0.7 at class 3; box weight 1.
    pred = predictions({4: [0, 0, 20, 14]}, num_classes=4)
    a = SimOTAAssigner()(grid(), [gt_instances([[0, 0, 20, 20]], [3])], 4, pred)
    assert positives(a) == [4] and a.labels[0].tolist() == [4, 4, 4, 4, 3, 4, 4, 4, 4]
    assert a.cls_scores[0, 4].item() == pytest.approx(0.7, rel=1e-6)
    assert a.extras["matched_iou"][0, 4].item() == pytest.approx(0.7, rel=1e-6)
    assert a.extras["matched_cost"][0, 4].item() == pytest.approx(3.842614, rel=1e-6)
    assert a.reg_weights[0].tolist() == a.pos_mask[0].float().tolist()
    assert a.box_targets[0, 4].tolist() == [0, 0, 20, 20] and a.cls_scores[0].sum().item() == pytest.approx(0.7)


def test_describe_targets_shows_the_iou_target():
    # The visualiser's view (DenseDetectionLoss.describe_targets) with to_simota's coupling:
    # the class target of prior 4 is its IoU 0.7, the box weight 1.
    pred = predictions({4: [0, 0, 20, 14]}, num_classes=4)
    a = SimOTAAssigner()(grid(), [gt_instances([[0, 0, 20, 20]], [3])], 4, pred)
    outputs = {"cls_logits": pred["cls_logits"], "box_reg": pred["pred_boxes"], "pred_boxes": pred["pred_boxes"]}
    quality = QualityCoupling(branch=None, cls_target="static")
    d = _simota_loss().describe_targets(outputs, grid(), a, box_coder=None, quality=quality)
    assert d["cls_target"][0, 4].item() == pytest.approx(0.7, rel=1e-6) and torch.equal(d["cls_target"], a.cls_scores)
    assert d["reg_weight"][0].tolist() == [0, 0, 0, 0, 1, 0, 0, 0, 0]


def _conflict_case():
    # grid9, one class (C = 1, logits 0: every pair's class cost is ln 2 = 0.693147). gts
    # A = (3,3,21,21) (area 324), B = (2,2,22,22) (400), C = (1,1,23,23) (484): each holds all
    # nine points, and its centre square (12 ± 20) too, so every pair is inside both.
    # Prior 4 predicts X = (1.5,1.5,22.5,22.5) (area 441), prior 0 predicts C itself:
    #   u(4, A) = 324/441 = 0.734694, u(4, B) = 400/441 = 0.907029, u(4, C) = 441/484 = 0.911157;
    #   u(0, A) = 324/484 = 0.669421, u(0, B) = 400/484 = 0.826446, u(0, C) = 1.
    # k = 1 for each (sums 1.40, 1.73, 1.91). cost = 0.693147 + 3·(−ln u):
    #   A: at 4: 0.693147 + 3·0.308301 = 1.618050; at 0: 0.693147 + 3·0.401342 = 1.897173 → A marks 4;
    #   B: at 4: 0.693147 + 3·0.097580 = 0.985887; at 0: 0.693147 + 3·0.190620 = 1.265007 → B marks 4;
    #   C: at 0: 0.693147 + 0 = 0.693147; at 4: 0.693147 + 3·0.093040 = 0.972268 → C marks 0.
    pred = predictions({4: [1.5, 1.5, 22.5, 22.5], 0: [1, 1, 23, 23]}, num_classes=1)
    boxes = [[3, 3, 21, 21], [2, 2, 22, 22], [1, 1, 23, 23]]
    return pred, boxes


def test_conflict_goes_to_the_least_cost():
    # Only A and B: prior 4 is marked by both; B's cost there (0.985887) is below A's
    # (1.618050) → B (the spec's "A 2.5, B 1.7 → B"). Prior 0 is nobody's.
    pred, boxes = _conflict_case()
    a = SimOTAAssigner()(grid(), [gt_instances(boxes[:2], [0, 0])], 1, pred)
    assert positives(a) == [4] and a.matched_gt[0, 4].item() == 1
    assert a.extras["matched_cost"][0, 4].item() == pytest.approx(0.985887, rel=1e-5)
    assert a.cls_scores[0, 4].item() == pytest.approx(0.907029, rel=1e-5)


def test_conflict_is_resolved_over_all_gts_of_the_image():
    # With C as well: prior 4 (marked by A and B) goes to the least cost at it over *all*
    # gts — C, 0.972268 < 0.985887 — although C marked prior 0, not 4 (the code's
    # torch.min over the cost column). C ends with both priors, A and B with none.
    pred, boxes = _conflict_case()
    a = SimOTAAssigner()(grid(), [gt_instances(boxes, [0, 0, 0])], 1, pred)
    assert positives(a) == [0, 4] and a.matched_gt[0, [0, 4]].tolist() == [2, 2]
    assert a.extras["matched_cost"][0, [0, 4]].tolist() == pytest.approx([0.693147, 0.972268], rel=1e-5)
    assert a.extras["dynamic_k"].tolist() == [[1, 1, 1]]


def test_gt_without_inside_prior_takes_the_cheapest_candidate_anywhere():
    # The tiny gt (5,5,7,7) of class 0 holds no grid point; its centre square (6 ± 20) holds all
    # nine: nine candidates, each paying 1e5. Every u is 0 (FAR), so k = 1 and the class cost
    # decides: prior 8 (20,20) has σ = 0.9 for class 0: 0.105361 + 0.693147 = 0.798508 against
    # 2·0.693147 = 1.386294 → prior 8, cost 0.798508 + 55.262042 + 1e5 = 100056.060550, IoU
    # target 0. With equal logits everywhere, the tie goes to the lowest prior index, 0.
    gts = [gt_instances([[5, 5, 7, 7]], [0])]
    a = SimOTAAssigner()(grid(), gts, 2, predictions(logits={(8, 0): LN9}))
    assert positives(a) == [8] and a.extras["candidates"][0].all()
    assert a.extras["matched_cost"][0, 8].item() == pytest.approx(100056.060550, abs=0.01)
    assert a.cls_scores[0, 8].item() == 0 and a.labels[0, 8].item() == 0
    assert positives(SimOTAAssigner()(grid(), gts, 2, predictions())) == [0]
    # A second gt (0,0,24,24), class 0, holds prior 8 inside both: it marks prior 8 too (cost
    # 0.798508 + 55.262042 = 56.060550) and wins the conflict; the tiny gt ends with nothing.
    both = [gt_instances([[5, 5, 7, 7], [0, 0, 24, 24]], [0, 0])]
    a = SimOTAAssigner()(grid(), both, 2, predictions(logits={(8, 0): LN9}))
    assert positives(a) == [8] and a.matched_gt[0, 8].item() == 1
    assert a.extras["matched_cost"][0, 8].item() == pytest.approx(56.060550, rel=1e-6)


def test_duplicate_gts_lower_index_takes_everything():
    # The same box and class twice: equal costs everywhere, both mark the same priors, every
    # conflict goes to gt 0, which ends with what it would get alone.
    box = [0, 0, 20, 20]
    pred = predictions({1: box, 3: [0, 0, 20, 15], 4: [0, 0, 20, 15], 0: [0, 0, 20, 10]})
    alone = SimOTAAssigner()(grid(), [gt_instances([box], [0])], 2, pred)
    twice = SimOTAAssigner()(grid(), [gt_instances([box, box], [0, 0])], 2, pred)
    assert twice.matched_gt[0].tolist() == alone.matched_gt[0].tolist()
    assert torch.equal(twice.cls_scores, alone.cls_scores)


# ------------------------------------------------------------------ edge cases
def test_no_gts_empty_images_and_degenerate_gts():
    # Image 0: no gt. Image 1: the gt of test_dynamic_k_and_top_k_through_the_assigner.
    # Image 2: a degenerate gt (zero width) only. Batched, image 1 gets what it gets alone.
    box = [0, 0, 20, 20]
    pred = predictions({1: box, 3: [0, 0, 20, 15], 4: [0, 0, 20, 15], 0: [0, 0, 20, 10]})
    batch = {k: v.repeat(3, 1, 1) for k, v in pred.items()}
    gts = [gt_instances(torch.zeros(0, 4), []), gt_instances([box], [1]), gt_instances([[3, 3, 3, 10]], [0])]
    a = SimOTAAssigner()(grid(), gts, 2, batch)
    alone = SimOTAAssigner()(grid(), [gt_instances([box], [1])], 2, pred)
    assert (a.matched_gt[[0, 2]] == -1).all() and (a.cls_scores[[0, 2]] == 0).all()
    assert not a.extras["candidates"][[0, 2]].any()
    assert a.matched_gt[1].tolist() == alone.matched_gt[0].tolist()
    assert torch.equal(a.cls_scores[1], alone.cls_scores[0])
    assert a.extras["dynamic_k"].tolist() == [[0], [3], [0]]
    empty = SimOTAAssigner()(grid(), [gt_instances(torch.zeros(0, 4), [])], 2, pred)
    assert (empty.matched_gt == -1).all() and empty.extras["dynamic_k"].shape == (1, 0)


def test_one_prior_and_gts_outside_the_image():
    # One prior at (4,4): gt (0,0,8,8) holds it → positive. A gt far outside the image
    # (100,100,120,120) has no candidate of its own; next to the first it takes (k = 1, all its
    # costs penalised) the only candidate, and loses the conflict to the gt holding it inside.
    one = PriorGenerator([8], offset=0.5)([torch.zeros(1, 1, 1, 1)])
    pred = predictions(num_priors=1)
    a = SimOTAAssigner()(one, [gt_instances([[0, 0, 8, 8]], [0])], 2, pred)
    assert positives(a) == [0]
    out = SimOTAAssigner()(one, [gt_instances([[100, 100, 120, 120]], [0])], 2, pred)
    assert positives(out) == [] and not out.extras["candidates"].any()
    both = SimOTAAssigner()(one, [gt_instances([[100, 100, 120, 120], [0, 0, 8, 8]], [0, 1])], 2, pred)
    assert positives(both) == [0] and both.matched_gt[0, 0].item() == 1
    no_priors = Priors(torch.zeros(0, 2), torch.zeros(0, 4), torch.zeros(0), torch.zeros(0, dtype=torch.long), [0])
    z = SimOTAAssigner()(no_priors, [gt_instances([[0, 0, 8, 8]], [0])], 2, predictions(num_priors=0))
    assert z.matched_gt.shape == (1, 0)


def test_non_finite_predictions_and_logits():
    # A NaN predicted box and an inverted one have u = 0; a NaN logit counts as probability 0
    # (BCE with target 1 clamped at 100): such a prior is never the cheapest while others are
    # not. Prior 1 predicts the gt (u 1) but its class-0 logit is NaN: cost 100 + ln 2 + 0 =
    # 100.693147 against prior 0's (u 320/400 = 0.8) 2 ln 2 + 3·0.223144 = 1.386294 + 0.669431
    # = 2.055725 → prior 0 (k = 1: Σ u = 1.8). All finite. With every input NaN: q = 0 and u = 0
    # everywhere, equal costs, the lowest prior index inside both (0).
    box = [0, 0, 20, 20]
    pred = predictions({0: [0, 0, 20, 16], 1: box, 3: [float("nan")] * 4, 4: [20, 20, 0, 0]})
    pred["cls_logits"][0, 1, 0] = float("nan")
    pred["cls_logits"][0, 5, 1] = float("inf")
    a = SimOTAAssigner()(grid(), [gt_instances([box], [0])], 2, pred)
    assert positives(a) == [0] and a.extras["matched_cost"][0, 0].item() == pytest.approx(2.055725, rel=1e-6)
    assert all(torch.isfinite(v).all() for v in (a.cls_scores, a.extras["matched_cost"], a.extras["matched_iou"]))
    nan = {k: torch.full_like(v, float("nan")) for k, v in pred.items()}
    a = SimOTAAssigner()(grid(), [gt_instances([box], [0])], 2, nan)
    assert positives(a) == [0] and torch.isfinite(a.extras["matched_cost"]).all()


def test_squared_iou_loss():
    # 1 − IoU²: identical boxes 0; (0,0,20,14) against (0,0,20,20): 1 − 0.49 = 0.51.
    p = torch.tensor([[0.0, 0, 20, 20], [0, 0, 20, 14]])
    t = torch.tensor([[0.0, 0, 20, 20], [0, 0, 20, 20]])
    assert iou_loss(p, t, "squared_iou").tolist() == pytest.approx([0.0, 0.51], abs=1e-6)


# ------------------------------------------------------------------ sparse = dense
def dense_simota(priors, gt_list, pred, center_radius=2.5, candidate_topk=10, iou_weight=3.0, outside_penalty=1e5,
                 iou_eps=1e-8, candidate_rule="box_or_center", objectness=None):
    """The spec's steps on dense (candidates × gts × classes) tensors, image by image: the
    candidate set, the cost of every pair, k from the top-10 IoUs (summed largest first, one
    addition at a time), each gt's k cheapest by (cost, prior), and a prior marked twice to the
    least cost over all gts (then the lowest gt index). Returns (matched, iou, cost, k,
    candidates)."""
    gt = GTBatch.from_instances(gt_list)
    logits, boxes = pred["cls_logits"], pred["pred_boxes"].float()
    n, r, c = logits.shape
    matched = torch.full((n, r), -1, dtype=torch.long)
    iou_out, cost_out = torch.zeros(n, r), torch.zeros(n, r)
    k_out = torch.zeros(gt.classes.shape, dtype=torch.long)
    cand_out = torch.zeros(n, r, dtype=torch.bool)
    probs = logits.float().sigmoid()
    if objectness is not None:
        probs = (probs * pred[objectness].float().sigmoid()).sqrt()
    probs = torch.nan_to_num(probs, nan=0.0)
    for i in range(n):
        gi = gt.valid[i].nonzero().flatten()
        if r == 0 or gi.numel() == 0:
            continue
        box, g = gt.boxes[i, gi], gi.numel()
        pts, half = priors.points[:, None, :], (center_radius * priors.strides)[:, None, None]
        center = (box[:, :2] + box[:, 2:]) / 2
        in_ctr = ((pts > center - half) & (pts < center + half)).all(-1)  # (R, g)
        in_box = ((pts > box[:, :2]) & (pts < box[:, 2:])).all(-1)
        region, inside = (in_ctr, in_ctr) if candidate_rule == "center" else (in_box | in_ctr, in_box & in_ctr)
        cand = region.any(1)
        cand_out[i] = cand
        s = cand.nonzero().flatten()
        if s.numel() == 0:
            continue
        u = torch.nan_to_num(aligned_box_iou(boxes[i, s][:, None, :], box[None]), nan=0.0, posinf=0.0, neginf=0.0)
        q = probs[i, s][:, None, :].expand(-1, g, -1)
        onehot = F.one_hot(gt.classes[i, gi], c).float()[None].expand(s.numel(), -1, -1)
        bce = F.binary_cross_entropy(q, onehot, reduction="none").sum(-1)
        reg = (-torch.log(u.double() + iou_eps)).float()
        cost = bce + iou_weight * reg + outside_penalty * (~inside[s]).float()  # (S, g)
        top = u.topk(min(candidate_topk, s.numel()), dim=0).values
        total = torch.zeros(g)
        for row in top:
            total = total + row
        k = torch.floor(total).long().clamp(min=1)
        order = torch.sort(cost, dim=0, stable=True).indices
        rank = torch.empty_like(order).scatter_(0, order, torch.arange(s.numel())[:, None].expand(-1, g).contiguous())
        marked = rank < k[None]
        count = marked.sum(1)
        least = torch.where(cost == cost.min(1, keepdim=True).values, torch.arange(g), g).amin(1)
        owner = torch.where(count > 1, least, marked.long().argmax(1))
        pos = count > 0
        sp, op = s[pos], owner[pos]
        matched[i, sp] = gi[op]
        iou_out[i, sp] = u[pos, op]
        cost_out[i, sp] = cost[pos, op]
        k_out[i, gi] = k
    return matched, iou_out, cost_out, k_out, cand_out


def random_case(seed):
    """Seeded random batch that hits the rules' edges: 0-50 gts of 0.5-60 px (tiny ones
    between grid points, crowds, duplicates, degenerate ones, some outside the image),
    predictions near the anchors and on the gts (u = 1, ties), duplicated predictions and
    logits (cost ties), NaN / inverted / huge boxes, NaN and ±inf logits, empty images, and
    the assigner's options (penalty 0 and 5 send every gt down the exhaustive path)."""
    g = torch.Generator().manual_seed(seed)
    ri = lambda lo, hi: int(torch.randint(lo, hi + 1, (1,), generator=g))  # noqa: E731
    rf = lambda *shape: torch.rand(*shape, generator=g)  # noqa: E731
    strides = [[8, 16], [8, 16, 32], [16]][ri(0, 2)]
    h, w = ri(20, 96), ri(20, 96)
    feats = [torch.zeros(1, 1, math.ceil(h / s), math.ceil(w / s)) for s in strides]
    priors = PriorGenerator(strides, offset=0.5 * ri(0, 1), anchor_scale=float(ri(1, 4)))(feats)
    r, n, c = len(priors), ri(1, 3), [1, 3, 3, 7][ri(0, 3)]
    gt_list, boxes_per_image = [], []
    for _ in range(n):
        k = ri(0, 50) if ri(0, 5) else 0
        ctr = rf(k, 2) * torch.tensor([w * 1.2, h * 1.2]) - torch.tensor([w * 0.1, h * 0.1])
        size = torch.where(rf(k, 1) < 0.3, 0.5 + rf(k, 2) * 6, 2 + rf(k, 2) * 58)  # a third tiny
        boxes = torch.cat([ctr - size / 2, ctr + size / 2], 1)
        if k > 2 and ri(0, 1):
            boxes[1] = boxes[0]  # a duplicate (maybe another class)
        if k > 3 and ri(0, 2) == 0:
            boxes[2, 2] = boxes[2, 0]  # degenerate: zero width
        if k > 4 and ri(0, 3) == 0:
            boxes[3] = torch.tensor([2 * w, 2 * h, 2 * w + 10, 2 * h + 10])  # outside the image
        gt_list.append(gt_instances(boxes, torch.randint(0, c, (k,), generator=g), (h, w)))
        boxes_per_image.append(boxes)
    anchors = priors.anchors[None].expand(n, r, 4)
    pred = anchors * (0.3 + rf(1)) + torch.randn(n, r, 4, generator=g) * priors.strides[None, :, None] * rf(1)
    for i, boxes in enumerate(boxes_per_image):  # some priors predict a gt (±1 px, or exactly)
        if len(boxes):
            pick = torch.randint(0, r, (r // 3,), generator=g)
            which = torch.randint(0, len(boxes), (r // 3,), generator=g)
            pred[i, pick] = boxes[which] + torch.randn(r // 3, 4, generator=g) * (rf(1) < 0.5).float()
    dup = torch.randint(0, r, (r // 6,), generator=g)
    src = torch.randint(0, r, (r // 6,), generator=g)
    pred[:, dup] = pred[:, src]
    pred[:, ri(0, r - 1)] = float("nan")
    pred[:, ri(0, r - 1)] = torch.tensor([30.0, 30, 10, 10])  # inverted
    pred[:, ri(0, r - 1)] = torch.tensor([-1e5, -1e5, 1e5, 1e5])  # huge
    logits = torch.randn(n, r, c, generator=g) * 2 - 1
    logits[:, dup] = logits[:, src]
    logits[0, ri(0, r - 1), 0] = float("nan")
    logits[0, ri(0, r - 1), c - 1] = -float("inf")
    logits[0, ri(0, r - 1), 0] = float("inf")
    preds = {"pred_boxes": pred, "cls_logits": logits}
    kwargs = dict(
        center_radius=[2.5, 2.5, 1.5, 0.5][ri(0, 3)],
        candidate_topk=[10, 10, 3, 1][ri(0, 3)],
        iou_weight=[3.0, 3.0, 1.0, 0.0][ri(0, 3)],
        outside_penalty=[1e5, 1e5, 1e6, 5.0, 0.0][ri(0, 4)],
        candidate_rule=["box_or_center", "box_or_center", "center"][ri(0, 2)],
    )
    if ri(0, 3) == 0:
        preds["objectness"] = torch.randn(n, r, 1, generator=g)
        kwargs["objectness"] = "objectness"
    return priors, gt_list, preds, c, kwargs


def assert_same_as_dense(priors, gt_list, pred, c, kwargs):
    a = SimOTAAssigner(**kwargs)(priors, gt_list, c, pred)
    matched, iou, cost, k, cand = dense_simota(priors, gt_list, pred, **kwargs)
    assert torch.equal(a.matched_gt, matched)
    assert torch.equal(a.extras["matched_iou"], iou) and torch.equal(a.cls_scores, iou)
    assert torch.equal(a.extras["matched_cost"], cost)
    assert torch.equal(a.extras["dynamic_k"], k) and torch.equal(a.extras["candidates"], cand)
    return a


@pytest.mark.parametrize("block", range(4))
def test_sparse_equals_dense_on_random_cases(block):
    # 4 × 75 = 300 seeded cases, bit for bit.
    hits = 0
    for seed in range(75 * block, 75 * (block + 1)):
        a = assert_same_as_dense(*random_case(seed))
        hits += int(a.pos_mask.sum())
    assert hits > 500  # the cases do have positives


def _crowd(num_gts=1000, seed=0):
    """num_gts gts of 1-60 px on a 256×256 image (1344 priors), predictions near the priors'
    anchors and on the gts, random logits over 5 classes."""
    g = torch.Generator().manual_seed(seed)
    priors = PriorGenerator([8, 16, 32], offset=0.5, anchor_scale=4)(
        [torch.zeros(1, 1, 256 // s, 256 // s) for s in (8, 16, 32)]
    )
    r = len(priors)
    ctr = torch.rand(num_gts, 2, generator=g) * 256
    half = (1 + torch.rand(num_gts, 2, generator=g) * 59) / 2
    boxes = torch.cat([ctr - half, ctr + half], 1)
    gts = [gt_instances(boxes, torch.randint(0, 5, (num_gts,), generator=g), (256, 256))]
    pred = priors.anchors[None] + torch.randn(1, r, 4, generator=g) * 6
    pick = torch.randint(0, r, (r // 2,), generator=g)
    pred[0, pick] = boxes[torch.randint(0, num_gts, (r // 2,), generator=g)] + torch.randn(r // 2, 4, generator=g)
    return priors, gts, {"pred_boxes": pred, "cls_logits": torch.randn(1, r, 5, generator=g)}, 5, {}


def test_sparse_equals_dense_crowded_1000_gts(monkeypatch):
    # Exact, and the exhaustive ranking runs only for the gts short of in-both priors.
    ranked = []
    exhaustive = SimOTAAssigner.exhaustive_marks
    def counted(self, bags, m, ctx):
        ranked.append(bags.numel())
        return exhaustive(self, bags, m, ctx)

    monkeypatch.setattr(SimOTAAssigner, "exhaustive_marks", counted)
    a = assert_same_as_dense(*_crowd())
    assert 100 < int(a.pos_mask.sum()) < 1344
    assert ranked and 0 < ranked[0] < 400


def test_sparse_equals_dense_on_point_set_priors():
    # The same random cases with the priors as a point set (no grid): the candidates and the
    # in-both pairs come from region_pair_chunks and center_region instead of index spans.
    hits = 0
    for seed in range(40):
        priors, gt_list, pred, c, kwargs = random_case(seed)
        points = Priors(priors.points, priors.anchors, priors.strides, priors.levels, priors.num_per_level)
        hits += int(assert_same_as_dense(points, gt_list, pred, c, kwargs).pos_mask.sum())
    assert hits > 50


@pytest.mark.parametrize("variant", ["displaced", "penalty_0", "saturated", "ties"])
def test_sparse_equals_dense_crowded_variants(variant, monkeypatch):
    # 300 gts on 1344 priors, bit for bit, down the paths the benchmark inputs take:
    #   displaced: the predicted boxes at half the anchors' coordinates (as in
    #     benchmarks/bench_assigners.py), so most gts overlap no good box and k is decided by
    #     the IoU bound after adaptive searches below θ = 0.5;
    #   penalty_0: every gt ranked over all candidates, with cost bounds;
    #   saturated: logits ×12 (probabilities exactly 0 or 1: BCE's clamp, the per-prior sums
    #     of clamped logs);
    #   ties: equal logits and predictions everywhere (every cost of a gt ties).
    priors, gts, pred, c, kwargs = _crowd(num_gts=300, seed=1)
    if variant == "displaced":
        g = torch.Generator().manual_seed(2)
        boxes = priors.anchors[None] * 0.5 + torch.randn(1, len(priors), 4, generator=g) * 4
        lo, hi = boxes[..., :2].minimum(boxes[..., 2:]), boxes[..., :2].maximum(boxes[..., 2:]) + 1
        pred["pred_boxes"] = torch.cat([lo, hi], -1)
    elif variant == "penalty_0":
        kwargs = dict(outside_penalty=0.0, candidate_topk=3)
    elif variant == "saturated":
        pred["cls_logits"] = pred["cls_logits"] * 12
    else:
        pred["cls_logits"] = torch.zeros_like(pred["cls_logits"])
        pred["pred_boxes"] = torch.tensor([40.0, 40, 60, 60]).expand_as(pred["pred_boxes"]).clone()
    searches = []
    search = SimOTAAssigner.top_ious
    def counted(self, index, pending, theta, ctx):
        searches.append((pending.numel(), float(theta.max())))
        return search(self, index, pending, theta, ctx)

    monkeypatch.setattr(SimOTAAssigner, "top_ious", counted)
    a = assert_same_as_dense(priors, gts, pred, c, kwargs)
    assert int(a.pos_mask.sum()) > 50
    if variant == "displaced":  # some gts searched again, below the first level
        assert len(searches) > 1 and 0 < searches[1][1] < 0.5


@pytest.mark.parametrize("num_classes", [1, 7, 8, 13, 80, 81])
def test_cost_bounds_contain_the_exact_cost(num_classes):
    # Every pair's [lo, hi] (per-prior Σ_c BCE(q_c, 0) with the class term swapped, float64)
    # holds its exact float32 cost (the (pairs, C) BCE row sum), and is narrow; probabilities
    # include exact 0 and 1 (±inf logits), saturated ones and tiny ones.
    a = SimOTAAssigner()
    g = torch.Generator().manual_seed(num_classes)
    r, n_gt, p = 3000, 9, 20000
    logits = torch.randn(1, r, num_classes, generator=g) * 4
    u = torch.rand(1, r, num_classes, generator=g)
    logits[u < 0.02] = float("inf")
    logits[(u >= 0.02) & (u < 0.04)] = -float("inf")
    logits[(u >= 0.04) & (u < 0.1)] *= 10
    probs = a.scores({"cls_logits": logits})[0]
    for dense_rows in (True, False):  # every row / the candidate rows gathered
        candidates = torch.rand(r, generator=g) < (0.9 if dense_rows else 0.3)
        ctx = {"probs": probs, "labels": torch.randint(0, num_classes, (n_gt,), generator=g), "priors": range(r)}
        ctx["neg"] = a.negative_sums(candidates, ctx)
        rows = candidates.nonzero().flatten()
        prior = rows[torch.randint(0, rows.numel(), (p,), generator=g)]
        iou = torch.rand(p, generator=g)
        iou[:2000], iou[2000:3000] = 0.0, 1.0
        pairs = CandidatePairs(torch.zeros(p, dtype=torch.long), prior, torch.randint(0, n_gt, (p,), generator=g), n_gt,
                               {"iou": iou, "inside": torch.rand(p, generator=g) < 0.7})
        a.estimate(pairs, ctx)
        exact = a.exact_costs(pairs, ctx).double()
        lo, hi = pairs.values["lo"], pairs.values["hi"]
        assert bool(((lo <= exact) & (exact <= hi)).all())
        assert bool((hi - lo <= 1e-3 * (exact.abs() + 1)).all())


# ------------------------------------------------------------------ all-reduced normaliser
def _simota_loss():
    return DenseDetectionLoss(cls_loss="qfl", qfl_beta=0.0, cls_normalizer="num_pos", box_loss="squared_iou",
                              box_weight=5.0, box_normalizer="num_pos")


def test_bce_loss_and_normaliser_by_hand():
    # The soft-target case (prior 4 positive, target 0.7 at class 3 of 4), logits 0, every
    # prediction (0,0,20,14) here: classification = BCE over 9 priors × 4 classes: 35 entries
    # with target 0 (ln 2 each) and one with 0.7 (BCE(0.5, 0.7) = ln 2 too) = 36·0.693147 =
    # 24.953299, over 1 positive; box: 5·(1 − 0.7²) = 2.55.
    pred = predictions({4: [0, 0, 20, 14]}, num_classes=4)
    a = SimOTAAssigner()(grid(), [gt_instances([[0, 0, 20, 20]], [3])], 4, pred)
    loss = _simota_loss()
    boxes = torch.tensor([0.0, 0, 20, 14]).repeat(1, 9, 1)
    assert loss.classification(pred["cls_logits"], a, a.cls_scores).item() == pytest.approx(24.953299, rel=1e-6)
    assert loss.regression(boxes, boxes, a, None, grid()).item() == pytest.approx(2.55, rel=1e-5)


def _normaliser_inputs():
    # Two images with different positive counts: per-process normalisers would not give the
    # combined loss.
    g = torch.Generator().manual_seed(3)
    priors = PriorGenerator([8, 16], offset=0.5, anchor_scale=4)([torch.zeros(1, 1, 8, 8), torch.zeros(1, 1, 4, 4)])
    r = len(priors)
    gts = [
        gt_instances([[4, 4, 40, 30], [20, 30, 60, 60], [2, 40, 20, 60]], [0, 2, 1], (64, 64)),
        gt_instances([[10, 40, 30, 62]], [1], (64, 64)),
    ]
    pred = priors.anchors[None].repeat(2, 1, 1) + torch.randn(2, r, 4, generator=g) * 4
    logits = torch.randn(2, r, 3, generator=g, requires_grad=True)
    return priors, gts, pred, logits


def _losses(priors, gts, pred, logits):
    a = SimOTAAssigner()(priors, gts, 3, {"pred_boxes": pred, "cls_logits": logits})
    loss = _simota_loss()
    cls = loss.classification(logits, a, a.cls_scores)
    box = loss.regression(pred, pred, a, None, priors)
    return torch.stack([cls, box]).detach(), a


def _normaliser_worker(rank, world, init_file, out_dir):
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        priors, gts, pred, logits = _normaliser_inputs()
        out, _ = _losses(priors, gts[rank : rank + 1], pred[rank : rank + 1], logits[rank : rank + 1])
        torch.save(out, os.path.join(out_dir, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


def test_normaliser_all_reduced_over_two_processes(tmp_path):
    # Each process divides by the all-reduced mean number of positives (max 1); the mean of the
    # two processes' losses then equals one process's loss on both images (gloo, forked CPU
    # processes) — the design's choice; the YOLOX authors divide by the local count.
    priors, gts, pred, logits = _normaliser_inputs()
    combined, a = _losses(priors, gts, pred, logits)
    per_image = a.pos_mask.sum(1)
    assert per_image[0] > per_image[1] > 0
    halves = [_losses(priors, gts[i : i + 1], pred[i : i + 1], logits[i : i + 1])[0] for i in (0, 1)]
    assert not torch.allclose((halves[0] + halves[1]) / 2, combined, rtol=1e-3)
    args = (2, str(tmp_path / "dist_init"), str(tmp_path))
    mp.start_processes(_normaliser_worker, args=args, nprocs=2, join=True, start_method="fork")
    per_rank = [torch.load(tmp_path / f"rank{r}.pt") for r in range(2)]
    assert torch.allclose((per_rank[0] + per_rank[1]) / 2, combined, rtol=1e-5, atol=1e-7)


# ------------------------------------------------------------------ configs
CONFIGS = {  # file -> meta-architecture
    "simota_fcos_R_50_FPN_1x.py": "DslaFCOS",
    "simota_atss_r18_synth.py": "DslaATSS",
    "simota_fcos_r18_synth.py": "DslaFCOS",
}


def test_every_config_in_the_folder_is_listed():
    assert sorted(f for f in os.listdir(YOLOX_CONFIGS) if f.endswith(".py")) == sorted(CONFIGS)


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_config_parts_and_one_training_step(name):
    cfg = LazyConfig.load(os.path.join(YOLOX_CONFIGS, name))
    validate_config(cfg)
    m = cfg.model
    assert m._target_.__name__ == CONFIGS[name] and m.head.quality_branch is None
    assert (m.quality.branch, m.quality.cls_target) == (None, "static")
    assert (m.loss.cls_loss, m.loss.qfl_beta, m.loss.cls_normalizer) == ("qfl", 0.0, "num_pos")
    assert (m.loss.box_loss, m.loss.box_weight, m.loss.box_normalizer) == ("squared_iou", 5.0, "num_pos")
    if "R_50" in name:
        assert cfg.train.max_iter == 12 * 7330 and cfg.optimizer.lr == 0.01
    model = instantiate(m)
    a = model.assigner
    assert type(a) is SimOTAAssigner and a.objectness is None
    assert (a.center_radius, a.candidate_topk, a.iou_weight, a.outside_penalty, a.candidate_rule) == (
        2.5, 10, 3.0, 1e5, "box_or_center"
    )
    model.train()
    inputs = make_inputs([[[10, 12, 60, 50], [70, 30, 120, 110], [5, 5, 9, 9]]], [[0, 5, 3]], size=128)
    with EventStorage(0):
        losses = model(inputs)
    assert set(losses) == {"loss_cls", "loss_box_reg"} and all(torch.isfinite(v) for v in losses.values())
    sum(losses.values()).backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.head.parameters())


def test_recent_rule_helper():
    from dsla_d2.model_zoo import get_config

    simota_assigner = get_config("projects/YOLOX/configs/common/simota.py", keys="simota_assigner")
    a = instantiate(simota_assigner(recent=True))
    assert (a.center_radius, a.outside_penalty, a.candidate_rule) == (1.5, 1e6, "center")
