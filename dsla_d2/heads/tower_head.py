"""FCOS-style dense heads: two conv towers, class/box outputs, optional quality branch."""
import math
from typing import Dict, List, Optional, Sequence

import torch
from torch import Tensor, nn

from detectron2.layers import get_norm

from .layers import DeformConv3x3, Scale
from .registry import DENSE_HEAD_REGISTRY

__all__ = ["TowerHead", "FCOSHead", "ATSSHead", "DSLAHead", "FoveaBoxHead"]

BOX_ACTIVATIONS = ("exp", "relu", "none")


def _tower(in_channels, channels, num_convs, norm, deformable, modulated, bias):
    layers = []
    for i in range(num_convs):
        cin = in_channels if i == 0 else channels
        if i in deformable:
            conv = DeformConv3x3(cin, channels, modulated=modulated, bias=bias)
        else:
            conv = nn.Conv2d(cin, channels, 3, padding=1, bias=bias)
            nn.init.normal_(conv.weight, std=0.01)
            if bias:
                nn.init.zeros_(conv.bias)
        layers.append(conv)
        if norm:
            layers.append(get_norm(norm, channels))
        layers.append(nn.ReLU())
    return nn.Sequential(*layers)


def _out_conv(channels, out, bias_init=0.0):
    conv = nn.Conv2d(channels, out, 3, padding=1)
    nn.init.normal_(conv.weight, std=0.01)
    nn.init.constant_(conv.bias, bias_init)
    return conv


@DENSE_HEAD_REGISTRY.register()
class TowerHead(nn.Module):
    """Classification and regression towers shared over FPN levels.

    Args:
        in_channels: channels of every input level.
        num_classes: C.
        num_levels: number of FPN levels (one learnable scale each).
        channels: tower width (256 in the papers).
        num_convs: convs per tower (4 in the papers).
        norm: "GN" (GroupNorm(32)), "BN", "" for none.
        prior_prob: initial foreground probability of the class output (bias init).
        quality_branch: None, "cls" or "reg": the tower that carries a 1-channel quality
            output (centerness / IoU). FCOSv1 put centerness on the cls tower, FCOSv2
            and ATSS on the reg tower.
        box_activation: "exp" (FCOS, exp(s·x) in pixels), "relu" (FCOSv2 norm_on_bbox,
            ReLU(s·x) in strides), "none" (linear: deltas, FoveaBox log-space).
        learnable_scale: a learnable scalar per level on the box output.
        deformable_convs: indices of tower convs that are deformable (FCOSv2-DSLA: the
            last one, 3; DDOD: the first one, 0).
        modulated_deform: DCNv2 (with mask) instead of DCNv1.
        conv_bias: bias in tower convs.
        box_bias_init: initial bias of the box output (e.g. 1.5 in DDOD-FCOS, 4 in DW).
    """

    def __init__(
        self,
        *,
        in_channels: int,
        num_classes: int,
        num_levels: int,
        channels: int = 256,
        num_convs: int = 4,
        norm: str = "GN",
        prior_prob: float = 0.01,
        quality_branch: Optional[str] = None,
        box_activation: str = "exp",
        learnable_scale: bool = True,
        deformable_convs: Sequence[int] = (),
        modulated_deform: bool = False,
        conv_bias: bool = True,
        box_bias_init: float = 0.0,
    ):
        super().__init__()
        if quality_branch not in (None, "cls", "reg"):
            raise ValueError(f"quality_branch={quality_branch!r}: expected None, 'cls' or 'reg'")
        if box_activation not in BOX_ACTIVATIONS:
            raise ValueError(f"box_activation={box_activation!r}: expected one of {BOX_ACTIVATIONS}")
        bad = [i for i in deformable_convs if not 0 <= i < num_convs]
        if bad:
            raise ValueError(f"deformable_convs {bad} out of range for {num_convs} tower convs")
        self.num_classes = num_classes
        self.quality_branch = quality_branch
        self.box_activation = box_activation
        deformable = set(int(i) for i in deformable_convs)
        self.cls_tower = _tower(in_channels, channels, num_convs, norm, deformable, modulated_deform, conv_bias)
        self.reg_tower = _tower(in_channels, channels, num_convs, norm, deformable, modulated_deform, conv_bias)
        self.cls_logits = _out_conv(channels, num_classes, -math.log((1 - prior_prob) / prior_prob))
        self.box_reg = _out_conv(channels, 4, box_bias_init)
        self.quality = _out_conv(channels, 1) if quality_branch else None
        self.scales = nn.ModuleList([Scale(1.0) for _ in range(num_levels)]) if learnable_scale else None

    def forward(self, features: List[Tensor]) -> Dict[str, List[Tensor]]:
        out = {"cls_logits": [], "box_reg": []}
        if self.quality is not None:
            out["quality"] = []
        for level, x in enumerate(features):
            cls_feat = self.cls_tower(x)
            reg_feat = self.reg_tower(x)
            out["cls_logits"].append(self.cls_logits(cls_feat))
            box = self.box_reg(reg_feat).float()
            if self.scales is not None:
                box = self.scales[level](box)
            if self.box_activation == "exp":
                box = torch.exp(box.clamp(max=20.0))  # clamp: a finite box even early on
            elif self.box_activation == "relu":
                box = torch.relu(box)
            out["box_reg"].append(box)
            if self.quality is not None:
                feat = cls_feat if self.quality_branch == "cls" else reg_feat
                out["quality"].append(self.quality(feat))
        return out


@DENSE_HEAD_REGISTRY.register()
class FCOSHead(TowerHead):
    """FCOS: centerness branch (on the reg tower by default, FCOSv2), exp box output."""

    def __init__(self, *, quality_branch: Optional[str] = "reg", **kwargs):
        super().__init__(quality_branch=quality_branch, **kwargs)


@DENSE_HEAD_REGISTRY.register()
class ATSSHead(TowerHead):
    """ATSS: delta regression (linear, scaled per level), centerness on the reg tower."""

    def __init__(self, *, quality_branch: Optional[str] = "reg", box_activation: str = "none", **kwargs):
        super().__init__(quality_branch=quality_branch, box_activation=box_activation, **kwargs)


@DENSE_HEAD_REGISTRY.register()
class DSLAHead(TowerHead):
    """DSLA: two branches only — quality is merged into the classification target."""

    def __init__(self, *, quality_branch: Optional[str] = None, **kwargs):
        super().__init__(quality_branch=quality_branch, **kwargs)


@DENSE_HEAD_REGISTRY.register()
class FoveaBoxHead(TowerHead):
    """FoveaBox: log-space box output (linear, no per-level scale), no quality branch."""

    def __init__(self, *, quality_branch: Optional[str] = None, box_activation: str = "none", learnable_scale: bool = False, **kwargs):
        super().__init__(quality_branch=quality_branch, box_activation=box_activation, learnable_scale=learnable_scale, **kwargs)
