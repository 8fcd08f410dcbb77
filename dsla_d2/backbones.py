"""Backbone helpers for lazy configs (built from Detectron2's own ResNet blocks).

Lazy configs are saved to ``config.yaml`` and read back for serving, so they must hold
plain values only; a block class given as an argument would not survive the round trip.
"""
from typing import List, Sequence

from torch import Tensor

from detectron2.modeling.backbone import ResNet
from detectron2.modeling.backbone.fpn import LastLevelP6P7
from detectron2.modeling.backbone.resnet import BasicBlock

__all__ = ["basic_block_stages", "LastLevelP6P7NoReLU"]


def basic_block_stages(widths: Sequence[int] = (64, 128, 256, 512), blocks: Sequence[int] = (2, 2, 2, 2), stem_channels: int = 64, norm: str = "BN") -> List[list]:
    """ResNet stages res2..res5 of BasicBlocks with arbitrary widths (ResNet-18 by
    default); res2 keeps the stem's resolution, each later stage halves it."""
    stages, cin = [], stem_channels
    for i, (width, n) in enumerate(zip(widths, blocks)):
        stride = 1 if i == 0 else 2
        stages.append(
            ResNet.make_stage(
                block_class=BasicBlock,
                num_blocks=n,
                in_channels=cin,
                out_channels=width,
                stride_per_block=[stride] + [1] * (n - 1),
                norm=norm,
            )
        )
        cin = width
    return stages


class LastLevelP6P7NoReLU(LastLevelP6P7):
    """FPN top block P6 = conv3×3/2(x), P7 = conv3×3/2(P6) — **no ReLU between them**.

    Detectron2's ``LastLevelP6P7`` computes P7 from ReLU(P6) (RetinaNet, FCOS, ATSS;
    mmdetection's FPN with ``relu_before_extra_convs=True``). mmdetection's FPN without that
    flag — its FoveaBox recipe (``fovea_r50_fpn_4x4_1x_coco``, 36.5 AP) — applies the P7 conv
    to P6 itself. Same layers and initialisation as Detectron2's block.

    Args: as ``LastLevelP6P7`` (``in_channels`` of ``in_feature``, ``out_channels``).
    Returns from ``forward(x: (N, in_channels, H, W))``: [P6 (N, out, ⌈H/2⌉, ⌈W/2⌉), P7].
    """

    def forward(self, x: Tensor) -> List[Tensor]:
        p6 = self.p6(x)
        return [p6, self.p7(p6)]
