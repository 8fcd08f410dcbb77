#!/usr/bin/env python
"""Export a trained detector to TorchScript or ONNX, checked against eager PyTorch.

    python tools/export_model.py --output-dir output/atss_synth --format torchscript --output export/atss_ts
    python tools/export_model.py --config-file configs/fcos_r18_synth.py --weights model_final.pth \
        --format onnx --output export/fcos_onnx --sample-image photo.jpg
    python tools/export_model.py --output-dir RUN --format onnx --output DIR model.test_score_thresh=0.3

The model is loaded as serving loads it (``--output-dir``: the run's ``config.yaml``, read as
plain data, and its final checkpoint; ``--config-file`` + ``--weights``): the same trust
checks, and the weights must be the configured model's. ``key=value`` overrides of the
config go last (checked as training checks them).

Writes DIR/model.ts (traced TorchScript: ``torch.jit.load``) or DIR/model.onnx (opset 11,
19 for models with deformable convolutions; dynamic H and W), and DIR/export.json: what the
model takes and returns, class names, pixel mean/std, input format and test resize, the
check's numbers and the source files with their sha256.

The exported model takes one float32 (3, H, W) image, pixel values 0..255 in the model's
input format (BGR here), resized as the test loader resizes (export.json "resize"), not
normalised; it returns boxes (N, 4) XYXY in the input's pixels, scores (N,) and classes (N,)
int64. See docs/export.md.

Before reporting success the exported file is run (``torch.jit.load`` / onnxruntime) on the
sample image (``--sample-image``, or a generated one of the embedded dataset's kind) and on a
crop of it of another height and width, and compared with eager PyTorch. If a detection
count or class differs, a box by more than 1e-3 px or a score by more than 1e-4, the export
is refused: one line, exit status 2, no model file left. A model ONNX cannot hold here (e.g.
deformable convolutions with an onnxruntime that does not run DeformConv) is refused before
anything is written. ``--report FILE`` also records the check's numbers in FILE (json, one
entry per config and format).
"""
import argparse
import json
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import dsla_d2  # noqa: E402,F401  (applies dsla_d2.compat, registers our parts)
import train_net  # noqa: E402  (check_overrides: the same override checks as training)
from dsla_d2 import export as ex  # noqa: E402
from dsla_d2.engine.atomic import atomic_open  # noqa: E402
from dsla_d2.errors import UsageError, debug_requested, run_cli  # noqa: E402


def get_parser():
    lines = __doc__.splitlines()
    parser = argparse.ArgumentParser(description=lines[0], epilog="\n".join(lines[1:]),
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    model = parser.add_mutually_exclusive_group(required=True)
    model.add_argument("--output-dir", metavar="RUN", help="a train_net.py output directory (config.yaml + final checkpoint)")
    model.add_argument("--config-file", help="a lazy config (with --weights)")
    parser.add_argument("--weights", help="checkpoint for --config-file")
    parser.add_argument("--format", required=True, choices=ex.FORMATS)
    parser.add_argument("--output", required=True, metavar="DIR", help="write DIR/model.ts or DIR/model.onnx and DIR/export.json")
    parser.add_argument("--sample-image", metavar="IMG", help="the image to trace and check on (default: a generated one)")
    parser.add_argument("--opset", type=int, default=None,
                        help=f"ONNX opset (default {ex.ONNX_DEFAULT_OPSET}; {ex.ONNX_DEFORM_CONV_OPSET} for deformable convolutions)")
    parser.add_argument("--allow-target", action="append", default=[], metavar="MODULE",
                        help="also trust the nn.Modules of this module in the config's model (as serving's allowed_targets)")
    parser.add_argument("--report", metavar="FILE.json", help="record the check's numbers in this json file (merged by config and format)")
    parser.add_argument("--debug", action="store_true", help="print the traceback of a refusal too (also: DSLA_D2_DEBUG=1)")
    parser.add_argument("opts", nargs="*", default=[], help="key=value overrides of the config")
    return parser


def _label(source):
    """The config's path relative to the repository (a run: its directory)."""
    path = source.get("run_dir") or source["config"]
    path = os.path.abspath(path)
    return os.path.relpath(path, ROOT) if path.startswith(ROOT + os.sep) else path


def record(report, label, info):
    """Merge the check of one export into the report file ``report`` under
    ``exports[label][format]``."""
    data = {"exports": {}}
    if os.path.isfile(report):
        with open(report, encoding="utf-8") as f:
            data = json.load(f)
    check = info["check"]
    data.setdefault("exports", {}).setdefault(label, {})[info["format"]] = {
        "opset": info.get("opset"),
        "deformable_layers": info["deformable_layers"],
        "ok": check["ok"],
        "max_box_diff": check["max_box_diff"],
        "max_score_diff": check["max_score_diff"],
        "inputs": check["inputs"],
        "sample": check["sample"],
        "weights": (info.get("source") or {}).get("weights"),
        "versions": info["versions"],
    }
    os.makedirs(os.path.dirname(os.path.abspath(report)), exist_ok=True)
    with atomic_open(report, "w") as f:
        json.dump(data, f, indent=1)
        f.write("\n")


def summary(info):
    check = info["check"]
    lines = []
    for r in check["inputs"]:
        size = "x".join(map(str, r["size"]))
        diffs = ("no detections to compare" if r["max_box_diff"] is None else
                 f"max box diff {r['max_box_diff']:.3g} px, max score diff {r['max_score_diff']:.3g}")
        lines.append(f"  {size}: {r['detections_exported']} detections (eager {r['detections_eager']}), {diffs}")
    return "\n".join(lines)


def _interp_name(interp):
    from PIL import Image

    try:
        return Image.Resampling(interp).name.lower()
    except ValueError:
        return str(interp)


def main(args):
    if args.config_file and not args.weights:
        raise UsageError("--config-file needs --weights (or give --output-dir RUN)")
    if args.output_dir and args.weights:
        raise UsageError("--weights goes with --config-file; --output-dir uses the run's own checkpoint")
    predictor, source = ex.load_predictor(args.config_file, args.weights, args.output_dir, opts=args.opts,
                                          allowed_targets=args.allow_target, check_overrides=train_net.check_overrides)
    if args.output_dir:
        source["run_dir"] = os.path.abspath(args.output_dir)
    image = ex.prepare_input(predictor, ex.sample_image(args.sample_image))
    aug = predictor.aug
    resize = {"short_edge_length": [int(v) for v in aug.short_edge_length], "max_size": int(aug.max_size),
              "sample_style": aug.sample_style, "interp": _interp_name(aug.interp)}
    classes = predictor.metadata.get("thing_classes", None) if hasattr(predictor, "metadata") else None
    sample = os.path.abspath(args.sample_image) if args.sample_image else "generated (dsla_d2.export.sample_image)"
    try:
        info = ex.export(predictor.model, args.format, args.output, image, opset=args.opset, class_names=classes or [],
                         resize=resize, source=source, sample=sample)
    except ex.ExportParityError:
        if args.report and os.path.isfile(os.path.join(args.output, "export.json")):
            with open(os.path.join(args.output, "export.json"), encoding="utf-8") as f:
                record(args.report, _label(source), json.load(f))
        raise
    path = os.path.join(args.output, info["file"])
    print(f"exported {args.format} to {path} (export.json beside it); checked against eager PyTorch:")
    print(summary(info))
    if all(r["detections_eager"] == 0 for r in info["check"]["inputs"]):
        print("warning: the model found nothing on the sample, so no detections were compared: "
              "give --sample-image with objects it detects", file=sys.stderr)
    if args.report:
        record(args.report, _label(source), info)
        print(f"recorded in {args.report}")
    return info


if __name__ == "__main__":
    args = get_parser().parse_args()
    run_cli(lambda: main(args), "export_model.py", debug=args.debug or debug_requested())
