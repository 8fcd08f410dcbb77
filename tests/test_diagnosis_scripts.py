"""benchmarks/assignment_stats.py and benchmarks/detection_breakdown.py (the FCOS
diagnosis of issue 11) on hand-made inputs whose answers are derived in the comments."""
import json
import os
import sys

import pytest
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "benchmarks"))
import assignment_stats  # noqa: E402
import detection_breakdown  # noqa: E402
from pycocotools.coco import COCO  # noqa: E402


def test_boxes_are_resized_as_the_test_mapper_does():
    # 256 × 384 (h × w): scale min(192/256, 288/384) = 0.75 -> 192 × 288, padded to
    # multiples of 128 -> 256 × 384. COCO box (x 10, y 20, w 30, h 40) -> XYXY
    # (10, 20, 40, 60) · 0.75 = (7.5, 15, 30, 45). The crowd box is dropped.
    record = {"height": 256, "width": 384, "annotations": [
        {"bbox": [10, 20, 30, 40], "iscrowd": 0}, {"bbox": [0, 0, 50, 50], "iscrowd": 1}]}
    [((ph, pw), boxes)] = assignment_stats.resized_gts([record])
    assert (ph, pw) == (256, 384)
    assert boxes.tolist() == [[7.5, 15.0, 30.0, 45.0]]


def test_fcos_positives_per_gt_and_level():
    # One 24 × 24 box at the origin of a 128 × 128 input, halved FCOS ranges. P3 points
    # (stride 8) sit at 4, 12, 20 (28 is outside): 3 × 3 = 9 points strictly inside; the
    # farthest side from any of them is 20 px ≤ 32 -> all 9 positive on P3. P4 points at 8,
    # 24: only (8, 8) is strictly inside, m = 16 is not in P4's [32, 64]. P5-P7 points
    # (16, 32, 64) are not strictly inside. sqrt(area) 24 -> the 16-32 bin. Regression
    # distance m = max(l, t, r, b) of the positives: per axis max(x, 24 − x) is 20 at x = 4
    # and 20, 12 at x = 12, so m = 12 only at (12, 12) and 20 at the other 8 points:
    # median 20 px = 20 / 8 = 2.5 strides.
    _, _, _, prior_gen, assigner, num_classes = assignment_stats.load_variant("fcos=configs/fcos_r18_synth.py")
    stats = assignment_stats.stats_for(prior_gen, assigner, num_classes, [((128, 128), torch.tensor([[0.0, 0.0, 24.0, 24.0]]))])
    assert stats["gts"] == 1 and stats["pos_per_gt"] == 9.0 and stats["no_positive"] == 0.0
    assert stats["level_share"] == [1.0, 0.0, 0.0, 0.0, 0.0]
    assert stats["median_max_ltrb_px"] == 20.0 and stats["median_max_ltrb_strides"] == 2.5
    [b] = [b for b in stats["bins"] if b["gts"]]
    assert b["sqrt_area"] == [16, 32]


@pytest.fixture
def gt(tmp_path):
    path = tmp_path / "gt.json"
    path.write_text(json.dumps({
        "images": [{"id": 1, "width": 100, "height": 100}],
        "categories": [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}],
        "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [0, 0, 10, 10], "area": 100, "iscrowd": 0}],
    }))
    return COCO(str(path))


def _run_with(tmp_path, dets):
    run = tmp_path / "run"
    (run / "inference").mkdir(parents=True)
    (run / "inference" / "coco_instances_results.json").write_text(json.dumps(dets))
    return str(run)


def test_breakdown_separates_localisation_from_classification(gt, tmp_path):
    # One gt (0, 0, 10, 10). A detection (0, 0, 10, 5) of the right class has IoU 50/100 =
    # 0.5: found at IoU 0.1, 0.3, 0.5 (COCO matches IoU ≥ threshold), missed at 0.75.
    right = detection_breakdown.breakdown(gt, _run_with(tmp_path / "r", [
        {"image_id": 1, "category_id": 1, "bbox": [0, 0, 10, 5], "score": 0.9}]))
    assert [right[f"AP@{t}"] for t in (0.1, 0.3, 0.5, 0.75)] == [100.0, 100.0, 100.0, 0.0]
    assert right["agnostic AP@0.5"] == 100.0 and right["detections"] == 1
    # The same box with the wrong class: AP 0 at every IoU (class b has no gt and is left
    # out, class a has no detection), class-agnostic AP as above.
    wrong = detection_breakdown.breakdown(gt, _run_with(tmp_path / "w", [
        {"image_id": 1, "category_id": 2, "bbox": [0, 0, 10, 5], "score": 0.9}]))
    assert [wrong[f"AP@{t}"] for t in (0.1, 0.5)] == [0.0, 0.0]
    assert [wrong[f"agnostic AP@{t}"] for t in (0.1, 0.5, 0.75)] == [100.0, 100.0, 0.0]


def test_breakdown_names_a_run_without_saved_detections(gt, tmp_path):
    with pytest.raises(SystemExit, match="coco_instances_results.json not found"):
        detection_breakdown.breakdown(gt, str(tmp_path))
