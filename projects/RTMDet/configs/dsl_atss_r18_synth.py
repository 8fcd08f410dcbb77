"""ATSS head + RTMDet's dynamic soft-label assignment on the embedded synthetic dataset,
against ``configs/atss_r18_synth.py``.

The same backbone, head size, anchors (4·stride; the box coder's reference, DSL itself
reads only the points), data, AdamW, budget and schedule as ``configs/atss_r18_synth.py``,
with ``to_dsl`` (``common/dsl.py``): DynamicSoftLabelAssigner, no centerness branch, QFL on
u and u-weighted GIoU.
"""
from dsla_d2.model_zoo import NODES, get_config

from .common.dsl import to_dsl

dataloader, lr_multiplier, model, optimizer, train = get_config("configs/atss_r18_synth.py", keys=NODES)

to_dsl(model)
