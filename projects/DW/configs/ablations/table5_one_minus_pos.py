"""Table 5, w_neg = 1 − w_pos on the in-bag cells (clamped to [0, 1]; s² outside the bags),
N_neg = Σ min(w_pos, 1). Paper AP 40.7 (AP50 59.5, AP75 44.1).

``fcos_dw_R_50_FPN_1x.py`` (no box refinement, as every ablation of the paper) with:
"""
from ..fcos_dw_R_50_FPN_1x import dataloader, lr_multiplier, model, optimizer, train  # noqa: F401

model.loss.negative_weights = "one_minus_pos"
