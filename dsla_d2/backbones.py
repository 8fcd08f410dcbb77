"""Backbone helpers for lazy configs (built from Detectron2's own ResNet blocks).

Lazy configs are saved to ``config.yaml`` and read back for serving, so they must hold
plain values only; a block class given as an argument would not survive the round trip.
"""
from typing import List, Sequence

from detectron2.modeling.backbone import ResNet
from detectron2.modeling.backbone.resnet import BasicBlock

__all__ = ["basic_block_stages"]


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
