"""tools/compare_seeds.py and tools/run_record.py: campaign files, results records, resume.

The end-to-end test trains the tiny split for a few iterations through the real
train_net.py; everything else reads hand-written files.
"""
import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tools"))
import compare_seeds  # noqa: E402
import run_record  # noqa: E402
from test_train_net import TINY as TRAIN_NET_TINY  # noqa: E402

# test_train_net's tiny-split overrides, and a checkpoint every 2 iterations to resume from
TINY = [*TRAIN_NET_TINY, "train.checkpointer.period=2"]


def write_campaign(tmp_path, text, name="camp"):
    path = tmp_path / f"{name}.yaml"
    path.write_text(textwrap.dedent(text))
    return str(path)


def test_campaign_defaults_order_and_names(tmp_path):
    path = write_campaign(tmp_path, """
        runs:
          - config: configs/fcos_r18_synth.py
          - config: configs/fcos_r18_synth.py
            name: fcos-giou
            overrides: [model.loss.box_loss=giou]
            seeds: [1]
          - config: projects/DSLA/configs/synth_ablations/impr1.py
    """)
    name, specs = compare_seeds.load_campaign(path)
    assert name == "camp"
    # defaults: 600 iterations, seeds 0 1 2; seed-major order, runs in file order within a seed
    assert [(s["run"], s["seed"]) for s in specs] == [
        ("fcos_r18_synth", 0), ("DSLA__synth_ablations__impr1", 0),
        ("fcos_r18_synth", 1), ("fcos-giou", 1), ("DSLA__synth_ablations__impr1", 1),
        ("fcos_r18_synth", 2), ("DSLA__synth_ablations__impr1", 2),
    ]
    assert {s["max_iter"] for s in specs} == {600}
    assert specs[3]["overrides"] == ["model.loss.box_loss=giou"]


@pytest.mark.parametrize("text, message", [
    ("runs: [{config: configs/fcos_r18_synth.py}]\nmax_iters: 5\n", "unknown keys ['max_iters']"),
    ("runs: [{config: configs/nope.py}]\n", "config 'configs/nope.py' is not a .py file"),
    ("runs: [{config: configs/fcos_r18_synth.py, overrides: [a=1]}]\n", "needs a 'name'"),
    ("runs: [{config: configs/fcos_r18_synth.py}, {config: configs/fcos_r18_synth.py}]\n", "appear more than once"),
    ("runs: [{config: configs/fcos_r18_synth.py, seeds: [-1]}]\n", "seeds must be a non-empty list"),
    ("runs: [{config: configs/fcos_r18_synth.py, overrides: [novalue], name: x}]\n", "'key=value' strings"),
    ("runs: []\n", "'runs' must list at least one run"),
    ("max_iter: 0\nruns: [{config: configs/fcos_r18_synth.py}]\n", "max_iter must be a positive integer"),
])
def test_campaign_errors_name_the_problem(tmp_path, text, message):
    with pytest.raises(SystemExit, match=message.replace("[", r"\[").replace("]", r"\]").replace("(", r"\(")):
        compare_seeds.load_campaign(write_campaign(tmp_path, text))


def test_final_evaluation_keeps_bbox_and_consistency_keys_of_the_last_evaluation(tmp_path):
    rows = [
        {"iteration": 9, "total_loss": 2.0, "loss_cls": 1.5, "num_pos_per_image": 7.0, "time": 0.5, "lr": 0.1},
        {"iteration": 9, "bbox/AP": 1.0, "bbox/AP-ring": 2.0, "consistency/rank": 0.5, "other/x": 3},
        {"iteration": 19, "total_loss": 1.0, "loss_cls": 0.5, "num_pos_per_image": 8.0, "time": 0.7, "lr": 0.1},
        {"iteration": 19, "bbox/AP": 4.0, "bbox/AP-ring": 5.0, "consistency/rank": 0.25, "consistency_pre_nms/rank": 0.125,
         "other/x": 6},
    ]
    (tmp_path / "metrics.json").write_text("".join(json.dumps(r) + "\n" for r in rows))
    read = run_record.read_metrics_json(str(tmp_path))
    assert run_record.final_evaluation(read) == {"bbox/AP": 4.0, "bbox/AP-ring": 5.0, "consistency/rank": 0.25,
                                                 "consistency_pre_nms/rank": 0.125}
    assert run_record.final_training_row(read) == {"iteration": 19, "loss_cls": 0.5, "num_pos_per_image": 8.0, "total_loss": 1.0}
    assert run_record.final_evaluation(read[:1]) is None  # never evaluated
    # Detectron2's summary: 598 iterations in 4 min 10 s = 250 s; median of 0.5, 0.7 = 0.6
    log = "[x] Overall training speed: 598 iterations in 0:04:10 (0.4181 s / it)\n[x] Total training time: 0:04:37 (0:00:27 on hooks)\n"
    assert run_record.timing_from_logs(read, log) == {"train_time_s": 250.0, "train_time_with_hooks_s": 277.0, "s_per_iter": 0.6}


def test_bad_metrics_line_is_reported_with_its_line_number(tmp_path):
    (tmp_path / "metrics.json").write_text('{"a": 1}\n{"b": \n')
    with pytest.raises(ValueError, match=r"metrics.json:2: not a json line"):
        run_record.read_metrics_json(str(tmp_path))


def test_a_record_of_another_run_is_not_reused(tmp_path):
    spec = dict(campaign="c", run="r", config="configs/fcos_r18_synth.py", overrides=[], seed=0, max_iter=600)
    path = str(tmp_path / "seed0.json")
    run_record.write_json(path, dict(spec, schema=1, status="finished", metrics={}, max_iter=300))
    with pytest.raises(SystemExit, match=r"seed0.json records another run \(max_iter: 300 != 600\)"):
        compare_seeds.existing_record(spec, path)
    run_record.write_json(path, dict(spec, schema=1, status="finished", metrics={}))
    assert compare_seeds.existing_record(spec, path)["status"] == "finished"


def _wrapper(tmp_path):
    """A train script that dies (SIGKILL) after iteration 3 unless it is resuming."""
    path = tmp_path / "train_or_die.py"
    path.write_text(textwrap.dedent(f"""
        import os, sys
        sys.argv = [sys.argv[0]] + (sys.argv[1:] if "--resume" in sys.argv else ["3"] + sys.argv[1:])
        script = {os.path.join(ROOT, 'train_net.py')!r} if "--resume" in sys.argv else {os.path.join(ROOT, 'tests', 'kill_at_iteration.py')!r}
        sys.path.insert(0, os.path.dirname(script))
        import runpy
        runpy.run_path(script, run_name="__main__")
    """))
    return str(path)


def test_interrupted_run_resumes_then_is_not_rerun_and_failures_are_recorded(tmp_path, capsys):
    results, output = tmp_path / "results", tmp_path / "output"
    common = ["--campaign", "t", "--seeds", "0", "--max-iter", "6", "--results-dir", str(results),
              "--output-dir", str(output), "--train-script", _wrapper(tmp_path), "--opts", *TINY]
    argv = ["--configs", "configs/fcos_r18_synth.py", *common]
    record_path = results / "t" / "fcos_r18_synth" / "seed0.json"
    out_dir = output / "t" / "fcos_r18_synth" / "seed0"

    assert compare_seeds.main(argv) == []  # killed after iteration 3: no record, resumable
    assert not record_path.exists() and (out_dir / "last_checkpoint").exists()

    [record] = compare_seeds.main(argv)  # resumed from model_0000003.pth, finished
    on_disk = json.loads(record_path.read_text())
    assert on_disk == json.loads(json.dumps(record))
    assert record["status"] == "finished" and record["timing"]["attempts"] == 2 and record["timing"]["resumed"]
    assert record["budget"] == {"max_iter": 6, "batch_size": 2, "images_seen": 12}
    assert record["overrides"] == TINY and record["seed"] == 0 and record["max_iter"] == 6
    assert 0 <= record["metrics"]["bbox/AP"] <= 100 and "bbox/AP-ring" in record["metrics"]
    assert len(record["git"]["commit"]) == 40 and isinstance(record["git"]["dirty"], bool)
    assert record["host"]["cpu_count"] == os.cpu_count() and record["train_final"]["iteration"] == 5
    assert record["command"][:3] == [os.path.relpath(_wrapper(tmp_path), ROOT), "--config-file", "configs/fcos_r18_synth.py"]
    assert (out_dir / "model_final.pth").exists()

    log_size = (out_dir / "stdout.txt").stat().st_size
    assert compare_seeds.main(argv)[0]["finished"] == record["finished"]  # recorded: not run again
    assert (out_dir / "stdout.txt").stat().st_size == log_size

    bad = ["--configs", "configs/atss_r18_synth.py", *common, "train.no_such_key=1"]
    [failed] = compare_seeds.main(bad)
    assert failed["status"] == "failed" and failed["exit_code"] != 0
    assert any("no_such_key" in line for line in failed["error_tail"])
    assert compare_seeds.main(bad)[0]["finished"] == failed["finished"]  # not retried without --retry-failed
    assert "| atss_r18_synth | 0 failed |" in capsys.readouterr().out


def test_a_second_runner_is_refused(tmp_path):
    lock = compare_seeds.acquire_lock(str(tmp_path))
    try:
        with pytest.raises(SystemExit, match="another compare_seeds runs in this checkout"):
            compare_seeds.acquire_lock(str(tmp_path))
    finally:
        lock.close()


def _sleeper(tmp_path):
    """A train script that writes its pid, then sleeps (a training that never ends)."""
    path = tmp_path / "sleeper.py"
    path.write_text(textwrap.dedent(f"""
        import os, time
        with open({str(tmp_path / 'child.pid')!r}, "w") as f:
            f.write(str(os.getpid()))
        time.sleep(600)
    """))
    return str(path)


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as f:  # a zombie is dead
        return f.read().split(")")[-1].split()[0] != "Z"


@pytest.mark.parametrize("sig, returncode", [(signal.SIGTERM, 128 + signal.SIGTERM), (signal.SIGKILL, -signal.SIGKILL)])
def test_stopping_the_runner_stops_its_training(tmp_path, sig, returncode):
    """SIGTERM: the runner stops the training and exits 143; SIGKILL: the training gets
    SIGTERM from the kernel (PR_SET_PDEATHSIG) instead of running on as an orphan."""
    cmd = [sys.executable, os.path.join(ROOT, "tools", "compare_seeds.py"), "--configs", "configs/fcos_r18_synth.py",
           "--campaign", "t", "--seeds", "0", "--results-dir", str(tmp_path / "r"), "--output-dir", str(tmp_path / "o"),
           "--train-script", _sleeper(tmp_path)]
    runner = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    pid_file = tmp_path / "child.pid"
    deadline = time.time() + 120
    while not (pid_file.exists() and pid_file.read_text()) and time.time() < deadline:
        time.sleep(0.2)
    child = int(pid_file.read_text())
    runner.send_signal(sig)
    assert runner.wait(timeout=60) == returncode
    deadline = time.time() + 30
    while _alive(child) and time.time() < deadline:
        time.sleep(0.2)
    assert not _alive(child)
    assert not (tmp_path / "r" / "t" / "fcos_r18_synth" / "seed0.json").exists()
    if sig == signal.SIGTERM:
        assert "stopped by signal 15; rerun the same command to resume" in runner.stdout.read()
