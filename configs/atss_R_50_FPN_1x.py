"""ATSS R-50-FPN 1x on COCO 2017 (mmdetection: 39.4 AP; the Dynamic ATSS paper's
re-implementation: 39.06 AP, its Table 1/2 "ATSS" / "AIoUs only" row).

Training as the ATSS authors' code (github sfzhang15/ATSS, a maskrcnn-benchmark copy) and
the paper (§4), counted in iterations as they do: batch 16, lr 0.01, 90k iterations, lr ×
0.1 at 60k and 80k; linear warm-up over 500 iterations from 1/3 (the authors'
``SOLVER.WARMUP_*`` defaults; mmdetection's recipe warms up linearly from 0.001 — pass
``lr_multiplier.warmup_factor=0.001`` to follow it). SGD momentum 0.9, weight decay 1e-4,
and the authors' parameter groups (``atss_core/solver/build.py``): every parameter whose
name holds "bias" — GN biases included — lr ×2 without weight decay, every other parameter,
GN weights included, weight decay 1e-4 (``configs/common/optim.py:SGD_maskrcnn_benchmark``).
Test as the authors' ``ATSSPostProcessor``: per level the top 1000 (location, class)
**pairs** with class probability > 0.05, ranked by probability × centerness, NMS 0.6
(``model.test_topk_mode="pairs"``, ``test_topk_rank="score"``; mmdetection 3.x keeps the
top 1000 pairs ranked by the class probability alone, mmdetection 2.x the top 1000
locations ranked by their best probability × centerness).

Needs ``coco_2017_train``/``coco_2017_val`` under ``$DETECTRON2_DATASETS`` and ImageNet
weights: by default Detectron2's MSRA R-50 (``detectron2://ImageNetPretrained/MSRA/R-50.pkl``,
downloaded and cached by Detectron2; offline, ``train.init_checkpoint=/path/to/R-50.pkl``; BGR,
pixel_std 1).
"""
from .common.data.coco import dataloader
from .common.models.atss import model
from .common.optim import SGD_maskrcnn_benchmark as optimizer
from .common.schedules import step_schedule
from .common.models.resnet_fpn import imagenet_weights
from .common.train import train

train.max_iter = 90000
train.checkpointer = dict(period=5000, max_to_keep=3)
train.eval_period = 0
optimizer.lr = 0.01
dataloader.train.total_batch_size = 16
model.test_topk_mode = "pairs"
model.test_topk_rank = "score"
lr_multiplier = step_schedule(
    train.max_iter, [60000, 80000], warmup_iters=500, warmup_factor=1.0 / 3, warmup_method="linear"
)
train.init_checkpoint = imagenet_weights(50)  # training from random weights is refused (frozen stem, res2, BN)
