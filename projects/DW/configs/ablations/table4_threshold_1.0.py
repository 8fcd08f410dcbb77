"""Table 4, candidate bag "Threshold" 1: the inside points less than 1 stride from the gt
centre, G = 1. Paper AP 41.2 (AP50 59.7, AP75 44.7).

``fcos_dw_R_50_FPN_1x.py`` (no box refinement, as every ablation of the paper) with:
"""
from ..fcos_dw_R_50_FPN_1x import dataloader, lr_multiplier, model, optimizer, train  # noqa: F401

model.assigner.bag = "threshold"
model.assigner.distance_threshold = 1.0
