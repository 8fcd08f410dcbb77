"""ATSS head + RTMDet's dynamic soft-label assignment, R-50-FPN 1x on COCO 2017: the
assigner and loss of RTMDet (Lyu et al., arXiv:2212.07784) on the ordinary parallel (ATSS)
head, without RTMDet's CSPNeXt backbone, PAFPN neck, shared-conv head or 300-epoch recipe.

No published number exists for this pairing (RTMDet's assignment ablation is on RTMDet-s;
see ``projects/RTMDet/README.md``): compare with ``configs/atss_R_50_FPN_1x.py``.

Everything as ``configs/atss_R_50_FPN_1x.py`` (data, R-50 + FPN P3-P7, ATSSHead with its
delta box coder and one 8·stride anchor per location, the ATSS authors' SGD recipe: batch 16,
lr 0.01, 90k iterations, steps at 60k / 80k; the ATSS inference settings) with ``to_dsl``
(``common/dsl.py``: DynamicSoftLabelAssigner, no centerness branch, QFL on u and u-weighted
GIoU over max(Σ u, 1)) and RTMDet's points at (j·s, i·s) (offset 0: the soft centre prior
measures the distance from them).
"""
from dsla_d2.model_zoo import NODES, get_config

from .common.dsl import to_dsl

dataloader, lr_multiplier, model, optimizer, train = get_config("configs/atss_R_50_FPN_1x.py", keys=NODES)

to_dsl(model)
model.prior_generator.offset = 0.0
