"""FCOS + DSLA on the embedded synthetic dataset: ``configs/fcos_r18_synth.py`` (small
ResNet-18-style FPN, 2-conv 64-channel head, batch 8, 1200 iterations, same optimiser (AdamW) and
schedule) with the DSLA parts of ``fcos_dsla_R_50_FPN_1x.py`` swapped in by
``projects/DSLA/configs/common/dsla.py:to_dsla``:

* ``DSLAHead`` (no quality branch; the class score alone ranks detections);
* points at (j·s, i·s) (``offset=0``, spec decision 3);
* ``DSLAAssigner`` on the synthetic config's halved size ranges
  (0,32), (32,64), (64,128), (128,256), (256,1e8); with κ = 0.2 the relaxed bounds are
  int(lo·0.8), int(hi·1.2) = (0,38), (25,76), (51,153), (102,307), (204,1.2e8);
* label_d = label_s · IoU (``QualityCoupling(cls_target="iou_product")``);
* QFL (weight 2.0) / Σ label_d, −log IoU weighted by label_s / Σ label_s.

Everything else is inherited from ``configs/fcos_r18_synth.py`` unchanged: backbone, towers
(and their conv bias), size ranges, data, optimiser, schedule, the (absent) gradient
clipping — and the box output, FCOS's norm_on_bbox (ReLU(s·x) in strides, with the stride-
normalised LTRB coder; issue 11's fix of the embedded FCOS baseline, which is also the
parametrisation of the paper's FCOSv2-DSLA row, where the authors' R-50 FCOS-DSLA recipe
uses exp(s·x) in pixels). So the two differ only in the parts the paper's Table 1 varies
(plus the offset).
The Table 1 rows on this dataset are ``projects/DSLA/configs/synth_ablations/*.py``.
"""
from dsla_d2.model_zoo import NODES, get_config

from .common.dsla import to_dsla

dataloader, lr_multiplier, model, optimizer, train = get_config("configs/fcos_r18_synth.py", keys=NODES)

to_dsla(model, box_loss="iou", cls_weight=2.0)
