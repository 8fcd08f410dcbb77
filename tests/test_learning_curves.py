"""tools/learning_curves.py (where a validation curve stops rising) and its table kind in
tools/render_tables.py."""
import json
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tools"))
import learning_curves  # noqa: E402
import render_tables  # noqa: E402


def _series():
    # lr: warm-up 0.001 → 0.003 at 100, constant to 2249, 0.0003 from 2250 (the step schedule)
    lr = {i: (0.001 if i < 100 else 0.003 if i < 2250 else 0.0003) for i in range(0, 3000, 50)}
    ap = {299: 8.0, 599: 15.0, 899: 17.5, 1199: 18.2, 1499: 18.0, 1799: 18.6, 2099: 18.4, 2399: 20.0, 3000: 20.5}
    return {"lr": lr, "bbox/AP": ap, "bbox/AP50": {k: 2 * v for k, v in ap.items()}}


def test_lr_drop_is_the_first_iteration_below_half_the_peak():
    # the peak 0.003 is reached at 100; the first logged lr below 0.0015 after it is at 2250
    assert learning_curves.lr_drop(_series()["lr"]) == 2250
    assert learning_curves.lr_drop({0: 0.001, 50: 0.003, 100: 0.003}) is None  # constant: no drop yet


def test_plateau_is_the_first_evaluation_within_tolerance_of_the_best_before_the_drop():
    s = learning_curves.analyse(_series(), tolerance=0.5)
    # evaluations before 2250: best 18.6 (at 1799); within 0.5 → ≥ 18.1: first is 1199 (18.2)
    assert s["best_before_drop"] == 18.6 and s["plateau"] == 1199 and s["lr_drop"] == 2250
    assert s["final"] == 20.5 and s["evaluations"][0] == {"iteration": 299, "done": 300, "AP": 8.0, "AP50": 16.0}
    # the final evaluation is logged at max_iter itself: 3000 iterations done, not 3001
    assert learning_curves.analyse(_series(), 0.5, max_iter=3000)["evaluations"][-1]["done"] == 3000
    # a tolerance of 0.1 → ≥ 18.5: only 1799; 2099 (18.4) comes after it: flat
    assert learning_curves.analyse(_series(), tolerance=0.1)["plateau"] == 1799
    assert s["flat"] and learning_curves.analyse(_series(), tolerance=0.1)["flat"]
    # the best at the last evaluation before the drop (2099 → 19.5; ≥ 19.0 only there): still rising, not flat
    rising = _series()
    rising["bbox/AP"][2099] = 19.5
    r = learning_curves.analyse(rising, tolerance=0.5)
    assert r["plateau"] == 2099 and not r["flat"]


def test_curves_table(tmp_path):
    curves = {"campaign": "c", "tolerance_AP": 0.5, "runs": {
        "fcos": {"0": learning_curves.analyse(_series(), 0.5, max_iter=3000)},
        "open": {"0": learning_curves.analyse({"lr": {0: 0.003}, "bbox/AP": {299: 3.0}}, 0.5)},
        "rising": {"0": dict(learning_curves.analyse(_series(), 0.5, max_iter=3000), flat=False)},
    }}
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "curves.json").write_text(json.dumps(curves))
    table = {"curves": "c", "rows": [{"run": "fcos", "label": "FCOS"}, {"run": "open", "label": "Open"},
                                     {"run": "none", "label": "None"}, {"run": "rising", "label": "Rising"}]}
    lines = render_tables.render_table("t", table, str(tmp_path)).splitlines()
    assert lines[1].startswith("| detector | AP @ 300 | AP @ 600 |") and "| AP @ 3000 |" in lines[1] and lines[1].endswith(
        "| flat from (constant lr) | best AP before the lr drop | AP after the decay |")
    assert lines[3] == "| FCOS | 8.0 | 15.0 | 17.5 | 18.2 | 18.0 | 18.6 | 18.4 | 20.0 | 20.5 | 1200 | 18.6 | 20.5 |"
    assert lines[4] == "| Open | 3.0 |  |  |  |  |  |  |  |  | still rising (run unfinished) |  |  |"
    assert lines[5].startswith("| None | not yet measured |")
    assert "| not flat: still rising at 1200 |" in lines[6]
