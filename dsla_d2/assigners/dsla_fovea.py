"""DSLA on FoveaBox — **our own design**.

The DSLA paper (Su, He et al., Pattern Recognition 2022, Table 3) reports FoveaBox w/ DSLA
(36.5 → 37.5 AP, R-50 1x) but gives no recipe and its reference code has no FoveaBox
variant. This assigner applies DSLA's static smooth label (paper §3.2–3.3, eqs. 2–5 as
corrected by the DSLA spec) inside FoveaBox's own geometry:

    label_s(p, g) = c(p, g) · h_l(sqrt(w_g·h_g))

* c: FCOS centerness of point p w.r.t. gt g, denominators ≥ 0.01 (DSLA code), set to 1 in
  the **core zone** |x − cx| ≤ s/2 and |y − cy| ≤ s/2 (s = stride of p's level; DSLA
  eq. 3's "core zone");
* h_l: DSLA's **interval relaxation** (eq. 4 with the code's ramp direction) applied to
  FoveaBox's scale measure sqrt(w·h) and FoveaBox's scale ranges (lo_l, hi_l): 1 on
  [lo_l, hi_l], linear ramps down to 0 at int(lo_l·(1−κ)) and int(hi_l·(1+κ));
* positives: points strictly inside the gt box with label_s > 0 (optionally only inside
  FoveaBox's σ-fovea: ``fovea_region=True``);
* ambiguity: the gt with the **highest** label_s wins (DSLA); ties go to the smaller gt,
  then to the higher index — FoveaBox's painting order, so with binary labels this
  reduces to the baseline's rule.
* sparse: h_l depends only on the gt and the level, so only the levels with h_l > 0 are
  visited, and on them only the points inside the box (or fovea); never an (N, R, G) grid.

The dynamic part (label_d = label_s · IoU of the detached decoded prediction) is the
shared :class:`~dsla_d2.quality.QualityCoupling` with ``cls_target="iou_product"``; QFL,
the Σ label_d / Σ label_s normalisers and the box loss are :class:`DenseDetectionLoss`
settings (see ``projects/DSLA/configs/foveabox_dsla_R_50_FPN_1x.py``).
"""
from typing import Sequence, Tuple

import torch
from torch import Tensor

from ..box_ops import aligned_ltrb, centerness_from_ltrb
from ..priors import Priors
from .base import ASSIGNER_REGISTRY, Assignment, DenseAssigner, GTBatch
from .dsla import core_zone_mask, relaxation_score, relaxed_ranges
from .fovea import FOVEA_SCALE_RANGES, PAINT_ORDER, fovea_mask, gt_sqrt_areas
from .pairs import CandidatePairs, region_pair_chunks
from .regions import centered_regions, level_table
from .winners import PriorWinners

__all__ = ["DSLAFoveaAssigner"]


@ASSIGNER_REGISTRY.register()
class DSLAFoveaAssigner(DenseAssigner):
    """Static smooth labels for FoveaBox (our design, see the module docstring).

    Args:
        scale_ranges: FoveaBox's (lo, hi) of sqrt(w·h) per level (inclusive).
        kappa: DSLA's relaxation factor κ (0.2, the paper's best in Table 2).
        core_zone: DSLA's core zone (centerness := 1 near the centre). Ablation switch.
        relaxation: DSLA's interval relaxation; off, h is the indicator of FoveaBox's
            ranges. Ablation switch.
        fovea_region: restrict positives to FoveaBox's σ-fovea instead of the whole box.
        sigma: FoveaBox's σ, used only with ``fovea_region``.
        centerness_eps: lower bound of the centerness denominators (DSLA code: 0.01).

    ``extras["label_s"]`` is the (N, R) static label of the matched gt (0 elsewhere);
    ``cls_scores`` and ``reg_weights`` are the same tensor.
    """

    def __init__(
        self,
        scale_ranges: Sequence[Tuple[float, float]] = FOVEA_SCALE_RANGES,
        kappa: float = 0.2,
        core_zone: bool = True,
        relaxation: bool = True,
        fovea_region: bool = False,
        sigma: float = 0.4,
        centerness_eps: float = 0.01,
    ):
        super().__init__()
        if not 0 <= kappa < 1:
            raise ValueError(f"kappa must be in [0, 1), got {kappa}")
        if not 0 < sigma <= 1:
            raise ValueError(f"sigma must be in (0, 1], got {sigma}")
        self.scale_ranges = [tuple(float(v) for v in r) for r in scale_ranges]
        self.kappa = float(kappa)
        self.core_zone = bool(core_zone)
        self.relaxation = bool(relaxation)
        self.fovea_region = bool(fovea_region)
        self.sigma = float(sigma)
        self.centerness_eps = float(centerness_eps)
        # (Glo, Ghi) per level; without relaxation the ramps vanish: (lo, hi).
        relaxed = relaxed_ranges(self.scale_ranges, self.kappa)
        self.relaxed_ranges = relaxed if self.relaxation else list(self.scale_ranges)

    def level_scores(self, priors: Priors, gt: GTBatch) -> Tensor:
        """(N, G, L) h_l(sqrt(w·h)) of every gt on every level; 0 for invalid gts."""
        lo, hi = level_table(priors, self.scale_ranges).unbind(-1)
        glo, ghi = level_table(priors, self.relaxed_ranges).unbind(-1)
        h = relaxation_score(gt_sqrt_areas(gt)[..., None], lo, hi, glo, ghi)
        return torch.where(gt.valid[..., None], h, torch.zeros_like(h))

    def static_labels(self, priors: Priors, gt: GTBatch, pairs: CandidatePairs, level_scores: Tensor) -> Tensor:
        """(P,) label_s of (image, point, gt) pairs; 0 where not a candidate.

        Args:
            level_scores: (N, G, L) from :meth:`level_scores`.
        """
        points, strides = pairs.of_prior(priors.points), pairs.of_prior(priors.strides)
        box = pairs.of_gt(gt.boxes)
        ltrb = aligned_ltrb(points, box)  # (P, 4)
        inside = ltrb.min(dim=-1).values > 0  # strict, as DSLA
        c = centerness_from_ltrb(ltrb, eps=self.centerness_eps)
        if self.core_zone:
            core = core_zone_mask(points, strides, box) & inside
            c = torch.where(core, torch.ones_like(c), c)
        h = level_scores[pairs.image, pairs.gt, pairs.of_prior(priors.levels)]
        keep = inside & pairs.of_gt(gt.valid)
        if self.fovea_region:
            keep = keep & fovea_mask(points, strides, box, self.sigma)
        label = c * h
        return torch.where(keep, label, torch.zeros_like(label))

    def assign(self, priors: Priors, gt: GTBatch, num_classes: int, **preds) -> Assignment:
        h = self.level_scores(priors, gt)
        fraction = self.sigma if self.fovea_region else 1.0
        lo, hi, _ = centered_regions(gt.boxes, gt.valid, len(priors.num_per_level), fraction)
        sqrt_areas = gt_sqrt_areas(gt)
        # Highest label_s wins (DSLA); ties: FoveaBox's painting rule (smaller gt, then
        # higher index) among the tied gts.
        winners = PriorWinners(gt.classes.shape[0], len(priors), ("max",) + PAINT_ORDER, device=sqrt_areas.device)
        for pairs in region_pair_chunks(priors, lo, hi, h > 0):
            label = self.static_labels(priors, gt, pairs, h)
            cand = (label > 0).nonzero().squeeze(1)
            pairs, label = pairs.take(cand), label.index_select(0, cand)
            winners.update(pairs, [label, pairs.of_gt(sqrt_areas)], {"label_s": label})
        label_s = winners.value("label_s", sqrt_areas.dtype)
        return Assignment.from_matches(
            gt, winners.matched, num_classes, cls_scores=label_s, reg_weights=label_s, extras={"label_s": label_s}
        )
