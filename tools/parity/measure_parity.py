#!/usr/bin/env python
"""Measure how close the converted models come to mmdetection on the parity fixtures and
write it to a result file (the model zoo page quotes it; tests/test_mmdet_parity.py asserts
the tolerances).

    python tools/parity/measure_parity.py [--out benchmarks/results/mmdet_parity.json]

Per model: the largest difference of the FPN features and of the head outputs, each
relative to the largest magnitude of mmdetection's tensor; the detections (count, classes
equal, largest box and score difference after sorting both by score); the largest relative
difference of the losses (DDOD: against mmdetection with separate level counters).
"""
import argparse
import json
import os
import subprocess
import sys

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "tests"))

import test_mmdet_parity as parity  # noqa: E402  (the fixtures, the conversion, the input)
from detectron2.structures import Boxes, Instances  # noqa: E402


def relative(ours, theirs):
    return max(float((a - b).abs().max()) / max(float(b.abs().max()), 1e-12) for a, b in zip(ours, theirs))


def measure(name):
    class Request:
        param = name

    _, fx, model = parity.case.__wrapped__(Request)
    with torch.no_grad():
        features = model.backbone(fx["inputs"])
        features = [features[f] for f in model.head_in_features]
        outputs = model.head(features)
        out = model(parity.batched_input(fx, model))[0]["instances"]
    head = max(relative(outputs[parity.HEAD_OUTPUTS[k]], levels) for k, levels in fx["head"].items())
    ref = fx["detections"]
    ours = sorted(zip(out.scores.tolist(), out.pred_classes.tolist(), out.pred_boxes.tensor.tolist()), reverse=True)
    theirs = sorted(zip(ref["scores"].tolist(), ref["labels"].tolist(), ref["boxes"].tolist()), reverse=True)
    gt = Instances(tuple(fx["img_shape"]))
    gt.gt_boxes, gt.gt_classes = Boxes(fx["gt"]["boxes"]), fx["gt"]["labels"]
    batch = parity.batched_input(fx, model)
    batch[0]["instances"] = gt
    model.train()
    with torch.no_grad():
        losses = model(batch)
    reference = fx["losses_separate_counters"] if name == "ddod" else fx["losses"]
    return {
        "config": parity.CASES[name],
        "mmdet_config": fx["source"]["config"],
        "features_rel": relative(features, fx["features"]),
        "head_rel": head,
        "detections": [len(ours), len(theirs)],
        "classes_equal": [c for _, c, _ in ours] == [c for _, c, _ in theirs],
        "box_px": max(max(abs(x - y) for x, y in zip(a[2], b[2])) for a, b in zip(ours, theirs)),
        "score_abs": max(abs(a[0] - b[0]) for a, b in zip(ours, theirs)),
        "losses_rel": max(abs(float(losses[parity.LOSS_NAMES[k]]) - v) / abs(v) for k, v in reference.items()),
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=os.path.join(ROOT, "benchmarks", "results", "mmdet_parity.json"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    result = {"commit": commit, "torch": torch.__version__, "models": {n: measure(n) for n in sorted(parity.CASES)}}
    with open(args.out, "w") as f:
        json.dump(result, f, indent=1)
    for name, m in result["models"].items():
        print(f"{name}: features {m['features_rel']:.1e}, head {m['head_rel']:.1e}, detections {m['detections']}, "
              f"boxes {m['box_px']:.1e} px, scores {m['score_abs']:.1e}, losses {m['losses_rel']:.1e}")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
