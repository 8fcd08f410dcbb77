"""Losses: QFL/VFL, IoU-family box losses, all-reduced normalisers, per-level weights, the
dense loss, DW's loss."""
from .box_losses import iou_loss
from .dense_loss import DenseDetectionLoss, count_normalizer
from .dw_loss import DWLoss
from .level_weights import LEVEL_WEIGHTINGS, LevelWeighting, weights_per_level
from .quality_focal import quality_focal_loss, soft_one_hot, varifocal_loss
