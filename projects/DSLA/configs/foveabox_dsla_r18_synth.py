"""DSLA-FoveaBox (our design) on the embedded synthetic dataset: ``foveabox_r18_synth.py``
(halved scale ranges and base edges, same budget) with the DSLA parts of
``projects/DSLA/configs/common/dsla.py:to_dsla``. The relaxed bounds follow from the
halved ranges: int(lo·0.8), int(hi·1.2) = (0, 38), (12, 76), (25, 153), (51, 307),
(102, 1228).
"""
from dsla_d2.model_zoo import NODES, get_config

from .common.dsla import to_dsla

dataloader, lr_multiplier, model, optimizer, train = get_config("configs/foveabox_r18_synth.py", keys=NODES)

to_dsla(model, box_loss="iou")
