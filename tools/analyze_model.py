#!/usr/bin/env python
"""Parameters and FLOPs of a detector from a lazy config, per part.

    python tools/analyze_model.py --config-file configs/atss_R_50_FPN_1x.py
    python tools/analyze_model.py --config-file configs/fcos_r18_synth.py --size 192 288 --out-json fcos.json
    python tools/analyze_model.py --config-file configs/atss_r18_synth.py --config-file configs/fcos_r18_synth.py \
        --out-json synth.json                                                  # several configs
    python tools/analyze_model.py --config-file CFG model.head.num_convs=2     # key=value overrides as train_net.py

FLOPs are counted by fvcore's ``FlopCountAnalysis`` (what ``detectron2.utils.analysis``
wraps; that module itself needs caffe2 in Detectron2 v0.6) on one forward pass of the
backbone + FPN + head on a zero image of ``--size`` H W, padded as the model pads
(``backbone.size_divisibility``). fvcore's convention: **one fused multiply-add = one
FLOP** (so "GFLOPs" are GMACs), conv/linear/norm/upsampling ops counted, bias and
elementwise ops not. Not counted, on purpose: input normalisation, box decoding, score
thresholding, top-k and NMS (data-dependent post-processing). Ops fvcore has no handle
for are listed as "not counted" with their number of calls, never silently dropped;
``torchvision::deform_conv2d`` (deformable tower convs) gets a handle here that counts
its convolution (N·Cout·Ho·Wo·Cin/groups·kh·kw), not its bilinear sampling.

Default ``--size``: the largest test input of the config's ``ResizeShortestEdge``
(short side × max size, e.g. 800 × 1333 for the COCO configs).
"""
import argparse
import json
import os
import sys
from collections import Counter
from typing import Dict, List, Tuple

import numpy as np
import torch
from torch import nn

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import dsla_d2  # noqa: E402,F401  (compat, registrations)
from detectron2.config import LazyConfig, instantiate  # noqa: E402
from fvcore.nn import FlopCountAnalysis, parameter_count  # noqa: E402
from fvcore.nn.jit_handles import get_shape  # noqa: E402
from omegaconf import OmegaConf  # noqa: E402

from dsla_d2.utils.trust import load_config  # noqa: E402


def deform_conv2d_flop_jit(inputs: List, outputs: List) -> int:
    """fvcore handle for ``torchvision::deform_conv2d(input, weight, offset, mask, bias, ...)``:
    the multiply-adds of its convolution, N·Cout·Ho·Wo · (Cin/groups)·kh·kw, counted as
    fvcore counts a regular conv. The bilinear sampling of the offsets is not counted."""
    weight_shape = get_shape(inputs[1])  # (Cout, Cin/groups, kh, kw)
    out_shape = get_shape(outputs[0])  # (N, Cout, Ho, Wo)
    return int(np.prod(out_shape) * np.prod(weight_shape[1:]))


def flop_analysis(module: nn.Module, inputs: Tuple) -> FlopCountAnalysis:
    """fvcore's FlopCountAnalysis with our handles; unsupported ops are collected (see
    ``.unsupported_ops()``) instead of warned about."""
    fa = FlopCountAnalysis(module, inputs).set_op_handle("torchvision::deform_conv2d", deform_conv2d_flop_jit)
    return fa.unsupported_ops_warnings(False).uncalled_modules_warnings(False).tracer_warnings("none")


class BackboneAndHead(nn.Module):
    """The dense part of an ``AssignedDenseDetector``: (1, 3, H, W) -> every head output map,
    as a flat tuple (so jit tracing sees tensors only). Submodule names stay the detector's
    (``backbone.*``, ``head.*``)."""

    def __init__(self, detector: nn.Module):
        super().__init__()
        self.backbone = detector.backbone
        self.head = detector.head
        self.in_features = list(detector.head_in_features)

    def forward(self, x):
        features = self.backbone(x)
        out = self.head([features[f] for f in self.in_features])
        return tuple(t for key in sorted(out) for t in out[key])


def padded_size(height: int, width: int, divisibility: int) -> Tuple[int, int]:
    d = max(int(divisibility), 1)
    return -(-height // d) * d, -(-width // d) * d


def part_names(detector: nn.Module) -> List[Tuple[str, str]]:
    """(part, what) rows: backbone bottom-up and FPN (when the backbone is an FPN), and
    every direct child of the head (towers, output convs, scales)."""
    rows = []
    if hasattr(detector.backbone, "bottom_up"):
        rows += [("backbone.bottom_up", "backbone bottom-up"), ("backbone.fpn", "FPN: laterals, outputs, top block")]
    else:
        rows.append(("backbone", "backbone"))
    for name, _ in detector.head.named_children():
        what = "head tower" if "tower" in name else "per-level box scales" if name == "scales" else "head output"
        rows.append((f"head.{name}", what))
    return rows


def analyze(detector: nn.Module, height: int, width: int) -> Dict:
    """Parameters and FLOPs of ``detector`` (an AssignedDenseDetector) on an H×W input."""
    h, w = padded_size(height, width, getattr(detector.backbone, "size_divisibility", 1))
    dense = BackboneAndHead(detector).eval()
    with torch.no_grad():
        fa = flop_analysis(dense, (torch.zeros(1, 3, h, w),))
        flops = fa.by_module()
    params = parameter_count(dense)
    total = lambda table, name: int(table.get(name, 0))  # noqa: E731
    rows = []
    for part, what in part_names(detector):
        if part == "backbone.fpn":
            f = total(flops, "backbone") - total(flops, "backbone.bottom_up")
            p = total(params, "backbone") - total(params, "backbone.bottom_up")
        else:
            f, p = total(flops, part), total(params, part)
        rows.append({"part": part, "what": what, "params": p, "flops": f})
    head_own = total(flops, "head") - sum(r["flops"] for r in rows if r["part"].startswith("head."))
    if head_own:
        rows.append({"part": "head (own ops)", "what": "ops in head.forward itself", "params": 0, "flops": head_own})
    return {
        "input_size": [height, width],
        "padded_size": [h, w],
        "params": {"backbone": total(params, "backbone"), "head": total(params, "head"), "total": total(params, ""),
                   "detector": sum(p.numel() for p in detector.parameters())},
        "flops": {"backbone": total(flops, "backbone"), "head": total(flops, "head"), "total": total(flops, "")},
        "parts": rows,
        "not_counted": dict(sorted(Counter(fa.unsupported_ops()).items())),
    }


def default_size(cfg) -> Tuple[int, int]:
    """(short side, max size) of the test mapper's ResizeShortestEdge."""
    for aug in cfg.dataloader.test.mapper.get("augmentations", []):
        if "short_edge_length" in aug and "max_size" in aug:
            short = aug.short_edge_length
            short = max(short) if isinstance(short, (list, tuple)) or OmegaConf.is_list(short) else short
            return int(short), int(aug.max_size)
    raise SystemExit("the config's test mapper has no ResizeShortestEdge: give --size H W")


def format_table(result: Dict, title: str) -> str:
    g = lambda f: f"{f / 1e9:10.3f}"  # noqa: E731
    m = lambda p: f"{p / 1e6:9.3f}"  # noqa: E731
    lines = [title, f"input {result['input_size'][0]}×{result['input_size'][1]} "
             f"(padded to {result['padded_size'][0]}×{result['padded_size'][1]}); GFLOPs = 1e9 multiply-adds (fvcore)",
             f"{'part':<22}{'what':<36}{'params (M)':>10}{'GFLOPs':>11}"]
    for r in result["parts"]:
        lines.append(f"{r['part']:<22}{r['what']:<36}{m(r['params'])} {g(r['flops'])}")
    for key in ("backbone", "head", "total"):
        lines.append(f"{key:<58}{m(result['params'][key])} {g(result['flops'][key])}")
    if result["params"]["detector"] != result["params"]["total"]:
        outside = result["params"]["detector"] - result["params"]["total"]
        lines.append(f"(detector parameters outside backbone and head: {outside})")
    nc = result["not_counted"]
    lines.append("not counted: " + (", ".join(f"{op} ×{n}" for op, n in nc.items()) if nc else "nothing"))
    return "\n".join(lines)


def main(argv=None):
    from train_net import check_overrides

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config-file", required=True, action="append", help="a lazy config (repeat the flag for several)")
    p.add_argument("--size", nargs=2, type=int, metavar=("H", "W"),
                   help="input size (default: each config's test size)")
    p.add_argument("--out-json", help='write {"command": this command line, "results": [one per config]} as json')
    p.add_argument("opts", nargs="*", help="key=value config overrides (applied to every config)")
    args = p.parse_args(argv)
    if args.size and min(args.size) < 1:
        raise SystemExit(f"--size must be positive, got {args.size}")
    torch.set_num_threads(1)
    results = []
    for config_file in args.config_file:
        cfg = load_config(config_file)  # plain data for a .yaml (a run directory's config)
        cfg = LazyConfig.apply_overrides(cfg, check_overrides(cfg, args.opts))
        height, width = args.size or default_size(cfg)
        detector = instantiate(cfg.model).eval()
        result = {"config": os.path.relpath(os.path.abspath(config_file), ROOT), "meta_arch": type(detector).__name__,
                  **analyze(detector, height, width)}
        print(format_table(result, f"{result['config']} ({result['meta_arch']})") + "\n")
        results.append(result)
    if args.out_json:
        command = " ".join(["python tools/analyze_model.py", *(argv if argv is not None else sys.argv[1:])])
        with open(args.out_json, "w") as f:
            json.dump({"command": command, "results": results}, f, indent=1)
    return results


if __name__ == "__main__":
    main(sys.argv[1:])
