"""Soft-target classification losses: Quality Focal Loss and Varifocal Loss.

Sigmoid focal loss itself comes from ``fvcore.nn.sigmoid_focal_loss``.
"""
import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["quality_focal_loss", "varifocal_loss", "soft_one_hot"]


def soft_one_hot(labels: Tensor, scores: Tensor, num_classes: int) -> Tensor:
    """(N, R) labels (``num_classes`` = background) and (N, R) scores -> (N, R, C) targets
    holding ``score`` at the label's column and 0 elsewhere."""
    target = torch.zeros(*labels.shape, num_classes + 1, dtype=scores.dtype, device=scores.device)
    target.scatter_(-1, labels[..., None], scores[..., None])
    return target[..., :num_classes]


def quality_focal_loss(logits: Tensor, target: Tensor, beta: float = 2.0) -> Tensor:
    """Quality Focal Loss (Li et al., GFL, NeurIPS 2020, eq. 5), element-wise.

    QFL(σ) = −|y − σ|^β · ((1 − y)·log(1 − σ) + y·log σ), i.e. BCE(σ, y)·|y − σ|^β; for the
    zero targets of the other classes this is BCE(σ, 0)·σ^β (DSLA uses y = label_d).

    Args:
        logits, target: same shape; target in [0, 1].
    """
    sigma = logits.sigmoid()
    bce = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    return bce * (target - sigma).abs().pow(beta)


def varifocal_loss(logits: Tensor, target: Tensor, alpha: float = 0.75, gamma: float = 2.0) -> Tensor:
    """Varifocal Loss (Zhang et al., VarifocalNet, CVPR 2021, eq. 2), element-wise.

    Positives (y > 0): y·BCE(σ, y); negatives (y = 0): α·σ^γ·BCE(σ, 0). The weight is
    not detached: like the focal term of QFL, σ^γ is part of the loss's gradient (as in
    the VarifocalNet code).
    """
    sigma = logits.sigmoid()
    bce = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    weight = torch.where(target > 0, target, alpha * sigma.pow(gamma))
    return bce * weight
