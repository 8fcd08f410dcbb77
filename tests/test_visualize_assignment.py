"""tools/visualize_assignment.py and dsla_d2.analysis: the drawn cells are the assigner's
positives, the statistics count a hand-made case right, the command writes its outputs."""
import dataclasses
import json
import os
import sys

import numpy as np
import pytest
import torch

from dsla_d2.analysis import AssignmentStatistics, BatchAssignment, assign_inputs, format_statistics
from dsla_d2.analysis.assignment_plot import draw_assignments, level_cells
from dsla_d2.assigners import Assignment, DSLAAssigner, FCOSAssigner, GTBatch
from dsla_d2.losses import DenseDetectionLoss
from dsla_d2.priors import PriorGenerator
from dsla_d2.quality import QualityCoupling

from tiny import gt_instances, make_inputs, tiny_fcos

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tools"))

# Two gts on a 64-px image; tiny_fcos: p3 (stride 8, 8×8 points at 4 + 8j) and p4 (stride
# 16, 4×4 points at 8 + 16j), FCOS ranges [0, 32] and [32, 1e8] (inclusive), inside = strict.
# gt 0 (4, 4, 28, 28): p3 points strictly inside have x, y ∈ {12, 20}; their largest side
# distance is 16 ∈ [0, 32] → p3 priors (row, col) (1,1) (1,2) (2,1) (2,2) = 9, 10, 17, 18.
# On p4 its inside points (8 and 24) have largest distance 20 ∉ [32, 1e8] → none.
# gt 1 (2, 34, 62, 62): on p3 every inside point has max(l, r) ≥ 34 > 32 → none; on p4 the
# points x ∈ {8, 24, 40, 56}, y ∈ {40, 56} are inside with largest distance ≥ 38 → p4 rows
# 2-3 = level indices 8..15 = global 64 + 8..15 = 72..79.
BOXES = [[4, 4, 28, 28], [2, 34, 62, 62]]
EXPECTED_POSITIVES = {9: 0, 10: 0, 17: 0, 18: 0, **{r: 1 for r in range(72, 80)}}


def tiny_batch(model):
    model.eval()
    return assign_inputs(model, make_inputs([BOXES], [[0, 2]]))


def test_drawn_cells_are_exactly_the_assigners_positives():
    model = tiny_fcos(assigner=FCOSAssigner(size_ranges=[[0, 32], [32, 1e8]]))
    batch = tiny_batch(model)
    view = batch.image(0)
    # the assigner called on its own, outside the model
    direct = FCOSAssigner(size_ranges=[[0, 32], [32, 1e8]])(batch.priors, [gt_instances(BOXES, [0, 2])], 3)
    drawn = {}
    for level in range(2):
        cells = level_cells(view, level)
        drawn.update(zip(cells["prior"].tolist(), cells["gt"].tolist()))
    assert drawn == EXPECTED_POSITIVES
    assert sorted(drawn) == direct.pos_mask[0].nonzero().squeeze(1).tolist()
    assert all(direct.matched_gt[0, r] == g for r, g in drawn.items())
    # hard focal targets: every drawn cell has target 1
    assert set(np.concatenate([level_cells(view, lv)["target"] for lv in range(2)]).tolist()) == {1.0}


def rendered_pixels(rows, points_per_level):
    fig, axes, _ = draw_assignments(rows, show_gts=False, scale=3.0)
    fig.canvas.draw()
    image = np.asarray(fig.canvas.buffer_rgba())[..., :3].astype(int)
    out = []
    for ax, points in zip(axes[0], points_per_level):
        xy = ax.transData.transform(points)
        out.append(image[(image.shape[0] - xy[:, 1]).astype(int), xy[:, 0].astype(int)])
    return out


def test_rendered_panels_colour_exactly_the_positive_priors():
    # Render the figure, and the same figure with every prior made background; the pixel
    # at a prior's point changes exactly where the assigner made it a positive.
    model = tiny_fcos(assigner=FCOSAssigner(size_ranges=[[0, 32], [32, 1e8]]))
    view = tiny_batch(model).image(0)
    empty = dataclasses.replace(view, matched_gt=np.full_like(view.matched_gt, -1))
    points = [view.points[view.levels == lv] for lv in range(2)]
    with_cells = rendered_pixels([("", view)], points)
    without = rendered_pixels([("", empty)], points)
    changed = np.concatenate([(a != b).any(axis=1) for a, b in zip(with_cells, without)])
    assert changed.nonzero()[0].tolist() == sorted(EXPECTED_POSITIVES)


def test_soft_targets_drawn_are_the_losses_targets():
    # DSLA's label_d (label_s × IoU of the prediction) — what the loss's classification
    # term receives is what the cells are coloured with.
    model = tiny_fcos(
        assigner=DSLAAssigner(size_ranges=[[0, 32], [32, 1e8]]), quality=QualityCoupling(cls_target="iou_product"),
        loss=DenseDetectionLoss(cls_loss="qfl", cls_normalizer="sum_scores", box_loss="iou"), offset=0.0,
    )
    batch = tiny_batch(model)
    view = batch.image(0)
    target = batch.targets["cls_target"][0]
    for level in range(2):
        cells = level_cells(view, level)
        assert np.allclose(cells["target"], target[torch.as_tensor(cells["prior"])].numpy())
    assert 0 < target.max() < 1  # soft


def test_assignment_is_the_training_steps():
    # assign_inputs sees the assignment forward_training computes (no BatchNorm in the
    # tiny model, so train and eval networks agree).
    model = tiny_fcos(quality=QualityCoupling(branch="centerness", cls_target="iou_product"),
                      loss=DenseDetectionLoss(cls_loss="qfl", box_loss="giou"))
    inputs = make_inputs([BOXES], [[0, 2]])
    seen = {}
    forward = model.loss.forward

    def capture(outputs, priors, assignment, **parts):
        seen.update(assignment=assignment, targets=model.loss.describe_targets(outputs, priors, assignment, **parts))
        return forward(outputs, priors, assignment, **parts)

    model.loss.forward = capture
    model.train()
    model(inputs)
    model.eval()
    batch = assign_inputs(model, inputs)
    assert torch.equal(batch.assignment.matched_gt, seen["assignment"].matched_gt)
    assert torch.equal(batch.targets["cls_target"], seen["targets"]["cls_target"])
    with pytest.raises(ValueError, match="no 'instances'"):
        assign_inputs(model, [{"image": inputs[0]["image"]}])


def hand_made_batch():
    """One image, two levels: stride 8 (4×4 points at 4, 12, 20, 28) and stride 16 (2×2
    points at 8, 24); a second image without gts.

    gts: A (0, 0, 24, 24) area 576, B (10, 10, 30, 30) area 400, C (20, 0, 22, 2), D (1, 29,
    3, 31) (area 4, no point inside either). Points strictly inside both A and B (the
    ambiguous locations): x, y ∈ {12, 20} on level 0 → priors 5 (12,12), 6 (20,12),
    9 (12,20), 10 (20,20); none on level 1 ((8, 8) is only in A, (24, 24) only in B).
    Matching by hand: 0 (4,4) → A; 5 → B (the smallest); 6 → A (the largest); 9 → background;
    10 → C (does not contain it); 15 (28,28) → B; level 1 prior 19 (24,24) → B.
    """
    priors = PriorGenerator([8, 16], offset=0.5)([torch.zeros(1, 1, 4, 4), torch.zeros(1, 1, 2, 2)])
    boxes = [[0, 0, 24, 24], [10, 10, 30, 30], [20, 0, 22, 2], [1, 29, 3, 31]]
    gt = GTBatch.from_instances([gt_instances(boxes, [0, 1, 2, 0], (32, 32)), gt_instances([], [], (32, 32))])
    matched = torch.full((2, 20), -1)
    matched[0, [0, 5, 6, 10, 15, 19]] = torch.tensor([0, 1, 0, 2, 1, 1])
    a = Assignment.from_matches(gt, matched, 3)
    # targets: 0.25 at prior 0, 0.55 at prior 5, 1 at the other positives
    target = a.pos_mask.float()
    target[0, 0], target[0, 5] = 0.25, 0.55
    targets = {"cls_target": target, "reg_mask": a.reg_mask, "reg_weight": a.reg_weights}
    return BatchAssignment(priors, a, targets, ["p3", "p4"], [np.zeros((32, 32, 3), np.uint8)] * 2)


def test_statistics_of_a_hand_made_case():
    stats = AssignmentStatistics(["p3", "p4"], ["a", "b", "c"])
    stats.update(hand_made_batch(), image_ids=[7, 8])
    s = stats.summary()
    assert s["num_images"] == 2 and s["num_gts"] == 4
    assert [d["cls_positives"] for d in s["per_level"]] == [5, 1]
    assert [d["cls_positives_per_image"] for d in s["per_level"]] == [2.5, 0.5]
    assert [d["ambiguous_locations"] for d in s["per_level"]] == [4, 0]
    # positives per gt: A 2 (0, 6), B 3 (5, 15, 19), C 1 (10), D 0 → one gt each with 0..3
    assert s["positives_per_gt"]["histogram"] == [1, 1, 1, 1]
    assert s["positives_per_gt"]["mean"] == 1.5
    # every gt is small (areas 576, 400, 4, 4 < 32²); D has no positive
    z = s["zero_positive_gts"]
    assert z["total"] == 1
    assert z["without_any_prior_point_inside"] == 1  # D holds no point (C holds none either, but has a positive)
    assert z["by_size"]["small"] == {"gts": 4, "zero_positive": 1, "mean_positives": 1.5}
    assert z["by_size"]["medium"]["gts"] == 0 and z["by_size"]["large"]["gts"] == 0
    assert z["examples"] == [{"image_id": 7, "gt_index": 3, "box_xyxy": [1.0, 29.0, 3.0, 31.0], "class": "a",
                              "sqrt_area": 2.0}]
    # the 4 ambiguous locations: 5 → smallest (B), 6 → largest (A), 9 → background,
    # 10 → C, which does not contain (20, 20)
    assert s["ambiguous_locations"] == {"total": 4, "smallest": 1, "largest": 1, "other_containing": 0,
                                        "not_containing": 1, "background": 1}
    assert s["positives_outside_their_gt"] == 1  # prior 10 in C
    # targets 0.25 → bin [0.2, 0.3), 0.55 → [0.5, 0.6), four 1s → the closed last bin
    assert s["cls_target"]["counts"] == [0, 0, 1, 0, 0, 1, 0, 0, 0, 4]
    assert s["cls_target"]["mean"] == pytest.approx((0.25 + 0.55 + 4) / 6)
    assert s["cls_target_static"]["counts"] == [0] * 9 + [6]
    text = format_statistics(s)
    assert "ambiguous locations (inside ≥ 2 gts): 4" in text


def test_disentangled_regression_positives_are_marked():
    # cls matching [0, −1, 1], reg matching [−1, 1, 1] on three stride-16 points (8, 24, 40):
    # prior 0 is a classification-only positive (a cell, no cross), prior 1 a regression-
    # only positive (a cross in gt 1's colour), prior 2 both with the same gt (a cell only).
    priors = PriorGenerator([16], offset=0.5)([torch.zeros(1, 1, 1, 3)])
    gt = GTBatch.from_instances([gt_instances([[0, 0, 10, 10], [0, 0, 20, 20]], [0, 1], (16, 48))])
    a = Assignment.from_matches(gt, torch.tensor([[0, -1, 1]]), 2, reg_matched=torch.tensor([[-1, 1, 1]]))
    a.cls_weights[0, 1] = 0.0  # and an ignored prior
    targets = {"cls_target": a.cls_scores, "reg_mask": a.reg_mask, "reg_weight": a.reg_weights}
    view = BatchAssignment(priors, a, targets, ["p4"], [np.zeros((16, 48, 3), np.uint8)]).image(0)
    cells = level_cells(view, 0)
    assert cells["prior"].tolist() == [0, 2] and cells["gt"].tolist() == [0, 1]
    assert cells["reg_points"].tolist() == [[24.0, 8.0]] and cells["reg_gt"].tolist() == [1]
    assert cells["ignored_verts"].tolist() == [[[16.0, 0.0], [32.0, 0.0], [32.0, 16.0], [16.0, 16.0]]]
    fig, axes, drawn = draw_assignments([("a", view), ("b", view)], class_names=["x", "y"])
    assert axes.shape == (2, 1) and len(drawn[1][0]["prior"]) == 2
    with pytest.raises(ValueError, match="p9"):
        draw_assignments([("a", view)], levels=["p9"])


def test_command_writes_pictures_and_statistics(tmp_path, capsys):
    import visualize_assignment

    args = visualize_assignment.get_parser().parse_args([
        "--config-file", os.path.join(ROOT, "configs", "fcos_r18_synth.py"), "--dataset", "dsla_synth_tiny",
        "--compare", os.path.join(ROOT, "projects", "DSLA", "configs", "fcos_dsla_r18_synth.py"),
        "--num-images", "1", "--stats-images", "3", "--batch-size", "2", "--levels", "p3", "p4",
        "--device", "cpu", "--output-dir", str(tmp_path), "model.head.num_convs=1",
    ])
    report = visualize_assignment.main(args)
    out = capsys.readouterr().out
    assert "UNTRAINED" in out
    assert len(report["pictures"]) == 1 and os.path.isfile(report["pictures"][0])
    with open(tmp_path / "assignment_stats.json") as f:
        saved = json.load(f)
    assert set(saved["configs"]) == {"configs/fcos_r18_synth", "projects/DSLA/configs/fcos_dsla_r18_synth"}
    for entry in saved["configs"].values():
        assert entry["untrained"] and entry["statistics"]["num_images"] == 3
    with pytest.raises(SystemExit, match="not in the dataset"):
        visualize_assignment.choose([{"image_id": 1}], ["5"], 1)
    args.weights = str(tmp_path / "missing.pth")
    with pytest.raises(SystemExit, match="checkpoint not found"):
        visualize_assignment.main(args)
