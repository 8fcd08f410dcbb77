"""FCOS-DW + box refinement, R-50-FPN 1x on COCO 2017: 42.1 AP in the authors' README
(``configs/dw_r50_fpn_1x_coco.py``), 42.2 in the paper (Table 6, AP50 60.4, AP75 45.3).

``fcos_dw_R_50_FPN_1x.py`` with ``model.head.box_refinement = True`` (§3.4): an 8-channel
offset conv on the regression tower picks one boundary point per side of the coarse box,
the four side maps are sampled there, and the refined box is the only box output.
"""
from .fcos_dw_R_50_FPN_1x import dataloader, lr_multiplier, model, optimizer, train  # noqa: F401

model.head.box_refinement = True
