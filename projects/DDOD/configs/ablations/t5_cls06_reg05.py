"""DDOD paper Table 5: α_cls = 0.6, α_reg = 0.5 (assignment disentanglement only). Paper AP 39.6.

``t4_assignment.py`` with the cost assigner's two α (C = p^(1−α)·IoU^α).
"""
from .t4_assignment import dataloader, lr_multiplier, model, optimizer, train  # noqa: F401

model.assigner.cls_alpha = 0.6
model.assigner.reg_alpha = 0.5
