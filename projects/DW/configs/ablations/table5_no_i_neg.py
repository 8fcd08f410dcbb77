"""Table 5, without I_neg: w_neg = P_neg on the in-bag cells (s² stays outside the bags), N_neg
= Σ(1 − P_neg). Paper AP 40.0 (AP50 58.5, AP75 42.9).

``fcos_dw_R_50_FPN_1x.py`` (no box refinement, as every ablation of the paper) with:
"""
from ..fcos_dw_R_50_FPN_1x import dataloader, lr_multiplier, model, optimizer, train  # noqa: F401

model.loss.negative_weights = "no_i_neg"
