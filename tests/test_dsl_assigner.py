"""RTMDet's dynamic soft-label assignment and its loss (Lyu et al., "RTMDet: An Empirical
Study of Designing Real-Time Object Detectors", arXiv:2212.07784; mmdetection 3.3's
``DynamicSoftLabelAssigner`` where it is more specific): hand-derived vectors, edge cases,
the sparse search against a dense reference, the all-reduced normaliser, the visualiser's
view and the RTMDet configs.

Cost of a (prior p, gt g) pair (spec ``rtmdet_dsl.md``): C = C_cls + 3·C_reg + C_center with
  C_center = 10^(d − 3), d = |point − gt centre| / stride;
  3·C_reg  = −3·ln(u + 1e−7), u = IoU(predicted box of p, g);
  C_cls    = Σ_c BCE(p_c, y_c)·|y_c − p_c|², y = u at g's class, 0 elsewhere, p = σ(logit).

Numbers used below (ln 2 = 0.6931472, ln 10 = 2.3025851):
  C_center: d 0 → 10^−3 = 0.001; d 1 → 0.01; d √2 → 10^(1.4142136 − 3) = 10^−1.5857864 =
    0.02595455; d 2 → 0.1; d 3 → 1; d 5 → 100; d 40 → clamped to 30 → 1e27.
  3·C_reg: ln(u + 1e−7) = ln u + 1e−7/u, so
    u 0.8: −3·(−0.2231436 + 1.25e−7) = 0.6694307 − 0.0000004 = 0.6694303;
    u 0.5: 3·0.6931472 − 6e−7 = 2.0794409;
    u 0.6: 3·0.5108256 − 5e−7 = 1.5324763;
    u 0.9: 3·0.1053605 − 3.3e−7 = 0.3160812;
    u 0  : −3·ln 1e−7 = 3·16.1180957 = 48.3542870.
  C_cls with one class: p 0.3, u 0.8: BCE = −(0.8·ln 0.3 + 0.2·ln 0.7) = 0.8·1.2039728 +
    0.2·0.3566749 = 1.0345132, × (0.8 − 0.3)² = 0.25 → 0.2586283. A second class (not g's)
    with p 0.1 adds BCE(0.1, 0)·0.1² = −ln 0.9·0.01 = 0.1053605·0.01 = 0.0010536 → 0.2596819.
    Logit 0 (p 0.5): BCE(x = 0, y) = ln 2 for every y, so C_cls = ln 2·(u − 0.5)²:
    u 0.9 → 0.6931472·0.16 = 0.1109036; u 0.8 → ·0.09 = 0.0623832; u 0.6 → ·0.01 = 0.006931472;
    u 0.5 → 0; u 1 or 0 → ·0.25 = 0.1732868.
  Total, one class, p 0.3, u 0.8, d 1: 0.2586283 + 0.6694303 + 0.01 = 0.9380586.
  Dynamic k: IoUs 0.9, 0.85, 0.8, 0.6, 0.3 → Σ 3.45 → k 3; 0.6 + 0.8 = 1.4 → k 1.

Grids: one level, stride 8, offset 0 (RTMDet's points at (j·s, i·s)), W × W points at
x, y ∈ {0, 8, …}; prior index W·i + j (i: row/y, j: column/x). Every prior predicts the
box FAR = (200, 200, 210, 210) (IoU 0 with every gt) unless a case says otherwise, and has
logit 0 (p = 0.5) unless a case says otherwise.
"""
import dataclasses
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

from dsla_d2.assigners import ASSIGNER_REGISTRY, DynamicSoftLabelAssigner, GTBatch
from dsla_d2.assigners import dsl as dsl_module
from dsla_d2.assigners import pairs as pairs_module
from dsla_d2.assigners.dsl import (
    cost_lower_bound,
    dynamic_k,
    iou_cost,
    sanitize_logits,
    soft_center_prior,
    soft_classification_cost,
)
from dsla_d2.box_ops import aligned_box_iou
from dsla_d2.losses import DenseDetectionLoss
from dsla_d2.priors import PriorGenerator
from dsla_d2.quality import QualityCoupling

from tiny import gt_instances, make_inputs

FAR = [200.0, 200.0, 210.0, 210.0]
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RTMDET_CONFIGS = os.path.join(ROOT, "projects", "RTMDet", "configs")


def grid(width, stride=8, offset=0.0):
    return PriorGenerator([stride], offset=offset, anchor_scale=2)([torch.zeros(1, 1, width, width)])


def predictions(num_priors, boxes=None, logits=None, num_classes=1):
    """(1, R, 4) predicted boxes (FAR unless given per prior) and (1, R, C) logits (0 unless
    given as {(prior, class): logit})."""
    pred = torch.tensor(FAR).repeat(1, num_priors, 1)
    for p, box in (boxes or {}).items():
        pred[0, p] = torch.tensor(box, dtype=torch.float32)
    cls = torch.zeros(1, num_priors, num_classes)
    for (p, c), v in (logits or {}).items():
        cls[0, p, c] = v
    return {"pred_boxes": pred, "cls_logits": cls}


def positives(a, image=0):
    return torch.nonzero(a.matched_gt[image] >= 0).flatten().tolist()


def logit(p):
    return math.log(p / (1 - p))


def dsl_loss():
    """RTMDet's loss: QFL (β 2) and GIoU × 2 weighted by u, both over max(all-reduced Σ u, 1)."""
    return DenseDetectionLoss(
        cls_loss="qfl", qfl_beta=2.0, cls_normalizer="sum_scores", cls_normalizer_min=1.0,
        box_loss="giou", box_weight=2.0, box_normalizer="sum_weights", box_normalizer_min=1.0,
        normalizer_floor="clamp",
    )


# ------------------------------------------------------------------ hand-derived vectors
def test_registered_and_arguments():
    assert ASSIGNER_REGISTRY.get("DynamicSoftLabelAssigner") is DynamicSoftLabelAssigner
    a = DynamicSoftLabelAssigner()
    assert (a.soft_center_radius, a.topk, a.iou_weight, a.max_center_distance) == (3.0, 13, 3.0, 30.0)
    assert a.required_predictions == ("pred_boxes", "cls_logits")
    for bad in (dict(topk=0), dict(iou_weight=-1), dict(iou_weight=float("nan")), dict(soft_center_radius=math.inf),
                dict(max_center_distance=0), dict(max_center_distance=45, soft_center_radius=3)):
        with pytest.raises(ValueError):
            DynamicSoftLabelAssigner(**bad)
    pred = predictions(16)
    with pytest.raises(ValueError, match="classes"):
        a(grid(4), [gt_instances([[1, 1, 20, 20]], [0])], 3, pred)
    with pytest.raises(ValueError, match="outside"):
        a(grid(4), [gt_instances([[1, 1, 20, 20]], [1])], 1, pred)
    with pytest.raises(ValueError, match="needs the predictions"):
        a(grid(4), [gt_instances([[1, 1, 20, 20]], [0])], 1, {"pred_boxes": pred["pred_boxes"]})


def test_soft_center_prior_vectors():
    d = torch.tensor([0.0, 1.0, math.sqrt(2.0), 2.0, 3.0, 5.0])
    assert soft_center_prior(d).tolist() == pytest.approx([0.001, 0.01, 0.02595455, 0.1, 1.0, 100.0], rel=1e-6)
    # beyond 30 strides the prior is clamped: 10^(30 − 3) = 1e27 for d 30, 40 and 1e6
    assert soft_center_prior(torch.tensor([30.0, 40.0, 1e6])).tolist() == pytest.approx([1e27] * 3, rel=1e-6)
    # β = 4 divides every value by 10: d 1 → 0.001
    assert soft_center_prior(torch.tensor([1.0]), soft_center_radius=4.0).item() == pytest.approx(0.001, rel=1e-6)


def test_soft_center_prior_of_a_pair_uses_the_priors_stride():
    # Point (16, 8) (prior 6 of the 4×4 grid), stride 8, gt (−4, 0, 20, 16) with centre (8, 8):
    # d = 8 px / 8 = 1 → 0.01. The gt holds points (0, 8), (8, 8), (16, 8) = priors 4, 5, 6.
    # Prior 6 predicts (−4, 0, 20, 12.8): inside the gt, area 24·12.8 = 307.2 of 384 → u 0.8,
    # logit for p 0.3; priors 4, 5 predict FAR (u 0). k = max(1, ⌊0.8⌋) = 1 and prior 6 is
    # the cheapest (0.9380586, the total of the docstring; the FAR ones cost > 48): the only
    # positive, with cost 0.9380586 and target u 0.8.
    pred = predictions(16, {6: [-4, 0, 20, 12.8]}, {(6, 0): logit(0.3)})
    a = DynamicSoftLabelAssigner()(grid(4), [gt_instances([[-4, 0, 20, 16]], [0], (32, 32))], 1, pred)
    assert positives(a) == [6]
    assert a.extras["cost"][0, 6].item() == pytest.approx(0.9380586, rel=2e-6)
    assert a.cls_scores[0, 6].item() == pytest.approx(0.8, rel=1e-6)
    # a second class (not the gt's) with p 0.1 adds 0.0010536 → 0.9391122
    pred2 = predictions(16, {6: [-4, 0, 20, 12.8]}, {(6, 0): logit(0.3), (6, 1): logit(0.1)}, num_classes=2)
    a2 = DynamicSoftLabelAssigner()(grid(4), [gt_instances([[-4, 0, 20, 16]], [0], (32, 32))], 2, pred2)
    assert a2.extras["cost"][0, 6].item() == pytest.approx(0.9391122, rel=2e-6)


def test_iou_cost_vectors():
    u = torch.tensor([0.8, 0.5, 0.6, 0.9, 0.0])
    assert iou_cost(u).tolist() == pytest.approx([0.6694303, 2.0794409, 1.5324763, 0.3160812, 48.354287], rel=1e-6)
    assert iou_cost(torch.tensor([0.5]), weight=1.0).item() == pytest.approx(2.0794409 / 3, rel=1e-6)


def test_soft_classification_cost_vectors():
    one = soft_classification_cost(torch.tensor([[logit(0.3)]]), torch.tensor([0]), torch.tensor([0.8]))
    assert one.item() == pytest.approx(0.2586283, rel=1e-6)
    two = soft_classification_cost(torch.tensor([[logit(0.3), logit(0.1)]]), torch.tensor([0]), torch.tensor([0.8]))
    assert two.item() == pytest.approx(0.2596819, rel=1e-6)
    # logit 0: ln 2·(u − 0.5)² for u 0.9, 0.8, 0.6, 0.5, 1.0
    u = torch.tensor([0.9, 0.8, 0.6, 0.5, 1.0])
    zero = soft_classification_cost(torch.zeros(5, 1), torch.zeros(5, dtype=torch.long), u)
    assert zero.tolist() == pytest.approx([0.1109036, 0.0623832, 0.006931472, 0.0, 0.1732868], rel=1e-6, abs=1e-9)


def test_sanitized_logits_and_their_costs():
    # NaN → −100 (p = 0): with u 0.5 the soft term is BCE(−100, 0.5)·0.5² = (0.5·100 + ~0)·0.25
    # = 12.5; +inf → +100, −inf → −100; both finite.
    x = sanitize_logits(torch.tensor([float("nan"), float("inf"), -float("inf"), 3.0, 500.0]))
    assert x.tolist() == [-100.0, 100.0, -100.0, 3.0, 100.0]
    c = soft_classification_cost(torch.tensor([[float("nan")]]), torch.tensor([0]), torch.tensor([0.5]))
    assert c.item() == pytest.approx(12.5, rel=1e-6)


def test_dynamic_k_vectors():
    assert dynamic_k(torch.tensor([0.9 + 0.85 + 0.8 + 0.6 + 0.3, 1.4, 0.0, 0.99, 13.0])).tolist() == [3, 1, 1, 1, 13]


def test_dynamic_k_and_picks_end_to_end():
    # 4×4 grid; gt (−2, −2, 18, 18), area 400, centre (8, 8), holds the 9 points with
    # x, y ∈ {0, 8, 16}: priors 0, 1, 2, 4, 5, 6, 8, 9, 10 (the valid priors). Predicted boxes
    # (−2, −2, 18, −2 + 20·f) inside it have u = f:
    #   prior 5 (8, 8),  d 0:  u 0.9 → 0.1109036 + 0.3160812 + 0.001     = 0.4279848
    #   prior 6 (16, 8), d 1:  u 0.85 → ln2·0.1225 = 0.0849105, 3·0.1625189 − 3.5e−7
    #                          = 0.4875564, + 0.01                       = 0.5824670
    #   prior 1 (8, 0),  d 1:  u 0.8 → 0.0623832 + 0.6694303 + 0.01      = 0.7418135
    #   prior 10 (16,16), d √2: u 0.6 → 0.0069315 + 1.5324763 + 0.02595455 = 1.5653624
    #   prior 0 (0, 0),  d √2: u 0.3 → ln2·0.04 = 0.0277259 + 3·1.2039728 − 1e−6
    #                          = 3.6119174, + 0.02595455                  = 3.6655979
    #   the other four (FAR, u 0): > 0.17 + 48.35.
    # k = ⌊0.9 + 0.85 + 0.8 + 0.6 + 0.3⌋ = ⌊3.45⌋ = 3: priors 5, 6, 1, targets 0.9, 0.85, 0.8.
    f = {5: 0.9, 6: 0.85, 1: 0.8, 10: 0.6, 0: 0.3}
    pred = predictions(16, {p: [-2, -2, 18, -2 + 20 * v] for p, v in f.items()})
    a = DynamicSoftLabelAssigner()(grid(4), [gt_instances([[-2, -2, 18, 18]], [0], (32, 32))], 1, pred)
    assert a.extras["dynamic_k"].tolist() == [[3]]
    assert positives(a) == [1, 5, 6]
    assert a.cls_scores[0, [1, 5, 6]].tolist() == pytest.approx([0.8, 0.9, 0.85], rel=1e-6)
    assert a.extras["cost"][0, [1, 5, 6]].tolist() == pytest.approx([0.7418135, 0.4279848, 0.5824670], rel=2e-6)
    # topk = 2 sums only 0.9 + 0.85 = 1.75 → k 1: prior 5 alone
    a2 = DynamicSoftLabelAssigner(topk=2)(grid(4), [gt_instances([[-2, -2, 18, 18]], [0], (32, 32))], 1, pred)
    assert a2.extras["dynamic_k"].tolist() == [[1]] and positives(a2) == [5]


def test_centre_prior_outweighs_a_better_iou():
    # 4×4 grid; gt (−25, 1, 25, 15), area 700, centre (0, 8), holds priors 4 (0, 8), 5, 6,
    # 7 (24, 8). Prior 4 (d 0) predicts (−25, 1, 5, 15): u 30/50 = 0.6; prior 7 (d 24/8 = 3)
    # predicts (−25, 1, 15, 15): u 0.8. k = ⌊1.4⌋ = 1.
    #   prior 4: 0.0069315 + 1.5324763 + 0.001 = 1.5404078
    #   prior 7: 0.0623832 + 0.6694303 + 1     = 1.7318135  → prior 4 wins, target 0.6.
    # With β = 4 the centre costs are 0.0001 and 0.1: 1.5395078 against 0.8318135 → prior 7.
    pred = predictions(16, {4: [-25, 1, 5, 15], 7: [-25, 1, 15, 15]})
    gts = [gt_instances([[-25, 1, 25, 15]], [0], (32, 32))]
    a = DynamicSoftLabelAssigner()(grid(4), gts, 1, pred)
    assert positives(a) == [4] and a.cls_scores[0, 4].item() == pytest.approx(0.6, rel=1e-6)
    assert a.extras["cost"][0, 4].item() == pytest.approx(1.5404078, rel=2e-6)
    b = DynamicSoftLabelAssigner(soft_center_radius=4.0)(grid(4), gts, 1, pred)
    assert positives(b) == [7] and b.extras["cost"][0, 7].item() == pytest.approx(0.8318135, rel=2e-6)


def conflict_case():
    """6×6 grid (48 px). Gts A = B = (10, 10, 22, 22) (a duplicate; centre (16, 16)) hold only
    p = prior 14 (16, 16); gt C = (26, 10, 38, 22) (centre (32, 16)) holds only q = prior 16
    (32, 16). q predicts C itself; p predicts (26, 10, 38, 20.8): u 129.6/144 = 0.9 with C,
    0 with A (no overlap)."""
    pred = predictions(36, {14: [26, 10, 38, 20.8], 16: [26, 10, 38, 22]})
    gts = [gt_instances([[10, 10, 22, 22], [10, 10, 22, 22], [26, 10, 38, 22]], [0, 0, 0], (48, 48))]
    return grid(6), gts, pred


def test_shared_prior_goes_to_the_lowest_cost_over_all_gts():
    # Valid priors: p, q. Costs (logit 0):
    #   A (and B): p: u 0, d 0 → 0.1732868 + 48.354287 + 0.001 = 48.5285738
    #              q: u 0, d 2 → 0.1732868 + 48.354287 + 0.1   = 48.6275738
    #              k_A = max(1, ⌊0⌋) = 1 → A and B both take p.
    #   C:         q: u 1, d 0 → 0.1732868 − 3e−7 + 0.001       = 0.1742865
    #              p: u 0.9, d 2 → 0.1109036 + 0.3160812 + 0.1  = 0.5269848
    #              k_C = ⌊1 + 0.9⌋ = 1 → C takes q.
    # p is taken twice (A, B): the code gives it to the lowest cost over *all* gts, C's
    # 0.5269848, though C did not take it. C ends with p and q; A and B with nothing.
    priors, gts, pred = conflict_case()
    a = DynamicSoftLabelAssigner()(priors, gts, 1, pred)
    assert positives(a) == [14, 16] and a.matched_gt[0, [14, 16]].tolist() == [2, 2]
    assert a.extras["dynamic_k"].tolist() == [[1, 1, 1]]
    assert a.extras["cost"][0, [14, 16]].tolist() == pytest.approx([0.5269848, 0.1742865], rel=2e-6)
    assert a.cls_scores[0, [14, 16]].tolist() == pytest.approx([0.9, 1.0], rel=1e-6)
    assert a.box_targets[0, 14].tolist() == [26, 10, 38, 22]


def test_shared_prior_among_its_takers_lowest_cost_then_lowest_index():
    # Without C the same p is taken by A and B at equal cost 48.5285738: the lower index, A.
    # With A = (10, 10, 22, 22) and B = (12, 12, 20, 20) (centre (16, 16), holds p too) and p
    # predicting B itself: u(p, B) = 1, u(p, A) = 64/144 = 0.4444444; k_A = k_B = 1, both take
    # p (their only valid prior); B's cost 0.1742865 < A's, so B keeps it.
    priors = grid(6)
    pred = predictions(36)
    gts = [gt_instances([[10, 10, 22, 22], [10, 10, 22, 22]], [0, 0], (48, 48))]
    a = DynamicSoftLabelAssigner()(priors, gts, 1, pred)
    assert positives(a) == [14] and a.matched_gt[0, 14].item() == 0
    assert a.extras["cost"][0, 14].item() == pytest.approx(48.5285738, rel=2e-6)
    pred = predictions(36, {14: [12, 12, 20, 20]})
    gts = [gt_instances([[10, 10, 22, 22], [12, 12, 20, 20]], [0, 0], (48, 48))]
    b = DynamicSoftLabelAssigner()(priors, gts, 1, pred)
    assert positives(b) == [14] and b.matched_gt[0, 14].item() == 1
    assert b.cls_scores[0, 14].item() == 1.0


def test_tiny_gt_takes_its_forced_prior_or_loses_it():
    # 6×6 grid. Big gt G = (1, 1, 47, 47) holds the 25 points with x, y ∈ {8, …, 40}; tiny gt
    # T = (13, 13, 15, 15) (centre (14, 14)) holds none. Every prior predicts FAR: u 0
    # everywhere, k = 1 for both. T's nearest valid prior is p = (16, 16) (prior 14, d 0.354):
    # T takes it. G's centre is (24, 24): it takes prior 21 (24, 24), d 0. p is taken once:
    # T keeps it (cost 0.1732868 + 48.354287 + 10^(0.3535534 − 3) = 0.0022573 → 48.530).
    priors = grid(6)
    gts = [gt_instances([[1, 1, 47, 47], [13, 13, 15, 15]], [0, 0], (48, 48))]
    a = DynamicSoftLabelAssigner()(priors, gts, 1, predictions(36))
    assert positives(a) == [14, 21] and a.matched_gt[0, [14, 21]].tolist() == [1, 0]
    assert a.extras["cost"][0, 14].item() == pytest.approx(0.1732868 + 48.354287 + 0.0022573, rel=2e-6)
    # With G centred on p instead, G = (1, 1, 31, 31) (centre (16, 16)): both take p; G's cost
    # there (d 0: 48.5285738) is below T's (48.5298…), so T ends with no positive.
    gts = [gt_instances([[1, 1, 31, 31], [13, 13, 15, 15]], [0, 0], (48, 48))]
    b = DynamicSoftLabelAssigner()(priors, gts, 1, predictions(36))
    assert positives(b) == [14] and b.matched_gt[0, 14].item() == 0


def test_soft_targets_feed_qfl_and_the_box_loss():
    # One positive with u 0.62: QFL's target of its class is 0.62, its GIoU weight 0.62, and
    # both normalisers are max(Σ u = 0.62, 1) = 1. Prior 5 of the 4×4 grid (8, 8) in gt
    # (−2, −2, 18, 18) predicts (−2, −2, 18, 10.4): u 12.4/20 = 0.62; k = 1.
    pred = predictions(16, {5: [-2, -2, 18, 10.4]})
    a = DynamicSoftLabelAssigner()(grid(4), [gt_instances([[-2, -2, 18, 18]], [0], (32, 32))], 1, pred)
    assert positives(a) == [5] and a.cls_scores[0, 5].item() == pytest.approx(0.62, rel=1e-6)
    assert torch.equal(a.cls_scores, a.reg_weights) and torch.equal(a.cls_scores, a.extras["matched_iou"])
    outputs = {"cls_logits": pred["cls_logits"], "box_reg": pred["pred_boxes"], "pred_boxes": pred["pred_boxes"]}
    quality = QualityCoupling(branch=None, cls_target="static")
    loss = dsl_loss()
    d = loss.describe_targets(outputs, grid(4), a, box_coder=None, quality=quality)
    assert torch.equal(d["cls_target"], a.cls_scores) and torch.equal(d["reg_weight"], a.cls_scores)
    # QFL over 16 priors, logit 0: the positive BCE(0.5, 0.62)·0.12² = ln 2·0.0144 = 0.0099813,
    # 15 negatives ln 2·0.25 = 0.1732868 each = 2.5993017; / 1 → 2.6092830.
    assert loss.classification(pred["cls_logits"], a, a.cls_scores).item() == pytest.approx(2.6092830, rel=1e-6)
    # GIoU of (−2,−2,18,10.4) with (−2,−2,18,18): IoU 0.62, hull = the gt → loss 0.38;
    # × weight 0.62 × box_weight 2 / 1 = 0.4712.
    box = loss.regression(pred["pred_boxes"], pred["pred_boxes"], a, None, grid(4))
    assert box.item() == pytest.approx(0.4712, rel=1e-5)


def test_no_gts_empty_boxes_and_padding():
    # Image 0: no gt. Image 1: the gt of test_dynamic_k_and_picks_end_to_end and a degenerate
    # one (zero width). Image 2: only a gt between the points (no valid prior). Batched, image
    # 1 gets what it gets alone; images 0 and 2 are background.
    f = {5: 0.9, 6: 0.85, 1: 0.8, 10: 0.6, 0: 0.3}
    pred = predictions(16, {p: [-2, -2, 18, -2 + 20 * v] for p, v in f.items()})
    batch = {k: v.repeat(3, 1, 1) for k, v in pred.items()}
    gts = [
        gt_instances(torch.zeros(0, 4), [], (32, 32)),
        gt_instances([[3, 3, 3, 12], [-2, -2, 18, 18]], [0, 0], (32, 32)),
        gt_instances([[1, 1, 7, 7]], [0], (32, 32)),
    ]
    a = DynamicSoftLabelAssigner()(grid(4), gts, 1, batch)
    alone = DynamicSoftLabelAssigner()(grid(4), [gt_instances([[-2, -2, 18, 18]], [0], (32, 32))], 1, pred)
    assert (a.matched_gt[[0, 2]] == -1).all() and (a.cls_scores[[0, 2]] == 0).all()
    assert positives(a, 1) == [1, 5, 6] and (a.matched_gt[1, [1, 5, 6]] == 1).all()
    assert torch.equal(a.cls_scores[1], alone.cls_scores[0])
    empty = DynamicSoftLabelAssigner()(grid(4), [gt_instances(torch.zeros(0, 4), [], (32, 32))], 1, pred)
    assert (empty.matched_gt == -1).all() and empty.box_targets.abs().sum() == 0
    assert empty.extras["dynamic_k"].shape == (1, 0)


def test_one_prior():
    # One level of a single point (0, 0); gt (−5, −5, 5, 5) holds it; it is the only valid
    # prior, so it is positive whatever it predicts (k = 1); u 0 here.
    priors = grid(1)
    a = DynamicSoftLabelAssigner()(priors, [gt_instances([[-5, -5, 5, 5]], [0], (8, 8))], 1, predictions(1))
    assert positives(a) == [0] and a.cls_scores[0, 0].item() == 0.0


def test_non_finite_predictions_and_logits_are_defined():
    # NaN, inf and inverted predicted boxes have u 0; NaN / ±inf logits count as ∓100 (NaN as
    # p 0). Nothing is NaN; the well-predicted prior 5 (u 0.9) is still chosen first.
    f = {5: 0.9, 6: 0.85, 1: 0.8}
    pred = predictions(16, {p: [-2, -2, 18, -2 + 20 * v] for p, v in f.items()})
    pred["pred_boxes"][0, 0] = float("nan")
    pred["pred_boxes"][0, 2] = torch.tensor([-math.inf, -math.inf, math.inf, math.inf])
    pred["pred_boxes"][0, 4] = torch.tensor([18.0, 18, -2, -2])
    pred["cls_logits"][0, 6, 0] = float("nan")
    pred["cls_logits"][0, 9, 0] = math.inf
    pred["cls_logits"][0, 10, 0] = -math.inf
    a = DynamicSoftLabelAssigner()(grid(4), [gt_instances([[-2, -2, 18, 18]], [0], (32, 32))], 1, pred)
    assert all(torch.isfinite(t).all() for t in (a.cls_scores, a.extras["cost"]))
    # k = ⌊2.55⌋ = 2; prior 6 (NaN logit → p 0) costs 0.85·100·0.85² + … ≈ 61.9: priors 5, 1
    assert positives(a) == [1, 5]


def test_gt_far_outside_the_image_takes_the_lowest_prior_index_at_the_clamp():
    # A gt 2,000 px away (250 strides) and a gt holding priors 5, 6, 9, 10 of the 4×4 grid
    # (gt (4, 4, 20, 20), centre (12, 12)). For the far gt every valid prior is > 30 strides
    # away: all cost 1e27 (the other terms are lost in float32), so its k = 1 takes the
    # lowest index, 5. The near gt's four priors are all at d = √32/8 = 0.7071 with u 0: equal
    # costs (≈ 48.53), so it takes 5 too, and keeps it (the lower cost).
    # The far gt: 0 positives; the near one: 1. Exercises the exhaustive search and the
    # unbounded search of step 5.
    gts = [gt_instances([[2000, 2000, 2010, 2010], [4, 4, 20, 20]], [0, 0], (32, 32))]
    a = DynamicSoftLabelAssigner()(grid(4), gts, 1, predictions(16))
    assert positives(a) == [5] and a.matched_gt[0, 5].item() == 1
    assert a.extras["dynamic_k"].tolist() == [[1, 1]]


# ------------------------------------------------------------------ sparse = dense
def dense_dsl(priors, gt_list, logits, pred_boxes, topk=13, radius=3.0, iou_weight=3.0, max_distance=30.0):
    """The spec's rules on dense (valid priors × gts × classes) tensors, one image at a time:
    valid = inside any valid gt; the three costs over every (valid prior, valid gt); k from
    the sorted IoUs; each gt's k lowest by a stable sort; rows taken more than once → argmin
    over every gt (first minimum). Edge conventions as the module docstring (NaN logit → −100,
    non-finite box → u 0, d ≤ 30, transcendental terms in float64 rounded to float32)."""
    gt = GTBatch.from_instances(gt_list)
    n, r, c = logits.shape
    g = gt.classes.shape[1]
    matched = torch.full((n, r), -1, dtype=torch.long)
    soft = torch.zeros(n, r)
    ks = torch.ones(n, g, dtype=torch.long)
    x_all = torch.nan_to_num(logits.float(), nan=-100.0, posinf=100.0, neginf=-100.0).clamp(-100, 100)
    for i in range(n):  # the reference may loop over images
        cols = gt.valid[i].nonzero().squeeze(1)
        if cols.numel() == 0 or r == 0:
            continue
        box = gt.boxes[i, cols]
        pts = priors.points
        deltas = torch.cat([pts[:, None, :] - box[None, :, :2], box[None, :, 2:] - pts[:, None, :]], dim=-1)
        vi = (deltas.min(dim=-1).values > 0).any(dim=1).nonzero().squeeze(1)
        v = vi.numel()
        if v == 0:
            continue
        center = (box.double()[:, :2] + box.double()[:, 2:]) / 2
        off = pts[vi].double()[:, None, :] - center[None]
        d = (off[..., 0] * off[..., 0] + off[..., 1] * off[..., 1]).sqrt() / priors.strides[vi].double()[:, None]
        center_cost = torch.pow(10.0, d.clamp(max=max_distance) - radius).float()
        pb = pred_boxes[i, vi].float()
        u = aligned_box_iou(pb[:, None, :], box[None].float()).nan_to_num(0.0, 0.0, 0.0)
        u = torch.where(torch.isfinite(pb).all(-1)[:, None], u, torch.zeros_like(u))
        reg_cost = (-iou_weight * torch.log(u.double() + 1e-7)).float()
        x = x_all[i, vi].double()[:, None, :].expand(v, cols.numel(), c)
        y = F.one_hot(gt.classes[i, cols], c).double()[None] * u.double()[..., None]
        cls_cost = (F.binary_cross_entropy_with_logits(x, y, reduction="none") * (y - x.sigmoid()) ** 2).sum(-1).float()
        cost = (cls_cost + reg_cost) + center_cost  # (V, G')
        k = torch.sort(u, dim=0, descending=True).values[: min(topk, v)].double().sum(0).floor().clamp(min=1).long()
        order = torch.sort(cost, dim=0, stable=True).indices
        rank = torch.empty_like(order).scatter_(0, order, torch.arange(v)[:, None].expand(v, cols.numel()).contiguous())
        taken = rank < k[None, :]
        has = taken.any(dim=1)
        col = torch.where(taken.sum(1) > 1, cost.argmin(dim=1), taken.long().argmax(dim=1))
        matched[i, vi[has]] = cols[col[has]]
        soft[i, vi[has]] = u[has, col[has]]
        ks[i, cols] = k
    return matched, soft, ks


def random_case(seed):
    """Seeded random batch: 1-3 images of 20-90 px, 2-3 levels, offset 0 or 0.5, 0-50 gts
    (crowded, overlapping, duplicated, tiny between points, degenerate, partly or wholly
    outside the image), predictions near the priors or copying gts (u = 1 ties), duplicated
    predictions, NaN / inverted / huge / inf boxes, NaN and ±inf logits, 3 classes."""
    g = torch.Generator().manual_seed(seed)
    ri = lambda lo, hi: int(torch.randint(lo, hi + 1, (1,), generator=g))  # noqa: E731
    rf = lambda *shape: torch.rand(*shape, generator=g)  # noqa: E731
    strides = [8, 16] if ri(0, 1) else [8, 16, 32]
    h, w = ri(20, 90), ri(20, 90)
    feats = [torch.zeros(1, 1, math.ceil(h / s), math.ceil(w / s)) for s in strides]
    priors = PriorGenerator(strides, offset=0.5 * ri(0, 1), anchor_scale=float(ri(1, 4)))(feats)
    r, n, c = len(priors), ri(1, 3), 3
    gt_list, boxes_per_image = [], []
    for _ in range(n):
        k = [0, ri(1, 5), ri(1, 20), ri(10, 50)][ri(0, 3)]
        ctr = rf(k, 2) * torch.tensor([w, h]) * 1.2 - 0.1 * torch.tensor([w, h])
        half = (0.5 + rf(k, 2) ** 2 * torch.tensor([w, h]) * 0.8) / 2
        boxes = torch.cat([ctr - half, ctr + half], 1)
        if k > 2 and ri(0, 1):
            boxes[1] = boxes[0]  # a duplicate
        if k > 3 and ri(0, 2) == 0:
            boxes[2, 2] = boxes[2, 0]  # degenerate: zero width
        if k > 4 and ri(0, 2) == 0:
            boxes[3] = torch.tensor([500.0, 500.0, 520.0, 530.0])  # far outside the image
        gt_list.append(gt_instances(boxes, torch.randint(0, c, (k,), generator=g), (h, w)))
        boxes_per_image.append(boxes)
    anchors = priors.anchors[None].expand(n, r, 4)
    noise = torch.randn(n, r, 4, generator=g) * priors.strides[None, :, None] * rf(1)
    pred = anchors * (0.3 + rf(1)) + noise
    for i, boxes in enumerate(boxes_per_image):  # some priors predict a gt (±1 px, or exactly)
        if len(boxes):
            pick = torch.randint(0, r, (r // 3,), generator=g)
            which = torch.randint(0, len(boxes), (r // 3,), generator=g)
            jitter = torch.randn(r // 3, 4, generator=g) * (rf(1) < 0.5).float()
            pred[i, pick] = boxes[which] + jitter
    dup = torch.randint(0, r, (r // 6,), generator=g)
    pred[:, dup] = pred[:, torch.randint(0, r, (r // 6,), generator=g)]
    pred[:, ri(0, r - 1)] = float("nan")
    pred[:, ri(0, r - 1)] = torch.tensor([30.0, 30, 10, 10])  # inverted
    pred[:, ri(0, r - 1)] = torch.tensor([-1e5, -1e5, 1e5, 1e5])  # huge
    pred[:, ri(0, r - 1)] = torch.tensor([0.0, 0.0, math.inf, 10.0])  # infinite
    logits = torch.randn(n, r, c, generator=g) * 2 - 1
    logits[:, dup] = logits[:, torch.randint(0, r, (r // 6,), generator=g)]
    logits[0, ri(0, r - 1), 0] = float("nan")
    logits[0, ri(0, r - 1), 1] = -float("inf")
    logits[0, ri(0, r - 1), 2] = float("inf")
    kwargs = dict(topk=[13, 13, 1, 3, 40][ri(0, 4)], soft_center_radius=[3.0, 3.0, 2.0, 5.0][ri(0, 3)])
    return priors, gt_list, {"pred_boxes": pred, "cls_logits": logits}, c, kwargs


def assert_same_as_dense(priors, gt_list, pred, c, kwargs):
    a = DynamicSoftLabelAssigner(**kwargs)(priors, gt_list, c, pred)
    matched, soft, ks = dense_dsl(priors, gt_list, pred["cls_logits"], pred["pred_boxes"],
                                  topk=kwargs.get("topk", 13), radius=kwargs.get("soft_center_radius", 3.0))
    assert torch.equal(a.extras["dynamic_k"], ks)
    assert torch.equal(a.matched_gt, matched)
    assert torch.equal(a.cls_scores, soft) and torch.equal(a.reg_weights, soft)
    return a


@pytest.mark.parametrize("block", range(4))
def test_sparse_equals_dense_on_random_cases(block):
    # 4 × 75 = 300 seeded cases: the same positives, gts, k and targets (bit for bit).
    hits = shared = 0
    for seed in range(75 * block, 75 * (block + 1)):
        a = assert_same_as_dense(*random_case(seed))
        hits += int(a.pos_mask.sum())
        shared += int((a.extras["dynamic_k"] > 1).sum())
    assert hits > 500 and shared > 20  # the cases do have positives, and gts with k > 1


def test_sparse_equals_dense_with_small_chunks_and_radius(monkeypatch):
    # Every search path: chunks of 64 pairs (many chunks per round, the split of step 5),
    # a first radius of 0.5 strides (most gts need a second or third search).
    monkeypatch.setattr(pairs_module, "MAX_PAIRS_PER_CHUNK", 64)
    monkeypatch.setattr(dsl_module, "INITIAL_RADIUS", 0.5)
    for seed in range(1000, 1040):
        assert_same_as_dense(*random_case(seed))


def test_sparse_equals_dense_on_a_point_set():
    # The same priors without their grid description (an arbitrary point set): the searches
    # take region_pair_chunks' brute-force path (per-level strides from the priors).
    for seed in range(2000, 2030):
        priors, gts, pred, c, kwargs = random_case(seed)
        points = dataclasses.replace(priors, grid_sizes=None, level_strides=None, offset=None)
        assert_same_as_dense(points, gts, pred, c, kwargs)


def test_sparse_equals_dense_crowded_400_gts():
    # 400 gts of 4-60 px on a 256×256 image (1344 priors, 3 levels), predictions near the
    # priors' anchors and on the gts, random logits over 3 classes.
    g = torch.Generator().manual_seed(0)
    priors = PriorGenerator([8, 16, 32], offset=0.0, anchor_scale=4)(
        [torch.zeros(1, 1, 256 // s, 256 // s) for s in (8, 16, 32)]
    )
    r = len(priors)
    ctr = torch.rand(400, 2, generator=g) * 256
    half = (4 + torch.rand(400, 2, generator=g) * 56) / 2
    boxes = torch.cat([ctr - half, ctr + half], 1)
    gts = [gt_instances(boxes, torch.randint(0, 3, (400,), generator=g), (256, 256))]
    pred = priors.anchors[None] + torch.randn(1, r, 4, generator=g) * 6
    pick = torch.randint(0, r, (r // 2,), generator=g)
    pred[0, pick] = boxes[torch.randint(0, 400, (r // 2,), generator=g)] + torch.randn(r // 2, 4, generator=g)
    logits = torch.randn(1, r, 3, generator=g)
    a = assert_same_as_dense(priors, gts, {"pred_boxes": pred, "cls_logits": logits}, 3, {})
    assert 300 < int(a.pos_mask.sum()) < r


def test_sparse_equals_dense_with_other_probes_blocks_and_chunks(monkeypatch):
    # A probe wider than most searches (6 strides) and one that rarely finds k priors (0.3),
    # negative-term blocks of a few priors, pair chunks of 16: every path of the search.
    for radius, block, chunk, seeds in ((6.0, 7, 2**15, range(3000, 3020)), (0.3, 2**16, 16, range(3020, 3040))):
        monkeypatch.setattr(dsl_module, "INITIAL_RADIUS", radius)
        monkeypatch.setattr(dsl_module, "_NEGATIVE_BLOCK", block)
        monkeypatch.setattr(dsl_module, "_MAX_PAIRS", chunk)
        for seed in seeds:
            assert_same_as_dense(*random_case(seed))


def test_sparse_equals_dense_on_a_benchmark_like_image():
    # bench_assigners' inputs, smaller: a 160×224 image, P3-P7 (offset 0.5), 60 gts of 4-120
    # px, predicted boxes at half the anchors' coordinates plus noise (so most gts have no
    # overlapping box: the top-IoU search's pinned and θ = 0 paths), 10 classes.
    g = torch.Generator().manual_seed(7)
    h, w = 160, 224
    feats = [torch.zeros(1, 1, math.ceil(h / s), math.ceil(w / s)) for s in (8, 16, 32, 64, 128)]
    priors = PriorGenerator([8, 16, 32, 64, 128], offset=0.5)(feats)
    r = len(priors)
    center = torch.rand(60, 2, generator=g) * torch.tensor([float(w), float(h)])
    half = (4 + torch.rand(60, 2, generator=g) * 116) / 2
    boxes = torch.cat([(center - half).clamp(min=0), torch.minimum(center + half, torch.tensor([float(w), float(h)]))], 1)
    gts = [gt_instances(boxes, torch.randint(0, 10, (60,), generator=g), (h, w))]
    pred = priors.anchors[None] * 0.5 + torch.randn(1, r, 4, generator=g) * 4
    pred = torch.cat([pred[..., :2].minimum(pred[..., 2:]), pred[..., :2].maximum(pred[..., 2:]) + 1], -1)
    logits = torch.randn(1, r, 10, generator=g)
    a = assert_same_as_dense(priors, gts, {"pred_boxes": pred, "cls_logits": logits}, 10, {})
    assert int(a.pos_mask.sum()) > 30


def test_valid_priors_match_the_strict_inside_test():
    # The painted rectangles against the definition, on gts whose sides lie on grid points,
    # between them, outside the image, tiny and degenerate; grids with offset 0 and 0.5.
    g = torch.Generator().manual_seed(11)
    for offset in (0.0, 0.5):
        feats = [torch.zeros(1, 1, 9, 13), torch.zeros(1, 1, 5, 7), torch.zeros(1, 1, 3, 4)]
        priors = PriorGenerator([8, 16, 32], offset=offset)(feats)
        gt_list = []
        for _ in range(3):
            boxes = torch.randint(-20, 120, (25, 4), generator=g).float()
            boxes[:10] += torch.rand(10, 4, generator=g)  # off the grid points
            boxes = torch.cat([boxes[:, :2].minimum(boxes[:, 2:]), boxes[:, :2].maximum(boxes[:, 2:])], 1)
            boxes[20, 2] = boxes[20, 0]  # degenerate
            gt_list.append(gt_instances(boxes, torch.zeros(25, dtype=torch.long), (72, 104)))
        gt = GTBatch.from_instances(gt_list)
        pts = priors.points
        inside = ((pts[None, :, None] > gt.boxes[:, None, :, :2]) & (pts[None, :, None] < gt.boxes[:, None, :, 2:])).all(-1)
        expected = (inside & gt.valid[:, None, :]).any(-1)
        assert torch.equal(DynamicSoftLabelAssigner.valid_priors(priors, gt), expected)
        points = dataclasses.replace(priors, grid_sizes=None, level_strides=None, offset=None)
        assert torch.equal(DynamicSoftLabelAssigner.valid_priors(points, gt), expected)


def test_float32_bounds_of_the_class_term():
    # Per prior: the upper bound of S = Σ_c BCE(x_c, 0)·σ(x_c)² is ≥ the exact float64 S, and
    # the floor is ≤ C_cls of the prior with every class as the gt's and any u (logits from
    # −100 to 100, NaN and ±inf, 1 to 300 classes).
    g = torch.Generator().manual_seed(13)
    for c in (1, 3, 80, 300):
        x = torch.randn(1, 64, c, generator=g) * torch.tensor([0.1, 1.0, 5.0, 30.0]).repeat(16)[None, :, None]
        x[0, 0] = 100.0
        x[0, 1] = -100.0
        x[0, 2, 0] = float("nan")
        x[0, 3, -1] = float("inf")
        x[0, 4, 0] = 1e-30
        priors = grid(8)
        gt = GTBatch.from_instances([gt_instances([[-1, -1, 70, 70]], [0], (64, 64))])
        valid = torch.ones(1, 64, dtype=torch.bool)
        costs = dsl_module._PairCosts(DynamicSoftLabelAssigner(), priors, gt, x, torch.zeros(1, 64, 4), valid)
        xs = sanitize_logits(x[0]).double()
        exact = dsl_module._negative_terms(xs).sum(1)
        assert (costs.negative_upper >= exact).all()
        for u in (0.0, 0.3, 1.0):
            for label in range(0, c, max(1, c // 7)):
                cls = soft_classification_cost(x[0], torch.full((64,), label), torch.full((64,), u))
                assert (costs.cls_floor.double() <= cls.double()).all()
        assert (costs.cls_floor >= 0).all()


def test_pair_cost_bounds_hold():
    # On the pairs of random batches: the upper cost (S replaced by its bound) is ≥ C, the
    # lower bound of a pair is ≤ C (at the threshold C itself), and the IoU with the areas
    # precomputed is aligned_box_iou's, bit for bit.
    for seed in range(4000, 4010):
        priors, gt_list, pred, _, kwargs = random_case(seed)
        gt = GTBatch.from_instances(gt_list)
        assigner = DynamicSoftLabelAssigner(**kwargs)
        valid = assigner.valid_priors(priors, gt)
        costs = dsl_module._PairCosts(assigner, priors, gt, pred["cls_logits"], pred["pred_boxes"], valid)
        n, g = gt.valid.shape
        image, prior, gt_index = torch.meshgrid(torch.arange(n), torch.arange(len(priors)), torch.arange(g), indexing="ij")
        keep = valid[image, prior] & gt.valid[image, gt_index]
        pairs = pairs_module.CandidatePairs(image[keep], prior[keep], gt_index[keep], g)
        geometry = costs.geometry(pairs)
        cost, u = costs(pairs, geometry)
        boxes = pred["pred_boxes"].float()[pairs.image, pairs.prior]
        reference = aligned_box_iou(boxes, gt.boxes[pairs.image, pairs.gt]).nan_to_num(0.0, 0.0, 0.0)
        reference = torch.where(torch.isfinite(boxes).all(-1), reference, torch.zeros_like(reference))
        assert torch.equal(u, reference)
        assert (costs.upper_cost(pairs, geometry) >= cost).all()
        assert costs.may_cost_at_most(geometry, cost.double()).all()


def test_k_lowest_is_a_stable_sort():
    # (cost ↑, input order ↑) per segment, with ties, negative costs and both zeros.
    g = torch.Generator().manual_seed(17)
    segment = torch.sort(torch.randint(0, 30, (500,), generator=g)).values
    cost = torch.randint(-3, 4, (500,), generator=g).float() * 0.5
    cost[cost == 0] = torch.tensor([0.0, -0.0]).repeat(250)[: int((cost == 0).sum())]
    need = torch.randint(1, 6, (30,), generator=g)
    top, kth, count = dsl_module._k_lowest(segment, cost, need[segment], 30)
    for s in range(30):
        idx = (segment == s).nonzero().flatten().tolist()
        ranked = sorted(idx, key=lambda i: (cost[i].item(), i))
        assert sorted(i for i in idx if top[i]) == sorted(ranked[: need[s]])
        assert count[s] == len(idx)
        assert kth[s].item() == (cost[ranked[need[s] - 1]].item() if len(idx) >= need[s] else math.inf)


def test_cost_lower_bound_holds_beyond_the_radius():
    # The claim under the search: a valid prior more than D strides from a gt's centre costs
    # more than B(D). On random pairs (u, logits, d) the computed cost exceeds B(d′) for every
    # d′ < d, checked at d′ = d·(1 − 1e−9); and B is below the bare centre term 10^(D − β).
    g = torch.Generator().manual_seed(5)
    d = torch.rand(5000, generator=g).double() * 30
    u = torch.rand(5000, generator=g)
    u[:500] = 1.0
    x = torch.randn(5000, 4, generator=g) * 5
    labels = torch.randint(0, 4, (5000,), generator=g)
    cost = (soft_classification_cost(x, labels, u) + iou_cost(u)) + soft_center_prior(d)
    bound = cost_lower_bound(d * (1 - 1e-9), 3.0, 3.0)
    assert (cost.double() > bound).all()
    assert (bound < torch.pow(10.0, d - 3.0)).all()


# ------------------------------------------------------------------ all-reduced normaliser
def _normaliser_inputs():
    # Two images; image 1 has a single gt so its Σ u differs a lot from image 0's.
    g = torch.Generator().manual_seed(3)
    priors = PriorGenerator([8, 16], offset=0.0, anchor_scale=4)([torch.zeros(1, 1, 8, 8), torch.zeros(1, 1, 4, 4)])
    r = len(priors)
    gts = [
        gt_instances([[4, 4, 40, 30], [20, 30, 60, 60]], [0, 2], (64, 64)),
        gt_instances([[10, 40, 30, 62]], [1], (64, 64)),
    ]
    pred = priors.anchors[None].repeat(2, 1, 1) + torch.randn(2, r, 4, generator=g) * 4
    pred[0, 20] = torch.tensor([4.0, 4, 40, 30])  # a few good predictions: Σ u > 1 in image 0
    pred[0, 21] = torch.tensor([5.0, 4, 40, 31])
    logits = torch.randn(2, r, 3, generator=g, requires_grad=True)
    return priors, gts, pred, logits


def _dsl_losses(priors, gts, pred, logits):
    a = DynamicSoftLabelAssigner()(priors, gts, 3, {"pred_boxes": pred, "cls_logits": logits})
    loss = dsl_loss()
    cls = loss.classification(logits, a, a.cls_scores)
    box = loss.regression(pred, pred, a, None, priors)
    return torch.stack([cls, box]).detach(), a


def _normaliser_worker(rank, world, init_file, out_dir):
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        priors, gts, pred, logits = _normaliser_inputs()
        out, _ = _dsl_losses(priors, gts[rank : rank + 1], pred[rank : rank + 1], logits[rank : rank + 1])
        torch.save(out, os.path.join(out_dir, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


def test_normaliser_all_reduced_over_two_processes(tmp_path):
    # Each process divides by max(all-reduced mean of Σ u, 1); the mean of the two processes'
    # losses then equals one process's loss on both images (gloo, forked CPU processes).
    priors, gts, pred, logits = _normaliser_inputs()
    combined, a = _dsl_losses(priors, gts, pred, logits)
    per_image = a.cls_scores.sum(1)
    assert per_image.sum() > 2 and per_image[1] < 0.8 * per_image[0]
    halves = [_dsl_losses(priors, gts[i : i + 1], pred[i : i + 1], logits[i : i + 1])[0] for i in (0, 1)]
    assert not torch.allclose((halves[0] + halves[1]) / 2, combined, rtol=1e-3)
    args = (2, str(tmp_path / "dist_init"), str(tmp_path))
    mp.start_processes(_normaliser_worker, args=args, nprocs=2, join=True, start_method="fork")
    per_rank = [torch.load(tmp_path / f"rank{r}.pt") for r in range(2)]
    assert torch.allclose((per_rank[0] + per_rank[1]) / 2, combined, rtol=1e-5, atol=1e-7)


# ------------------------------------------------------------------ configs
CONFIGS = {  # file -> (meta-architecture, prior offset)
    "dsl_atss_R_50_FPN_1x.py": ("DslaATSS", 0.0),
    "dsl_atss_r18_synth.py": ("DslaATSS", 0.5),
    "dsl_fcos_r18_synth.py": ("DslaFCOS", 0.5),
}


def test_every_config_in_the_folder_is_listed():
    assert sorted(f for f in os.listdir(RTMDET_CONFIGS) if f.endswith(".py")) == sorted(CONFIGS)


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_config_parts_and_one_training_step(name):
    arch, offset = CONFIGS[name]
    cfg = LazyConfig.load(os.path.join(RTMDET_CONFIGS, name))
    m = cfg.model
    assert m._target_.__name__ == arch and m.head.quality_branch is None and m.quality.branch is None
    assert m.quality.cls_target == "static" and m.prior_generator.offset == offset
    assert (m.loss.cls_loss, m.loss.qfl_beta, m.loss.cls_normalizer, m.loss.box_normalizer) == (
        "qfl", 2.0, "sum_scores", "sum_weights"
    )
    assert (m.loss.box_loss, m.loss.box_weight, m.loss.normalizer_floor) == ("giou", 2.0, "clamp")
    assert m.loss.cls_normalizer_min == m.loss.box_normalizer_min == 1.0
    if "R_50" in name:
        assert cfg.train.max_iter == 90000 and cfg.optimizer.lr == 0.01
    model = instantiate(m)
    assert type(model.assigner) is DynamicSoftLabelAssigner
    assert (model.assigner.topk, model.assigner.soft_center_radius, model.assigner.iou_weight) == (13, 3.0, 3.0)
    model.train()
    inputs = make_inputs([[[10, 12, 60, 50], [70, 30, 120, 110], [5, 5, 20, 40]]], [[0, 5, 3]], size=128)
    with EventStorage(0):
        losses = model(inputs)
    assert set(losses) == {"loss_cls", "loss_box_reg"} and all(torch.isfinite(v) for v in losses.values())
    sum(losses.values()).backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.head.parameters())
