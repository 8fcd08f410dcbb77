"""Configs load by repository path (``dsla_d2.model_zoo``), projects never reach into
``configs/`` by relative imports, and the config helpers reject models they do not know."""
import ast
import glob
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


def _relative_import_targets(path):
    """Folders that the relative imports of the file at ``path`` resolve into."""
    tree = ast.parse(open(path).read(), path)
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level > 0:
            folder = os.path.dirname(path)
            for _ in range(node.level - 1):
                folder = os.path.dirname(folder)
            yield os.path.normpath(folder)


def test_relative_imports_stay_inside_their_config_tree():
    # projects/<paper>/configs/... may import relatively only inside projects/<paper>/configs;
    # anything from configs/ comes through model_zoo.get_config (Detectron2's pattern).
    for path in glob.glob(os.path.join(REPO_ROOT, "projects", "*", "configs", "**", "*.py"), recursive=True):
        tree_root = os.path.join(REPO_ROOT, "projects", os.path.relpath(path, os.path.join(REPO_ROOT, "projects")).split(os.sep)[0], "configs")
        for folder in _relative_import_targets(path):
            assert folder.startswith(tree_root), f"{os.path.relpath(path, REPO_ROOT)} imports from {folder} by a relative import"
    for path in glob.glob(os.path.join(REPO_ROOT, "configs", "**", "*.py"), recursive=True):
        for folder in _relative_import_targets(path):
            assert folder.startswith(os.path.join(REPO_ROOT, "configs")), path


def test_helpers_name_the_model_they_cannot_edit():
    to_dsla = get_config("projects/DSLA/configs/common/dsla.py", keys="to_dsla")
    to_embedded_small = get_config("configs/common/models/embedded.py", keys="to_embedded_small")
    atss = get_config("configs/atss_R_50_FPN_1x.py", keys="model")
    with pytest.raises(ValueError, match="DslaATSS"):
        to_dsla(atss)
    atss._target_ = LazyConfig  # any callable that is not one of our three detectors
    with pytest.raises(ValueError, match="LazyConfig"):
        to_embedded_small(atss)
