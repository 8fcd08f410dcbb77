"""DDOD (on ATSS) on the embedded synthetic dataset, against ``configs/atss_r18_synth.py``.

The same backbone (small ResNet-18-style FPN from random init), head size (2 convs of 64
channels), anchors (4·stride), data, AdamW, budget and schedule as
``configs/atss_r18_synth.py``; the DDOD parts as the COCO config (``common/ddod.py``:
``to_ddod``): cost assigner (α_cls 0.8 / α_reg 0.5), DCNv1 first tower conv, IoU branch,
cumulative per-level loss weights. One addition for AdamW from random init: the deformable
convs' offset layers learn at lr × 0.1 (``adamw_offset_lr_groups``; at lr × 1 the offsets
diverge on this dataset — see its docstring); every other parameter is in the same AdamW
group as in ``configs/atss_r18_synth.py``.
"""
from dsla_d2.model_zoo import NODES, get_config

from .common.ddod import adamw_offset_lr_groups, to_ddod

dataloader, lr_multiplier, model, optimizer, train = get_config("configs/atss_r18_synth.py", keys=NODES)

to_ddod(model)
optimizer.params = adamw_offset_lr_groups(0.1)  # AdamW: the offsets at lr × 0.1
