"""Table 5, positive weights only: no negative loss on the in-bag cells (point, gt class); the
focal-style s² negative elsewhere, normalised by N_gt (Σ(1 − P_neg) would count every in-bag
cell). Paper AP 39.5 (AP50 58.6, AP75 42.9).

``fcos_dw_R_50_FPN_1x.py`` (no box refinement, as every ablation of the paper) with:
"""
from ..fcos_dw_R_50_FPN_1x import dataloader, lr_multiplier, model, optimizer, train  # noqa: F401

model.loss.negative_weights = "pos_only"
model.loss.neg_normalizer = "num_gts"
