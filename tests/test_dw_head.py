"""DW's box refinement (dsla_d2/heads/box_refinement.py) and head (DWHead): bilinear
sampling by hand, the spec's identity case, the head's initialisation and wiring."""
import math

import pytest
import torch

from dsla_d2.assigners import DWAssigner
from dsla_d2.heads import DWHead, FCOSHead, refine_ltrb
from dsla_d2.losses import DWLoss
from dsla_d2.quality import QualityCoupling

from tiny import make_inputs, tiny_fcos


def constant(value, h=3, w=3):
    return torch.full((1, 4, h, w), float(value))


def test_refinement_samples_the_four_side_maps_bilinearly():
    # 3×3 grid, stride 8, points at 4, 12, 20 (offset 0.5); coarse l = t = r = b = 8 everywhere,
    # so X1 = x − 8 = [−4, 4, 12] per column, Y1 = y − 8 per row, X2 = x + 8 = [12, 20, 28],
    # Y2 = y + 8; l/s = 1. Sample positions (row, col), zero outside the map:
    # cell (0, 0), offsets 0: X1 at (0, −1) → 0 → l' = 4 − 0 = 4; Y1 at (−1, 0) → 0 → t' = 4;
    #   X2 at (0, 1) = 20 → r' = 16; Y2 at (1, 0) = 20 → b' = 16.
    # cell (1, 1), offsets (o0..o7) = (1.5, 1, 0, 0, 0, −0.5, 0, 0):
    #   X1 at (1 + 1.5, 1 + 1 − 1) = (2.5, 1): half row 2 (X1 = 4), half row 3 (outside, 0) → 2
    #   → l' = 12 − 2 = 10;  Y1 at (0, 1) = −4 → t' = 16;
    #   X2 at (1, 1 − 0.5 + 1) = (1, 1.5) = (20 + 28)/2 = 24 → r' = 24 − 12 = 12;  Y2 at (2, 1) = 28 → b' = 16.
    # cell (2, 2), offsets 0: X1 at (2, 1) = 4 → l' = 16; Y1 at (1, 2) = 4 → t' = 16;
    #   X2 at (2, 3) → 0 → r' = ReLU(0 − 20) = 0; Y2 at (3, 2) → 0 → b' = 0.
    offsets = torch.zeros(1, 8, 3, 3)
    offsets[0, :, 1, 1] = torch.tensor([1.5, 1.0, 0, 0, 0, -0.5, 0, 0])
    out = refine_ltrb(constant(8), offsets, stride=8, point_offset=0.5)
    assert out[0, :, 0, 0].tolist() == pytest.approx([4, 4, 16, 16])
    assert out[0, :, 1, 1].tolist() == pytest.approx([10, 16, 12, 16])
    assert out[0, :, 2, 2].tolist() == pytest.approx([16, 16, 0, 0])


def test_refinement_identity_for_a_constant_box():
    # Spec: zero offsets and the same absolute box at every point return that box.
    # Box (4, 4, 20, 20) over the points 4, 12, 20: every point is inside or on its edges
    # (distances ≥ 0), and each side map is constant (X1 = 4, ...), so every sample that
    # lands on the map (X1 at column 4/8 − 0.5 = 0, X2 at 20/8 − 0.5 = 2, same for rows)
    # reads the same side back.
    x = torch.tensor([4.0, 12.0, 20.0])
    l = (x - 4).view(1, 3).expand(3, 3)
    t = (x - 4).view(3, 1).expand(3, 3)
    dist = torch.stack([l, t, 20 - l - 4, 20 - t - 4])[None]
    assert torch.allclose(refine_ltrb(dist, torch.zeros(1, 8, 3, 3), 8, 0.5), dist)
    # A box (6, 5, 17, 19) whose sides sample inside the map (columns 0.25 and 1.625, rows
    # 0.125 and 1.875) is read back exactly too; refined distances are ReLU(x − 6) etc.,
    # i.e. the box itself at the point (12, 12) inside it.
    box = torch.tensor([6.0, 5.0, 17.0, 19.0])
    xs, ys = x.view(1, 3).expand(3, 3), x.view(3, 1).expand(3, 3)
    dist = torch.stack([xs - box[0], ys - box[1], box[2] - xs, box[3] - ys])[None]
    out = refine_ltrb(dist, torch.zeros(1, 8, 3, 3), 8, 0.5)
    assert torch.allclose(out, dist.clamp(min=0), atol=1e-5)
    assert out[0, :, 1, 1].tolist() == pytest.approx([6, 7, 5, 7])


def test_refinement_gradients_reach_offsets_and_coarse_boxes():
    g = torch.Generator().manual_seed(0)
    dist = (torch.rand(2, 4, 5, 6, generator=g) * 20 + 1).requires_grad_()
    offsets = (torch.randn(2, 8, 5, 6, generator=g) * 0.3).requires_grad_()
    refine_ltrb(dist, offsets, 8, 0.5).sum().backward()
    assert dist.grad.abs().sum() > 0 and offsets.grad.abs().sum() > 0


def dw_head(**kw):
    torch.manual_seed(0)
    return DWHead(in_channels=16, num_classes=3, num_levels=2, channels=16, num_convs=1, norm="", strides=[8, 16], **kw)


def test_dw_head_initialisation_and_outputs():
    head = dw_head()
    # class prior 0.02: bias −ln((1 − 0.02)/0.02) = −ln 49 = −3.891820; box bias 4.0;
    # objectness on the regression tower; refinement offsets start at 0 bias.
    assert head.cls_logits.bias[0].item() == pytest.approx(-3.891820, abs=1e-6)
    assert (head.box_reg.bias == 4.0).all() and head.quality_branch == "reg"
    assert (head.refinement.offset_conv.bias == 0).all() and head.refinement.offset_conv.out_channels == 8
    out = head([torch.randn(2, 16, 6, 6), torch.randn(2, 16, 3, 3)])
    assert set(out) == {"cls_logits", "box_reg", "quality"}  # the refined box is the only box output
    assert all((b >= 0).all() for b in out["box_reg"])


def test_dw_head_refines_its_coarse_box_in_pixels():
    # Same seed, same parameters except the offset conv (created last): with the offsets
    # zeroed the refined head returns refine_ltrb(coarse·s, 0, s)/s (ReLU output in strides).
    coarse_head, head = dw_head(box_refinement=False), dw_head()
    torch.nn.init.zeros_(head.refinement.offset_conv.weight)
    feats = [torch.randn(1, 16, 6, 6), torch.randn(1, 16, 3, 3)]
    coarse, refined = coarse_head(feats)["box_reg"], head(feats)["box_reg"]
    for level, s in enumerate((8, 16)):
        h, w = coarse[level].shape[-2:]
        expect = refine_ltrb(coarse[level] * s, torch.zeros(1, 8, h, w), s, 0.5) / s
        assert torch.allclose(refined[level], expect, atol=1e-5)
    # An exp head (distances in pixels) refines without the stride conversion.
    torch.manual_seed(0)
    exp_head = FCOSHead(in_channels=16, num_classes=3, num_levels=2, channels=16, num_convs=1, norm="",
                        box_refinement=True, strides=[8, 16])
    assert all(torch.isfinite(b).all() for b in exp_head(feats)["box_reg"])


def test_refinement_arguments_are_checked():
    with pytest.raises(ValueError, match="one stride per level"):
        DWHead(in_channels=16, num_classes=3, num_levels=2, channels=16, num_convs=1, norm="")
    with pytest.raises(ValueError, match="box_activation"):
        DWHead(in_channels=16, num_classes=3, num_levels=2, channels=16, num_convs=1, norm="", strides=[8, 16],
               box_activation="none")
    with pytest.raises(ValueError, match="head strides"):
        tiny_fcos(head_kwargs=dict(box_refinement=True, strides=[8, 32]))
    with pytest.raises(ValueError, match="point_offset"):
        tiny_fcos(head_kwargs=dict(box_refinement=True, strides=[8, 16], point_offset=0.0))


def test_fcos_dw_trains_end_to_end():
    # The tiny two-level detector with DW's parts: three losses, gradients to every head
    # part (towers, objectness, refinement offsets), detections at inference.
    from dsla_d2.box_coders import LTRBBoxCoder

    model = tiny_fcos(
        assigner=DWAssigner(),
        quality=QualityCoupling(branch="objectness", threshold_on="score"),
        loss=DWLoss(),
        box_coder=LTRBBoxCoder(normalize_by_stride=True),
        head_kwargs=dict(box_refinement=True, strides=[8, 16], box_activation="relu", box_bias_init=4.0, prior_prob=0.02),
        test_score_thresh=0.0,
    )
    model.train()
    losses = model(make_inputs([[[4, 6, 40, 44], [20, 10, 60, 50]], []], [[0, 2], []]))
    assert set(losses) == {"loss_cls_pos", "loss_loc", "loss_cls_neg"}
    sum(losses.values()).backward()
    for name in ("cls_logits", "box_reg", "quality", "refinement.offset_conv"):
        grad = model.head.get_submodule(name).weight.grad
        assert grad is not None and grad.abs().sum() > 0, name
    model.eval()
    with torch.no_grad():
        inst = model(make_inputs([[[4, 6, 40, 44]]]))[0]["instances"]
    assert len(inst) > 0 and math.isfinite(inst.scores.sum().item())
