"""The part contract: separate cls/reg positive sets, the loss's view of every output,
required predictions, and the inference options (top-k mode, threshold target)."""
import pytest
import torch

from dsla_d2.assigners import Assignment, FCOSAssigner, GTBatch
from dsla_d2.losses import DenseDetectionLoss
from dsla_d2.priors import PriorGenerator
from dsla_d2.quality import QualityCoupling

from tiny import gt_instances, tiny_fcos


class TargetRecordingLoss(DenseDetectionLoss):
    def classification(self, logits, assignment, target_scores, weights=None):
        self.targets = target_scores
        return super().classification(logits, assignment, target_scores, weights)


def disentangled_case():
    """Three priors (stride 16, points (8, 8), (24, 8), (40, 8)); gt 0 = (0, 0, 10, 10)
    class 0, gt 1 = (0, 0, 20, 20) class 1. Classification matching [0, −1, 1], regression
    matching [−1, 1, 1] (as DDOD's two assignments can differ)."""
    priors = PriorGenerator([16], offset=0.5)([torch.zeros(1, 1, 1, 3)])
    gt = GTBatch.from_instances([gt_instances([[0, 0, 10, 10], [0, 0, 20, 20]], [0, 1], (32, 48))])
    a = Assignment.from_matches(gt, torch.tensor([[0, -1, 1]]), 2, reg_matched=torch.tensor([[-1, 1, 1]]))
    # Predicted boxes: prior 0 (0,0,10,5): IoU with gt 0 = 50/100 = 0.5;
    # prior 1 (0,0,20,10): IoU with gt 1 = 200/400 = 0.5; prior 2 = gt 1: IoU 1.
    pred = torch.tensor([[[0.0, 0, 10, 5], [0, 0, 20, 10], [0, 0, 20, 20]]])
    return priors, a, pred


def test_from_matches_with_two_matchings():
    _, a, _ = disentangled_case()
    assert a.labels.tolist() == [[0, 2, 1]]  # background label = num_classes = 2
    assert a.pos_mask.tolist() == [[True, False, True]]
    assert a.reg_mask.tolist() == [[False, True, True]]
    assert a.box_targets.tolist() == [[[0, 0, 0, 0], [0, 0, 20, 20], [0, 0, 20, 20]]]
    assert a.cls_box_targets().tolist() == [[[0, 0, 10, 10], [0, 0, 0, 0], [0, 0, 20, 20]]]
    assert a.cls_scores.tolist() == [[1, 0, 1]] and a.reg_weights.tolist() == [[0, 1, 1]]
    assert not a.shares_positives and a.reg_matched_gt.tolist() == [[-1, 1, 1]]


def test_soft_targets_follow_classification_positives_and_branch_regression_ones():
    # label_s = 1 on the cls positives, so label_d = IoU(prediction, own cls gt):
    # prior 0 → 0.5 (a classification-only positive: before the contract change it got 0,
    # because the IoUs were masked by the regression positives), prior 1 → 0 (not a cls
    # positive), prior 2 → 1. The IoU branch is trained on the regression positives against
    # their regression gt: prior 1 → 0.5, prior 2 → 1, prior 0 → 0 (no regression target).
    priors, a, pred = disentangled_case()
    quality = QualityCoupling(branch="iou", cls_target="iou_product")
    loss = TargetRecordingLoss(cls_loss="qfl", box_loss="giou")
    outputs = {"cls_logits": torch.zeros(1, 3, 2), "box_reg": pred, "pred_boxes": pred, "quality": torch.zeros(1, 3, 1)}
    out = loss(outputs, priors, a, box_coder=None, quality=quality)
    assert loss.targets[0].tolist() == pytest.approx([0.5, 0.0, 1.0])
    assert set(out) == {"loss_cls", "loss_box_reg", "loss_quality"}
    reg_ious = torch.tensor([[0.0, 0.5, 1.0]])
    assert quality.branch_targets(priors, a, reg_ious)[0].tolist() == pytest.approx([0.0, 0.5, 1.0])


def test_hand_built_disentangled_assignment_needs_its_gts():
    _, a, _ = disentangled_case()
    a.gt = None
    with pytest.raises(ValueError, match="needs its GTBatch"):
        a.cls_box_targets()


def test_missing_required_prediction_is_a_clear_error():
    class NeedsLogits(FCOSAssigner):
        required_predictions = ("pred_boxes", "cls_logits")

    priors = PriorGenerator([16], offset=0.5)([torch.zeros(1, 1, 1, 3)])
    with pytest.raises(ValueError, match=r"needs the predictions \['cls_logits'\]"):
        NeedsLogits()(priors, [gt_instances([[0, 0, 10, 10]], [0])], 2, {"pred_boxes": torch.zeros(1, 3, 4)})


def test_topk_modes():
    # One level, 3 locations × 2 classes, k = 2, threshold 0.5, scores = probabilities:
    #   loc 0: [0.9, 0.8]   loc 1: [0.7, 0.1]   loc 2: [0.6, 0.65]
    # "pairs": the 2 best (location, class) pairs above 0.5 → (0, 0) 0.9, (0, 1) 0.8.
    # "locations": best score per location 0.9, 0.7, 0.65 → locations 0 and 1; every class
    # above 0.5 there → (0, 0) 0.9, (0, 1) 0.8, (1, 0) 0.7.
    probs = torch.tensor([[0.9, 0.8], [0.7, 0.1], [0.6, 0.65]])
    model = tiny_fcos(num_classes=2, quality=QualityCoupling(branch=None), test_topk_candidates=2, test_score_thresh=0.5)
    top, loc, cls = model.level_candidates(probs, probs)
    assert sorted(zip(loc.tolist(), cls.tolist(), top.tolist())) == [(0, 0, pytest.approx(0.9)), (0, 1, pytest.approx(0.8))]
    model.test_topk_mode = "locations"
    top, loc, cls = model.level_candidates(probs, probs)
    assert sorted(zip(loc.tolist(), cls.tolist(), top.tolist())) == [
        (0, 0, pytest.approx(0.9)), (0, 1, pytest.approx(0.8)), (1, 0, pytest.approx(0.7))
    ]
    with pytest.raises(ValueError, match="test_topk_mode"):
        tiny_fcos(test_topk_mode="classes")


def test_topk_rank_by_score_or_class_probability():
    # One level, 3 locations × 1 class, k = 1, threshold 0.3 on the probability.
    #   probabilities [0.9, 0.6, 0.4], quality [0.1, 0.9, 0.9]
    #   → scores = probability × quality = [0.09, 0.54, 0.36]
    # rank "score": location 1 (0.54) is the top-1; rank "cls": location 0 (0.9), whose
    # output score is still its final score 0.09 (mmdetection 3.x multiplies after top-k).
    probs = torch.tensor([[0.9], [0.6], [0.4]])
    scores = probs * torch.tensor([[0.1], [0.9], [0.9]])
    model = tiny_fcos(num_classes=1, test_topk_candidates=1, test_score_thresh=0.3)
    for mode in ("pairs", "locations"):
        model.test_topk_mode = mode
        model.test_topk_rank = "score"
        top, loc, _ = model.level_candidates(probs, scores)
        assert loc.tolist() == [1] and top.tolist() == [pytest.approx(0.54)]
        model.test_topk_rank = "cls"
        top, loc, _ = model.level_candidates(probs, scores)
        assert loc.tolist() == [0] and top.tolist() == [pytest.approx(0.09)]
    with pytest.raises(ValueError, match="test_topk_rank"):
        tiny_fcos(test_topk_rank="iou")


def test_box_clip_to_the_edges_or_the_last_pixel():
    # a 20 x 30 (H x W) image; a box from (-5, -5) to (40, 25): clipped to (0, 0, 30, 20) at
    # the edges (Detectron2) or (0, 0, 29, 19) at the last pixel (mmdetection's FoveaHead)
    from dsla_d2.priors import PriorGenerator

    priors = PriorGenerator([8], offset=0.5)([torch.zeros(1, 1, 1, 1)])
    probs = torch.tensor([[0.9]])
    box = torch.tensor([[-5.0, -5.0, 40.0, 25.0]])
    model = tiny_fcos(num_classes=1, quality=QualityCoupling(branch=None))
    assert model.inference_single_image(priors, probs, probs, box, (20, 30)).pred_boxes.tensor.tolist() == [[0, 0, 30, 20]]
    model.test_box_clip = "last_pixel"
    assert model.inference_single_image(priors, probs, probs, box, (20, 30)).pred_boxes.tensor.tolist() == [[0, 0, 29, 19]]


def test_threshold_on_class_probability_or_final_score():
    # cls 0.9, objectness ~0.28 → score 0.25: kept when the threshold 0.5 applies to the
    # class probability (FCOS/ATSS/DDOD), dropped when it applies to the score (DW).
    probs, scores = torch.tensor([[0.9]]), torch.tensor([[0.25]])
    assert QualityCoupling(branch="objectness").thresholded_scores(probs, scores, 0.5).tolist() == [[0.25]]
    kept = QualityCoupling(branch="objectness", threshold_on="score").thresholded_scores(probs, scores, 0.5)
    assert kept.tolist() == [[-1.0]]
    with pytest.raises(ValueError, match="threshold_on"):
        QualityCoupling(threshold_on="iou")


def test_objectness_branch_has_no_loss_of_its_own():
    # An unsupervised branch: the head has the output, the loss returns no loss_quality, and
    # at inference it multiplies the class probability (0.8·0.5 = 0.4).
    q = QualityCoupling(branch="objectness")
    assert not q.supervises_branch and QualityCoupling(branch="iou").supervises_branch
    assert q.inference_scores(torch.tensor([[[0.0]]]) + torch.logit(torch.tensor(0.8)), torch.zeros(1, 1, 1)).item() == pytest.approx(0.4)
    model = tiny_fcos(quality=q)
    model.train()
    from tiny import make_inputs

    losses = model(make_inputs([[[4, 4, 40, 40]]]))
    assert set(losses) == {"loss_cls", "loss_box_reg"}
