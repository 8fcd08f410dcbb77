"""mmdetection's optimiser parameter groups (dsla_d2.solver.mmdet_param_groups): every rule
of mmcv's DefaultOptimizerConstructor on a model holding each kind of layer, and on the
FCOS R-50 recipe's model."""
import pytest
import torch
from torch import nn

import dsla_d2  # noqa: F401
from detectron2.config import instantiate

from dsla_d2.heads import DeformConv3x3
from dsla_d2.model_zoo import get_config
from dsla_d2.solver import mmdet_param_groups


class EveryKind(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.gn = nn.GroupNorm(2, 4)
        self.bn = nn.BatchNorm2d(4)
        self.dw = nn.Conv2d(4, 4, 3, groups=4)
        self.dcn = DeformConv3x3(4, 4, modulated=True, bias=True)
        self.fc = nn.Linear(4, 2)
        self.frozen = nn.Conv2d(4, 4, 1)
        self.frozen.requires_grad_(False)
        self.again = self.conv  # the same parameters reached twice


def settings(groups, model):
    """{parameter name: (lr, weight decay)}."""
    by_id = {id(p): (g["lr"], g["weight_decay"]) for g in groups for p in g["params"]}
    return {name: by_id[id(p)] for name, p in model.named_parameters() if id(p) in by_id}


def test_every_rule_of_the_constructor():
    model = EveryKind()
    groups = mmdet_param_groups(
        model, base_lr=0.01, weight_decay=1e-4, bias_lr_mult=2.0, bias_decay_mult=0.0, dwconv_decay_mult=0.5, dcn_offset_lr_mult=0.1
    )
    # Derived from the rules (lr: bias × 2 unless norm / offset layer, offset layer × 0.1;
    # decay: norm × 1 (norm_decay_mult default), then depthwise × 0.5, then bias × 0):
    expected = {
        "conv.weight": (0.01, 1e-4),
        "conv.bias": (0.02, 0.0),  # 0.01 × 2, 1e-4 × 0
        "gn.weight": (0.01, 1e-4),  # norm: no bias rule, decay × norm_decay_mult = 1
        "gn.bias": (0.01, 1e-4),
        "bn.weight": (0.01, 1e-4),
        "bn.bias": (0.01, 1e-4),
        "dw.weight": (0.01, 0.5e-4),  # groups 4 == in_channels 4: depthwise
        "dw.bias": (0.02, 0.5e-4),  # bias lr × 2 still, but the depthwise decay rule comes first
        "dcn.weight": (0.01, 1e-4),
        "dcn.bias": (0.02, 0.0),  # the deformable conv's own bias is an ordinary bias
        "dcn.offset_conv.weight": (0.001, 1e-4),  # offset layer: 0.01 × 0.1
        "dcn.offset_conv.bias": (0.001, 1e-4),  # offset layer: no bias lr/decay rule
        "fc.weight": (0.01, 1e-4),
        "fc.bias": (0.02, 0.0),
    }
    got = settings(groups, model)
    assert got.keys() == expected.keys()  # frozen left out, shared conv counted once
    for name, (lr, wd) in expected.items():
        assert got[name] == pytest.approx((lr, wd), rel=1e-12, abs=0), name
    assert sum(len(g["params"]) for g in groups) == len(expected)


def test_no_multipliers_is_plain_sgd():
    # mmdetection without paramwise_cfg (FoveaBox): every parameter base lr, base decay.
    model = EveryKind()
    got = settings(mmdet_param_groups(model, base_lr=0.01, weight_decay=1e-4), model)
    assert set(got.values()) == {(0.01, 1e-4)} and len(got) == 14


def test_bad_base_values_are_named():
    with pytest.raises(ValueError, match="weight_decay=-1"):
        mmdet_param_groups(EveryKind(), base_lr=0.01, weight_decay=-1)


def test_fcos_r50_recipe_groups():
    # configs/fcos_R_50_FPN_1x.py: bias lr × 2 without decay on conv biases only; GN
    # parameters lr × 1 with decay 1e-4; FrozenBN has no parameters.
    cfg = get_config("configs/fcos_R_50_FPN_1x.py")
    model = instantiate(cfg.model)
    cfg.optimizer.params.model = model
    optimizer = instantiate(cfg.optimizer)
    got = settings(optimizer.param_groups, model)
    gn = [n for n, m in model.named_modules() if isinstance(m, nn.GroupNorm)]
    assert len(gn) == 8  # 4 per tower
    for prefix in gn:
        assert got[prefix + ".weight"] == (0.01, 1e-4) and got[prefix + ".bias"] == (0.01, 1e-4)
    conv_biases = [n + ".bias" for n, m in model.named_modules() if isinstance(m, nn.Conv2d) and m.bias is not None]
    assert conv_biases and all(got[b] == (0.02, 0.0) for b in conv_biases if b in got)
    assert not any(".cls_tower." in b or ".reg_tower." in b for b in conv_biases)  # no bias before GN
    assert all(v == (0.01, 1e-4) for n, v in got.items() if not n.endswith(".bias") and n not in conv_biases)
    assert sum(p.numel() for g in optimizer.param_groups for p in g["params"]) == sum(
        p.numel() for p in model.parameters() if p.requires_grad
    )
    assert isinstance(optimizer, torch.optim.SGD) and optimizer.defaults["momentum"] == 0.9
