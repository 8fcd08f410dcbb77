"""Start-up checks: numeric config values, the output-directory policy, metrics repair,
and the parts of a detector agreeing with each other."""
import json
import os

import pytest
from omegaconf import OmegaConf

from dsla_d2.engine.config_checks import ConfigValueError, validate_config
from dsla_d2.engine.run_dir import (
    OutputDirInUseError,
    check_output_dir,
    eval_output_dir,
    move_run_aside,
    repair_metrics,
    run_files,
)
from dsla_d2.errors import UsageError
from test_train_net import run
from tiny import TwoLevelBackbone, tiny_fcos

VALID = {
    "train": {"max_iter": 10, "output_dir": "out", "checkpointer": {"period": 5, "max_to_keep": None},
              "eval_period": 0, "log_period": 20, "seed": -1, "clip_grad_norm": 0.0},
    "dataloader": {"train": {"total_batch_size": 4, "num_workers": 0}},
    "optimizer": {"lr": 0.01},
    "model": {"num_classes": 3},
}


def config(**overrides):
    cfg = OmegaConf.create(VALID)
    for key, value in overrides.items():
        OmegaConf.update(cfg, key.replace("__", "."), value)
    return cfg


def test_valid_config_passes():
    validate_config(config())
    validate_config(config(dataloader__train__total_batch_size=8), world_size=4)


@pytest.mark.parametrize("key, value, expected", [
    ("train.max_iter", "abc", "an integer >= 1"),
    ("train.max_iter", 0, "an integer >= 1"),
    ("train.max_iter", -5, "an integer >= 1"),
    ("train.max_iter", 10.5, "an integer >= 1"),
    ("train.max_iter", True, "an integer >= 1"),
    ("train.checkpointer.period", 0, "an integer >= 1"),
    ("train.checkpointer.max_to_keep", 0, "None or an integer >= 1"),
    ("train.eval_period", -1, "an integer >= 0"),
    ("train.log_period", 0, "an integer >= 1"),
    ("train.seed", "x", "an integer"),
    ("train.clip_grad_norm", float("nan"), "a finite number >= 0"),
    ("train.output_dir", "", "a non-empty string"),
    ("dataloader.train.total_batch_size", 0, "an integer >= 1"),
    ("dataloader.train.num_workers", -1, "an integer >= 0"),
    ("optimizer.lr", 0.0, "a finite number > 0"),
    ("optimizer.lr", float("inf"), "a finite number > 0"),
    ("model.num_classes", 0, "an integer >= 1"),
])
def test_bad_values_name_the_key(key, value, expected):
    with pytest.raises(ConfigValueError, match=expected) as e:
        validate_config(config(**{key.replace(".", "__"): value}))
    assert str(e.value).startswith(f"{key}={value!r} is invalid")


def test_missing_required_key_and_batch_not_divisible():
    cfg = config()
    del cfg.train["max_iter"]
    with pytest.raises(ConfigValueError, match="train.max_iter is missing"):
        validate_config(cfg)
    with pytest.raises(ConfigValueError, match="divisible by the number of processes"):
        validate_config(config(dataloader__train__total_batch_size=6), world_size=4)


@pytest.mark.parametrize("override, key", [
    ("train.max_iter=abc", "train.max_iter='abc'"),
    ("train.max_iter=0", "train.max_iter=0"),
    ("train.max_iter=-5", "train.max_iter=-5"),
    ("train.checkpointer.period=0", "train.checkpointer.period=0"),
])
def test_train_net_refuses_bad_values_before_building_anything(tmp_path, override, key):
    with pytest.raises(ConfigValueError, match="invalid") as e:
        run(tmp_path, override)
    assert key in str(e.value)
    assert not os.path.exists(tmp_path / "config.yaml")  # nothing set up, nothing written


# --------------------------------------------------------------------------- output dir
def test_output_dir_policy(tmp_path):
    check_output_dir(str(tmp_path / "new"), resume=False, restart=False)  # absent: fine
    (tmp_path / "config.yaml").write_text("x")
    (tmp_path / "log.txt").write_text("x")
    check_output_dir(str(tmp_path), resume=False, restart=False)  # no run yet: fine
    (tmp_path / "model_0000009.pth").write_bytes(b"x")
    (tmp_path / "metrics.json").write_text("{}\n")
    assert run_files(str(tmp_path)) == ["metrics.json", "model_0000009.pth"]
    with pytest.raises(OutputDirInUseError, match="--resume") as e:
        check_output_dir(str(tmp_path), resume=False, restart=False)
    assert "--restart" in str(e.value) and "model_0000009.pth" in str(e.value)
    check_output_dir(str(tmp_path), resume=True, restart=False)
    assert eval_output_dir(str(tmp_path)) == os.path.join(str(tmp_path), "eval")

    moved = move_run_aside(str(tmp_path))
    assert sorted(os.listdir(moved)) == ["config.yaml", "log.txt", "metrics.json", "model_0000009.pth"]
    assert run_files(str(tmp_path)) == [] and eval_output_dir(str(tmp_path)) == str(tmp_path)
    check_output_dir(str(tmp_path), resume=False, restart=False)


def test_repair_metrics_drops_later_and_incomplete_lines(tmp_path):
    path = tmp_path / "metrics.json"
    rows = [{"iteration": i, "total_loss": 1.0 / (i + 1)} for i in range(6)] + [{"iteration": 3, "bbox/AP": 1.0}]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows) + '{"iteration": 6, "tot')
    assert repair_metrics(str(path), 3) == (5, 3)  # 0..3 and the AP at 3 kept
    kept = [json.loads(line) for line in path.read_text().splitlines()]
    assert kept == rows[:4] + rows[6:]
    assert repair_metrics(str(path), 3) == (5, 0)  # idempotent
    assert repair_metrics(str(path), -1) == (0, 5) and path.read_text() == ""
    assert repair_metrics(str(tmp_path / "absent.json"), 3) == (0, 0)


def test_rerun_without_resume_is_refused_and_restart_keeps_the_old_run(tmp_path):
    run(tmp_path, "train.max_iter=1")
    final = (tmp_path / "model_final.pth").read_bytes()
    with pytest.raises(OutputDirInUseError, match="--resume"):
        run(tmp_path, "train.max_iter=1")
    assert (tmp_path / "model_final.pth").read_bytes() == final  # untouched
    with pytest.raises(UsageError, match="one of them"):
        run(tmp_path, "train.max_iter=1", flags=["--resume", "--restart"])
    run(tmp_path, "train.max_iter=1", "train.seed=1", flags=["--restart"])
    (old,) = os.listdir(tmp_path / "replaced_runs")
    assert (tmp_path / "replaced_runs" / old / "model_final.pth").read_bytes() == final
    assert [r["iteration"] for r in map(json.loads, open(tmp_path / "metrics.json")) if "total_loss" in r] == [0]


# --------------------------------------------------------------------------- parts agree
def test_head_classes_must_be_the_models():
    with pytest.raises(ValueError, match=r"head.num_classes=4 but the model's num_classes=3"):
        tiny_fcos(num_classes=3, head_kwargs={"num_classes": 4})


def fcos_with_strides(strides):
    from dsla_d2.assigners import FCOSAssigner
    from dsla_d2.box_coders import LTRBBoxCoder
    from dsla_d2.heads import FCOSHead
    from dsla_d2.losses import DenseDetectionLoss
    from dsla_d2.meta_arch import DslaFCOS
    from dsla_d2.priors import PriorGenerator
    from dsla_d2.quality import QualityCoupling

    return DslaFCOS(
        backbone=TwoLevelBackbone(),  # p3 (stride 8), p4 (stride 16)
        head=FCOSHead(in_channels=16, num_classes=3, num_levels=2, channels=16, num_convs=1, norm=""),
        head_in_features=["p3", "p4"],
        prior_generator=PriorGenerator(strides),
        box_coder=LTRBBoxCoder(),
        assigner=FCOSAssigner(size_ranges=[[0, 32], [32, 1e8]]),
        quality=QualityCoupling(branch="centerness"),
        loss=DenseDetectionLoss(cls_loss="focal", box_loss="giou"),
        num_classes=3,
    )


def test_prior_strides_must_be_the_backbones():
    fcos_with_strides([8, 16])  # agree: builds
    with pytest.raises(ValueError, match=r"prior_generator.strides=\[8, 32\] but the backbone's \['p3', 'p4'\] have strides \[8, 16\]"):
        fcos_with_strides([8, 32])
    with pytest.raises(ValueError, match=r"strides=\[8\]"):
        fcos_with_strides([8])
