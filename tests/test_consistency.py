"""Score–IoU consistency evaluator: statistics on hand-made detections, with every
expected number derived by hand in the comments.

Geometry used throughout: the gt is [0, 0, 10, 10] (area 100), and
  [0, 0, 10, 10] has IoU 100/100 = 1,  [0, 0, 10, 5] has IoU 50/100 = 0.5,
  [0, 0, 5, 5] has IoU 25/100 = 0.25  (each inside the gt: IoU = own area / 100).
"""
import itertools
import json
import math
import os

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

import dsla_d2  # noqa: F401
from detectron2.data import DatasetCatalog
from detectron2.structures import BoxMode, Boxes, Instances

from dsla_d2.evaluation import ConsistencyEvaluator, average_ranks, pearson, spearman

FULL, HALF, QUARTER = [0, 0, 10, 10], [0, 0, 10, 5], [0, 0, 5, 5]
_names = itertools.count()


def register(images):
    """images: list of annotation lists [(xywh box, class, iscrowd)]; image_id = index."""
    name = f"consistency_test_{next(_names)}"
    dicts = [
        {"image_id": i, "file_name": f"{i}.png", "height": 64, "width": 64,
         "annotations": [{"bbox": list(b), "bbox_mode": BoxMode.XYWH_ABS, "category_id": c, "iscrowd": crowd}
                         for b, c, crowd in annos]}
        for i, annos in enumerate(images)
    ]
    DatasetCatalog.register(name, lambda: dicts)
    return name


def detections(boxes, scores, classes=None):
    inst = Instances((64, 64))
    inst.pred_boxes = Boxes(torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4))
    inst.scores = torch.tensor(scores, dtype=torch.float32)
    inst.pred_classes = torch.tensor(classes if classes is not None else [0] * len(scores), dtype=torch.int64)
    return {"instances": inst}


def evaluate(name, outputs, output_dir=None, **kwargs):
    ev = ConsistencyEvaluator(name, output_dir, **kwargs)
    ev.reset()
    for i, out in enumerate(outputs):
        ev.process([{"image_id": i}], [out])
    return ev.evaluate()["consistency"]


ONE_GT = [[([0, 0, 10, 10], 0, 0)]]  # XYWH [0,0,10,10] = XYXY FULL


def test_pearson_and_spearman_by_hand():
    # x = IoU (1, .5, .25), y = score (.9, .3, .6). Means 7/12 and .6;
    # Σdxdy = (5/12)(.3) + (-1/12)(-.3) + (-1/3)(0) = .15; Σdx² = 7/24; Σdy² = .18;
    # r = .15 / sqrt(7/24 · .18) = .15 / sqrt(.0525), r² = .0225/.0525 = 3/7.
    assert pearson([1, 0.5, 0.25], [0.9, 0.3, 0.6]) == pytest.approx(math.sqrt(3 / 7), abs=1e-12)
    # ranks x (3, 2, 1), y (3, 1, 2): Σd² = 0+1+1 = 2, ρ = 1 - 6·2 / (3·(9-1)) = 0.5
    assert spearman([1, 0.5, 0.25], [0.9, 0.3, 0.6]) == pytest.approx(0.5)
    # ties share their mean rank: [10, 20, 20, 30] -> [1, 2.5, 2.5, 4]
    assert average_ranks([10, 20, 20, 30]).tolist() == [1, 2.5, 2.5, 4]
    # x = (1, .5, .25, .25) ranks (4, 3, 1.5, 1.5); y = (.9, .6, .6, .3) ranks (4, 2.5, 2.5, 1).
    # Both mean 2.5: dx (1.5, .5, -1, -1), dy (1.5, 0, 0, -1.5); Σdxdy = 2.25 + 1.5 = 3.75,
    # Σdx² = 2.25+.25+1+1 = 4.5, Σdy² = 4.5 → ρ = 3.75/4.5 = 5/6
    assert spearman([1, 0.5, 0.25, 0.25], [0.9, 0.6, 0.6, 0.3]) == pytest.approx(5 / 6)
    # undefined, never NaN: fewer than two values, or a constant side
    assert pearson([0.3], [0.5]) is None and spearman([], []) is None
    assert pearson([1, 0.5], [0.4, 0.4]) is None and spearman([0, 0, 0], [0.1, 0.2, 0.3]) is None


def test_perfectly_consistent_scores(tmp_path):
    # score = 0.8·IoU + 0.1: (1 → .9, .5 → .5, .25 → .3), an exact linear relation → r = ρ = 1
    res = evaluate(register(ONE_GT), [detections([FULL, HALF, QUARTER], [0.9, 0.5, 0.3])], str(tmp_path))
    assert res["pearson"] == pytest.approx(1.0) and res["spearman"] == pytest.approx(1.0)
    # IoU >= .5: two points (1, .9), (.5, .5): a rising line → 1
    assert res["num_detections_iou50"] == 2 and res["pearson_iou50"] == pytest.approx(1.0)
    # the top-scored box (.9) is the best one (IoU 1)
    assert res["top_iou"] == 1.0 and res["best_iou"] == 1.0 and res["inconsistent_frac"] == 0.0
    assert (res["num_images"], res["num_gts"], res["num_detections"], res["num_gts_matched"], res["num_gts_multi"]) == (1, 1, 3, 1, 1)
    saved = json.loads((tmp_path / "consistency.json").read_text())
    assert saved["pearson"] == pytest.approx(1.0) and saved["dataset"].startswith("consistency_test_")
    with open(tmp_path / "consistency.png", "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"


def test_anti_correlated_scores():
    # score = 1 - 0.8·IoU: (1 → .2, .5 → .6, .25 → .8) → r = ρ = -1
    res = evaluate(register(ONE_GT), [detections([FULL, HALF, QUARTER], [0.2, 0.6, 0.8])])
    assert res["pearson"] == pytest.approx(-1.0) and res["spearman"] == pytest.approx(-1.0)
    # NMS would keep the .8 box, IoU .25, though an IoU-1 box exists: inconsistent
    assert res["top_iou"] == pytest.approx(0.25) and res["best_iou"] == 1.0 and res["inconsistent_frac"] == 1.0


def test_detection_of_a_class_without_gt_has_iou_zero():
    # The perfect case plus a class-1 box exactly on the (class-0) gt, score .95: IoU 0.
    # x = (1, .5, .25, 0), mean .4375; y = (.9, .5, .3, .95), mean .6625;
    # dx = (.5625, .0625, -.1875, -.4375), dy = (.2375, -.1625, -.3625, .2875);
    # Σdxdy = .13359375 - .01015625 + .06796875 - .12578125 = .065625;
    # Σdx² = .31640625 + .00390625 + .03515625 + .19140625 = .546875;
    # Σdy² = .05640625 + .02640625 + .13140625 + .08265625 = .296875.
    res = evaluate(register(ONE_GT), [detections([FULL, HALF, QUARTER, FULL], [0.9, 0.5, 0.3, 0.95], [0, 0, 0, 1])])
    assert res["pearson"] == pytest.approx(0.065625 / math.sqrt(0.546875 * 0.296875))
    # ranks x (4, 3, 2, 1), y (3, 2, 1, 4): d = (1, 1, 1, -3), Σd² = 12; ρ = 1 - 72/60 = -0.2
    assert res["spearman"] == pytest.approx(-0.2)
    # the class-1 box belongs to no gt: the gt's top-scored box is still the IoU-1 one
    assert res["num_detections"] == 4 and res["top_iou"] == 1.0 and res["inconsistent_frac"] == 0.0


def test_tied_scores_count_as_a_random_tie_break():
    # two boxes with the same score .5, IoUs 1 and .5: NMS keeps either → expected top
    # IoU (1 + .5)/2 = .75, inconsistent with probability 1/2
    res = evaluate(register(ONE_GT), [detections([FULL, HALF], [0.5, 0.5])])
    assert res["top_iou"] == pytest.approx(0.75) and res["inconsistent_frac"] == pytest.approx(0.5)
    # constant scores: the correlations are undefined, left out (never NaN)
    assert "pearson" not in res and "spearman" not in res and res["best_iou"] == 1.0


def test_empty_predictions_no_gts_and_a_single_detection(tmp_path):
    # no detection at all: counts only, no correlation, no per-gt mean; files still written
    res = evaluate(register(ONE_GT), [detections([], [])], str(tmp_path))
    assert res == {"num_images": 1, "num_gts": 1, "num_detections": 0, "num_ignored": 0,
                   "num_detections_iou50": 0, "num_gts_matched": 0, "num_gts_multi": 0}
    saved = json.loads((tmp_path / "consistency.json").read_text())
    assert saved["pearson"] is None and saved["top_iou"] is None
    assert os.path.getsize(tmp_path / "consistency.png") > 0
    # an image without gts: every IoU is 0 (constant) → correlations undefined
    res = evaluate(register([[]]), [detections([FULL, HALF], [0.9, 0.2])])
    assert res["num_gts"] == 0 and res["num_detections"] == 2 and "pearson" not in res and "top_iou" not in res
    # one detection: correlations undefined, its gt's top IoU is its IoU .5
    res = evaluate(register(ONE_GT), [detections([HALF], [0.7])])
    assert "spearman" not in res and res["top_iou"] == 0.5 and res["inconsistent_frac"] == 0.0


def test_crowd_regions_are_ignored_as_coco_does():
    # image: a class-0 crowd region XYWH [0,0,40,40] and a real class-0 gt [50,50,60,60].
    # Box FULL lies inside the crowd region (covered 100% >= .5) and overlaps no real gt
    # (IoU 0 < .5): dropped. The class-1 box at FULL is not (crowd regions are per class).
    name = register([[([0, 0, 40, 40], 0, 1), ([50, 50, 10, 10], 0, 0)]])
    res = evaluate(name, [detections([FULL, [50, 50, 60, 60], FULL], [0.9, 0.8, 0.1], [0, 0, 1])])
    assert res["num_ignored"] == 1 and res["num_detections"] == 2 and res["num_gts"] == 1
    # kept: (IoU 1, .8) and (IoU 0, .1): two points on a rising line
    assert res["pearson"] == pytest.approx(1.0) and res["top_iou"] == 1.0


def _two_images():
    # image 0: gt FULL, boxes QUARTER (score .9) and FULL (score .3): top IoU .25, inconsistent;
    # image 1: gt XYWH [20,20,10,20] = XYXY [20,20,30,40], one exact box (score .8): top IoU 1.
    name = register([[([0, 0, 10, 10], 0, 0)], [([20, 20, 10, 20], 0, 0)]])
    outs = [detections([QUARTER, FULL], [0.9, 0.3]), detections([[20, 20, 30, 40]], [0.8])]
    return name, outs


def test_gts_of_different_images_stay_apart():
    # per gt: (.25, inconsistent) and (1, consistent) → top IoU (.25+1)/2 = .625,
    # inconsistent 1/2, best IoU 1. Had the two gts been merged, the .9 box would be the
    # top of both and the top IoU .25.
    name, outs = _two_images()
    res = evaluate(name, outs)
    assert res["num_gts"] == 2 and res["num_gts_matched"] == 2 and res["num_gts_multi"] == 1
    assert res["top_iou"] == pytest.approx(0.625) and res["inconsistent_frac"] == 0.5 and res["best_iou"] == 1.0


def _gather_worker(rank, world, init_file, name, out_dir):
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        _, outs = _two_images()
        ev = ConsistencyEvaluator(name)
        ev.reset()
        ev.process([{"image_id": rank}], [outs[rank]])  # one image per process
        torch.save(ev.evaluate(), os.path.join(out_dir, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


def test_two_processes_gather_to_the_single_process_result(tmp_path):
    name, outs = _two_images()
    single = evaluate(name, outs)
    # fork: the children inherit the registered dataset and imported modules
    mp.start_processes(_gather_worker, args=(2, str(tmp_path / "init"), name, str(tmp_path)), nprocs=2, join=True, start_method="fork")
    assert torch.load(tmp_path / "rank1.pt") == {}
    assert torch.load(tmp_path / "rank0.pt")["consistency"] == single


def test_bad_inputs_are_named():
    name = register(ONE_GT)
    ev = ConsistencyEvaluator(name)
    with pytest.raises(KeyError, match="image_id 7 is not in dataset"):
        ev.process([{"image_id": 7}], [detections([FULL], [0.5])])
    with pytest.raises(ValueError, match="image_id 0: the model output non-finite"):
        ev.process([{"image_id": 0}], [detections([FULL], [float("nan")])])
    with pytest.raises(ValueError, match="one dataset"):
        ConsistencyEvaluator([name, name])
    unlabeled = f"consistency_test_{next(_names)}"
    DatasetCatalog.register(unlabeled, lambda: [{"image_id": 0, "file_name": "0.png", "height": 8, "width": 8}])
    with pytest.raises(ValueError, match="has no annotations"):
        ConsistencyEvaluator(unlabeled)
