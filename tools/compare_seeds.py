#!/usr/bin/env python
"""Train several configs with several seeds at the same budget; print mean ± std of COCO AP.

    python tools/compare_seeds.py --configs configs/fcos_r18_synth.py projects/DSLA/configs/fcos_dsla_r18_synth.py \
        --seeds 0 1 2 --max-iter 300 --out-root output/compare

Each run is ``train_net.py --config-file C train.seed=S train.max_iter=M`` in its own
process, writing to ``OUT_ROOT/<config name>/seed<S>``. Finished runs (a final
``bbox/AP`` in metrics.json) are not run again, so the command can be resumed. The table
is printed in Markdown and saved as ``OUT_ROOT/summary.json``.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
METRICS = ["AP", "AP50", "AP75", "APs", "APm", "APl"]


def run_name(config):
    rel = os.path.relpath(os.path.abspath(config), ROOT)
    for prefix in ("configs" + os.sep, "projects" + os.sep):
        rel = rel[len(prefix):] if rel.startswith(prefix) else rel
    return rel[:-3].replace(os.sep + "configs" + os.sep, os.sep).replace(os.sep, "__")


def final_metrics(out_dir):
    path = os.path.join(out_dir, "metrics.json")
    if not os.path.isfile(path):
        return None
    rows = [json.loads(line) for line in open(path)]
    evals = [r for r in rows if "bbox/AP" in r]
    if not evals:
        return None
    times = [r["time"] for r in rows if "time" in r]
    res = {m: evals[-1][f"bbox/{m}"] for m in METRICS}
    res["s_per_iter"] = statistics.median(times) if times else float("nan")
    return res


def mean_std(values):
    if len(values) == 1:
        return f"{values[0]:.1f}"
    return f"{statistics.mean(values):.1f} ± {statistics.stdev(values):.1f}"


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--configs", nargs="+", required=True)
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--max-iter", type=int, default=None, help="override train.max_iter (schedules scale with it)")
    p.add_argument("--out-root", default="output/compare")
    p.add_argument("--opts", nargs="*", default=[], help="extra key=value overrides for every run")
    args = p.parse_args()

    summary = {}
    for config in args.configs:
        name = run_name(config)
        for seed in args.seeds:
            out = os.path.join(args.out_root, name, f"seed{seed}")
            if final_metrics(out) is None:
                cmd = [sys.executable, os.path.join(ROOT, "train_net.py"), "--config-file", config,
                       f"train.output_dir={out}", f"train.seed={seed}", *args.opts]
                if args.max_iter:
                    cmd.append(f"train.max_iter={args.max_iter}")
                t0 = time.time()
                os.makedirs(out, exist_ok=True)
                with open(os.path.join(out, "stdout.txt"), "w") as log:
                    rc = subprocess.call(cmd, stdout=log, stderr=subprocess.STDOUT)
                print(f"[compare_seeds] {name} seed {seed}: exit {rc} in {time.time() - t0:.0f} s", flush=True)
            res = final_metrics(out)
            if res is not None:
                summary.setdefault(name, []).append(dict(seed=seed, **res))
    os.makedirs(args.out_root, exist_ok=True)
    with open(os.path.join(args.out_root, "summary.json"), "w") as f:
        json.dump(summary, f, indent=1)
    print(f"\n| config | seeds | {' | '.join(METRICS)} | s/iter |")
    print("|---|---|" + "---|" * (len(METRICS) + 1))
    for name, runs in summary.items():
        cells = [mean_std([r[m] for r in runs]) for m in METRICS]
        print(f"| {name} | {len(runs)} | {' | '.join(cells)} | {statistics.median(r['s_per_iter'] for r in runs):.2f} |")


if __name__ == "__main__":
    main()
