"""FCOS + DSLA, R-50-FPN 1x on COCO 2017: the authors' recipe of the DSLA paper's
38.1 AP (Su, He et al., Pattern Recognition 2022, Table 1 "DSL" row and Table 3; FCOS 36.6).

Everything as ``configs/fcos_R_50_FPN_1x.py`` (data, R-50 + FPN P3-P7, SGD lr 0.01 at batch
16, 90k iterations, steps at 60k/80k, constant warm-up 500 iterations at 1/3) except the
DSLA parts (spec /work/shared/specs/dsla.md, decision 6), swapped in by
``projects/DSLA/configs/common/dsla.py:to_dsla``:

* head: two branches only (``DSLAHead``, no centerness/IoU branch), exp box output in
  pixels, tower convs without bias (mmdetection's ``conv_bias="auto"`` with GN);
* points at (j·s, i·s): ``PriorGenerator(offset=0)`` (spec decision 3, see ``to_dsla``);
* assigner: static smooth labels label_s = centerness_s · head_s with core zone and interval
  relaxation κ = 0.2, no center sampling, highest-label_s ambiguity rule;
* quality coupling: label_d = label_s · IoU(detached prediction, target), no branch; the
  class score alone ranks detections at inference;
* losses: QFL (β = 2, weight 2.0) on label_d normalised by Σ label_d; −log IoU (weight 1)
  weighted by label_s and normalised by Σ label_s (both all-reduced);
* gradient clipping at L2 norm 35.

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

dataloader.train.total_batch_size = 16
optimizer.lr = 0.01
train.max_iter = 90000
train.clip_grad_norm = 35.0
