#!/usr/bin/env python
"""Export every embedded detector config to TorchScript and ONNX with tools/export_model.py
and record how close each export is to eager PyTorch (docs/export.md's table).

    python benchmarks/export_parity.py                      # -> benchmarks/results/export_parity.json
    python benchmarks/export_parity.py --render benchmarks/results/export_parity.json

Weights: each model is built from its config with seed 0 and untrained, then every weight
tensor of its head gets N(0, 0.05) noise (seed 1) before it is saved as a checkpoint
(:class:`dsla_d2.engine.checkpoint.RunCheckpointer`): an untrained head scores everything
alike, and NMS between near-equal scores is decided by the last bits (no format can match
that), and its deformable convs' offset layers start at zero (sampling on the grid, which
would not test the sampling). Each export goes through the command itself
(``tools/export_model.py --config-file C --weights W --format F --report FILE``) on its
generated sample image: the check compares the sample and a crop of another size.
"""
import argparse
import glob
import os
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(ROOT, "tools"))

from result_files import git_commit, today  # noqa: E402

HEAD_NOISE = 0.05
CONFIGS = sorted(glob.glob(os.path.join(ROOT, "configs", "*_r18_synth.py"))) + sorted(
    glob.glob(os.path.join(ROOT, "projects", "*", "configs", "*_r18_synth.py"))
)


def noisy_checkpoint(config, directory):
    """An untrained model of ``config`` with N(0, HEAD_NOISE) noise on its head's weights,
    saved as ``directory``/model_final.pth."""
    import torch
    from detectron2.config import instantiate

    from dsla_d2.data.synthetic import SYNTH_CLASSES
    from dsla_d2.engine.checkpoint import RunCheckpointer, model_description
    from dsla_d2.utils.trust import load_config

    cfg = load_config(config)
    torch.manual_seed(0)
    model = instantiate(cfg.model)
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in model.head.parameters():
            if p.dim() > 1:
                p.add_(torch.randn(p.shape, generator=g) * HEAD_NOISE)
    os.makedirs(directory, exist_ok=True)
    RunCheckpointer(model, directory, description=model_description(cfg.model, SYNTH_CLASSES)).save("model_final")
    return os.path.join(directory, "model_final.pth")


def measure(output, configs, formats):
    import json

    import torch

    import export_model

    if os.path.exists(output):
        os.remove(output)
    torch.set_num_threads(max(1, min(4, os.cpu_count() or 1)))
    failures = []
    with tempfile.TemporaryDirectory() as tmp:
        for config in configs:
            rel = os.path.relpath(config, ROOT)
            weights = noisy_checkpoint(config, os.path.join(tmp, rel.replace(os.sep, "_")))
            for fmt in formats:
                t = time.time()
                args = export_model.get_parser().parse_args(
                    ["--config-file", config, "--weights", weights, "--format", fmt,
                     "--output", os.path.join(tmp, "export", rel, fmt), "--report", output]
                )
                try:
                    export_model.main(args)
                except Exception as e:  # noqa: BLE001 (recorded, reported at the end)
                    failures.append(f"{rel} {fmt}: {e}")
                    print(f"FAILED {rel} {fmt}: {e}", file=sys.stderr)
                print(f"{rel} {fmt}: {time.time() - t:.1f}s", flush=True)
    with open(output, encoding="utf-8") as f:
        data = json.load(f)
    for formats in data.get("exports", {}).values():
        for entry in formats.values():
            entry["weights"] = "noisy untrained checkpoint (temporary file, see 'weights' below)"
    data.update({
        "date": today(),
        **git_commit(),
        "weights": f"untrained, seed 0, head weights + N(0, {HEAD_NOISE}) noise (seed 1); see {os.path.relpath(__file__, ROOT)}",
        "failures": failures,
        "device": "cpu",
        "torch_threads": torch.get_num_threads(),
    })
    with open(output, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=1)
        f.write("\n")
    return failures


def render(data):
    rows = ["| config | format | opset | deformable layers | detections (sample, crop) | max box diff (px) | max score diff |",
            "|---|---|---|---|---|---|---|"]
    for label, formats in data["exports"].items():
        for fmt, r in formats.items():
            dets = ", ".join(f"{i['detections_exported']}/{i['detections_eager']}" for i in r["inputs"])
            box = "—" if r["max_box_diff"] is None else f"{r['max_box_diff']:.2g}"
            score = "—" if r["max_score_diff"] is None else f"{r['max_score_diff']:.2g}"
            ok = "" if r["ok"] else " **(refused)**"
            rows.append(f"| {label} | {fmt}{ok} | {r['opset'] or '—'} | {', '.join(r['deformable_layers']) or '—'} "
                        f"| {dets} | {box} | {score} |")
    return "\n".join(rows)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", default=os.path.join(HERE, "results", "export_parity.json"))
    parser.add_argument("--configs", nargs="*", default=None, help="configs to export (default: every *_r18_synth.py)")
    parser.add_argument("--formats", nargs="*", default=["torchscript", "onnx"])
    parser.add_argument("--render", metavar="FILE.json", help="print the markdown table of a result file instead")
    args = parser.parse_args()
    if args.render:
        import json

        with open(args.render, encoding="utf-8") as f:
            print(render(json.load(f)))
        return
    failures = measure(args.output, args.configs or CONFIGS, args.formats)
    print(f"wrote {args.output}")
    if failures:
        sys.exit(1)


if __name__ == "__main__":
    main()
