"""Dynamic ATSS (combined IoUs, hard focal targets, centerness branch — the paper's
"ATSS+CIoUs") on the embedded synthetic dataset; everything else as
``configs/atss_r18_synth.py`` (anchor_scale 4, budget of ``fcos_r18_synth.py``).
"""
from detectron2.config import LazyCall as L

from dsla_d2.assigners.atss import DynamicATSSAssigner
from dsla_d2.model_zoo import NODES, get_config

dataloader, lr_multiplier, model, optimizer, train = get_config("configs/atss_r18_synth.py", keys=NODES)

model.assigner = L(DynamicATSSAssigner)(
    topk=9,
    center_margin=0.01,
    regression_weight="centerness",
    anchor_iou_weight=1.0,
    pred_iou_weight=1.0,
)
