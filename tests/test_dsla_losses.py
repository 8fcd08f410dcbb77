"""DSLA's dynamic part and losses (Su, He et al. 2022, §3.2-3.3, eq. 8-9; spec "Dynamic IoU
coupling" and "Losses"): label_d = label_s · IoU(detached prediction, target), QFL on
label_d normalised by Σ label_d, IoU-family box loss weighted by label_s and normalised by
Σ label_s, both normalisers all-reduced. Expected numbers are derived by hand in comments.
"""
import os

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

import dsla_d2  # noqa: F401
from dsla_d2.assigners.base import Assignment
from dsla_d2.assigners.dsla import DSLAAssigner
from dsla_d2.box_ops import aligned_box_iou
from dsla_d2.box_coders import LTRBBoxCoder
from dsla_d2.heads import DSLAHead
from dsla_d2.losses import DenseDetectionLoss, iou_loss, quality_focal_loss
from dsla_d2.meta_arch import DslaFCOS
from dsla_d2.priors import PriorGenerator
from dsla_d2.quality import QualityCoupling

from tiny import TwoLevelBackbone, gt_instances, make_inputs


class RecordingLoss(DenseDetectionLoss):
    """DenseDetectionLoss that keeps what the meta-architecture handed it."""

    def forward(self, outputs, priors, assignment, **parts):
        self.seen = dict(logits=outputs["cls_logits"], pred_boxes=outputs["pred_boxes"], assignment=assignment)
        return super().forward(outputs, priors, assignment, **parts)

    def classification(self, logits, assignment, target_scores, weights=None):
        self.seen["target_scores"] = target_scores
        return super().classification(logits, assignment, target_scores, weights)


def dsla_loss(**kwargs):
    args = dict(cls_loss="qfl", qfl_beta=2.0, cls_normalizer="sum_scores", cls_weight=2.0)
    args.update(box_loss="iou", box_normalizer="sum_weights", box_weight=1.0)
    args.update(kwargs)
    return RecordingLoss(**args)


# ------------------------------------------------------------------ spec vectors
def test_qfl_elements():
    # QFL = BCE(σ, y)·|y − σ|^2.
    # logit 0, y 0.5: σ = 0.5 → |0| → 0.
    # logit 0, y 1: BCE = ln 2 = 0.693147, |1 − 0.5|² = 0.25 → 0.173287.
    # logit 2, y 0.375: σ = 0.880797; BCE = −(0.375·ln 0.880797 + 0.625·ln 0.119203)
    #   = 0.047598 + 1.329330 = 1.376928; |0.375 − 0.880797|² = 0.255831 → 0.352260.
    logits = torch.tensor([0.0, 0.0, 2.0])
    y = torch.tensor([0.5, 1.0, 0.375])
    assert quality_focal_loss(logits, y, beta=2.0).tolist() == pytest.approx([0.0, 0.173287, 0.352260], abs=1e-6)


def _coupling_case():
    # One positive at the point (0, 0): target ltrb (10,10,10,10) → box (−10,−10,10,10);
    # prediction ltrb (5,10,10,10) → box (−5,−10,10,10). label_s = 0.5, class 0 of 2.
    target = torch.tensor([[[-10.0, -10.0, 10.0, 10.0]]])
    pred = torch.tensor([[[-5.0, -10.0, 10.0, 10.0]]])
    a = Assignment(
        labels=torch.tensor([[0]]),
        cls_scores=torch.tensor([[0.5]]),
        cls_weights=torch.ones(1, 1),
        reg_mask=torch.tensor([[True]]),
        box_targets=target,
        reg_weights=torch.tensor([[0.5]]),
        matched_gt=torch.tensor([[0]]),
    )
    return a, pred


def test_iou_coupling_vector():
    a, pred = _coupling_case()
    # Pred ⊂ target: IoU = (15·20)/(20·20) = 0.75 (eq. 8: label_d = 0.5·0.75 = 0.375).
    iou = aligned_box_iou(pred, a.box_targets)
    assert iou.item() == pytest.approx(0.75, abs=1e-6)
    assert QualityCoupling(cls_target="iou_product").classification_targets(a, iou).item() == pytest.approx(0.375)
    # Ablations: IoU only → 0.75; coupling off → label_s = 0.5.
    assert QualityCoupling(cls_target="iou").classification_targets(a, iou).item() == pytest.approx(0.75)
    assert QualityCoupling(cls_target="static").classification_targets(a, iou).item() == pytest.approx(0.5)
    # GIoU: the enclosing box is the target = the union → GIoU = IoU = 0.75, loss 0.25;
    # weighted by label_s 0.5 → 0.125 (normaliser max(Σ label_s = 0.5, 1) = 1).
    assert iou_loss(pred[0], a.box_targets[0], "giou").item() == pytest.approx(0.25, abs=1e-6)
    coder, deltas = LTRBBoxCoder(), torch.zeros(1, 1, 4)
    giou = DenseDetectionLoss(box_loss="giou", box_normalizer="sum_weights").regression(pred, deltas, a, coder, None)
    assert giou.item() == pytest.approx(0.125, abs=1e-6)
    # −log IoU = −ln 0.75 = 0.287682, × 0.5 → 0.143841.
    nlog = DenseDetectionLoss(box_loss="iou", box_normalizer="sum_weights").regression(pred, deltas, a, coder, None)
    assert nlog.item() == pytest.approx(0.143841, abs=1e-6)


# ------------------------------------------------------------------ through the meta-arch
def one_level_dsla(cls_target="iou_product", box_loss="iou", num_classes=1):
    """DslaFCOS on P3 only (stride 8, offset 0), range (0, 64), κ = 0.2 → G = (0, 76)."""
    torch.manual_seed(0)
    return DslaFCOS(
        backbone=TwoLevelBackbone(),
        head=DSLAHead(in_channels=16, num_classes=num_classes, num_levels=1, channels=16, num_convs=1, norm=""),
        head_in_features=["p3"],
        prior_generator=PriorGenerator([8], offset=0.0),
        box_coder=LTRBBoxCoder(),
        assigner=DSLAAssigner(size_ranges=[[0, 64]], kappa=0.2),
        quality=QualityCoupling(branch=None, cls_target=cls_target),
        loss=dsla_loss(box_loss=box_loss),
        num_classes=num_classes,
    )


def crafted_forward(model, pred_ltrb_at_positive):
    # 2×2 map → points (0,0), (8,0), (0,8), (8,8) (prior indices 0..3).
    # Gt (−62,−62,78,78), class 0:
    #   (8,8): l=t=r=b=70 → centre → core zone, c = 1; m = 70 → h = (76−70)/12 = 0.5 → label_s 0.5.
    #   (0,0): 62,62,78,78 → m = 78 > 76 → 0; (8,0), (0,8): m = 78 → 0.
    # Logits: 2.0 at (8,8), 0 elsewhere. Box outputs (pixels, LTRB): given at (8,8), 1 elsewhere.
    features = [torch.zeros(1, 16, 2, 2)]
    logits = torch.zeros(1, 1, 2, 2)
    logits[0, 0, 1, 1] = 2.0
    box = torch.ones(1, 4, 2, 2)
    box[0, :, 1, 1] = torch.tensor(pred_ltrb_at_positive)
    box.requires_grad_(True)
    logits.requires_grad_(True)
    gts = [gt_instances([[-62, -62, 78, 78]], [0], (16, 16))]
    losses = model.forward_training(None, features, {"cls_logits": [logits], "box_reg": [box]}, gts)
    return losses, model.loss.seen


def test_forward_training_iou_coupling_numbers():
    # Prediction at (8,8): ltrb (35,70,70,70) → box (−27,−62,78,78) ⊂ target (−62,−62,78,78):
    # IoU = 105·140 / (140·140) = 0.75 → label_d = 0.375.
    losses, seen = crafted_forward(one_level_dsla(), [35.0, 70.0, 70.0, 70.0])
    a = seen["assignment"]
    assert a.pos_mask[0].tolist() == [False, False, False, True]
    assert a.cls_scores[0, 3].item() == pytest.approx(0.5)
    assert seen["target_scores"][0].tolist() == pytest.approx([0, 0, 0, 0.375], abs=1e-6)
    # QFL: 0.352260 (logit 2, y 0.375) + 3 × BCE(0.5, 0)·0.5² = 3 × 0.173287 → 0.872121;
    # normaliser max(Σ label_d = 0.375, 1) = 1; weight 2 → 1.744242.
    assert losses["loss_cls"].item() == pytest.approx(2 * (0.352260 + 3 * 0.173287), abs=1e-5)
    # Box: 0.5 · (−ln 0.75) / max(0.5, 1) = 0.143841.
    assert losses["loss_box_reg"].item() == pytest.approx(0.143841, abs=1e-6)


def test_positive_with_zero_iou_is_cls_negative_but_regresses():
    # Prediction at (8,8) ltrb (0,0,0,0) → a degenerate box → IoU 0 → label_d = 0:
    # a classification negative (target 0 for every class) but still a regression positive.
    losses, seen = crafted_forward(one_level_dsla(), [0.0, 0.0, 0.0, 0.0])
    a = seen["assignment"]
    assert a.reg_mask[0, 3] and a.reg_weights[0, 3].item() == pytest.approx(0.5)
    assert seen["target_scores"][0, 3].item() == 0.0
    # QFL with all-zero targets: (8,8) logit 2: BCE(σ(2), 0) = ln(1 + e²) = 2.126928,
    # σ² = 0.775803 → 1.650079; others 3 × 0.173287; normaliser max(0, 1) = 1; weight 2.
    assert losses["loss_cls"].item() == pytest.approx(2 * (1.650079 + 3 * 0.173287), abs=1e-5)
    # Box loss kept: 0.5 · (−ln 1e-6) = 0.5 · 13.815511 = 6.907755, normaliser max(0.5, 1) = 1.
    assert losses["loss_box_reg"].item() == pytest.approx(6.907755, abs=1e-4)


@pytest.mark.parametrize("cls_target,expected", [("iou", 0.75), ("static", 0.5)])
def test_forward_training_ablation_targets(cls_target, expected):
    # IoU only (Impr0-IoU row): label_d = IoU = 0.75; coupling off: label_d = label_s = 0.5.
    _, seen = crafted_forward(one_level_dsla(cls_target=cls_target), [35.0, 70.0, 70.0, 70.0])
    assert seen["target_scores"][0, 3].item() == pytest.approx(expected, abs=1e-6)


def tiny_dsla(num_classes=3):
    torch.manual_seed(0)
    return DslaFCOS(
        backbone=TwoLevelBackbone(),
        head=DSLAHead(in_channels=16, num_classes=num_classes, num_levels=2, channels=16, num_convs=1, norm=""),
        head_in_features=["p3", "p4"],
        prior_generator=PriorGenerator([8, 16], offset=0.0),
        box_coder=LTRBBoxCoder(),
        assigner=DSLAAssigner(size_ranges=[[0, 32], [32, 1e8]]),
        quality=QualityCoupling(branch=None, cls_target="iou_product"),
        loss=dsla_loss(),
        num_classes=num_classes,
        pixel_std=[57.0, 57.0, 57.0],
    )


def test_iou_factor_carries_no_gradient():
    model = tiny_dsla()
    model.train()
    inputs = make_inputs([[[4, 6, 40, 44], [20, 10, 60, 50]], [[8, 8, 30, 56]]], [[0, 2], [1]])
    losses = model(inputs)
    seen = model.loss.seen
    a, y = seen["assignment"], seen["target_scores"]
    assert a.pos_mask.any()
    assert not y.requires_grad and not a.cls_scores.requires_grad
    # 0 ≤ label_d ≤ label_s ≤ 1, label_d = label_s · IoU(detached pred, target).
    ls = a.extras["label_s"]
    assert (y >= 0).all() and (y <= ls + 1e-6).all() and (ls <= 1).all()
    iou = aligned_box_iou(seen["pred_boxes"].detach(), a.box_targets)
    assert torch.allclose(y[a.pos_mask], (ls * iou)[a.pos_mask], atol=1e-6)
    assert (y[a.pos_mask] > 0).any()
    # The classification loss reaches the box branch only through the IoU; that IoU is
    # detached, so loss_cls leaves the box output, the reg tower and the scales untouched.
    losses["loss_cls"].backward(retain_graph=True)
    head = model.head
    for p in [head.box_reg.weight, head.box_reg.bias, *head.reg_tower.parameters(), *head.scales.parameters()]:
        assert p.grad is None or (p.grad == 0).all()
    assert head.cls_logits.weight.grad.abs().sum() > 0
    model.zero_grad()
    losses["loss_box_reg"].backward()
    assert head.box_reg.weight.grad.abs().sum() > 0
    assert all(torch.isfinite(v) for v in losses.values())


def test_empty_batch_losses_finite_and_connected():
    model = tiny_dsla()
    model.train()
    losses = model(make_inputs([[], []]))
    assert all(torch.isfinite(v) for v in losses.values())
    assert losses["loss_box_reg"].item() == 0.0
    sum(losses.values()).backward()  # the graph is kept even without positives


# ------------------------------------------------------------------ normalisers, 2 processes
def _normaliser_batch():
    """A fixed batch of 4 images × 40 priors × 3 classes; images 0-1 have many positives,
    2-3 few, so the two halves have different Σ label_d and Σ label_s."""
    g = torch.Generator().manual_seed(7)
    n, r, c = 4, 40, 3
    logits = torch.randn(n, r, c, generator=g)
    pos = torch.zeros(n, r, dtype=torch.bool)
    pos[0, :25] = True
    pos[1, 5:30] = True
    pos[2, :3] = True
    pos[3, 10:12] = True
    labels = torch.where(pos, torch.randint(0, c, (n, r), generator=g), torch.full((n, r), c))
    label_s = torch.where(pos, torch.rand(n, r, generator=g) * 0.9 + 0.1, torch.zeros(n, r))
    xy = torch.rand(n, r, 2, generator=g) * 50
    targets = torch.cat([xy, xy + 5 + torch.rand(n, r, 2, generator=g) * 30], dim=-1)
    preds = targets + torch.randn(n, r, 4, generator=g) * 3
    preds = torch.cat([preds[..., :2], torch.max(preds[..., 2:], preds[..., :2] + 1)], dim=-1)
    iou = torch.where(pos, aligned_box_iou(preds, targets), torch.zeros(n, r))
    a = Assignment(
        labels=labels,
        cls_scores=label_s,
        cls_weights=torch.ones(n, r),
        reg_mask=pos,
        box_targets=torch.where(pos[..., None], targets, torch.zeros_like(targets)),
        reg_weights=label_s,
        matched_gt=torch.where(pos, torch.zeros(n, r, dtype=torch.long), torch.full((n, r), -1)),
    )
    return logits, preds, a, label_s * iou


def _slice(a: Assignment, sl) -> Assignment:
    keys = ("labels", "cls_scores", "cls_weights", "reg_mask", "box_targets", "reg_weights", "matched_gt")
    return Assignment(**{k: getattr(a, k)[sl] for k in keys})


def _losses(logits, preds, a, label_d):
    loss = DenseDetectionLoss(
        cls_loss="qfl", cls_normalizer="sum_scores", box_loss="iou", box_normalizer="sum_weights", cls_weight=2.0
    )
    cls = loss.classification(logits, a, label_d)
    box = loss.regression(preds, torch.zeros_like(preds), a, LTRBBoxCoder(), None)
    return torch.stack([cls, box])


def _normaliser_worker(rank, world, init_file, out_dir):
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        logits, preds, a, label_d = _normaliser_batch()
        sl = slice(2 * rank, 2 * rank + 2)
        out = _losses(logits[sl], preds[sl], _slice(a, sl), label_d[sl])
        torch.save(out, os.path.join(out_dir, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


def test_normalisers_all_reduced_match_single_process(tmp_path):
    logits, preds, a, label_d = _normaliser_batch()
    combined = _losses(logits, preds, a, label_d)
    # Per-image sums differ a lot between halves, so local normalisers would not agree:
    # mean over halves of (sum_h / local_norm_h) ≠ (sum_0 + sum_1)/(norm_0 + norm_1).
    halves = [_losses(logits[s], preds[s], _slice(a, s), label_d[s]) for s in (slice(0, 2), slice(2, 4))]
    assert label_d[2:].sum() > 1 and a.reg_weights[2:].sum() > 1  # the max(·, 1) clamp stays idle
    assert not torch.allclose((halves[0] + halves[1]) / 2, combined, rtol=1e-3)
    # With the all-reduced means (gloo, 2 processes, one half each), the mean of the two
    # processes' losses equals the single-process loss on the whole batch.
    init_file = tmp_path / "dist_init"
    # "fork" rather than "spawn": the children inherit the imported modules instead of
    # re-importing torch + Detectron2 (~5 s CPU each); they run only tiny CPU ops.
    args = (2, str(init_file), str(tmp_path))
    mp.start_processes(_normaliser_worker, args=args, nprocs=2, join=True, start_method="fork")
    per_rank = [torch.load(tmp_path / f"rank{r}.pt") for r in range(2)]
    assert torch.allclose((per_rank[0] + per_rank[1]) / 2, combined, rtol=1e-5, atol=1e-6)
