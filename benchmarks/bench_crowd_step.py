#!/usr/bin/env python
"""Train-step time on crowded images (300–1000 gts each) vs the same images with a normal
number of gts, for several detectors (issue 13).

    python benchmarks/bench_crowd_step.py [--configs A.py ...] [--batch 2] [--steps 5] [--before]
        [--out benchmarks/results/crowd_step_<date>.json]
    python benchmarks/bench_crowd_step.py --render FILE.json [--readme README.md]

Batches: the first ``--batch`` images of ``dsla_synth_crowd`` at ``crowd_r18_synth.py``'s
test size (shorter side 320) with all their gts ("crowded"), and the same images keeping
each image's first 12 gts ("normal": the most the regular embedded splits have). Same
pixels, same model: the difference is what hundreds of gts cost. ``--before`` also times
the crowded batch with the dense assigners of today's main (``tests/reference``; the
model's assigner object is switched to its dense subclass, same arguments). Forward +
backward + SGD step, median of ``--steps`` after 2 warm-up steps, one intra-op thread.
"""
import argparse
import datetime
import json
import os
import sys

import torch

import dsla_d2  # noqa: F401
import detectron2.data.transforms as T
from detectron2.data import DatasetCatalog

from dsla_d2.data import CheckedDatasetMapper

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
from bench_assigners import write_readme  # noqa: E402
from bench_train_step import DEFAULT, build_model, time_model_steps  # noqa: E402

NORMAL_GTS = 12


def crowded_batch(n):
    mapper = CheckedDatasetMapper(is_train=True, augmentations=[T.ResizeShortestEdge(320, 384)], image_format="BGR")
    return [mapper(d) for d in DatasetCatalog.get("dsla_synth_crowd")[:n]]


def dense_twin(model):
    """The model with its assigner switched to today's dense implementation."""
    sys.path.insert(0, os.path.join(ROOT, "tests"))
    from reference import dense_assigners

    model.assigner.__class__ = getattr(dense_assigners, "Dense" + type(model.assigner).__name__)
    return model


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--configs", nargs="+", default=DEFAULT)
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--before", action="store_true")
    p.add_argument("--out", default=None)
    p.add_argument("--render", default=None, help="print the table of a result json instead of measuring")
    p.add_argument("--readme", default=None, help="with --render: replace the README's table between markers")
    args = p.parse_args()
    if args.render:
        with open(args.render, encoding="utf-8") as f:
            table = render(json.load(f))
        print(table)
        if args.readme:
            write_readme(args.readme, table, os.path.relpath(args.render, ROOT), name="bench_crowd_step")
        return
    torch.set_num_threads(1)
    crowded = crowded_batch(args.batch)
    normal = [dict(d, instances=d["instances"][:NORMAL_GTS]) for d in crowded]
    time_model_steps(build_model(args.configs[0]), normal, 1)  # one-time costs, untimed
    rows = []
    for path in args.configs:
        row = {"config": path}
        row["normal_ms"] = time_model_steps(build_model(path), normal, args.steps) * 1000
        row["crowded_ms"] = time_model_steps(build_model(path), crowded, args.steps) * 1000
        if args.before:
            row["before_crowded_ms"] = time_model_steps(dense_twin(build_model(path)), crowded, args.steps) * 1000
        rows.append(row)
        print(json.dumps(row), flush=True)
    result = {
        "date": datetime.date.today().isoformat(),
        "threads": 1,
        "load_average": os.getloadavg(),
        "batch": args.batch,
        "gts_per_image": [len(d["instances"]) for d in crowded],
        "image_sizes": [list(d["image"].shape[1:]) for d in crowded],
        "rows": rows,
    }
    out = args.out or os.path.join(HERE, "results", f"crowd_step_{result['date']}.json")
    os.makedirs(os.path.dirname(out), exist_ok=True)
    with open(out, "w", encoding="utf-8") as f:
        json.dump(result, f, indent=1)
    print(f"\nwrote {out}\n\n{render(result)}")


def render(result):
    head = (f"{result['date']}, 1 thread, batch {result['batch']} of dsla_synth_crowd at shorter side 320 "
            f"({', '.join(map(str, result['gts_per_image']))} gts), load average {result['load_average'][0]:.2f}\n\n")
    lines = [
        "| config | normal (≤ 12 gts/image): ms/step | crowded: ms/step | crowded ÷ normal "
        "| crowded, dense assigner (before): ms/step |",
        "|---|---|---|---|---|",
    ]
    for r in result["rows"]:
        before = f"{r['before_crowded_ms']:,.0f}" if "before_crowded_ms" in r else "–"
        lines.append(f"| {r['config']} | {r['normal_ms']:,.0f} | {r['crowded_ms']:,.0f} | "
                     f"{r['crowded_ms'] / r['normal_ms']:.2f} | {before} |")
    return head + "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
