"""mmdetection's ``atss_r50_fpn_1x_coco`` (COCO val 39.4 AP), for its converted checkpoint
(``tools/convert_checkpoint.py mmdet --zoo atss_r50_fpn_1x_coco``).

``configs/atss_R_50_FPN_1x.py`` (the ATSS authors' recipe) as mmdetection builds it:
PyTorch-style ResNet with RGB ImageNet input and P7 = conv(P6) (``configs/common/mmdet.py``), anchors
centred on the grid points (``center_offset=0``: offset 0, not the cell centre), towers
without conv bias (``ConvModule`` before GN), mmdetection 3.x's inference, NMS 0.6.
"""
from dsla_d2.model_zoo import NODES, get_config

from ..common.mmdet import mmdet3_inference, pytorch_style

dataloader, lr_multiplier, model, optimizer, train = get_config("configs/atss_R_50_FPN_1x.py", keys=NODES)

pytorch_style(model, train)
model.prior_generator.offset = 0.0
model.head.conv_bias = False
mmdet3_inference(model)
