"""The FCOS assigner (Tian et al., FCOS, ICCV 2019; "FCOSv2" options from TPAMI 2020).

Sparse: only the (prior, gt) pairs whose prior lies in the gt's box, within the band its
level's size range allows (:func:`~dsla_d2.assigners.regions.max_distance_regions`), are
ever built; time and memory follow the number of such pairs, not priors × gts.
"""
from typing import Sequence, Tuple

import torch

from ..box_ops import aligned_ltrb, center_sampling_mask, centerness_from_ltrb
from ..priors import Priors
from .base import ASSIGNER_REGISTRY, Assignment, DenseAssigner, GTBatch
from .pairs import region_pair_chunks
from .regions import level_stride_table, level_table, max_distance_regions
from .winners import PriorWinners

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
        n = gt.classes.shape[0]
        ranges = level_table(priors, self.size_ranges)
        radius = self.center_sampling_radius
        lo, hi, active = max_distance_regions(gt.boxes, gt.valid, ranges, level_stride_table(priors), radius)
        areas = gt.areas
        # Ambiguity (FCOS §3.2): the smallest area wins; ties: the lowest gt index.
        # A gt whose area overflows to inf never wins (as the dense argmin over finite areas).
        winners = PriorWinners(n, len(priors), ("min", "min"), device=areas.device)
        for pairs in region_pair_chunks(priors, lo, hi, active):
            points, strides = pairs.of_prior(priors.points), pairs.of_prior(priors.strides)
            box = pairs.of_gt(gt.boxes)
            ltrb = aligned_ltrb(points, box)  # (P, 4)
            if radius > 0:
                inside = center_sampling_mask(points, strides, box, radius)
            else:
                inside = ltrb.min(dim=-1).values > 0
            m = ltrb.max(dim=-1).values
            rng = ranges.index_select(0, pairs.of_prior(priors.levels))
            area = pairs.of_gt(areas)
            keep = (inside & (m >= rng[:, 0]) & (m <= rng[:, 1]) & torch.isfinite(area)).nonzero().squeeze(1)
            values = {}
            if self.regression_weight == "centerness":
                values["centerness"] = centerness_from_ltrb(ltrb.index_select(0, keep))
            winners.update(pairs.take(keep), [area.index_select(0, keep)], values)
        reg_weights = winners.value("centerness", areas.dtype) if self.regression_weight == "centerness" else None
        return Assignment.from_matches(gt, winners.matched, num_classes, reg_weights=reg_weights)
