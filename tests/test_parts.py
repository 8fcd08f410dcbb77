"""Box coders, priors, heads and the quality coupling."""
import math

import pytest
import torch

from dsla_d2.assigners import Assignment
from dsla_d2.box_coders import DeltaBoxCoder, FoveaLogBoxCoder, LTRBBoxCoder
from dsla_d2.heads import DENSE_HEAD_REGISTRY, DeformConv3x3, FCOSHead, TowerHead, build_dense_head
from dsla_d2.priors import PriorGenerator
from dsla_d2.quality import QualityCoupling


def _priors():
    return PriorGenerator([8, 16], offset=0.5, anchor_scale=8)([torch.zeros(1, 1, 2, 2), torch.zeros(1, 1, 1, 1)])


def test_priors_anchors_are_squares_of_eight_strides():
    p = _priors()
    # level 0 point (4, 4), stride 8 → anchor side 64: (−28, −28, 36, 36)
    assert p.anchors[0].tolist() == [-28, -28, 36, 36]
    # level 1 point (8, 8), stride 16 → side 128: (−56, −56, 72, 72)
    assert p.anchors[4].tolist() == [-56, -56, 72, 72]
    assert p.num_per_level == [4, 1] and p.levels.tolist() == [0, 0, 0, 0, 1]


def test_ltrb_coder():
    p = _priors()
    # point (12, 4) (stride 8), distances (2, 3, 4, 5) px → box (10, 1, 16, 9)
    d = torch.zeros(1, 5, 4)
    d[0, 1] = torch.tensor([2.0, 3, 4, 5])
    assert LTRBBoxCoder().decode(d, p)[0, 1].tolist() == [10, 1, 16, 9]
    # with stride units the same output means 8× larger distances: (−4, −20, 44, 44)
    assert LTRBBoxCoder(normalize_by_stride=True).decode(d, p)[0, 1].tolist() == [-4, -20, 44, 44]
    boxes = LTRBBoxCoder(True).decode(d, p)
    assert torch.allclose(LTRBBoxCoder(True).encode(boxes, p), d)


def test_delta_coder_round_trip_and_zero():
    p = _priors()
    # zero deltas decode to the anchors themselves
    assert torch.allclose(DeltaBoxCoder().decode(torch.zeros(2, 5, 4), p), p.anchors.expand(2, 5, 4))
    boxes = torch.tensor([[[0.0, 0, 20, 30]] * 5])
    assert torch.allclose(DeltaBoxCoder().decode(DeltaBoxCoder().encode(boxes, p), p), boxes, atol=1e-4)
    # dx: (cx_box − cx_anchor)/w_anchor · 10: box centre 10 vs anchor centre 4 (w 64) → 0.9375
    assert DeltaBoxCoder().encode(boxes, p)[0, 0, 0].item() == pytest.approx((10 - 4) / 64 * 10)


def test_fovea_coder_values_and_clamps():
    p = _priors()
    coder = FoveaLogBoxCoder(base_edges=(16, 32))
    # point (4, 4) on level 0 (z = 16), box (0, 0, 36, 20): distances 4, 4, 32, 16 →
    # log(4/16), log(4/16), log(2), log(1)
    t = coder.encode(torch.tensor([[[0.0, 0, 36, 20]] * 5]), p)
    assert t[0, 0].tolist() == pytest.approx([math.log(0.25), math.log(0.25), math.log(2.0), 0.0], abs=1e-6)
    # clamps: a distance of 0.5 px → 0.5/16 < 1/16 → log(1/16); 1000 px → 62.5 > 16 → log 16
    t = coder.encode(torch.tensor([[[3.5, 3.5, 1004, 1004]] * 5]), p)
    assert t[0, 0].tolist() == pytest.approx([math.log(1 / 16)] * 2 + [math.log(16)] * 2, abs=1e-6)
    assert torch.allclose(coder.decode(coder.encode(torch.tensor([[[0.0, 0, 36, 20]] * 5]), p), p)[0, 0], torch.tensor([0.0, 0, 36, 20]), atol=1e-4)


def test_tower_head_outputs_and_init():
    head = FCOSHead(in_channels=8, num_classes=3, num_levels=2, channels=32, num_convs=2, norm="GN")
    feats = [torch.randn(2, 8, 6, 6), torch.randn(2, 8, 3, 3)]
    out = head(feats)
    assert [t.shape for t in out["cls_logits"]] == [(2, 3, 6, 6), (2, 3, 3, 3)]
    assert [t.shape for t in out["quality"]] == [(2, 1, 6, 6), (2, 1, 3, 3)]
    assert all((t > 0).all() for t in out["box_reg"])  # exp activation
    # prior probability 0.01 → bias −log(0.99/0.01) = −4.595120
    assert head.cls_logits.bias[0].item() == pytest.approx(-math.log(99), abs=1e-5)
    assert "TowerHead" in DENSE_HEAD_REGISTRY and "DSLAHead" in DENSE_HEAD_REGISTRY
    relu = build_dense_head("DSLAHead", in_channels=8, num_classes=3, num_levels=2, channels=32, num_convs=1, box_activation="relu")
    assert "quality" not in relu(feats) and all((t >= 0).all() for t in relu(feats)["box_reg"])
    with pytest.raises(ValueError, match="deformable_convs"):
        TowerHead(in_channels=8, num_classes=3, num_levels=2, num_convs=2, deformable_convs=[2])


@pytest.mark.parametrize("modulated", [False, True])
def test_deform_conv_starts_as_plain_conv(modulated):
    torch.manual_seed(0)
    dcn = DeformConv3x3(4, 5, modulated=modulated)
    x = torch.randn(1, 4, 7, 7)
    ref = torch.nn.functional.conv2d(x, dcn.weight, dcn.bias, padding=1)
    # zero offsets (and a mask of sigmoid(0) = 0.5 everywhere for DCNv2)
    expected = ref if not modulated else torch.nn.functional.conv2d(x, dcn.weight * 0.5, dcn.bias, padding=1)
    assert torch.allclose(dcn(x), expected, atol=1e-5)
    dcn(x).sum().backward()
    assert dcn.offset_conv.weight.grad is not None


def test_quality_coupling_targets_and_scores():
    a = Assignment(
        labels=torch.tensor([[0, 1, 2]]),
        cls_scores=torch.tensor([[0.5, 1.0, 0.0]]),
        cls_weights=torch.ones(1, 3),
        reg_mask=torch.tensor([[True, True, False]]),
        box_targets=torch.tensor([[[0.0, 0, 20, 20], [0, 0, 20, 20], [0, 0, 0, 0]]]),
        reg_weights=torch.tensor([[0.5, 1.0, 0.0]]),
        matched_gt=torch.tensor([[0, 0, -1]]),
    )
    ious = torch.tensor([[0.75, 0.0, 0.0]])
    # static: label_s; product: label_s·IoU (0.5·0.75 = 0.375, 1·0 = 0 → a cls negative);
    # iou only: IoU.
    assert QualityCoupling(cls_target="static").classification_targets(a, ious).tolist() == [[0.5, 1.0, 0.0]]
    assert QualityCoupling(cls_target="iou_product").classification_targets(a, ious).tolist() == [[0.375, 0.0, 0.0]]
    assert QualityCoupling(cls_target="iou").classification_targets(a, ious).tolist() == [[0.75, 0.0, 0.0]]
    # centerness target of point (8, 8) in (0, 0, 20, 20): sqrt(8/12 · 8/12) = 2/3
    p = PriorGenerator([16], offset=0.5)([torch.zeros(1, 1, 1, 3)])  # points (8,8), (24,8), (40,8)
    t = QualityCoupling(branch="centerness").branch_targets(p, a, ious)
    assert t[0, 0].item() == pytest.approx(2 / 3, abs=1e-6)
    assert QualityCoupling(branch="iou").branch_targets(p, a, ious)[0, 0].item() == 0.75
    # branch loss: BCE-with-logits over the 2 regression positives / 2. Logit 0 vs target
    # 2/3 and 2/3 (prior 1 has the same box and point (24, 8): l,t,r,b = 24, 8, −4, 12 → the
    # numerator min(l, r) is clamped at 0 → centerness 0): BCE(0.5, ·) = ln2 for any target.
    loss = QualityCoupling(branch="centerness").branch_loss(torch.zeros(1, 3), p, a, ious)
    assert loss.item() == pytest.approx(math.log(2), abs=1e-6)
    # inference: cls × quality, optionally the geometric mean
    s = QualityCoupling(branch="iou").inference_scores(torch.zeros(1, 1, 1), torch.zeros(1, 1, 1))
    assert s.item() == pytest.approx(0.25)
    s = QualityCoupling(branch="iou", score_sqrt=True).inference_scores(torch.zeros(1, 1, 1), torch.zeros(1, 1, 1))
    assert s.item() == pytest.approx(0.5)
    with pytest.raises(ValueError, match="cls_target"):
        QualityCoupling(cls_target="soft")
