"""Soft targets of Dynamic ATSS (paper §3.3): QFL (eq. 6), VFL (eq. 7), y = PIoU, and the
IoU branch — checked with hand-derived values.

σ(0) = 0.5, ln 2 = 0.693147; σ(ln 3) = 0.75, ln(4/3) = 0.287682, ln 4 = 1.386294.
"""
import math

import pytest
import torch

import dsla_d2  # noqa: F401
from dsla_d2.assigners.atss import ATSSAssigner, DynamicATSSAssigner
from dsla_d2.assigners.base import Assignment
from dsla_d2.box_ops import aligned_box_iou
from dsla_d2.losses import DenseDetectionLoss, quality_focal_loss, varifocal_loss
from dsla_d2.priors import PriorGenerator
from dsla_d2.quality import QualityCoupling

from tiny import gt_instances

LN3 = math.log(3.0)
GT_A = [2.0, 2.0, 26.0, 18.0]
FAR = [200.0, 200.0, 210.0, 210.0]


def test_qfl_elements():
    logits = torch.tensor([0.0, 0.0, LN3, LN3])
    target = torch.tensor([0.6, 0.0, 0.5, 0.0])
    # QFL = |y − σ|^2 · BCE(σ, y):
    # y 0.6, σ 0.5: 0.1² · ln 2 = 0.006931;  y 0, σ 0.5: 0.25 · ln 2 = 0.173287;
    # y 0.5, σ 0.75: BCE = −(0.5 ln 0.75 + 0.5 ln 0.25) = 0.5·(0.287682 + 1.386294) = 0.836988,
    #   × 0.25² = 0.052312;  y 0, σ 0.75: 0.75² · ln 4 = 0.5625 · 1.386294 = 0.779791.
    expected = [0.006931, 0.173287, 0.052312, 0.779791]
    assert quality_focal_loss(logits, target, beta=2.0).tolist() == pytest.approx(expected, abs=1e-6)


def test_vfl_elements():
    logits = torch.tensor([0.0, 0.0, LN3, LN3])
    target = torch.tensor([0.6, 0.0, 0.5, 0.0])
    # VFL positives y·BCE(σ, y); negatives α·σ^γ·BCE(σ, 0), α = 0.75, γ = 2:
    # y 0.6, σ 0.5: 0.6 · ln 2 = 0.415888;  y 0, σ 0.5: 0.75 · 0.25 · ln 2 = 0.129965;
    # y 0.5, σ 0.75: 0.5 · 0.836988 = 0.418494;  y 0, σ 0.75: 0.75 · 0.5625 · 1.386294 = 0.584843.
    expected = [0.415888, 0.129965, 0.418494, 0.584843]
    assert varifocal_loss(logits, target, alpha=0.75, gamma=2.0).tolist() == pytest.approx(expected, abs=1e-6)


def test_vfl_positive_gradient():
    # Positive weight y is a constant: d/dx [y·BCE(σ(x), y)] = y·(σ − y) = 0.6·(0.5 − 0.6) = −0.06.
    x = torch.zeros(1, requires_grad=True)
    varifocal_loss(x, torch.tensor([0.6])).sum().backward()
    assert x.grad.item() == pytest.approx(-0.06, abs=1e-6)


def one_positive_assignment():
    """1 image, 2 priors, 2 classes: prior 0 positive for class 0, prior 1 background."""
    return Assignment(
        labels=torch.tensor([[0, 2]]),
        cls_scores=torch.tensor([[1.0, 0.0]]),
        cls_weights=torch.ones(1, 2),
        reg_mask=torch.tensor([[True, False]]),
        box_targets=torch.zeros(1, 2, 4),
        reg_weights=torch.tensor([[1.0, 0.0]]),
        matched_gt=torch.tensor([[0, -1]]),
    )


@pytest.mark.parametrize(
    "cls_loss, expected",
    [
        # All logits 0; target y = 0.6 for (prior 0, class 0), 0 for the 3 other elements;
        # normaliser: 1 positive.
        # focal: 0.25·0.5²·ln 2 = 0.043322 + 3 · 0.75·0.5²·ln 2 (0.129965) = 0.433217
        ("focal", 0.433217),
        # QFL: 0.006931 + 3 · 0.173287 = 0.526792
        ("qfl", 0.526792),
        # VFL: 0.415888 + 3 · 0.129965 = 0.805783
        ("vfl", 0.805783),
    ],
)
def test_dense_loss_classification(cls_loss, expected):
    loss = DenseDetectionLoss(cls_loss=cls_loss)
    logits = torch.zeros(1, 2, 2)
    value = loss.classification(logits, one_positive_assignment(), torch.tensor([[0.6, 0.0]]))
    assert value.item() == pytest.approx(expected, abs=1e-5)


def grid3():
    feats = [torch.zeros(1, 1, 4, 4), torch.zeros(1, 1, 2, 2), torch.zeros(1, 1, 1, 1)]
    return PriorGenerator([8, 16, 32], offset=0.5, anchor_scale=2)(feats)


def meta_arch_ious(pred_boxes, assignment):
    """What AssignedDenseDetector.forward_training feeds the quality coupling: the IoU of
    the detached predicted box with the assigned gt box, 0 off the positives."""
    ious = aligned_box_iou(pred_boxes.detach(), assignment.box_targets)
    return torch.where(assignment.reg_mask, ious, torch.zeros_like(ious))


def test_soft_targets_and_iou_branch_targets_are_piou():
    # ATSS on GT A (see test_atss_assigner.py): positives 5 (12,12) and 6 (20,12).
    # Predicted boxes: prior 5 → (2,2,20,18): IoU with A = 18·16/384 = 0.75;
    # prior 6 → (2,2,14,18): 12·16/384 = 0.5.
    priors = grid3()
    pred = torch.tensor(FAR).repeat(1, 21, 1)
    pred[0, 5] = torch.tensor([2.0, 2.0, 20.0, 18.0])
    pred[0, 6] = torch.tensor([2.0, 2.0, 14.0, 18.0])
    a = ATSSAssigner(topk=4)(priors, [gt_instances([GT_A], [1], (32, 32))], 3)
    assert torch.nonzero(a.pos_mask[0]).flatten().tolist() == [5, 6]
    ious = meta_arch_ious(pred, a)
    expected = torch.zeros(1, 21)
    expected[0, 5], expected[0, 6] = 0.75, 0.5
    # Dynamic ATSS soft target y = PIoU: cls_target "iou", or "iou_product" with the hard
    # cls_scores (1) of ATSS; "static" keeps 1.
    for cls_target in ("iou", "iou_product"):
        y = QualityCoupling(branch="iou", cls_target=cls_target).classification_targets(a, ious)
        assert torch.allclose(y, expected, atol=1e-6)
    static = QualityCoupling(branch="centerness").classification_targets(a, ious)
    assert static[0, [5, 6]].tolist() == [1.0, 1.0] and static.sum().item() == 2.0
    # IoU branch target = PIoU of the detached predicted box with the assigned gt.
    iou_branch = QualityCoupling(branch="iou", cls_target="iou")
    assert torch.allclose(iou_branch.branch_targets(priors, a, ious), expected, atol=1e-6)
    # Centerness branch target from the anchor centre: 0.654654 and 0.447214
    # (= the assigner's centerness regression weights).
    c = QualityCoupling(branch="centerness").branch_targets(priors, a, ious)
    assert c[0, [5, 6]].tolist() == pytest.approx([0.654654, 0.447214], abs=1e-5)
    assert torch.allclose(c[a.reg_mask], a.reg_weights[a.reg_mask])
    # Branch loss with zero logits: BCE(0.5, y) = ln 2 for any y, 2 positives → ln 2.
    loss = iou_branch.branch_loss(torch.zeros(1, 21), priors, a, ious)
    assert loss.item() == pytest.approx(0.693147, abs=1e-6)


def test_dynamic_atss_soft_target_of_its_positive():
    # Dynamic ATSS on GT A with prior 16 predicting A itself (see test_atss_assigner.py):
    # its only positive is prior 16, CIoU = 0.333333 + 1; soft target y = PIoU = 1 and
    # y = CIoU − AIoU.
    priors = grid3()
    pred = torch.tensor(FAR).repeat(1, 21, 1)
    pred[0, 16] = torch.tensor(GT_A)
    pred[0, 17] = torch.tensor([2.0, 2.0, 20.0, 18.0])
    pred[0, 20] = torch.tensor([2.0, 2.0, 14.0, 18.0])
    a = DynamicATSSAssigner(topk=4)(priors, [gt_instances([GT_A], [0], (32, 32))], 1, {"pred_boxes": pred})
    ious = meta_arch_ious(pred, a)
    y = QualityCoupling(branch="iou", cls_target="iou").classification_targets(a, ious)
    assert torch.nonzero(y[0]).flatten().tolist() == [16]
    assert y[0, 16].item() == pytest.approx(1.0, abs=1e-6)
    aiou_16 = 352 / 1056
    assert (a.extras["matched_iou"][0, 16] - aiou_16).item() == pytest.approx(y[0, 16].item(), abs=1e-5)
