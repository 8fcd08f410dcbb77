"""DW's candidate bags and centre prior (Li et al., "A Dual Weighting Label Assignment
Scheme for Object Detection", CVPR 2022, §3.1 and §4.1 "Construction of Candidate Bag").

The assigner decides *who*: for every gt g, its candidate bag — the points that may learn
g with a positive weight — and each member's centre prior G. How much each member weighs
(w_pos, P_neg, with gradient where the code has it) is :class:`dsla_d2.losses.DWLoss`'s
business; it reads the bags from ``Assignment.pairs``.

Bags (``bag``), all built from the points **strictly inside** g on **every** level (no
scale ranges, no center sampling: the authors' ``inside_gt_bbox_mask``):

* ``"soft_prior"`` (default, the code and Table 4's best row): every inside point, with
  G = exp(−dx²/(2σ²))·exp(−dy²/(2σ²)), (dx, dy) = (point − gt centre)/stride, σ = 1.11
  (the code's ``CenterPrior``: mean 0, sigma 1 + 0.11, fixed);
* ``"hard_prior"`` (the code's ``soft_prior=False``): the same bag, G = 1 where the soft
  G > 0.3, else 0 (members with G = 0 stay in the bag: they still enter P_neg's per-bag
  rescaling, as in the code);
* ``"threshold"`` (Table 4, rows 1-5): the inside points whose stride-normalised distance
  to the gt centre sqrt(dx² + dy²) is < ``distance_threshold``; G = 1;
* ``"topk"`` (Table 4, rows 6-8): on each level, the ``topk`` inside points nearest to the
  gt centre; G = 1.

The paper only says these three constructions are "based on the distance (normalized by
the feature stride) from the anchor point to the GT centre"; we take the Euclidean distance
and keep the strictly-inside condition for all of them (the code applies it to every
weight). A gt whose bag is empty (a box between grid points) gets no positive loss, as in
the code.

Pairs are enumerated sparsely (:func:`~dsla_d2.assigners.pairs.inside_box_pairs`: the
priors under each gt's box from the grid geometry — or in bounded blocks for a point set —
then the exact strict-inside test on the real point coordinates): memory and time follow
the number of in-bag pairs, never points × gts.

Dense per-prior fields (for generic tools: visualiser, statistics): a prior is labelled
with the gt whose bag holds it with the largest G (ties: lowest gt index;
:class:`~dsla_d2.assigners.winners.PriorWinners`), ``cls_scores`` and ``reg_weights`` are
that G; priors in no bag, or only with G = 0, are background.
:class:`~dsla_d2.losses.DWLoss` does not read these fields.
"""
from typing import Mapping, Optional

import torch
from torch import Tensor

from ..priors import Priors
from ..utils.progress import TrainingProgress
from .base import ASSIGNER_REGISTRY, Assignment, DenseAssigner, GTBatch
from .pairs import CandidatePairs, inside_box_pairs, rank_in_segments
from .winners import PriorWinners

__all__ = ["DWAssigner", "BAGS", "inside_pairs", "center_prior"]

BAGS = ("soft_prior", "hard_prior", "threshold", "topk")


def inside_pairs(priors: Priors, gt: GTBatch, max_offset: Optional[float] = None) -> CandidatePairs:
    """Every (image, point, gt) with the point strictly inside the valid gt, on all levels
    (with ``max_offset`` = k: at least those within k grid spacings of the gt centre along x
    and y, which hold every level's k nearest inside points; see ``inside_box_pairs``).

    Returns:
        pairs sorted by (image, gt, prior), with ``values["offset"]`` (P, 2): the
        stride-normalised offset (point − gt centre)/stride.
    """
    pairs = inside_box_pairs(priors, gt.boxes, gt.valid, gt.centers, max_offset)
    pairs.values["offset"] = (pairs.of_prior(priors.points) - pairs.of_gt(gt.centers)) / pairs.of_prior(priors.strides)[:, None]
    return pairs


def center_prior(offset: Tensor, sigma: float) -> Tensor:
    """Soft centre prior G = exp(−dx²/(2σ²))·exp(−dy²/(2σ²)) of (P, 2) stride-normalised
    offsets (dx, dy) -> (P,)."""
    return torch.exp(-(offset**2).sum(dim=-1) / (2 * sigma**2))


@ASSIGNER_REGISTRY.register()
class DWAssigner(DenseAssigner):
    """Candidate bags and centre prior of DW (see the module docstring).

    Args:
        bag: "soft_prior", "hard_prior", "threshold" or "topk".
        sigma: σ of the centre prior in strides (1.11 in the code; fixed, not learned).
        hard_prior_threshold: "hard_prior" keeps G > this (0.3 in the code) as 1.
        distance_threshold: "threshold": radius in strides (Table 4: 1, 1.3, 1.7, 2, 2.5).
        topk: "topk": points per level (Table 4: 9, 12, 15).
    """

    def __init__(
        self,
        bag: str = "soft_prior",
        sigma: float = 1.11,
        hard_prior_threshold: float = 0.3,
        distance_threshold: float = 1.7,
        topk: int = 9,
    ):
        super().__init__()
        if bag not in BAGS:
            raise ValueError(f"bag={bag!r} is not one of {BAGS}")
        for name, value in (("sigma", sigma), ("distance_threshold", distance_threshold), ("topk", topk)):
            if not value > 0:
                raise ValueError(f"{name}={value} must be > 0")
        if not 0 <= hard_prior_threshold < 1:
            raise ValueError(f"hard_prior_threshold={hard_prior_threshold} must be in [0, 1)")
        self.bag = bag
        self.sigma = float(sigma)
        self.hard_prior_threshold = float(hard_prior_threshold)
        self.distance_threshold = float(distance_threshold)
        self.topk = int(topk)

    def candidate_bags(self, priors: Priors, gt: GTBatch) -> CandidatePairs:
        """The bags as pairs with ``values["center_prior"]`` (P,) = G."""
        pairs = inside_pairs(priors, gt, max_offset=self.topk if self.bag == "topk" else None)
        offset = pairs.values.pop("offset")
        if self.bag in ("soft_prior", "hard_prior"):
            g = center_prior(offset, self.sigma)
            if self.bag == "hard_prior":
                g = (g > self.hard_prior_threshold).to(g.dtype)
        else:
            dist2 = (offset**2).sum(dim=-1)
            if self.bag == "threshold":
                keep = dist2 < self.distance_threshold**2
            else:  # one segment per (image, gt, level): the k nearest inside points each
                segment = pairs.bag * len(priors.num_per_level) + priors.levels[pairs.prior]
                keep = rank_in_segments(segment, dist2) < self.topk
            pairs = pairs.select(keep)
            g = torch.ones(len(pairs), dtype=offset.dtype, device=offset.device)
        pairs.values["center_prior"] = g
        return pairs

    def assign(
        self,
        priors: Priors,
        gt: GTBatch,
        num_classes: int,
        predictions: Mapping[str, Tensor],
        progress: Optional[TrainingProgress] = None,
    ) -> Assignment:
        bad = gt.valid & ((gt.classes < 0) | (gt.classes >= num_classes))
        if bad.any():
            raise ValueError(f"gt classes {gt.classes[bad].unique().tolist()} outside [0, {num_classes})")
        pairs = self.candidate_bags(priors, gt)
        # Dense fields for generic tools: the bag with the largest G (ties: lowest gt index).
        g = pairs.values["center_prior"]
        winners = PriorWinners(gt.boxes.shape[0], len(priors), ("max", "min"), device=g.device)
        member = (g > 0).nonzero().squeeze(1)
        winners.update(pairs.take(member), [g.index_select(0, member)], {"center_prior": g.index_select(0, member)})
        best = winners.value("center_prior", g.dtype)
        return Assignment.from_matches(gt, winners.matched, num_classes, cls_scores=best, reg_weights=best, pairs=pairs)
