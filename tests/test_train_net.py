"""train_net.py end to end on the tiny synthetic split: train, resume, evaluate, serve.

Each run is a few iterations of the embedded-dataset config, shrunk on the command line.
"""
import json
import os
import signal
import subprocess
import sys

import numpy as np
import pytest
import torch

import dsla_d2
from detectron2.data import DatasetCatalog, MetadataCatalog

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
import train_net  # noqa: E402
from dsla_d2.errors import UsageError  # noqa: E402

CONFIG = os.path.join(ROOT, "configs", "fcos_r18_synth.py")
TINY = [
    "dataloader.train.dataset.names=dsla_synth_tiny",
    "dataloader.test.dataset.names=dsla_synth_tiny",
    "dataloader.train.total_batch_size=2",
    "dataloader.train.num_workers=0",
    "dataloader.test.num_workers=0",
    "model.head.num_convs=1",
    "model.head.channels=32",
    "train.log_period=1",
    "train.device=cpu",
    "model.test_score_thresh=0.001",  # a 3-iteration model scores about the 0.01 prior
]


def run(tmp_path, *opts, flags=()):
    args = train_net.get_parser().parse_args(["--config-file", CONFIG, *flags, f"train.output_dir={tmp_path}", *TINY, *opts])
    return train_net.main(args)


def metrics(path):
    with open(os.path.join(path, "metrics.json")) as f:
        return [json.loads(line) for line in f]


def test_train_evaluate_and_serve(tmp_path):
    run(tmp_path, "train.max_iter=3")
    rows = metrics(tmp_path)
    assert [r["iteration"] for r in rows if "total_loss" in r] == [0, 1, 2]
    final = [r for r in rows if "bbox/AP" in r]
    assert len(final) == 1 and 0 <= final[0]["bbox/AP"] <= 100
    assert os.path.isfile(tmp_path / "model_final.pth")
    assert any(f.startswith("events.out.tfevents") for f in os.listdir(tmp_path))

    # served by DefaultPredictor with one call; same outputs as the model itself
    predictor = dsla_d2.predictor_from_output_dir(str(tmp_path), device="cpu")
    from detectron2.engine import DefaultPredictor

    assert isinstance(predictor, DefaultPredictor)
    assert type(predictor.model).__name__ == "DslaFCOS"
    assert predictor.metadata.thing_classes == MetadataCatalog.get("dsla_synth_tiny").thing_classes
    image = np.random.RandomState(0).randint(0, 255, (100, 140, 3)).astype(np.uint8)
    out = predictor(image)["instances"]
    assert out.image_size == (100, 140) and out.has("scores") and out.has("pred_boxes")
    trained = torch.load(tmp_path / "model_final.pth")["model"]
    for k, v in predictor.model.state_dict().items():
        assert torch.equal(v.cpu(), trained[k].cpu()), k

    # --eval-only with the checkpoint reproduces the final AP
    res = run(tmp_path / "eval", f"train.init_checkpoint={tmp_path / 'model_final.pth'}", flags=["--eval-only"])
    assert res["bbox"]["AP"] == pytest.approx(final[0]["bbox/AP"], abs=1e-6)


TIME_KEYS = {"time", "data_time", "eta_seconds"}


def rows_without_time(path):
    return [{k: v for k, v in r.items() if k not in TIME_KEYS} for r in metrics(path)]


def test_killed_run_resumes_exactly(tmp_path):
    # The same 7-iteration run (checkpoints after iterations 1, 3, 5), uninterrupted and
    # killed + resumed, must give bit-identical metrics and weights.
    opts = ["train.max_iter=7", "train.checkpointer.period=2", "train.checkpointer.max_to_keep=100"]
    run(tmp_path / "a", *opts)
    killed = tmp_path / "b"
    # The run dies (SIGKILL, from inside, so the point of death does not depend on how
    # loaded the machine is) right after iteration 3, whose checkpoint is model_0000003.pth.
    cmd = [sys.executable, os.path.join(ROOT, "tests", "kill_at_iteration.py"), "3",
           "--config-file", CONFIG, f"train.output_dir={killed}", *TINY, *opts]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # as this process (conftest): same float sums
    proc = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=600, env=env)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()[-2000:]
    assert (killed / "last_checkpoint").read_text().strip() == "model_0000003.pth"
    assert torch.load(killed / "model_0000003.pth")["iteration"] == 3
    assert [r["iteration"] for r in metrics(killed)] == [0, 1, 2, 3]

    # Worse than a clean kill: the newest checkpoint is torn (a copy cut short) and the
    # last metrics line half-written. Resume falls back to model_0000001.pth.
    ckpt = killed / "model_0000003.pth"
    ckpt.write_bytes(ckpt.read_bytes()[: ckpt.stat().st_size // 2])
    with open(killed / "metrics.json", "a") as f:
        f.write('{"iteration": 4, "total_lo')
    with pytest.raises(FileExistsError, match="--resume"):  # no silent rerun over it
        run(killed, *opts)
    run(killed, *opts, flags=["--resume"])

    a, b = rows_without_time(tmp_path / "a"), rows_without_time(killed)
    assert [r["iteration"] for r in b if "total_loss" in r] == list(range(7))  # none twice
    assert b == a  # losses, lr, statistics and the final AP, bit for bit
    wa, wb = (torch.load(p / "model_final.pth")["model"] for p in (tmp_path / "a", killed))
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


def test_non_finite_loss_raises_floating_point_error(tmp_path):
    # pixel_std 0 turns every input into inf/nan → the loss is not finite at iteration 0
    with pytest.raises(FloatingPointError, match="Loss became infinite or NaN at iteration=0"):
        run(tmp_path, "train.max_iter=2", "model.pixel_std=[0.0,0.0,0.0]")


def tiny_json(tmp_path, name, edit=None):
    """The tiny split as a 2-class COCO json with its own category ids and names."""
    DatasetCatalog.get("dsla_synth_tiny")  # make sure the tiny split exists on disk
    meta = MetadataCatalog.get("dsla_synth_tiny")
    with open(meta.json_file) as f:
        data = json.load(f)
    data["categories"] = [{"id": 11, "name": "boxy"}, {"id": 42, "name": "roundish"}]
    for a in data["annotations"]:
        a["category_id"] = 11 if a["category_id"] % 2 else 42
    if edit:
        edit(data)
    js = tmp_path / name
    js.write_text(json.dumps(data))
    return js, meta.image_root


def json_flags(train, test, images):
    return ["--train-json", str(train), "--train-images", images, "--test-json", str(test), "--test-images", images]


def test_any_coco_json_from_the_command_line(tmp_path):
    def two_bad_boxes(data):
        data["annotations"][0]["bbox"][2] = -5.0
        data["annotations"][1]["bbox"] = None

    js, images = tiny_json(tmp_path, "mine.json", two_bad_boxes)
    out = tmp_path / "out"
    with pytest.raises(ValueError, match="2 annotation.s. with a bad box"):
        run(out, "train.max_iter=2", flags=json_flags(js, js, images))
    run(out, "train.max_iter=2", flags=[*json_flags(js, js, images), "--bad-boxes", "skip"])
    cfg_text = (out / "config.yaml").read_text()
    assert "num_classes: 2" in cfg_text and "coco_json_train" in cfg_text
    assert any("bbox/AP" in r for r in metrics(out))  # evaluated against the kept boxes
    predictor = dsla_d2.predictor_from_output_dir(str(out), device="cpu")
    assert predictor.metadata.thing_classes == ["boxy", "roundish"]

    # the json moves away; a fresh process serves with the class names stored in the run
    js.rename(tmp_path / "moved.json")
    for name in [n for n in DatasetCatalog.list() if n.startswith("coco_json_")]:
        DatasetCatalog.remove(name)
        MetadataCatalog.remove(name)
    predictor = dsla_d2.predictor_from_output_dir(str(out), device="cpu")
    assert predictor.metadata.thing_classes == ["boxy", "roundish"]

    with pytest.raises(FileNotFoundError, match="missing.json"):
        run(tmp_path / "bad", flags=["--train-json", str(tmp_path / "missing.json"), "--train-images", images])
    with pytest.raises(UsageError, match="given together"):
        run(tmp_path / "bad", flags=["--train-json", str(js)])


def test_data_problems_are_reported_before_the_model_is_built(tmp_path):
    train, images = tiny_json(tmp_path, "train.json")

    def swapped_names(data):  # same count, other names for the same ids
        data["categories"] = [{"id": 11, "name": "roundish"}, {"id": 42, "name": "boxy"}]

    test, _ = tiny_json(tmp_path, "test.json", swapped_names)
    with pytest.raises(ValueError, match="different classes .class 0 is 'roundish' vs 'boxy'.") as e:
        run(tmp_path / "a", flags=json_flags(train, test, images))
    assert str(train) in str(e.value) and str(test) in str(e.value)

    def other_ids(data):  # same names in the same order, other ids: fine (matched by name)
        data["categories"] = [{"id": 1, "name": "boxy"}, {"id": 2, "name": "roundish"}]
        for a in data["annotations"]:
            a["category_id"] = 1 if a["category_id"] == 11 else 2

    renumbered, _ = tiny_json(tmp_path, "renumbered.json", other_ids)
    run(tmp_path / "b", "train.max_iter=1", flags=json_flags(train, renumbered, images))

    def all_crowd(data):
        for a in data["annotations"]:
            a["iscrowd"] = 1

    crowd, _ = tiny_json(tmp_path, "crowd.json", all_crowd)
    with pytest.raises(ValueError, match="cannot be a training set: all .* annotations are crowd"):
        run(tmp_path / "c", flags=json_flags(crowd, test, images))
    with pytest.raises(ValueError, match="model.num_classes=3 but the dataset 'dsla_synth_tiny'.* has 6 classes"):
        run(tmp_path / "d", "model.num_classes=3")


def test_test_set_without_annotations_is_not_evaluated(tmp_path, caplog):
    train, images = tiny_json(tmp_path, "train.json")
    empty, _ = tiny_json(tmp_path, "empty.json", lambda data: data.update(annotations=[]))
    run(tmp_path / "out", "train.max_iter=1", flags=json_flags(train, empty, images))
    assert "Not evaluating: the test set" in caplog.text and "so AP cannot be computed" in caplog.text
    assert not any("bbox/AP" in r for r in metrics(tmp_path / "out"))
    assert os.path.isfile(tmp_path / "out" / "model_final.pth")  # the training itself is kept


def test_wrong_config_key_is_a_clear_error(tmp_path):
    with pytest.raises(KeyError, match="Unknown config key 'model.assigner.no_such_key'"):
        run(tmp_path, "model.assigner.no_such_key=3")
    with pytest.raises(KeyError, match="did you mean train.max_iter"):
        run(tmp_path, "train.max_iters=3")
    with pytest.raises(UsageError, match="key=value"):
        run(tmp_path, "train.max_iter")
