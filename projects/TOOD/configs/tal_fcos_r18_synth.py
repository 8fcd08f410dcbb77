"""FCOS + TAL on the embedded synthetic dataset, against ``configs/fcos_r18_synth.py``: the
FCOS head (norm_on_bbox box output) with ``to_tal`` (``common/tal.py``) instead of the FCOS
assigner, centerness branch and focal/IoU losses. The warm-up (400 of 1,200 iterations, a
third of the budget as the authors' 4 of 12 epochs) assigns with ATSS on the priors'
anchors, made 4·stride as in ``configs/atss_r18_synth.py`` (FCOS itself does not use them).
"""
from dsla_d2.model_zoo import NODES, get_config

from .common.tal import to_tal

dataloader, lr_multiplier, model, optimizer, train = get_config("configs/fcos_r18_synth.py", keys=NODES)

to_tal(model, warmup_iters=400)
model.prior_generator.anchor_scale = 4
