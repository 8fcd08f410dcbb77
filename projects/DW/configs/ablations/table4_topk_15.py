"""Table 4, candidate bag "Top-k" 15. Paper AP 41.2 (AP50 59.6, AP75 44.4).

``fcos_dw_R_50_FPN_1x.py`` (no box refinement, as every ablation of the paper) with:
"""
from ..fcos_dw_R_50_FPN_1x import dataloader, lr_multiplier, model, optimizer, train  # noqa: F401

model.assigner.bag = "topk"
model.assigner.topk = 15
