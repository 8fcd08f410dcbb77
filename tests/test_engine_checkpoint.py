"""Checkpoints: atomic writes, resume fallback, and refusing another model's weights at
--eval-only and serving."""
import json
import os

import pytest
import torch
from torch import nn

import dsla_d2
from detectron2.config import LazyConfig, instantiate
from detectron2.data import DatasetCatalog, MetadataCatalog

from dsla_d2.engine.checkpoint import (
    DESCRIPTION_KEY,
    CheckpointReadError,
    ModelMismatchError,
    RunCheckpointer,
    describe_mismatch,
    model_description,
)
from dsla_d2.engine.data_checks import DatasetMismatchError
from dsla_d2.errors import UsageError
from test_train_net import CONFIG, ROOT, TINY, run

ATSS = os.path.join(ROOT, "configs", "atss_r18_synth.py")
TINY_CLASSES = ["rectangle", "ellipse", "triangle", "cross", "ring", "star"]


def untrained_checkpoint(config, path, *opts, describe=True, drop=()):
    """Save a freshly built (untrained) model of ``config`` as a checkpoint at ``path``."""
    cfg = LazyConfig.apply_overrides(LazyConfig.load(config), [*TINY, *opts])
    model = instantiate(cfg.model)
    description = model_description(cfg.model, TINY_CLASSES) if describe else None
    RunCheckpointer(model, str(path.parent), description=description).save(path.stem)
    if drop:
        data = torch.load(path)
        data["model"] = {k: v for k, v in data["model"].items() if not any(k.startswith(d) for d in drop)}
        torch.save(data, path)
        os.remove(f"{path}.sha256")  # a file edited by hand: no checksum of ours
    return path


# --------------------------------------------------------------------------- writing
def test_writes_are_atomic(tmp_path, monkeypatch):
    model = nn.Linear(2, 2)
    ck = RunCheckpointer(model, str(tmp_path))
    ck.save("model_0000001")
    good = (tmp_path / "model_0000001.pth").read_bytes()

    def dies_halfway(obj, f):
        f.write(b"PK\x03\x04 half a checkpoint")
        raise KeyboardInterrupt  # the process is interrupted in the middle of the write

    monkeypatch.setattr(torch, "save", dies_halfway)
    with torch.no_grad():
        model.weight += 1
    with pytest.raises(KeyboardInterrupt):
        ck.save("model_0000001")
    with pytest.raises(KeyboardInterrupt):
        ck.save("model_0000002")
    assert (tmp_path / "model_0000001.pth").read_bytes() == good  # old file intact
    assert (tmp_path / "last_checkpoint").read_text() == "model_0000001.pth"
    assert sorted(os.listdir(tmp_path)) == ["last_checkpoint", "model_0000001.pth", "model_0000001.pth.sha256"]  # no debris


def test_resume_falls_back_and_cleans_up(tmp_path, caplog):
    model = nn.Linear(2, 2)
    ck = RunCheckpointer(model, str(tmp_path), description={"meta_architecture": "x"})
    ck.save("model_0000001", iteration=1)
    (tmp_path / ".model_0000003.pth.abc.tmp").write_bytes(b"debris of a killed write")
    (tmp_path / "last_checkpoint").write_text("model_0000003.pth")  # names a missing file
    extra = RunCheckpointer(model, str(tmp_path)).resume_or_load("", resume=True)
    assert extra["iteration"] == 1 and "Cannot resume from" in caplog.text
    assert not any(n.endswith(".tmp") for n in os.listdir(tmp_path))
    (tmp_path / "model_0000001.pth").write_bytes(b"garbage")
    with pytest.raises(CheckpointReadError, match="none of the checkpoints"):
        RunCheckpointer(model, str(tmp_path)).resume_or_load("", resume=True)


def test_description_mismatch_names_both_sides():
    fcos = {"meta_architecture": "dsla_d2.meta_arch.detectors.DslaFCOS", "assigner": "dsla_d2.assigners.fcos.FCOSAssigner", "num_classes": 6}
    atss = {"meta_architecture": "dsla_d2.meta_arch.detectors.DslaATSS", "assigner": "dsla_d2.assigners.atss.ATSSAssigner", "num_classes": 6}
    assert describe_mismatch(fcos, dict(fcos, class_names=None)) is None
    msg = describe_mismatch(atss, fcos)
    assert "holds DslaATSS with ATSSAssigner, 6 classes" in msg and "builds DslaFCOS with FCOSAssigner" in msg
    assert "num_classes: checkpoint 6 vs config 2" in describe_mismatch(fcos, dict(fcos, num_classes=2))
    assert "class_names" in describe_mismatch(dict(fcos, class_names=["a", "b"]), dict(fcos, class_names=["b", "a"]))


def test_resume_refuses_another_model(tmp_path):
    untrained_checkpoint(ATSS, tmp_path / "model_0000004.pth")
    with pytest.raises(ModelMismatchError, match="holds DslaATSS with ATSSAssigner.*builds DslaFCOS with FCOSAssigner"):
        run(tmp_path, "train.max_iter=6", flags=["--resume"])


# --------------------------------------------------------------------------- --eval-only
def test_eval_only_needs_weights(tmp_path):
    with pytest.raises(UsageError, match="--eval-only needs the weights to evaluate: set train.init_checkpoint"):
        run(tmp_path, flags=["--eval-only"])


def test_eval_only_refuses_another_models_weights(tmp_path):
    atss = untrained_checkpoint(ATSS, tmp_path / "atss.pth")
    with pytest.raises(ModelMismatchError) as e:
        run(tmp_path / "eval", f"train.init_checkpoint={atss}", flags=["--eval-only"])
    assert str(atss) in str(e.value) and "DslaATSS" in str(e.value) and "DslaFCOS" in str(e.value)

    # no description (an old or foreign file): refused by its weights
    cut = untrained_checkpoint(CONFIG, tmp_path / "cut.pth", describe=False, drop=("head.cls_logits",))
    with pytest.raises(ModelMismatchError, match="head.cls_logits.weight: missing from the checkpoint"):
        run(tmp_path / "eval", f"train.init_checkpoint={cut}", flags=["--eval-only"])
    other = untrained_checkpoint(CONFIG, tmp_path / "3cls.pth", "model.num_classes=3", describe=False)
    with pytest.raises(ModelMismatchError, match=r"head.cls_logits.weight: checkpoint \(3, 32, 3, 3\) vs model \(6, 32, 3, 3\)"):
        run(tmp_path / "eval", f"train.init_checkpoint={other}", flags=["--eval-only"])


def test_eval_only_refuses_weights_of_other_classes(tmp_path):
    # same count (6), other names: the description's class names differ from the data's
    renamed = dict(zip(TINY_CLASSES, reversed(TINY_CLASSES)))
    cfg = LazyConfig.apply_overrides(LazyConfig.load(CONFIG), TINY)
    path = tmp_path / "m.pth"
    RunCheckpointer(instantiate(cfg.model), str(tmp_path), description=model_description(cfg.model, [renamed[c] for c in TINY_CLASSES])).save("m")
    with pytest.raises(ModelMismatchError, match="class_names: checkpoint"):
        run(tmp_path / "eval", f"train.init_checkpoint={path}", flags=["--eval-only"])


def test_eval_only_refuses_a_test_set_without_annotations(tmp_path):
    DatasetCatalog.get("dsla_synth_tiny")  # make sure the tiny split exists on disk
    meta = MetadataCatalog.get("dsla_synth_tiny")
    with open(meta.json_file) as f:
        data = json.load(f)
    data["annotations"] = []
    js = tmp_path / "empty.json"
    js.write_text(json.dumps(data))
    ckpt = untrained_checkpoint(CONFIG, tmp_path / "m.pth")
    flags = ["--eval-only", "--test-json", str(js), "--test-images", meta.image_root]
    with pytest.raises(DatasetMismatchError, match="has no .non-crowd. annotations, so AP cannot be computed"):
        run(tmp_path / "eval", f"train.init_checkpoint={ckpt}", flags=flags)


def test_eval_only_does_not_overwrite_a_runs_config(tmp_path):
    run(tmp_path, "train.max_iter=1")
    config = (tmp_path / "config.yaml").read_text()
    res = run(tmp_path, f"train.init_checkpoint={tmp_path / 'model_final.pth'}", "model.test_score_thresh=0.5", flags=["--eval-only"])
    assert "bbox" in res
    assert (tmp_path / "config.yaml").read_text() == config
    assert "test_score_thresh: 0.5" in (tmp_path / "eval" / "config.yaml").read_text()


# --------------------------------------------------------------------------- serving
def test_serving_refuses_another_models_weights(tmp_path):
    atss = untrained_checkpoint(ATSS, tmp_path / "atss.pth")
    cfg = LazyConfig.apply_overrides(LazyConfig.load(CONFIG), TINY)
    with pytest.raises(ModelMismatchError, match="holds DslaATSS"):
        dsla_d2.predictor_from_config(cfg, str(atss), device="cpu")
    with pytest.raises(ValueError, match="No weights"):
        dsla_d2.predictor_from_config(cfg, "", device="cpu")
    fcos = untrained_checkpoint(CONFIG, tmp_path / "fcos.pth")
    predictor = dsla_d2.predictor_from_config(cfg, str(fcos), device="cpu")
    assert predictor.cfg.MODEL.WEIGHTS == str(fcos)
    assert torch.load(fcos)[DESCRIPTION_KEY]["class_names"] == TINY_CLASSES
