"""The FCOS assigner (Tian et al., FCOS, ICCV 2019; "FCOSv2" options from TPAMI 2020)."""
from typing import Sequence, Tuple

import torch

from ..box_ops import center_sampling_mask, centerness_from_ltrb, point_box_ltrb
from ..priors import Priors
from .base import ASSIGNER_REGISTRY, Assignment, DenseAssigner, GTBatch

__all__ = ["FCOSAssigner", "DEFAULT_SIZE_RANGES"]

INF = 1e8
DEFAULT_SIZE_RANGES = ((0, 64), (64, 128), (128, 256), (256, 512), (512, INF))


@ASSIGNER_REGISTRY.register()
class FCOSAssigner(DenseAssigner):
    """A location is positive for a gt if it lies inside the box (or inside the centre
    region with center sampling) and the largest distance m = max(l, t, r, b) to the box
    sides falls in its level's size range [lo, hi]. A location positive for several gts
    takes the one with the smallest area (FCOS §3.2).

    Args:
        size_ranges: (lo, hi) per level in pixels.
        center_sampling_radius: 0 disables; FCOSv2 uses 1.5 (strides).
        regression_weight: "centerness" weights each positive's box loss by its centerness
            target (the FCOS reference code); "uniform" weights them 1.
    """

    def __init__(
        self,
        size_ranges: Sequence[Tuple[float, float]] = DEFAULT_SIZE_RANGES,
        center_sampling_radius: float = 0.0,
        regression_weight: str = "centerness",
    ):
        super().__init__()
        if regression_weight not in ("centerness", "uniform"):
            raise ValueError(f"regression_weight must be 'centerness' or 'uniform', got {regression_weight!r}")
        self.size_ranges = [tuple(float(v) for v in r) for r in size_ranges]
        self.center_sampling_radius = float(center_sampling_radius)
        self.regression_weight = regression_weight

    def assign(self, priors: Priors, gt: GTBatch, num_classes: int, **preds) -> Assignment:
        ltrb = point_box_ltrb(priors.points, gt.boxes)  # (N, R, G, 4)
        if self.center_sampling_radius > 0:
            inside = center_sampling_mask(priors.points, priors.strides, gt.boxes, self.center_sampling_radius)
        else:
            inside = ltrb.min(dim=-1).values > 0
        m = ltrb.max(dim=-1).values
        lo, hi = priors.per_level(self.size_ranges).unbind(-1)
        in_range = (m >= lo[None, :, None]) & (m <= hi[None, :, None])
        candidate = inside & in_range & gt.valid[:, None, :]

        areas = gt.areas[:, None, :].expand_as(m)
        areas = torch.where(candidate, areas, torch.full_like(areas, float("inf")))
        if areas.shape[-1]:
            min_area, matched = areas.min(dim=-1)  # ties: lowest gt index
            matched = torch.where(torch.isfinite(min_area), matched, torch.full_like(matched, -1))
        else:
            matched = torch.full(m.shape[:2], -1, dtype=torch.long, device=m.device)

        reg_weights = None
        if self.regression_weight == "centerness":
            idx = matched.clamp(min=0)[..., None, None].expand(-1, -1, 1, 4)
            own = torch.gather(ltrb, 2, idx).squeeze(2) if ltrb.shape[2] else torch.zeros(*matched.shape, 4, device=m.device)
            reg_weights = centerness_from_ltrb(own)
        return Assignment.from_matches(gt, matched, num_classes, reg_weights=reg_weights)
