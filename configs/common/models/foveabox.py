"""FoveaBox R-50-FPN (COCO): the base of the FoveaBox and DSLA-FoveaBox configs.

The dense base (``dense.py``) with the FoveaBox parts. Facts from the FoveaBox paper (Kong
et al., IEEE TIP 2020) and mmdetection's ``configs/foveabox/fovea_r50_fpn_4x4_1x_coco.py``
(36.5 AP):

- ResNet-50 + FPN P3-P7, strides 8..128; P6 is computed from C5 (mmdetection's
  ``add_extra_convs='on_input'``), P7 = conv(P6) **without** a ReLU between them
  (mmdetection's FPN default ``relu_before_extra_convs=False``; Detectron2's
  ``LastLevelP6P7`` applies one): ``dsla_d2.backbones.LastLevelP6P7NoReLU``;
- FoveaBoxHead: 4 × [3×3 conv 256, GN(32), ReLU] towers (the spec's head; mmdetection's
  36.5 config has no norm in the head — set ``model.head.norm = ""`` to match it), linear
  box output in log space, no per-level scale, no quality branch;
- points at cell centres (offset 0.5); base edges z_l = 16..256 (FoveaLogBoxCoder:
  log(clamp(d/z_l, 1/16, 16)));
- FoveaAssigner: sqrt(w·h) scale ranges ((1,64), (32,128), (64,256), (128,512),
  (256,2048)) inclusive, fovea σ = 0.4;
- sigmoid focal loss γ 1.5 α 0.4 over #pos + #images; SmoothL1 β 0.11 over #pos on the
  log targets;
- test: top 1000 per level, score > 0.05, NMS 0.5 (mmdetection's FoveaBox test_cfg),
  100 detections.

``projects/DSLA/configs/common/dsla.py:to_dsla`` turns this model into DSLA-FoveaBox (our
design).
"""
from detectron2.config import LazyCall as L

from dsla_d2.assigners.fovea import FoveaAssigner
from dsla_d2.box_coders import FoveaLogBoxCoder
from dsla_d2.heads import FoveaBoxHead
from dsla_d2.losses import DenseDetectionLoss
from dsla_d2.meta_arch import DslaFoveaBox
from dsla_d2.quality import QualityCoupling

from .dense import model
from .resnet_fpn import resnet_fpn

BASE_EDGES = [16, 32, 64, 128, 256]
SCALE_RANGES = [[1, 64], [32, 128], [64, 256], [128, 512], [256, 2048]]

model._target_ = DslaFoveaBox
model.backbone = resnet_fpn(depth=50, p6_from="res5", relu_before_p7=False)
model.head._target_ = FoveaBoxHead
model.box_coder = L(FoveaLogBoxCoder)(base_edges=BASE_EDGES, clamp=[1.0 / 16, 16.0])
model.assigner = L(FoveaAssigner)(scale_ranges=SCALE_RANGES, sigma=0.4)
model.quality = L(QualityCoupling)(branch=None, cls_target="static")
model.loss = L(DenseDetectionLoss)(
    cls_loss="focal",
    focal_gamma=1.5,
    focal_alpha=0.4,
    cls_normalizer="num_pos_plus_images",
    box_loss="smooth_l1",
    smooth_l1_beta=0.11,
    box_normalizer="num_pos",
)
model.test_nms_thresh = 0.5
