"""Nothing a user would miss is overwritten; serving runs where the user is; refusals read
like messages.

Runs are a few iterations of the embedded FCOS config on the tiny split (test_train_net's
``run``); the command-line cases start ``train_net.py`` as a user would.
"""
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

import dsla_d2  # noqa: I001  (first: applies dsla_d2.compat before detectron2.engine imports)
from detectron2.config import LazyConfig
from detectron2.engine import SimpleTrainer
from dsla_d2.engine.checkpoint import ModelMismatchError
from dsla_d2.engine.data_checks import DatasetMismatchError
from dsla_d2.engine.lock import LOCK_FILE, OutputDirLock, OutputDirLockedError
from test_train_net import CONFIG, ROOT, TINY, json_flags, metrics, run, tiny_json

import train_net

ATSS = os.path.join(ROOT, "configs", "atss_r18_synth.py")
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def cli(*args, timeout=600):
    """``python train_net.py ARGS`` in a fresh process: (exit status, stderr)."""
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "train_net.py"), *args],
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=timeout, env=ENV, cwd=ROOT)
    return proc.returncode, proc.stderr.decode()


def snapshot(path):
    """{file name: bytes} of every file in a directory tree (what a user would miss)."""
    out = {}
    for root, _, files in os.walk(path):
        for name in files:
            full = os.path.join(root, name)
            with open(full, "rb") as f:
                out[os.path.relpath(full, path)] = f.read()
    return out


# --------------------------------------------------------------------------- refused resume
def test_refused_resume_changes_nothing_in_the_run(tmp_path):
    run(tmp_path, "train.max_iter=2")
    before = snapshot(tmp_path)
    args = train_net.get_parser().parse_args(
        ["--config-file", ATSS, "--resume", f"train.output_dir={tmp_path}", *TINY, "train.max_iter=2"]
    )
    with pytest.raises(ModelMismatchError, match="DslaFCOS.*DslaATSS"):
        train_net.main(args)
    assert snapshot(tmp_path) == before  # config.yaml (what serving reads) included
    dsla_d2.predictor_from_output_dir(str(tmp_path), device="cpu")  # still servable


def test_refused_eval_only_writes_nothing(tmp_path):
    run(tmp_path / "fcos", "train.max_iter=1", "train.eval_period=0")
    args = train_net.get_parser().parse_args(
        ["--config-file", ATSS, "--eval-only", f"train.output_dir={tmp_path / 'eval'}", *TINY,
         f"train.init_checkpoint={tmp_path / 'fcos' / 'model_final.pth'}"]
    )
    with pytest.raises(ModelMismatchError):
        train_net.main(args)
    assert not (tmp_path / "eval").exists()


# --------------------------------------------------------------------------- one run per directory
def test_two_trainings_into_one_directory(tmp_path):
    # two users start the same training half a second apart: one trains, one is refused
    out = tmp_path / "run"
    args = ["--config-file", CONFIG, f"train.output_dir={out}", *TINY, "train.max_iter=30", "train.eval_period=0"]
    first = subprocess.Popen([sys.executable, os.path.join(ROOT, "train_net.py"), *args],
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=ENV, cwd=ROOT)
    time.sleep(0.5)
    second = subprocess.Popen([sys.executable, os.path.join(ROOT, "train_net.py"), *args],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=ENV, cwd=ROOT)
    results = [(p.wait(timeout=600), p.stderr.read().decode()) for p in (first, second)]
    codes = sorted(code for code, _ in results)
    assert codes == [0, 2], [err[-2000:] for _, err in results]
    refused = next(err for code, err in results if code == 2)
    assert "is in use by another run: pid" in refused or "already holds a training run" in refused
    iterations = [r["iteration"] for r in metrics(out) if "total_loss" in r]
    assert iterations == list(range(30))  # every iteration once


def test_lock_names_the_holder_and_a_dead_holder_is_stale(tmp_path):
    out = tmp_path / "run"
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import sys, time; sys.path.insert(0, sys.argv[1]); from dsla_d2.engine.lock import OutputDirLock; "
         "OutputDirLock(sys.argv[2]).acquire(); print('locked', flush=True); time.sleep(600)", ROOT, str(out)],
        stdout=subprocess.PIPE, env=ENV,
    )
    try:
        assert holder.stdout.readline().strip() == b"locked"
        with pytest.raises(OutputDirLockedError, match=rf"in use by another run: pid {holder.pid} on .*, started "):
            run(out, "train.max_iter=1")
        with pytest.raises(OutputDirLockedError):
            OutputDirLock(str(out)).acquire()
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    assert json.loads((out / LOCK_FILE).read_text())["pid"] == holder.pid  # left behind by kill -9
    run(out, "train.max_iter=1", "train.eval_period=0")  # stale: the kernel released it
    with OutputDirLock(str(out)):  # and the finished run released it too
        pass


# --------------------------------------------------------------------------- metrics history
def test_kill_between_checkpoint_and_metrics_row_loses_no_row(tmp_path):
    # The process dies right after the checkpoint of iteration 3 is written. Whatever the
    # hooks' order, metrics.json must have rows 0..5 once each after --resume.
    opts = ["train.max_iter=6", "train.checkpointer.period=2", "train.eval_period=0"]
    script = (
        "import os, signal, sys\n"
        "sys.path.insert(0, sys.argv[1])\n"
        "import train_net\n"
        "from dsla_d2.engine.checkpoint import RunCheckpointer\n"
        "save = RunCheckpointer.save\n"
        "def save_and_die(self, name, **kw):\n"
        "    save(self, name, **kw)\n"
        "    if name == 'model_0000003':\n"
        "        os.kill(os.getpid(), signal.SIGKILL)\n"
        "RunCheckpointer.save = save_and_die\n"
        "train_net.main(train_net.get_parser().parse_args(sys.argv[2:]))\n"
    )
    out = tmp_path / "run"
    proc = subprocess.run([sys.executable, "-c", script, ROOT, "--config-file", CONFIG, f"train.output_dir={out}", *TINY, *opts],
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=ENV, timeout=600)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()[-2000:]
    run(out, *opts, flags=["--resume"])
    assert [r["iteration"] for r in metrics(out) if "total_loss" in r] == list(range(6))


def test_resume_of_a_finished_run_keeps_its_rows(tmp_path):
    run(tmp_path, "train.max_iter=2")
    before = (tmp_path / "metrics.json").read_text()
    results = run(tmp_path, "train.max_iter=2", flags=["--resume"])
    assert "bbox" in results  # evaluated again and printed
    assert (tmp_path / "metrics.json").read_text() == before  # no row renumbered to max_iter + 1
    assert [r["iteration"] for r in metrics(tmp_path) if "bbox/AP" in r] == [2]  # Detectron2: the final row is max_iter


def test_bit_flipped_checkpoint_falls_back_on_resume(tmp_path, caplog):
    opts = ["train.checkpointer.period=2", "train.checkpointer.max_to_keep=10", "train.eval_period=0"]
    run(tmp_path, "train.max_iter=4", *opts)  # model_0000001.pth, model_0000003.pth, model_final.pth
    for name in ("model_final.pth", "model_0000003.pth"):
        path = tmp_path / name
        data = bytearray(path.read_bytes())
        data[len(data) // 2 : len(data) // 2 + 64] = bytes(64)  # same size, 64 bytes changed
        path.write_bytes(bytes(data))
    run(tmp_path, "train.max_iter=5", *opts, flags=["--resume"])
    assert "does not match its checksum" in caplog.text
    assert [r["iteration"] for r in metrics(tmp_path) if "total_loss" in r] == [0, 1, 2, 3, 4]
    assert torch.load(tmp_path / "model_final.pth")["iteration"] == 4


# --------------------------------------------------------------------------- failed steps
def test_no_evaluation_after_a_failed_last_step(tmp_path, monkeypatch):
    def fails_at_the_end(self):
        if self.iter == self.max_iter - 1:
            raise RuntimeError("a step that failed")
        return SimpleTrainer.run_step(self)

    monkeypatch.setattr(train_net, "SimpleTrainer", type("Failing", (SimpleTrainer,), {"run_step": fails_at_the_end}))
    with pytest.raises(RuntimeError, match="a step that failed"):
        run(tmp_path, "train.max_iter=2")
    assert not any("bbox/AP" in r for r in metrics(tmp_path))
    assert not (tmp_path / "inference").exists()


def test_num_classes_that_contradict_the_json_are_refused(tmp_path):
    js, images = tiny_json(tmp_path, "two.json")
    with pytest.raises(DatasetMismatchError, match="model.num_classes=3 was given, but .*two.json has 2 classes"):
        run(tmp_path / "out", "train.max_iter=1", "model.num_classes=3", flags=json_flags(js, js, images))
    assert not (tmp_path / "out").exists()


# --------------------------------------------------------------------------- serving
def cuda_config(tmp_path):
    cfg = LazyConfig.apply_overrides(LazyConfig.load(CONFIG), [*TINY, "train.device=cuda"])
    from test_trust_boundaries import run_dir

    run_dir(tmp_path / "run", ["train.device=cuda"])
    return cfg


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the fallback of a machine without CUDA")
def test_a_cuda_config_is_served_on_the_cpu(tmp_path, caplog):
    cfg = cuda_config(tmp_path)
    weights = str(tmp_path / "run" / "model_final.pth")
    predictor = dsla_d2.predictor_from_config(cfg, weights)
    assert predictor.cfg.MODEL.DEVICE == "cpu" and "CUDA is not available: serving on the CPU" in caplog.text
    predictor = dsla_d2.predictor_from_output_dir(str(tmp_path / "run"))
    assert next(predictor.model.parameters()).device.type == "cpu"
    assert len(predictor(np.zeros((64, 64, 3), np.uint8))["instances"]) >= 0
    with pytest.raises((RuntimeError, AssertionError)):  # an explicit device insists
        dsla_d2.predictor_from_config(cfg, weights, device="cuda")


@pytest.mark.parametrize("shape", [(1, 700), (700, 1), (3, 20000), (1, 1)])
def test_extreme_aspect_ratios_are_served(tmp_path, shape):
    from test_trust_boundaries import run_dir

    run_dir(tmp_path / "run")
    predictor = dsla_d2.predictor_from_output_dir(str(tmp_path / "run"), device="cpu")
    out = predictor(np.full((*shape, 3), 128, np.uint8))["instances"]
    assert out.image_size == shape
    boxes = out.pred_boxes.tensor
    assert torch.isfinite(boxes).all()


# --------------------------------------------------------------------------- messages
def test_user_errors_are_one_line_with_status_2(tmp_path):
    code, err = cli("--config-file", CONFIG, f"train.output_dir={tmp_path}", "train.max_iters=3")
    assert code == 2, err[-2000:]
    lines = [line for line in err.splitlines() if "error" in line.lower()]
    assert lines == ["train_net.py: error: Unknown config key 'train.max_iters'; did you mean train.max_iter? "
                     "(prefix it with '+' to add a new key)"]
    assert "Traceback" not in err

    code, err = cli("--config-file", CONFIG, "--debug", f"train.output_dir={tmp_path}", "model.test_score_thresh=5")
    assert code != 0 and "Traceback" in err and "ConfigValueError" in err  # --debug shows where
