"""mmdetection's ``ddod_r50_fpn_1x_coco`` (COCO val 41.7 AP), for its converted checkpoint
(``tools/convert_checkpoint.py mmdet --zoo ddod_r50_fpn_1x_coco``).

``projects/DDOD/configs/ddod_R_50_FPN_1x.py`` (the authors' recipe: anchors at offset 0,
deformable first tower convs, IoU branch on the regression tower) with a PyTorch-style
ResNet, RGB ImageNet input and P7 = conv(P6) (``configs/common/mmdet.py``), tower convs without bias (the
deformable ones included), and mmdetection 3.x's candidate rule. The converted model's
level-weighting counters (``loss.level_weighting``, cumulative positives per level, which
mmdetection keeps outside its checkpoints) start at zero, as at the start of a run.
"""
from dsla_d2.model_zoo import NODES, get_config

from ..common.mmdet import mmdet3_inference, pytorch_style

dataloader, lr_multiplier, model, optimizer, train = get_config("projects/DDOD/configs/ddod_R_50_FPN_1x.py", keys=NODES)

pytorch_style(model, train)
model.head.conv_bias = False
mmdet3_inference(model)
