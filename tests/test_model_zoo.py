"""Configs load by repository path (``dsla_d2.model_zoo``)."""
import os

import pytest

import dsla_d2  # noqa: F401
from detectron2.config import LazyConfig

from dsla_d2.model_zoo import REPO_ROOT, get_config, get_config_file


def test_paths_are_relative_to_the_repository_root(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # not the repository: the path must not depend on the cwd
    cfg = get_config("configs/fcos_r18_synth.py")
    direct = LazyConfig.load(os.path.join(REPO_ROOT, "configs", "fcos_r18_synth.py"))
    assert set(cfg) == set(direct) and cfg.model == direct.model and cfg.train == direct.train
    assert get_config_file(os.path.join(REPO_ROOT, "configs", "fcos_r18_synth.py")) == os.path.join(REPO_ROOT, "configs", "fcos_r18_synth.py")


def test_keys_come_back_in_the_order_asked():
    train, model = get_config("configs/atss_r18_synth.py", keys=("train", "model"))
    assert train.max_iter == 1200 and model.num_classes == 6
    assert get_config("configs/atss_r18_synth.py", keys="model").num_classes == 6


def test_every_call_loads_afresh():
    model = get_config("configs/fcos_r18_synth.py", keys="model")
    model.num_classes = 99
    assert get_config("configs/fcos_r18_synth.py", keys="model").num_classes == 6


def test_missing_file_and_key_are_named():
    with pytest.raises(FileNotFoundError, match=r"configs/no_such_config\.py.*repository root"):
        get_config("configs/no_such_config.py")
    with pytest.raises(KeyError, match=r"fcos_r18_synth\.py.*no 'modle'"):
        get_config("configs/fcos_r18_synth.py", keys=("modle", "train"))
