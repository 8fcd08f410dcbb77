"""mmdetection's ``fcos_r50-caffe_fpn_gn-head_1x_coco`` (COCO val 36.6 AP), for its converted
checkpoint (``tools/convert_checkpoint.py mmdet --zoo fcos_r50-caffe_fpn_gn-head_1x_coco``).

``configs/fcos_R_50_FPN_1x.py`` (the same recipe) with mmdetection's caffe pixel mean
[102.9801, 115.9465, 122.7717] (Detectron's; Detectron2's MSRA weights use [103.53, 116.28,
123.675]) and mmdetection 3.x's inference (``configs/common/mmdet.py``). Everything else — caffe ResNet,
P7 = conv(ReLU(P6)), GN towers without bias, centerness on the classification tower, exp box
output — is already mmdetection's.
"""
from dsla_d2.model_zoo import NODES, get_config

from ..common.mmdet import mmdet3_inference

dataloader, lr_multiplier, model, optimizer, train = get_config("configs/fcos_R_50_FPN_1x.py", keys=NODES)

model.pixel_mean = [102.9801, 115.9465, 122.7717]
mmdet3_inference(model)
