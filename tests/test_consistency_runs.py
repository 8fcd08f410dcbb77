"""Consistency evaluation in real runs: pre-NMS candidates of a model, and train_net.py with
``train.consistency_eval`` (EvalHook → metrics.json, and --eval-only)."""
import json
import os
import sys

import pytest
import torch
from torch import nn

from tiny import make_inputs, tiny_fcos

from dsla_d2.evaluation import pre_nms_candidates

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
import train_net  # noqa: E402


def test_pre_nms_candidates_are_what_nms_sees():
    # score threshold 0 and top 5 per level: each of the 2 levels of a 64-px image has
    # more than 5 (location, class) pairs (p3: 8·8·3 = 192, p4: 4·4·3 = 48), so exactly
    # 5 + 5 = 10 candidates per image, whatever the weights.
    model = tiny_fcos(test_score_thresh=0.0, test_topk_candidates=5, test_nms_thresh=0.1, max_detections_per_image=3).eval()
    inputs = make_inputs([[[4, 4, 30, 30]], [[10, 10, 50, 40]]])
    with torch.no_grad():
        with pre_nms_candidates(model):
            assert model.pre_nms_output
            candidates = [o["instances"] for o in model(inputs)]
        detections = [o["instances"] for o in model(inputs)]
    assert not model.pre_nms_output  # switched back
    for cand, det in zip(candidates, detections):
        assert len(cand) == 10 and 0 < len(det) <= 3
        assert torch.all(cand.scores[:-1] >= cand.scores[1:])  # sorted by score
        # every detection is one of the candidates (NMS only removes)
        same = (det.pred_boxes.tensor[:, None] == cand.pred_boxes.tensor[None]).all(-1)
        same &= det.pred_classes[:, None] == cand.pred_classes[None]
        assert same.any(1).all()


def test_pre_nms_switch_is_restored_on_error_and_refused_by_other_models():
    model = tiny_fcos()
    with pytest.raises(RuntimeError, match="inside"):
        with pre_nms_candidates(model):
            raise RuntimeError("inside")
    assert not model.pre_nms_output
    with pytest.raises(TypeError, match="Linear cannot output pre-NMS candidates"):
        with pre_nms_candidates(nn.Linear(2, 2)):
            pass


def test_train_net_reports_consistency_in_metrics_json_and_eval_only(tmp_path):
    from test_train_net import TINY, metrics

    config = os.path.join(ROOT, "configs", "fcos_r18_synth.py")
    flags = [f"train.output_dir={tmp_path}", *TINY, "train.consistency_eval.enabled=True", "train.consistency_eval.pre_nms=True"]
    train_net.main(train_net.get_parser().parse_args(["--config-file", config, *flags, "train.max_iter=2"]))
    final = [r for r in metrics(tmp_path) if "bbox/AP" in r]
    assert len(final) == 1
    row = final[0]
    # 16 images of the tiny split; the candidates include every detection NMS kept
    assert row["consistency/num_images"] == 16 and row["consistency_pre_nms/num_images"] == 16
    assert row["consistency_pre_nms/num_detections"] >= row["consistency/num_detections"] > 0
    assert row["consistency/num_gts"] == row["consistency_pre_nms/num_gts"] > 0
    for prefix in ("consistency", "consistency_pre_nms"):
        saved = json.loads((tmp_path / "inference" / f"{prefix}.json").read_text())
        assert saved["num_detections"] == row[f"{prefix}/num_detections"] and saved["dataset"] == "dsla_synth_tiny"
        assert os.path.getsize(tmp_path / "inference" / f"{prefix}.png") > 0

    # --eval-only returns the same numbers
    res = train_net.main(train_net.get_parser().parse_args(
        ["--config-file", config, "--eval-only", *flags, f"train.output_dir={tmp_path / 'eval'}",
         f"train.init_checkpoint={tmp_path / 'model_final.pth'}"]))
    for prefix in ("consistency", "consistency_pre_nms"):
        for key, value in res[prefix].items():
            assert row[f"{prefix}/{key}"] == pytest.approx(value, abs=1e-6), (prefix, key)
