"""benchmarks/bench_train_step.py and benchmarks/quickstart.py: the result files they write
and the README tables rendered from them (no timing is asserted; nothing slow is run); the
committed benchmark tables of the docs pages equal their result files' rendering."""
import glob
import importlib
import json
import os
import re
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "benchmarks"))
import bench_train_step  # noqa: E402
import quickstart  # noqa: E402

README = "intro\n\n<!-- {0}:begin -->\nnot yet measured\n<!-- {0}:end -->\n\nafter\n"
FCOS, ATSS = (os.path.join(ROOT, "configs", c) for c in ("fcos_r18_synth.py", "atss_r18_synth.py"))


# ------------------------------------------------------------------ committed tables
# what bench_assigners.write_readme writes between a table's markers
RENDERED_BLOCK = re.compile(r"<!-- ([\w.-]+):begin -->\n<!-- rendered by benchmarks/(\w+)\.py --render (\S+) -->\n"
                            r"(.*?)<!-- \1:end -->", re.S)


def test_committed_benchmark_tables_equal_their_rendering():
    """Every benchmark table in README.md and docs/*.md is the result file named in its
    marker, rendered by the script named there: after a new measurement, run
    `python benchmarks/<script>.py --render FILE.json --readme docs/benchmarks.md`."""
    found = []
    for path in [os.path.join(ROOT, "README.md")] + sorted(glob.glob(os.path.join(ROOT, "docs", "*.md"))):
        with open(path, encoding="utf-8") as f:
            text = f.read()
        for name, script, source, table in RENDERED_BLOCK.findall(text):
            with open(os.path.join(ROOT, source), encoding="utf-8") as f:
                result = json.load(f)
            rendered = importlib.import_module(script).render(result)
            assert table == rendered, f"{os.path.relpath(path, ROOT)}: table {name!r} differs from {script}.py's rendering of {source}"
            found.append((os.path.relpath(path, ROOT), name))
    names = {name for _, name in found}
    assert {"quickstart", "bench_assigners", "bench_assigners_ddod_dw", "bench_crowd_step", "bench_train_step"} <= names, found


# ------------------------------------------------------------------ bench_train_step
def test_train_step_writes_json_and_renders_the_readme_table(tmp_path):
    out = tmp_path / "train_step.json"
    bench_train_step.main(["--configs", FCOS, ATSS, "--dataset", "dsla_synth_tiny", "--batch", "1",
                           "--steps", "1", "--rounds", "1", "--output", str(out)])
    result = json.loads(out.read_text())
    for key in ("date", "device", "threads", "load_average_start", "load_average_end", "batch", "steps",
                "rounds", "commit", "dirty"):
        assert key in result, key
    assert (result["batch"], result["steps"], result["rounds"], result["device"]) == (1, 1, 1, "cpu")
    assert len(result["commit"]) == 40 and len(result["load_average_start"]) == 3
    assert [r["config"] for r in result["configs"]] == [FCOS, ATSS]
    first, second = result["configs"]
    assert first["ratio"] == 1.0 and second["ratio"] == second["median_ms"] / first["median_ms"]
    for r in result["configs"]:  # one round: the median is that round, min = max = it
        assert r["round_ms"] == [r["median_ms"]] and r["min_ms"] == r["max_ms"] == r["median_ms"] > 0

    readme = tmp_path / "README.md"
    readme.write_text(README.format("bench_train_step"))
    bench_train_step.main(["--render", str(out), "--readme", str(readme)])
    text = readme.read_text()
    assert text.startswith("intro\n\n<!-- bench_train_step:begin -->")
    assert text.endswith("<!-- bench_train_step:end -->\n\nafter\n")
    assert "not yet measured" not in text
    assert f"| {FCOS} | {first['median_ms']:,.0f} | 1.00× |" in text
    assert f"| {ATSS} | {second['median_ms']:,.0f} | {second['ratio']:.2f}× |" in text


def test_train_step_rejects_a_zero_round_count():
    with pytest.raises(SystemExit, match="--rounds must be ≥ 1, got 0"):
        bench_train_step.main(["--rounds", "0"])


# ------------------------------------------------------------------ quickstart readers
@pytest.mark.parametrize("line, expected", [
    ("604 passed in 95.29s (0:01:35)", {"passed": 604, "seconds": 95.29}),
    ("3 failed, 600 passed, 1 skipped in 10.00s", {"failed": 3, "passed": 600, "skipped": 1, "seconds": 10.0}),
    ("302 passed, 4 warnings in 38.12s", {"passed": 302, "warnings": 4, "seconds": 38.12}),
    ("========= 1 failed, 2 errors in 0.51s =========", {"failed": 1, "errors": 2, "seconds": 0.51}),
    ("\x1b[32m\x1b[1m12 passed\x1b[0m\x1b[32m in 1.20s\x1b[0m", {"passed": 12, "seconds": 1.2}),
    ("no tests ran in 0.01s", {"seconds": 0.01}),
])
def test_pytest_summary_line(line, expected):
    lines = ["tests/test_a.py ....F", "FAILED tests/test_a.py::test_x - assert 1 == 2", line]
    assert quickstart.parse_pytest_summary(lines) == expected


def test_pytest_summary_missing_when_pytest_did_not_finish():
    assert quickstart.parse_pytest_summary(["tests/test_a.py ....", "make: *** [Makefile:31: test] Killed"]) is None


def test_last_bbox_metrics_line_wins(tmp_path):
    path = tmp_path / "metrics.json"
    records = [
        {"iteration": 19, "total_loss": 2.0},
        {"iteration": 599, "bbox/AP": 10.0, "bbox/AP50": 20.0, "total_loss": 1.0},
        {"iteration": 619, "total_loss": 0.9},
        {"iteration": 1199, "bbox/AP": 27.5, "bbox/AP50": 49.0, "bbox/APs": 15.0, "bbox/AP-circle": 30.0},
        {"iteration": 1199, "total_loss": 0.5},  # written after the evaluation's line
    ]
    path.write_text("\n".join(json.dumps(r) for r in records) + "\n\n")
    assert quickstart.last_bbox_metrics(path) == {
        "bbox/AP": 27.5, "bbox/AP50": 49.0, "bbox/APs": 15.0, "bbox/AP-circle": 30.0, "iteration": 1199}
    path.write_text(json.dumps(records[0]) + "\n")
    assert quickstart.last_bbox_metrics(path) is None
    path.write_text('{"iteration": 1\n')
    with pytest.raises(SystemExit, match="metrics.json:1 is not json"):
        quickstart.last_bbox_metrics(path)


def test_demo_output_dir_is_the_makefiles():
    assert quickstart.demo_output_dir(os.path.join(ROOT, "Makefile")) == "output/atss_synth"


# ------------------------------------------------------------------ quickstart running
def test_clone_refuses_a_non_empty_directory(tmp_path):
    (tmp_path / "old.txt").write_text("x")
    with pytest.raises(SystemExit, match="is not an empty directory"):
        quickstart.main(["--clone", str(tmp_path), "--steps", "test"])
    assert os.listdir(tmp_path) == ["old.txt"]


def test_clone_checks_out_this_checkouts_head(tmp_path):
    head = subprocess.run(["git", "-C", ROOT, "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    quickstart.clone(str(tmp_path / "qs"), head)
    cloned = subprocess.run(["git", "-C", tmp_path / "qs", "rev-parse", "HEAD"], capture_output=True, text=True)
    assert cloned.stdout.strip() == head and (tmp_path / "qs" / "Makefile").exists()


def test_run_step_records_a_failing_test_step_and_a_demo(tmp_path, capsys):
    # A stand-in Makefile: `make test` prints pytest's summary and fails, `make demo` writes
    # the metrics file into DEMO_OUT. CI=true and no PYTHONPATH reach the commands.
    (tmp_path / "Makefile").write_text(
        "DEMO_OUT ?= out/demo\n"
        "test:\n\t@echo \"CI=$$CI PYTHONPATH=$$PYTHONPATH\"\n\t@echo '1 failed, 5 passed in 2.50s'\n\t@exit 3\n"
        "demo:\n\tmkdir -p out/demo\n\techo '{\"iteration\": 9, \"bbox/AP\": 1.5}' > out/demo/metrics.json\n"
    )
    env, _ = quickstart.clean_env()
    test = quickstart.run_step("test", str(tmp_path), env)
    assert test["exit_code"] == 2  # make's exit code for a failed recipe
    assert test["pytest"] == {"failed": 1, "passed": 5, "seconds": 2.5}
    assert test["output_tail"][0] == "CI=true PYTHONPATH=" and test["wall_s"] > 0
    demo = quickstart.run_step("demo", str(tmp_path), env)
    assert demo["exit_code"] == 0 and demo["metrics"] == {"bbox/AP": 1.5, "iteration": 9}
    assert demo["metrics_file"] == "out/demo/metrics.json" and "output_tail" not in demo
    assert "1 failed, 5 passed" in capsys.readouterr().out  # echoed while it runs


def test_clean_env_drops_the_callers_python_and_dataset_settings(monkeypatch):
    monkeypatch.setenv("PYTHONPATH", "/somewhere")
    monkeypatch.setenv("DSLA_D2_SYNTH_ROOT", "/data")
    monkeypatch.setenv("HOME_LIKE_SETTING", "kept")
    monkeypatch.setenv("MAKELEVEL", "1")  # as under `make test`: the clone's make must be top-level
    monkeypatch.setenv("MAKEFLAGS", "w")
    env, dropped = quickstart.clean_env()
    assert env["CI"] == "true" and env["HOME_LIKE_SETTING"] == "kept"
    assert {"PYTHONPATH", "DSLA_D2_SYNTH_ROOT", "MAKELEVEL", "MAKEFLAGS"} <= set(dropped) and not set(dropped) & set(env)


def test_quickstart_render_into_readme(tmp_path):
    step = {"load_average_before": [1.5, 1, 1], "load_average_after": [2, 1, 1], "exit_code": 0}
    result = {
        "date": "2026-11-24", "commit": "0123456789abcdef" * 2 + "01234567", "dirty": False, "cpu_count": 2,
        "steps": [
            dict(step, step="install", command="make install", wall_s=150.4),
            dict(step, step="test", command="make test", wall_s=38.2,
                 pytest={"passed": 600, "skipped": 1, "seconds": 35.25}),
            dict(step, step="demo", command="make demo", wall_s=464.0,
                 metrics={"bbox/AP": 27.6, "bbox/AP50": 49.44, "bbox/AP75": 28.0, "iteration": 1199}),
        ],
        "not_run": [],
    }
    path, readme = tmp_path / "qs.json", tmp_path / "README.md"
    path.write_text(json.dumps(result))
    readme.write_text(README.format("quickstart"))
    assert quickstart.main(["--render", str(path), "--readme", str(readme)]) == 0
    text = readme.read_text()
    assert "2026-11-24, commit 0123456, 2 CPU(s), `CI=true`, fresh clone; load average 1.50" in text
    assert "| `make install` | 2 min 30 s | ok |" in text  # 150.4 s -> 150 s = 2 min 30 s
    assert "| `make test` | 38 s | 600 passed, 1 skipped (pytest: 35.2 s) |" in text
    assert "| `make demo` | 7 min 44 s | iteration 1199: AP 27.6, AP50 49.4, AP75 28.0 |" in text  # 464 = 7·60 + 44
    assert text.endswith("<!-- quickstart:end -->\n\nafter\n") and "not yet measured" not in text

    failed = dict(result, steps=[dict(result["steps"][0], exit_code=2)], not_run=["test", "demo"])
    table = quickstart.render(failed)
    assert "| `make install` | 2 min 30 s | **failed** (exit 2) |" in table
    assert "| `make demo` | – | not run (an earlier step failed) |" in table
