"""Dense priors: the locations (and square anchors) a dense detector predicts from.

Anchor-free methods (FCOS, DSLA, FoveaBox) use the centres of the priors as "points";
anchor-based ones (ATSS, DDOD) also use the boxes. Both come from Detectron2's
:class:`~detectron2.modeling.anchor_generator.DefaultAnchorGenerator` with one square anchor
per location, so a point at row i, column j of a level with stride s sits at
((j + offset)·s, (i + offset)·s).
"""
from dataclasses import dataclass
from typing import List, Optional, Tuple

import torch
from torch import Tensor, nn

from detectron2.modeling.anchor_generator import DefaultAnchorGenerator

__all__ = ["Priors", "PriorGenerator"]


@dataclass
class Priors:
    """All priors of all levels of a batch (they are the same for every image).

    Attributes:
        points: (R, 2) centres (x, y) in input-image pixels, levels concatenated in order.
        anchors: (R, 4) square anchors XYXY around the points (side = anchor_scale·stride).
        strides: (R,) float stride of each prior's level.
        levels: (R,) int64 level index (0 for the first head_in_feature).
        num_per_level: number of priors on each level (sums to R).
        grid_sizes: (H_l, W_l) of each level when the priors form a regular grid (row-major
            within a level, point of row i, column j at ((j + offset)·s_l, (i + offset)·s_l));
            None for an arbitrary point set. Lets assigners enumerate the priors near a box
            from the grid geometry instead of testing all of them.
        level_strides: s_l of each level (with ``grid_sizes``).
        offset: the location offset in strides (with ``grid_sizes``).
    """

    points: Tensor
    anchors: Tensor
    strides: Tensor
    levels: Tensor
    num_per_level: List[int]
    grid_sizes: Optional[List[Tuple[int, int]]] = None
    level_strides: Optional[List[float]] = None
    offset: Optional[float] = None

    def __len__(self):
        return self.points.shape[0]

    def per_level(self, table) -> Tensor:
        """Expand a per-level table (L rows, e.g. size ranges (lo, hi)) to one row per
        prior: (L, ...) -> (R, ...)."""
        table = torch.as_tensor(table, dtype=self.points.dtype, device=self.points.device)
        if table.shape[0] != len(self.num_per_level):
            raise ValueError(f"{table.shape[0]} per-level values given for {len(self.num_per_level)} levels")
        return table[self.levels]

    def split(self, tensor: Tensor, dim: int = 1) -> List[Tensor]:
        """Split a tensor whose ``dim`` runs over priors into per-level chunks."""
        return list(torch.split(tensor, self.num_per_level, dim=dim))


class PriorGenerator(nn.Module):
    """One square anchor per location on each level.

    Args:
        strides: stride of each level, e.g. (8, 16, 32, 64, 128).
        offset: location offset in units of stride; 0.5 puts points at cell centres
            (FCOS, ATSS, FoveaBox); 0 at cell corners (the DSLA and DDOD code).
        anchor_scale: anchor side in strides (8 for ATSS; irrelevant for point methods).
    """

    def __init__(self, strides, offset: float = 0.5, anchor_scale: float = 8.0):
        super().__init__()
        self.strides = [int(s) for s in strides]
        self.offset = float(offset)
        self.anchor_scale = float(anchor_scale)
        self.anchor_generator = DefaultAnchorGenerator(
            sizes=[[anchor_scale * s] for s in self.strides],
            aspect_ratios=[[1.0]],
            strides=self.strides,
            offset=self.offset,
        )

    def forward(self, features: List[Tensor]) -> Priors:
        if len(features) != len(self.strides):
            raise ValueError(
                f"PriorGenerator has {len(self.strides)} strides but got {len(features)} levels"
            )
        anchors = [b.tensor for b in self.anchor_generator(features)]
        num_per_level = [a.shape[0] for a in anchors]
        anchors = torch.cat(anchors, dim=0)
        device = anchors.device
        points = (anchors[:, :2] + anchors[:, 2:]) / 2
        strides = torch.cat(
            [torch.full((n,), float(s), device=device) for n, s in zip(num_per_level, self.strides)]
        )
        levels = torch.cat(
            [torch.full((n,), i, dtype=torch.long, device=device) for i, n in enumerate(num_per_level)]
        )
        grid_sizes = [tuple(int(v) for v in f.shape[-2:]) for f in features]
        return Priors(
            points, anchors, strides, levels, num_per_level,
            grid_sizes=grid_sizes, level_strides=[float(s) for s in self.strides], offset=self.offset,
        )
