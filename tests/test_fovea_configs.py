"""The FoveaBox and DSLA-FoveaBox lazy configs: they load, hold the recipe's values, and the
embedded-dataset models train one step on a tiny batch."""
import math
import os

import pytest
import torch

import dsla_d2  # noqa: F401
from detectron2.config import LazyConfig, instantiate
from detectron2.modeling import build_model

from dsla_d2.assigners.dsla_fovea import DSLAFoveaAssigner
from dsla_d2.assigners.fovea import FoveaAssigner
from dsla_d2.serving import lazy_to_yacs

from tiny import make_inputs

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COCO_RANGES = [[1, 64], [32, 128], [64, 256], [128, 512], [256, 2048]]
SYNTH_RANGES = [[0.5, 32], [16, 64], [32, 128], [64, 256], [128, 1024]]  # COCO's / 2

CONFIGS = {
    # path: (depth, dsla, synth)
    "configs/foveabox_R_50_FPN_1x.py": (50, False, False),
    "configs/foveabox_R_101_FPN_1x.py": (101, False, False),
    "projects/DSLA/configs/foveabox_dsla_R_50_FPN_1x.py": (50, True, False),
    "projects/DSLA/configs/foveabox_dsla_R_101_FPN_1x.py": (101, True, False),
    "configs/foveabox_r18_synth.py": (None, False, True),
    "projects/DSLA/configs/foveabox_dsla_r18_synth.py": (None, True, True),
}


def load(path):
    return LazyConfig.load(os.path.join(ROOT, path))


@pytest.mark.parametrize("path", sorted(CONFIGS))
def test_config_values(path):
    depth, dsla, synth = CONFIGS[path]
    cfg = load(path)
    assert set(cfg) == {"dataloader", "lr_multiplier", "model", "optimizer", "train"}
    m = cfg.model
    assert m.prior_generator.strides == [8, 16, 32, 64, 128] and m.prior_generator.offset == 0.5
    assert m.head_in_features == ["p3", "p4", "p5", "p6", "p7"]
    assert m.quality.branch is None
    assert [list(map(float, r)) for r in m.assigner.scale_ranges] == (SYNTH_RANGES if synth else COCO_RANGES)
    assert list(map(float, m.box_coder.base_edges)) == ([8, 16, 32, 64, 128] if synth else [16, 32, 64, 128, 256])
    assert m.assigner.sigma == 0.4
    if dsla:
        assert m.assigner._target_ is DSLAFoveaAssigner
        a = m.assigner
        assert (a.kappa, a.core_zone, a.relaxation, a.fovea_region) == (0.2, True, True, False)
        assert m.quality.cls_target == "iou_product"
        assert (m.loss.cls_loss, m.loss.cls_normalizer, m.loss.box_normalizer) == ("qfl", "sum_scores", "sum_weights")
        assert (m.loss.box_loss, m.loss.cls_weight, m.loss.box_weight) == ("iou", 2.0, 1.0)
    else:
        assert m.assigner._target_ is FoveaAssigner
        assert m.quality.cls_target == "static"
        focal = (m.loss.cls_loss, m.loss.focal_gamma, m.loss.focal_alpha, m.loss.cls_normalizer)
        assert focal == ("focal", 1.5, 0.4, "num_pos_plus_images")
        assert (m.loss.box_loss, m.loss.smooth_l1_beta, m.loss.box_normalizer) == ("smooth_l1", 0.11, "num_pos")
    if synth:
        # same budget and schedule as the FCOS embedded-dataset config, so rows compare
        fcos = LazyConfig.load(os.path.join(os.path.dirname(__file__), "..", "configs", "fcos_r18_synth.py"))
        assert m.num_classes == 6 and cfg.train.max_iter == fcos.train.max_iter
        assert cfg.lr_multiplier == fcos.lr_multiplier and cfg.optimizer.lr == fcos.optimizer.lr
        assert cfg.dataloader.train.dataset.names == "dsla_synth_train"
    else:
        assert m.num_classes == 80 and cfg.train.max_iter == 87960 and cfg.optimizer.lr == 0.01
        assert cfg.dataloader.train.total_batch_size == 16
        assert m.backbone.bottom_up.stages.depth == depth
        assert m.backbone.top_block.in_feature == "res5"  # P6 from C5 (mmdetection "on_input")
        assert (m.head.channels, m.head.num_convs, m.head.norm) == (256, 4, "GN")
        assert m.test_nms_thresh == 0.5
        # mmdetection schedule_1x: 12 epochs of 7,330 iterations = 87,960, steps after
        # epochs 8 and 11 (58,640 / 80,630), linear warm-up 500 iterations from 0.001
        sched = cfg.lr_multiplier
        assert sched.scheduler.milestones == [58640, 80630] and sched.warmup_method == "linear"
        assert sched.warmup_factor == 0.001 and sched.warmup_length == 500 / 87960


def test_r50_model_builds_with_p6_from_c5():
    model = instantiate(load("configs/foveabox_R_50_FPN_1x.py").model)
    shapes = model.backbone.output_shape()
    assert [shapes[k].stride for k in model.head_in_features] == [8, 16, 32, 64, 128]
    assert model.backbone.top_block.p6.in_channels == 2048


@pytest.mark.parametrize("path", ["configs/foveabox_r18_synth.py", "projects/DSLA/configs/foveabox_dsla_r18_synth.py"])
def test_synth_model_one_step(path):
    cfg = load(path)
    torch.manual_seed(0)
    model = instantiate(cfg.model).train()
    batch = make_inputs([[[10, 12, 50, 60], [70, 20, 90, 34]], []], [[0, 5], []], size=96)
    losses = model(batch)
    assert set(losses) == {"loss_cls", "loss_box_reg"}
    assert all(math.isfinite(v.item()) for v in losses.values()) and losses["loss_box_reg"].item() > 0
    sum(losses.values()).backward()
    assert model.head.cls_logits.weight.grad.abs().sum() > 0
    # serving: the yacs config for DefaultPredictor rebuilds the same model class
    ycfg = lazy_to_yacs(cfg, device="cpu")
    rebuilt = build_model(ycfg)
    assert type(rebuilt) is type(model) and type(rebuilt.assigner) is type(model.assigner)
