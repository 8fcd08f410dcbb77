"""Optimisers of the recipes: SGD (momentum 0.9, weight decay 1e-4) with the parameter groups
of the code behind each paper's numbers, and AdamW for the embedded-dataset configs.

* ``mmdet_sgd(bias_lr_mult, bias_decay_mult)``: mmdetection's ``DefaultOptimizerConstructor``
  (``dsla_d2.solver.mmdet_param_groups``). FCOS / FCOSv2 / DSLA use ``paramwise_cfg=
  dict(bias_lr_mult=2., bias_decay_mult=0.)``: conv (and linear) biases lr ×2 without weight
  decay, GN parameters lr ×1 with weight decay 1e-4. FoveaBox has no ``paramwise_cfg``:
  ``mmdet_sgd()`` — every parameter lr ×1, weight decay 1e-4.
* ``SGD_maskrcnn_benchmark``: the ATSS authors' code (``atss_core/solver/build.py``): every
  parameter whose name holds "bias" (GN biases included) lr ×2 without weight decay, every
  other parameter (GN weights included) weight decay 1e-4 — Detectron2's
  ``get_default_optimizer_params`` with ``bias_lr_factor=2, weight_decay_bias=0`` and no
  norm override.
"""
import torch

from detectron2.config import LazyCall as L
from detectron2.solver.build import get_default_optimizer_params

from dsla_d2.solver import mmdet_param_groups


def mmdet_sgd(bias_lr_mult=1.0, bias_decay_mult=1.0):
    """SGD lr 0.01 (batch 16), momentum 0.9, weight decay 1e-4, mmdetection's parameter
    groups (``params.model`` is set by train_net.py)."""
    return L(torch.optim.SGD)(
        params=L(mmdet_param_groups)(
            base_lr="${..lr}",
            weight_decay="${..weight_decay}",
            bias_lr_mult=bias_lr_mult,
            bias_decay_mult=bias_decay_mult,
        ),
        lr=0.01,
        momentum=0.9,
        weight_decay=1e-4,
    )


SGD_maskrcnn_benchmark = L(torch.optim.SGD)(
    params=L(get_default_optimizer_params)(
        # params.model is set by train_net.py
        base_lr="${..lr}",
        bias_lr_factor=2.0,
        weight_decay_bias=0.0,
    ),
    lr=0.01,
    momentum=0.9,
    weight_decay=1e-4,
)

# AdamW: converges far faster than SGD when training small models from random init on a
# CPU budget (the embedded-dataset configs); no weight decay on norms and biases.
AdamW = L(torch.optim.AdamW)(
    params=L(get_default_optimizer_params)(
        base_lr="${..lr}",
        weight_decay_norm=0.0,
        weight_decay_bias=0.0,
    ),
    lr=1e-3,
    betas=(0.9, 0.999),
    weight_decay=0.05,
)
