"""Dynamic ATSS with combined IoUs CIoU = AIoU + PIoU (eqs. 1-4), hard classification
targets (focal loss) and the centerness branch.

Paper: Table 1 "ATSS+CIoUs", Table 2 row 3 (AIoUs ✓ PIoUs ✓ centerness ✓), Table 3 row 1
(PIoUs : AIoUs = 1 : 1): 39.75 AP (COCO val2017, R-50, 1x).

Base of every other combined-IoU config in this folder. The D_up / D_down weights of
Table 3 follow the run's own progress iteration / ``train.max_iter`` (handed to the
assigner by the trainer's ``TrainingProgressHook``).
"""
from detectron2.config import LazyCall as L

from dsla_d2.assigners.atss import DynamicATSSAssigner
from dsla_d2.model_zoo import NODES, get_config

dataloader, lr_multiplier, model, optimizer, train = get_config("configs/atss_R_50_FPN_1x.py", keys=NODES)

model.assigner = L(DynamicATSSAssigner)(
    topk=9,
    center_margin=0.01,
    regression_weight="centerness",
    anchor_iou_weight=1.0,  # w_a
    pred_iou_weight=1.0,  # w_p
)
