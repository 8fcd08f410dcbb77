"""Checkpoints of other code bases converted to dsla_d2's layout: mmdetection detectors
(:mod:`.mmdet`) and torchvision ImageNet backbones (:mod:`.torchvision`), checked tensor by
tensor against the model they are converted for (:mod:`.mapping`), and written as run
directories that serving, ``--eval-only`` and fine-tuning accept (:mod:`.run_dir`)."""
from .mapping import ConversionError, KeyRule, convert_state_dict
from .mmdet import MMDET_HEADS, mmdet_rules
from .torchvision import torchvision_resnet_rules

__all__ = ["ConversionError", "KeyRule", "convert_state_dict", "MMDET_HEADS", "mmdet_rules", "torchvision_resnet_rules"]
