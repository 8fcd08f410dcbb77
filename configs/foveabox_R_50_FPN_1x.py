"""FoveaBox R-50-FPN 1x on COCO 2017 (mmdetection ``fovea_r50_fpn_4x4_1x_coco``: 36.5 AP;
the DSLA paper's Table 3 FoveaBox R-50 row: 36.5).

Training as mmdetection's recipe (the DSLA paper keeps each baseline's own settings):

* FPN P6 from C5 and **P7 = conv(P6) without ReLU** (the model base,
  ``configs/common/models/foveabox.py``);
* SGD lr 0.01 at batch 16 (4 GPUs × 4 images), momentum 0.9, weight decay 1e-4 on every
  parameter — no ``paramwise_cfg``, so no bias lr ×2 (``mmdet_sgd()``);
* mmdetection's ``schedule_1x``: 12 epochs (87,960 iterations at 7,330 per epoch), lr ×
  0.1 after epochs 8 and 11 (58,640 / 80,630), linear warm-up over 500 iterations from
  0.001; no gradient clipping; 800×1333 with horizontal flip;
* test: per level the top 1000 **locations** by their best class score
  (``FoveaHead._get_bboxes_single``: ``scores.max(dim=1)`` then ``topk(nms_pre)``),
  score > 0.05, NMS 0.5, 100 detections.

Needs ``coco_2017_train``/``coco_2017_val`` under ``$DETECTRON2_DATASETS`` and ImageNet
weights: by default Detectron2's MSRA R-50 (``detectron2://ImageNetPretrained/MSRA/R-50.pkl``,
downloaded and cached by Detectron2; offline, ``train.init_checkpoint=/path/to/R-50.pkl``; BGR,
pixel_std 1: https://dl.fbaipublicfiles.com/detectron2/ImageNetPretrained/MSRA/R-50.pkl;
mmdetection used torchvision's weights, "pytorch" style).
"""
from .common.data.coco import dataloader
from .common.models.foveabox import model
from .common.optim import mmdet_sgd
from .common.schedules import epoch_schedule
from .common.models.resnet_fpn import imagenet_weights
from .common.train import train

model.test_topk_mode = "locations"

optimizer = mmdet_sgd()
optimizer.lr = 0.01
dataloader.train.total_batch_size = 16
train.max_iter, lr_multiplier = epoch_schedule(12, [8, 11], warmup_iters=500, warmup_factor=0.001, warmup_method="linear")
train.checkpointer = dict(period=5000, max_to_keep=3)
train.eval_period = 0
train.clip_grad_norm = 0.0
train.init_checkpoint = imagenet_weights(50)  # training from random weights is refused (frozen stem, res2, BN)
