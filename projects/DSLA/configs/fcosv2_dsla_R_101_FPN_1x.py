"""FCOSv2 + DSLA, R-101-FPN 1x on COCO 2017 (DSLA paper Table 3: FCOSv2 R-101 41.5 -> 44.1 AP).

``fcosv2_dsla_R_50_FPN_1x.py`` with a ResNet-101 backbone.
"""
from .fcosv2_dsla_R_50_FPN_1x import dataloader, lr_multiplier, model, optimizer, train

model.backbone.bottom_up.stages.depth = 101
train.init_checkpoint = "detectron2://ImageNetPretrained/MSRA/R-101.pkl"  # Detectron2's MSRA R-101 (imagenet_weights(101))
