"""Paper form of P_neg: the fixed curve of eq. 6 through (0.5, 1) and (0.95, 0), 0 beyond 0.95,
without the code's per-bag rescaling. No published number.

``fcos_dw_R_50_FPN_1x.py`` (no box refinement, as every ablation of the paper) with:
"""
from ..fcos_dw_R_50_FPN_1x import dataloader, lr_multiplier, model, optimizer, train  # noqa: F401

model.loss.p_neg_form = "paper"
