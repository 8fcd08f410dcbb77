"""Test-time augmentation (dsla_d2.meta_arch.tta): what the merge must give, boxes back in
the original frame, and train_net.py --eval-only --tta / serving end to end."""
import json
import os
import sys
import types

import numpy as np
import pytest
import torch

import dsla_d2
from detectron2.structures import Boxes, Instances, pairwise_iou

from dsla_d2.evaluation import pre_nms_candidates
from dsla_d2.meta_arch.tta import DenseDetectorWithTTA, tta_transforms

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from tiny import tiny_fcos  # noqa: E402
from test_train_net import metrics, run  # noqa: E402


def model_and_image(seed=0, symmetric=False, size=(64, 64)):
    # score threshold 0: every (location, class) is a candidate, hundreds per image
    model = tiny_fcos(test_score_thresh=0.0, max_detections_per_image=1000).eval()
    with torch.no_grad():  # boxes of about 40 px around points 8 px apart: NMS has work to do
        model.head.box_reg.bias.fill_(float(np.log(20.0)))
    g = torch.Generator().manual_seed(seed)
    image = (torch.rand(3, *size, generator=g) * 255).to(torch.uint8)
    if symmetric:
        w = size[1]
        image[:, :, w - w // 2:] = image[:, :, : w // 2].flip(-1)
        assert torch.equal(image, image.flip(-1))
    return model, {"image": image, "height": size[0], "width": size[1]}


def plain(model, inp, pre_nms=False):
    with torch.no_grad():
        if pre_nms:
            with pre_nms_candidates(model):
                return model([inp])[0]["instances"]
        return model([inp])[0]["instances"]


def mirrored(boxes: torch.Tensor, width: int) -> torch.Tensor:
    return torch.stack([width - boxes[:, 2], boxes[:, 1], width - boxes[:, 0], boxes[:, 3]], dim=1)


def assert_same(a: Instances, b: Instances, atol=0.0):
    assert len(a) == len(b)
    assert torch.equal(a.scores, b.scores)
    assert torch.equal(a.pred_classes, b.pred_classes)
    torch.testing.assert_close(a.pred_boxes.tensor, b.pred_boxes.tensor, atol=atol, rtol=0)


def covered(boxes, scores, classes, found: Instances, thresh):
    """Each (box, score, class) has a detection in ``found`` of its class with a score at
    least its own and IoU > ``thresh`` (or equal box): what a greedy NMS guarantees for
    every candidate it was given, kept or suppressed."""
    iou = pairwise_iou(Boxes(boxes), found.pred_boxes)
    ok = (iou > thresh - 1e-6) & (classes[:, None] == found.pred_classes[None, :]) & (found.scores[None, :] >= scores[:, None])
    return ok.any(dim=1)


# --------------------------------------------------------------------------- merge
def test_one_augmentation_at_the_input_size_is_plain_inference():
    """min_sizes = the image's size, no flip: the same image, the same candidates, the same
    NMS and cut, so exactly plain inference's detections."""
    model, inp = model_and_image()
    tta = DenseDetectorWithTTA(model, min_sizes=[64], max_size=1000, flip=False)
    (only,) = tta.candidates(inp)
    assert_same(only[only.pred_boxes.nonempty()], plain(model, inp, pre_nms=True))
    for max_det in (1000, 20):  # with and without the max_detections_per_image cut
        model.max_detections_per_image = max_det
        out = tta([inp])[0]["instances"]
        assert out.image_size == (64, 64) and len(out) == min(max_det, len(plain(model, inp)))
        assert_same(out, plain(model, inp))


def test_flip_of_a_mirror_symmetric_image():
    """A mirror-symmetric image flipped is the same image, so the flipped pass gives plain
    inference's candidates mirrored, with the same scores. The model is not mirror-
    equivariant, so a candidate's mirror is a new box, not one of the candidates: the one NMS
    over both sets is not plain inference's NMS. What must hold exactly:"""
    model, inp = model_and_image(symmetric=True)
    thresh = model.test_nms_thresh
    tta = DenseDetectorWithTTA(model, min_sizes=[64], max_size=1000, flip=True)
    direct, flipped = tta.candidates(inp)
    # 1. the unflipped pass is plain inference's pre-NMS candidates, the flipped one their mirror
    pre = plain(model, inp, pre_nms=True)
    assert len(pre) > 100
    assert_same(direct[direct.pred_boxes.nonempty()], pre)
    assert torch.equal(flipped.scores, direct.scores) and torch.equal(flipped.pred_classes, direct.pred_classes)
    torch.testing.assert_close(flipped.pred_boxes.tensor, mirrored(direct.pred_boxes.tensor, 64), atol=1e-4, rtol=0)

    out = tta([inp])[0]["instances"]
    assert 0 < len(out) < model.max_detections_per_image  # no cut: every candidate went through NMS
    # 2. every detection is one of those candidates, with its score and class
    pool = Instances.cat([direct, flipped])
    same = (pairwise_iou(out.pred_boxes, pool.pred_boxes) > 1 - 1e-5) & (out.scores[:, None] == pool.scores[None, :]) \
        & (out.pred_classes[:, None] == pool.pred_classes[None, :])
    assert same.any(dim=1).all()
    # 3. every plain detection is kept or suppressed by a detection at least as good: the TTA
    #    loses none of plain inference's objects, and the best score of each class is plain's
    base = plain(model, inp)
    assert covered(base.pred_boxes.tensor, base.scores, base.pred_classes, out, thresh).all()
    for c in base.pred_classes.unique():
        assert out.scores[out.pred_classes == c].max() == base.scores[base.pred_classes == c].max()
    # 4. the result is mirror-symmetric up to the merge: the mirror of every detection is a
    #    detection, or was suppressed by one at least as good (e.g. by the detection itself,
    #    when it overlaps its own mirror by more than the NMS threshold)
    assert covered(mirrored(out.pred_boxes.tensor, 64), out.scores, out.pred_classes, out, thresh).all()
    # (both cases occur in this image: the test data exercises the merge)
    self_suppressed = pairwise_iou(out.pred_boxes, Boxes(mirrored(out.pred_boxes.tensor, 64))).diagonal() > thresh
    assert self_suppressed.any() and not self_suppressed.all()
    assert len(out) != len(base)


def test_flip_tta_is_mirror_equivariant():
    """TTA(mirror(I)) = mirror(TTA(I)): the two runs merge mirrored copies of the same
    candidate sets (the unflipped pass of one is the flipped pass of the other)."""
    model, inp = model_and_image(seed=3, size=(64, 80))
    flipped_inp = dict(inp, image=inp["image"].flip(-1).contiguous())
    tta = DenseDetectorWithTTA(model, min_sizes=[64, 96], max_size=1000, flip=True)
    a = tta([inp])[0]["instances"]
    b = tta([flipped_inp])[0]["instances"]
    assert len(a) == len(b) > 100
    assert torch.equal(a.scores, b.scores)  # sorted; equal scores may come in another order:
    match = (a.scores[:, None] == b.scores[None, :]) & (a.pred_classes[:, None] == b.pred_classes[None, :]) \
        & ((mirrored(a.pred_boxes.tensor, 80)[:, None, :] - b.pred_boxes.tensor[None, :, :]).abs().amax(dim=2) < 1e-3)
    assert match.any(dim=1).all() and match.any(dim=0).all()


def test_one_nms_over_all_augmentations_then_the_cut():
    model, inp = model_and_image()
    model.max_detections_per_image = 7
    tta = DenseDetectorWithTTA(model, min_sizes=[48, 64, 80], max_size=1000, flip=True)
    parts = tta.candidates(inp)
    assert len(parts) == 6 and all(p.image_size == (64, 64) for p in parts)
    out = tta([inp])[0]["instances"]
    assert len(out) == 7
    pool = Instances.cat(parts)
    # the best candidate of all augmentations comes first; no two kept boxes of a class overlap
    assert out.scores[0] == pool.scores.max() and torch.all(out.scores[:-1] >= out.scores[1:])
    iou = pairwise_iou(out.pred_boxes, out.pred_boxes)
    same_class = out.pred_classes[:, None] == out.pred_classes[None, :]
    assert not ((iou > model.test_nms_thresh) & same_class & ~torch.eye(7, dtype=torch.bool)).any()
    # pre-NMS mode on the wrapper: every merged candidate, sorted, no NMS, no cut
    with pre_nms_candidates(tta):
        everything = tta([inp])[0]["instances"]
    assert not tta.pre_nms_output and not model.pre_nms_output
    assert len(everything) == int(pool.pred_boxes.nonempty().sum())
    assert torch.all(everything.scores[:-1] >= everything.scores[1:])


# --------------------------------------------------------------------------- frames
FRACTIONS = torch.tensor([[0.1, 0.2, 0.3, 0.6], [0.5, 0.25, 0.9, 0.75], [-0.2, 0.5, 0.3, 1.2]])


def fractional_detector():
    """A detector whose candidates are fixed fractions of the image it sees (the third box
    reaches outside it, unclipped), scored 0.9, 0.8, 0.7."""
    model = tiny_fcos().eval()

    def forward_inference(self, images, features, predictions):
        out = []
        for h, w in images.image_sizes:
            inst = Instances((h, w))
            inst.pred_boxes = Boxes(FRACTIONS * torch.tensor([w, h, w, h], dtype=torch.float32))
            inst.scores = torch.tensor([0.9, 0.8, 0.7])
            inst.pred_classes = torch.tensor([0, 1, 2])
            out.append(inst)
        return out

    model.forward_inference = types.MethodType(forward_inference, model)
    return model


def expected_boxes(height, width, flip):
    f = FRACTIONS.clone()
    if flip:
        f = torch.stack([1 - f[:, 2], f[:, 1], 1 - f[:, 0], f[:, 3]], dim=1)
    boxes = Boxes(f * torch.tensor([width, height, width, height], dtype=torch.float32))
    boxes.clip((height, width))
    return boxes.tensor


@pytest.mark.parametrize("input_size", [(60, 80), (30, 40), (90, 120)])
def test_boxes_come_back_in_the_original_frame(input_size):
    """Scales other than the input's, flipped or not, and an input the loader already
    resized (its height/width are the original's): every box is mapped back to the
    original 60 x 80 frame (undo the flip in the resized frame, then the resize) and
    clipped to it."""
    model = fractional_detector()
    image = torch.zeros(3, *input_size, dtype=torch.uint8)
    inp = {"image": image, "height": 60, "width": 80}
    tta = DenseDetectorWithTTA(model, min_sizes=[45, 60, 150], max_size=180, flip=True)
    sizes = [tuple(img.shape[1:]) for img, _ in tta.augmented_inputs(inp)]
    assert sizes == [(45, 60), (45, 60), (60, 80), (60, 80), (135, 180), (135, 180)]  # 150 capped by max_size
    for i, part in enumerate(tta.candidates(inp)):
        assert part.image_size == (60, 80)
        torch.testing.assert_close(part.pred_boxes.tensor, expected_boxes(60, 80, flip=i % 2 == 1), atol=1e-4, rtol=0)
    out = tta([inp])[0]["instances"]
    assert out.image_size == (60, 80)
    b = out.pred_boxes.tensor
    assert (b[:, 0] >= 0).all() and (b[:, 1] >= 0).all() and (b[:, 2] <= 80).all() and (b[:, 3] <= 60).all()
    # the copies of each box at every scale coincide, so NMS keeps one per box and flip
    expected = torch.cat([expected_boxes(60, 80, False), expected_boxes(60, 80, True)])
    assert len(out) == 6
    assert (pairwise_iou(out.pred_boxes, Boxes(expected)).max(dim=1).values > 0.999).all()


def test_transforms_never_make_an_empty_image():
    pre, augs = tta_transforms(3, 20000, (3, 20000), [400], 1333, flip=True)
    resize = augs[0].transforms[0]
    assert (resize.new_h, resize.new_w) == (1, 1333)


def test_settings_are_checked():
    model = tiny_fcos()
    for bad in (dict(min_sizes=[]), dict(min_sizes=[0]), dict(min_sizes=[1.5]), dict(max_size=0), dict(flip="yes")):
        with pytest.raises(ValueError):
            DenseDetectorWithTTA(model, **bad)
    with pytest.raises(TypeError, match="AssignedDenseDetector"):
        DenseDetectorWithTTA(torch.nn.Linear(2, 2))
    with pytest.raises(RuntimeError, match="eval"):
        DenseDetectorWithTTA(model.train(), min_sizes=[64])([{"image": torch.zeros(3, 64, 64, dtype=torch.uint8)}])


# --------------------------------------------------------------------------- end to end
@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """Two iterations of the tiny run with --tta: the final evaluation, then one with TTA."""
    path = tmp_path_factory.mktemp("tta_run")
    run(path, "train.max_iter=2", flags=["--tta"])
    return path


def detections(path):
    """(image_id, category_id, score, box) of a COCOEvaluator results file, sorted."""
    with open(path) as f:
        rows = json.load(f)
    return sorted((r["image_id"], r["category_id"], round(r["score"], 6), r["bbox"]) for r in rows)


TINY_TTA = ["train.tta.min_sizes=[176,208]"]  # two scales x flip: 4 passes per image


def test_training_adds_a_tta_evaluation_and_eval_only_tta_reproduces_it(trained, tmp_path):
    final = [r for r in metrics(trained) if "bbox/AP" in r]
    assert len(final) == 1 and "bbox_TTA/AP" in final[0] and 0 <= final[0]["bbox_TTA/AP"] <= 100
    assert os.path.isfile(trained / "inference_tta" / "coco_instances_results.json")
    weights = f"train.init_checkpoint={trained / 'model_final.pth'}"

    res = run(tmp_path / "tta", weights, flags=["--eval-only", "--tta"])
    assert set(res) == {"bbox"}  # the evaluator's keys
    assert res["bbox"]["AP"] == pytest.approx(final[0]["bbox_TTA/AP"], abs=1e-9)
    with open(tmp_path / "tta" / "log.txt") as f:
        log = f.read()
    assert "Results with test-time augmentation (train.tta: min_sizes=[160, 176, 192, 208, 224], max_size=448, flip=True)" in log

    # one augmentation that is the test loader's resize: plain inference (NMS in the original
    # frame instead of the resized one is the only difference)
    same = run(tmp_path / "identity", weights, "train.tta.min_sizes=[192]", "train.tta.max_size=288", "train.tta.flip=False",
               flags=["--eval-only", "--tta"])
    assert same["bbox"]["AP"] == pytest.approx(final[0]["bbox/AP"], abs=1e-9)
    plain_dets, tta_dets = (detections(p / "coco_instances_results.json")
                            for p in (trained / "inference", tmp_path / "identity" / "inference_tta"))
    assert len(plain_dets) == len(tta_dets) > 16 * 50
    for a, b in zip(plain_dets, tta_dets):
        assert a[:3] == b[:3] and np.allclose(a[3], b[3], atol=1e-3)

    with pytest.raises(dsla_d2.engine.config_checks.ConfigValueError, match="train.tta.min_sizes"):
        run(tmp_path / "bad", weights, "train.tta.min_sizes=[]", flags=["--eval-only", "--tta"])


def test_consistency_with_tta(trained, tmp_path):
    res = run(tmp_path, f"train.init_checkpoint={trained / 'model_final.pth'}", *TINY_TTA,
              "train.consistency_eval.enabled=True", "train.consistency_eval.pre_nms=True", flags=["--eval-only", "--tta"])
    assert {"bbox", "consistency", "consistency_pre_nms"} <= set(res)
    assert res["consistency_pre_nms"]["num_detections"] > res["consistency"]["num_detections"]
    with open(tmp_path / "inference_tta" / "consistency.json") as f:
        assert json.load(f)["num_detections"] == res["consistency"]["num_detections"]


def test_serving_with_tta(trained):
    image = np.random.RandomState(0).randint(0, 255, (100, 140, 3)).astype(np.uint8)
    plain_predictor = dsla_d2.predictor_from_output_dir(str(trained), device="cpu")
    assert plain_predictor.tta_model is None
    predictor = dsla_d2.predictor_from_output_dir(str(trained), device="cpu", tta=True)
    tta = predictor.tta_model
    assert type(predictor.model).__name__ == "DslaFCOS" and tta.model is predictor.model
    assert (tta.min_sizes, tta.max_size, tta.flip) == ([160, 176, 192, 208, 224], 448, True)  # the run's train.tta
    out = predictor(image)["instances"]
    assert out.image_size == (100, 140) and len(out) > 0
    tensor = torch.as_tensor(np.ascontiguousarray(image.transpose(2, 0, 1)))
    assert_same(out, tta([{"image": tensor, "height": 100, "width": 140}])[0]["instances"])
    assert_same(out, predictor(image.astype(np.float32))["instances"])  # the input contract of as_bgr_uint8

    one = dsla_d2.predictor_from_output_dir(str(trained), device="cpu", tta=dict(min_sizes=[192], flip=False))
    assert (one.tta_model.min_sizes, one.tta_model.max_size, one.tta_model.flip) == ([192], 448, False)
    with pytest.raises(ValueError, match="unknown keys"):
        dsla_d2.predictor_from_output_dir(str(trained), device="cpu", tta=dict(sizes=[192]))


def test_bench_tta_records_both_evaluations_and_renders_the_table(trained, tmp_path):
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks"))
    import bench_tta
    from test_train_net import CONFIG, TINY

    doc = tmp_path / "doc.md"
    doc.write_text("intro\n<!-- bench_tta:begin -->\nnot yet measured\n<!-- bench_tta:end -->\nafter\n")
    out = tmp_path / "tta.json"
    bench_tta.main(["--configs", CONFIG, "--runs", str(trained), "--output", str(out), "--docs", str(doc), *TINY, *TINY_TTA])
    result = json.loads(out.read_text())
    (row,) = result["configs"]
    assert len(result["commit"]) == 40 and result["device"] == "cpu"
    assert (row["seed"], row["iterations"], row["test_dataset"], row["trained_by_this_script"]) == (0, 2, "dsla_synth_tiny", False)
    assert row["tta_settings"] == {"min_sizes": [176, 208], "max_size": 448, "flip": True}
    final = [r for r in metrics(trained) if "bbox/AP" in r][0]
    assert row["plain"]["AP"] == pytest.approx(final["bbox/AP"], abs=1e-9)
    assert set(row["tta"]) >= {"AP", "AP50", "AP75"}
    text = doc.read_text()
    assert bench_tta.render(result) in text and text.startswith("intro\n") and text.endswith("<!-- bench_tta:end -->\nafter\n")


def test_the_tta_test_loader_does_not_resize():
    """TTA resizes each original image once: the test mapper's ResizeShortestEdge is dropped
    (from a loaded .py config, class targets, or a run's config.yaml, string targets)."""
    from detectron2.config import LazyConfig, instantiate
    from omegaconf import OmegaConf

    from dsla_d2.evaluation import tta_test_loader
    from test_train_net import CONFIG

    cfg = LazyConfig.load(CONFIG)
    cfg.dataloader.test.dataset.names = "dsla_synth_tiny"
    cfg.dataloader.test.num_workers = 0
    assert len(cfg.dataloader.test.mapper.augmentations) == 1
    loader_cfg = tta_test_loader(cfg.dataloader.test)
    assert len(loader_cfg.mapper.augmentations) == 0 and len(cfg.dataloader.test.mapper.augmentations) == 1
    first = next(iter(instantiate(loader_cfg)))[0]
    assert tuple(first["image"].shape[1:]) == (first["height"], first["width"])
    as_read_back = OmegaConf.create({"mapper": {"augmentations": [
        {"_target_": "detectron2.data.transforms.ResizeShortestEdge", "short_edge_length": 192},
        {"_target_": "dsla_d2.serving.ResizeShortestEdgeAtLeastOnePixel", "short_edge_length": 192},
        {"_target_": "detectron2.data.transforms.RandomBrightness", "intensity_min": 1, "intensity_max": 1}]}})
    kept = tta_test_loader(as_read_back).mapper.augmentations
    assert [a._target_ for a in kept] == ["detectron2.data.transforms.RandomBrightness"]  # other augmentations stay
