"""The COCO recipes row by row (issue 11 §1): each config resolves to the values of the code
and logs behind its published number. The sources are named in each config's docstring; the
DSLA recipe is checked in test_dsla_configs.py::test_r50_recipe."""
import pytest
import torch
from torch import nn

import dsla_d2  # noqa: F401
from detectron2.config import instantiate

from dsla_d2.backbones import LastLevelP6P7NoReLU
from dsla_d2.model_zoo import get_config

epoch_schedule = get_config("configs/common/schedules.py", keys="epoch_schedule")


def warmup_factors(cfg, iterations):
    """The lr multiplier at the given iterations (LRMultiplier evaluates the schedule at
    iteration / max_iter)."""
    sched = instantiate(cfg.lr_multiplier)
    return [sched(it / cfg.train.max_iter) for it in iterations]


def test_coco_epochs_in_iterations():
    # COCO train2017 images with annotations: 117,266; batch 16 → 117,266 / 16 = 7,329.125,
    # the partial last batch is a step → 7,330 per epoch. 12 epochs: 12 · 7,330 = 87,960;
    # epoch 8 ends at 8 · 7,330 = 58,640, epoch 11 at 11 · 7,330 = 80,630.
    max_iter, sched = epoch_schedule(12, [8, 11])
    assert max_iter == 87960
    assert list(sched.scheduler.milestones) == [58640, 80630] and sched.scheduler.num_updates == 87960
    assert sched.warmup_length == 500 / 87960
    assert epoch_schedule(2, [1], iters_per_epoch=10)[0] == 20
    with pytest.raises(ValueError, match=r"step epochs \[12\]"):
        epoch_schedule(12, [12])


def test_fcos_r50_recipe():
    # mmdetection fcos_r50_caffe_fpn_gn-head_1x_coco.py (36.6): grad clip 35, centerness on
    # the cls tower (centerness_on_reg False), conv_bias "auto" with GN → no tower bias,
    # nms 0.5, nms_pre 1000 locations, paramwise bias_lr_mult 2 / bias_decay_mult 0,
    # constant warm-up 1/3 over 500 iterations, 12 epochs with steps after 8 and 11.
    cfg = get_config("configs/fcos_R_50_FPN_1x.py")
    m = cfg.model
    assert cfg.train.clip_grad_norm == 35.0
    assert (m.test_nms_thresh, m.test_topk_mode, m.test_topk_candidates, m.test_score_thresh) == (0.5, "locations", 1000, 0.05)
    # box loss / max(all-reduced Σ centerness, 1e-6) (mmdetection FCOSHead.loss)
    assert (m.loss.box_normalizer, m.loss.box_normalizer_min) == ("sum_weights", 1e-6)
    p = cfg.optimizer.params
    assert p._target_.__name__ == "mmdet_param_groups" and (p.bias_lr_mult, p.bias_decay_mult) == (2.0, 0.0)
    assert (cfg.optimizer.lr, cfg.optimizer.weight_decay, cfg.optimizer.momentum) == (0.01, 1e-4, 0.9)
    assert cfg.train.max_iter == 87960 and list(cfg.lr_multiplier.scheduler.milestones) == [58640, 80630]
    # constant warm-up: 1/3 at iterations 0 and 499, 1 from 500 on
    assert warmup_factors(cfg, [0, 499, 500]) == pytest.approx([1 / 3, 1 / 3, 1.0])
    head = instantiate(m.head)
    convs = [c for c in list(head.cls_tower) + list(head.reg_tower) if isinstance(c, nn.Conv2d)]
    assert len(convs) == 8 and all(c.bias is None for c in convs)
    # the centerness output reads the classification tower: changing the regression tower
    # leaves it unchanged, changing the classification tower does not
    torch.manual_seed(0)
    head = instantiate(dict(m.head, in_channels=8, channels=32, num_classes=3)).eval()
    x = [torch.randn(1, 8, 4, 4) for _ in range(5)]
    before = head(x)["quality"][0].clone()
    with torch.no_grad():
        head.reg_tower[0].weight.mul_(3.0)
    assert torch.equal(head(x)["quality"][0], before)
    with torch.no_grad():
        head.cls_tower[0].weight.mul_(3.0)
    assert not torch.allclose(head(x)["quality"][0], before)


def test_fcosv2_r50_recipe():
    # mmdetection fcos_center-normbbox-centeronreg-giou_r50_caffe_fpn_gn-head_1x_coco.py
    # (38.7): the 36.6 config with center sampling, norm_on_bbox, centerness on reg, GIoU,
    # conv_bias True, nms 0.6, grad_clip None and lr_config warmup='linear' (ratio 1/3 and
    # 500 iterations from the base): factor 1/3 + (1 − 1/3)·t/500 → 1/3 at 0, 2/3 at 250.
    cfg = get_config("configs/fcosv2_R_50_FPN_1x.py")
    m = cfg.model
    assert cfg.train.clip_grad_norm == 0.0
    assert (m.test_nms_thresh, m.test_topk_mode) == (0.6, "locations")
    assert (m.head.quality_branch, m.head.conv_bias, m.head.box_activation) == ("reg", True, "relu")
    assert (m.assigner.center_sampling_radius, m.loss.box_loss, m.box_coder.normalize_by_stride) == (1.5, "giou", True)
    assert m.loss.box_normalizer_min == 1e-6
    s = cfg.lr_multiplier
    assert (s.warmup_method, s.warmup_factor, s.warmup_length * 87960) == ("linear", pytest.approx(1 / 3), pytest.approx(500))
    assert warmup_factors(cfg, [0, 250, 500]) == pytest.approx([1 / 3, 2 / 3, 1.0])
    assert (cfg.optimizer.params.bias_lr_mult, cfg.optimizer.params.bias_decay_mult) == (2.0, 0.0)


def test_foveabox_recipe():
    # mmdetection fovea_r50_fpn_4x4_1x_coco.py (36.5): FPN add_extra_convs 'on_input' without
    # relu_before_extra_convs → P6 = conv(C5), P7 = conv(P6); plain SGD (no paramwise_cfg);
    # schedule_1x (12 epochs, linear warm-up from 0.001); nms_pre 1000 locations, nms 0.5.
    for path in ("configs/foveabox_R_50_FPN_1x.py", "configs/foveabox_R_101_FPN_1x.py", "projects/DSLA/configs/foveabox_dsla_R_50_FPN_1x.py"):
        cfg = get_config(path)
        m = cfg.model
        assert m.backbone.top_block._target_ is LastLevelP6P7NoReLU and m.backbone.top_block.in_feature == "res5"
        assert (m.test_nms_thresh, m.test_topk_mode) == (0.5, "locations")
        p = cfg.optimizer.params
        assert p._target_.__name__ == "mmdet_param_groups" and (p.bias_lr_mult, p.bias_decay_mult) == (1.0, 1.0)
        assert set(p) == {"_target_", "base_lr", "weight_decay", "bias_lr_mult", "bias_decay_mult"}  # other multipliers 1
        assert cfg.train.clip_grad_norm == 0.0 and cfg.train.max_iter == 87960
        assert warmup_factors(cfg, [0, 250, 500]) == pytest.approx([0.001, 0.5005, 1.0])
    # the block itself: P7 is the conv of P6, not of ReLU(P6)
    torch.manual_seed(0)
    block = LastLevelP6P7NoReLU(6, 4, in_feature="res5")
    x = torch.randn(1, 6, 16, 16)
    p6, p7 = block(x)
    assert (p6 < 0).any()  # else ReLU would change nothing and the test would prove nothing
    assert torch.allclose(p7, block.p7(block.p6(x)))
    assert not torch.allclose(p7, block.p7(torch.relu(block.p6(x))))
    assert p6.shape == (1, 4, 8, 8) and p7.shape == (1, 4, 4, 4) and block.num_levels == 2


def test_atss_r50_recipe():
    # the ATSS authors' code (sfzhang15/ATSS): atss_core/solver/build.py gives every
    # parameter whose name holds "bias" lr × BIAS_LR_FACTOR (2) and WEIGHT_DECAY_BIAS (0),
    # every other one WEIGHT_DECAY (1e-4) — GN weights included; ATSSPostProcessor keeps
    # the top 1000 (location, class) pairs above 0.05 per level; 90k iterations.
    cfg = get_config("configs/atss_R_50_FPN_1x.py")
    assert cfg.model.test_topk_mode == "pairs" and cfg.train.max_iter == 90000
    toy = nn.Sequential(nn.Conv2d(3, 4, 3), nn.GroupNorm(2, 4))
    cfg.optimizer.params.model = toy
    opt = instantiate(cfg.optimizer)
    got = {id(p): (g["lr"], g["weight_decay"]) for g in opt.param_groups for p in g["params"]}
    expected = {"0.weight": (0.01, 1e-4), "0.bias": (0.02, 0.0), "1.weight": (0.01, 1e-4), "1.bias": (0.02, 0.0)}
    assert {n: got[id(p)] for n, p in toy.named_parameters()} == expected
    assert warmup_factors(cfg, [0, 250, 500]) == pytest.approx([1 / 3, 2 / 3, 1.0])
