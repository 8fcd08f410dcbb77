"""DDOD's loss side (paper §4.3 eqs. 3-5, spec §3-4): per-level weights (the spec's single
and cumulative vectors, Table 7's alternatives), the loss terms fed by separate
classification and regression positives, the counters of a training run (two steps,
checkpoint round trip) and the inference rule (spec §2).

Focal-loss elements used below (α 0.25, γ 2, −ln 0.5 = ln 2 = 0.693147):
  positive at p = 0.5: 0.25 · 0.5² · ln 2 = 0.043322; negative at p = 0.5:
  0.75 · 0.5² · ln 2 = 0.129965.
"""
import math

import pytest
import torch

import dsla_d2  # noqa: F401
from detectron2.checkpoint import DetectionCheckpointer
from detectron2.utils.events import EventStorage

from dsla_d2.assigners import Assignment, DDODAssigner, GTBatch
from dsla_d2.box_coders import DeltaBoxCoder
from dsla_d2.heads import ATSSHead
from dsla_d2.losses import DenseDetectionLoss, LevelWeighting, weights_per_level
from dsla_d2.meta_arch import DslaATSS
from dsla_d2.priors import PriorGenerator
from dsla_d2.quality import QualityCoupling

from test_ddod_assigner import G, disentangled_case, row5
from tiny import TwoLevelBackbone, gt_instances, make_inputs

LN2 = math.log(2.0)


def ddod_loss(level_weighting=None):
    return DenseDetectionLoss(
        cls_loss="focal",
        cls_normalizer="num_pos_per_image_min1",
        box_loss="giou",
        box_weight=2.0,
        box_normalizer="num_pos_per_image_min1",
        quality_normalizer="num_pos_per_image_min1",
        level_weighting=level_weighting,
    )


IOU_BRANCH = QualityCoupling(branch="iou", cls_target="static", threshold_on="cls")


# ---------------------------------------------------------------------- level weights
def test_linear_interpolate_spec_vector():
    # w = 2 − (n − min)/(max − min): counts [1000, 600, 300, 100, 20], max − min = 980:
    # 1000 → 1; 600 → 2 − 580/980 = 1.408163; 300 → 2 − 280/980 = 1.714286;
    # 100 → 2 − 80/980 = 1.918367; 20 → 2.
    w = weights_per_level(torch.tensor([1000, 600, 300, 100, 20]), "linear_interpolate")
    assert w.tolist() == pytest.approx([1.0, 1.408163, 1.714286, 1.918367, 2.0], abs=1e-6)
    # all equal → all 2 (the 1e−10 keeps it finite)
    assert weights_per_level(torch.tensor([7, 7, 7]), "linear_interpolate").tolist() == [2.0, 2.0, 2.0]


def test_table7_alternatives():
    counts = torch.tensor([40, 40, 10, 5, 5])
    # Sum-Reweight: 5 · n / Σn = 5 · [40, 40, 10, 5, 5] / 100 = [2, 2, 0.5, 0.25, 0.25]
    assert weights_per_level(counts, "sum_reweight").tolist() == pytest.approx([2.0, 2.0, 0.5, 0.25, 0.25])
    assert weights_per_level(torch.zeros(5, dtype=torch.long), "sum_reweight").tolist() == [1.0] * 5
    # Linear-Reweight: 1 → 2 in steps of 1/4, whatever the counts
    assert weights_per_level(counts, "linear_reweight").tolist() == [1.0, 1.25, 1.5, 1.75, 2.0]
    with pytest.raises(ValueError, match="not one of"):
        weights_per_level(counts, "log")


def level_priors():
    """Five levels of 8×8 priors (strides 8..128 on a 1024-px grid): 64 per level."""
    return PriorGenerator([8, 16, 32, 64, 128], offset=0.0)([torch.zeros(1, 1, 8, 8)] * 5)


def level_mask(counts):
    """(2, 320) mask with ``counts[l]`` positives on level l, spread over two images."""
    mask = torch.zeros(2, 320, dtype=torch.bool)
    for level, c in enumerate(counts):
        first = (c + 1) // 2
        mask[0, 64 * level : 64 * level + first] = True
        mask[1, 64 * level : 64 * level + c - first] = True
    return mask


def test_cumulative_counts_spec_vector():
    # Spec: cumulative [50, 30, 10, 5, 0] → 2 − n/50 = [1, 1.4, 1.8, 1.9, 2]; a second batch
    # [40, 40, 10, 5, 5] → [90, 70, 20, 10, 5], max − min = 85: 90 → 1, 70 → 2 − 65/85 =
    # 1.235294, 20 → 2 − 15/85 = 1.823529, 10 → 2 − 5/85 = 1.941176, 5 → 2.
    # Regression counts are separate: they stay at 3 per level ([3·5] all equal → all 2).
    lw = LevelWeighting(num_levels=5)
    priors = level_priors()
    reg = level_mask([3] * 5)
    w_cls, w_reg = lw(priors, level_mask([50, 30, 10, 5, 0]), reg, update=True)
    assert w_cls.tolist() == pytest.approx([1.0, 1.4, 1.8, 1.9, 2.0], abs=1e-6)
    assert w_reg.tolist() == [2.0] * 5
    w_cls, _ = lw(priors, level_mask([40, 40, 10, 5, 5]), reg, update=True)
    assert lw.cls_counts.tolist() == [90, 70, 20, 10, 5] and lw.reg_counts.tolist() == [6] * 5
    assert w_cls.tolist() == pytest.approx([1.0, 1.235294, 1.823529, 1.941176, 2.0], abs=1e-6)
    # Without update the same weights come out and nothing is stored.
    before = lw.cls_counts.clone()
    w_again, _ = lw(priors, level_mask([0, 0, 0, 0, 0]), reg, update=False)
    assert torch.equal(lw.cls_counts, before) and w_again.tolist() == pytest.approx(w_cls.tolist())
    # Per-batch counts [40, 40, 10, 5, 5] (max − min = 35): 1, 1, 2 − 5/35 = 1.857143, 2, 2.
    batch = LevelWeighting(num_levels=5, accumulate=False)
    batch(priors, level_mask([50, 30, 10, 5, 0]), reg, update=True)
    w_cls, _ = batch(priors, level_mask([40, 40, 10, 5, 5]), reg, update=True)
    assert w_cls.tolist() == pytest.approx([1.0, 1.0, 1.857143, 2.0, 2.0], abs=1e-6)
    assert batch.cls_counts.tolist() == [90, 70, 20, 10, 5]  # counted either way


def test_level_weighting_bad_arguments():
    with pytest.raises(ValueError, match="method"):
        LevelWeighting(method="sum")
    with pytest.raises(ValueError, match="num_levels=3 but the priors have 5 levels"):
        LevelWeighting(num_levels=3)(level_priors(), level_mask([1] * 5), level_mask([1] * 5), update=True)


# ---------------------------------------------------------------------- loss terms
def test_loss_terms_fed_by_each_positive_set():
    # The disentangled case of test_ddod_assigner: prior 0 (p 0.01, predicted box IoU 0.9) is
    # the classification-only positive, prior 1 (p 0.64, box (0, 0, 20, 16), IoU 0.25) the
    # regression-only positive; one image, N_cls = N_reg = max(1, 1) = 1.
    # loss_cls (focal, class 0 the only class):
    #   prior 0, y = 1: 0.25 · 0.99² · (−ln 0.01) = 0.25 · 0.9801 · 4.605170 = 1.128382
    #   prior 1, y = 0: 0.75 · 0.64² · (−ln 0.36) = 0.75 · 0.4096 · 1.021651 = 0.313851
    #   priors 2-4, y = 0: 0.75 · 0.01² · (−ln 0.99) = 7.54e-7 each
    #   → 1.442235 (prior 1 is a classification negative although it regresses)
    # loss_box_reg: GIoU of prior 1 only: IoU 0.25, the enclosing box is G itself → loss
    #   1 − 0.25 = 0.75, × 2.0 = 1.5 (prior 0, a classification-only positive, has none)
    # loss_quality: BCE(logit 0, target IoU 0.25) = ln 2 = 0.693147 at prior 1 only.
    a, preds = disentangled_case()
    outputs = dict(preds, box_reg=torch.zeros(1, 5, 4), quality=torch.zeros(1, 5, 1))
    outputs["cls_logits"] = outputs["cls_logits"].clone().requires_grad_()
    outputs["pred_boxes"] = outputs["pred_boxes"].clone().requires_grad_()
    losses = ddod_loss()(outputs, row5(), a, box_coder=DeltaBoxCoder(), quality=IOU_BRANCH)
    assert losses["loss_cls"].item() == pytest.approx(1.442235, abs=1e-5)
    assert losses["loss_box_reg"].item() == pytest.approx(1.5, abs=1e-6)
    assert losses["loss_quality"].item() == pytest.approx(LN2, abs=1e-6)
    sum(losses.values()).backward()
    # Box gradients reach prior 1 only; classification gradients reach every prior.
    assert outputs["pred_boxes"].grad[0, 1].abs().sum() > 0
    assert outputs["pred_boxes"].grad[0, [0, 2, 3, 4]].abs().sum() == 0
    described = ddod_loss().describe_targets(outputs, row5(), a, box_coder=DeltaBoxCoder(), quality=IOU_BRANCH)
    assert described["cls_target"][0].tolist() == [1, 0, 0, 0, 0]
    assert described["reg_weight"][0].tolist() == [0, 1, 0, 0, 0]


def two_level_case(matched):
    """Level 0: three priors (8, 8), (24, 8), (40, 8) (stride 16); level 1: one prior
    (16, 16) (stride 32). gts: 0 = (0, 0, 16, 16), 1 = (16, 0, 32, 16), 2 = (0, 0, 32, 32).
    Predictions: priors 0 and 1 predict gts 0 and 1 exactly (GIoU loss 0); prior 3 predicts
    (0, 0, 16, 32): IoU with gt 2 = 512 / 1024 = 0.5, enclosing box gt 2 → GIoU loss 0.5.
    All logits 0 (p = 0.5)."""
    priors = PriorGenerator([16, 32], offset=0.5)([torch.zeros(1, 1, 1, 3), torch.zeros(1, 1, 1, 1)])
    gt = GTBatch.from_instances([gt_instances([[0, 0, 16, 16], [16, 0, 32, 16], [0, 0, 32, 32]], [0, 0, 0], (32, 48))])
    a = Assignment.from_matches(gt, torch.tensor([matched]), 1)
    pred = torch.tensor([[[0.0, 0, 16, 16], [16, 0, 32, 16], [0, 0, 8, 8], [0, 0, 16, 32]]])
    outputs = {
        "cls_logits": torch.zeros(1, 4, 1),
        "box_reg": torch.zeros(1, 4, 4),
        "pred_boxes": pred,
        "quality": torch.zeros(1, 4, 1),
    }
    return priors, a, outputs


def test_level_weights_multiply_each_levels_terms():
    # Positives: priors 0, 1 (level 0) and 3 (level 1), same for cls and reg: counts [2, 1]
    # → w = 2 − (n − 1)/1 = [1, 2]. N_cls = N_reg = max(3, 1) = 3.
    # loss_cls = (0.043322 · 1 + 0.043322 · 1 + 0.129965 · 1 [prior 2, negative] +
    #             0.043322 · 2) / 3 = 0.303252 / 3 = 0.101084
    # loss_box_reg = 2.0 · (0 + 0 + 0.5 · 2) / 3 = 0.666667
    # loss_quality = ln 2 · (1 + 1 + 2) / 3 = 2.772589 / 3 = 0.924196
    priors, a, outputs = two_level_case([0, 1, -1, 2])
    loss = ddod_loss(LevelWeighting(num_levels=2))
    described = loss.describe_targets(outputs, priors, a, box_coder=None, quality=IOU_BRANCH)
    assert described["cls_weight"][0].tolist() == pytest.approx([1, 1, 1, 2])
    assert described["reg_weight"][0].tolist() == pytest.approx([1, 1, 0, 2])
    assert loss.level_weighting.cls_counts.tolist() == [0, 0]  # describing stores nothing
    losses = loss(outputs, priors, a, box_coder=None, quality=IOU_BRANCH)
    assert losses["loss_cls"].item() == pytest.approx(0.101084, abs=1e-6)
    assert losses["loss_box_reg"].item() == pytest.approx(0.666667, abs=1e-6)
    assert losses["loss_quality"].item() == pytest.approx(0.924196, abs=1e-6)
    assert loss.level_weighting.cls_counts.tolist() == [2, 1] and loss.level_weighting.reg_counts.tolist() == [2, 1]
    # A second batch with positives 0 (level 0) and 3 (level 1): counts [1, 1], N = 2.
    # Cumulative [3, 2] → w = [1, 2] again: loss_cls = (0.043322 · 1 + 0.129965 · 1 [prior 1]
    #   + 0.129965 · 1 [prior 2] + 0.043322 · 2) / 2 = 0.389896 / 2 = 0.194948.
    # Per batch [1, 1] → all 2: (0.043322 + 2 · 0.129965 + 0.043322) · 2 / 2 = 0.346574.
    _, a2, outputs2 = two_level_case([0, -1, -1, 2])
    losses = loss(outputs2, priors, a2, box_coder=None, quality=IOU_BRANCH)
    assert losses["loss_cls"].item() == pytest.approx(0.194948, abs=1e-5)
    per_batch = ddod_loss(LevelWeighting(num_levels=2, accumulate=False))
    per_batch(outputs, priors, a, box_coder=None, quality=IOU_BRANCH)
    losses = per_batch(outputs2, priors, a2, box_coder=None, quality=IOU_BRANCH)
    assert losses["loss_cls"].item() == pytest.approx(0.346574, abs=1e-5)


def test_branch_loss_weights_default_unchanged():
    # Two regression positives, logits 0: BCE = ln 2 each. Unweighted: 2 ln 2 / 2 = ln 2;
    # weights [1, 3]: (ln 2 + 3 ln 2) / 2 = 2 ln 2; a given normaliser 4: 4 ln 2 / 4 = ln 2.
    priors, a, _ = two_level_case([0, 1, -1, -1])
    q = QualityCoupling(branch="iou")
    ious = torch.tensor([[0.3, 0.9, 0.0, 0.0]])
    assert q.branch_loss(torch.zeros(1, 4), priors, a, ious).item() == pytest.approx(LN2)
    w = torch.tensor([[1.0, 3.0, 5.0, 5.0]])
    assert q.branch_loss(torch.zeros(1, 4), priors, a, ious, weights=w).item() == pytest.approx(2 * LN2)
    given = q.branch_loss(torch.zeros(1, 4), priors, a, ious, weights=w, norm=torch.tensor(4.0))
    assert given.item() == pytest.approx(LN2)


# ---------------------------------------------------------------------- a model's counters
class RecordingDDODAssigner(DDODAssigner):
    def assign(self, *args, **kwargs):
        a = super().assign(*args, **kwargs)
        self.seen = getattr(self, "seen", []) + [a]
        return a


def tiny_ddod(num_classes=3):
    """DDOD on the tiny 2-level backbone (strides 8 and 16): DCNv1 first tower conv, IoU
    branch, cost assigner, per-level weights from cumulative counts."""
    torch.manual_seed(0)
    return DslaATSS(
        backbone=TwoLevelBackbone(),
        head=ATSSHead(
            in_channels=16, num_classes=num_classes, num_levels=2, channels=16, num_convs=1, norm="",
            deformable_convs=(0,),
        ),
        head_in_features=["p3", "p4"],
        prior_generator=PriorGenerator([8, 16], offset=0.0, anchor_scale=4),
        box_coder=DeltaBoxCoder(),
        assigner=RecordingDDODAssigner(),
        quality=QualityCoupling(branch="iou", cls_target="static", threshold_on="cls"),
        loss=ddod_loss(LevelWeighting(num_levels=2)),
        num_classes=num_classes,
        test_topk_mode="locations",
        test_topk_rank="cls",  # the authors' code, as projects/DDOD/configs/common/ddod.py
        pixel_std=[57.0, 57.0, 57.0],
    )


def test_two_training_steps_add_their_per_level_counts(tmp_path):
    model = tiny_ddod()
    model.train()
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    batches = [
        make_inputs([[[4, 4, 20, 28], [30, 6, 62, 50]], [[10, 10, 60, 60]]], [[0, 1], [2]], seed=0),
        make_inputs([[[2, 30, 14, 40]], [[8, 8, 56, 40], [40, 40, 60, 62]]], [[1], [0, 2]], seed=1),
    ]
    with EventStorage(0):
        for inputs in batches:
            losses = model(inputs)
            opt.zero_grad()
            sum(losses.values()).backward()
            opt.step()
    # Counted independently from the recorded assignments: level 0 = the first 64 priors
    # (8×8 cells of stride 8 on the 64-px images), level 1 = the 16 after them.
    seen = model.assigner.seen
    assert len(seen) == 2

    def per_level(mask):
        return [int(mask[:, :64].sum()), int(mask[:, 64:].sum())]

    cls = [sum(v) for v in zip(*(per_level(a.pos_mask) for a in seen))]
    reg = [sum(v) for v in zip(*(per_level(a.reg_mask) for a in seen))]
    lw = model.loss.level_weighting
    assert lw.cls_counts.tolist() == cls and lw.reg_counts.tolist() == reg
    assert min(cls) > 0 and min(reg) > 0

    # The counters are model state: saved and restored by DetectionCheckpointer.
    DetectionCheckpointer(model, save_dir=str(tmp_path)).save("model_0000001")
    state = torch.load(tmp_path / "model_0000001.pth")["model"]
    assert state["loss.level_weighting.cls_counts"].tolist() == cls
    fresh = tiny_ddod()
    assert fresh.loss.level_weighting.cls_counts.tolist() == [0, 0]
    DetectionCheckpointer(fresh).load(str(tmp_path / "model_0000001.pth"))
    assert torch.equal(fresh.loss.level_weighting.cls_counts, lw.cls_counts)
    assert torch.equal(fresh.loss.level_weighting.reg_counts, lw.reg_counts)


def test_empty_batch_and_1000_gts_train():
    model = tiny_ddod()
    model.train()
    with EventStorage(0):
        losses = model(make_inputs([[], []]))  # no gt at all: focal on negatives only
        assert all(torch.isfinite(v) for v in losses.values())
        assert model.loss.level_weighting.cls_counts.tolist() == [0, 0]
        sum(losses.values()).backward()
        g = torch.Generator().manual_seed(0)
        xy = torch.rand(1000, 2, generator=g) * 56
        boxes = torch.cat([xy, xy + 1 + torch.rand(1000, 2, generator=g) * 30], 1)
        losses = model(make_inputs([boxes.tolist()], [torch.randint(0, 3, (1000,), generator=g).tolist()]))
    assert all(torch.isfinite(v) for v in losses.values())
    assert model.loss.level_weighting.cls_counts.sum() > 0


# ---------------------------------------------------------------------- inference
def test_inference_threshold_on_class_score_before_the_product():
    # Spec: cls 0.06, iou 0.5 → kept (0.06 > 0.05), score 0.06 · 0.5 = 0.03; cls 0.04,
    # iou 0.9 → dropped (0.04 < 0.05) although its score 0.036 is higher.
    model = tiny_ddod(num_classes=1)
    cls = torch.logit(torch.tensor([[[0.06], [0.04]]]))
    iou = torch.logit(torch.tensor([[[0.5], [0.9]]]))
    probs = cls.sigmoid()[0]
    scores = model.quality.inference_scores(cls, iou)[0]
    top, loc, _ = model.level_candidates(probs, scores)
    assert loc.tolist() == [0] and top.tolist() == pytest.approx([0.03], abs=1e-6)


def test_inference_top_locations_ranked_by_class_score():
    # The authors' code keeps, per level, the top locations by class score before the
    # product: with k = 1, location 0 (cls 0.9, iou 0.1: score 0.09) beats location 1
    # (cls 0.3, iou 0.9: score 0.27).
    model = tiny_ddod(num_classes=1)
    model.test_topk_candidates = 1
    cls = torch.logit(torch.tensor([[[0.9], [0.3]]]))
    iou = torch.logit(torch.tensor([[[0.1], [0.9]]]))
    top, loc, _ = model.level_candidates(cls.sigmoid()[0], model.quality.inference_scores(cls, iou)[0])
    assert loc.tolist() == [0] and top.tolist() == pytest.approx([0.09], abs=1e-6)
