#!/usr/bin/env python
"""Plot loss terms, learning rate and AP from one or several runs' metrics.json.

    python tools/plot_metrics.py output/fcos output/dsla --out curves.png
    python tools/plot_metrics.py fcos=output/compare/fcos_r18_synth dsla=output/compare/DSLA__fcos_dsla_r18_synth \
        --window 10 --keys total_loss loss_cls lr bbox/AP --out curves.png --out-json curves.json

Each positional argument is one curve: ``[LABEL=]PATH[,PATH...]``. A PATH is a run's
output directory or its metrics.json. Several comma-separated PATHs are seeds of one
config, drawn as their mean with a ± one (sample) standard deviation band (error bars for
evaluation results); a directory
without metrics.json whose ``seed*/`` subdirectories have one (``tools/compare_seeds.py``
writes that layout) is such a group too.

Smoothing: a **trailing moving average** over the last ``--window`` logged points
(fewer at the start: point i averages points max(0, i-w+1)..i); ``--window 1`` draws the
raw values. It is applied to each run's training scalars (losses and the like) before
the mean/std over seeds; ``lr`` and evaluation results (keys with a "/", e.g. bbox/AP,
consistency/pearson) are drawn unsmoothed. Iterations logged twice (a resumed run writes
again from its last checkpoint) keep the last value written. The seeds of a group are
compared at the iterations they all logged.
"""
import argparse
import glob
import json
import logging
import os
import sys
from typing import Dict, List, Optional, Tuple

import numpy as np

logger = logging.getLogger("plot_metrics")
Series = Dict[int, float]  # iteration -> value
Curve = Tuple[np.ndarray, np.ndarray, Optional[np.ndarray]]  # iterations, mean, std (None: one run)


def metrics_file(path: str) -> str:
    f = os.path.join(path, "metrics.json") if os.path.isdir(path) else path
    if not os.path.isfile(f):
        raise FileNotFoundError(f"no metrics.json at {path!r}")
    return f


def read_metrics(path: str) -> Dict[str, Series]:
    """key -> {iteration: value} from a Detectron2 metrics.json (one json object a line).
    A truncated last line (a run killed while writing) is skipped with a warning; any other
    unreadable line is an error naming the file and line."""
    path = metrics_file(path)
    with open(path) as f:
        lines = [line for line in f.read().splitlines() if line.strip()]
    out: Dict[str, Series] = {}
    for n, line in enumerate(lines, 1):
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            if n == len(lines):
                logger.warning("%s: skipping the truncated last line %d", path, n)
                continue
            raise ValueError(f"{path}, line {n}: not json ({e})") from None
        if "iteration" not in row:
            raise ValueError(f"{path}, line {n}: no 'iteration'")
        it = int(row["iteration"])
        for key, value in row.items():
            if key != "iteration" and isinstance(value, (int, float)) and not isinstance(value, bool):
                out.setdefault(key, {})[it] = float(value)
    return out


def moving_average(values, window: int) -> np.ndarray:
    """Trailing mean over the last ``window`` points (fewer at the start), (n,) -> (n,)."""
    if window < 1:
        raise ValueError(f"--window must be >= 1, got {window}")
    v = np.asarray(values, np.float64)
    c = np.concatenate([[0.0], np.cumsum(v)])
    i = np.arange(1, v.size + 1)
    lo = np.maximum(i - window, 0)
    return (c[i] - c[lo]) / (i - lo)


def is_smoothed(key: str) -> bool:
    return key != "lr" and "/" not in key


def group_curve(runs: List[Dict[str, Series]], key: str, window: int) -> Optional[Curve]:
    """(iterations, mean, std) of ``key`` over a group of runs (std None for one run),
    or None if a run of the group lacks the key or they share no iteration."""
    if any(key not in r for r in runs):
        return None
    common = sorted(set.intersection(*[set(r[key]) for r in runs]))
    if not common:
        return None
    curves = []
    for r in runs:  # a loop over the (few) runs of a group
        its = np.array(sorted(r[key]))
        vals = np.array([r[key][i] for i in its])
        vals = moving_average(vals, window) if is_smoothed(key) else vals
        curves.append(vals[np.searchsorted(its, common)])
    curves = np.stack(curves)
    std = curves.std(axis=0, ddof=1) if len(runs) > 1 else None
    return np.array(common), curves.mean(axis=0), std


def parse_run_arg(arg: str) -> Tuple[str, List[str]]:
    """``[LABEL=]PATH[,PATH...]`` -> (label, metrics.json paths)."""
    label, sep, spec = arg.partition("=")
    if not sep or os.path.exists(arg):
        label, spec = "", arg
    paths = [p for p in spec.split(",") if p]
    if len(paths) == 1 and os.path.isdir(paths[0]) and not os.path.isfile(os.path.join(paths[0], "metrics.json")):
        seeds = sorted(glob.glob(os.path.join(paths[0], "seed*", "metrics.json")))
        if not seeds:
            raise FileNotFoundError(f"no metrics.json in {paths[0]!r} nor in its seed*/ subdirectories")
        label = label or os.path.basename(os.path.normpath(paths[0]))
        return label, seeds
    files = [metrics_file(p) for p in paths]
    if not label:
        dirs = [os.path.dirname(os.path.abspath(f)) for f in files]
        label = os.path.basename(dirs[0] if len(dirs) == 1 else os.path.commonpath(dirs)) or f"run {arg}"
    return label, files


def default_keys(groups) -> List[str]:
    present = {k for _, runs in groups for r in runs for k in r}
    losses = sorted(k for k in present if k.startswith("loss_"))
    return [k for k in ["total_loss", *losses, "lr", "bbox/AP"] if k in present]


def collect(groups, keys: List[str], window: int) -> Dict[str, Dict[str, dict]]:
    """key -> label -> {"runs", "iteration", "mean", "std"} (lists; std None for one run)."""
    out = {}
    for key in keys:
        for label, runs in groups:
            c = group_curve(runs, key, window)
            if c is not None:
                out.setdefault(key, {})[label] = {"runs": len(runs), "iteration": c[0].tolist(), "mean": c[1].tolist(),
                                                  "std": None if c[2] is None else c[2].tolist()}
    return out


def plot(curves: Dict[str, Dict[str, dict]], path: str, window: int) -> None:
    from matplotlib.figure import Figure

    keys = list(curves)
    ncols = min(3, len(keys))
    nrows = -(-len(keys) // ncols)
    fig = Figure(figsize=(4.2 * ncols, 3.0 * nrows), dpi=90)
    axes = np.atleast_1d(fig.subplots(nrows, ncols, squeeze=False)).ravel()
    labels = sorted({label for per_key in curves.values() for label in per_key})
    colors = {label: f"C{i % 10}" for i, label in enumerate(labels)}
    for ax, key in zip(axes, keys):
        for label, c in curves[key].items():
            it, mean = np.array(c["iteration"]), np.array(c["mean"])
            name = label if c["runs"] == 1 else f"{label} ({c['runs']} seeds, mean ± std)"
            sparse = "/" in key  # evaluation results: a few points, drawn with error bars
            ax.plot(it, mean, color=colors[label], label=name, marker="o" if sparse else None, markersize=3)
            if c["std"] is not None:
                std = np.array(c["std"])
                if sparse:
                    ax.errorbar(it, mean, yerr=std, color=colors[label], fmt="none", capsize=3)
                else:
                    ax.fill_between(it, mean - std, mean + std, color=colors[label], alpha=0.25, linewidth=0)
        ax.set_title(key + (f" (moving average, {window})" if is_smoothed(key) and window > 1 else ""), fontsize=9)
        ax.set_xlabel("iteration", fontsize=8)
        ax.tick_params(labelsize=7)
    for ax in axes[len(keys):]:
        ax.set_visible(False)
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("runs", nargs="+", help="[LABEL=]PATH[,PATH...]: a run, or the seeds of one config")
    p.add_argument("--keys", nargs="+", help="metrics to plot (default: total_loss, loss_*, lr, bbox/AP)")
    p.add_argument("--window", type=int, default=20, help="moving-average window in logged points (1: raw)")
    p.add_argument("--out", default="metrics.png", help="PNG to write")
    p.add_argument("--out-json", help="also write the plotted series as json")
    args = p.parse_args(argv)
    moving_average([], args.window)  # validates the window before reading anything
    groups = []
    for arg in args.runs:
        label, files = parse_run_arg(arg)
        groups.append((label, [read_metrics(f) for f in files]))
    keys = args.keys or default_keys(groups)
    present = sorted({k for _, runs in groups for r in runs for k in r})
    missing = [k for k in keys if k not in present]
    if missing:
        raise SystemExit(f"metric(s) {missing} are in none of the runs; available: {present}")
    curves = collect(groups, keys, args.window)
    if not curves:
        raise SystemExit(f"nothing to plot for {keys}: no group logged them at common iterations")
    plot(curves, args.out, args.window)
    print(f"wrote {args.out} ({len(curves)} metrics, {len(groups)} curves)")
    if args.out_json:
        with open(args.out_json, "w") as f:
            json.dump({"window": args.window, "curves": curves}, f, indent=1)
    return curves


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    main(sys.argv[1:])
