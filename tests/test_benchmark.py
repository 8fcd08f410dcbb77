"""tools/benchmark.py: its stage-by-stage calls compute what the model's forward computes,
and the command runs end to end on a tiny config (no timing is asserted)."""
import json
import os
import sys

import pytest
import torch
from detectron2.utils.events import EventStorage

from tiny import make_inputs, tiny_fcos

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tools"))
import benchmark  # noqa: E402

BOXES = [[[4, 4, 28, 28], [2, 34, 62, 62]], [[10, 10, 50, 40]]]


def test_staged_calls_reproduce_the_models_forward():
    model = tiny_fcos(test_score_thresh=0.0)  # keep candidates: post-processing has work
    batch = make_inputs(BOXES, [[0, 2], [1]])
    t = benchmark.StageTimer("cpu")
    model.eval()
    with torch.no_grad():
        expected = model(batch)
    staged = benchmark.staged_inference(model, batch, t)
    for a, b in zip(expected, staged):
        assert len(a["instances"]) > 0
        assert torch.equal(a["instances"].pred_boxes.tensor, b["instances"].pred_boxes.tensor)
        assert torch.equal(a["instances"].scores, b["instances"].scores)
        assert torch.equal(a["instances"].pred_classes, b["instances"].pred_classes)
    model.train()
    with EventStorage(0):
        losses = model(batch)
        staged = benchmark.staged_training(model, batch, t)
    assert {k: v.item() for k, v in losses.items()} == {k: v.item() for k, v in staged.items()}
    assert set(t.times) == set(benchmark.TRAIN_STAGES) | set(benchmark.INFERENCE_STAGES)
    assert len(t.times["preprocess"]) == 2 and len(t.times["assignment"]) == 1  # one call per stage and pass


def test_command_runs_two_iterations_and_writes_json(tmp_path, capsys):
    out = tmp_path / "bench.json"
    args = benchmark.get_parser().parse_args([
        "--config-file", os.path.join(ROOT, "configs", "fcos_r18_synth.py"), "--dataset", "dsla_synth_tiny",
        "--devices", "cpu", "--batch-size", "2", "--warmup", "0", "--repeats", "2", "--output", str(out),
        "model.head.num_convs=1", "model.head.channels=32",
    ])
    benchmark.main(args)
    assert "train: assignment" in capsys.readouterr().out
    with open(out) as f:
        report = json.load(f)
    assert report["batch_size"] == 2 and report["untrained"] and report["train_dataset"] == "dsla_synth_tiny"
    cpu = report["devices"]["cpu"]
    assert set(cpu["train_split_s"]) == set(benchmark.TRAIN_STAGES)
    assert set(cpu["inference_split_s"]) == set(benchmark.INFERENCE_STAGES)
    for key in ("train_step_s", "train_iter_per_s", "inference_batch_s", "inference_images_per_s"):
        assert cpu[key] > 0
    assert cpu["train_amp"] is False


def test_device_is_an_alias_of_devices():
    """The common --device of the tools is obeyed here (an alias of --devices), never
    ignored; a key=value that --devices swallowed is refused by name, before any work."""
    parse = benchmark.get_parser().parse_args
    assert parse(["--config-file", "c.py", "--device", "cuda"]).devices == ["cuda"]
    assert parse(["--config-file", "c.py", "--devices", "cpu", "cuda:1"]).devices == ["cpu", "cuda:1"]
    assert not hasattr(parse(["--config-file", "c.py"]), "device")
    with pytest.raises(SystemExit, match="model.x=1 is not a device"):
        benchmark.main(parse(["--config-file", "c.py", "--devices", "cpu", "model.x=1"]))
