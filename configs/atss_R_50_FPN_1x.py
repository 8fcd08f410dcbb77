"""ATSS R-50-FPN 1x on COCO 2017 (mmdetection: 39.4 AP; the Dynamic ATSS paper's
re-implementation: 39.06 AP, its Table 1/2 "ATSS" / "AIoUs only" row).

Schedule of the paper (§4): batch 16, lr 0.01, 90k iterations, lr × 0.1 at 60k and 80k.
Warm-up: linear over 500 iterations from 1/3 (the ATSS authors' maskrcnn-benchmark
defaults; mmdetection's recipe warms up linearly from 0.001 — pass
``lr_multiplier.warmup_factor=0.001`` to follow it). SGD momentum 0.9, weight decay 1e-4,
bias lr × 2 without weight decay (configs/common/optim.py, the authors' recipe).

Needs ``coco_2017_train``/``coco_2017_val`` under ``$DETECTRON2_DATASETS`` and ImageNet
weights, e.g. ``train.init_checkpoint=/path/to/R-50.pkl`` (Detectron2's MSRA R-50, BGR,
pixel_std 1).
"""
from .common.data.coco import dataloader
from .common.models.atss import model
from .common.optim import SGD as optimizer
from .common.schedules import step_schedule
from .common.train import train

train.max_iter = 90000
train.checkpointer = dict(period=5000, max_to_keep=3)
train.eval_period = 0
optimizer.lr = 0.01
dataloader.train.total_batch_size = 16
lr_multiplier = step_schedule(
    train.max_iter, [60000, 80000], warmup_iters=500, warmup_factor=1.0 / 3, warmup_method="linear"
)
