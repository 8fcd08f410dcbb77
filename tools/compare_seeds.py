#!/usr/bin/env python
"""Train configs × seeds at one budget, keep one results json per run, print mean ± std.

    # these configs at the default budget: seeds 0 1 2, 600 iterations (half the configs' 1200)
    python tools/compare_seeds.py --configs configs/fcos_r18_synth.py projects/DSLA/configs/fcos_dsla_r18_synth.py
    # a campaign file: configs (with overrides) × seeds, in the background, one run at a time
    DSLA_D2_SYNTH_ROOT=/work/data/dsla_synth nohup nice -n 10 \\
        python tools/compare_seeds.py --campaign-file benchmarks/campaigns/synth600.yaml > campaign.log 2>&1 &
    # only some runs of a campaign
    python tools/compare_seeds.py --campaign-file benchmarks/campaigns/synth600.yaml --runs fcos_r18_synth

On a CPU shared with other jobs, ``OMP_NUM_THREADS=1`` trains several times faster than
torch's default of one thread per core (idle-waiting threads); the record notes it.

Each run is ``train_net.py --config-file C train.seed=S train.max_iter=M [overrides]`` in
its own process, strictly one at a time (a lock file refuses a second runner in the same
checkout). Checkpoints and logs go to ``output/results/<campaign>/<run>/seed<S>/``
(git-ignored; ``model_final.pth`` is kept), the record to
``benchmarks/results/<campaign>/<run>/seed<S>.json`` (committed; ``tools/run_record.py``
lists its fields). ``tools/render_tables.py`` turns records into the READMEs' tables.

Safe to interrupt and resume (rerun the same command):

* a run whose record exists is not run again, provided the record's config, overrides,
  seed and max_iter match the request (otherwise: an error naming the file);
* an interrupted run resumes from its last checkpoint (``--resume``); its record then says
  ``"resumed": true``. If the code changed since (another commit or diff), it starts over;
* a training process killed by a signal (the OOM killer, a kill from outside) leaves no
  record: the next invocation resumes it;
* a run that fails (non-zero exit, e.g. a non-finite loss) is recorded with
  ``"status": "failed"`` and the log's tail; ``--retry-failed`` runs it again;
* SIGINT/SIGTERM stop the current training process and exit.

Campaign file (YAML; the campaign's name is the file's stem)::

    max_iter: 600            # default 600
    seeds: [0, 1, 2]         # default [0, 1, 2]
    overrides: []            # for every run
    order: seed              # "seed": every run's seed 0 first, then seed 1, ... (default);
                             # "run": all seeds of a run before the next run
    runs:
      - config: configs/fcos_r18_synth.py            # run name: fcos_r18_synth
      - config: configs/fcos_r18_synth.py
        name: fcos_r18_synth-giou                    # required when a run has overrides
        overrides: [model.loss.box_loss=giou]
        seeds: [0]                                   # this run only
"""
import argparse
import ctypes
import fcntl
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from datetime import datetime, timezone

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import render_tables  # noqa: E402
import run_record  # noqa: E402

ROOT = run_record.ROOT
DEFAULT_SEEDS = [0, 1, 2]
DEFAULT_MAX_ITER = 600  # half the embedded configs' 1200: the shared comparison budget
RESULTS_DIR = os.path.join(ROOT, "benchmarks", "results")
OUTPUT_DIR = os.path.join(ROOT, "output", "results")
CAMPAIGN_KEYS = {"max_iter", "seeds", "overrides", "order", "runs", "description"}
RUN_KEYS = {"config", "name", "overrides", "seeds"}
_NAME = re.compile(r"^[A-Za-z0-9_.+=-]+$")


def run_name(config):
    """configs/fcos_r18_synth.py -> fcos_r18_synth;
    projects/DSLA/configs/synth_ablations/impr1.py -> DSLA__synth_ablations__impr1."""
    rel = os.path.relpath(os.path.abspath(config), ROOT)
    for prefix in ("configs" + os.sep, "projects" + os.sep):
        rel = rel[len(prefix):] if rel.startswith(prefix) else rel
    return rel[:-3].replace(os.sep + "configs" + os.sep, os.sep).replace(os.sep, "__")


def _check_config(config, where):
    if not (isinstance(config, str) and config.endswith(".py") and os.path.isfile(os.path.join(ROOT, config))):
        raise SystemExit(f"{where}: config {config!r} is not a .py file under {ROOT}")
    return os.path.relpath(os.path.join(ROOT, config), ROOT)


def _check_seeds(seeds, where):
    if not (isinstance(seeds, list) and seeds and all(isinstance(s, int) and s >= 0 for s in seeds)):
        raise SystemExit(f"{where}: seeds must be a non-empty list of integers >= 0, got {seeds!r}")
    return seeds


def _check_overrides(overrides, where):
    if not (isinstance(overrides, list) and all(isinstance(o, str) and "=" in o for o in overrides)):
        raise SystemExit(f"{where}: overrides must be a list of 'key=value' strings, got {overrides!r}")
    return overrides


def load_campaign(path):
    """Campaign file -> (name, list of run specs in run order). Errors name the bad key."""
    import yaml

    if not os.path.isfile(path):
        raise SystemExit(f"campaign file {path} does not exist")
    with open(path, encoding="utf-8") as f:
        camp = yaml.safe_load(f) or {}
    name = os.path.splitext(os.path.basename(path))[0]
    unknown = set(camp) - CAMPAIGN_KEYS
    if unknown:
        raise SystemExit(f"{path}: unknown keys {sorted(unknown)}; expected some of {sorted(CAMPAIGN_KEYS)}")
    if not camp.get("runs"):
        raise SystemExit(f"{path}: 'runs' must list at least one run")
    max_iter = camp.get("max_iter", DEFAULT_MAX_ITER)
    if not (isinstance(max_iter, int) and max_iter > 0):
        raise SystemExit(f"{path}: max_iter must be a positive integer, got {max_iter!r}")
    seeds = _check_seeds(camp.get("seeds", DEFAULT_SEEDS), path)
    common = _check_overrides(camp.get("overrides", []), path)
    runs = []
    for i, run in enumerate(camp["runs"]):
        where = f"{path}: runs[{i}]"
        if not isinstance(run, dict) or set(run) - RUN_KEYS or "config" not in run:
            raise SystemExit(f"{where}: expected a mapping with 'config' and some of {sorted(RUN_KEYS - {'config'})}, got {run!r}")
        config = _check_config(run["config"], where)
        overrides = _check_overrides(run.get("overrides", []), where)
        if overrides and "name" not in run:
            raise SystemExit(f"{where}: a run with overrides needs a 'name'")
        runs.append(dict(config=config, name=run.get("name", run_name(config)), overrides=common + overrides,
                         seeds=_check_seeds(run.get("seeds", seeds), where)))
    return name, expand(name, runs, max_iter, camp.get("order", "seed"), where=path)


def expand(campaign, runs, max_iter, order="seed", where="--configs"):
    """Runs × seeds -> one spec per training, in execution order."""
    names = [r["name"] for r in runs]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise SystemExit(f"{where}: run names {dup} appear more than once")
    bad = [n for n in names + [campaign] if not _NAME.match(n)]
    if bad:
        raise SystemExit(f"{where}: names {bad} may only use letters, digits and _ . + = -")
    if order not in ("seed", "run"):
        raise SystemExit(f"{where}: order must be 'seed' or 'run', got {order!r}")
    specs = [dict(campaign=campaign, run=r["name"], config=r["config"], overrides=list(r["overrides"]), seed=s,
                  max_iter=max_iter) for r in runs for s in r["seeds"]]
    if order == "seed":
        specs.sort(key=lambda s: s["seed"])  # stable: runs keep their order within a seed
    return specs


def paths(spec, results_dir=RESULTS_DIR, output_dir=OUTPUT_DIR):
    rel = os.path.join(spec["campaign"], spec["run"], f"seed{spec['seed']}")
    return os.path.join(results_dir, rel + ".json"), os.path.join(output_dir, rel)


def existing_record(spec, record_path):
    """The record at ``record_path`` if it is this spec's, None if absent; error if it is
    another run's (same name, different config/overrides/seed/max_iter)."""
    if not os.path.isfile(record_path):
        return None
    record = run_record.load_record(record_path)
    diff = [k for k in run_record.SPEC_FIELDS if record[k] != spec[k]]
    if diff:
        raise SystemExit(
            f"{record_path} records another run ({', '.join(f'{k}: {record[k]!r} != {spec[k]!r}' for k in diff)}); "
            "choose another run name or campaign, or delete the file to remeasure"
        )
    return record


class Stopped(Exception):
    """The runner received SIGINT/SIGTERM (args[0] is the signal number)."""


class Runner:
    """Runs specs one at a time; forwards SIGINT/SIGTERM to the training process."""

    def __init__(self, train_script, retry_failed=False, results_dir=RESULTS_DIR, output_dir=OUTPUT_DIR):
        self.train_script = train_script
        self.retry_failed = retry_failed
        self.results_dir = results_dir
        self.output_dir = output_dir
        self.child = None

    def _stop(self, signum, frame):
        """SIGINT/SIGTERM: stop the training process; ``main`` then exits."""
        if self.child is not None and self.child.poll() is None:
            self.child.terminate()
        raise Stopped(signum)

    def run(self, spec):
        record_path, out = paths(spec, self.results_dir, self.output_dir)
        record = existing_record(spec, record_path)
        if record is not None and not (record["status"] == "failed" and self.retry_failed):
            return record
        info_path = os.path.join(out, "run_info.json")
        git = run_record.git_state()
        info = json.load(open(info_path)) if os.path.isfile(info_path) and record is None else None
        if info is not None and info["git"] != git:
            print(f"[compare_seeds] {out}: the code changed since the interrupted attempt; starting over", flush=True)
            info = None
        if not os.path.isfile(os.path.join(out, "last_checkpoint")):
            info = None  # nothing to resume from
        if info is None:
            shutil.rmtree(out, ignore_errors=True)
            os.makedirs(out)
            info = dict(git=git, host=run_record.host_info(), env=run_record.environment(), attempts=0,
                        wall_time_s=0.0, loadavg_start=list(os.getloadavg()), started=_now())
        resume = os.path.isfile(os.path.join(out, "last_checkpoint"))
        cmd = [sys.executable, self.train_script, "--config-file", os.path.join(ROOT, spec["config"]),
               *(["--resume"] if resume else []), f"train.output_dir={out}", f"train.seed={spec['seed']}",
               f"train.max_iter={spec['max_iter']}", *spec["overrides"]]
        info["command"] = [os.path.relpath(cmd[1], ROOT), *cmd[2:3], spec["config"], *cmd[4:]]
        info["attempts"] += 1
        run_record.write_json(info_path, info)
        print(f"[compare_seeds] {spec['campaign']}/{spec['run']} seed {spec['seed']}: "
              f"{'resuming' if resume else 'training'} ({_now()})", flush=True)
        t0 = time.time()
        with open(os.path.join(out, "stdout.txt"), "a", encoding="utf-8") as log:
            self.child = subprocess.Popen(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, preexec_fn=_die_with_parent)
            try:
                rc = self.child.wait()
            except Stopped:
                try:
                    self.child.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    self.child.kill()
                raise
            finally:
                self.child = None
        info["wall_time_s"] += time.time() - t0
        info["finished"] = _now()
        run_record.write_json(info_path, info)
        if rc < 0:  # killed by a signal (from outside, or the OOM killer): resumable, not a failure
            print(f"[compare_seeds]   -> interrupted by signal {-rc}; the next invocation resumes it", flush=True)
            return None
        finished = rc == 0 and run_record.final_evaluation(run_record.read_metrics_json(out)) is not None
        record = run_record.build_record(spec, out, "finished" if finished else "failed", info)
        record["exit_code"] = rc
        run_record.write_json(record_path, record)
        ap = record["metrics"].get("bbox/AP")
        print(f"[compare_seeds]   -> {record['status']} (exit {rc}) in {time.time() - t0:.0f} s"
              + (f", AP {ap:.2f}" if ap is not None else "") + f"; {os.path.relpath(record_path, ROOT)}", flush=True)
        return record


def _die_with_parent():
    """In the training process (Linux): receive SIGTERM when the runner dies, even by
    SIGKILL, so that no orphaned training keeps writing into a run's directory."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG = 1
    except (OSError, AttributeError):
        pass


def _now():
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def acquire_lock(output_dir=OUTPUT_DIR):
    """An exclusive lock on output/results/.lock, held until the process exits."""
    os.makedirs(output_dir, exist_ok=True)
    f = open(os.path.join(output_dir, ".lock"), "a+")
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        f.seek(0)
        raise SystemExit(f"another compare_seeds runs in this checkout ({f.read().strip()}); one training at a time")
    f.truncate(0)
    f.write(f"pid {os.getpid()}\n")
    f.flush()
    return f


def get_parser():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--configs", nargs="+", help="configs to compare (run names derived from their paths)")
    what.add_argument("--campaign-file", help="a campaign YAML file (see above)")
    p.add_argument("--campaign", default="adhoc", help="with --configs: results go to benchmarks/results/CAMPAIGN/")
    p.add_argument("--seeds", nargs="+", type=int, default=DEFAULT_SEEDS, help="with --configs (default 0 1 2)")
    p.add_argument("--max-iter", type=int, default=DEFAULT_MAX_ITER,
                   help="with --configs: train.max_iter (default 600; schedules scale with it)")
    p.add_argument("--opts", nargs="*", default=[], help="with --configs: key=value overrides for every run")
    p.add_argument("--runs", nargs="+", help="with --campaign-file: only these runs (by name)")
    p.add_argument("--retry-failed", action="store_true", help="rerun runs recorded as failed")
    p.add_argument("--dry-run", action="store_true", help="list what would run, run nothing")
    # for the tests: where records, outputs and the training script are
    p.add_argument("--results-dir", default=RESULTS_DIR, help=argparse.SUPPRESS)
    p.add_argument("--output-dir", default=OUTPUT_DIR, help=argparse.SUPPRESS)
    p.add_argument("--train-script", default=os.path.join(ROOT, "train_net.py"), help=argparse.SUPPRESS)
    return p


def main(argv=None):
    args = get_parser().parse_args(argv)
    if args.campaign_file:
        campaign, specs = load_campaign(args.campaign_file)
        if args.runs:
            unknown = sorted(set(args.runs) - {s["run"] for s in specs})
            if unknown:
                raise SystemExit(f"--runs {unknown}: not runs of {args.campaign_file}")
            specs = [s for s in specs if s["run"] in args.runs]
    else:
        if args.opts:
            _check_overrides(args.opts, "--opts")
        runs = [dict(config=_check_config(c, "--configs"), name=run_name(c), overrides=args.opts, seeds=args.seeds)
                for c in args.configs]
        campaign, specs = args.campaign, expand(args.campaign, runs, args.max_iter, order="run")
    if args.dry_run:
        for spec in specs:
            record_path, _ = paths(spec, args.results_dir, args.output_dir)
            state = "recorded" if existing_record(spec, record_path) else "to run"
            print(f"{state:9s} {spec['run']} seed {spec['seed']} ({spec['max_iter']} it) {' '.join(spec['overrides'])}")
        return []
    lock = acquire_lock(args.output_dir)  # noqa: F841  (held until exit)
    runner = Runner(args.train_script, args.retry_failed, args.results_dir, args.output_dir)
    handlers = {sig: signal.signal(sig, runner._stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        records = [r for r in (runner.run(spec) for spec in specs) if r is not None]
    except Stopped as stop:
        print(f"[compare_seeds] stopped by signal {stop.args[0]}; rerun the same command to resume", flush=True)
        sys.exit(128 + stop.args[0])
    finally:
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
    print()
    print(render_tables.summary_markdown(records))
    return records


if __name__ == "__main__":
    main()
