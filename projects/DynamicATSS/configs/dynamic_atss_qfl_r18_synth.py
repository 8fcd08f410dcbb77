"""Dynamic ATSS + QFL (y = PIoU) + centerness branch on the embedded synthetic dataset."""
from .dynamic_atss_r18_synth import dataloader, lr_multiplier, model, optimizer, train  # noqa: F401

model.quality.cls_target = "iou"
model.loss.cls_loss = "qfl"
