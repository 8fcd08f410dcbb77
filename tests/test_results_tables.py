"""tools/render_tables.py: the READMEs' result tables are rendered from results records.

No training here: records are written by hand (or are the committed ones).
"""
import os
import sys
import textwrap

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tools"))
import render_tables  # noqa: E402
import run_record  # noqa: E402


def test_committed_tables_equal_their_rendering():
    """Fails when a README table was edited by hand or new records were not rendered:
    run `python tools/render_tables.py`."""
    docs = render_tables.render_docs(render_tables.load_tables(), render_tables.doc_files())
    stale = [os.path.relpath(p, ROOT) for p, (old, new) in docs.items() if old != new]
    assert not stale, f"out of date (run python tools/render_tables.py): {stale}"
    assert any("<!-- results:" in old for old, _ in docs.values())


def test_docs_pages_are_rendered_too():
    """The measured tables live in docs/*.md pages (results, FCOS diagnosis): the renderer
    and the check above must read them, not only the READMEs."""
    rendered = {os.path.relpath(p, ROOT) for p in render_tables.doc_files()}
    assert {"README.md", os.path.join("docs", "results.md"), os.path.join("docs", "fcos_diagnosis.md")} <= rendered
    with open(os.path.join(ROOT, "docs", "results.md"), encoding="utf-8") as f:
        results = f.read()
    assert "<!-- results:synth_detectors -->" in results and "<!-- results:synth_consistency -->" in results


@pytest.mark.parametrize("values, text", [
    ([1.0, 2.0, 3.0], "2.0 ± 1.0"),  # mean 2; sample variance (1 + 0 + 1) / (3 − 1) = 1
    ([2.0, 4.0], "3.0 ± 1.4"),  # mean 3; variance (1 + 1) / 1 = 2, sqrt 2 = 1.414
    ([5.0], "5.0"),  # one seed: no spread to state
    ([], "–"),
])
def test_mean_std(values, text):
    assert render_tables.mean_std(values) == text


def _record(run, seed, ap, status="finished", commit="a" * 40):
    return dict(schema=1, campaign="camp", run=run, config="configs/fcos_r18_synth.py", overrides=[], seed=seed,
                max_iter=600, status=status, budget=dict(max_iter=600, batch_size=8, images_seen=4800),
                git=dict(commit=commit, dirty=False, dirty_files=[], diff_sha1=None),
                metrics={} if status == "failed" else {"bbox/AP": ap, "bbox/AP50": 2 * ap},
                train_final={"mean_pos_iou": 0.5 + seed / 10}, timing=dict(s_per_iter=0.3 + seed / 10),
                host=dict(cpu_count=2, cuda=None), started=f"2026-01-0{seed + 1}T00:00:00+00:00")


@pytest.fixture
def store(tmp_path):
    campaigns, results = tmp_path / "campaigns", tmp_path / "results"
    campaigns.mkdir()
    (campaigns / "camp.yaml").write_text(textwrap.dedent("""
        max_iter: 600
        seeds: [0, 1, 2]
        runs:
          - config: configs/fcos_r18_synth.py
          - config: configs/atss_r18_synth.py
          - {config: configs/fcos_r18_synth.py, name: fcos-giou, overrides: [model.loss.box_loss=giou]}
    """))
    for seed, ap in enumerate([1.0, 2.0, 3.0]):
        run_record.write_json(str(results / "camp" / "fcos_r18_synth" / f"seed{seed}.json"), _record("fcos_r18_synth", seed, ap))
    run_record.write_json(str(results / "camp" / "fcos-giou" / "seed0.json"), _record("fcos-giou", 0, 4.0))
    run_record.write_json(str(results / "camp" / "fcos-giou" / "seed1.json"), _record("fcos-giou", 1, 0, status="failed"))
    return str(campaigns), str(results)


TABLE = dict(campaign="camp", metrics=["AP", "AP50", dict(key="train/mean_pos_iou", header="IoU", decimals=2)], per_seed="AP",
             rows=[dict(run="fcos_r18_synth", label="FCOS"), dict(run="atss_r18_synth", label="ATSS"),
                   dict(run="fcos-giou", label="FCOS GIoU")])


def test_render_table_from_records(store):
    campaigns, results = store
    text = render_tables.render_table("t", TABLE, results, campaigns)
    lines = text.splitlines()
    assert lines[1] == "| detector | AP | AP50 | IoU | AP per seed |"
    # AP 1, 2, 3 -> 2.0 ± 1.0; AP50 2, 4, 6 -> 4.0 ± 2.0; IoU 0.5, 0.6, 0.7 -> 0.60 ± 0.10
    assert "| FCOS | 2.0 ± 1.0 | 4.0 ± 2.0 | 0.60 ± 0.10 | 1.00 / 2.00 / 3.00 |" in lines
    assert "| ATSS | not yet measured |  |  |  |" in lines
    # seed 1 failed: the mean is over the finished seed only, and the row says so
    assert "| FCOS GIoU (1 of 3 seeds) | 4.0 | 8.0 | 0.50 | 4.00 / failed |" in lines
    assert "Budget: 600 iterations × batch 8." in lines
    assert "Code: commit `aaaaaaaaaa`." in lines
    assert any(line.startswith("**1 of 3 rows not measured yet** (planned: 600 iterations, seeds 0, 1, 2;") for line in lines)


def test_paired_difference_to_a_baseline(store):
    campaigns, results = store
    for seed, ap in ((0, 2.0), (1, 4.0)):
        run_record.write_json(os.path.join(results, "camp", "atss_r18_synth", f"seed{seed}.json"), _record("atss_r18_synth", seed, ap))
    table = dict(TABLE, paired="AP", rows=[
        dict(run="fcos_r18_synth", label="FCOS"),
        dict(run="atss_r18_synth", label="ATSS", vs=dict(run="fcos_r18_synth", label="FCOS")),
        dict(run="fcos-giou", label="FCOS GIoU", vs=dict(run="fcos_r18_synth", label="FCOS")),
    ])
    lines = render_tables.render_table("t", table, results, campaigns).splitlines()
    assert lines[1] == "| detector | AP | AP50 | IoU | AP per seed | ΔAP vs baseline, same seeds |"
    # ATSS − FCOS on seeds 0, 1: 2 − 1 = +1, 4 − 2 = +2 → mean +1.5, sample std √((0.25 + 0.25)/1) = 0.71
    assert lines[4].endswith("| 2.00 / 4.00 | +1.5 ± 0.7 vs FCOS |")
    # FCOS GIoU: seed 0 finished (4 − 1 = +3), seed 1 failed → one paired seed
    assert lines[5].endswith("| +3.0 vs FCOS (1 seed) |")
    assert lines[3].endswith("| 1.00 / 2.00 / 3.00 |  |")  # no baseline, empty cell
    with pytest.raises(SystemExit, match="has no run named 'nope'"):
        render_tables.render_table("t", dict(table, rows=[dict(run="fcos_r18_synth", label="F", vs=dict(run="nope", label="N"))]),
                                   results, campaigns)


@pytest.mark.parametrize("diffs, text", [
    # mean 2, sd 0.1 (1.9, 2.0, 2.1): t = 2 / (0.1 / √3) = 34.6 > t(0.975, 2) = 4.303
    ([1.9, 2.0, 2.1], "reproduced (t = +34.6, n = 3)"),
    # mean −1, sd 0.1: t = −17.3 < −4.303
    ([-0.9, -1.0, -1.1], "opposite (t = -17.3, n = 3)"),
    # +1, −1, +3: mean 1, sd 2, t = 1 / (2 / √3) = 0.87: inside ±4.303
    ([1.0, -1.0, 3.0], "within noise (t = +0.9, n = 3)"),
    # two seeds, +1 and +2: mean 1.5, sd 0.707, t = 1.5 / 0.5 = 3.0 < t(0.975, 1) = 12.706
    ([1.0, 2.0], "within noise (t = +3.0, n = 2)"),
    ([0.5], "undecided (1 seed)"),
    ([], ""),
])
def test_verdict_is_a_paired_t_test(diffs, text):
    assert render_tables.verdict(diffs) == text


def test_verdict_column(store):
    campaigns, results = store
    for seed, ap in ((0, 2.0), (1, 3.1), (2, 3.9)):  # FCOS 1, 2, 3 → +1.0, +1.1, +0.9: t = 17.3
        run_record.write_json(os.path.join(results, "camp", "atss_r18_synth", f"seed{seed}.json"), _record("atss_r18_synth", seed, ap))
    table = dict(TABLE, paired="AP", verdict=True, rows=[
        dict(run="fcos_r18_synth", label="FCOS"),
        dict(run="atss_r18_synth", label="ATSS", vs=dict(run="fcos_r18_synth", label="FCOS")),
    ])
    lines = render_tables.render_table("t", table, results, campaigns).splitlines()
    assert lines[1].endswith("| ΔAP vs baseline, same seeds | claim (paired t-test, 95 %) |")
    assert lines[4].endswith("| +1.0 ± 0.1 vs FCOS | reproduced (t = +17.3, n = 3) |")
    assert lines[3].endswith("|  |  |")


def test_a_row_must_name_a_run_of_its_campaign(store):
    campaigns, results = store
    table = dict(TABLE, rows=[dict(run="nope", label="x")])
    with pytest.raises(SystemExit, match="camp.yaml has no run named 'nope'"):
        render_tables.render_table("t", table, results, campaigns)


def test_markers_and_definitions_must_match(store, tmp_path):
    campaigns, results = store
    doc = tmp_path / "README.md"
    doc.write_text("intro\n<!-- results:t -->\nold text\n<!-- /results:t -->\nend\n")
    [(old, new)] = render_tables.render_docs({"t": TABLE}, [str(doc)], results, campaigns).values()
    assert new.startswith("intro\n<!-- results:t -->\n<!-- rendered by") and new.endswith("<!-- /results:t -->\nend\n")
    assert "old text" not in new and "| FCOS | 2.0 ± 1.0 |" in new
    with pytest.raises(SystemExit, match="table 't' is not defined"):
        render_tables.render_docs({"u": TABLE}, [str(doc)], results, campaigns)
    with pytest.raises(SystemExit, match=r"tables \['u'\] of .* appear in no README"):
        render_tables.render_docs({"t": TABLE, "u": TABLE}, [str(doc)], results, campaigns)
