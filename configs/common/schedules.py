"""LR schedules: step decay with warm-up, as ``LRMultiplier`` of fvcore param schedulers."""
from fvcore.common.param_scheduler import MultiStepParamScheduler

from detectron2.config import LazyCall as L
from detectron2.solver import WarmupParamScheduler


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


# COCO 1x: 90k iterations at batch 16, steps at 60k and 80k (epochs 8 and 11 of 12).
lr_multiplier_1x = step_schedule(90000, [60000, 80000])
