"""What train_net.py may do with an output directory that already holds a run.

* Training without ``--resume`` into a directory that holds a run (checkpoints,
  ``last_checkpoint``, metrics.json or TensorBoard events) is refused: it would overwrite
  ``model_final.pth``, mix two runs in metrics.json and leave stale checkpoints.
  ``--resume`` continues the run; ``--restart`` starts over in the same directory after
  moving the old run's files to ``replaced_runs/<time>/`` (nothing is deleted).
* ``--eval-only`` into a directory that holds a run writes its outputs to ``<dir>/eval``,
  so the run's ``config.yaml`` (which serving reads) is not replaced.
* On resume, metrics.json keeps only the lines up to the iteration of the checkpoint the
  run resumes from (a line cut short by a kill is dropped), so no iteration appears twice.
"""
import fnmatch
import json
import logging
import os
import shutil
import time
from typing import List, Optional, Tuple

from ..errors import UserInputError
from .atomic import atomic_open

__all__ = [
    "OutputDirInUseError",
    "REPLACED_RUNS",
    "run_files",
    "check_output_dir",
    "move_run_aside",
    "eval_output_dir",
    "repair_metrics",
]

logger = logging.getLogger(__name__)

REPLACED_RUNS = "replaced_runs"
# files that make a directory "hold a run"
_RUN_MARKERS = ("last_checkpoint", "*.pth", "metrics.json", "events.out.tfevents.*")
# files a run writes, moved aside by --restart
_RUN_FILES = _RUN_MARKERS + ("*.pth.sha256", "config.yaml", "log.txt*", "inference", "*.tmp")


def _matching(output_dir: str, patterns) -> List[str]:
    if not os.path.isdir(output_dir):
        return []
    names = sorted(os.listdir(output_dir))
    return [n for n in names if n != REPLACED_RUNS and any(fnmatch.fnmatch(n, p) for p in patterns)]


def run_files(output_dir: str) -> List[str]:
    """Names of the files in ``output_dir`` that show a training run was there."""
    return _matching(output_dir, _RUN_MARKERS)


class OutputDirInUseError(UserInputError, FileExistsError):
    """Training into a directory that holds another run, without --resume or --restart."""


def check_output_dir(output_dir: str, *, resume: bool, restart: bool) -> None:
    """Refuse to train into a directory holding a run unless told what to do with it."""
    found = run_files(output_dir)
    if not found or resume or restart:
        return
    shown = ", ".join(found[:5]) + (f" and {len(found) - 5} more" if len(found) > 5 else "")
    raise OutputDirInUseError(
        f"The output directory {output_dir} already holds a training run ({shown}). Pass "
        f"--resume to continue it, --restart to start over (the old run's files are moved "
        f"to {os.path.join(output_dir, REPLACED_RUNS)}/), or choose another train.output_dir."
    )


def move_run_aside(output_dir: str) -> Optional[str]:
    """Move the files of the run in ``output_dir`` to ``replaced_runs/<time>/``; return
    that directory (None if there was nothing to move)."""
    names = _matching(output_dir, _RUN_FILES)
    if not names:
        return None
    stamp = time.strftime("%Y%m%d-%H%M%S")
    dest = os.path.join(output_dir, REPLACED_RUNS, stamp)
    n = 1
    while os.path.exists(dest):
        n += 1
        dest = os.path.join(output_dir, REPLACED_RUNS, f"{stamp}-{n}")
    os.makedirs(dest)
    for name in names:
        shutil.move(os.path.join(output_dir, name), os.path.join(dest, name))
    logger.warning("--restart: moved the previous run's files (%s) to %s", ", ".join(names), dest)
    return dest


def eval_output_dir(output_dir: str) -> str:
    """Where ``--eval-only`` writes: ``output_dir``, or ``output_dir/eval`` if it holds a run."""
    return os.path.join(output_dir, "eval") if run_files(output_dir) else output_dir


def repair_metrics(path: str, last_iteration: int) -> Tuple[int, int]:
    """Keep the lines of metrics.json whose ``iteration`` is <= ``last_iteration``.

    Lines that are not complete JSON objects (the last line, when a kill interrupted its
    write) are dropped too. The file is replaced atomically. Returns (kept, dropped).
    """
    if not os.path.isfile(path):
        return 0, 0
    with open(path, encoding="utf-8", errors="replace") as f:
        lines = f.read().splitlines()
    kept, dropped = [], 0
    for line in lines:
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            iteration = int(row["iteration"])
        except (ValueError, KeyError, TypeError):
            dropped += 1
            continue
        if iteration <= last_iteration:
            kept.append(line)
        else:
            dropped += 1
    if dropped:
        with atomic_open(path, "w") as f:
            f.write("".join(line + "\n" for line in kept))
        logger.info("%s: dropped %d lines past iteration %d (or incomplete); %d kept", path, dropped, last_iteration, len(kept))
    return len(kept), dropped
