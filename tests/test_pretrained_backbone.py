"""The embedded backbone's pre-training (issue 19): the classification set, the script, the
shipped weights, and their loading into every embedded detector through Detectron2's
checkpointer in the pre-trained regime (stem + res2 frozen, FrozenBN)."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

import dsla_d2  # noqa: F401
from detectron2.checkpoint import DetectionCheckpointer
from detectron2.config import instantiate
from detectron2.layers import FrozenBatchNorm2d
from detectron2.utils.file_io import PathManager

from dsla_d2.data.synthetic import SYNTH_CLASSES
from dsla_d2.data.synthetic_classification import SHAPE_CLASSES, make_shape_set, render_shape_image
from dsla_d2.engine.checkpoint import file_sha256
from dsla_d2.engine.config_checks import check_initial_weights
from dsla_d2.model_zoo import get_config
from dsla_d2.pretrained import EMBEDDED_BACKBONE, EMBEDDED_BACKBONE_FILE, PRETRAINED_DIR

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WEIGHTS = os.path.join(PRETRAINED_DIR, EMBEDDED_BACKBONE_FILE)
RECORD = os.path.splitext(WEIGHTS)[0] + ".json"
EMBEDDED = [
    "configs/fcos_r18_synth.py",
    "configs/atss_r18_synth.py",
    "configs/foveabox_r18_synth.py",
    "projects/DW/configs/fcos_dw_r18_synth.py",
    "projects/DSLA/configs/fcos_dsla_r18_synth.py",
]


EMBEDDED_HELPERS = "configs/common/models/embedded.py"


def _pretrained_cfg(path):
    cfg = get_config(path)
    get_config(EMBEDDED_HELPERS, keys="use_pretrained_backbone")(cfg.model, cfg.train)
    return cfg


# ----------------------------------------------------------------------------- the set
def test_the_set_is_a_pure_function_of_seed_and_index():
    a, la = render_shape_image(100, 7)
    b, lb = render_shape_image(100, 7)
    c, _ = render_shape_image(101, 7)
    assert a.dtype == np.uint8 and a.shape == (64, 64, 3)
    assert la == lb and np.array_equal(a, b)
    assert not np.array_equal(a, c)


def test_no_class_is_a_detection_class_and_labels_cover_all_classes():
    assert len(SHAPE_CLASSES) == 10 and not set(SHAPE_CLASSES) & set(SYNTH_CLASSES)
    _, labels = make_shape_set(100, 600)
    counts = np.bincount(labels, minlength=10)
    # uniform labels: 60 expected per class; a class below 30 would have probability ~1e-5
    assert counts.min() >= 30, counts


def test_the_object_is_visible():
    """The shape differs from the background: the centre 32 × 32 (where every shape lies,
    centred within ±15 % of 64 px with at least 40 % of the side) is not uniform."""
    images, _ = make_shape_set(5, 50)
    centre = images[:, 16:48, 16:48].astype(np.float32)
    assert (centre.reshape(50, -1, 3).std(1).max(1) > 10).all()


# ----------------------------------------------------------------------------- weights
def test_shipped_weights_match_their_checksum_and_record():
    with open(WEIGHTS + ".sha256") as f:
        digest = f.read().split()[0]
    assert digest == file_sha256(WEIGHTS)
    with open(RECORD) as f:
        record = json.load(f)
    assert record["sha256"] == digest and record["weights"] == EMBEDDED_BACKBONE_FILE
    assert record["val_top1"] > 5 * record["chance_top1"]  # far above chance (0.1)
    assert os.path.getsize(WEIGHTS) < 8 * 2**20  # a few MB


def test_handler_names_only_the_packages_pretrained_folder():
    assert PathManager.get_local_path(EMBEDDED_BACKBONE) == WEIGHTS
    assert not PathManager.isfile("dsla_d2://pretrained/../__init__.py")
    with pytest.raises(FileNotFoundError, match="pretrained/ folder"):
        PathManager.get_local_path("dsla_d2://other/x.pth")
    with pytest.raises(FileNotFoundError, match="no such file"):
        PathManager.get_local_path("dsla_d2://pretrained/missing.pth")


@pytest.mark.parametrize("path", EMBEDDED)
def test_every_embedded_detector_loads_the_whole_backbone(path):
    cfg = _pretrained_cfg(path)
    check_initial_weights(cfg)  # frozen layers, but initial weights: accepted
    model = instantiate(cfg.model)
    incompatible = DetectionCheckpointer(model).resume_or_load(cfg.train.init_checkpoint, resume=False)
    state = torch.load(WEIGHTS, weights_only=True)["model"]
    own = model.state_dict()
    for key, value in state.items():
        assert torch.equal(own[key], value), key
    bottom_up = {k for k in own if k.startswith("backbone.bottom_up.")}
    assert bottom_up == set(state)  # every backbone tensor comes from the file, nothing else
    assert incompatible is not None
    bn = [m for m in model.backbone.bottom_up.modules() if isinstance(m, FrozenBatchNorm2d)]
    assert len(bn) == sum(1 for k in state if k.endswith("running_var"))
    stem_and_res2 = [p for n, p in model.backbone.bottom_up.named_parameters() if n.startswith(("stem.", "res2."))]
    assert stem_and_res2 and not any(p.requires_grad for p in stem_and_res2)
    assert all(p.requires_grad for n, p in model.backbone.bottom_up.named_parameters() if n.startswith("res3."))


def test_the_regime_overrides_equal_the_helper():
    from detectron2.config import LazyConfig
    from omegaconf import OmegaConf

    PRETRAINED_OVERRIDES = get_config(EMBEDDED_HELPERS, keys="PRETRAINED_OVERRIDES")
    by_helper = _pretrained_cfg("configs/fcos_r18_synth.py")
    by_overrides = LazyConfig.apply_overrides(get_config("configs/fcos_r18_synth.py"), PRETRAINED_OVERRIDES)
    assert OmegaConf.to_yaml(by_helper) == OmegaConf.to_yaml(by_overrides)
    assert by_helper.train.init_checkpoint == EMBEDDED_BACKBONE


def test_the_script_writes_loadable_weights_and_a_record(tmp_path):
    out = tmp_path / "w.pth"
    subprocess.run(
        [sys.executable, os.path.join(ROOT, "tools", "pretrain_backbone.py"), "--train-images", "64",
         "--val-images", "32", "--iters", "2", "--batch", "16", "--warmup", "1", "--log-period", "1",
         "--output", str(out)],
        check=True, capture_output=True, text=True, env=dict(os.environ, OMP_NUM_THREADS="1"),
    )
    record = json.loads((tmp_path / "w.json").read_text())
    assert record["recipe"]["iters"] == 2 and record["seed"] == 0 and len(record["curve"]) == 2
    assert record["sha256"] == file_sha256(str(out))
    state = torch.load(out, weights_only=True)["model"]
    shipped = torch.load(WEIGHTS, weights_only=True)["model"]
    assert {k: v.shape for k, v in state.items()} == {k: v.shape for k, v in shipped.items()}
