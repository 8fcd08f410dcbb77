"""FCOS + RTMDet's dynamic soft-label assignment on the embedded synthetic dataset, against
``configs/fcos_r18_synth.py``: the FCOS head (norm_on_bbox box output: box = distances ·
stride, as RTMDet's head) with ``to_dsl`` (``common/dsl.py``: DynamicSoftLabelAssigner, no
centerness branch, QFL on u and u-weighted GIoU) instead of the FCOS assigner, centerness
branch and focal/IoU losses. Points at the cell centres (offset 0.5) as the base.
"""
from dsla_d2.model_zoo import NODES, get_config

from .common.dsl import to_dsl

dataloader, lr_multiplier, model, optimizer, train = get_config("configs/fcos_r18_synth.py", keys=NODES)

to_dsl(model)
