"""DDOD-FCOS, R-50-FPN 1x on COCO 2017: paper 41.6 AP (Table 3; FCOS* baseline, the
ATSS-repository FCOS, 39.2).

``ddod_R_50_FPN_1x.py`` with the FCOS-style regression of the authors' DDOD-FCOS head:
per side distance = raw output · stride from the anchor centre (linear, per-level learnable
scale, no ReLU or exp), box output bias initialised to 1.5 (``common/ddod.py``:
``to_ddod_fcos``). The assignment stays the anchor-based cost assigner.
"""
from .common.ddod import to_ddod_fcos
from .ddod_R_50_FPN_1x import dataloader, lr_multiplier, model, optimizer, train  # noqa: F401

to_ddod_fcos(model)
