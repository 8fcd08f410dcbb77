"""Box refinement (DW, Li et al., CVPR 2022, §3.4, eqs. 9-10; the authors' ``dw_head.py``).

Points near an object's boundary locate that boundary better than the centre does. From a
coarse LTRB box (l, t, r, b) at the point (x, y) of grid cell (i, j), a learned 8-channel
offset o = (o0..o7) (a 3×3 conv on the regression tower, init N(0, 0.01), bias 0) picks
one boundary point per side, in grid units::

    X1 at (i + o0,         j + o1 − l/s)      Y1 at (i + o2 − t/s, j + o3)
    X2 at (i + o4,         j + o5 + r/s)      Y2 at (i + o6 + b/s, j + o7)

where X1 = x − l, Y1 = y − t, X2 = x + r, Y2 = y + b are the coarse maps of absolute box
sides. Each side map is sampled bilinearly at its point (zero outside the map), and the
refined distances are l' = ReLU(x − X1(·)), t' = ReLU(y − Y1(·)), r' = ReLU(X2(·) − x),
b' = ReLU(Y2(·) − y).

Implementation: the four samplings are one depthwise 1×1 deformable convolution with fixed
unit weights and four groups (one offset pair per side map), i.e.
``torchvision.ops.deform_conv2d`` — the op the deformable tower convs already use, with the
same bilinear, zero-outside sampling and gradients to both the sampled maps and the
offsets. ``grid_sample`` would do the same after normalising every coordinate to [−1, 1]
and reshaping to one channel per sample set; the deformable conv takes the offsets in grid
units as the paper writes them.

Usable by any head with LTRB distances (exp or ReLU output): :class:`TowerHead` builds one
with ``box_refinement=True``.
"""
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.ops import deform_conv2d

__all__ = ["BoxRefinement", "refine_ltrb"]


def refine_ltrb(distances: Tensor, offsets: Tensor, stride: float, point_offset: float = 0.5) -> Tensor:
    """Refined LTRB distances (eqs. 9-10).

    Args:
        distances: (N, 4, H, W) coarse (l, t, r, b) in pixels, ≥ 0 for a detector's output.
        offsets: (N, 8, H, W) learned offsets (o0..o7) in grid units, (dy, dx) per side.
        stride: the level's stride s.
        point_offset: the point of cell (i, j) is at ((j + offset)·s, (i + offset)·s).
    Returns:
        (N, 4, H, W) refined (l', t', r', b') in pixels.
    """
    n, _, h, w = distances.shape
    distances = distances.float()
    offsets = offsets.float()
    x = ((torch.arange(w, device=distances.device, dtype=distances.dtype) + point_offset) * stride).view(1, w)
    y = ((torch.arange(h, device=distances.device, dtype=distances.dtype) + point_offset) * stride).view(h, 1)
    l, t, r, b = distances.unbind(dim=1)  # (N, H, W) each
    sides = torch.stack([x - l, y - t, x + r, y + b], dim=1)  # absolute X1, Y1, X2, Y2
    d = distances / stride
    o = offsets.unbind(dim=1)
    # deform_conv2d's offset layout: per group (= side map), (dy, dx) of its single tap
    shifts = torch.stack([o[0], o[1] - d[:, 0], o[2] - d[:, 1], o[3], o[4], o[5] + d[:, 2], o[6] + d[:, 3], o[7]], dim=1)
    unit = sides.new_ones(4, 1, 1, 1)  # depthwise 1×1, 4 groups, fixed unit weights
    x1, y1, x2, y2 = deform_conv2d(sides, shifts, unit).unbind(dim=1)
    return F.relu(torch.stack([x - x1, y - y1, x2 - x, y2 - y], dim=1))


class BoxRefinement(nn.Module):
    """The learned part of the refinement: the 8-channel offset conv (3×3, on the
    regression tower's features), init N(0, 0.01) with zero bias as in the code.

    Args:
        channels: channels of the regression tower.
    """

    def __init__(self, channels: int):
        super().__init__()
        self.offset_conv = nn.Conv2d(channels, 8, 3, padding=1)
        nn.init.normal_(self.offset_conv.weight, std=0.01)
        nn.init.zeros_(self.offset_conv.bias)

    def forward(self, reg_feat: Tensor, distances: Tensor, stride: float, point_offset: float = 0.5) -> Tensor:
        """(N, C, H, W) tower features and (N, 4, H, W) coarse distances in pixels ->
        (N, 4, H, W) refined distances in pixels."""
        return refine_ltrb(distances, self.offset_conv(reg_feat), stride, point_offset)
