#!/usr/bin/env python
"""Validation-AP learning curves of a campaign's runs, and where each stops rising: the
result file behind the choice of a training budget (issue 19).

    python tools/learning_curves.py synth_pt_curves            # json + figure
    python tools/learning_curves.py synth_pt_curves --tolerance 0.5 --figure docs/images/x.png

Reads the ``metrics.json`` of every run of ``benchmarks/campaigns/<campaign>.yaml`` (under
``output/results/<campaign>/<run>/seed<S>/``, where ``tools/compare_seeds.py`` trains them)
and writes ``benchmarks/results/<campaign>/curves.json`` and a figure (default
``docs/images/<campaign>.png``: AP and AP50 against iterations, one line per run).

Per run, from its evaluations (``bbox/*`` rows) and its logged learning rate:

* ``lr_drop``: the first logged iteration, after the warm-up has reached the peak, whose lr
  is below half the peak — the end of the constant-lr phase (the step schedule's first
  milestone);
* ``best_before_drop``: the highest AP evaluated before ``lr_drop``;
* ``plateau``: the first evaluation before ``lr_drop`` whose AP is within ``tolerance`` AP of
  ``best_before_drop`` — from there on, AP at the constant lr no longer rises by more than
  the tolerance; ``null`` if the run has not reached ``lr_drop`` yet (the curve is still
  open);
* ``flat``: whether a later evaluation before ``lr_drop`` confirms the plateau (false when the
  best AP is the last evaluation before the drop: the curve was still rising there);
* ``final``: the AP of the last evaluation (after the lr decay, when the run finished).

``tools/render_tables.py`` renders these files (a ``curves`` table in ``benchmarks/tables.yaml``).
"""
import argparse
import datetime
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import compare_seeds  # noqa: E402
import plot_metrics  # noqa: E402
import run_record  # noqa: E402

ROOT = run_record.ROOT
EVAL_KEYS = ("bbox/AP", "bbox/AP50", "bbox/AP75")


def lr_drop(lr):
    """First iteration (after the peak is reached) whose lr is below half the peak, or None.
    ``lr``: {iteration: lr}."""
    its = sorted(lr)
    if not its:
        return None
    peak = max(lr.values())
    reached = next(i for i in its if lr[i] >= peak * (1 - 1e-6))
    return next((i for i in its if i > reached and lr[i] < 0.5 * peak), None)


def analyse(series, tolerance, max_iter=None):
    """The curve summary of one run (module docstring). ``series``: plot_metrics.read_metrics.
    Each evaluation's ``done`` is the number of iterations trained before it: Detectron2 logs
    a periodic evaluation at the 0-based index of its last iteration, the final one at
    ``max_iter``."""
    evals = sorted(series.get("bbox/AP", {}))
    points = [{"iteration": it, "done": it + 1 if max_iter is None else min(it + 1, max_iter),
               **{k.split("/")[1]: round(series[k][it], 3) for k in EVAL_KEYS if it in series.get(k, {})}}
              for it in evals]
    drop = lr_drop(series.get("lr", {}))
    before = [p for p in points if drop is not None and p["iteration"] < drop]
    best = max((p["AP"] for p in before), default=None)
    plateau = next((p["iteration"] for p in before if p["AP"] >= best - tolerance), None) if best is not None else None
    # flat only if some evaluation after the plateau's, before the drop, confirms it: a best
    # reached at the last evaluation before the drop is a curve still rising
    flat = plateau is not None and plateau < before[-1]["iteration"]
    last_lr_it = max(series.get("lr", {0: 0}))
    return {
        "evaluations": points,
        "lr_drop": drop,
        "best_before_drop": best,
        "plateau": plateau,
        "flat": flat,
        "final": points[-1]["AP"] if points else None,
        "last_logged_iteration": last_lr_it,
    }


def campaign_curves(campaign, tolerance, output_dir=compare_seeds.OUTPUT_DIR, campaigns_dir=None):
    """{"campaign", "tolerance", "runs": {run: {seed: summary}}} of a campaign's trained runs."""
    campaigns_dir = campaigns_dir or os.path.join(ROOT, "benchmarks", "campaigns")
    _, specs = compare_seeds.load_campaign(os.path.join(campaigns_dir, f"{campaign}.yaml"))
    runs = {}
    for spec in specs:
        out = os.path.join(output_dir, campaign, spec["run"], f"seed{spec['seed']}")
        if not os.path.isfile(os.path.join(out, "metrics.json")):
            continue
        summary = analyse(plot_metrics.read_metrics(out), tolerance, spec["max_iter"])
        summary.update(config=spec["config"], overrides=spec["overrides"], max_iter=spec["max_iter"])
        runs.setdefault(spec["run"], {})[str(spec["seed"])] = summary
    return {"campaign": campaign, "tolerance_AP": tolerance, "written": datetime.date.today().isoformat(), "runs": runs}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("campaign")
    p.add_argument("--tolerance", type=float, default=0.5, help="AP within which a curve counts as flat")
    p.add_argument("--figure", help="PNG to write (default docs/images/<campaign>.png)")
    args = p.parse_args(argv)
    curves = campaign_curves(args.campaign, args.tolerance)
    if not curves["runs"]:
        raise SystemExit(f"no trained run of {args.campaign} under {compare_seeds.OUTPUT_DIR}")
    out = os.path.join(ROOT, "benchmarks", "results", args.campaign, "curves.json")
    run_record.write_json(out, curves)
    groups = [(run, [plot_metrics.read_metrics(os.path.join(compare_seeds.OUTPUT_DIR, args.campaign, run, f"seed{s}"))
                     for s in seeds]) for run, seeds in curves["runs"].items()]
    figure = args.figure or os.path.join(ROOT, "docs", "images", f"{args.campaign}.png")
    plot_metrics.plot(plot_metrics.collect(groups, ["bbox/AP", "bbox/AP50", "lr"], 1), figure, 1)
    for run, seeds in curves["runs"].items():
        for seed, s in seeds.items():
            print(f"{run} seed {seed}: plateau at iteration index {s['plateau']} (best {s['best_before_drop']} before the lr drop at "
                  f"{s['lr_drop']}), final {s['final']}")
    print(f"wrote {os.path.relpath(out, ROOT)} and {os.path.relpath(figure, ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
