"""Dynamic ATSS paper, Table 2 row 1 ("AIoUs" + centerness branch) = plain ATSS, the
paper's re-implementation: 39.06 AP (COCO val2017, R-50, 1x). Also Table 1 "ATSS" and
Table 3's baseline.

Identical to ``configs/atss_R_50_FPN_1x.py``; kept here so every row of Table 2 has a file.
"""
from dsla_d2.model_zoo import NODES, get_config

dataloader, lr_multiplier, model, optimizer, train = get_config("configs/atss_R_50_FPN_1x.py", keys=NODES)
