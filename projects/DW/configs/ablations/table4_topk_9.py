"""Table 4, candidate bag "Top-k" 9: the 9 inside points nearest the gt centre on each level, G
= 1. Paper AP 41.2 (AP50 59.4, AP75 44.3).

``fcos_dw_R_50_FPN_1x.py`` (no box refinement, as every ablation of the paper) with:
"""
from ..fcos_dw_R_50_FPN_1x import dataloader, lr_multiplier, model, optimizer, train  # noqa: F401

model.assigner.bag = "topk"
model.assigner.topk = 9
