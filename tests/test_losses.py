"""Loss elements and normalisers, with values worked out by hand."""
import math

import pytest
import torch

from dsla_d2.assigners import Assignment
from dsla_d2.losses import DenseDetectionLoss, iou_loss, quality_focal_loss, varifocal_loss
from dsla_d2.losses.quality_focal import soft_one_hot
from dsla_d2.quality import QualityCoupling
from dsla_d2.utils.comm import reduce_mean

LN2 = math.log(2.0)  # BCE of σ = 0.5 against 0 or 1


def test_iou_family_losses():
    # pred (0,0,10,10), target (0,0,10,20): inter 100, union 200 → IoU 0.5;
    # enclosing box = target (area 200) → GIoU = IoU − (200 − 200)/200 = 0.5.
    p = torch.tensor([[0.0, 0, 10, 10], [0, 0, 10, 10]])
    t = torch.tensor([[0.0, 0, 10, 20], [20, 0, 30, 10]])
    # second pair: disjoint, union 200, enclosing (0,0,30,10) area 300 →
    # IoU 0, GIoU = 0 − (300 − 200)/300 = −1/3 → 1 − GIoU = 4/3; −log(max(0, 1e-6)) = 13.815511.
    assert iou_loss(p, t, "iou").tolist() == pytest.approx([LN2, -math.log(1e-6)], abs=1e-5)
    assert iou_loss(p, t, "linear_iou").tolist() == pytest.approx([0.5, 1.0], abs=1e-6)
    assert iou_loss(p, t, "giou").tolist() == pytest.approx([0.5, 4 / 3], abs=1e-5)
    # a degenerate predicted box (x2 < x1) gives a finite loss, not an assertion error
    bad = torch.tensor([[10.0, 10, 0, 0]])
    assert torch.isfinite(iou_loss(bad, t[:1], "iou")).all()
    with pytest.raises(ValueError, match="unknown box loss"):
        iou_loss(p, t, "l1")


def test_qfl_and_vfl_elements():
    # QFL = BCE(σ, y)·|y − σ|^β (GFL eq. 5). logit 0 → σ = 0.5:
    # y = 0.5 → |0| → 0;  y = 1 → ln2·0.25 = 0.173287.
    # logit 2 → σ = 0.880797; y = 0.375: BCE = −(0.375·ln σ + 0.625·ln(1 − σ))
    #   = 0.375·0.126928 + 0.625·2.126928 = 1.376928; |0.375 − 0.880797|² = 0.255831
    #   → 0.352260 (the DSLA spec's vector).
    logits = torch.tensor([0.0, 0.0, 2.0])
    y = torch.tensor([0.5, 1.0, 0.375])
    assert quality_focal_loss(logits, y).tolist() == pytest.approx([0.0, 0.173287, 0.352260], abs=1e-5)
    # VFL (VarifocalNet eq. 2): positive y = 0.6, logit 0: y·BCE(0.5, 0.6) = 0.6·ln2 = 0.415888;
    # negative, logit 0: α·σ^γ·BCE(0.5, 0) = 0.75·0.25·ln2 = 0.129965.
    v = varifocal_loss(torch.tensor([0.0, 0.0]), torch.tensor([0.6, 0.0]))
    assert v.tolist() == pytest.approx([0.6 * LN2, 0.75 * 0.25 * LN2], abs=1e-6)


def test_vfl_and_qfl_gradients_on_a_negative():
    # VFL negative f(x) = α·σ²·(−log(1 − σ)), α = 0.75, at x = 0 (σ = 0.5, dσ/dx = 0.25):
    # df/dσ = α·(2σ·(−log(1 − σ)) + σ²/(1 − σ)) = 0.75·(ln2 + 0.5) = 0.894860 → ×0.25 = 0.223715.
    x = torch.zeros(1, requires_grad=True)
    varifocal_loss(x, torch.zeros(1)).backward()
    assert x.grad.item() == pytest.approx(0.75 * (LN2 + 0.5) * 0.25, abs=1e-6)
    # QFL negative f = σ²·(−log(1 − σ)) (β 2): same derivative without α → 0.298287.
    x = torch.zeros(1, requires_grad=True)
    quality_focal_loss(x, torch.zeros(1)).backward()
    assert x.grad.item() == pytest.approx((LN2 + 0.5) * 0.25, abs=1e-6)


def test_soft_one_hot():
    t = soft_one_hot(torch.tensor([[1, 3]]), torch.tensor([[0.5, 0.0]]), num_classes=3)
    assert t.tolist() == [[[0.0, 0.5, 0.0], [0.0, 0.0, 0.0]]]  # label 3 = background: all zero


def _assignment(reg_weight):
    # two priors, 2 classes: prior 0 is class 0 with target box (0,0,10,20); prior 1 background
    return Assignment(
        labels=torch.tensor([[0, 2]]),
        cls_scores=torch.tensor([[1.0, 0.0]]),
        cls_weights=torch.ones(1, 2),
        reg_mask=torch.tensor([[True, False]]),
        box_targets=torch.tensor([[[0.0, 0, 10, 20], [0, 0, 0, 0]]]),
        reg_weights=torch.tensor([[reg_weight, 0.0]]),
        matched_gt=torch.tensor([[0, -1]]),
    )


#: No quality branch, classification target = the assignment's static score.
STATIC = QualityCoupling(cls_target="static")


def _outputs(logits, boxes):
    """The loss's ``outputs``: decoded boxes double as the raw regression output here."""
    return {"cls_logits": logits, "pred_boxes": boxes, "box_reg": boxes}


def test_dense_loss_focal_and_box_normalisers():
    logits = torch.zeros(1, 2, 2, requires_grad=True)
    boxes = torch.tensor([[[0.0, 0, 10, 10], [0, 0, 1, 1]]], requires_grad=True)
    a = _assignment(2.0)
    # Focal (α 0.25, γ 2) at σ = 0.5: target 1 → 0.25·0.25·ln2 = 0.043322;
    # target 0 → 0.75·0.25·ln2 = 0.129965. One positive element, three negative ones:
    # (0.043322 + 3·0.129965) / num_pos 1 = 0.433217.
    # Box: −log IoU = ln2 (IoU 0.5), weight 2 → 2·ln2, normalised by Σ weights = 2 → ln2;
    # by num_pos = 1 → 2·ln2.
    loss = DenseDetectionLoss(cls_loss="focal", box_loss="iou", box_normalizer="sum_weights")
    out = loss(_outputs(logits, boxes), None, a, box_coder=None, quality=STATIC)
    assert out["loss_cls"].item() == pytest.approx(0.25 * 0.25 * LN2 + 3 * 0.75 * 0.25 * LN2, abs=1e-5)
    assert out["loss_box_reg"].item() == pytest.approx(LN2, abs=1e-5)
    loss2 = DenseDetectionLoss(cls_loss="focal", box_loss="iou", box_normalizer="num_pos", box_weight=2.0)
    assert loss2(_outputs(logits, boxes), None, a, box_coder=None, quality=STATIC)["loss_box_reg"].item() == pytest.approx(
        4 * LN2, abs=1e-5
    )
    # A weight sum below 1 is clamped to 1 (max(Σ, 1)): weight 0.5 → 0.5·ln2 / 1.
    a_small = _assignment(0.5)
    out = loss(_outputs(logits, boxes), None, a_small, box_coder=None, quality=STATIC)
    assert out["loss_box_reg"].item() == pytest.approx(0.5 * LN2, abs=1e-5)


def test_dense_loss_qfl_sum_scores_and_plus_images():
    logits = torch.zeros(1, 2, 2)
    boxes = torch.tensor([[[0.0, 0, 10, 10], [0, 0, 1, 1]]])
    a = _assignment(1.0)
    a.cls_scores = torch.tensor([[0.5, 0.0]])  # the (static) classification target
    # QFL: positive element y 0.5 at σ 0.5 → 0; three zero-target elements: ln2·0.5² each
    # = 0.173287 → sum 0.519860; normaliser max(Σ y = 0.5, 1) = 1.
    q = DenseDetectionLoss(cls_loss="qfl", cls_normalizer="sum_scores", box_loss="iou")
    assert q(_outputs(logits, boxes), None, a, box_coder=None, quality=STATIC)["loss_cls"].item() == pytest.approx(
        3 * 0.25 * LN2, abs=1e-5
    )
    # FoveaBox's normaliser num_pos + num_images = 1 + 1 = 2.
    f = DenseDetectionLoss(cls_loss="focal", cls_normalizer="num_pos_plus_images", box_loss="iou")
    expected = (0.25 * 0.25 * LN2 + 3 * 0.75 * 0.25 * LN2) / 2
    assert f(_outputs(logits, boxes), None, a, box_coder=None, quality=STATIC)["loss_cls"].item() == pytest.approx(
        expected, abs=1e-5
    )


def test_empty_positive_set_keeps_graph():
    logits = torch.zeros(1, 2, 2, requires_grad=True)
    deltas = torch.ones(1, 2, 4, requires_grad=True)
    a = _assignment(1.0)
    a.reg_mask[:] = False
    a.matched_gt[:] = -1
    a.labels[:] = 2
    out = DenseDetectionLoss(box_loss="giou")(_outputs(logits, deltas), None, a, box_coder=None, quality=STATIC)
    assert out["loss_box_reg"].item() == 0.0 and out["loss_box_reg"].requires_grad
    out["loss_box_reg"].backward()
    assert deltas.grad is not None and (deltas.grad == 0).all()


def test_bad_options_are_rejected():
    with pytest.raises(ValueError, match="cls_loss"):
        DenseDetectionLoss(cls_loss="softmax")
    with pytest.raises(ValueError, match="box_normalizer"):
        DenseDetectionLoss(box_normalizer="sum")


def test_reduce_mean_single_process_is_identity():
    t = torch.tensor(3.5)
    assert reduce_mean(t).item() == 3.5


def test_fcos_box_normaliser_floor():
    # One positive with centerness weight 0.25 and −log IoU = ln2 (IoU 0.5):
    # weighted sum 0.25·ln2. FCOS divides by max(Σ centerness, 1e-6) = 0.25 → ln2;
    # the floor 1 (ATSS) would give 0.25·ln2, a quarter of the loss.
    logits = torch.zeros(1, 2, 2)
    boxes = torch.tensor([[[0.0, 0, 10, 10], [0, 0, 1, 1]]])
    a = _assignment(0.25)
    fcos = DenseDetectionLoss(box_loss="iou", box_normalizer="sum_weights", box_normalizer_min=1e-6)
    atss = DenseDetectionLoss(box_loss="iou", box_normalizer="sum_weights")
    assert fcos(_outputs(logits, boxes), None, a, box_coder=None, quality=STATIC)["loss_box_reg"].item() == pytest.approx(LN2, abs=1e-5)
    assert atss(_outputs(logits, boxes), None, a, box_coder=None, quality=STATIC)["loss_box_reg"].item() == pytest.approx(
        0.25 * LN2, abs=1e-5
    )
    with pytest.raises(ValueError, match="box_normalizer_min"):
        DenseDetectionLoss(box_normalizer_min=0.0)
