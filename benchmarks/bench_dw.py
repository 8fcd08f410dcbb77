#!/usr/bin/env python
"""Time and peak memory of DW's assignment + loss (forward and backward) on COCO-sized
inputs, beside FCOS's, with 50 and 1000 gts per image (prints a table).

    python benchmarks/bench_dw.py [--images 2] [--gts 50 1000] [--device cpu|cuda] [--repeat 5]

Inputs are ``bench_assigners.py``'s (one 800×1333 image per batch element, P3-P7: 22,300
locations per image, gts of 8-400 px clipped to the image, noisy predicted boxes), with 80
random class logits and an objectness / centerness output. Each (method, gts) case runs in a
fresh process with ``--threads`` threads; time is the median of ``--repeat`` calls after a
warm-up call; peak memory is measured as ``bench_assigners.py`` does (one more call after
pinning glibc's mmap threshold, trimming the heap and resetting the peak resident set:
the growth of VmHWM; on CUDA ``torch.cuda.max_memory_allocated``). ``pairs`` is the number
of in-bag (location, gt) pairs DW works on; ``R×G`` what a dense locations × gts grid holds.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import dsla_d2  # noqa: E402,F401
from bench_assigners import extra_peak, make_inputs  # noqa: E402
from dsla_d2.assigners import DWAssigner, FCOSAssigner  # noqa: E402
from dsla_d2.losses import DenseDetectionLoss, DWLoss  # noqa: E402
from dsla_d2.quality import QualityCoupling  # noqa: E402

METHODS = {
    "FCOS": lambda: (FCOSAssigner(), DenseDetectionLoss(box_loss="iou", box_normalizer="sum_weights"),
                     QualityCoupling(branch="centerness")),
    "DW": lambda: (DWAssigner(), DWLoss(), QualityCoupling(branch="objectness", threshold_on="score")),
}


def step(assigner, loss, quality, inputs, device):
    priors, gts, boxes, logits = inputs
    outputs = {
        "cls_logits": logits.clone().requires_grad_(),
        "quality": torch.zeros(*logits.shape[:2], 1, device=device, requires_grad=True),
        "pred_boxes": boxes.clone().requires_grad_(),
    }
    outputs["box_reg"] = outputs["pred_boxes"]
    t0 = time.perf_counter()
    a = assigner(priors, gts, 80, outputs)
    if device == "cuda":
        torch.cuda.synchronize()
    t1 = time.perf_counter()
    losses = loss(outputs, priors, a, box_coder=None, quality=quality)
    sum(losses.values()).backward()
    if device == "cuda":
        torch.cuda.synchronize()
    return a, t1 - t0, time.perf_counter() - t1


def run_case(method, num_gts, images, device, repeat):
    assigner, loss, quality = METHODS[method]()
    priors, gts, preds = make_inputs(images, num_gts, device)
    g = torch.Generator().manual_seed(1)
    inputs = (priors, gts, preds["pred_boxes"], torch.randn(images, len(priors), 80, generator=g).to(device))
    a, _, _ = step(assigner, loss, quality, inputs, device)  # warm-up
    times = [step(assigner, loss, quality, inputs, device)[1:] for _ in range(repeat)]
    # memory, as bench_assigners.py measures it
    mem = extra_peak(lambda: step(assigner, loss, quality, inputs, device), device)
    peak = mem["cuda_extra_peak_mib"] if device == "cuda" else mem["extra_peak_mib"]
    pairs = len(a.pairs) if a.pairs is not None else 0
    return dict(
        method=method, gts=num_gts, assign_ms=statistics.median(t[0] for t in times) * 1000,
        loss_ms=statistics.median(t[1] for t in times) * 1000, peak_mib=peak, pairs=pairs,
        dense=images * len(priors) * num_gts,
    )


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--images", type=int, default=2)
    p.add_argument("--gts", type=int, nargs="+", default=[50, 1000])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    p.add_argument("--case", nargs=2, metavar=("METHOD", "GTS"), help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.case:
        print(json.dumps(run_case(args.case[0], int(args.case[1]), args.images, args.device, args.repeat)))
        return
    print(f"device={args.device} threads={torch.get_num_threads()} images={args.images} locations/image=22300 classes=80")
    print("| method | gts/image | assign ms | loss fwd+bwd ms | peak MiB | pairs | R×G |")
    print("|---|---|---|---|---|---|---|")
    for g in args.gts:
        for method in METHODS:
            cmd = [sys.executable, os.path.abspath(__file__), "--case", method, str(g), "--images", str(args.images),
                   "--device", args.device, "--repeat", str(args.repeat), "--threads", str(args.threads)]
            r = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1])
            print(f"| {method} | {g} | {r['assign_ms']:.1f} | {r['loss_ms']:.1f} | {r['peak_mib']:.0f} | {r['pairs']} | {r['dense']} |", flush=True)


if __name__ == "__main__":
    main()
