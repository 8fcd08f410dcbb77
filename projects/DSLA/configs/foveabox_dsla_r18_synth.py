"""DSLA-FoveaBox (our design) on the embedded synthetic dataset: ``foveabox_r18_synth.py``
(halved scale ranges and base edges, same budget) with the DSLA parts of
``configs/common/models/foveabox.py:to_dsla_fovea``. The relaxed bounds follow from the
halved ranges: int(lo·0.8), int(hi·1.2) = (0, 38), (12, 76), (25, 153), (51, 307),
(102, 1228).
"""
from ....configs.common.models.foveabox import to_dsla_fovea
from ....configs.foveabox_r18_synth import dataloader, lr_multiplier, model, optimizer, train

to_dsla_fovea(model, box_loss="iou")
