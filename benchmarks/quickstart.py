#!/usr/bin/env python
"""Wall time of the README's quick-start commands on a fresh clone, as CI runs them.

    python benchmarks/quickstart.py --clone /tmp/qs [--steps install test demo]
        [--output benchmarks/results/quickstart_<date>.json]
    python benchmarks/quickstart.py --render FILE.json [--readme README.md]

Clones this checkout's HEAD commit (committed files only) into the empty directory
``--clone``, then runs ``make <step>`` there for each step, in the order given, with
``CI=true`` and without the caller's Python/dataset environment (``PYTHONPATH``,
``VIRTUAL_ENV``, ``DETECTRON2_DATASETS``, ``DSLA_D2_*``): the clone sets up its own
``.venv`` and generates its own dataset. ``install`` first makes ``test`` and ``demo``
time the commands with the set-up done. Each step records its wall time, exit code and
the load average before and after; ``test`` also pytest's summary line (counts and
pytest's own seconds), ``demo`` the last ``bbox/*`` metrics of the demo run
(``metrics.json`` in the Makefile's ``DEMO_OUT``). The first failing step ends the run; the
json is written either way and the exit code is 1 if a step failed.
"""
import argparse
import collections
import json
import os
import re
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from result_files import (  # noqa: E402
    ROOT, add_result_arguments, git_commit, render_file, short_commit, today, write_result)

STEPS = ("install", "test", "demo")
MARKER = "quickstart"
CALLER_ENV = ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "DETECTRON2_DATASETS")
# A make that runs this script (e.g. `make test` running the test suite) exports these; the
# clone's make must run as a top-level make, as CI runs it.
MAKE_ENV = ("MAKEFLAGS", "MFLAGS", "MAKELEVEL", "MAKEOVERRIDES")
TAIL_LINES = 60
_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_SUMMARY = re.compile(r"^=*\s*((?:\d+ \w+(?:, )?)+|no tests ran) in ([\d.]+)s\b")


# ------------------------------------------------------------------ readers
def parse_pytest_summary(lines):
    """Counts and seconds of pytest's final summary line, e.g. ``"3 failed, 600 passed,
    1 skipped in 10.00s"`` -> ``{"failed": 3, "passed": 600, "skipped": 1, "seconds": 10.0}``,
    keyed by pytest's own words (``warnings``, ``errors``, ``deselected`` …), from the last
    such line of ``lines``; None when there is none (pytest did not finish)."""
    for line in reversed(list(lines)):
        m = _SUMMARY.match(_ANSI.sub("", line).strip())
        if m:
            counts = {} if m.group(1) == "no tests ran" else {
                word: int(n) for n, word in (part.split(" ") for part in m.group(1).split(", "))}
            return dict(counts, seconds=float(m.group(2)))
    return None


def demo_output_dir(makefile):
    """The ``DEMO_OUT`` of a Makefile (``DEMO_OUT ?= dir``)."""
    with open(makefile, encoding="utf-8") as f:
        m = re.search(r"^DEMO_OUT\s*\??=\s*(\S+)\s*$", f.read(), re.M)
    if not m:
        raise SystemExit(f"{makefile} defines no DEMO_OUT")
    return m.group(1)


def last_bbox_metrics(path):
    """``bbox/*`` metrics (and the iteration) of the last line of Detectron2's
    ``metrics.json`` (one json object per line) that has ``bbox/AP``; None if none does."""
    last = None
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except ValueError as e:
                raise SystemExit(f"{path}:{n} is not json: {e}")
            if "bbox/AP" in record:
                last = record
    if last is None:
        return None
    return dict({k: v for k, v in last.items() if k.startswith("bbox/")}, iteration=last.get("iteration"))


# ------------------------------------------------------------------ running
def clean_env():
    """The environment a CI job would have: ours, less the caller's Python/dataset
    settings and any enclosing make's variables, plus ``CI=true``. Returns (env, names dropped)."""
    dropped = sorted(k for k in os.environ if k in CALLER_ENV + MAKE_ENV or k.startswith("DSLA_D2_"))
    env = {k: v for k, v in os.environ.items() if k not in dropped}
    env["CI"] = "true"
    return env, dropped


def clone(dest, commit):
    """``git clone`` this repository into the empty (or absent) ``dest`` at ``commit``."""
    if os.path.exists(dest) and (not os.path.isdir(dest) or os.listdir(dest)):
        raise SystemExit(f"--clone {dest} exists and is not an empty directory")
    subprocess.run(["git", "clone", "-q", ROOT, dest], check=True)
    subprocess.run(["git", "-C", dest, "checkout", "-q", "--detach", commit], check=True)


def run_step(step, cwd, env):
    """Run ``make <step>`` in ``cwd``, echoing its output; returns the step's record."""
    record = {"step": step, "command": f"make {step}", "load_average_before": os.getloadavg()}
    tail = collections.deque(maxlen=TAIL_LINES)
    t0 = time.perf_counter()
    with subprocess.Popen(["make", step], cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True, errors="replace") as proc:
        for line in proc.stdout:
            sys.stdout.write(line)
            tail.append(line.rstrip("\n"))
    record.update(wall_s=time.perf_counter() - t0, exit_code=proc.returncode, load_average_after=os.getloadavg())
    if step == "test":
        record["pytest"] = parse_pytest_summary(tail)
    if step == "demo" and proc.returncode == 0:
        metrics = os.path.join(cwd, demo_output_dir(os.path.join(cwd, "Makefile")), "metrics.json")
        record["metrics_file"] = os.path.relpath(metrics, cwd)
        record["metrics"] = last_bbox_metrics(metrics) if os.path.exists(metrics) else None
    if proc.returncode != 0:
        record["output_tail"] = list(tail)
    return record


def measure(args):
    """Clone, run the steps; returns the result dict (stops at the first failing step)."""
    provenance = git_commit()
    if provenance["commit"] is None:
        raise SystemExit(f"{ROOT} is not a git checkout: nothing to clone")
    clone(args.clone, provenance["commit"])
    env, dropped = clean_env()
    result = dict(date=today(), cpu_count=os.cpu_count(), clone=os.path.abspath(args.clone),
                  env_dropped=dropped, steps=[], not_run=[], **provenance)
    for i, step in enumerate(args.steps):
        result["steps"].append(run_step(step, args.clone, env))
        if result["steps"][-1]["exit_code"] != 0:
            result["not_run"] = list(args.steps[i + 1:])
            break
    return result


# ------------------------------------------------------------------ table
def format_seconds(s):
    """``38 s``, ``7 min 44 s``."""
    s = round(s)
    return f"{s // 60} min {s % 60} s" if s >= 60 else f"{s} s"


def step_result(record):
    """The "result" cell of a step."""
    if record["exit_code"] != 0:
        return f"**failed** (exit {record['exit_code']})"
    if record["step"] == "test" and record.get("pytest"):
        counts = {k: v for k, v in record["pytest"].items() if k != "seconds"}
        return ", ".join(f"{v} {k}" for k, v in counts.items()) + f" (pytest: {record['pytest']['seconds']:.1f} s)"
    if record["step"] == "demo" and record.get("metrics"):
        m = record["metrics"]
        names = ("AP", "AP50", "AP75", "APs", "APm", "APl")
        return f"iteration {m['iteration']}: " + ", ".join(
            f"{n} {m['bbox/' + n]:.1f}" for n in names if isinstance(m.get("bbox/" + n), (int, float)))
    return "ok"


def render(result):
    """Markdown: a provenance line and the table (step, wall time, result)."""
    head = (f"{result['date']}, commit {short_commit(result)}, {result['cpu_count']} CPU(s), `CI=true`, "
            f"fresh clone; load average {result['steps'][0]['load_average_before'][0]:.2f} before the first "
            f"step\n\n" if result["steps"] else f"{result['date']}: no step ran\n\n")
    lines = ["| step (fresh clone) | wall time | result |", "|---|---|---|"]
    for r in result["steps"]:
        lines.append(f"| `{r['command']}` | {format_seconds(r['wall_s'])} | {step_result(r)} |")
    for step in result.get("not_run", []):
        lines.append(f"| `make {step}` | – | not run (an earlier step failed) |")
    return head + "\n".join(lines) + "\n"


def get_parser():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--clone", help="empty directory to clone into")
    p.add_argument("--steps", nargs="+", choices=STEPS, default=list(STEPS))
    add_result_arguments(p, "quickstart")
    return p


def main(argv=None):
    args = get_parser().parse_args(argv)
    if args.render:
        render_file(args.render, render, args.readme, name=MARKER)
        return 0
    if not args.clone:
        raise SystemExit("--clone DIR is required to measure (or --render FILE.json)")
    result = measure(args)
    out = write_result(result, args.output, "quickstart")
    print(f"\nwrote {out}\n\n{render(result)}")
    return 0 if all(r["exit_code"] == 0 for r in result["steps"]) else 1


if __name__ == "__main__":
    sys.exit(main())
