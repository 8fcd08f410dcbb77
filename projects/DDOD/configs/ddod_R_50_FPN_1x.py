"""DDOD on ATSS, R-50-FPN 1x on COCO 2017: paper 41.6 AP (Table 3 / Table 4 last row;
ATSS baseline 39.4). Spec ``shared/specs/ddod.md`` (the authors' code where it differs).

Everything as ``configs/atss_R_50_FPN_1x.py`` (data, R-50 + FPN P3-P7, one 8·stride anchor
per location, delta box coder with weights (10, 10, 5, 5)) plus the three
disentanglements (``common/ddod.py``: ``to_ddod``) and the authors' recipe:

* SGD lr 0.02 at batch 16, momentum 0.9, weight decay 1e-4 on every parameter, no bias lr
  factor (mmdetection's plain SGD); linear warm-up over 500 iterations from 0.001; 90k
  iterations, lr × 0.1 at 60k and 80k (epochs 8 and 11 of 12).

Paper part → config key: assignment = ``model.assigner`` (``DDODAssigner``: ``cls_alpha``,
``reg_alpha``); spatial = ``model.head.deformable_convs``; supervision =
``model.loss.level_weighting`` (``method``, ``accumulate``). The ablation rows of Tables
4–7 are ``ablations/*.py``.
"""
from ....configs.atss_R_50_FPN_1x import dataloader, model, optimizer, train  # noqa: F401
from ....configs.common.schedules import step_schedule
from .common.ddod import to_ddod

to_ddod(model)

dataloader.train.total_batch_size = 16
optimizer.lr = 0.02
optimizer.params.bias_lr_factor = 1.0
optimizer.params.weight_decay_bias = None
optimizer.params.weight_decay_norm = None
train.max_iter = 90000
lr_multiplier = step_schedule(train.max_iter, [60000, 80000], warmup_iters=500, warmup_factor=0.001, warmup_method="linear")
