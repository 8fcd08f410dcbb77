"""The full Dynamic ATSS (combined IoUs + QFL + IoU branch) on the embedded synthetic
dataset."""
from .dynamic_atss_qfl_r18_synth import dataloader, lr_multiplier, model, optimizer, train  # noqa: F401

model.quality.branch = "iou"
