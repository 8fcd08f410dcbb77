#!/usr/bin/env python
"""Train-step time (forward + backward + SGD step) of several detectors on the same inputs.

Written as a JSON result file and rendered as a Markdown table.

    python benchmarks/bench_train_step.py [--configs A.py B.py ...] [--batch 8] [--steps 10]
        [--rounds 3] [--threads N] [--output benchmarks/results/train_step_<date>.json]
    python benchmarks/bench_train_step.py --render FILE.json [--readme README.md]

Every model is built from its lazy config (seed 0), fed the same fixed batch of
embedded-dataset images (``--dataset``, resized as the synth configs train: shorter side
192), and timed over ``--steps`` steps after 2 untimed steps; a config's time in a round is
the median of its steps. On a shared machine the load drifts, so the configs are timed
interleaved: ``--rounds`` rounds, each round every config in order (a freshly built model,
so every round times the same computation). Reported per config: the median over rounds,
the min–max over rounds, and the ratio of the median to the first config's.
"""
import argparse
import os
import statistics
import sys
import time

import torch

import dsla_d2  # noqa: F401
import detectron2.data.transforms as T
from detectron2.config import LazyConfig, instantiate
from detectron2.data import DatasetCatalog
from detectron2.utils.events import EventStorage

from dsla_d2.data import CheckedDatasetMapper

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from result_files import (  # noqa: E402
    add_result_arguments, git_commit, render_file, short_commit, today, write_result)

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
WARMUP_STEPS = 2
MARKER = "bench_train_step"


def fixed_batch(n, dataset="dsla_synth_val"):
    """The first ``n`` images of ``dataset`` through the training mapper (no flip)."""
    mapper = CheckedDatasetMapper(is_train=True, augmentations=[T.ResizeShortestEdge(192, 288)], image_format="BGR")
    dicts = DatasetCatalog.get(dataset)
    if len(dicts) < n:
        raise SystemExit(f"--batch {n}: {dataset} has only {len(dicts)} images")
    return [mapper(d) for d in dicts[:n]]


def build_model(path, device="cpu"):
    cfg = LazyConfig.load(path)
    torch.manual_seed(0)
    return instantiate(cfg.model).to(device).train()


def time_steps(path, batch, steps, device="cpu"):
    """Median seconds of a train step of the config's model, after 2 untimed steps."""
    return time_model_steps(build_model(path, device), batch, steps)


def time_model_steps(model, batch, steps):
    """Median seconds of a train step of ``model``, after 2 untimed steps."""
    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    sync = torch.cuda.synchronize if next(model.parameters()).is_cuda else (lambda: None)
    times = []
    with EventStorage(0):
        for step in range(steps + WARMUP_STEPS):
            sync()
            t0 = time.perf_counter()
            loss = sum(model(batch).values())
            opt.zero_grad()
            loss.backward()
            opt.step()
            sync()
            if step >= WARMUP_STEPS:
                times.append(time.perf_counter() - t0)
    return statistics.median(times)


def measure(args):
    """Time ``args.configs`` interleaved over ``args.rounds`` rounds; returns the result dict."""
    if args.threads:
        torch.set_num_threads(args.threads)
    load_start = os.getloadavg()
    batch = fixed_batch(args.batch, args.dataset)
    # Untimed first: the first model of a process pays one-time costs (allocator growth,
    # thread pool start-up) and would look ~20% slower than it is.
    time_steps(args.configs[0], batch, 2, args.device)
    per_round = {path: [] for path in args.configs}
    for r in range(args.rounds):
        for path in args.configs:
            per_round[path].append(time_steps(path, batch, args.steps, args.device) * 1000)
            print(f"round {r + 1}/{args.rounds} {path}: {per_round[path][-1]:.0f} ms/step", flush=True)
    base = statistics.median(per_round[args.configs[0]])
    rows = []
    for path, ms in per_round.items():
        median = statistics.median(ms)
        rows.append({"config": path, "median_ms": median, "ratio": median / base,
                     "min_ms": min(ms), "max_ms": max(ms), "round_ms": ms})
    return dict(
        date=today(), device=args.device, threads=torch.get_num_threads(), torch=torch.__version__,
        load_average_start=load_start, load_average_end=os.getloadavg(), dataset=args.dataset,
        batch=args.batch, steps=args.steps, warmup_steps=WARMUP_STEPS, rounds=args.rounds,
        configs=rows, **git_commit(),
    )


def render(result):
    """Markdown: a provenance line and the table (config, ms, relative to the first config)."""
    rows = result["configs"]
    head = (
        f"{result['date']}, {result['device']}, {result['threads']} thread(s), batch {result['batch']} of "
        f"{result['dataset']}, median of {result['steps']} steps per round, median over {result['rounds']} "
        f"interleaved round(s); load average {result['load_average_start'][0]:.2f} at start, "
        f"{result['load_average_end'][0]:.2f} at end; commit {short_commit(result)}\n\n"
    )
    lines = [f"| config | ms/step | relative to {rows[0]['config']} | min–max over rounds (ms) |",
             "|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['config']} | {r['median_ms']:,.0f} | {r['ratio']:.2f}× | "
                     f"{r['min_ms']:,.0f}–{r['max_ms']:,.0f} |")
    return head + "\n".join(lines) + "\n"


def get_parser():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--configs", nargs="+", default=DEFAULT)
    p.add_argument("--dataset", default="dsla_synth_val", help="registered dataset the batch is taken from")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--steps", type=int, default=10, help="timed steps per config and round")
    p.add_argument("--rounds", type=int, default=3, help="interleaved rounds over all configs")
    p.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    add_result_arguments(p, "train_step")
    return p


def main(argv=None):
    args = get_parser().parse_args(argv)
    if args.render:
        return render_file(args.render, render, args.readme, name=MARKER)
    for name in ("batch", "steps", "rounds"):
        if getattr(args, name) < 1:
            raise SystemExit(f"--{name} must be ≥ 1, got {getattr(args, name)}")
    result = measure(args)
    out = write_result(result, args.output, "train_step")
    print(f"\nwrote {out}\n\n{render(result)}")
    return out


if __name__ == "__main__":
    main()
