"""Paper form of the positive weights: t = s·u^β (eq. 3, u the IoU of the prediction) and
e^{μt}·t·G normalised to sum 1 over the bag, instead of the code's s·e^{−βL} and
e^{5t}/Σe^{3t}. No published number (the code produced the paper's).

``fcos_dw_R_50_FPN_1x.py`` (no box refinement, as every ablation of the paper) with:
"""
from ..fcos_dw_R_50_FPN_1x import dataloader, lr_multiplier, model, optimizer, train  # noqa: F401

model.loss.pos_weight_form = "paper"
