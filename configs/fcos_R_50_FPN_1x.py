"""FCOS R-50-FPN 1x on COCO 2017 (the DSLA paper's "FCOS" row, 36.6 AP; AdelaiDet's
FCOS_R_50_1x reports 38.7 with the FCOSv2 improvements).

Needs ``coco_2017_train``/``coco_2017_val`` under ``$DETECTRON2_DATASETS`` and ImageNet
weights, e.g. ``train.init_checkpoint=/path/to/R-50.pkl`` (Detectron2's MSRA R-50, BGR,
pixel_std 1: https://dl.fbaipublicfiles.com/detectron2/ImageNetPretrained/MSRA/R-50.pkl).
"""
from .common.data.coco import dataloader
from .common.models.fcos import model
from .common.optim import SGD as optimizer
from .common.schedules import lr_multiplier_1x as lr_multiplier
from .common.train import train

train.max_iter = 90000
train.checkpointer = dict(period=5000, max_to_keep=3)
train.eval_period = 0
optimizer.lr = 0.01
