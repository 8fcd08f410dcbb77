"""LR schedules: step decay with warm-up, as ``LRMultiplier`` of fvcore param schedulers.

mmdetection's recipes (FCOS, FoveaBox, DSLA) count the schedule in epochs (``max_epochs=12``,
``step=[8, 11]``) and the warm-up in iterations; ``epoch_schedule`` turns that into
iterations. The ATSS authors' maskrcnn-benchmark recipe counts iterations (90k, steps at
60k / 80k): ``step_schedule`` directly.
"""
from fvcore.common.param_scheduler import MultiStepParamScheduler

from detectron2.config import LazyCall as L
from detectron2.solver import WarmupParamScheduler

# COCO train2017 holds 118,287 images, 117,266 of them with at least one annotation (the
# training set once images without boxes are filtered, as mmdetection and Detectron2 do).
# At batch 16: 117,266 / 16 = 7,329.125, and the last, partial batch is a step, so an epoch
# is 7,330 iterations (7,330 · 16 = 117,280 ≥ 117,266 > 7,329 · 16 = 117,264) — the count
# the DSLA authors' R-50 log shows ("Epoch [1][50/7330]"). 12 epochs = 87,960 iterations;
# epochs 8 and 11 end at 58,640 and 80,630.
COCO_TRAIN_IMAGES = 117266
COCO_ITERS_PER_EPOCH_BS16 = -(-COCO_TRAIN_IMAGES // 16)  # ceil → 7,330


def step_schedule(max_iter, steps, warmup_iters=500, warmup_factor=1.0 / 3, warmup_method="constant"):
    """Multiply the lr by 0.1 at each of ``steps``; warm up over ``warmup_iters``.

    The DSLA / FCOS mmdetection recipes use a constant warm-up at 1/3 for 500 iterations.
    """
    return L(WarmupParamScheduler)(
        scheduler=L(MultiStepParamScheduler)(
            values=[1.0] + [0.1 ** (i + 1) for i in range(len(steps))],
            milestones=list(steps),
            num_updates=max_iter,
        ),
        warmup_length=warmup_iters / max_iter,
        warmup_method=warmup_method,
        warmup_factor=warmup_factor,
    )


def epoch_schedule(epochs, step_epochs, iters_per_epoch=COCO_ITERS_PER_EPOCH_BS16, **warmup):
    """``(max_iter, lr_multiplier)`` of a schedule given in epochs: ``epochs ·
    iters_per_epoch`` iterations, lr × 0.1 at the end of each epoch in ``step_epochs``;
    ``warmup`` (in iterations) as :func:`step_schedule`. Set ``train.max_iter`` to the first
    value."""
    if not all(0 < e < epochs for e in step_epochs):
        raise ValueError(f"epoch_schedule: step epochs {list(step_epochs)} must lie inside 1..{epochs - 1}")
    max_iter = epochs * iters_per_epoch
    return max_iter, step_schedule(max_iter, [e * iters_per_epoch for e in step_epochs], **warmup)
