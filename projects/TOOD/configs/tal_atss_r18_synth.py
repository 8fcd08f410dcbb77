"""ATSS head + TAL on the embedded synthetic dataset, against ``configs/atss_r18_synth.py``.

The same backbone, head size, anchors (4·stride), data, AdamW, budget and schedule as
``configs/atss_r18_synth.py``, with ``to_tal`` (``common/tal.py``): TaskAlignedAssigner, no
centerness branch, the task-aligned loss. The authors' ATSS warm-up lasts 4 of 12 epochs;
here it is the same third of the budget, 400 of 1,200 iterations.
"""
from dsla_d2.model_zoo import NODES, get_config

from .common.tal import to_tal

dataloader, lr_multiplier, model, optimizer, train = get_config("configs/atss_r18_synth.py", keys=NODES)

to_tal(model, warmup_iters=400)
