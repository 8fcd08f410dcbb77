"""Serving: the input contract of predictor(image), config.yaml round trips, and the
trust boundary on ``_target_``."""
import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

import dsla_d2
from detectron2.config import LazyConfig, get_cfg
from detectron2.modeling import build_model

from dsla_d2.utils.trust import UntrustedTargetError, check_targets
from dsla_d2.serving import DslaPredictor, add_dsla_d2_config, as_bgr_uint8, lazy_to_yacs
from test_engine_checkpoint import untrained_checkpoint
from test_train_net import CONFIG, TINY


@pytest.fixture(scope="module")
def predictor(tmp_path_factory):
    path = untrained_checkpoint(CONFIG, tmp_path_factory.mktemp("serve") / "model.pth", "model.test_score_thresh=0.0")
    cfg = LazyConfig.apply_overrides(LazyConfig.load(CONFIG), [*TINY, "model.test_score_thresh=0.0"])
    return dsla_d2.predictor_from_config(cfg, str(path), device="cpu")


def boxes(out):
    inst = out["instances"]
    return torch.cat([inst.pred_boxes.tensor, inst.scores[:, None]], 1)


BGR = np.random.RandomState(0).randint(0, 256, (60, 80, 3)).astype(np.uint8)


def test_contract_of_equivalent_inputs(predictor):
    ref = boxes(predictor(BGR))
    assert len(ref) > 0
    bgra = np.concatenate([BGR, np.full((60, 80, 1), 7, np.uint8)], axis=2)  # alpha dropped
    assert torch.equal(boxes(predictor(bgra)), ref)
    assert torch.equal(boxes(predictor(BGR.astype(np.uint16) * 257)), ref)  # 16-bit: x/257
    assert torch.equal(boxes(predictor(BGR.astype(np.float32))), ref)  # floats in [0, 255]
    assert torch.equal(boxes(predictor(BGR.astype(np.int64))), ref)
    assert torch.equal(boxes(predictor(BGR[:, ::-1][:, ::-1])), ref)  # any strides
    gray = BGR[:, :, 1]
    g = boxes(predictor(gray))  # grayscale: the same image in all 3 channels
    assert torch.equal(g, boxes(predictor(np.repeat(gray[:, :, None], 3, axis=2))))
    assert torch.equal(g, boxes(predictor(gray[:, :, None])))
    black = np.zeros((60, 80), np.float32)  # all-zero floats are not ambiguous
    assert predictor(black)["instances"].image_size == (60, 80)


@pytest.mark.parametrize("image, error, message", [
    (BGR.astype(np.float32) / 255.0, ValueError, r"lie in \[0, 1\].*Multiply by 255"),
    (np.zeros((0, 80, 3), np.uint8), ValueError, "empty image of shape"),
    (np.zeros((60, 0), np.uint8), ValueError, "empty image of shape"),
    (np.zeros((3, 60, 80), np.uint8), ValueError, "channels first"),
    (np.zeros((60, 80, 5), np.uint8), ValueError, "has 5 channels"),
    (np.zeros((2, 60, 80, 3), np.uint8), ValueError, "expected .H, W. or .H, W, C."),
    (np.full((60, 80, 3), np.nan, np.float32), ValueError, "NaN or infinite"),
    (np.full((60, 80, 3), 300.0), ValueError, r"span \[300, 300\]"),
    (np.full((60, 80, 3), 1000, np.int32), ValueError, "expected 0..255"),
    (np.zeros((60, 80, 3), bool), TypeError, "dtype bool"),
    (BGR.tolist(), TypeError, "takes a numpy array"),
])
def test_contract_rejects_what_it_cannot_read(predictor, image, error, message):
    with pytest.raises(error, match=message):
        predictor(image)


def test_as_bgr_uint8_values():
    assert as_bgr_uint8(np.array([[0, 65535, 32896]], np.uint16)).tolist() == [[[0] * 3, [255] * 3, [128] * 3]]
    assert as_bgr_uint8(np.array([[0.4, 254.6]], np.float64))[0, :, 0].tolist() == [0, 255]


def test_yacs_config_round_trips_through_yaml(tmp_path, predictor):
    ycfg = predictor.cfg
    path = tmp_path / "config.yaml"
    path.write_text(ycfg.dump())
    loaded = add_dsla_d2_config(get_cfg())
    loaded.merge_from_file(str(path))
    assert loaded == ycfg
    again = DslaPredictor(loaded)
    assert torch.equal(boxes(again(BGR)), boxes(predictor(BGR)))


# --------------------------------------------------------------------------- trust
def test_targets_outside_the_allowed_modules_are_refused(tmp_path):
    cfg = LazyConfig.apply_overrides(LazyConfig.load(CONFIG), TINY)
    cfg.model.assigner._target_ = "os.system"
    with pytest.raises(UntrustedTargetError, match="model.assigner._target_=os.system") as e:
        lazy_to_yacs(cfg)
    assert "allowed_targets" in str(e.value)
    cfg.model.assigner._target_ = "torch.os.system"  # under torch by name, os.system in fact
    with pytest.raises(UntrustedTargetError, match="torch.os.system"):
        lazy_to_yacs(cfg)

    # a config.yaml edited to run something else is refused when the model is built
    good = lazy_to_yacs(LazyConfig.apply_overrides(LazyConfig.load(CONFIG), TINY))
    node = OmegaConf.create(good.MODEL.DSLA_D2.LAZY_MODEL)
    node.loss._target_ = "subprocess.run"
    good.MODEL.DSLA_D2.LAZY_MODEL = OmegaConf.to_yaml(node)
    with pytest.raises(UntrustedTargetError, match="loss._target_=subprocess.run"):
        build_model(good)


def test_explicitly_allowed_modules(tmp_path):
    cfg = LazyConfig.apply_overrides(LazyConfig.load(CONFIG), TINY)
    node = OmegaConf.create({"_target_": "tiny.TwoLevelBackbone", "channels": 8})
    with pytest.raises(UntrustedTargetError, match="tiny.TwoLevelBackbone"):
        check_targets(node)
    check_targets(node, extra_allowed=["tiny"])
    cfg.model.backbone = node
    cfg.model.head.in_channels = 8
    cfg.model.head_in_features = ["p3", "p4"]
    cfg.model.head.num_levels = 2
    cfg.model.prior_generator.strides = [8, 16]
    cfg.model.assigner.size_ranges = [[0, 64], [64, 1e8]]
    ycfg = lazy_to_yacs(cfg, allowed_targets=["tiny"], device="cpu")
    assert type(build_model(ycfg).backbone).__name__ == "TwoLevelBackbone"
