"""FoveaBox R-101-FPN 1x on COCO 2017 (mmdetection ``fovea_r101_fpn_4x4_1x_coco``: 38.6 AP;
DSLA paper Table 3: 38.6). As ``foveabox_R_50_FPN_1x.py`` with a ResNet-101
(by default Detectron2's MSRA R-101, downloaded and cached; offline
``train.init_checkpoint=/path/to/R-101.pkl``:
https://dl.fbaipublicfiles.com/detectron2/ImageNetPretrained/MSRA/R-101.pkl).
"""
from .foveabox_R_50_FPN_1x import dataloader, lr_multiplier, model, optimizer, train

model.backbone.bottom_up.stages.depth = 101
train.init_checkpoint = "detectron2://ImageNetPretrained/MSRA/R-101.pkl"  # Detectron2's MSRA R-101 (imagenet_weights(101))
