"""The assembled detector: training on awkward batches, inference format, wiring errors."""
import math

import pytest
import torch

from dsla_d2.quality import QualityCoupling

from tiny import make_inputs, tiny_fcos


def _train_step(model, batch):
    model.train()
    losses = model(batch)
    total = sum(losses.values())
    assert all(math.isfinite(v.item()) for v in losses.values()), losses
    total.backward()
    return losses


def test_training_batch_with_empty_degenerate_and_out_of_image_boxes():
    model = tiny_fcos()
    batch = make_inputs(
        [
            [],  # no annotations at all
            [[5, 5, 5, 30], [10, 10, 10, 10]],  # degenerate boxes only
            [[-20, -20, 30, 30], [40, 40, 120, 120], [8, 8, 56, 56]],  # partly outside the image
        ],
        [[], [0, 1], [0, 1, 2]],
    )
    losses = _train_step(model, batch)
    assert set(losses) == {"loss_cls", "loss_box_reg", "loss_quality"}
    assert model.head.cls_logits.weight.grad is not None


def test_batch_without_any_box():
    model = tiny_fcos()
    losses = _train_step(model, make_inputs([[], []]))
    assert losses["loss_box_reg"].item() == 0 and losses["loss_quality"].item() == 0
    assert losses["loss_cls"].item() > 0


def test_thousand_boxes_in_one_image():
    g = torch.Generator().manual_seed(1)
    xy = torch.rand(1000, 2, generator=g) * 56
    boxes = torch.cat([xy, xy + torch.rand(1000, 2, generator=g) * 30 + 1], 1)
    model = tiny_fcos()
    _train_step(model, make_inputs([boxes], [torch.randint(0, 3, (1000,), generator=g)]))


def test_inference_output_format():
    model = tiny_fcos().eval()
    batch = make_inputs([[[8, 8, 40, 40]], []])
    batch[1]["height"], batch[1]["width"] = 128, 96  # resized back to the original size
    with torch.no_grad():
        out = model(batch)
    assert len(out) == 2
    for r, (h, w) in zip(out, [(64, 64), (128, 96)]):
        inst = r["instances"]
        assert inst.image_size == (h, w)
        assert set(inst.get_fields()) == {"pred_boxes", "scores", "pred_classes"}
        assert len(inst) <= model.max_detections_per_image
        b = inst.pred_boxes.tensor
        assert (b[:, 0] >= 0).all() and (b[:, 2] <= w).all() and (b[:, 3] <= h).all()
        assert (inst.scores > 0).all() and (inst.pred_classes < 3).all()


def test_inference_respects_thresholds():
    model = tiny_fcos(test_score_thresh=0.999).eval()
    with torch.no_grad():
        assert len(model(make_inputs([[]]))[0]["instances"]) == 0
    model = tiny_fcos(max_detections_per_image=5, test_score_thresh=0.0).eval()
    with torch.no_grad():
        assert len(model(make_inputs([[]]))[0]["instances"]) == 5


def test_quality_branch_mismatch_is_an_error():
    with pytest.raises(ValueError, match="needs a head with a quality branch"):
        tiny_fcos(quality=QualityCoupling(branch="iou"), head_kwargs={"quality_branch": None})
    with pytest.raises(ValueError, match="has a quality branch"):
        tiny_fcos(quality=QualityCoupling(branch=None), head_kwargs={"quality_branch": "reg"})


def test_iou_branch_and_soft_targets_on_fcos():
    """Quality parts are not ATSS-specific: FCOS + IoU branch + VFL trains."""
    from dsla_d2.losses import DenseDetectionLoss

    model = tiny_fcos(
        quality=QualityCoupling(branch="iou", cls_target="iou"),
        loss=DenseDetectionLoss(cls_loss="vfl", box_loss="giou"),
    )
    losses = _train_step(model, make_inputs([[[8, 8, 40, 40]], [[0, 0, 60, 30]]], [[1], [2]]))
    assert set(losses) == {"loss_cls", "loss_box_reg", "loss_quality"}
