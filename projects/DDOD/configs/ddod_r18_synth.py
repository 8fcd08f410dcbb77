"""DDOD (on ATSS) on the embedded synthetic dataset, against ``configs/atss_r18_synth.py``.

The same backbone (small ResNet-18-style FPN from random init), head size (2 convs of 64
channels), anchors (4·stride), data, AdamW, budget and schedule as
``configs/atss_r18_synth.py``; the DDOD parts as the COCO config (``common/ddod.py``:
``to_ddod``): cost assigner (α_cls 0.8 / α_reg 0.5), DCNv1 first tower conv, IoU branch,
cumulative per-level loss weights.
"""
from dsla_d2.model_zoo import NODES, get_config

from .common.ddod import to_ddod

dataloader, lr_multiplier, model, optimizer, train = get_config("configs/atss_r18_synth.py", keys=NODES)

to_ddod(model)
