#!/usr/bin/env python
"""Train-step time (forward + backward + SGD step) of several detectors on the same inputs.

    python benchmarks/bench_train_step.py [--configs A.py B.py ...] [--batch 8] [--steps 10]

Every model is built from its lazy config, fed the same fixed batch of embedded-dataset
images, and timed over ``--steps`` steps after 2 warm-up steps; the table gives the median
step time and the ratio to the first config.
"""
import argparse
import statistics
import time

import torch

import dsla_d2  # noqa: F401
from detectron2.config import LazyConfig, instantiate
from detectron2.data import DatasetCatalog
from detectron2.utils.events import EventStorage

from dsla_d2.data import CheckedDatasetMapper
import detectron2.data.transforms as T

DEFAULT = [
    "configs/fcos_r18_synth.py",
    "projects/DSLA/configs/fcos_dsla_r18_synth.py",
    "configs/atss_r18_synth.py",
    "projects/DynamicATSS/configs/dynamic_atss_qfl_iou_branch_r18_synth.py",
    "projects/DDOD/configs/ddod_r18_synth.py",
    "projects/DDOD/configs/ddod_fcos_r18_synth.py",
    "configs/foveabox_r18_synth.py",
    "projects/DSLA/configs/foveabox_dsla_r18_synth.py",
    "projects/DW/configs/fcos_dw_r18_synth.py",
    "projects/DW/configs/fcos_dw_refine_r18_synth.py",
]


def fixed_batch(n):
    mapper = CheckedDatasetMapper(is_train=True, augmentations=[T.ResizeShortestEdge(192, 288)], image_format="BGR")
    return [mapper(d) for d in DatasetCatalog.get("dsla_synth_val")[:n]]


def build_model(path):
    cfg = LazyConfig.load(path)
    torch.manual_seed(0)
    return instantiate(cfg.model).train()


def time_steps(path, batch, steps):
    """Median seconds of a train step of the config's model, after 2 untimed steps."""
    return time_model_steps(build_model(path), batch, steps)


def time_model_steps(model, batch, steps):
    """Median seconds of a train step of ``model``, after 2 untimed steps."""
    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    times = []
    with EventStorage(0):
        for step in range(steps + 2):
            t0 = time.perf_counter()
            loss = sum(model(batch).values())
            opt.zero_grad()
            loss.backward()
            opt.step()
            if step >= 2:
                times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--configs", nargs="+", default=DEFAULT)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--steps", type=int, default=10)
    args = p.parse_args()
    batch = fixed_batch(args.batch)
    # Untimed first: the first model of a process pays one-time costs (allocator growth,
    # thread pool start-up) and would look ~20% slower than it is.
    time_steps(args.configs[0], batch, 2)
    rows = []
    for path in args.configs:
        rows.append((path, time_steps(path, batch, args.steps)))
        print(f"{path}: {rows[-1][1] * 1000:.0f} ms/step", flush=True)
    base = rows[0][1]
    print(f"\nthreads={torch.get_num_threads()} batch={args.batch}\n| config | ms/step | relative |\n|---|---|---|")
    for path, t in rows:
        print(f"| {path} | {t * 1000:.0f} | {t / base:.2f}× |")


if __name__ == "__main__":
    main()
