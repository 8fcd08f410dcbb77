"""The results record of one training run: what was run, at which commit, on what, and
what it measured. Written by ``tools/compare_seeds.py``, read by ``tools/render_tables.py``.

A record is one json file ``benchmarks/results/<campaign>/<run>/seed<S>.json``::

    {"schema": 1, "campaign", "run", "config", "overrides", "seed", "max_iter",
     "status": "finished" | "failed",
     "budget": {"max_iter", "batch_size", "images_seen"},
     "git": {"commit", "dirty", "dirty_files", "diff_sha1"},
     "metrics": {every "bbox/*", "consistency/*", "consistency_pre_nms/*" key of the final evaluation},
     "train_final": {the losses and statistics of the last logged training iteration},
     "timing": {"train_time_s", "s_per_iter", "wall_time_s", "attempts", "resumed"},
     "host": {...}, "env": {...}, "command": [...], "output_dir", "started", "finished"}
"""
import hashlib
import json
import os
import platform
import re
import statistics
import subprocess
from typing import Dict, List, Optional

import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCHEMA = 1
#: metric families collected from the final evaluation (any evaluator writing these keys):
#: COCOEvaluator's "bbox/*", ConsistencyEvaluator's "consistency/*" and "consistency_pre_nms/*"
METRIC_PREFIXES = ("bbox/", "consistency/", "consistency_pre_nms/")
#: the fields that identify a run: a record is reused only if they match the request
SPEC_FIELDS = ("config", "overrides", "seed", "max_iter")
#: changes under these paths do not change a training run (see git_state)
NOT_TRAINING_PATHS = ("benchmarks/", "tools/", "tests/", "docs/")
ENV_KEYS = ("DSLA_D2_SYNTH_ROOT", "DETECTRON2_DATASETS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "CUDA_VISIBLE_DEVICES")
_SPEED = re.compile(r"Overall training speed: (\d+) iterations in ([\d:]+) \(([\d.]+) s / it\)")
_TOTAL = re.compile(r"Total training time: ([\d:]+)")
_NOT_TRAINING = ("time", "data_time", "eta_seconds", "iteration", "lr")


def _seconds(hms: str) -> float:
    """'0:04:10' -> 250.0 (Detectron2 prints timedelta without days below 24 h)."""
    h, m, s = hms.split(":")
    return int(h) * 3600 + int(m) * 60 + float(s)


def read_metrics_json(out_dir: str) -> List[Dict]:
    """Rows of Detectron2's metrics.json (one json object per line); [] if absent."""
    path = os.path.join(out_dir, "metrics.json")
    if not os.path.isfile(path):
        return []
    rows = []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as e:
                    raise ValueError(f"{path}:{n}: not a json line ({e})") from None
    return rows


def final_evaluation(rows: List[Dict]) -> Optional[Dict[str, float]]:
    """Every ``bbox/*`` / ``consistency/*`` key of the last row that has ``bbox/AP``
    (the evaluation after the last iteration), or None if the run never evaluated."""
    evals = [r for r in rows if "bbox/AP" in r]
    if not evals:
        return None
    last = evals[-1]
    return {k: v for k, v in sorted(last.items()) if k.startswith(METRIC_PREFIXES)}


def final_training_row(rows: List[Dict]) -> Dict[str, float]:
    """Losses and statistics (num_pos_per_image, mean_pos_iou, ...) of the last logged
    training iteration, with that iteration's index (Detectron2's metrics.json holds the
    median of the last 20 iterations for each smoothed scalar)."""
    train = [r for r in rows if "total_loss" in r]
    if not train:
        return {}
    last = train[-1]
    out = {k: v for k, v in sorted(last.items()) if k not in _NOT_TRAINING and not k.startswith(METRIC_PREFIXES)}
    out["iteration"] = last.get("iteration")
    return out


def timing_from_logs(rows: List[Dict], log_text: str) -> Dict[str, Optional[float]]:
    """Train time from Detectron2's own summary lines (the last attempt's, if resumed)
    and the median logged s/iteration over the whole run."""
    times = [r["time"] for r in rows if "time" in r]
    speed = _SPEED.findall(log_text)
    total = _TOTAL.findall(log_text)
    return {
        "train_time_s": _seconds(speed[-1][1]) if speed else None,
        "train_time_with_hooks_s": _seconds(total[-1]) if total else None,
        "s_per_iter": round(statistics.median(times), 4) if times else None,
    }


def resolved_budget(out_dir: str) -> Dict[str, Optional[int]]:
    """max_iter and batch size as the run resolved them (train_net.py saves config.yaml)."""
    path = os.path.join(out_dir, "config.yaml")
    if not os.path.isfile(path):
        return {"max_iter": None, "batch_size": None, "images_seen": None}
    with open(path, encoding="utf-8") as f:
        cfg = yaml.safe_load(f)
    max_iter = cfg["train"]["max_iter"]
    batch = cfg["dataloader"]["train"].get("total_batch_size")
    return {"max_iter": max_iter, "batch_size": batch, "images_seen": max_iter * batch if batch else None}


def _git(*args: str) -> str:
    return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=True).stdout


def git_state() -> Dict:
    """HEAD commit and whether tracked files that can change a result differ from it.

    Files that cannot change what is trained (results, campaign and table files, tools,
    tests, docs, Markdown) are not counted as dirt: a campaign writes results while it
    runs. A dirty run records the sha1 of its diff.
    """
    try:
        commit = _git("rev-parse", "HEAD").strip()
        changed = _git("diff", "HEAD", "--name-only").split()
    except (OSError, subprocess.CalledProcessError):
        return {"commit": None, "dirty": None, "dirty_files": [], "diff_sha1": None}
    dirty = sorted(f for f in changed if not f.startswith(NOT_TRAINING_PATHS) and not f.endswith(".md"))
    diff_sha1 = hashlib.sha1(_git("diff", "HEAD", "--", *dirty).encode()).hexdigest() if dirty else None
    return {"commit": commit, "dirty": bool(dirty), "dirty_files": dirty, "diff_sha1": diff_sha1}


def host_info() -> Dict:
    import torch

    info = {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }
    try:
        import detectron2

        info["detectron2"] = detectron2.__version__
    except ImportError:
        info["detectron2"] = None
    return info


def environment() -> Dict:
    env = {k: os.environ[k] for k in ENV_KEYS if k in os.environ}
    try:
        from dsla_d2.data.synthetic import GENERATOR_VERSION

        env["synthetic_generator_version"] = GENERATOR_VERSION
    except ImportError:
        pass
    return env


def build_record(spec: Dict, out_dir: str, status: str, run_info: Dict) -> Dict:
    """The json record of a run from its output directory and what the runner noted.

    Args:
        spec: campaign, run, config, overrides, seed, max_iter.
        out_dir: the run's train.output_dir.
        status: "finished" or "failed".
        run_info: what the runner kept across attempts (git, host, env, command, started,
            wall_time_s, attempts, loadavg_start).
    """
    rows = read_metrics_json(out_dir)
    log_path = os.path.join(out_dir, "stdout.txt")
    log_text = open(log_path, encoding="utf-8", errors="replace").read() if os.path.isfile(log_path) else ""
    timing = timing_from_logs(rows, log_text)
    timing.update(
        wall_time_s=round(run_info["wall_time_s"], 1),
        attempts=run_info["attempts"],
        resumed=run_info["attempts"] > 1,
    )
    record = {"schema": SCHEMA, **{k: spec[k] for k in ("campaign", "run", *SPEC_FIELDS)}, "status": status}
    record.update(
        budget=resolved_budget(out_dir),
        git=run_info["git"],
        metrics=final_evaluation(rows) or {},
        train_final=final_training_row(rows),
        timing=timing,
        host=dict(run_info["host"], loadavg_start=run_info.get("loadavg_start"), loadavg_end=list(os.getloadavg())),
        env=run_info["env"],
        command=run_info["command"],
        output_dir=os.path.relpath(out_dir, ROOT),
        started=run_info["started"],
        finished=run_info.get("finished"),
    )
    if status == "failed":
        record["error_tail"] = log_text.strip().splitlines()[-15:]
    return record


def load_record(path: str) -> Dict:
    with open(path, encoding="utf-8") as f:
        record = json.load(f)
    missing = [k for k in ("schema", "run", "status", "metrics", *SPEC_FIELDS) if k not in record]
    if missing:
        raise ValueError(f"{path}: not a results record (missing {missing})")
    return record


def write_json(path: str, obj: Dict) -> None:
    """Write atomically (temporary file + rename): an interrupted write leaves no half file."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=1, sort_keys=False)
        f.write("\n")
    os.replace(tmp, path)
