#!/usr/bin/env python
"""Render the result tables of the docs pages and READMEs from the records in ``benchmarks/results/``.

    python tools/render_tables.py           # rewrite every table in docs/*.md, README.md, projects/*/README.md
    python tools/render_tables.py --check   # exit 1 if a committed table differs from its rendering

A table lives between ``<!-- results:NAME -->`` and ``<!-- /results:NAME -->`` in one of
those Markdown files and is defined in ``benchmarks/tables.yaml``::

    tables:
      NAME:
        campaign: synth600                  # benchmarks/results/synth600/ (and campaigns/synth600.yaml)
        metrics: [AP, AP50, {key: train/mean_pos_iou, header: IoU, decimals: 2}]
                                            # "AP" means "bbox/AP", "train/x" the last logged
                                            # training value of x; other keys as given
        per_seed: AP                        # optional: a column with each seed's value
        paired: AP                          # optional: a column with the difference to the
                                            # row's baseline (`vs`), seed by seed
        verdict: true                       # optional (with `paired`): whether the row's claim
                                            # (better than its baseline) holds, by a paired t-test
        decimals: 1                         # optional (per-seed values get one more)
        first_column: detector              # optional header of the label column
        rows:
          - {run: fcos_r18_synth, label: "FCOS (`configs/fcos_r18_synth.py`)"}
          - {run: other, label: "...", campaign: another_campaign}   # a row from another campaign
          - {run: fcos_dsla, label: "...", vs: {run: fcos_r18_synth, label: FCOS}}  # with `paired`
                                            # (vs may name its own campaign too)

A ``curves`` table renders ``benchmarks/results/<campaign>/curves.json``
(``tools/learning_curves.py``): AP at every evaluation of one seed per row, where the curve
stops rising at the constant lr, and the AP after the lr decay::

      NAME:
        curves: synth_pt_curves
        rows:
          - {run: fcos_r18_synth, label: FCOS}

Each row shows mean ± sample std over the row's finished runs (with ``paired``: of the
per-seed differences to its baseline, over the seeds both finished — the seed-to-seed
spread of a short training is shared by both runs of a seed, so the paired difference is the
steadier comparison; with ``verdict``, a two-sided paired t-test at 95 % on those
differences says "reproduced" (Δ > 0), "opposite" (Δ < 0) or "within noise"); the lines under the table
state the budget, seeds, commit(s) and the record files. A row with no record yet says
"not yet measured" (and the planned budget, from the campaign file) — never a typed number.
"""
import argparse
import glob
import os
import re
import statistics
import sys
from collections import OrderedDict

import yaml

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import run_record  # noqa: E402

ROOT = run_record.ROOT
TABLES_FILE = os.path.join(ROOT, "benchmarks", "tables.yaml")
RESULTS_DIR = os.path.join(ROOT, "benchmarks", "results")
CAMPAIGNS_DIR = os.path.join(ROOT, "benchmarks", "campaigns")
DOC_GLOBS = ("README.md", "docs/*.md", "projects/*/README.md")
TABLE_KEYS = {"campaign", "metrics", "per_seed", "paired", "verdict", "decimals", "first_column", "rows"}
CURVES_KEYS = {"curves", "seed", "first_column", "rows"}
ROW_KEYS = {"run", "label", "campaign", "vs"}
SUMMARY_METRICS = ["AP", "AP50", "AP75", "APs", "APm", "APl"]
_BLOCK = re.compile(r"(<!-- results:([\w.-]+) -->\n)(.*?)(<!-- /results:\2 -->)", re.S)
NOT_MEASURED = "not yet measured"


def metric_key(name):
    return name if "/" in name else f"bbox/{name}"


def metric_value(record, name):
    """A record's value of a table metric: "AP" → metrics["bbox/AP"], "consistency/x" →
    metrics["consistency/x"], "train/x" → the last logged training value of x; None if absent."""
    if name.startswith("train/"):
        return record.get("train_final", {}).get(name[len("train/"):])
    return record["metrics"].get(metric_key(name))


def metric_columns(table):
    """[(key, header, decimals)]: a metric is a name, or {key, header, decimals}."""
    cols = []
    for m in table["metrics"]:
        m = {"key": m} if isinstance(m, str) else m
        if not isinstance(m, dict) or "key" not in m or set(m) - {"key", "header", "decimals"}:
            raise SystemExit(f"{TABLES_FILE}: a metric is a name or {{key, header, decimals}}, got {m!r}")
        cols.append((m["key"], m.get("header", m["key"]), m.get("decimals", table.get("decimals", 1))))
    return cols


def mean_std(values, decimals=1, signed=False):
    """[1, 2, 3] -> '2.0 ± 1.0' (sample std, n − 1); one value -> '1.0'; none -> '–'.
    ``signed``: the mean with its sign, '+2.0 ± 1.0' (differences)."""
    if not values:
        return "–"
    sign = "+" if signed else ""
    if len(values) == 1:
        return f"{values[0]:{sign}.{decimals}f}"
    return f"{statistics.mean(values):{sign}.{decimals}f} ± {statistics.stdev(values):.{decimals}f}"


def paired_diffs(row, done, campaign, metric, results_dir):
    """The row's ``metric`` minus its baseline's, seed by seed, over the seeds both finished."""
    base_campaign = row["vs"].get("campaign", campaign)
    base = {r["seed"]: metric_value(r, metric) for r in load_records(base_campaign, row["vs"]["run"], results_dir)
            if r["status"] == "finished"}
    return [metric_value(r, metric) - base[r["seed"]] for r in done
            if base.get(r["seed"]) is not None and metric_value(r, metric) is not None]


def paired_cell(row, done, campaign, metric, decimals, results_dir):
    """Mean ± std of :func:`paired_diffs`, naming the baseline."""
    if "vs" not in row:
        return ""
    diffs = paired_diffs(row, done, campaign, metric, results_dir)
    seeds = "" if len(diffs) > 1 else (" (1 seed)" if diffs else "")
    return f"{mean_std(diffs, decimals, signed=True)} vs {row['vs']['label']}{seeds}"


# Two-sided 95 % critical values of Student's t for 1..10 degrees of freedom (t_{0.975, df}).
T_975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262, 10: 2.228}


def verdict(diffs):
    """Whether "better than the baseline" holds for paired differences: a two-sided paired
    t-test at 95 % (t = mean / (std / √n), n − 1 degrees of freedom). "reproduced" (Δ > 0),
    "opposite" (Δ < 0), "within noise"; fewer than 2 seeds: undecided."""
    n = len(diffs)
    if n < 2:
        return "undecided (1 seed)" if diffs else ""
    mean, sd = statistics.mean(diffs), statistics.stdev(diffs)
    if sd == 0:
        t = float("inf") if mean else 0.0
    else:
        t = mean / (sd / n ** 0.5)
    crit = T_975.get(n - 1, 1.96)
    word = "reproduced" if t > crit else ("opposite" if t < -crit else "within noise")
    return f"{word} (t = {t:+.1f}, n = {n})"


def load_records(campaign, run, results_dir=RESULTS_DIR):
    """All records of one run of a campaign, sorted by seed."""
    files = glob.glob(os.path.join(results_dir, campaign, run, "seed*.json"))
    return sorted((run_record.load_record(f) for f in files), key=lambda r: r["seed"])


def load_tables(path=TABLES_FILE):
    with open(path, encoding="utf-8") as f:
        tables = (yaml.safe_load(f) or {}).get("tables")
    if not isinstance(tables, dict) or not tables:
        raise SystemExit(f"{path}: expected a 'tables' mapping")
    for name, t in tables.items():
        if "curves" in t:
            if set(t) - CURVES_KEYS or not t.get("rows") or any(not {"run", "label"} <= set(r) for r in t["rows"]):
                raise SystemExit(f"{path}: curves table {name!r} needs curves and rows of {{run, label}} (keys: {sorted(t)})")
            continue
        unknown = set(t) - TABLE_KEYS
        if unknown or not t.get("rows") or not t.get("metrics") or "campaign" not in t:
            raise SystemExit(f"{path}: table {name!r} needs campaign, metrics, rows (unknown keys: {sorted(unknown)})")
        for i, row in enumerate(t["rows"]):
            if set(row) - ROW_KEYS or not {"run", "label"} <= set(row):
                raise SystemExit(f"{path}: table {name!r} rows[{i}] needs run and label, got {row!r}")
            vs = row.get("vs")
            if t.get("verdict") and "paired" not in t:
                raise SystemExit(f"{path}: table {name!r}: verdict needs a 'paired' metric")
            if vs is not None and (not isinstance(vs, dict) or not {"run", "label"} <= set(vs) <= {"run", "label", "campaign"}
                                   or "paired" not in t):
                raise SystemExit(f"{path}: table {name!r} rows[{i}]: vs needs {{run, label[, campaign]}} and the table a "
                                 f"'paired' metric, got {vs!r}")
    return tables


def planned(campaign, run, campaigns_dir=CAMPAIGNS_DIR):
    """(max_iter, seeds) the campaign file plans for a run; error if the run is not in it."""
    import compare_seeds

    path = os.path.join(campaigns_dir, f"{campaign}.yaml")
    _, specs = compare_seeds.load_campaign(path)
    seeds = [s["seed"] for s in specs if s["run"] == run]
    if not seeds:
        raise SystemExit(f"{path} has no run named {run!r} (referenced by {TABLES_FILE})")
    return specs[0]["max_iter"], seeds


def _short(commit):
    return commit[:10] if commit else "unknown"


def _footer(records, campaigns, seeds_same):
    """Budget, seeds, commits and record files of a table's finished runs."""
    lines = []
    budgets = sorted({(r["budget"]["max_iter"], r["budget"]["batch_size"]) for r in records}, key=str)
    lines.append("Budget: " + "; ".join(f"{it} iterations × batch {bs}" for it, bs in budgets) + ".")
    seeds = sorted({r["seed"] for r in records})
    if len(seeds) == 1:
        lines.append(f"Seed {seeds[0]}, one run per row.")
    else:
        lines.append(("Seeds " if seeds_same else "Seeds (rows differ; see the per-row count) ") + ", ".join(map(str, seeds))
                     + "; mean ± sample standard deviation over seeds.")
    commits = OrderedDict()
    for r in sorted(records, key=lambda r: r["started"]):
        git = r["git"]
        commits[(_short(git["commit"]), git["dirty"], git.get("diff_sha1"))] = True
    lines.append("Code: " + ", ".join(
        f"commit `{c}`" + (f" + uncommitted diff (sha1 `{d[:10]}`)" if dirty else "") for c, dirty, d in commits) + ".")
    s_iter = [r["timing"]["s_per_iter"] for r in records if r["timing"].get("s_per_iter")]
    cpus = sorted({r["host"]["cpu_count"] for r in records})
    threads = sorted({r["host"].get("torch_threads") for r in records} - {None})
    devices = sorted({r["host"].get("cuda") or "CPU" for r in records})
    if s_iter:
        lines.append(f"Median {statistics.median(s_iter):.2f} s/iteration on {', '.join(devices)} "
                     f"({'/'.join(map(str, cpus))} cores" + (f", {'/'.join(map(str, threads))} torch threads" if threads else "")
                     + "; a shared machine, so times vary with its load).")
    lines.append("Records: " + ", ".join(f"`benchmarks/results/{c}/<run>/seed<S>.json`" for c in campaigns) + ".")
    return lines


def render_curves_table(name, table, results_dir=RESULTS_DIR):
    """The Markdown of a ``curves`` table (module docstring)."""
    import json

    path = os.path.join(results_dir, table["curves"], "curves.json")
    with open(path, encoding="utf-8") as f:
        curves = json.load(f)
    seed = str(table.get("seed", 0))
    found = {row["run"]: curves["runs"].get(row["run"], {}).get(seed) for row in table["rows"]}
    iters = sorted({p["done"] for s in found.values() if s for p in s["evaluations"]})
    header = [table.get("first_column", "detector"), *(f"AP @ {i}" for i in iters),
              "flat from (constant lr)", "best AP before the lr drop", "AP after the decay"]
    lines = [f"<!-- rendered by tools/render_tables.py from benchmarks/results/{table['curves']}/curves.json (table "
             f"{name!r} in benchmarks/tables.yaml); edit those, not this -->",
             "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in table["rows"]:
        s = found[row["run"]]
        if not s:
            lines.append(f"| {row['label']} | " + " | ".join([NOT_MEASURED] + [""] * (len(header) - 2)) + " |")
            continue
        ap = {p["done"]: p["AP"] for p in s["evaluations"]}
        cells = [f"{ap[i]:.1f}" if i in ap else "" for i in iters]
        open_curve = s["lr_drop"] is None
        if open_curve:
            cells.append("still rising (run unfinished)")
        elif not s.get("flat", True):
            cells.append(f"not flat: still rising at {s['plateau'] + 1}")
        else:
            cells.append(f"{s['plateau'] + 1}")
        cells.append("" if s["best_before_drop"] is None else f"{s['best_before_drop']:.1f}")
        cells.append("" if open_curve or s["final"] is None else f"{s['final']:.1f}")
        lines.append(f"| {row['label']} | " + " | ".join(cells) + " |")
    lines += ["", f"Seed {seed}, one run per row; COCO AP on the validation set every few hundred iterations. "
              f"\"Flat from\": the first evaluation within {curves['tolerance_AP']} AP of the best one before the "
              "learning rate drops (tools/learning_curves.py).",
              f"Source: `benchmarks/results/{table['curves']}/curves.json`."]
    return "\n".join(lines) + "\n"


def render_table(name, table, results_dir=RESULTS_DIR, campaigns_dir=CAMPAIGNS_DIR):
    """The Markdown of one table (without its markers)."""
    if "curves" in table:
        return render_curves_table(name, table, results_dir)
    decimals = table.get("decimals", 1)
    per_seed = table.get("per_seed")
    cols = metric_columns(table)
    paired = table.get("paired")
    header = [table.get("first_column", "detector"), *(h for _, h, _ in cols)] + ([f"{per_seed} per seed"] if per_seed else [])
    header += [f"Δ{paired} vs baseline, same seeds"] if paired else []
    header += ["claim (paired t-test, 95 %)"] if table.get("verdict") else []
    lines = [f"<!-- rendered by tools/render_tables.py from benchmarks/results/ (table {name!r} in "
             "benchmarks/tables.yaml); edit those, not this -->",
             "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    all_records, campaigns, seed_sets, missing = [], [], [], []
    for row in table["rows"]:
        campaign = row.get("campaign", table["campaign"])
        max_iter, plan_seeds = planned(campaign, row["run"], campaigns_dir)
        records = load_records(campaign, row["run"], results_dir)
        done = [r for r in records if r["status"] == "finished"]
        if campaign not in campaigns:
            campaigns.append(campaign)
        if not records:
            missing.append((row["label"], campaign, max_iter, plan_seeds))
            lines.append(f"| {row['label']} | " + " | ".join([NOT_MEASURED] + [""] * (len(header) - 2)) + " |")
            continue
        all_records += done
        seed_sets.append(tuple(r["seed"] for r in records))
        cells = [mean_std([v for v in (metric_value(r, k) for r in done) if v is not None], d) for k, _, d in cols]
        if per_seed:
            values = [metric_value(r, per_seed) if r["status"] == "finished" else None for r in records]
            cells.append(" / ".join("failed" if v is None else f"{v:.{decimals + 1}f}" for v in values))
        if paired:
            if "vs" in row:
                planned(row["vs"].get("campaign", campaign), row["vs"]["run"], campaigns_dir)  # a planned baseline
            cells.append(paired_cell(row, done, campaign, paired, decimals, results_dir))
            if table.get("verdict"):
                cells.append(verdict(paired_diffs(row, done, campaign, paired, results_dir)) if "vs" in row else "")
        label = row["label"] if len(done) == len(plan_seeds) else f"{row['label']} ({len(done)} of {len(plan_seeds)} seeds)"
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    lines.append("")
    if all_records:
        lines += _footer(all_records, campaigns, len(set(seed_sets)) <= 1)
    plans = OrderedDict()
    for label, campaign, max_iter, seeds in missing:
        plans.setdefault((campaign, max_iter, tuple(seeds)), []).append(label)
    for (campaign, max_iter, seeds), labels in plans.items():
        what = "No row measured yet" if len(labels) == len(table["rows"]) else (
            f"{len(labels)} of {len(table['rows'])} rows not measured yet")
        lines.append(f"**{what}** (planned: {max_iter} iterations, seeds {', '.join(map(str, seeds))}; "
                     f"`python tools/compare_seeds.py --campaign-file benchmarks/campaigns/{campaign}.yaml`).")
    return "\n".join(lines) + "\n"


def doc_files(root=ROOT):
    return sorted(f for g in DOC_GLOBS for f in glob.glob(os.path.join(root, g)))


def render_docs(tables, docs, results_dir=RESULTS_DIR, campaigns_dir=CAMPAIGNS_DIR):
    """{path: (old text, new text)} for every doc; errors on undefined or unused tables."""
    rendered = {name: render_table(name, t, results_dir, campaigns_dir) for name, t in tables.items()}
    out, used = {}, set()
    for path in docs:
        with open(path, encoding="utf-8") as f:
            old = f.read()

        def sub(m, path=path):
            if m.group(2) not in rendered:
                raise SystemExit(f"{path}: table {m.group(2)!r} is not defined in {TABLES_FILE}")
            used.add(m.group(2))
            return m.group(1) + rendered[m.group(2)] + m.group(4)

        out[path] = (old, _BLOCK.sub(sub, old))
    unused = sorted(set(tables) - used)
    if unused:
        raise SystemExit(f"tables {unused} of {TABLES_FILE} appear in no README or docs page (markers <!-- results:NAME -->)")
    return out


def summary_markdown(records, metrics=SUMMARY_METRICS):
    """compare_seeds' closing table: one row per run, mean ± std over its finished seeds."""
    runs = OrderedDict()
    for r in records:
        runs.setdefault(r["run"], []).append(r)
    lines = ["| run | seeds | " + " | ".join(metrics) + " | s/iter |", "|---|---|" + "---|" * (len(metrics) + 1)]
    for run, rs in runs.items():
        done = [r for r in rs if r["status"] == "finished"]
        cells = [mean_std([v for v in (metric_value(r, m) for r in done) if v is not None]) for m in metrics]
        s_iter = [r["timing"]["s_per_iter"] for r in done if r["timing"].get("s_per_iter")]
        seeds = ",".join(str(r["seed"]) + ("" if r["status"] == "finished" else " failed") for r in rs)
        lines.append(f"| {run} | {seeds} | " + " | ".join(cells) + f" | {statistics.median(s_iter) if s_iter else float('nan'):.2f} |")
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--check", action="store_true", help="only compare; exit 1 if a table is out of date")
    args = p.parse_args(argv)
    docs = render_docs(load_tables(), doc_files())
    stale = [path for path, (old, new) in docs.items() if old != new]
    for path in stale:
        print(f"{'out of date' if args.check else 'rendered'}: {os.path.relpath(path, ROOT)}")
        if not args.check:
            with open(path, "w", encoding="utf-8") as f:
                f.write(docs[path][1])
    if args.check and stale:
        sys.exit(1)


if __name__ == "__main__":
    main()
