"""Dynamic ATSS + VFL + IoU branch on the embedded synthetic dataset."""
from .dynamic_atss_vfl_r18_synth import dataloader, lr_multiplier, model, optimizer, train  # noqa: F401

model.quality.branch = "iou"
