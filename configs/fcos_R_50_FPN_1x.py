"""FCOS R-50-FPN 1x on COCO 2017: the DSLA paper's "FCOS" row, 36.6 AP — mmdetection's
``configs/fcos/fcos_r50_caffe_fpn_gn-head_1x_coco.py`` (its README: R-50 caffe, GN head,
1x: 36.6), whose recipe this config follows:

* FCOS v1 head: centerness on the **classification** tower (mmdetection's default
  ``centerness_on_reg=False``), tower convs without bias before GN (``conv_bias="auto"``
  with ``norm_cfg=GN``), exp box output in pixels, IoU loss, no center sampling;
* SGD lr 0.01 at batch 16, momentum 0.9, weight decay 1e-4, ``paramwise_cfg=
  dict(bias_lr_mult=2., bias_decay_mult=0.)`` through mmdetection's default optimiser
  constructor: conv biases lr ×2 without decay, GN parameters lr ×1 with decay 1e-4
  (``configs/common/optim.py:mmdet_sgd``);
* gradient clipping at L2 norm 35 (``grad_clip=dict(max_norm=35, norm_type=2)``);
* 12 epochs, lr × 0.1 after epochs 8 and 11, constant warm-up at 1/3 over 500 iterations:
  87,960 iterations, steps at 58,640 / 80,630 (``configs/common/schedules.py``);
* test: per level the top 1000 **locations** by their best class score × centerness
  (``nms_pre=1000`` in ``FCOSHead._get_bboxes_single``: ``(scores * centerness).max(dim=1)``
  then ``topk``), class probability > 0.05, NMS 0.5, 100 detections.

Detectron2's MSRA weights differ from mmdetection's Detectron ones only in the pixel mean.
Needs ``coco_2017_train``/``coco_2017_val`` under ``$DETECTRON2_DATASETS`` and ImageNet
weights: by default Detectron2's MSRA R-50 (``detectron2://ImageNetPretrained/MSRA/R-50.pkl``,
downloaded and cached by Detectron2; offline, ``train.init_checkpoint=/path/to/R-50.pkl``; BGR,
pixel_std 1: https://dl.fbaipublicfiles.com/detectron2/ImageNetPretrained/MSRA/R-50.pkl).
"""
from .common.data.coco import dataloader
from .common.models.fcos import model
from .common.optim import mmdet_sgd
from .common.schedules import epoch_schedule
from .common.models.resnet_fpn import imagenet_weights
from .common.train import train

model.head.quality_branch = "cls"
model.head.conv_bias = False
model.test_nms_thresh = 0.5
model.test_topk_mode = "locations"
model.test_topk_rank = "score"  # (scores * centerness).max(dim=1), mmdetection 2.x

optimizer = mmdet_sgd(bias_lr_mult=2.0, bias_decay_mult=0.0)
optimizer.lr = 0.01
dataloader.train.total_batch_size = 16
train.max_iter, lr_multiplier = epoch_schedule(12, [8, 11], warmup_iters=500, warmup_factor=1.0 / 3, warmup_method="constant")
train.checkpointer = dict(period=5000, max_to_keep=3)
train.eval_period = 0
train.clip_grad_norm = 35.0
train.init_checkpoint = imagenet_weights(50)  # training from random weights is refused (frozen stem, res2, BN)
