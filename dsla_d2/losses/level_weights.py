"""Per-level loss weights from per-level positive counts: DDOD's pyramid supervision
disentanglement ("FPN hierarchical loss", Chen, Yang et al., ACM MM 2021, §4.3) and the
alternatives of its Table 7.

For level l with n_l positives (n = the counts of all L levels)::

    linear_interpolate:  w_l = 2 − (n_l − min n) / (max n − min n + 1e−10)   (eqs. 3-4)
    sum_reweight:        w_l = L · n_l / Σ n     (∝ positives; mean weight 1; all 1 if Σ n = 0)
    linear_reweight:     w_l = 1 + l / (L − 1)   (1 → 2 from the first to the last level)

Linear interpolation maps the level with the most positives to 1 and the one with the
fewest to 2 (all equal → all 2). The paper says Sum-Reweight makes "the weight of each FPN
layer proportionate to the number of positive samples" without a scale; we normalise the
weights to mean 1 so the loss keeps its magnitude (our choice). Linear-Reweight does not
depend on the counts, so its accumulated variant (Table 7's "*") gives the same weights.

Counts are kept separately for classification and regression positives (eqs. 3 and 4) and
are either those of the current batch (``accumulate=False``) or **cumulative** since the
start of training (``accumulate=True``, the paper's moving-average variant and DDOD's
default). Unlike the authors' code, the counts are summed over all processes (every GPU
uses the weights of the whole batch) and the cumulative counters are registered buffers:
saved by ``DetectionCheckpointer`` with the model and restored by ``--resume``.
"""
from typing import Tuple

import torch
from torch import Tensor, nn

from ..priors import Priors
from ..utils.comm import reduce_sum

__all__ = ["LEVEL_WEIGHTINGS", "LevelWeighting", "weights_per_level"]

LEVEL_WEIGHTINGS = ("linear_interpolate", "sum_reweight", "linear_reweight")


def weights_per_level(counts: Tensor, method: str) -> Tensor:
    """(L,) per-level positive counts → (L,) float64 weights (module docstring)."""
    if method not in LEVEL_WEIGHTINGS:
        raise ValueError(f"level weighting {method!r} is not one of {LEVEL_WEIGHTINGS}")
    c = counts.to(torch.float64)
    num_levels = c.shape[0]
    if method == "linear_interpolate":
        return 2.0 - (c - c.min()) / (c.max() - c.min() + 1e-10)
    if method == "sum_reweight":
        total = c.sum()
        return num_levels * c / total if total > 0 else torch.ones_like(c)
    if num_levels == 1:
        return torch.ones_like(c)
    return 1.0 + torch.arange(num_levels, dtype=torch.float64, device=c.device) / (num_levels - 1)


class LevelWeighting(nn.Module):
    """Per-level classification and regression loss weights from positive counts, owned by
    the loss (:class:`~dsla_d2.losses.DenseDetectionLoss`'s ``level_weighting``).

    Args:
        num_levels: number of pyramid levels (5 for P3-P7).
        method: "linear_interpolate" (DDOD), "sum_reweight" or "linear_reweight".
        accumulate: weights from the cumulative counts (True) or the batch's (False).

    Buffers (int64, part of the model's state): ``cls_counts`` (L,) and ``reg_counts``
    (L,), the classification / regression positives per level summed over every training
    step so far and over all processes.
    """

    def __init__(self, num_levels: int = 5, method: str = "linear_interpolate", accumulate: bool = True):
        super().__init__()
        if method not in LEVEL_WEIGHTINGS:
            raise ValueError(f"method={method!r} is not one of {LEVEL_WEIGHTINGS}")
        if int(num_levels) < 1:
            raise ValueError(f"num_levels={num_levels} must be ≥ 1")
        self.num_levels = int(num_levels)
        self.method = method
        self.accumulate = bool(accumulate)
        self.register_buffer("cls_counts", torch.zeros(self.num_levels, dtype=torch.long))
        self.register_buffer("reg_counts", torch.zeros(self.num_levels, dtype=torch.long))

    def extra_repr(self) -> str:
        return f"num_levels={self.num_levels}, method={self.method!r}, accumulate={self.accumulate}"

    def level_counts(self, priors: Priors, cls_mask: Tensor, reg_mask: Tensor) -> Tensor:
        """(2, L) int64 numbers of classification (row 0) and regression (row 1) positives
        on each level, summed over the images and over all processes (one all-reduce)."""
        if len(priors.num_per_level) != self.num_levels:
            raise ValueError(
                f"LevelWeighting has num_levels={self.num_levels} but the priors have "
                f"{len(priors.num_per_level)} levels"
            )
        per_prior = torch.stack([cls_mask.sum(dim=0), reg_mask.sum(dim=0)]).to(torch.long)  # (2, R)
        counts = torch.zeros(2, self.num_levels, dtype=torch.long, device=per_prior.device)
        return reduce_sum(counts.index_add_(1, priors.levels, per_prior))

    def forward(self, priors: Priors, cls_mask: Tensor, reg_mask: Tensor, update: bool) -> Tuple[Tensor, Tensor]:
        """
        Args:
            priors: the R priors (their ``levels``).
            cls_mask, reg_mask: (N, R) bool classification / regression positives.
            update: add this batch's counts to the cumulative counters (a training step).
                Without it the weights are the same (cumulative counts + this batch) but
                nothing is stored (e.g. to describe the targets).
        Returns:
            (L,) classification and (L,) regression weights of the levels, float32.
        """
        batch = self.level_counts(priors, cls_mask, reg_mask)
        if update:
            self.cls_counts += batch[0]
            self.reg_counts += batch[1]
            totals = (self.cls_counts, self.reg_counts)
        else:
            totals = (self.cls_counts + batch[0], self.reg_counts + batch[1])
        used = totals if self.accumulate else batch
        return tuple(weights_per_level(c, self.method).to(torch.float32) for c in used)
