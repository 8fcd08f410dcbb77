"""SGD as in the FCOS/ATSS/DSLA papers: momentum 0.9, weight decay 1e-4, bias lr ×2 and no
weight decay on biases (the mmdetection recipes the papers' code used), none on norms."""
import torch

from detectron2.config import LazyCall as L
from detectron2.solver.build import get_default_optimizer_params

SGD = L(torch.optim.SGD)(
    params=L(get_default_optimizer_params)(
        # params.model is set by train_net.py
        base_lr="${..lr}",
        weight_decay_norm=0.0,
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
