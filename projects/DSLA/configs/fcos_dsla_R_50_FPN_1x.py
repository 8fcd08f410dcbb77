"""FCOS + DSLA, R-50-FPN 1x on COCO 2017: the authors' recipe of the DSLA paper's
38.1 AP (Su, He et al., Pattern Recognition 2022, Table 1 "DSL" row and Table 3; FCOS 36.6),
as the authors' ``configs/dsla/dsla_r50_caffe_fpn_gn-head_1x_coco.py`` and its training log
``dsla_r50_20210826_135127.log`` (mmdetection 2.10, mmcv 1.3.8, 4 GPUs × 4 images).

Everything as ``configs/fcos_R_50_FPN_1x.py`` — data, R-50 + FPN P3-P7 (P7 from ReLU(P6)),
SGD lr 0.01 at batch 16 with bias lr ×2 and no bias decay (mmdetection's parameter
groups), gradient clipping at 35, constant warm-up 500 iterations at 1/3, **exactly 12
epochs**: 7,330 iterations per epoch (the log's "Epoch [1][50/7330]") → 87,960 iterations,
steps at 58,640 / 80,630 — except the DSLA parts (the paper and the authors' code, decision
6), swapped in by ``projects/DSLA/configs/common/dsla.py:to_dsla``:

* head: two branches only (``DSLAHead``, no centerness/IoU branch), exp box output in
  pixels, tower convs without bias (mmdetection's ``conv_bias="auto"`` with GN);
* points at (j·s, i·s): ``PriorGenerator(offset=0)`` (spec decision 3, see ``to_dsla``);
* assigner: static smooth labels label_s = centerness_s · head_s with core zone and interval
  relaxation κ = 0.2, no center sampling, highest-label_s ambiguity rule;
* quality coupling: label_d = label_s · IoU(detached prediction, target), no branch; the
  class score alone ranks detections at inference;
* losses: QFL (β = 2, weight 2.0) on label_d normalised by Σ label_d; −log IoU (weight 1)
  weighted by label_s and normalised by Σ label_s (both all-reduced);
* test: per level the top 1000 **locations** by their best class score, score > 0.05,
  NMS 0.6 (``test_cfg``: ``nms_pre=1000``, ``nms=dict(iou_threshold=0.6)``), 100 detections.

Paper part → key: core zone = ``model.assigner.core_zone``; interval relaxation =
``model.assigner.relaxation`` (κ = ``model.assigner.kappa``); IoU coupling =
``model.quality.cls_target`` ("iou_product" on, "static" off, "iou" = IoU only).
The Table 1/2 rows are ``projects/DSLA/configs/ablations/*.py``.
"""
from dsla_d2.model_zoo import NODES, get_config

from .common.dsla import to_dsla

dataloader, lr_multiplier, model, optimizer, train = get_config("configs/fcos_R_50_FPN_1x.py", keys=NODES)

to_dsla(model, box_loss="iou", cls_weight=2.0)
model.head.conv_bias = False  # mmdetection's conv_bias="auto": no bias before GN
model.test_nms_thresh = 0.6
model.test_topk_mode = "locations"

train.clip_grad_norm = 35.0
