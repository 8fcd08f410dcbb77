"""What mmdetection's single-stage R-50 detectors compute that differs from Detectron2's
defaults; the configs in ``configs/mmdet/`` apply it to our recipes so that converted
mmdetection checkpoints give mmdetection's outputs (``tests/test_mmdet_parity.py``).

* ``pytorch_style``: torchvision's ResNet (mmdetection ``style='pytorch'``: the stride in
  the 3x3 conv, ``stride_in_1x1=False``), RGB input normalised by ImageNet's mean and std
  (``bgr_to_rgb=True``, mean [123.675, 116.28, 103.53], std [58.395, 57.12, 57.375]);
  initialised, for fine-tuning, from torchvision's ImageNet weights
  (``torchvision://resnet50``, converted on first use).
* ``mmdet3_inference``: mmdetection 3.x's candidate rule (per level the top ``nms_pre``
  (location, class) pairs by class probability above ``score_thr``, the quality factor
  multiplied afterwards), boxes flattened by clipping dropped (``min_bbox_size=0``).
"""
from dsla_d2.backbones import LastLevelP6P7NoReLU

IMAGENET_RGB = dict(input_format="RGB", pixel_mean=[123.675, 116.28, 103.53], pixel_std=[58.395, 57.12, 57.375])


def pytorch_style(model, train, relu_before_p7: bool = False):
    """torchvision-style ResNet, RGB + ImageNet statistics; P7 = conv(P6) unless
    ``relu_before_p7`` (mmdetection's ``relu_before_extra_convs``, default False)."""
    model.backbone.bottom_up.stages.stride_in_1x1 = False
    if not relu_before_p7:
        model.backbone.top_block._target_ = LastLevelP6P7NoReLU
    model.update(IMAGENET_RGB)
    train.init_checkpoint = "torchvision://resnet50"
    return model


def mmdet3_inference(model, min_box_size=0.0):
    model.test_topk_mode = "pairs"
    model.test_topk_rank = "cls"
    model.test_min_box_size = min_box_size
    return model
