"""Losses: QFL/VFL, IoU-family box losses, all-reduced normalisers, the dense loss, DW's loss."""
from .box_losses import iou_loss
from .dense_loss import DenseDetectionLoss
from .dw_loss import DWLoss
from .quality_focal import quality_focal_loss, soft_one_hot, varifocal_loss
