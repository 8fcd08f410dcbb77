"""FCOS on the embedded synthetic dataset: the default detector (`make demo`).

Small ResNet-18-style FPN (random init), 2-conv 64-channel head, images ~256-448 px,
batch 8, 900 iterations: sized to train in about 10 minutes on 2 CPU cores. FCOS size ranges are halved
because the images are about a third of COCO's size.
"""
from .common.data.synthetic import dataloader
from .common.models.fcos import model
from .common.models.small_backbone import FPN_CHANNELS, small_fpn
from .common.optim import SGD as optimizer
from .common.schedules import step_schedule
from .common.train import train

SYNTH_SIZE_RANGES = [[0, 32], [32, 64], [64, 128], [128, 256], [256, 1e8]]

model.backbone = small_fpn
model.num_classes = 6
model.head.in_channels = FPN_CHANNELS
model.head.channels = 64
model.head.num_convs = 2
model.assigner.size_ranges = SYNTH_SIZE_RANGES
model.pixel_std = [57.375, 57.120, 58.395]  # random init: normalise inputs fully

train.max_iter = 900
train.checkpointer = dict(period=300, max_to_keep=2)
train.log_period = 20
train.seed = 0
optimizer.lr = 0.01
# Milestones and warm-up are fractions of max_iter (LRMultiplier), so overriding
# train.max_iter rescales the whole schedule.
lr_multiplier = step_schedule(train.max_iter, [675, 825], warmup_iters=75, warmup_factor=0.001, warmup_method="linear")
