"""DDOD-FCOS on the embedded synthetic dataset: ``ddod_r18_synth.py`` with the FCOS-style
per-side regression (raw · stride, bias 1.5; ``common/ddod.py``: ``to_ddod_fcos``); the
budget of ``configs/atss_r18_synth.py`` (offset layers at lr × 0.1, as ``ddod_r18_synth.py``).
Compare with ``configs/fcos_r18_synth.py``."""
from dsla_d2.model_zoo import NODES, get_config

from .common.ddod import adamw_offset_lr_groups, to_ddod_fcos

dataloader, lr_multiplier, model, optimizer, train = get_config("configs/atss_r18_synth.py", keys=NODES)

to_ddod_fcos(model)
optimizer.params = adamw_offset_lr_groups(0.1)  # AdamW: the offsets at lr × 0.1
