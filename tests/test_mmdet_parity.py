"""Whole-model parity with mmdetection 3.3 on the same weights, without mmdetection.

``tools/parity/make_mmdet_fixtures.py`` (run by hand beside mmdetection, see
``tools/parity/README.md``) built each mmdetection model of the model zoo from its own
config, filled it with seeded weights (``tools/parity/seeded_weights.py``), ran it on one
160 x 224 image and stored its key layout, the seed, the image and every intermediate
result in ``tests/data/parity/<name>.pt``. Here the same weights are regenerated from the
seed, converted by ``dsla_d2.convert`` onto the model of ``configs/mmdet/<config>.py`` and
run on the same image:

* the preprocessed input, the five FPN levels and every head output equal mmdetection's
  within 1e-5 relative to each tensor's scale;
* the detections are the same: same count, classes, boxes within 1e-3 px, scores within
  1e-5;
* the training losses on the fixture's four ground-truth boxes agree within 1e-5 relative
  (DDOD: against mmdetection with separate counters, the authors' rule, see
  ``projects/DDOD/README.md``).
"""
import os
import sys

import pytest
import torch

import dsla_d2  # noqa: F401  (applies dsla_d2.compat, registers our parts)
from detectron2.config import LazyConfig, instantiate
from detectron2.structures import Boxes, Instances

from dsla_d2.convert import convert_state_dict, mmdet_rules
from dsla_d2.convert.mmdet import head_type_of

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tools", "parity"))
from seeded_weights import seeded_state_dict  # noqa: E402

FIXTURES = os.path.join(ROOT, "tests", "data", "parity")
CASES = {
    "fcos": "configs/mmdet/fcos_r50-caffe_fpn_gn-head_1x_coco.py",
    "atss": "configs/mmdet/atss_r50_fpn_1x_coco.py",
    "foveabox": "configs/mmdet/fovea_r50_fpn_4xb4-1x_coco.py",
    "ddod": "configs/mmdet/ddod_r50_fpn_1x_coco.py",
}
#: mmdetection's head outputs -> ours
HEAD_OUTPUTS = {"cls_scores": "cls_logits", "bbox_preds": "box_reg", "centernesses": "quality", "iou_preds": "quality"}
KEEP_INITIAL = (r"loss\.level_weighting\.(cls|reg)_counts",)


def close(ours, theirs, rel=1e-5):
    """Equal within ``rel`` of the reference tensor's largest magnitude."""
    scale = max(float(theirs.abs().max()), 1e-12)
    err = float((ours - theirs).abs().max())
    assert err <= rel * scale, f"max difference {err:.3g} > {rel} x {scale:.3g}"
    return err / scale


@pytest.fixture(scope="module", params=sorted(CASES))
def case(request):
    """(name, fixture, converted model in eval mode)."""
    name = request.param
    fx = torch.load(os.path.join(FIXTURES, f"{name}.pt"), weights_only=True)
    source = seeded_state_dict(fx["spec"], fx["seed"])
    for (key, _, _), total in zip(fx["spec"], fx["weight_sums"]):  # this torch draws mmdetection's weights
        assert float(source[key].double().sum()) == pytest.approx(total, rel=1e-6, abs=1e-6), key
    cfg = LazyConfig.load(os.path.join(ROOT, CASES[name]))
    model = instantiate(cfg.model)
    rules = mmdet_rules(head_type_of(source), tower_norm=bool(cfg.model.head.get("norm", "")))
    model.load_state_dict(convert_state_dict(source, rules, model.state_dict(), KEEP_INITIAL), strict=True)
    return name, fx, model.eval()


def batched_input(fx, model):
    """The fixture's BGR image as our model's input (in its input format)."""
    image = fx["image"]  # (H, W, 3) uint8 BGR
    if model.input_format == "RGB":
        image = image.flip(-1)
    h, w = fx["img_shape"]
    return [{"image": image.permute(2, 0, 1).float(), "height": h, "width": w}]


def test_preprocessed_input(case):
    _, fx, model = case
    images = model.preprocess_image(batched_input(fx, model))
    close(images.tensor, fx["inputs"])


def test_features_and_head_outputs(case):
    _, fx, model = case
    with torch.no_grad():
        features = model.backbone(fx["inputs"])
        features = [features[f] for f in model.head_in_features]
        for ours, theirs in zip(features, fx["features"]):
            close(ours, theirs)
        outputs = model.head(features)
    for name, levels in fx["head"].items():
        for ours, theirs in zip(outputs[HEAD_OUTPUTS[name]], levels):
            close(ours, theirs)


def test_detections(case):
    _, fx, model = case
    with torch.no_grad():
        out = model(batched_input(fx, model))[0]["instances"]
    ref = fx["detections"]
    assert len(out) == len(ref["scores"]) == 100
    ours = sorted(zip(out.scores.tolist(), out.pred_classes.tolist(), out.pred_boxes.tensor.tolist()), reverse=True)
    theirs = sorted(zip(ref["scores"].tolist(), ref["labels"].tolist(), ref["boxes"].tolist()), reverse=True)
    for (s1, c1, b1), (s2, c2, b2) in zip(ours, theirs):
        assert c1 == c2 and s1 == pytest.approx(s2, abs=1e-5)
        assert max(abs(a - b) for a, b in zip(b1, b2)) <= 1e-3


LOSS_NAMES = {"loss_cls": "loss_cls", "loss_bbox": "loss_box_reg", "loss_centerness": "loss_quality", "loss_iou": "loss_quality"}


def test_losses(case):
    name, fx, model = case
    gt = Instances(tuple(fx["img_shape"]))
    gt.gt_boxes = Boxes(fx["gt"]["boxes"])
    gt.gt_classes = fx["gt"]["labels"]
    batch = batched_input(fx, model)
    batch[0]["instances"] = gt
    model.train()
    try:
        with torch.no_grad():
            losses = model(batch)
    finally:
        model.eval()
    reference = fx["losses_separate_counters"] if name == "ddod" else fx["losses"]
    for theirs_name, value in reference.items():
        ours = float(losses[LOSS_NAMES[theirs_name]])
        assert ours == pytest.approx(value, rel=1e-5), (theirs_name, ours, value)
