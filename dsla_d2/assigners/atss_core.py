"""The ATSS selection core (Zhang et al., CVPR 2020, Alg. 1), shared by every ATSS-style
assigner: ATSS (anchor IoU), Dynamic ATSS (combined IoUs) and DDOD (cost-based ATSS).

:func:`atss_match` enumerates each gt's candidates (the k priors per level with the
nearest centres), thresholds their quality at mean + unbiased std, applies the centre-inside
rule and resolves priors claimed by several gts. The quality itself is the one piece a
method supplies (:data:`CandidateQuality`), evaluated on the candidates only.

Sparse: the candidates come from a window around each gt centre
(:func:`~dsla_d2.assigners.nearest.nearest_candidates`, exactly the dense selection), the
quality and threshold are computed on the (N, K, G) candidate tensor only (K = Σ_l
min(k, n_l), 45 for k = 9 on 5 levels), and positives claimed by several gts are resolved
per prior by :class:`~dsla_d2.assigners.winners.PriorWinners` — no (N, R, G) tensor.
"""
from dataclasses import dataclass
from typing import Callable, List, Tuple

import torch
from torch import Tensor

from ..box_ops import aligned_box_iou, centerness_from_ltrb
from ..priors import Priors
from .base import GTBatch
from .nearest import nearest_candidates, select_topk_candidates  # noqa: F401  (re-exported)
from .pairs import CandidatePairs
from .winners import PriorWinners

__all__ = [
    "ATSSMatch",
    "CandidateQuality",
    "atss_match",
    "centerness_weights",
    "select_topk_candidates",
    "unbiased_std",
]


def unbiased_std(values: Tensor, dim: int) -> Tensor:
    """Unbiased (Bessel-corrected, divisor K − 1) standard deviation along ``dim``, as
    ``torch.std`` / the ATSS code; defined as 0 when there are fewer than 2 values."""
    k = values.shape[dim]
    if k < 2:
        return torch.zeros_like(values.sum(dim=dim))
    return values.std(dim=dim, correction=1)


#: The pluggable piece of ATSS: given the (N, K, G) prior indices of the candidates, the
#: weighted terms [(w, values (N, K, G)), ...] of the quality that is thresholded. The
#: quality is Σ w·values and its threshold Σ w·(mean + std of values) over each gt's
#: candidates: one term (1, AIoU) is ATSS, [(w_a, AIoU), (w_p, PIoU)] Dynamic ATSS (eqs.
#: 1-4), one term (1, cost) DDOD's cost-based ATSS.
CandidateQuality = Callable[[Tensor], List[Tuple[float, Tensor]]]


@dataclass
class ATSSMatch:
    """Result of :func:`atss_match`.

    Attributes:
        matched: (N, R) int64 index of the gt each prior is positive for, −1 elsewhere.
        quality: (N, R) the winning quality of each positive, 0 elsewhere.
        threshold: (N, G) each gt's threshold, 0 for invalid gts.
    """

    matched: Tensor
    quality: Tensor
    threshold: Tensor


def atss_match(priors: Priors, gt: GTBatch, quality: CandidateQuality, topk: int, center_margin: float) -> ATSSMatch:
    """The ATSS selection core shared by ATSS, Dynamic ATSS and DDOD: candidates = the
    ``topk`` priors per level nearest to each gt centre; the candidates' quality (from
    ``quality``) against its mean + unbiased std threshold; the prior's centre more than
    ``center_margin`` inside the gt; a prior positive for several gts takes the highest
    quality (exact ties: the lowest gt index).

    Only ``quality`` differs between methods; candidate enumeration, the threshold, the
    centre rule and the per-prior resolution live here once.

    Args:
        priors: R priors (``anchors`` (R, 4), ``num_per_level``).
        gt: padded gts (N, G).
        quality: see :data:`CandidateQuality`.
    """
    anchors = priors.anchors
    device = anchors.device
    n_img, n_gt = gt.classes.shape
    n_pri = anchors.shape[0]
    if n_gt == 0 or n_pri == 0:
        return ATSSMatch(
            matched=torch.full((n_img, n_pri), -1, dtype=torch.long, device=device),
            quality=torch.zeros(n_img, n_pri, device=device),
            threshold=torch.zeros(n_img, n_gt, device=device),
        )

    boxes = gt.boxes.to(anchors.dtype)  # (N, G, 4)
    anchor_centers = (anchors[:, :2] + anchors[:, 2:]) / 2  # (R, 2)
    gt_centers = (boxes[..., :2] + boxes[..., 2:]) / 2  # (N, G, 2)

    # Steps 1-2: the k nearest anchor centres per level (L2), from a window per gt.
    cand = nearest_candidates(priors, anchor_centers, gt_centers, gt.valid, topk)  # (N, K, G)
    k_total = cand.shape[1]

    # Step 3 (Dynamic ATSS eqs. 1-3): quality of the candidates and each gt's threshold,
    # Σ_terms w·(mean + std) — for several terms a sum of stds, not the std of the sum.
    total = torch.zeros(n_img, k_total, n_gt, device=device, dtype=anchors.dtype)
    threshold = torch.zeros(n_img, n_gt, device=device, dtype=anchors.dtype)
    for w, values in quality(cand):  # ≤ 2 terms
        total = total + w * values
        threshold = threshold + w * (values.mean(dim=1) + unbiased_std(values, dim=1))
    threshold = torch.where(gt.valid, threshold, torch.zeros_like(threshold))

    # Steps 4-5 (eq. 4): quality ≥ threshold and the centre strictly inside the gt.
    gt_b = boxes[:, None]  # (N, 1, G, 4)
    cand_centers = anchor_centers[cand]  # (N, K, G, 2)
    ltrb = torch.cat([cand_centers - gt_b[..., :2], gt_b[..., 2:] - cand_centers], dim=-1)  # (N, K, G, 4)
    inside = ltrb.min(dim=-1).values > center_margin
    positive = (total >= threshold[:, None, :]) & inside & gt.valid[:, None, :]  # (N, K, G)

    # A prior positive for several gts takes the highest quality (exact ties: the lowest
    # gt index), resolved on the positive pairs only. The qualities (IoUs made finite,
    # DDOD's costs of finite terms) are finite, where this equals a max over gts.
    n_idx, k_idx, g_idx = positive.nonzero(as_tuple=True)
    q = total[n_idx, k_idx, g_idx]
    winners = PriorWinners(n_img, n_pri, ("max", "min"), device=device)
    winners.update(CandidatePairs(n_idx, cand[n_idx, k_idx, g_idx], g_idx, n_gt), [q], {"quality": q})
    matched = winners.matched
    best = winners.value("quality", total.dtype)
    return ATSSMatch(matched=matched, quality=best, threshold=threshold)


def candidate_predicted_iou(pred_boxes: Tensor, cand: Tensor, gt_boxes: Tensor) -> Tensor:
    """IoU of each candidate's predicted box with its gt (Dynamic ATSS's PIoU, DDOD's
    cost term), 0 where the prediction is not finite.

    Args:
        pred_boxes: (N, R, 4) decoded predicted boxes (detached).
        cand: (N, K, G) candidate prior indices; gt_boxes: (N, 1, G, 4), pred_boxes' dtype.
    Returns:
        (N, K, G).
    """
    n_img, k_total, n_gt = cand.shape
    flat = cand.reshape(n_img, k_total * n_gt, 1).expand(-1, -1, 4)
    boxes = torch.gather(pred_boxes, 1, flat).view(n_img, k_total, n_gt, 4)
    return torch.nan_to_num(aligned_box_iou(boxes, gt_boxes), nan=0.0, posinf=0.0, neginf=0.0)


def centerness_weights(priors: Priors, gt: GTBatch, matched: Tensor) -> Tensor:
    """(N, R) centerness of each positive's anchor centre w.r.t. the sides of its gt (FCOS
    eq. 3; ATSS's box-loss weight), 0 where ``matched`` < 0."""
    anchors = priors.anchors
    anchor_centers = (anchors[:, :2] + anchors[:, 2:]) / 2
    idx = matched.clamp(min=0)[..., None].expand(-1, -1, 4)
    own = torch.gather(gt.boxes.to(anchors.dtype), 1, idx)  # (N, R, 4) matched gt box
    own_ltrb = torch.cat([anchor_centers[None] - own[..., :2], own[..., 2:] - anchor_centers[None]], dim=-1)
    centerness = centerness_from_ltrb(own_ltrb)
    return torch.where(matched >= 0, centerness, torch.zeros_like(centerness))
