"""The authors' code option ``soft_prior=False``: the same bags, centre prior 1 where the soft
prior > 0.3, else 0. Not in the paper's tables (no published number).

``fcos_dw_R_50_FPN_1x.py`` (no box refinement, as every ablation of the paper) with:
"""
from ..fcos_dw_R_50_FPN_1x import dataloader, lr_multiplier, model, optimizer, train  # noqa: F401

model.assigner.bag = "hard_prior"
