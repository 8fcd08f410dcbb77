#!/usr/bin/env python
"""AP with and without test-time augmentation of trained detectors, as a result file and a
Markdown table (docs/tta.md).

    python benchmarks/bench_tta.py [--configs configs/atss_r18_synth.py configs/fcos_r18_synth.py]
        [--runs output/tta_atss output/tta_fcos] [--output benchmarks/results/tta_<date>.json]
        [--docs docs/tta.md] [OVERRIDE ...]
    python benchmarks/bench_tta.py --render FILE.json [--readme docs/tta.md]

For each config, its run directory (``--runs``, default ``output/tta_<config name>``)
holds a training of that config (``train_net.py --config-file CONFIG
train.output_dir=RUN``, run here first when the directory has no ``model_final.pth``).
Its ``model_final.pth`` is then evaluated twice on the config's test set with
``train_net.py --eval-only``: plain, and with ``--tta`` (the config's ``train.tta``
settings), writing to ``RUN/eval_plain`` and ``RUN/eval_tta``. Recorded per config: the
bbox metrics both ways, the TTA settings, seed and iterations of the training (from the
run's ``config.yaml``), the checkpoint's sha256 and the evaluation times; plus the commit,
device and threads. ``OVERRIDE``\\ s (``key=value``) go to every train_net.py call.
"""
import argparse
import hashlib
import json
import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from result_files import (  # noqa: E402
    ROOT, add_result_arguments, git_commit, render_file, short_commit, today, write_result)

DEFAULT = ["configs/atss_r18_synth.py", "configs/fcos_r18_synth.py"]
MARKER = "bench_tta"
METRICS = ("AP", "AP50", "AP75", "APs", "APm", "APl")


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def train_net_main(argv):
    sys.path.insert(0, ROOT)
    import train_net

    return train_net.main(train_net.get_parser().parse_args(argv))


def run_config(path):
    """The ``train`` node of a run's config.yaml (plain data)."""
    from dsla_d2.utils.trust import load_config

    return load_config(path, trust_python=False)


def measure(config, run_dir, overrides=()):
    """Train ``config`` into ``run_dir`` unless done, then evaluate it plain and with TTA."""
    weights = os.path.join(run_dir, "model_final.pth")
    trained_here = False
    if not os.path.isfile(weights):
        train_net_main(["--config-file", config, f"train.output_dir={run_dir}", *overrides])
        trained_here = True
    cfg = run_config(os.path.join(run_dir, "config.yaml"))
    out = {
        "config": config,
        "run": os.path.relpath(run_dir, ROOT),
        "trained_by_this_script": trained_here,
        "seed": int(cfg.train.seed),
        "iterations": int(cfg.train.max_iter),
        "train_dataset": str(cfg.dataloader.train.dataset.names),
        "test_dataset": str(cfg.dataloader.test.dataset.names),
        "checkpoint_sha256": sha256(weights),
    }
    from dsla_d2.evaluation import tta_settings

    for name, flags in (("plain", ["--eval-only"]), ("tta", ["--eval-only", "--tta"])):
        eval_dir = os.path.join(run_dir, f"eval_{name}")
        args = ["--config-file", config, *flags, f"train.output_dir={eval_dir}", f"train.init_checkpoint={weights}", *overrides]
        start = time.perf_counter()
        results = train_net_main(args)
        out[f"{name}_seconds"] = round(time.perf_counter() - start, 1)
        out[name] = {k: float(v) for k, v in results["bbox"].items()}
        if name == "tta":
            out["tta_settings"] = tta_settings(run_config(os.path.join(eval_dir, "config.yaml")))
    return out


def _fmt(v):
    return f"{v:.1f}"


def render(result):
    """Markdown: a provenance line and the table (AP, AP50, AP75 plain / with TTA)."""
    rows = result["configs"]
    settings = {json.dumps(r["tta_settings"], sort_keys=True) for r in rows}
    tta = "; ".join(
        f"shortest edges {s['min_sizes']}, max size {s['max_size']}, flip {'yes' if s['flip'] else 'no'}"
        for s in (json.loads(x) for x in sorted(settings)))
    head = (f"{result['date']}, {result['device']}, {result['threads']} thread(s), commit {short_commit(result)}; "
            f"TTA: {tta}; one model per config, evaluated both ways on {rows[0]['test_dataset']}\n\n")
    lines = ["| config | iterations | seed | AP | AP with TTA | Δ AP | AP50 | AP50 with TTA | AP75 | AP75 with TTA |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        p, t = r["plain"], r["tta"]
        lines.append(f"| {r['config']} | {r['iterations']} | {r['seed']} | {_fmt(p['AP'])} | {_fmt(t['AP'])} | "
                     f"{t['AP'] - p['AP']:+.1f} | {_fmt(p['AP50'])} | {_fmt(t['AP50'])} | {_fmt(p['AP75'])} | {_fmt(t['AP75'])} |")
    return head + "\n".join(lines) + "\n"


def get_parser():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--configs", nargs="+", default=DEFAULT)
    p.add_argument("--runs", nargs="+", default=None, help="run directory per config (default output/tta_<config name>)")
    p.add_argument("--docs", default=None, help="after measuring: render the table into this file's markers")
    p.add_argument("overrides", nargs="*", help="key=value overrides for every train_net.py call")
    add_result_arguments(p, "tta")
    return p


def main(argv=None):
    args = get_parser().parse_args(argv)
    if args.render:
        render_file(args.render, render, args.readme, name=MARKER)
        return 0
    runs = args.runs or [os.path.join(ROOT, "output", "tta_" + os.path.basename(c).split("_")[0]) for c in args.configs]
    if len(runs) != len(args.configs):
        raise SystemExit(f"--runs: {len(runs)} directories for {len(args.configs)} configs")
    import dsla_d2  # noqa: F401

    result = {"date": today(), **git_commit(), "device": "cpu" if not torch.cuda.is_available() else torch.cuda.get_device_name(),
              "threads": torch.get_num_threads(), "overrides": list(args.overrides),
              "configs": [measure(c, os.path.abspath(r), args.overrides) for c, r in zip(args.configs, runs)]}
    out = write_result(result, args.output, "tta")
    print(f"wrote {out}")
    render_file(out, render, args.docs, name=MARKER)
    return 0


if __name__ == "__main__":
    sys.exit(main())
