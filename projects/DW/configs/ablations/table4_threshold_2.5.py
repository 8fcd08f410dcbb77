"""Table 4, candidate bag "Threshold" 2.5 strides. Paper AP 41.1 (AP50 59.1, AP75 44.3).

``fcos_dw_R_50_FPN_1x.py`` (no box refinement, as every ablation of the paper) with:
"""
from ..fcos_dw_R_50_FPN_1x import dataloader, lr_multiplier, model, optimizer, train  # noqa: F401

model.assigner.bag = "threshold"
model.assigner.distance_threshold = 2.5
