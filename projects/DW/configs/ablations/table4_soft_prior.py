"""Table 4, "Soft center prior" (the method; = ``fcos_dw_R_50_FPN_1x.py``). Paper AP 41.5 (AP50
59.8, AP75 45.0).

``fcos_dw_R_50_FPN_1x.py`` (no box refinement, as every ablation of the paper) with:
"""
from ..fcos_dw_R_50_FPN_1x import dataloader, lr_multiplier, model, optimizer, train  # noqa: F401

model.assigner.bag = "soft_prior"
