"""mmdetection's ``fovea_r50_fpn_4xb4-1x_coco`` (COCO val 36.5 AP), for its converted
checkpoint (``tools/convert_checkpoint.py mmdet --zoo fovea_r50_fpn_4xb4-1x_coco``).

``configs/foveabox_R_50_FPN_1x.py`` (mmdetection's recipe: P6 from C5, no ReLU before P7)
with a PyTorch-style ResNet and RGB ImageNet input (``configs/common/mmdet.py``), towers without GroupNorm
(conv + bias + ReLU), the exp box output uncapped and boxes clipped to the last pixel
([0, W-1] x [0, H-1]) as mmdetection's FoveaHead decodes them, and mmdetection 3.x's
candidate rule (FoveaHead has no ``min_bbox_size``: nothing is dropped before NMS).
"""
from dsla_d2.model_zoo import NODES, get_config

from ..common.mmdet import mmdet3_inference, pytorch_style

dataloader, lr_multiplier, model, optimizer, train = get_config("configs/foveabox_R_50_FPN_1x.py", keys=NODES)

pytorch_style(model, train)
model.head.norm = ""
model.box_coder.cap_decode = False
model.test_box_clip = "last_pixel"
mmdet3_inference(model, min_box_size=None)
