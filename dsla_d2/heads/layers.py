"""Small layers used by the heads: per-level scale and a torchvision deformable conv."""
import torch
from torch import Tensor, nn
from torchvision.ops import deform_conv2d

__all__ = ["Scale", "DeformConv3x3"]


class Scale(nn.Module):
    """A learnable scalar multiplier (one per FPN level in FCOS-style heads)."""

    def __init__(self, init_value: float = 1.0):
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(float(init_value)))

    def forward(self, x: Tensor) -> Tensor:
        return x * self.scale


class DeformConv3x3(nn.Module):
    """3×3 deformable conv (DCNv1, or DCNv2 with ``modulated``) on
    ``torchvision.ops.deform_conv2d``; offsets (and mask) come from a plain 3×3 conv
    initialised to zero, so it starts as a regular conv. Offsets use torchvision's
    interleaved (dy, dx) layout, one offset group.
    """

    def __init__(self, in_channels: int, out_channels: int, modulated: bool = False, bias: bool = True):
        super().__init__()
        self.modulated = modulated
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels, 3, 3))
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        self.offset_conv = nn.Conv2d(in_channels, (3 if modulated else 2) * 9, 3, padding=1)
        nn.init.normal_(self.weight, std=0.01)
        nn.init.zeros_(self.offset_conv.weight)
        nn.init.zeros_(self.offset_conv.bias)

    def forward(self, x: Tensor) -> Tensor:
        out = self.offset_conv(x)
        mask = None
        if self.modulated:
            offset, mask = out[:, :18], out[:, 18:].sigmoid()
        else:
            offset = out
        return deform_conv2d(x, offset, self.weight, self.bias, padding=(1, 1), mask=mask)
