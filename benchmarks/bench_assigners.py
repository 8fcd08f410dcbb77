#!/usr/bin/env python
"""Speed and memory of every assigner on COCO-sized inputs (prints a table).

    python benchmarks/bench_assigners.py [--images 2] [--gts 50 1000] [--device cpu|cuda] [--repeat 5]

Priors: P3-P7 of an 800×1216 batch (20,267 locations per image). Ground truths: random
boxes of 8-400 px. Predictions for the dynamic assigners are the gt-free decoded boxes of a
noisy "network". Reports the median wall time per call and, on CUDA, the peak memory.
"""
import argparse
import statistics
import time

import torch

import dsla_d2  # noqa: F401
from detectron2.structures import Boxes, Instances

from dsla_d2.assigners import (
    ATSSAssigner,
    DDODAssigner,
    DSLAAssigner,
    DSLAFoveaAssigner,
    DynamicATSSAssigner,
    FCOSAssigner,
    FoveaAssigner,
)
from dsla_d2.priors import PriorGenerator

ASSIGNERS = {
    "FCOS": lambda: FCOSAssigner(),
    "FCOS (center sampling 1.5)": lambda: FCOSAssigner(center_sampling_radius=1.5),
    "DSLA": lambda: DSLAAssigner(),
    "ATSS": lambda: ATSSAssigner(),
    "Dynamic ATSS (CIoU)": lambda: DynamicATSSAssigner(),
    "DDOD (cost ATSS, cls + reg)": lambda: DDODAssigner(),
    "FoveaBox": lambda: FoveaAssigner(),
    "DSLA-FoveaBox": lambda: DSLAFoveaAssigner(),
}


def make_inputs(num_images, num_gts, device, seed=0):
    g = torch.Generator().manual_seed(seed)
    sizes = [(100, 152), (50, 76), (25, 38), (13, 19), (7, 10)]
    priors = PriorGenerator([8, 16, 32, 64, 128], offset=0.5)([torch.zeros(1, 1, h, w, device=device) for h, w in sizes])
    gts = []
    for _ in range(num_images):
        xy = torch.rand(num_gts, 2, generator=g) * torch.tensor([1216.0, 800.0])
        wh = 8 + torch.rand(num_gts, 2, generator=g) * 392
        inst = Instances((800, 1216))
        inst.gt_boxes = Boxes(torch.cat([xy, xy + wh], 1).to(device))
        inst.gt_classes = torch.randint(0, 80, (num_gts,), generator=g).to(device)
        gts.append(inst)
    r = len(priors)
    jitter = torch.randn(num_images, r, 4, generator=g).to(device) * 8
    pred_boxes = priors.anchors[None].expand(num_images, r, 4) * 0.5 + jitter
    pred_boxes = torch.cat([pred_boxes[..., :2].minimum(pred_boxes[..., 2:]), pred_boxes[..., :2].maximum(pred_boxes[..., 2:]) + 1], -1)
    logits = torch.randn(num_images, r, 80, generator=g).to(device)
    return priors, gts, pred_boxes, logits


def bench(name, make, inputs, repeat, device):
    priors, gts, boxes, logits = inputs
    assigner = make().to(device)
    assigner(priors, gts, 80, {"pred_boxes": boxes, "cls_logits": logits})  # warm-up
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        a = assigner(priors, gts, 80, {"pred_boxes": boxes, "cls_logits": logits})
        if device == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    peak = torch.cuda.max_memory_allocated() / 2**20 if device == "cuda" else float("nan")
    return statistics.median(times) * 1000, peak, int(a.pos_mask.sum())


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--images", type=int, default=2)
    p.add_argument("--gts", type=int, nargs="+", default=[50, 1000])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"device={args.device} threads={torch.get_num_threads()} images={args.images} locations/image=20267")
    print("| assigner | gts/image | ms/call (median) | peak MiB | positives |")
    print("|---|---|---|---|---|")
    for g in args.gts:
        inputs = make_inputs(args.images, g, args.device)
        for name, make in ASSIGNERS.items():
            ms, peak, pos = bench(name, make, inputs, args.repeat, args.device)
            print(f"| {name} | {g} | {ms:.1f} | {peak:.0f} | {pos} |", flush=True)


if __name__ == "__main__":
    main()
