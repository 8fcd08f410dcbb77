"""Both paper forms (``paper_pos_weight.py`` + ``paper_p_neg.py``). No published number.

``fcos_dw_R_50_FPN_1x.py`` (no box refinement, as every ablation of the paper) with:
"""
from ..fcos_dw_R_50_FPN_1x import dataloader, lr_multiplier, model, optimizer, train  # noqa: F401

model.loss.pos_weight_form = "paper"
model.loss.p_neg_form = "paper"
