"""ATSS head + SimOTA on the embedded synthetic dataset, against ``configs/atss_r18_synth.py``:
the same backbone, head, anchors (4·stride; SimOTA itself reads only the anchor centres and
strides), data, AdamW, budget and schedule, with ``to_simota`` (``common/simota.py``):
SimOTAAssigner, no centerness branch, IoU as the classification target, BCE + 5·(1 − IoU²).
"""
from dsla_d2.model_zoo import NODES, get_config

from .common.simota import to_simota

dataloader, lr_multiplier, model, optimizer, train = get_config("configs/atss_r18_synth.py", keys=NODES)

to_simota(model)
