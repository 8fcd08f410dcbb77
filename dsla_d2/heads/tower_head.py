"""FCOS-style dense heads: two conv towers, class/box outputs, optional quality branch."""
import math
from typing import Dict, List, Optional, Sequence

import torch
from torch import Tensor, nn

from detectron2.layers import get_norm

from .box_refinement import BoxRefinement
from .layers import DeformConv3x3, Scale
from .registry import DENSE_HEAD_REGISTRY

__all__ = ["TowerHead", "FCOSHead", "ATSSHead", "DSLAHead", "FoveaBoxHead", "DWHead"]

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
        box_refinement: refine the LTRB box from boundary points of the coarse box
            (DW §3.4, :mod:`dsla_d2.heads.box_refinement`); the refined box replaces the
            coarse one as "box_reg". Needs ``strides`` and an "exp" or "relu" box output.
        strides: stride of each level (with ``box_refinement``; must equal the prior
            generator's, which the meta-architecture checks).
        point_offset: location offset in strides (with ``box_refinement``; the prior
            generator's ``offset``).
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
        box_refinement: bool = False,
        strides: Optional[Sequence[float]] = None,
        point_offset: float = 0.5,
    ):
        super().__init__()
        if quality_branch not in (None, "cls", "reg"):
            raise ValueError(f"quality_branch={quality_branch!r}: expected None, 'cls' or 'reg'")
        if box_activation not in BOX_ACTIVATIONS:
            raise ValueError(f"box_activation={box_activation!r}: expected one of {BOX_ACTIVATIONS}")
        bad = [i for i in deformable_convs if not 0 <= i < num_convs]
        if bad:
            raise ValueError(f"deformable_convs {bad} out of range for {num_convs} tower convs")
        if box_refinement:
            if strides is None or len(strides) != num_levels:
                raise ValueError(f"box_refinement needs one stride per level ({num_levels}); got strides={strides}")
            if box_activation not in ("exp", "relu"):
                raise ValueError(f"box_refinement refines LTRB distances: box_activation 'exp' or 'relu', not {box_activation!r}")
        self.num_classes = num_classes
        self.strides = [float(v) for v in strides] if strides is not None else None
        self.point_offset = float(point_offset)
        self.quality_branch = quality_branch
        self.box_activation = box_activation
        deformable = set(int(i) for i in deformable_convs)
        self.cls_tower = _tower(in_channels, channels, num_convs, norm, deformable, modulated_deform, conv_bias)
        self.reg_tower = _tower(in_channels, channels, num_convs, norm, deformable, modulated_deform, conv_bias)
        self.cls_logits = _out_conv(channels, num_classes, -math.log((1 - prior_prob) / prior_prob))
        self.box_reg = _out_conv(channels, 4, box_bias_init)
        self.quality = _out_conv(channels, 1) if quality_branch else None
        self.scales = nn.ModuleList([Scale(1.0) for _ in range(num_levels)]) if learnable_scale else None
        self.refinement = BoxRefinement(channels) if box_refinement else None

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
            if self.refinement is not None:
                stride = self.strides[level]
                unit = stride if self.box_activation == "relu" else 1.0  # relu: distances in strides
                box = self.refinement(reg_feat, box * unit, stride, self.point_offset) / unit
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


@DENSE_HEAD_REGISTRY.register()
class DWHead(TowerHead):
    """DW (the authors' ``DWHead``): objectness branch on the reg tower (no target of its
    own; ``QualityCoupling(branch="objectness")``), ReLU box output in strides with bias
    4.0, class prior 0.02, tower convs with bias, box refinement on by default."""

    def __init__(
        self,
        *,
        quality_branch: Optional[str] = "reg",
        prior_prob: float = 0.02,
        box_activation: str = "relu",
        box_bias_init: float = 4.0,
        box_refinement: bool = True,
        **kwargs,
    ):
        super().__init__(
            quality_branch=quality_branch,
            prior_prob=prior_prob,
            box_activation=box_activation,
            box_bias_init=box_bias_init,
            box_refinement=box_refinement,
            **kwargs,
        )
