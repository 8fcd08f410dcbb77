"""Start-up checks of model, head, device and checkpoint values: each refusal names the key,
the value and what is allowed (``dsla_d2.engine.config_checks``), on the repository's lazy
configs with command-line style overrides."""
import glob
import os
import pickle
import re
import zipfile

import numpy as np
import pytest
import torch

import dsla_d2  # noqa: F401  (Detectron2 compatibility shims before detectron2.data loads)
from detectron2.config import LazyConfig

from dsla_d2.engine import config_checks
from dsla_d2.engine.config_checks import ConfigValueError, check_checkpoint_file, validate_config

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG = os.path.join(ROOT, "configs", "fcos_r18_synth.py")


def config(*overrides, path=CONFIG):
    return LazyConfig.apply_overrides(LazyConfig.load(path), list(overrides))


def refused(*overrides, match=None):
    """The ConfigValueError message validate_config gives for ``overrides``."""
    with pytest.raises(ConfigValueError, match=match) as e:
        validate_config(config(*overrides))
    return str(e.value)


def config_files():
    """Every runnable config (building blocks under ``common/`` are not configs of their own)."""
    files = []
    for pattern in ("configs/*.py", "projects/*/configs/**/*.py"):
        for path in glob.glob(os.path.join(ROOT, pattern), recursive=True):
            rel = os.path.relpath(path, ROOT)
            if "common" not in rel.split(os.sep)[:-1]:
                files.append(rel)
    return sorted(files)


# --------------------------------------------------------------------------- no false alarms
TOP_CONFIGS = sorted(os.path.relpath(p, ROOT) for p in glob.glob(os.path.join(ROOT, "configs", "*.py")))


@pytest.mark.parametrize("path", TOP_CONFIGS)
def test_every_config_passes_unchanged(path):
    validate_config(LazyConfig.load(os.path.join(ROOT, path)))


def test_every_project_config_passes_unchanged():
    projects = [p for p in config_files() if p.startswith("projects")]
    assert projects
    for path in projects:
        validate_config(LazyConfig.load(os.path.join(ROOT, path)))


# --------------------------------------------------------------------------- model values
@pytest.mark.parametrize("override, expected", [
    ("model.test_score_thresh=5", "a finite number in [0, 1]"),
    ("model.test_score_thresh=-0.1", "a finite number in [0, 1]"),
    ("model.test_score_thresh=nan", "a finite number in [0, 1]"),
    ("model.test_score_thresh=abc", "a finite number in [0, 1]"),
    ("model.test_nms_thresh=0", "a finite number in (0, 1]"),
    ("model.test_nms_thresh=1.5", "a finite number in (0, 1]"),
    ("model.test_topk_candidates=0", "an integer >= 1"),
    ("model.test_topk_candidates=abc", "an integer >= 1"),
    ("model.test_topk_candidates=1e3", "an integer >= 1"),
    ("model.max_detections_per_image=0", "an integer >= 1"),
    ("model.max_detections_per_image=10.5", "an integer >= 1"),
    ("model.test_topk_mode=all", "one of 'pairs', 'locations'"),
])
def test_model_values_name_the_key(override, expected):
    key = override.split("=")[0]
    message = refused(override, match=re.escape(expected))
    assert message.startswith(f"{key}=")
    assert "is invalid" in message


def test_model_values_at_the_limits_pass():
    validate_config(config("model.test_score_thresh=0", "model.test_nms_thresh=1", "model.test_topk_candidates=1",
                           "model.max_detections_per_image=1", "model.test_topk_mode=locations"))
    validate_config(config("model.test_score_thresh=1.0", "model.test_nms_thresh=0.01"))


# --------------------------------------------------------------------------- head values
@pytest.mark.parametrize("override, expected", [
    ("model.head.num_convs=abc", "an integer >= 0"),
    ("model.head.num_convs=-1", "an integer >= 0"),
    ("model.head.num_convs=2.5", "an integer >= 0"),
    ("model.head.channels=0", "an integer >= 1"),
    ("model.head.channels=abc", "an integer >= 1"),
    ("model.head.in_channels=0", "an integer >= 1"),
    ("model.head.num_levels=0", "an integer >= 1"),
    ("model.head.num_classes=0", "an integer >= 1"),
    ("model.head.prior_prob=0", "a finite number in (0, 1)"),
    ("model.head.prior_prob=1", "a finite number in (0, 1)"),
])
def test_head_values_name_the_key(override, expected):
    key = override.split("=")[0]
    message = refused(override, match=re.escape(expected))
    assert message.startswith(f"{key}=")


def test_head_values_that_disagree_name_both_keys():
    message = refused("model.head.channels=48", match="model.head.channels=48")
    assert "GN" in message and "32" in message
    # no tower convs: the output convs read the input channels
    refused("model.head.num_convs=0", "model.head.channels=128",
            match=r"model.head.num_convs=0.*model.head.in_channels=64")
    validate_config(config("model.head.num_convs=0"))  # in_channels == channels: fine
    validate_config(config("model.head.channels=48", "model.head.norm=''"))  # no GN: any width
    refused("model.head.num_levels=4", match=r"model.head.num_levels=4.*head_in_features")


# --------------------------------------------------------------------------- device
@pytest.mark.parametrize("device", ["tpu", "gpu", "CUDA", "cuda:x", "cuda:-1", "cuda:", "cpu:0", ""])
def test_device_lists_the_allowed_values(device):
    message = refused(f"train.device={device}" if device else "train.device=''")
    assert message.startswith(f"train.device={device!r} is invalid")
    assert "'cpu'" in message and "'cuda'" in message and "'cuda:N'" in message


@pytest.mark.parametrize("device", ["cpu", "cuda", "cuda:0", "cuda:3"])
def test_allowed_devices_pass(device):
    validate_config(config(f"train.device={device}"))


def test_mps_only_where_torch_has_it(monkeypatch):
    monkeypatch.setattr(config_checks, "_mps_available", lambda: False)
    message = refused("train.device=mps")
    assert "expected one of 'cpu', 'cuda', 'cuda:N' (" in message  # mps not among them
    assert "is_available()" in message
    monkeypatch.setattr(config_checks, "_mps_available", lambda: True)
    validate_config(config("train.device=mps"))


# --------------------------------------------------------------------------- checkpoints
@pytest.fixture
def checkpoints(tmp_path):
    """Real small checkpoints, whole and truncated to half their bytes."""
    paths = {}
    weights = {"conv.weight": torch.arange(600, dtype=torch.float32).reshape(6, 100), "conv.bias": torch.ones(6)}
    torch.save({"model": weights, "iteration": 3}, tmp_path / "model.pth")
    paths["pth"] = tmp_path / "model.pth"
    torch.save(weights, tmp_path / "legacy.pth", _use_new_zipfile_serialization=False)
    paths["legacy_pth"] = tmp_path / "legacy.pth"
    torch.save(weights, tmp_path / "weights.pyth")
    paths["pyth"] = tmp_path / "weights.pyth"
    with open(tmp_path / "R-50.pkl", "wb") as f:
        blobs = {"conv1_w": np.arange(300, dtype=np.float32).reshape(3, 100), "conv1_b": np.zeros(3, np.float32)}
        pickle.dump(blobs, f)
    paths["pkl"] = tmp_path / "R-50.pkl"
    for name in ("pth", "pkl", "pyth"):
        data = paths[name].read_bytes()
        half = tmp_path / f"truncated_{paths[name].name}"
        half.write_bytes(data[: len(data) // 2])
        paths[f"truncated_{name}"] = half
    assert not paths["truncated_pkl"].read_bytes().endswith(b".")  # the heuristic applies
    paths["garbage_pth"] = tmp_path / "garbage.pth"
    paths["garbage_pth"].write_bytes(bytes(range(256)) * 8)
    paths["garbage_pkl"] = tmp_path / "garbage.pkl"
    paths["garbage_pkl"].write_bytes(b"<html>404 Not Found</html>\n")
    paths["garbage_bin"] = tmp_path / "garbage.bin"
    paths["garbage_bin"].write_bytes(b"\x00" * 100)
    paths["empty_pkl"] = tmp_path / "empty.pkl"
    paths["empty_pkl"].write_bytes(b"")
    with zipfile.ZipFile(tmp_path / "other.pth", "w") as z:
        z.writestr("readme.txt", "not a checkpoint")
    paths["zip_pth"] = tmp_path / "other.pth"
    return {k: str(v) for k, v in paths.items()}


@pytest.mark.parametrize("name", ["pth", "legacy_pth", "pyth", "pkl"])
def test_readable_checkpoints_pass(checkpoints, name):
    check_checkpoint_file(checkpoints[name])
    validate_config(config(f"train.init_checkpoint={checkpoints[name]}"))


@pytest.mark.parametrize("name", ["truncated_pth", "truncated_pkl", "truncated_pyth", "garbage_pth",
                                  "garbage_pkl", "garbage_bin", "empty_pkl", "zip_pth"])
def test_unreadable_checkpoints_are_refused(checkpoints, name):
    path = checkpoints[name]
    message = refused(f"train.init_checkpoint={path}")
    assert message.startswith(f"train.init_checkpoint={path!r} is invalid")
    assert "not a readable checkpoint" in message
    assert "weights_only" not in message and "unsafe" not in message.lower()


def test_missing_checkpoint_is_refused(tmp_path):
    path = str(tmp_path / "absent" / "model_final.pth")
    message = refused(f"train.init_checkpoint={path}", match="not found")
    assert message.startswith(f"train.init_checkpoint={path!r} is invalid")
    message = refused(f"train.init_checkpoint={tmp_path}", match="directory")
    assert message.startswith("train.init_checkpoint=")


@pytest.mark.parametrize("value", ["''", "detectron2://ImageNetPretrained/MSRA/R-50.pkl",
                                   "https://example.com/absent/model_final.pth", "http://example.com/x.pkl"])
def test_urls_and_no_checkpoint_are_left_alone(value):
    validate_config(config(f"train.init_checkpoint={value}"))


def test_check_checkpoint_file_names_the_key_it_is_given(checkpoints):
    with pytest.raises(ConfigValueError, match=r"^serving.weights=.* is invalid: .*not a readable checkpoint"):
        check_checkpoint_file(checkpoints["truncated_pth"], key="serving.weights")
    with pytest.raises(ConfigValueError, match=r"^serving.weights=.* is invalid: .*not found"):
        check_checkpoint_file(checkpoints["pth"] + ".absent", key="serving.weights")


def test_check_checkpoint_file_takes_path_objects_and_refuses_non_paths(checkpoints, tmp_path):
    import pathlib

    check_checkpoint_file(pathlib.Path(checkpoints["pth"]))
    check_checkpoint_file("detectron2://ImageNetPretrained/MSRA/R-50.pkl")  # URLs: not checked
    with pytest.raises(ConfigValueError, match=r"^train.init_checkpoint=5 is invalid"):
        check_checkpoint_file(5)
    with pytest.raises(ConfigValueError, match=r"^train.init_checkpoint=5 is invalid"):
        validate_config(config("train.init_checkpoint=5"))


def test_train_net_refuses_a_truncated_checkpoint_before_building_anything(checkpoints, tmp_path):
    from test_train_net import run

    out = tmp_path / "run"
    with pytest.raises(ConfigValueError, match="not a readable checkpoint") as e:
        run(out, f"train.init_checkpoint={checkpoints['truncated_pth']}")
    assert str(e.value).startswith("train.init_checkpoint=")
    assert not os.path.exists(out / "config.yaml")


def test_head_agreement_leaves_wrong_types_to_the_rules():
    cfg = config("model.head.channels=abc", "model.head.num_convs=abc", "model.head.num_levels=abc")
    validate_config(cfg, rules=[])  # no rule asked for: nothing compared, no TypeError
    with pytest.raises(ConfigValueError, match=r"^model\.head\.\w+='abc' is invalid: expected an integer >= "):
        validate_config(cfg)


# --------------------------------------------------------------------------- initial weights
def test_coco_configs_start_from_imagenet_weights():
    # Detectron2's MSRA weights by default, of the config's own depth
    import glob

    for path in sorted(glob.glob(os.path.join(ROOT, "configs", "*_R_*.py")) + glob.glob(os.path.join(ROOT, "projects", "*", "configs", "*_R_*.py"))):
        cfg = LazyConfig.load(path)
        depth = cfg.model.backbone.bottom_up.stages.depth
        assert cfg.train.init_checkpoint == f"detectron2://ImageNetPretrained/MSRA/R-{depth}.pkl", path


def test_frozen_backbone_from_random_weights_is_refused():
    from dsla_d2.engine.config_checks import check_initial_weights, frozen_parts

    cfg = LazyConfig.apply_overrides(LazyConfig.load(os.path.join(ROOT, "configs", "fcos_R_50_FPN_1x.py")), ["train.init_checkpoint="])
    assert frozen_parts(cfg.model) == [
        "model.backbone.bottom_up.freeze_at=2",
        "model.backbone.bottom_up.stages.norm=FrozenBN",
        "model.backbone.bottom_up.stem.norm=FrozenBN",
    ]
    with pytest.raises(ConfigValueError, match=r"freeze_at=2.*would stay random.*train.allow_frozen_random_init=True"):
        check_initial_weights(cfg)
    check_initial_weights(cfg, resuming=True)  # a resumed run has trained weights
    cfg.train.allow_frozen_random_init = True
    check_initial_weights(cfg)
    # the embedded configs freeze nothing: from scratch is fine
    check_initial_weights(LazyConfig.load(os.path.join(ROOT, "configs", "fcos_r18_synth.py")))
