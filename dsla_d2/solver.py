"""Optimiser parameter groups of mmdetection's recipes, for ``optimizer.params`` in a lazy config.

Most published numbers we compare with were trained by mmdetection, whose optimiser is built
by mmcv's ``DefaultOptimizerConstructor``. With a ``paramwise_cfg`` (FCOS, DSLA:
``bias_lr_mult=2, bias_decay_mult=0``) it sets, per parameter, from the module that owns it
(rules of mmcv 1.x ``DefaultOptimizerConstructor.add_params``, read from its source):

* learning rate: ``base_lr × bias_lr_mult`` for a parameter named ``bias`` — except in norm
  layers (BN / IN / GN / LN) and in the offset layer of a deformable conv; the offset
  layer's weight and bias get ``base_lr × dcn_offset_lr_mult``; everything else ``base_lr``;
* weight decay, first rule that applies: norm layers (weight and bias) ``wd ×
  norm_decay_mult``; depthwise convs (``in_channels == groups``) ``wd × dwconv_decay_mult``;
  a ``bias`` outside a deformable conv's offset layer ``wd × bias_decay_mult``; everything
  else ``wd``.

Every multiplier defaults to 1, so without arguments the groups are plain SGD on every
parameter (mmdetection's configs without ``paramwise_cfg``, e.g. FoveaBox). Detectron2's
``get_default_optimizer_params`` differs: its bias factors also reach norm biases, and it
has no depthwise or deformable-offset rule.

Older mmcv (before deformable convs were special-cased) also applied ``bias_lr_mult`` and
``bias_decay_mult`` to the offset layer's bias; only configs with deformable convs (FCOSv2-DSLA)
can tell the two apart.
"""
from typing import Any, Dict, List

from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.modules.instancenorm import _InstanceNorm

from detectron2.solver.build import reduce_param_groups

from .heads.layers import DeformConv3x3

__all__ = ["mmdet_param_groups", "NORM_TYPES", "DEFORMABLE_TYPES"]

NORM_TYPES = (_BatchNorm, _InstanceNorm, nn.GroupNorm, nn.LayerNorm)
DEFORMABLE_TYPES = (DeformConv3x3,)


def _is_depthwise(module: nn.Module) -> bool:
    # mmcv's test, as written: a conv whose groups equal its input channels (this also
    # holds for an ordinary conv with one input channel).
    return isinstance(module, nn.Conv2d) and module.in_channels == module.groups


def mmdet_param_groups(
    model: nn.Module,
    *,
    base_lr: float,
    weight_decay: float,
    bias_lr_mult: float = 1.0,
    bias_decay_mult: float = 1.0,
    norm_decay_mult: float = 1.0,
    dwconv_decay_mult: float = 1.0,
    dcn_offset_lr_mult: float = 1.0,
) -> List[Dict[str, Any]]:
    """Parameter groups ``[{"params": [...], "lr": ..., "weight_decay": ...}]`` by the rules
    in the module docstring; frozen parameters are left out and a parameter shared by
    several modules is counted once (as Detectron2 does). Groups with equal settings are
    merged (``reduce_param_groups``).

    In a lazy config, ``params=L(mmdet_param_groups)(base_lr="${..lr}",
    weight_decay="${..weight_decay}", bias_lr_mult=2.0, bias_decay_mult=0.0)``;
    ``train_net.py`` sets ``params.model``.
    """
    for name, value in (("base_lr", base_lr), ("weight_decay", weight_decay)):
        if value is None or value < 0:
            raise ValueError(f"mmdet_param_groups: {name}={value!r} must be a number >= 0")
    offset_layers = {id(child) for m in model.modules() if isinstance(m, DEFORMABLE_TYPES) for child in m.children()}
    groups, seen = [], set()
    for module in model.modules():
        is_norm = isinstance(module, NORM_TYPES)
        is_offset = id(module) in offset_layers
        for name, param in module.named_parameters(recurse=False):
            if not param.requires_grad or id(param) in seen:
                continue
            seen.add(id(param))
            is_bias = name == "bias"
            lr = base_lr * bias_lr_mult if is_bias and not (is_norm or is_offset) else base_lr
            if is_offset and isinstance(module, nn.Conv2d):
                lr = base_lr * dcn_offset_lr_mult
            if is_norm:
                wd = weight_decay * norm_decay_mult
            elif _is_depthwise(module):
                wd = weight_decay * dwconv_decay_mult
            elif is_bias and not is_offset:
                wd = weight_decay * bias_decay_mult
            else:
                wd = weight_decay
            groups.append({"params": [param], "lr": lr, "weight_decay": wd})
    return reduce_param_groups(groups)
