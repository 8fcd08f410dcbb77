"""configs/fcos_r18_synth.py with SGD (the ATSS recipe's parameter groups) instead of
AdamW, for the multi-process test: SGD's step is proportional to the gradient, so a wrong
gradient scale across processes shows in the weights (Adam's first steps are
scale-invariant, lr·sign(g))."""
import os

from detectron2.config import LazyConfig

_CONFIGS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs")
_base = LazyConfig.load(os.path.join(_CONFIGS, "fcos_r18_synth.py"))
model, dataloader, lr_multiplier, train = _base.model, _base.dataloader, _base.lr_multiplier, _base.train
optimizer = LazyConfig.load(os.path.join(_CONFIGS, "common", "optim.py")).SGD_maskrcnn_benchmark
optimizer.lr = 0.01
