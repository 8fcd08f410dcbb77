"""Table 4, candidate bag "Threshold" 1.7 strides. Paper AP 41.4 (AP50 59.5, AP75 44.6).

``fcos_dw_R_50_FPN_1x.py`` (no box refinement, as every ablation of the paper) with:
"""
from ..fcos_dw_R_50_FPN_1x import dataloader, lr_multiplier, model, optimizer, train  # noqa: F401

model.assigner.bag = "threshold"
model.assigner.distance_threshold = 1.7
