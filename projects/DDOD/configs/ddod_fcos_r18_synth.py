"""DDOD-FCOS on the embedded synthetic dataset: ``ddod_r18_synth.py`` with the FCOS-style
per-side regression (raw · stride, bias 1.5; ``common/ddod.py``: ``to_ddod_fcos``); the
budget of ``configs/atss_r18_synth.py``. Compare with ``configs/fcos_r18_synth.py``."""
from ....configs.atss_r18_synth import dataloader, lr_multiplier, model, optimizer, train  # noqa: F401
from .common.ddod import to_ddod_fcos

to_ddod_fcos(model)
