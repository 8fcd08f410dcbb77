"""FCOS + SimOTA on the embedded synthetic dataset, against ``configs/fcos_r18_synth.py``: the
FCOS head (norm_on_bbox box output), data, AdamW, budget and schedule of that config, with
``to_simota`` (``common/simota.py``) instead of the FCOS assigner, centerness branch and
focal/IoU losses: SimOTAAssigner, IoU as the classification target, BCE + 5·(1 − IoU²).
"""
from dsla_d2.model_zoo import NODES, get_config

from .common.simota import to_simota

dataloader, lr_multiplier, model, optimizer, train = get_config("configs/fcos_r18_synth.py", keys=NODES)

to_simota(model)
