"""DDOD's cost-based ATSS (paper eq. 1, §4.1; the authors' code): the
hand-derived cost and threshold vectors, two assignments that really differ, and bad input.

Row of five priors used below ("row5"): one level, stride 16, offset 0.5, points
x ∈ {8, 24, 40, 56, 72}, y = 8 (prior index = column). GT "G" = (0, 0, 80, 16), class 0,
centre (40, 8): every point is strictly inside G (margins ≥ 8 px > 0.01), and with k = 9 all
five priors are candidates (the level has fewer than k). A predicted box (0, 0, 80·u, 16)
lies inside G, so its IoU with G is its area ratio u.
"""
import math

import pytest
import torch

import dsla_d2  # noqa: F401
from dsla_d2.assigners import ASSIGNER_REGISTRY, ATSSAssigner, DDODAssigner, ddod_cost
from dsla_d2.priors import PriorGenerator, Priors

from tiny import gt_instances

G = [0.0, 0.0, 80.0, 16.0]


def row5():
    return PriorGenerator([16], offset=0.5, anchor_scale=8)([torch.zeros(1, 1, 1, 5)])


def predictions(probs, ious, num_classes=1):
    """(1, 5, 4) predicted boxes (0, 0, 80·u, 16) and (1, 5, C) logits whose class-0
    probability is ``probs`` (other classes 0.5)."""
    boxes = torch.tensor([[0.0, 0.0, 80.0 * u, 16.0] for u in ious])[None]
    logits = torch.zeros(1, 5, num_classes)
    logits[0, :, 0] = torch.logit(torch.tensor(probs, dtype=torch.float64)).float()
    return {"pred_boxes": boxes, "cls_logits": logits}


def positives(mask):
    return torch.nonzero(mask[0]).flatten().tolist()


def test_registered():
    assert ASSIGNER_REGISTRY.get("DDODAssigner") is DDODAssigner
    assert DDODAssigner().required_predictions == ("pred_boxes", "cls_logits")
    a = DDODAssigner()
    assert (a.topk, a.center_margin, a.cls_alpha, a.reg_alpha) == (9, 0.01, 0.8, 0.5)


@pytest.mark.parametrize(
    "p, iou, alpha, expected",
    [
        # Spec vectors. 0.3^0.2 = exp(0.2·ln 0.3) = exp(−0.240795) = 0.786003;
        # 0.6^0.8 = exp(0.8·ln 0.6) = exp(−0.408660) = 0.664540; product 0.522330.
        (0.3, 0.6, 0.8, 0.522330),
        # 0.3^0.5 · 0.6^0.5 = sqrt(0.18) = 0.424264.
        (0.3, 0.6, 0.5, 0.424264),
        # 0.05^0.2 = exp(0.2·(−2.995732)) = 0.549280; 0.8^0.8 = exp(0.8·(−0.223144)) = 0.836512;
        # product 0.459479.
        (0.05, 0.8, 0.8, 0.459479),
        # sqrt(0.05 · 0.8) = sqrt(0.04) = 0.2.
        (0.05, 0.8, 0.5, 0.2),
        # α = 1: the IoU alone (p^0 = 1, even for p = 0); α = 0: the score alone.
        (0.0, 0.7, 1.0, 0.7),
        (0.4, 0.0, 0.0, 0.4),
    ],
)
def test_cost_spec_vectors(p, iou, alpha, expected):
    assert ddod_cost(torch.tensor(p), torch.tensor(iou), alpha).item() == pytest.approx(expected, abs=1e-6)


def test_threshold_spec_vector_through_the_assigner():
    # Every prediction is G itself (IoU 1), so with α = 0.5 the cost is sqrt(p): class
    # probabilities [0.01, 0.04, 0.09, 0.16, 0.25] give the spec's candidate costs
    # [0.1, 0.2, 0.3, 0.4, 0.5]. Mean 0.3; Σ(c − mean)² = 0.04 + 0.01 + 0 + 0.01 + 0.04 = 0.1;
    # unbiased std = sqrt(0.1 / 4) = 0.158114; threshold 0.458114 → only prior 4 (cost 0.5).
    preds = predictions([0.01, 0.04, 0.09, 0.16, 0.25], [1.0] * 5)
    a = DDODAssigner(cls_alpha=0.5, reg_alpha=0.5)(row5(), [gt_instances([G], [0], (16, 80))], 1, preds)
    assert a.extras["cls_threshold"].item() == pytest.approx(0.458114, abs=1e-5)
    assert a.extras["reg_threshold"].item() == pytest.approx(0.458114, abs=1e-5)
    assert positives(a.pos_mask) == [4] and positives(a.reg_mask) == [4]
    assert a.extras["cls_cost"][0].tolist() == pytest.approx([0, 0, 0, 0, 0.5], abs=1e-6)
    assert a.shares_positives and a.labels[0].tolist() == [1, 1, 1, 1, 0]


def disentangled_case():
    """Prior 0: p 0.01, IoU 0.9; prior 1: p 0.64, IoU 0.25; priors 2-4: p 0.01, IoU 0.1.

    α_cls = 0.8 (C = p^0.2·IoU^0.8):
      prior 0: 0.01^0.2 = exp(0.2·(−4.605170)) = 0.398107, 0.9^0.8 = exp(0.8·(−0.105361))
               = 0.919166 → 0.365927
      prior 1: 0.64^0.2 = exp(0.2·(−0.446287)) = 0.914610, 0.25^0.8 = exp(0.8·(−1.386294))
               = 0.329877 → 0.301708
      priors 2-4: 0.398107 · 0.1^0.8 (= 0.158489) = 0.063096
      mean = (0.365927 + 0.301708 + 3·0.063096) / 5 = 0.171385; deviations 0.194542,
      0.130323, −0.108289 (×3); Σ² = 0.037847 + 0.016984 + 0.035179 = 0.090010;
      std = sqrt(0.090010 / 4) = 0.150008; threshold 0.321393 → positive: prior 0 only.
    α_reg = 0.5 (C = sqrt(p·IoU)):
      prior 0: sqrt(0.009) = 0.094868; prior 1: sqrt(0.16) = 0.4; priors 2-4: sqrt(0.001)
      = 0.031623; mean = 0.589737 / 5 = 0.117947; deviations −0.023079, 0.282053,
      −0.086325 (×3); Σ² = 0.000533 + 0.079554 + 0.022356 = 0.102442; std = 0.160033;
      threshold 0.277980 → positive: prior 1 only.
    So prior 0 is a classification-only positive and prior 1 a regression-only one.
    """
    preds = predictions([0.01, 0.64, 0.01, 0.01, 0.01], [0.9, 0.25, 0.1, 0.1, 0.1])
    a = DDODAssigner()(row5(), [gt_instances([G], [0], (16, 80))], 1, preds)
    return a, preds


def test_cls_and_reg_assignments_differ():
    a, _ = disentangled_case()
    assert a.extras["cls_threshold"].item() == pytest.approx(0.321393, abs=1e-5)
    assert a.extras["reg_threshold"].item() == pytest.approx(0.277980, abs=1e-5)
    assert positives(a.pos_mask) == [0] and positives(a.reg_mask) == [1]
    assert not a.shares_positives
    assert a.matched_gt[0].tolist() == [0, -1, -1, -1, -1]
    assert a.reg_matched_gt[0].tolist() == [-1, 0, -1, -1, -1]
    assert a.labels[0].tolist() == [0, 1, 1, 1, 1]
    assert a.box_targets[0, 1].tolist() == G and a.box_targets[0, 0].tolist() == [0, 0, 0, 0]
    assert a.cls_box_targets()[0, 0].tolist() == G
    # Regression positives weigh 1 (no centerness weighting in DDOD's GIoU loss).
    assert a.reg_weights[0].tolist() == [0, 1, 0, 0, 0]
    assert a.extras["cls_cost"][0, 0].item() == pytest.approx(0.365927, abs=1e-5)
    assert a.extras["reg_cost"][0, 1].item() == pytest.approx(0.4, abs=1e-5)


def test_gt_class_score_and_predicted_box_drive_the_cost():
    # Same boxes as the disentangled case, but the probabilities sit on class 1 while the gt
    # is class 0: p(class 0) = 0.5 everywhere (logit 0), so the cost only follows the IoU
    # [0.9, 0.25, 0.1, 0.1, 0.1] — monotone in IoU for any α: prior 0 wins both.
    # α_reg: sqrt(0.5·IoU) = [0.670820, 0.353553, 0.223607 ×3]; mean 1.695194 / 5 =
    # 0.339039; deviations 0.331782, 0.014515, −0.115432 ×3; Σ² = 0.110079 + 0.000211 +
    # 0.039974 = 0.150263; std = sqrt(0.150263 / 4) = 0.193819; threshold 0.532858 → prior 0.
    preds = predictions([0.5] * 5, [0.9, 0.25, 0.1, 0.1, 0.1], num_classes=2)
    preds["cls_logits"][0, :, 1] = torch.logit(torch.tensor([0.01, 0.64, 0.01, 0.01, 0.01]))
    a = DDODAssigner()(row5(), [gt_instances([G], [0], (16, 80))], 2, preds)
    assert positives(a.pos_mask) == [0] and positives(a.reg_mask) == [0]
    assert a.extras["reg_threshold"].item() == pytest.approx(0.532858, abs=1e-5)


def test_no_warm_up_starts_near_iou_based_atss():
    # At initialisation p ≈ 0.01 for every class and the predicted boxes ≈ the anchors:
    # the cost 0.01^(1−α)·AIoU^α is a monotone function of the anchor IoU, but its mean +
    # std threshold is not that of the IoUs, so the positives are close to, not always equal
    # to, ATSS's. On this grid (three levels, a 24×16 gt) they coincide.
    priors = PriorGenerator([8, 16, 32], offset=0.5, anchor_scale=2)(
        [torch.zeros(1, 1, 4, 4), torch.zeros(1, 1, 2, 2), torch.zeros(1, 1, 1, 1)]
    )
    gts = [gt_instances([[2.0, 2.0, 26.0, 18.0]], [1], (32, 32))]
    preds = {"pred_boxes": priors.anchors[None].clone(), "cls_logits": torch.full((1, 21, 3), math.log(0.01 / 0.99))}
    ddod = DDODAssigner(topk=4)(priors, gts, 3, preds)
    atss = ATSSAssigner(topk=4)(priors, gts, 3)
    assert torch.equal(ddod.matched_gt, atss.matched_gt) and torch.equal(ddod.reg_matched_gt, atss.matched_gt)


def test_invalid_arguments_and_inputs():
    for kwargs in (dict(cls_alpha=1.5), dict(reg_alpha=-0.1), dict(cls_alpha=float("nan")), dict(topk=0)):
        with pytest.raises(ValueError):
            DDODAssigner(**kwargs)
    preds = predictions([0.5] * 5, [0.5] * 5)
    with pytest.raises(ValueError, match=r"needs the predictions \['cls_logits'\]"):
        DDODAssigner()(row5(), [gt_instances([G], [0], (16, 80))], 1, {"pred_boxes": preds["pred_boxes"]})
    with pytest.raises(ValueError, match="num_classes=3"):
        DDODAssigner()(row5(), [gt_instances([G], [0], (16, 80))], 3, preds)


def test_empty_images_and_non_finite_predictions():
    priors = row5()
    preds = predictions([0.3] * 5, [0.5] * 5)
    both = {k: v.expand(2, *v.shape[1:]).clone() for k, v in preds.items()}
    # No gt in any image (G = 0).
    a = DDODAssigner()(priors, [gt_instances([], [], (16, 80))] * 2, 1, both)
    assert (a.matched_gt == -1).all() and (a.reg_matched_gt == -1).all() and (a.labels == 1).all()
    assert a.extras["cls_threshold"].shape == (2, 0)
    # Image 0 has G, image 1 nothing; NaN / inf predictions give cost 0, never positive and
    # never NaN thresholds.
    both["pred_boxes"][0, 2] = float("nan")
    both["cls_logits"][0, 3] = float("inf")
    a = DDODAssigner()(priors, [gt_instances([G], [0], (16, 80)), gt_instances([], [], (16, 80))], 1, both)
    assert (a.matched_gt[1] == -1).all() and (a.reg_matched_gt[1] == -1).all()
    assert torch.isfinite(a.extras["cls_threshold"]).all() and torch.isfinite(a.extras["reg_threshold"]).all()
    assert 2 not in positives(a.pos_mask) and 2 not in positives(a.reg_mask)


def test_levels_without_candidates_or_positives():
    # Three levels: 4×4 (stride 8), 2×2 (stride 16, fewer priors than k = 9) and an empty
    # level (no prior, so no candidate there; Detectron2's anchor generator cannot make a
    # 0×0 map, so the priors are put together by hand). A 6×6 gt around (12, 12) has its
    # positives on level 0 only: the level-1 points (8, 8), (24, 8), … lie outside it.
    two = PriorGenerator([8, 16], offset=0.5, anchor_scale=2)([torch.zeros(1, 1, 4, 4), torch.zeros(1, 1, 2, 2)])
    priors = Priors(two.points, two.anchors, two.strides, two.levels, two.num_per_level + [0])
    assert priors.num_per_level == [16, 4, 0]
    gt = gt_instances([[9.0, 9.0, 15.0, 15.0]], [0], (32, 32))
    preds = {"pred_boxes": priors.anchors[None].clone(), "cls_logits": torch.zeros(1, 20, 1)}
    a = DDODAssigner()(priors, [gt], 1, preds)
    # (12, 12) is the only point strictly inside (9, 9, 15, 15): prior 4·1 + 1 = 5.
    assert positives(a.pos_mask) == [5] and positives(a.reg_mask) == [5]


def test_1000_gts_batched_equals_per_image():
    # 256×256 images, P3-P7 (32² + 16² + 8² + 4² + 2² = 1364 priors), 1000 random gts per
    # image, random predictions and scores.
    sizes = [32, 16, 8, 4, 2]
    priors = PriorGenerator([8, 16, 32, 64, 128], offset=0.0, anchor_scale=4)([torch.zeros(1, 1, s, s) for s in sizes])
    g = torch.Generator().manual_seed(0)
    xy = torch.rand(2, 1000, 2, generator=g) * 240
    boxes = torch.cat([xy, xy + 2 + torch.rand(2, 1000, 2, generator=g) * 120], dim=-1)
    boxes[1, 900:] = 0  # degenerate rows in image 1
    classes = torch.randint(0, 6, (2, 1000), generator=g)
    centres = priors.points[None].expand(2, -1, -1)
    half = torch.rand(2, 1364, 2, generator=g) * 60 + 1
    preds = {
        "pred_boxes": torch.cat([centres - half, centres + half], -1),
        "cls_logits": torch.randn(2, 1364, 6, generator=g),
    }
    gts = [gt_instances(boxes[i], classes[i], (256, 256)) for i in range(2)]
    both = DDODAssigner()(priors, gts, 6, preds)
    for i in range(2):
        one = DDODAssigner()(priors, [gts[i]], 6, {k: v[i : i + 1] for k, v in preds.items()})
        assert torch.equal(one.matched_gt[0], both.matched_gt[i])
        assert torch.equal(one.reg_matched_gt[0], both.reg_matched_gt[i])
    for matched in (both.matched_gt, both.reg_matched_gt):
        assert ((matched == -1) | ((matched >= 0) & (matched < 1000))).all()
        assert not (matched[1] >= 900).any()  # degenerate boxes are never positive
        # every positive's centre is strictly inside its gt (margin 0.01)
        n, r = torch.nonzero(matched >= 0, as_tuple=True)
        own = boxes[n, matched[n, r]]
        p = priors.points[r]
        assert (torch.cat([p - own[:, :2], own[:, 2:] - p], 1).min(1).values > 0.01).all()
    assert both.pos_mask.sum() > 100 and both.reg_mask.sum() > 100
    images = torch.nonzero(both.pos_mask, as_tuple=True)[0]
    assert torch.equal(both.labels[both.pos_mask], classes[images, both.matched_gt[both.pos_mask]])
