"""FoveaBox R-50-FPN 1x on COCO 2017 (mmdetection ``fovea_r50_fpn_4x4_1x_coco``: 36.5 AP;
the DSLA paper's Table 3 FoveaBox R-50 row: 36.5).

Training as mmdetection's recipe (the DSLA paper keeps each baseline's own settings):
SGD lr 0.01 at batch 16, momentum 0.9, weight decay 1e-4 on every parameter (no bias lr
×2), linear warm-up over 500 iterations from 0.001, steps at 60k/80k of 90k (epochs 8 and
11 of 12), no gradient clipping, 800×1333 with horizontal flip.

Needs ``coco_2017_train``/``coco_2017_val`` under ``$DETECTRON2_DATASETS`` and ImageNet
weights, e.g. ``train.init_checkpoint=/path/to/R-50.pkl`` (Detectron2's MSRA R-50, BGR,
pixel_std 1: https://dl.fbaipublicfiles.com/detectron2/ImageNetPretrained/MSRA/R-50.pkl;
mmdetection used torchvision's weights, "pytorch" style).
"""
from .common.data.coco import dataloader
from .common.models.foveabox import model
from .common.optim import SGD as optimizer
from .common.schedules import step_schedule
from .common.train import train

train.max_iter = 90000
train.checkpointer = dict(period=5000, max_to_keep=3)
train.eval_period = 0
train.clip_grad_norm = 0.0
optimizer.lr = 0.01
# mmdetection's FoveaBox optimizer has no paramwise settings: plain decay, no bias lr ×2.
optimizer.params.bias_lr_factor = 1.0
optimizer.params.weight_decay_bias = 1e-4
optimizer.params.weight_decay_norm = 1e-4
lr_multiplier = step_schedule(90000, [60000, 80000], warmup_iters=500, warmup_factor=0.001, warmup_method="linear")
