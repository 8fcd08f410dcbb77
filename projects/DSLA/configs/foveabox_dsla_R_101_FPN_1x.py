"""DSLA-FoveaBox R-101-FPN 1x on COCO 2017 — **our design** (DSLA paper Table 3: FoveaBox
R-101 38.6 -> 39.8 with DSLA, no recipe given). As ``foveabox_dsla_R_50_FPN_1x.py`` with
a ResNet-101 (by default Detectron2's MSRA R-101; offline ``train.init_checkpoint=/path/to/R-101.pkl``).
"""
from dsla_d2.model_zoo import NODES, get_config

from .common.dsla import to_dsla

dataloader, lr_multiplier, model, optimizer, train = get_config("configs/foveabox_R_101_FPN_1x.py", keys=NODES)

to_dsla(model, box_loss="iou")
train.init_checkpoint = "detectron2://ImageNetPretrained/MSRA/R-101.pkl"  # Detectron2's MSRA R-101 (imagenet_weights(101))
