"""What every benchmark result file shares: the commit it measured, where it is written, and
``--render FILE.json [--readme README.md]`` (print the table, replace the README's block
between markers with :func:`bench_assigners.write_readme`). Standard library only, so
scripts that must not import torch (``quickstart.py``) can use it."""
import datetime
import json
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
from bench_assigners import write_readme  # noqa: E402


def git_commit(repo=ROOT):
    """{"commit": HEAD's sha, "dirty": uncommitted changes to tracked files?} of ``repo``;
    both None when ``repo`` is not a git checkout (or git is missing)."""
    try:
        sha = subprocess.run(["git", "-C", repo, "rev-parse", "HEAD"], capture_output=True, text=True, check=True)
        status = subprocess.run(["git", "-C", repo, "status", "--porcelain", "--untracked-files=no"],
                                capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        return {"commit": None, "dirty": None}
    return {"commit": sha.stdout.strip(), "dirty": bool(status.stdout.strip())}


def today():
    return datetime.date.today().isoformat()


def write_result(result, output, prefix):
    """Write ``result`` as json to ``output`` (default
    ``benchmarks/results/<prefix>_<result["date"]>.json``); returns the path."""
    out = output or os.path.join(HERE, "results", f"{prefix}_{result['date']}.json")
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    with open(out, "w", encoding="utf-8") as f:
        json.dump(result, f, indent=1)
    return out


def add_result_arguments(parser, prefix):
    """``--output`` (default ``benchmarks/results/<prefix>_<date>.json``), ``--render FILE``
    and ``--readme README.md``, as every result-writing script takes them."""
    parser.add_argument("--output", default=None, help=f"result json (default benchmarks/results/{prefix}_<date>.json)")
    parser.add_argument("--render", default=None, help="print the table of a result json instead of measuring")
    parser.add_argument("--readme", default=None, help="with --render: replace the README's table between markers")


def render_file(path, render, readme=None, name=None):
    """Render the result file ``path`` with ``render(result) -> str``, print it and, with
    ``readme``, put it between ``<!-- name:begin -->`` / ``<!-- name:end -->`` there."""
    try:
        with open(path, encoding="utf-8") as f:
            result = json.load(f)
    except (OSError, ValueError) as e:
        raise SystemExit(f"cannot read result file {path}: {e}")
    table = render(result)
    print(table)
    if readme:
        write_readme(readme, table, os.path.relpath(path, ROOT), name=name)
    return table


def short_commit(result):
    """``abc1234`` (+ " with uncommitted changes"), or "unknown commit"."""
    if not result.get("commit"):
        return "unknown commit"
    return result["commit"][:7] + (" with uncommitted changes" if result.get("dirty") else "")
