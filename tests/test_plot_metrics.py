"""tools/plot_metrics.py on hand-made metrics.json files; expected values derived by hand."""
import importlib.util
import json
import math
import os

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_spec = importlib.util.spec_from_file_location("plot_metrics", os.path.join(ROOT, "tools", "plot_metrics.py"))
pm = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(pm)


def write(path, rows, tail=""):
    os.makedirs(path, exist_ok=True)
    with open(os.path.join(path, "metrics.json"), "w") as f:
        f.write("".join(json.dumps(r) + "\n" for r in rows) + tail)


def seeds(root):
    """compare_seeds.py layout: root/seed0, root/seed1."""
    write(root / "seed0", [
        {"iteration": 0, "total_loss": 4.0, "loss_cls": 3.0, "lr": 0.5},
        {"iteration": 1, "total_loss": 2.0, "loss_cls": 1.0, "lr": 1.0},
        {"iteration": 2, "total_loss": 3.0, "loss_cls": 2.0, "lr": 1.0},
        {"iteration": 3, "total_loss": 1.0, "loss_cls": 0.5, "lr": 0.1},
        {"iteration": 3, "bbox/AP": 10.0},
        {"iteration": 4, "total_loss": 5.0, "loss_cls": 4.0, "lr": 0.1},
    ])
    write(root / "seed1", [
        {"iteration": 0, "total_loss": 6.0, "loss_cls": 5.0, "lr": 0.5},
        {"iteration": 1, "total_loss": 4.0, "loss_cls": 3.0, "lr": 1.0},
        {"iteration": 2, "total_loss": 9.0, "loss_cls": 8.0, "lr": 1.0},
        # resumed from a checkpoint at iteration 1: iteration 2 is logged again, and wins
        {"iteration": 2, "total_loss": 2.0, "loss_cls": 1.0, "lr": 1.0},
        {"iteration": 3, "total_loss": 0.0, "loss_cls": 0.0, "lr": 0.1},
        {"iteration": 3, "bbox/AP": 14.0},
    ], tail='{"iteration": 4, "total_lo')  # killed while writing


def test_moving_average_by_hand():
    # window 3 over 1..5: [1], [1,2], [1,2,3], [2,3,4], [3,4,5] -> 1, 1.5, 2, 3, 4
    assert pm.moving_average([1, 2, 3, 4, 5], 3).tolist() == [1, 1.5, 2, 3, 4]
    assert pm.moving_average([3, 1], 1).tolist() == [3, 1]
    with pytest.raises(ValueError, match="window must be >= 1, got 0"):
        pm.moving_average([1.0], 0)


def test_seed_band_by_hand(tmp_path):
    seeds(tmp_path / "fcos")
    label, files = pm.parse_run_arg(str(tmp_path / "fcos"))
    assert label == "fcos" and [os.path.basename(os.path.dirname(f)) for f in files] == ["seed0", "seed1"]
    runs = [pm.read_metrics(f) for f in files]
    assert runs[1]["total_loss"] == {0: 6.0, 1: 4.0, 2: 2.0, 3: 0.0}  # truncated line skipped, last write wins
    it, mean, std = pm.group_curve(runs, "total_loss", 2)
    # window 2: seed0 (4, 2, 3, 1, 5) -> (4, 3, 2.5, 2, 3); seed1 (6, 4, 2, 0) -> (6, 5, 3, 1).
    # Common iterations 0..3: mean (5, 4, 2.75, 1.5); sample std of two values = |a-b|/√2:
    # (2, 2, .5, 1)/√2
    assert it.tolist() == [0, 1, 2, 3]
    np.testing.assert_allclose(mean, [5, 4, 2.75, 1.5])
    np.testing.assert_allclose(std, np.array([2, 2, 0.5, 1]) / math.sqrt(2))
    # AP and lr are not smoothed: AP mean (10+14)/2 = 12, std 4/√2; lr identical in both seeds
    it, mean, std = pm.group_curve(runs, "bbox/AP", 2)
    assert it.tolist() == [3] and mean.tolist() == [12.0] and std[0] == pytest.approx(4 / math.sqrt(2))
    it, mean, std = pm.group_curve(runs, "lr", 2)
    assert mean.tolist() == [0.5, 1.0, 1.0, 0.1] and std.tolist() == [0, 0, 0, 0]
    # a single run: no band
    it, mean, std = pm.group_curve(runs[:1], "loss_cls", 3)
    # window 3 over (3, 1, 2, .5, 4): 3, 2, 2, 3.5/3, 6.5/3
    np.testing.assert_allclose(mean, [3, 2, 2, 3.5 / 3, 6.5 / 3])
    assert std is None


def test_cli_writes_png_and_series(tmp_path):
    seeds(tmp_path / "fcos")
    write(tmp_path / "dsla", [{"iteration": 0, "total_loss": 1.0, "loss_cls": 0.5, "loss_box_reg": 0.5, "lr": 0.5},
                              {"iteration": 1, "total_loss": 3.0, "loss_cls": 2.0, "loss_box_reg": 1.0, "lr": 1.0}])
    out, js = tmp_path / "curves.png", tmp_path / "curves.json"
    curves = pm.main([str(tmp_path / "fcos"), f"mine={tmp_path / 'dsla'}", "--window", "2", "--out", str(out), "--out-json", str(js)])
    with open(out, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    # default keys: total_loss, the loss_* terms (sorted), lr, bbox/AP
    assert list(curves) == ["total_loss", "loss_box_reg", "loss_cls", "lr", "bbox/AP"]
    assert set(curves["loss_box_reg"]) == {"mine"} and set(curves["bbox/AP"]) == {"fcos"}
    # window 2 over (1, 3) -> (1, 2)
    assert curves["total_loss"]["mine"] == {"runs": 1, "iteration": [0, 1], "mean": [1.0, 2.0], "std": None}
    assert json.loads(js.read_text())["curves"]["total_loss"]["fcos"]["mean"] == [5, 4, 2.75, 1.5]


def test_bad_inputs_are_named(tmp_path):
    write(tmp_path / "a", [{"iteration": 0, "total_loss": 1.0}])
    with pytest.raises(SystemExit, match=r"\['loss_xyz'\] are in none of the runs; available: \['total_loss'\]"):
        pm.main([str(tmp_path / "a"), "--keys", "loss_xyz", "--out", str(tmp_path / "x.png")])
    with pytest.raises(FileNotFoundError, match="no metrics.json at"):
        pm.main([str(tmp_path / "nowhere.json")])
    os.makedirs(tmp_path / "empty")
    with pytest.raises(FileNotFoundError, match="nor in its seed"):
        pm.main([str(tmp_path / "empty")])
    write(tmp_path / "b", [{"iteration": 0, "total_loss": 1.0}], tail='{"iteration": 1,\n{"iteration": 2, "total_loss": 1.0}\n')
    with pytest.raises(ValueError, match="metrics.json, line 2: not json"):
        pm.read_metrics(str(tmp_path / "b"))
