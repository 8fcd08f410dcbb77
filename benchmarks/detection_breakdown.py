#!/usr/bin/env python
"""Where a trained detector loses AP: localisation or classification? (no model is run)

    DSLA_D2_SYNTH_ROOT=/work/data/dsla_synth python benchmarks/detection_breakdown.py \\
        --runs output/results/fcos_diagnosis/fcos_r18_synth/seed0 output/results/fcos_diagnosis/atss_r18_synth/seed0 \\
        --out benchmarks/results/fcos_diagnosis/detection_breakdown

Re-scores the detections that ``COCOEvaluator`` saved at the end of each run
(``<run>/inference/coco_instances_results.json``) against the ground truth with
``pycocotools.COCOeval``: AP at IoU thresholds 0.1, 0.3, 0.5 and 0.75 with classes
(as COCO), and class-agnostic (``useCats = 0``). A detector whose AP rises a lot from IoU
0.5 to 0.1 finds the objects but places its boxes badly; one whose class-agnostic AP is
far above its AP confuses the classes. Output: ``OUT.json`` and ``OUT.md``.
"""
import argparse
import contextlib
import io
import json
import os

import numpy as np
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

IOUS = [0.1, 0.3, 0.5, 0.75]


def synthetic_json(split):
    root = os.environ.get("DSLA_D2_SYNTH_ROOT") or os.path.join(os.environ.get("DETECTRON2_DATASETS", "datasets"), "dsla_synth")
    path = os.path.join(root, f"{split}.json")
    if not os.path.isfile(path):
        raise SystemExit(f"ground truth {path} not found (set DSLA_D2_SYNTH_ROOT)")
    return path


def ap_at(gt, dets, iou, use_cats):
    """COCO AP (area all, 100 detections) at one IoU threshold, in percent."""
    with contextlib.redirect_stdout(io.StringIO()):
        ev = COCOeval(gt, dets, "bbox")
        ev.params.iouThrs = np.array([iou])
        ev.params.useCats = int(use_cats)
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return round(100 * float(ev.stats[0]), 2)


def breakdown(gt, run_dir):
    path = os.path.join(run_dir, "inference", "coco_instances_results.json")
    if not os.path.isfile(path):
        raise SystemExit(f"{path} not found: did the run finish its evaluation?")
    with open(path) as f:
        results = json.load(f)
    if not results:
        return {"detections": 0}
    with contextlib.redirect_stdout(io.StringIO()):
        dets = gt.loadRes(path)
    out = {"detections": len(results)}
    for iou in IOUS:
        out[f"AP@{iou}"] = ap_at(gt, dets, iou, True)
        out[f"agnostic AP@{iou}"] = ap_at(gt, dets, iou, False)
    return out


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", nargs="+", required=True, help="train.output_dir of finished runs")
    p.add_argument("--split", default="val")
    p.add_argument("--out", required=True, help="path without extension: writes OUT.json and OUT.md")
    args = p.parse_args()
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(synthetic_json(args.split))
    rows = {os.path.normpath(r): breakdown(gt, r) for r in args.runs}
    os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
    with open(args.out + ".json", "w") as f:
        json.dump({"split": args.split, "runs": rows}, f, indent=1)
    cols = [f"AP@{i}" for i in IOUS] + [f"agnostic AP@{i}" for i in IOUS]
    lines = ["# Detection breakdown", "", f"Written by `benchmarks/detection_breakdown.py` from each run's saved "
             f"`dsla_synth_{args.split}` detections (COCO AP, all areas, 100 detections per image).", "",
             "| run | " + " | ".join(cols) + " |", "|---|" + "---|" * len(cols)]
    for run, r in rows.items():
        lines.append(f"| `{run}` | " + " | ".join(f"{r.get(c, 0):.1f}" for c in cols) + " |")
    with open(args.out + ".md", "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
