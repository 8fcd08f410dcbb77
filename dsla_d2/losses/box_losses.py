"""Box regression losses on decoded boxes. GIoU comes from torchvision."""
import torch
from torch import Tensor
from torchvision.ops import generalized_box_iou_loss

from ..box_ops import aligned_box_iou

__all__ = ["iou_loss", "BOX_LOSS_TYPES"]

BOX_LOSS_TYPES = ("iou", "linear_iou", "squared_iou", "giou")


def iou_loss(pred: Tensor, target: Tensor, loss_type: str = "giou") -> Tensor:
    """Element-wise IoU-family loss of aligned XYXY boxes (K, 4) -> (K,).

    - "iou": −log(max(IoU, 1e-6)) (UnitBox; FCOS and DSLA's R-50 recipe)
    - "linear_iou": 1 − IoU
    - "squared_iou": 1 − IoU² (YOLOX's ``IOUloss``, mmdetection's ``IoULoss(mode="square")``)
    - "giou": 1 − GIoU (torchvision, eps 1e-7)
    """
    if loss_type == "giou":
        return generalized_box_iou_loss(pred, target, reduction="none", eps=1e-7)
    iou = aligned_box_iou(pred, target, eps=1e-6)
    if loss_type == "iou":
        return -torch.log(iou.clamp(min=1e-6))
    if loss_type == "linear_iou":
        return 1 - iou
    if loss_type == "squared_iou":
        return 1 - iou * iou
    raise ValueError(f"unknown box loss {loss_type!r}; expected one of {BOX_LOSS_TYPES}")
