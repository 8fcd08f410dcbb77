"""Table 5, without P_neg: w_neg = s² on every cell, normalised by N_gt (Σ(1 − P_neg) would be
0). Paper AP 40.5 (AP50 58.7, AP75 43.9).

``fcos_dw_R_50_FPN_1x.py`` (no box refinement, as every ablation of the paper) with:
"""
from ..fcos_dw_R_50_FPN_1x import dataloader, lr_multiplier, model, optimizer, train  # noqa: F401

model.loss.negative_weights = "no_p_neg"
model.loss.neg_normalizer = "num_gts"
