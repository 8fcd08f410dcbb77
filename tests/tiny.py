"""Tiny models and inputs shared by the tests (a 2-level backbone, 64-px images)."""
import torch
from torch import nn

import dsla_d2  # noqa: F401
from detectron2.layers import ShapeSpec
from detectron2.modeling import Backbone
from detectron2.structures import Boxes, Instances

from dsla_d2.assigners import FCOSAssigner
from dsla_d2.box_coders import LTRBBoxCoder
from dsla_d2.heads import FCOSHead
from dsla_d2.losses import DenseDetectionLoss
from dsla_d2.meta_arch import DslaFCOS
from dsla_d2.priors import PriorGenerator
from dsla_d2.quality import QualityCoupling


class TwoLevelBackbone(Backbone):
    """p3 (stride 8) and p4 (stride 16), 16 channels: conv-stride stacks."""

    def __init__(self, channels=16):
        super().__init__()
        self.p3 = nn.Sequential(nn.Conv2d(3, channels, 3, 2, 1), nn.ReLU(), nn.Conv2d(channels, channels, 3, 2, 1), nn.ReLU(), nn.Conv2d(channels, channels, 3, 2, 1))
        self.p4 = nn.Conv2d(channels, channels, 3, 2, 1)
        self.channels = channels

    def forward(self, x):
        p3 = self.p3(x)
        return {"p3": p3, "p4": self.p4(torch.relu(p3))}

    def output_shape(self):
        return {"p3": ShapeSpec(channels=self.channels, stride=8), "p4": ShapeSpec(channels=self.channels, stride=16)}

    @property
    def size_divisibility(self):
        return 16


def tiny_fcos(num_classes=3, assigner=None, quality=None, loss=None, head_kwargs=None, **kwargs):
    torch.manual_seed(0)
    head = dict(in_channels=16, num_classes=num_classes, num_levels=2, channels=16, num_convs=1, norm="")
    head.update(head_kwargs or {})
    quality = quality or QualityCoupling(branch="centerness")
    if quality.branch is None:
        head.setdefault("quality_branch", None)
    return DslaFCOS(
        backbone=TwoLevelBackbone(),
        head=FCOSHead(**head),
        head_in_features=["p3", "p4"],
        prior_generator=PriorGenerator([8, 16], offset=kwargs.pop("offset", 0.5)),
        box_coder=kwargs.pop("box_coder", LTRBBoxCoder()),
        assigner=assigner or FCOSAssigner(size_ranges=[[0, 32], [32, 1e8]]),
        quality=quality,
        loss=loss or DenseDetectionLoss(cls_loss="focal", box_loss="giou", box_normalizer="sum_weights"),
        num_classes=num_classes,
        pixel_std=[57.0, 57.0, 57.0],
        **kwargs,
    )


def make_inputs(boxes_per_image, classes_per_image=None, size=64, seed=0):
    """A training batch: list of dicts with a random image and the given gt boxes."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for i, boxes in enumerate(boxes_per_image):
        inst = Instances((size, size))
        boxes = torch.as_tensor(boxes, dtype=torch.float32).reshape(-1, 4)
        inst.gt_boxes = Boxes(boxes)
        if classes_per_image is None:
            inst.gt_classes = torch.zeros(len(boxes), dtype=torch.long)
        else:
            inst.gt_classes = torch.as_tensor(classes_per_image[i], dtype=torch.long)
        out.append({"image": torch.rand(3, size, size, generator=g) * 255, "instances": inst, "height": size, "width": size})
    return out


def gt_instances(boxes, classes, size=(64, 64)):
    inst = Instances(size)
    inst.gt_boxes = Boxes(torch.as_tensor(boxes, dtype=torch.float32).reshape(-1, 4))
    inst.gt_classes = torch.as_tensor(classes, dtype=torch.long)
    return inst
