"""``DenseDetectionLoss.describe_targets``: what each prior learns, from the loss's own
target computation (the assignment visualiser draws it)."""
import pytest
import torch

from dsla_d2.assigners import Assignment, GTBatch
from dsla_d2.losses import DenseDetectionLoss
from dsla_d2.quality import QualityCoupling

from test_contract import TargetRecordingLoss, disentangled_case
from tiny import gt_instances, make_inputs, tiny_fcos


def outputs_for(pred):
    n, r, _ = pred.shape
    return {"cls_logits": torch.zeros(n, r, 2), "box_reg": pred, "pred_boxes": pred, "quality": torch.zeros(n, r, 1)}


def test_soft_targets_of_a_disentangled_assignment():
    # disentangled_case: cls matching [0, −1, 1], reg matching [−1, 1, 1], predictions with
    # IoU 0.5 (prior 0 vs its cls gt 0), 0.5 (prior 1 vs its reg gt 1), 1 (prior 2 vs gt 1).
    # QFL with iou_product: label_d = 1 · IoU with the cls gt → [0.5, 0, 1]; the static
    # score is 1 on the cls positives → [1, 0, 1]; reg weights 1 on the reg positives →
    # [0, 1, 1]; the IoU branch target is the IoU with the reg gt → [0, 0.5, 1].
    priors, a, pred = disentangled_case()
    loss = DenseDetectionLoss(cls_loss="qfl", box_loss="giou")
    quality = QualityCoupling(branch="iou", cls_target="iou_product")
    d = loss.describe_targets(outputs_for(pred), priors, a, box_coder=None, quality=quality)
    assert d["cls_target"][0].tolist() == pytest.approx([0.5, 0.0, 1.0])
    assert d["cls_target_static"][0].tolist() == [1.0, 0.0, 1.0]
    assert d["reg_weight"][0].tolist() == [0.0, 1.0, 1.0]
    assert d["reg_mask"][0].tolist() == [False, True, True]
    assert d["cls_iou"][0].tolist() == pytest.approx([0.5, 0.0, 1.0])
    assert d["reg_iou"][0].tolist() == pytest.approx([0.0, 0.5, 1.0])
    assert d["quality_target"][0].tolist() == pytest.approx([0.0, 0.5, 1.0])
    assert d["cls_weight"][0].tolist() == [1.0, 1.0, 1.0]


def test_focal_loss_learns_hard_targets_whatever_the_coupling():
    # The focal loss takes 1 on every classification positive (its soft_one_hot of pos);
    # a coupling's soft targets only reach QFL / VFL. Same case: [1, 0, 1].
    priors, a, pred = disentangled_case()
    loss = DenseDetectionLoss(cls_loss="focal", box_loss="giou")
    quality = QualityCoupling(cls_target="iou_product")
    d = loss.describe_targets(outputs_for(pred), priors, a, box_coder=None, quality=quality)
    assert d["cls_target"][0].tolist() == [1.0, 0.0, 1.0]
    assert "quality_target" not in d


def test_dsla_label_d_and_label_s_weights():
    # One gt (0, 0, 10, 10); priors 0 and 2 matched with DSLA-like static scores
    # label_s = 0.8 and 0.4 and regression weights 0.6 and 0.3. Predictions: prior 0
    # (0, 0, 10, 5) → IoU 50/100 = 0.5; prior 2 = the gt → IoU 1.
    # label_d = label_s · IoU = [0.8·0.5, 0, 0.4·1] = [0.4, 0, 0.4].
    priors, _, _ = disentangled_case()
    gt = GTBatch.from_instances([gt_instances([[0, 0, 10, 10]], [1], (32, 48))])
    label_s, reg_w = torch.tensor([[0.8, 0.0, 0.4]]), torch.tensor([[0.6, 0.0, 0.3]])
    a = Assignment.from_matches(gt, torch.tensor([[0, -1, 0]]), 2, cls_scores=label_s, reg_weights=reg_w)
    pred = torch.tensor([[[0.0, 0, 10, 5], [0, 0, 1, 1], [0, 0, 10, 10]]])
    d = DenseDetectionLoss(cls_loss="qfl").describe_targets(
        outputs_for(pred), priors, a, box_coder=None, quality=QualityCoupling(cls_target="iou_product")
    )
    assert d["cls_target"][0].tolist() == pytest.approx([0.4, 0.0, 0.4])
    assert d["cls_target_static"][0].tolist() == pytest.approx([0.8, 0.0, 0.4])
    assert d["reg_weight"][0].tolist() == pytest.approx([0.6, 0.0, 0.3])


def test_same_targets_as_the_training_loss_and_no_gradient():
    # On a real forward pass the described target equals what the loss's classification
    # term received (the soft targets of QFL), and nothing carries a gradient.
    model = tiny_fcos(
        quality=QualityCoupling(branch="centerness", cls_target="iou_product"),
        loss=TargetRecordingLoss(cls_loss="qfl", box_loss="giou", box_normalizer="sum_weights"),
    )
    model.train()
    batch = make_inputs([[[4, 4, 40, 40], [20, 8, 60, 30]]], [[0, 2]])
    seen = {}
    forward = model.loss.forward

    def capture(outputs, priors, assignment, **parts):
        seen.update(outputs=outputs, priors=priors, assignment=assignment, parts=parts)
        return forward(outputs, priors, assignment, **parts)

    model.loss.forward = capture
    model(batch)
    d = model.loss.describe_targets(seen["outputs"], seen["priors"], seen["assignment"], **seen["parts"])
    assert torch.equal(d["cls_target"], model.loss.targets)
    assert seen["assignment"].pos_mask.any()
    assert all(not v.requires_grad for v in d.values())
    assert seen["outputs"]["pred_boxes"].requires_grad
