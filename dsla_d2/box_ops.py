"""Box and point primitives shared by assigners, losses, quality coupling and the
meta-architecture: point-to-box distances, FCOS centerness, IoU of aligned boxes, FCOS
center sampling. Pairwise IoU is Detectron2's ``pairwise_iou`` / torchvision's ``box_iou``.

This module sits below every part of the model: it imports nothing from ``dsla_d2``.
"""
import torch
from torch import Tensor

__all__ = ["aligned_ltrb", "centerness_from_ltrb", "aligned_box_iou", "center_sampling_mask"]


def aligned_ltrb(points: Tensor, boxes: Tensor) -> Tensor:
    """Distances (l, t, r, b) = (x − x1, y − y1, x2 − x, y2 − y) of each point to the
    sides of its own box: (..., 2) points and (..., 4) boxes (broadcastable, e.g. (R, 2)
    and (N, R, 4), or one row per (prior, gt) pair) -> (..., 4)."""
    return torch.cat([points - boxes[..., :2], boxes[..., 2:] - points], dim=-1)


def centerness_from_ltrb(ltrb: Tensor, eps: float = 0.0) -> Tensor:
    """FCOS centerness sqrt(min(l,r)/max(l,r) · min(t,b)/max(t,b)) (FCOS paper eq. 3).

    Numerators are clamped at 0; ``eps`` is a lower bound on the denominators (DSLA's code
    uses 0.01, FCOS none). Locations outside the box get 0.
    """
    l, t, r, b = ltrb.unbind(dim=-1)  # plain views: no gather over the (N, R, G) grid
    floor = max(eps, 1e-12)
    lr_min = torch.minimum(l, r).clamp(min=0)
    tb_min = torch.minimum(t, b).clamp(min=0)
    lr_max = torch.maximum(l, r).clamp(min=floor)
    tb_max = torch.maximum(t, b).clamp(min=floor)
    return torch.sqrt((lr_min / lr_max) * (tb_min / tb_max))


def aligned_box_iou(boxes1: Tensor, boxes2: Tensor, eps: float = 1e-6) -> Tensor:
    """IoU of two same-shaped sets of XYXY boxes (..., 4) -> (...). Never NaN.

    Degenerate or inverted boxes count as empty.
    """
    lt = torch.max(boxes1[..., :2], boxes2[..., :2])
    rb = torch.min(boxes1[..., 2:], boxes2[..., 2:])
    inter = (rb - lt).clamp(min=0).prod(dim=-1)
    area1 = (boxes1[..., 2:] - boxes1[..., :2]).clamp(min=0).prod(dim=-1)
    area2 = (boxes2[..., 2:] - boxes2[..., :2]).clamp(min=0).prod(dim=-1)
    return inter / (area1 + area2 - inter).clamp(min=eps)


def center_sampling_mask(points: Tensor, strides: Tensor, boxes: Tensor, radius: float) -> Tensor:
    """FCOS center sampling: point strictly inside the square of half-side radius·stride
    around the gt centre, clipped to the gt box.

    Args (broadcastable, e.g. one row per (prior, gt) pair):
        points: (..., 2); strides: (...) stride of each point's level; boxes: (..., 4).
    Returns:
        (...) bool.
    """
    centers = (boxes[..., :2] + boxes[..., 2:]) / 2
    half = (radius * strides)[..., None]
    lo = torch.max(centers - half, boxes[..., :2])
    hi = torch.min(centers + half, boxes[..., 2:])
    return ((points > lo) & (points < hi)).all(dim=-1)
