"""TOOD's task-aligned assignment and loss (Feng et al., "TOOD: Task-aligned One-stage Object
Detection", ICCV 2021, arXiv:2108.07755; the authors' code where it is more specific): hand-worked
vectors, edge cases, the sparse search against a dense reference, the all-reduced
normaliser, the visualiser's view and the TOOD configs.

Grid used by the hand-worked cases ("grid9"): a 24×24 image, one level, stride 8, offset 0.5,
anchors of side 16: points x, y ∈ {4, 12, 20}, prior index 3·i + j (i: row/y, j: column/x):

    0 (4,4)   1 (12,4)   2 (20,4)
    3 (4,12)  4 (12,12)  5 (20,12)
    6 (4,20)  7 (12,20)  8 (20,20)

Every prior predicts the box FAR = (100, 100, 110, 110) (IoU 0 with every gt here, so t = 0)
unless a case says otherwise; the class logits are 0 (s = 0.5) unless a case says otherwise.

Metric t = s^α·u^β with α = 1, β = 6:
  s 0.5, u 0.8: 0.8^2 = 0.64, ^3 = 0.512, ^6 = 0.512² = 0.262144 → t = 0.131072;
  s 0.9, u 0.6: 0.6^3 = 0.216, ^6 = 0.046656 → t = 0.0419904;
  s 0.9, u 0.5: 0.5^6 = 0.015625 → t = 0.0140625;  s 0.1, u 0.6: t = 0.0046656.
  (β = 6 makes the IoU dominate: 0.5 at 0.8 beats 0.9 at 0.6 by 3×.)

Soft target of one gt whose positives are (t, u) = (0.131072, 0.8) and (0.0419904, 0.6):
  max t = 0.131072, max u = 0.8; t̂ = t / (0.131072 + 1e-7) · 0.8 →
  0.8 · 0.131072/0.1310721 = 0.7999994 and 0.8 · 0.320361 = 0.256289 (0.0419904/0.1310721
  = 0.3203608).

QFL, element-wise: BCE(p, y)·|y − p|². p 0.3, y 0.8: BCE = −(0.8·ln 0.3 + 0.2·ln 0.7) =
0.8·1.2039728 + 0.2·0.3566749 = 1.0345132, × 0.5² = 0.2586283. A negative entry p 0.3:
−ln 0.7 · 0.3² = 0.3566749 · 0.09 = 0.0321007.
"""
import logging
import math
import os

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

import dsla_d2  # noqa: F401
from detectron2.config import LazyConfig, instantiate
from detectron2.utils.events import EventStorage

from dsla_d2.assigners import ATSSAssigner, TaskAlignedAssigner, alignment_metric
from dsla_d2.assigners.base import ASSIGNER_REGISTRY, GTBatch
from dsla_d2.box_ops import aligned_box_iou
from dsla_d2.losses import DenseDetectionLoss
from dsla_d2.losses.quality_focal import quality_focal_loss
from dsla_d2.priors import PriorGenerator
from dsla_d2.quality import QualityCoupling
from dsla_d2.utils.progress import TrainingProgress

from tiny import gt_instances, make_inputs

FAR = [100.0, 100.0, 110.0, 110.0]
LN9 = math.log(9.0)  # sigmoid(ln 9) = 0.9
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOOD_CONFIGS = os.path.join(ROOT, "projects", "TOOD", "configs")


def grid9():
    return PriorGenerator([8], offset=0.5, anchor_scale=2)([torch.zeros(1, 1, 3, 3)])


def predictions(boxes=None, logits=None, num_priors=9, num_classes=2):
    """(1, R, 4) predicted boxes (FAR unless given per prior index) and (1, R, C) logits (0
    unless given as {(prior, class): logit})."""
    pred = torch.tensor(FAR).repeat(1, num_priors, 1)
    for p, box in (boxes or {}).items():
        pred[0, p] = torch.tensor(box)
    cls = torch.zeros(1, num_priors, num_classes)
    for (p, c), v in (logits or {}).items():
        cls[0, p, c] = v
    return {"pred_boxes": pred, "cls_logits": cls}


def positives(a, image=0):
    return torch.nonzero(a.matched_gt[image] >= 0).flatten().tolist()


# ------------------------------------------------------------------ hand-worked vectors
def test_registered_and_arguments():
    assert ASSIGNER_REGISTRY.get("TaskAlignedAssigner") is TaskAlignedAssigner
    a = TaskAlignedAssigner()
    assert (a.topk, a.alpha, a.beta, a.center_margin, a.warmup_iters) == (13, 1.0, 6.0, 0.01, 0)
    assert a.required_predictions == ("pred_boxes", "cls_logits") and a.warmup_assigner is None
    for bad in (dict(topk=0), dict(alpha=-1), dict(beta=0), dict(alpha=float("nan")), dict(warmup_iters=-1)):
        with pytest.raises(ValueError):
            TaskAlignedAssigner(**bad)
    with pytest.raises(ValueError, match="classes"):
        a(grid9(), [gt_instances([[0, 0, 20, 20]], [0])], 3, predictions())


def test_metric_vectors():
    s = torch.tensor([0.5, 0.9, 0.9, 0.1])
    u = torch.tensor([0.8, 0.6, 0.5, 0.6])
    t = alignment_metric(s, u, 1.0, 6.0)
    assert t.tolist() == pytest.approx([0.131072, 0.0419904, 0.0140625, 0.0046656], rel=1e-6)
    # α = 0: the IoU alone (0^0 = 1); β = 1, α = 1: s·u
    assert alignment_metric(torch.tensor([0.0]), torch.tensor([0.5]), 0.0, 1.0).item() == 0.5
    assert alignment_metric(s, u, 1.0, 1.0).tolist() == pytest.approx((s * u).tolist())


def test_soft_targets_hand_derived():
    # gt (0,0,20,20), area 400, holds priors 0, 1, 3, 4. Prior 0 predicts (0,0,20,16): IoU
    # 320/400 = 0.8, logit 0 → s 0.5; prior 4 predicts (0,0,20,12): IoU 0.6, logit ln 9 → s 0.9.
    # Only these two pairs have t > 0 (m = 13 > 2): both are kept; t̂ as the module docstring.
    pred = predictions({0: [0, 0, 20, 16], 4: [0, 0, 20, 12]}, {(4, 0): LN9}, num_classes=2)
    a = TaskAlignedAssigner()(grid9(), [gt_instances([[0, 0, 20, 20]], [0])], 2, pred)
    assert positives(a) == [0, 4]
    assert a.labels[0].tolist() == [0, 2, 2, 2, 0, 2, 2, 2, 2]
    assert a.extras["alignment"][0, [0, 4]].tolist() == pytest.approx([0.131072, 0.0419904], rel=1e-5)
    assert a.extras["matched_iou"][0, [0, 4]].tolist() == pytest.approx([0.8, 0.6], rel=1e-6)
    assert a.cls_scores[0, [0, 4]].tolist() == pytest.approx([0.7999994, 0.256289], rel=1e-5)
    assert torch.equal(a.cls_scores, a.reg_weights)  # t̂ weights the box loss too
    assert a.cls_scores[0, [1, 2, 3, 5, 6, 7, 8]].abs().sum() == 0
    assert a.box_targets[0, 4].tolist() == [0, 0, 20, 20] and not bool(a.extras["warmup"])


def test_largest_iou_wins_not_largest_metric():
    # Prior 4 at (12,12) predicts X = (0,0,20,20) (area 400). gt A = (2,6,18,18.5), class 0,
    # area 16·12.5 = 200 inside X: IoU 0.5; gt B = (0,4,20,16), class 1, area 240 inside X:
    # IoU 0.6. Both hold (12,12). s_A = 0.9 (logit ln 9 for class 0), s_B = 0.1 (−ln 9 for 1):
    # t_A = 0.0140625 > t_B = 0.0046656, but the prior goes to B, the larger IoU. A keeps
    # nothing; B's t̂ = t/(t + 1e-7)·0.6 = 0.6·0.0046656/0.0046657 = 0.599987.
    pred = predictions({4: [0, 0, 20, 20]}, {(4, 0): LN9, (4, 1): -LN9})
    gts = gt_instances([[2, 6, 18, 18.5], [0, 4, 20, 16]], [0, 1])
    a = TaskAlignedAssigner()(grid9(), [gts], 2, pred)
    assert positives(a) == [4] and a.matched_gt[0, 4].item() == 1 and a.labels[0, 4].item() == 1
    assert a.extras["alignment"][0, 4].item() == pytest.approx(0.0046656, rel=1e-5)
    assert a.cls_scores[0, 4].item() == pytest.approx(0.599987, rel=1e-5)


@pytest.mark.parametrize("d, expected", [(0.005, []), (0.02, [4])])
def test_center_margin(d, expected):
    # gt (12 − d, 0, 22, 22) predicted exactly by prior 4 at (12,12): its centre is d inside
    # the left side; positive only if d > 0.01.
    box = [12 - d, 0, 22, 22]
    a = TaskAlignedAssigner()(grid9(), [gt_instances([box], [0])], 2, predictions({4: box}))
    assert positives(a) == expected


def test_center_test_after_top_m_slots_not_refilled():
    # gt G = (0,0,10,10) holds only prior 0 (4,4). Priors 1 and 3 (centres outside G) predict
    # G itself (IoU 1, t 0.5); prior 0 predicts (0,0,10,8): IoU 0.8, t 0.131072. With m = 2 the
    # top-2 are priors 1, 3, both outside: G gets no positive (the authors' order: top-m, then
    # the centre test; the slots are not refilled). With m = 3 prior 0 enters the top-m.
    pred = predictions({1: [0, 0, 10, 10], 3: [0, 0, 10, 10], 0: [0, 0, 10, 8]})
    gts = [gt_instances([[0, 0, 10, 10]], [0])]
    assert positives(TaskAlignedAssigner(topk=2)(grid9(), gts, 2, pred)) == []
    assert positives(TaskAlignedAssigner(topk=3)(grid9(), gts, 2, pred)) == [0]


def test_top_m_over_all_levels_jointly():
    # Two levels: grid9 (indices 0-8) and stride 16, 2×2 points x, y ∈ {8, 24} (indices
    # 9-12; (8,8) is prior 9). gt (0,0,14,14) holds priors 0 (4,4),
    # 1 (12,4), 3 (4,12), 4 (12,12) and 9 (8,8). Priors 0, 1, 9 predict (0,0,14,12) (IoU 12/14),
    # (0,0,14,11) (11/14), (0,0,14,10) (10/14). With m = 2 over all levels, prior 9 (third
    # best) is out — a per-level top-2 would keep it as level 1's best.
    priors = PriorGenerator([8, 16], offset=0.5, anchor_scale=2)([torch.zeros(1, 1, 3, 3), torch.zeros(1, 1, 2, 2)])
    pred = predictions({0: [0, 0, 14, 12], 1: [0, 0, 14, 11], 9: [0, 0, 14, 10]}, num_priors=13)
    a = TaskAlignedAssigner(topk=2)(priors, [gt_instances([[0, 0, 14, 14]], [0])], 2, pred)
    assert positives(a) == [0, 1]
    assert positives(TaskAlignedAssigner(topk=3)(priors, [gt_instances([[0, 0, 14, 14]], [0])], 2, pred)) == [0, 1, 9]


def test_metric_ties_go_to_the_lower_prior_index():
    # Priors 0, 1, 3, 4 all predict the gt (0,0,20,20) itself with the same logit: four equal
    # t. With m = 1 the lowest prior index (0) is kept; m = 3: 0, 1, 3.
    box = [0, 0, 20, 20]
    pred = predictions({4: box, 3: box, 1: box, 0: box})
    gts = [gt_instances([box], [0])]
    assert positives(TaskAlignedAssigner(topk=1)(grid9(), gts, 2, pred)) == [0]
    assert positives(TaskAlignedAssigner(topk=3)(grid9(), gts, 2, pred)) == [0, 1, 3]


def test_duplicate_gts_lower_index_wins_every_prior():
    # The same box and class twice: identical u everywhere, so gt 0 takes every prior and gt 1
    # none; gt 0's t̂ is what it would be alone.
    pred = predictions({0: [0, 0, 20, 16], 4: [0, 0, 20, 12]}, {(4, 0): LN9})
    alone = TaskAlignedAssigner()(grid9(), [gt_instances([[0, 0, 20, 20]], [0])], 2, pred)
    twice = TaskAlignedAssigner()(grid9(), [gt_instances([[0, 0, 20, 20]] * 2, [0, 0])], 2, pred)
    assert twice.matched_gt[0].tolist() == alone.matched_gt[0].tolist() and (twice.matched_gt[0] != 1).all()
    assert torch.equal(twice.cls_scores, alone.cls_scores)


def test_no_gts_gt_without_positives_and_padding():
    # Image 0: no gt. Image 1: gt (5,5,7,7) (between grid points: no centre inside) and the
    # gt of test_soft_targets_hand_derived. Image 2: a degenerate gt (zero width) only.
    # Batched, image 1 gets what it gets alone; images 0 and 2 are background everywhere.
    pred = predictions({0: [0, 0, 20, 16], 4: [0, 0, 20, 12]}, {(4, 0): LN9})
    batch = {k: v.repeat(3, 1, 1) for k, v in pred.items()}
    gts = [
        gt_instances(torch.zeros(0, 4), []),
        gt_instances([[5, 5, 7, 7], [0, 0, 20, 20]], [1, 0]),
        gt_instances([[3, 3, 3, 10]], [0]),
    ]
    a = TaskAlignedAssigner()(grid9(), gts, 2, batch)
    alone = TaskAlignedAssigner()(grid9(), [gt_instances([[0, 0, 20, 20]], [0])], 2, pred)
    assert (a.matched_gt[[0, 2]] == -1).all() and (a.cls_scores[[0, 2]] == 0).all()
    assert positives(a, 1) == [0, 4] and (a.matched_gt[1, [0, 4]] == 1).all()
    assert torch.equal(a.cls_scores[1], alone.cls_scores[0])
    empty = TaskAlignedAssigner()(grid9(), [gt_instances(torch.zeros(0, 4), [])], 2, pred)
    assert (empty.matched_gt == -1).all() and empty.box_targets.abs().sum() == 0


def test_non_finite_predictions_and_probabilities():
    # A NaN predicted box and an inverted one have u = 0; a NaN logit s = 0: none of them can
    # be positive. Prior 0 (finite, logit 0) stays the only positive.
    pred = predictions({0: [0, 0, 20, 16], 1: [float("nan")] * 4, 3: [20, 20, 0, 0], 4: [0, 0, 20, 20]})
    pred["cls_logits"][0, 4, 0] = float("nan")
    a = TaskAlignedAssigner()(grid9(), [gt_instances([[0, 0, 20, 20]], [0])], 2, pred)
    assert positives(a) == [0]


def test_qfl_elements():
    p = torch.tensor([0.3, 0.3])
    logits = torch.log(p / (1 - p))
    loss = quality_focal_loss(logits, torch.tensor([0.8, 0.0]), beta=2.0)
    assert loss.tolist() == pytest.approx([0.2586283, 0.0321007], rel=1e-5)


def _tood_loss(mmdet=False):
    low = 1.0 if mmdet else 1e-12
    return DenseDetectionLoss(
        cls_loss="qfl", warmup_cls_loss="focal", cls_normalizer="sum_scores", cls_normalizer_min=low,
        box_loss="giou", box_weight=2.0, box_normalizer="sum_weights", box_normalizer_min=low,
        normalizer_floor="clamp" if mmdet else "one",
    )


def test_normaliser_authors_vs_mmdet():
    # One image, priors 0 and 4 positive with t̂ = 0.1 and 0.2 (Σ t̂ = 0.3), logits 0. The
    # authors divide both losses by 0.3, mmdetection 3.x by max(0.3, 1) = 1: ratio 1/0.3.
    # Without positives (Σ t̂ = 0) the authors divide by 1, not by 1e-12.
    from dsla_d2.assigners import Assignment

    gt = GTBatch.from_instances([gt_instances([[0, 0, 20, 20]], [0])])
    soft = torch.zeros(1, 9)
    soft[0, 0], soft[0, 4] = 0.1, 0.2
    matched = torch.where(soft > 0, 0, -1)
    a = Assignment.from_matches(gt, matched, 2, cls_scores=soft, reg_weights=soft)
    logits = torch.zeros(1, 9, 2)
    pred = torch.tensor([0.0, 0, 16, 16]).repeat(1, 9, 1)
    authors, mmdet = _tood_loss(), _tood_loss(mmdet=True)
    for term in ("cls", "box"):
        if term == "cls":
            x, y = (f.classification(logits, a, soft) for f in (authors, mmdet))
        else:
            x, y = (f.regression(pred, pred, a, None, None) for f in (authors, mmdet))
        assert (x / y).item() == pytest.approx(1 / 0.3, rel=1e-6)
    none = Assignment.from_matches(gt, torch.full((1, 9), -1), 2)
    # 18 negative entries with p = 0.5: BCE(0.5, 0)·0.5² = 0.6931472·0.25 = 0.1732868 each
    assert authors.classification(logits, none, none.cls_scores).item() == pytest.approx(18 * 0.1732868, rel=1e-6)


def test_warmup_is_atss_then_tal_and_switches_the_loss(caplog):
    # Warm-up for 5 iterations: iterations 0-4 give ATSS's assignment (hard targets, focal
    # loss), from 5 on TAL (QFL on t̂). Without a progress: iteration 0, with a warning.
    pred = predictions({0: [0, 0, 20, 16], 4: [0, 0, 20, 12]}, {(4, 0): LN9})
    gts = [gt_instances([[0, 0, 20, 20]], [0])]
    tal = TaskAlignedAssigner(warmup_iters=5)
    atss = ATSSAssigner(topk=9, center_margin=0.01, regression_weight="centerness")
    during = tal(grid9(), gts, 2, pred, progress=TrainingProgress(4, 100))
    after = tal(grid9(), gts, 2, pred, progress=TrainingProgress(5, 100))
    reference = atss(grid9(), gts, 2, pred)
    assert torch.equal(during.matched_gt, reference.matched_gt)
    assert torch.equal(during.reg_weights, reference.reg_weights)
    assert bool(during.extras["warmup"]) and not bool(after.extras["warmup"])
    assert positives(after) == [0, 4]
    loss = _tood_loss()
    assert loss.cls_loss_of(during) == "focal" and loss.cls_loss_of(after) == "qfl"
    assert DenseDetectionLoss(cls_loss="qfl").cls_loss_of(during) == "qfl"  # no warm-up loss set
    with caplog.at_level(logging.WARNING, logger="dsla_d2.assigners.tal"):
        assert bool(tal(grid9(), gts, 2, pred).extras["warmup"])
    assert "no training progress" in caplog.text


def test_describe_targets_shows_t_hat():
    # The visualiser's view (DenseDetectionLoss.describe_targets): t̂ is the class target and
    # the box weight; during the warm-up the focal loss learns 1 on every positive.
    pred = predictions({0: [0, 0, 20, 16], 4: [0, 0, 20, 12]}, {(4, 0): LN9})
    gts = [gt_instances([[0, 0, 20, 20]], [0])]
    outputs = {"cls_logits": pred["cls_logits"], "box_reg": pred["pred_boxes"], "pred_boxes": pred["pred_boxes"]}
    quality = QualityCoupling(branch=None, cls_target="static")
    tal = TaskAlignedAssigner(warmup_iters=1)
    for it in (0, 1):
        a = tal(grid9(), gts, 2, pred, progress=TrainingProgress(it, 10))
        d = _tood_loss().describe_targets(outputs, grid9(), a, box_coder=None, quality=quality)
        if it == 0:
            assert d["cls_target"][0].tolist() == a.pos_mask[0].float().tolist()
        else:
            assert d["cls_target"][0, [0, 4]].tolist() == pytest.approx([0.7999994, 0.256289], rel=1e-5)
            assert torch.equal(d["cls_target"], a.cls_scores) and torch.equal(d["reg_weight"], a.cls_scores)
        assert torch.equal(d["cls_target_static"], a.cls_scores)


# ------------------------------------------------------------------ sparse = dense
def ipow(x, e):
    """x^e for an integer e ≥ 0 as x·x·…·x: torch.pow's vectorised and scalar paths can differ
    in the last bit, and the reference must give the same bits as the sparse code."""
    out = torch.ones_like(x)
    for i in range(int(e)):
        out = x if i == 0 else out * x
    return out


def dense_tal(priors, gt_list, logits, pred_boxes, topk=13, alpha=1, beta=6, margin=0.01):
    """The rules of the spec on (N, R, G) tensors: t over every (prior, gt), the top-m over all
    priors by (t ↓, prior ↑), t > 0 and centre inside, largest u (then lowest gt), t̂."""
    gt = GTBatch.from_instances(gt_list)
    n, r, _ = logits.shape
    g = gt.classes.shape[1]
    matched = torch.full((n, r), -1, dtype=torch.long)
    zeros = torch.zeros(n, r)
    if g == 0 or r == 0:
        return matched, zeros, zeros, zeros
    probs = torch.nan_to_num(logits.float().sigmoid(), nan=0.0)
    s = torch.gather(probs, 2, gt.classes.clamp(min=0)[:, None, :].expand(n, r, g))
    u = aligned_box_iou(pred_boxes.float()[:, :, None, :], gt.boxes[:, None, :, :])
    u = torch.nan_to_num(u, nan=0.0, posinf=0.0, neginf=0.0)
    t = ipow(s, alpha) * ipow(u, beta)
    order = torch.sort(-t, dim=1, stable=True).indices
    rank = torch.empty_like(order).scatter_(1, order, torch.arange(r)[None, :, None].expand(n, r, g))
    box, p = gt.boxes[:, None, :, :], priors.points[None, :, None, :]
    inside = torch.cat([p - box[..., :2], box[..., 2:] - p], -1).min(-1).values > margin
    pos = (rank < topk) & (t > 0) & inside & gt.valid[:, None, :]
    um = torch.where(pos, u, torch.full_like(u, -1.0))
    first = torch.where(pos & (um == um.amax(-1, keepdim=True)), torch.arange(g), g).amin(-1)
    has = pos.any(-1)
    matched = torch.where(has, first, -1)
    idx = matched.clamp(min=0)[..., None]
    tw = torch.where(has, t.gather(2, idx)[..., 0], zeros)
    uw = torch.where(has, u.gather(2, idx)[..., 0], zeros)
    own = (matched[..., None] == torch.arange(g)) & has[..., None]  # (N, R, G)
    max_t = torch.where(own, tw[..., None], 0.0).amax(1)  # (N, G)
    max_u = torch.where(own, uw[..., None], 0.0).amax(1)
    mt, mu = max_t.gather(1, matched.clamp(min=0)), max_u.gather(1, matched.clamp(min=0))
    soft = torch.where(has, tw / (mt + 1e-7) * mu, zeros)
    return matched, soft, tw, uw


def random_case(seed):
    """Seeded random batch that hits the rules' edges: duplicated and tiny gts, exact copies
    of gts as predictions (u = 1, ties in t), duplicated predictions (ties across priors),
    NaN / inverted / huge predicted boxes, NaN and −inf logits, empty images."""
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
        k = ri(0, 18) if ri(0, 5) else 0
        ctr = rf(k, 2) * torch.tensor([w, h])
        half = (0.3 + rf(k, 2) * torch.tensor([w, h]) * 0.6) / 2
        boxes = torch.cat([ctr - half, ctr + half], 1)
        if k > 2 and ri(0, 1):
            boxes[1] = boxes[0]  # a duplicate (maybe another class)
        if k > 3 and ri(0, 2) == 0:
            boxes[2, 2] = boxes[2, 0]  # degenerate: zero width
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
    logits = torch.randn(n, r, c, generator=g) * 2 - 1
    logits[:, dup] = logits[:, torch.randint(0, r, (r // 6,), generator=g)]
    logits[0, ri(0, r - 1), 0] = float("nan")
    logits[0, ri(0, r - 1), 1] = -float("inf")
    kwargs = dict(topk=[1, 2, 5, 13, 40][ri(0, 4)], alpha=[1, 1, 0, 2][ri(0, 3)], beta=[6, 6, 1, 3][ri(0, 3)])
    return priors, gt_list, {"pred_boxes": pred, "cls_logits": logits}, c, kwargs


def assert_same_as_dense(priors, gt_list, pred, c, kwargs):
    a = TaskAlignedAssigner(**kwargs)(priors, gt_list, c, pred)
    matched, soft, tw, uw = dense_tal(priors, gt_list, pred["cls_logits"], pred["pred_boxes"], **kwargs)
    assert torch.equal(a.matched_gt, matched)
    assert torch.equal(a.cls_scores, soft) and torch.equal(a.reg_weights, soft)
    assert torch.equal(a.extras["alignment"], tw) and torch.equal(a.extras["matched_iou"], uw)
    return a


def _boxes_at_iou(gt, theta):
    """Boxes whose IoU with ``gt`` is θ in exact arithmetic: shrunk to a fraction θ of its
    width or height, stretched to 1/θ, shifted by d = w(1 − θ)/(1 + θ) along x or y (IoU
    (w − d)/(w + d) = θ), and the same scaled by 1 ± 1e-6."""
    x1, y1, x2, y2 = gt.tolist()
    w, h = x2 - x1, y2 - y1
    dx, dy = w * (1 - theta) / (1 + theta), h * (1 - theta) / (1 + theta)
    out = [
        [x1, y1, x1 + w * theta, y2], [x2 - w * theta, y1, x2, y2], [x1, y1, x2, y1 + h * theta],
        [x1, y1, x1 + w / theta, y2], [x2 - w / theta, y1, x2, y2], [x1, y2 - h / theta, x2, y2],
        [x1 + dx, y1, x2 + dx, y2], [x1 - dx, y1, x2 - dx, y2], [x1, y1 + dy, x2, y2 + dy], [x1, y1 - dy, x2, y2 - dy],
    ]
    return [[v * f for v in box] for box in out for f in (1.0, 1 + 1e-6, 1 - 1e-6)]


@pytest.mark.parametrize("theta", [0.0, 0.05, 0.25, 0.5, 0.7311, 0.95])
def test_search_finds_every_predicted_box_with_iou_at_least_theta(theta):
    # The geometric claim under the sparse search: the bucket runs returned for a gt hold
    # every predicted box whose IoU with it is ≥ θ (θ = 0: > 0). Random boxes of 0.01 px to
    # 20,000 px, and boxes built to sit at IoU θ exactly (up to rounding) around each gt.
    from dsla_d2.assigners.box_index import PredictedBoxIndex

    g = torch.Generator().manual_seed(int(theta * 1e4))
    gts = torch.cat([torch.rand(40, 2, generator=g) * 500, torch.exp(torch.rand(40, 2, generator=g) * 9 - 2)], 1)
    gts[:, 2:] += gts[:, :2]
    sides = torch.exp(torch.rand(3000, 2, generator=g) * 14 - 4.6)  # 0.01 … 20,000 px
    corner = torch.rand(3000, 2, generator=g) * 1200 - 300
    boxes = torch.cat([corner, corner + sides], 1)
    if theta > 0:
        boxes = torch.cat([boxes, torch.tensor([b for gt in gts for b in _boxes_at_iou(gt, theta)])])
    index = PredictedBoxIndex(boxes[None].float())
    image = torch.zeros(len(gts), dtype=torch.long)
    start, end, row = index.ranges(gts.float(), image, torch.full((len(gts),), theta, dtype=torch.float64))
    found = torch.zeros(len(gts), len(boxes), dtype=torch.bool)
    for a, b, r in zip(start.tolist(), end.tolist(), row.tolist()):
        found[r, index.prior[a:b]] = True
    iou = aligned_box_iou(boxes.float()[None, :, :], gts.float()[:, None, :])  # (G, B)
    needed = iou >= theta if theta > 0 else iou > 0
    assert needed.sum() > 40
    assert not (needed & ~found).any()


@pytest.mark.parametrize("block", range(4))
def test_sparse_equals_dense_on_random_cases(block):
    # 4 × 75 = 300 seeded cases, bit for bit (integer exponents, see ipow).
    hits = 0
    for seed in range(75 * block, 75 * (block + 1)):
        a = assert_same_as_dense(*random_case(seed))
        hits += int(a.pos_mask.sum())
    assert hits > 200  # the cases do have positives


def test_sparse_equals_dense_crowded_1200_gts():
    # 1200 gts of 4-60 px on a 256×256 image (1344 priors), predictions near the priors'
    # anchors and on the gts, random logits over 5 classes: exact, and well under a second.
    g = torch.Generator().manual_seed(0)
    priors = PriorGenerator([8, 16, 32], offset=0.5, anchor_scale=4)(
        [torch.zeros(1, 1, 256 // s, 256 // s) for s in (8, 16, 32)]
    )
    r = len(priors)
    ctr = torch.rand(1200, 2, generator=g) * 256
    half = (4 + torch.rand(1200, 2, generator=g) * 56) / 2
    boxes = torch.cat([ctr - half, ctr + half], 1)
    gts = [gt_instances(boxes, torch.randint(0, 5, (1200,), generator=g), (256, 256))]
    pred = priors.anchors[None] + torch.randn(1, r, 4, generator=g) * 6
    pick = torch.randint(0, r, (r // 2,), generator=g)
    pred[0, pick] = boxes[torch.randint(0, 1200, (r // 2,), generator=g)] + torch.randn(r // 2, 4, generator=g)
    logits = torch.randn(1, r, 5, generator=g)
    a = assert_same_as_dense(priors, gts, {"pred_boxes": pred, "cls_logits": logits}, 5, {})
    assert 100 < int(a.pos_mask.sum()) < r


# ------------------------------------------------------------------ all-reduced normaliser
def _normaliser_inputs():
    # Two images; image 1 has a single weak positive so its own Σ t̂ differs a lot from
    # image 0's: per-process normalisers would not give the combined loss.
    g = torch.Generator().manual_seed(3)
    priors = PriorGenerator([8, 16], offset=0.5, anchor_scale=4)([torch.zeros(1, 1, 8, 8), torch.zeros(1, 1, 4, 4)])
    r = len(priors)
    gts = [
        gt_instances([[4, 4, 40, 30], [20, 30, 60, 60]], [0, 2], (64, 64)),
        gt_instances([[10, 40, 30, 62]], [1], (64, 64)),
    ]
    pred = priors.anchors[None].repeat(2, 1, 1) + torch.randn(2, r, 4, generator=g) * 4
    logits = torch.randn(2, r, 3, generator=g, requires_grad=True)
    return priors, gts, pred, logits


def _tood_losses(priors, gts, pred, logits):
    a = TaskAlignedAssigner()(priors, gts, 3, {"pred_boxes": pred, "cls_logits": logits})
    loss = _tood_loss()
    cls = loss.classification(logits, a, a.cls_scores)
    box = loss.regression(pred, pred, a, None, priors)
    return torch.stack([cls, box]).detach(), a


def _normaliser_worker(rank, world, init_file, out_dir):
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        priors, gts, pred, logits = _normaliser_inputs()
        out, _ = _tood_losses(priors, gts[rank : rank + 1], pred[rank : rank + 1], logits[rank : rank + 1])
        torch.save(out, os.path.join(out_dir, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


def test_normaliser_all_reduced_over_two_processes(tmp_path):
    # Each process divides by the all-reduced mean of Σ t̂; the mean of the two processes'
    # losses then equals one process's loss on both images (gloo, forked CPU processes).
    priors, gts, pred, logits = _normaliser_inputs()
    combined, a = _tood_losses(priors, gts, pred, logits)
    per_image = a.cls_scores.sum(1)
    assert per_image[0] > 1 and per_image[1] < 0.8 * per_image[0]
    halves = [_tood_losses(priors, gts[i : i + 1], pred[i : i + 1], logits[i : i + 1])[0] for i in (0, 1)]
    assert not torch.allclose((halves[0] + halves[1]) / 2, combined, rtol=1e-3)
    args = (2, str(tmp_path / "dist_init"), str(tmp_path))
    mp.start_processes(_normaliser_worker, args=args, nprocs=2, join=True, start_method="fork")
    per_rank = [torch.load(tmp_path / f"rank{r}.pt") for r in range(2)]
    assert torch.allclose((per_rank[0] + per_rank[1]) / 2, combined, rtol=1e-5, atol=1e-7)


# ------------------------------------------------------------------ configs
CONFIGS = {  # file -> (meta-architecture, warm-up iterations, anchor scale, prior offset)
    "tal_atss_R_50_FPN_1x.py": ("DslaATSS", 4 * 7330, 8, 0.0),
    "tal_atss_r18_synth.py": ("DslaATSS", 400, 4, 0.5),
    "tal_fcos_r18_synth.py": ("DslaFCOS", 400, 4, 0.5),
}


def test_every_config_in_the_folder_is_listed():
    assert sorted(f for f in os.listdir(TOOD_CONFIGS) if f.endswith(".py")) == sorted(CONFIGS)


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_config_parts_and_one_training_step(name):
    arch, warmup, anchor_scale, offset = CONFIGS[name]
    cfg = LazyConfig.load(os.path.join(TOOD_CONFIGS, name))
    m = cfg.model
    assert m._target_.__name__ == arch and m.head.quality_branch is None and m.quality.branch is None
    assert (m.prior_generator.anchor_scale, m.prior_generator.offset) == (anchor_scale, offset)
    assert (m.loss.cls_loss, m.loss.warmup_cls_loss, m.loss.cls_normalizer, m.loss.box_normalizer) == (
        "qfl", "focal", "sum_scores", "sum_weights"
    )
    assert (m.loss.box_loss, m.loss.box_weight, m.loss.normalizer_floor) == ("giou", 2.0, "one")
    assert m.loss.cls_normalizer_min == m.loss.box_normalizer_min == 1e-12
    if "R_50" in name:
        assert cfg.train.max_iter == 12 * 7330 and cfg.optimizer.lr == 0.01
        assert list(cfg.lr_multiplier.scheduler.milestones) == [8 * 7330, 11 * 7330]
        assert (m.test_topk_mode, m.test_topk_rank) == ("locations", "cls")
    model = instantiate(m)
    assert type(model.assigner) is TaskAlignedAssigner and model.assigner.warmup_iters == warmup
    assert (model.assigner.topk, model.assigner.alpha, model.assigner.beta) == (13, 1.0, 6.0)
    assert type(model.assigner.warmup_assigner) is ATSSAssigner and model.assigner.warmup_assigner.topk == 9
    model.train()
    inputs = make_inputs([[[10, 12, 60, 50], [70, 30, 120, 110], [5, 5, 20, 40]]], [[0, 5, 3]], size=128)
    for iteration in (0, warmup):  # the ATSS warm-up, then TAL
        model.set_training_progress(iteration, cfg.train.max_iter)
        with EventStorage(0):
            losses = model(inputs)
        assert set(losses) == {"loss_cls", "loss_box_reg"} and all(torch.isfinite(v) for v in losses.values())
    sum(losses.values()).backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.head.parameters())
