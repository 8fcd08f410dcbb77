"""FCOS-DW + box refinement, R-50-FPN, multi-scale training, 2x on COCO 2017: 44.8 AP
(the authors' README, ``configs/dw_r50_fpn_mstrain_2x_coco.py``).

``fcos_dw_refine_R_50_FPN_1x.py`` with the shorter side drawn uniformly from [480, 960]
(mmdetection ``img_scale=[(1333, 480), (1333, 960)], multiscale_mode='range'``), test at
800, and 24 epochs with steps at epochs 16 and 22: 175,920 iterations, steps at 117,280 and
161,260 (7,330 iterations per epoch at batch 16).
"""
import detectron2.data.transforms as T
from detectron2.config import LazyCall as L

from dsla_d2.model_zoo import get_config

from .fcos_dw_refine_R_50_FPN_1x import dataloader, lr_multiplier, model, optimizer, train  # noqa: F401

epoch_schedule = get_config("configs/common/schedules.py", keys="epoch_schedule")

dataloader.train.mapper.augmentations = [
    L(T.ResizeShortestEdge)(short_edge_length=(480, 960), max_size=1333, sample_style="range"),
    L(T.RandomFlip)(horizontal=True),
]
train.max_iter, lr_multiplier = epoch_schedule(24, [16, 22], warmup_iters=1000, warmup_factor=0.001, warmup_method="linear")
