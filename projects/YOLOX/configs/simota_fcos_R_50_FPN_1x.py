"""FCOS + SimOTA, R-50-FPN 1x on COCO 2017: YOLOX's assignment and loss on the FCOS head of
``configs/fcos_R_50_FPN_1x.py`` (the DSLA paper's FCOS row, 36.6 AP), everything else as that
config (data, R-50 + FPN P3-P7, exp box output in pixels, SGD lr 0.01 at batch 16 with biases
at lr × 2, gradient clipping 35, 12 epochs with steps at 8 and 11, inference).

``to_simota`` (``common/simota.py``): SimOTAAssigner (YOLOX 0.2/0.3: radius 2.5, λ 3, penalty
1e5, top-10 IoUs for k), no centerness branch, BCE with the IoU as the target of the
positives' class, 5·(1 − IoU²) box loss, both over max(#positives, 1).

The YOLOX paper has no SimOTA row on an FCOS or ATSS R-50 detector: this config is a
transplant, not a reproduction, and **has not been run**. YOLOX's own recipe (300 epochs,
mosaic + mixup, the decoupled head with objectness, L1 loss in the last 15 epochs, EMA) is
not built (``projects/YOLOX/README.md``).
"""
from dsla_d2.model_zoo import NODES, get_config

from .common.simota import to_simota

dataloader, lr_multiplier, model, optimizer, train = get_config("configs/fcos_R_50_FPN_1x.py", keys=NODES)

to_simota(model)
