"""DSLA-FoveaBox R-101-FPN 1x on COCO 2017 — **our design** (DSLA paper Table 3: FoveaBox
R-101 38.6 -> 39.8 with DSLA, no recipe given). As ``foveabox_dsla_R_50_FPN_1x.py`` with
a ResNet-101 (``train.init_checkpoint=/path/to/R-101.pkl``).
"""
from ....configs.common.models.foveabox import to_dsla_fovea
from ....configs.foveabox_R_101_FPN_1x import dataloader, lr_multiplier, model, optimizer, train

to_dsla_fovea(model, box_loss="iou")
