"""FCOS R-50-FPN (COCO), the base every point-based detector config derives from.

The dense base (``dense.py``: ResNet-50 + FPN P3-P7, 4-conv GN towers, points at cell
centres, inference settings) with FCOSHead (centerness on the reg tower, exp box output in
pixels), LTRB box coder, the FCOS assigner (size ranges, no center sampling, box loss
weighted by the centerness target) and focal + IoU losses. ``configs/fcos_R_50_FPN_1x.py``
and the FCOSv2/DSLA configs edit it.
"""
from detectron2.config import LazyCall as L

from dsla_d2.assigners import FCOSAssigner
from dsla_d2.box_coders import LTRBBoxCoder
from dsla_d2.heads import FCOSHead
from dsla_d2.meta_arch import DslaFCOS

from .dense import model

SIZE_RANGES = [[0, 64], [64, 128], [128, 256], [256, 512], [512, 1e8]]

model._target_ = DslaFCOS
model.head._target_ = FCOSHead
model.head.quality_branch = "reg"
model.head.box_activation = "exp"
model.box_coder = L(LTRBBoxCoder)(normalize_by_stride=False)
model.assigner = L(FCOSAssigner)(size_ranges=SIZE_RANGES, center_sampling_radius=0.0, regression_weight="centerness")
model.loss.box_loss = "iou"  # −log IoU; focal loss and centerness branch: the dense base
# mmdetection's FCOS: box loss / max(all-reduced Σ centerness targets, 1e-6), not max(·, 1)
model.loss.box_normalizer_min = 1e-6
