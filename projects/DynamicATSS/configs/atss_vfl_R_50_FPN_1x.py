"""Dynamic ATSS paper, Table 1 "ATSS+VFL": ATSS assignment (anchor IoUs only), soft target
y = PIoU with VFL, centerness branch: 39.65 AP (COCO val2017, R-50, 1x).
"""
from dsla_d2.model_zoo import NODES, get_config

dataloader, lr_multiplier, model, optimizer, train = get_config("configs/atss_R_50_FPN_1x.py", keys=NODES)

model.quality.cls_target = "iou"
model.loss.cls_loss = "vfl"
model.loss.vfl_alpha = 0.75
model.loss.vfl_gamma = 2.0
