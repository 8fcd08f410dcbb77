"""FCOS-DW, R-50-FPN 1x on COCO 2017, without box refinement: the paper's 41.5 AP (AP50 59.8,
AP75 45.0; Tables 4-6 "DW" row, the base of every ablation row in ``ablations/``), as the
authors' ``configs/dw_r50_fpn_worefine_1x_coco.py``.

``configs/fcos_R_50_FPN_1x.py`` (data 800×1333 + flip, R-50 + FPN P3-P7 with P7 from
ReLU(P6), batch 16) with DW's parts swapped in by ``common/dw.py:to_dw`` (head, bags, loss,
inference), and the authors' optimisation:

* SGD lr 0.01, momentum 0.9, weight decay 1e-4, none on norm layers, every other parameter
  (biases included) lr ×1 with decay (mmdetection ``paramwise_cfg=dict(norm_decay_mult=0.)``,
  ``configs/common/optim.py:mmdet_sgd``);
* linear warm-up over 1000 iterations from 0.001·lr; 12 epochs with steps at epochs 8 and 11:
  7,330 iterations per epoch at batch 16 → 87,960 iterations, steps at 58,640 and 80,630
  (``configs/common/schedules.py:epoch_schedule``);
* no gradient clipping.

Not the authors': the backbone is Detectron2's MSRA R-50 (caffe, FrozenBN, BGR) as every
COCO config here, where the authors load torchvision's R-50 (pytorch style, BN in eval mode,
RGB mean/std): same depth and frozen stages, different ImageNet weights.
"""
from dsla_d2.model_zoo import NODES, get_config

from .common.dw import to_dw

dataloader, lr_multiplier, model, optimizer, train = get_config("configs/fcos_R_50_FPN_1x.py", keys=NODES)
epoch_schedule = get_config("configs/common/schedules.py", keys="epoch_schedule")
mmdet_sgd = get_config("configs/common/optim.py", keys="mmdet_sgd")

to_dw(model, box_refinement=False)

optimizer = mmdet_sgd()  # every parameter lr ×1 with weight decay 1e-4 ...
optimizer.params.norm_decay_mult = 0.0  # ... except none on norm layers
optimizer.lr = 0.01
dataloader.train.total_batch_size = 16
train.max_iter, lr_multiplier = epoch_schedule(12, [8, 11], warmup_iters=1000, warmup_factor=0.001, warmup_method="linear")
train.clip_grad_norm = 0.0
