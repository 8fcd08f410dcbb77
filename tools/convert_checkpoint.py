#!/usr/bin/env python
"""Convert a published checkpoint for dsla_d2: an mmdetection detector into a run directory,
or torchvision's ImageNet ResNet into a backbone checkpoint.

    # an mmdetection checkpoint (2.x or 3.x) -> a run directory
    python tools/convert_checkpoint.py mmdet --config configs/mmdet/atss_r50_fpn_1x_coco.py \
        --checkpoint atss_r50_fpn_1x_coco_20200209-985f7bd0.pth --output output/atss_mmdet
    python demo.py --output-dir output/atss_mmdet --input img.jpg --out preds.png
    python train_net.py --config-file output/atss_mmdet/config.yaml --eval-only \
        train.init_checkpoint=output/atss_mmdet/model_final.pth

    # a model zoo entry by name (docs/MODEL_ZOO.md); --download fetches and verifies it
    python tools/convert_checkpoint.py mmdet --zoo atss_r50_fpn_1x_coco --download --output output/atss_mmdet

    # torchvision's ImageNet ResNet-50 -> train.init_checkpoint of a PyTorch-style config
    python tools/convert_checkpoint.py torchvision --config configs/mmdet/atss_r50_fpn_1x_coco.py \
        --checkpoint resnet50-0676ba61.pth --output R-50-torchvision.pth

The config (``--config``, or the zoo entry's) says how the model computes (ResNet style,
P6/P7, anchors, head norm and bias, box decoding and clipping, pixel format, mean and std,
test-time thresholds and top-k rule); the converter maps the weights onto the model it
builds and refuses, listing them, any tensor of the checkpoint without a place in the
model, any tensor of the model missing from the checkpoint, and any shape mismatch: a
conversion is complete or nothing is written. A refusal prints one line and exits with
status 2 (``--debug`` for the traceback).
"""
import argparse
import os
import sys

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import dsla_d2  # noqa: E402,F401  (applies dsla_d2.compat, registers our parts)
from detectron2.config import instantiate  # noqa: E402
from detectron2.data import MetadataCatalog  # noqa: E402

from dsla_d2.convert import convert_state_dict, mmdet_rules, torchvision_resnet_rules  # noqa: E402
from dsla_d2.convert.mmdet import check_head_matches, head_type_of  # noqa: E402
from dsla_d2.convert.run_dir import write_run_dir  # noqa: E402
from dsla_d2.convert.zoo import MMDET_ZOO, fetch  # noqa: E402
from dsla_d2.engine.atomic import atomic_open  # noqa: E402
from dsla_d2.engine.checkpoint import write_checksum  # noqa: E402
from dsla_d2.errors import UsageError, debug_requested, run_cli  # noqa: E402
from dsla_d2.utils.trust import load_config  # noqa: E402

#: Buffers of our models that published checkpoints do not have: they start from the
#: model's initial value (DDOD's cumulative level counters: zero, as at the start of a run).
KEEP_INITIAL = (r"loss\.level_weighting\.(cls|reg)_counts",)


def read_checkpoint(path: str) -> dict:
    """The tensors of a torch checkpoint (``state_dict`` or ``model`` inside, or the dict
    itself), read with ``weights_only=True``."""
    if not os.path.isfile(path):
        raise UsageError(f"--checkpoint {path}: no such file")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # not a torch file, or one holding objects beyond plain data
        raise UsageError(f"--checkpoint {path} is not a readable torch checkpoint ({type(e).__name__})") from None
    for key in ("state_dict", "model"):
        if isinstance(data, dict) and isinstance(data.get(key), dict):
            data = data[key]
            break
    return {k: v for k, v in data.items() if isinstance(v, torch.Tensor)}


def convert_mmdet(args) -> str:
    config, checkpoint = args.config, args.checkpoint
    if args.zoo:
        entry = MMDET_ZOO.get(args.zoo)
        if entry is None:
            raise UsageError(f"--zoo {args.zoo}: not in the model zoo; listed: {', '.join(sorted(MMDET_ZOO))}")
        config = config or os.path.join(ROOT, entry["config"])
        checkpoint = checkpoint or (fetch(entry) if args.download else None)
        if checkpoint is None:
            raise UsageError(f"--zoo {args.zoo}: give --checkpoint (a downloaded {entry['url']}) or --download")
    if not config or not checkpoint:
        raise UsageError("mmdet needs --config and --checkpoint (or --zoo)")
    cfg = load_config(config)
    source = read_checkpoint(checkpoint)
    head_type = head_type_of(source)
    check_head_matches(head_type, cfg.model)
    model = instantiate(cfg.model)
    target = model.state_dict()
    tower_norm = bool(cfg.model.head.get("norm", ""))
    state = convert_state_dict(source, mmdet_rules(head_type, tower_norm), target, KEEP_INITIAL, source_name=checkpoint)
    names = _class_names(cfg)
    record = {"path": os.path.abspath(checkpoint), "format": f"mmdetection {head_type}", "config": os.path.relpath(config, ROOT)}
    path = write_run_dir(cfg, model, state, args.output, names, record)
    print(f"converted {checkpoint} ({head_type}, {len(source)} tensors) -> {path}")
    return path


def convert_torchvision(args) -> str:
    if not args.config or not args.checkpoint:
        raise UsageError("torchvision needs --config (a PyTorch-style config, for its ResNet) and --checkpoint")
    cfg = load_config(args.config)
    if cfg.model.backbone.bottom_up.stages.get("stride_in_1x1", True):
        raise UsageError(f"{args.config} builds a caffe-style ResNet (stride_in_1x1=True); torchvision's weights are PyTorch style")
    prefix = "backbone.bottom_up."
    target = {k: v for k, v in instantiate(cfg.model).state_dict().items() if k.startswith(prefix)}
    state = convert_state_dict(read_checkpoint(args.checkpoint), torchvision_resnet_rules(), target, source_name=args.checkpoint)
    with atomic_open(args.output, "wb") as f:
        torch.save({"model": state, "__author__": "torchvision", "matching_heuristics": False}, f)
    write_checksum(args.output)
    print(f"converted {args.checkpoint} ({len(state)} tensors) -> {args.output}")
    return args.output


def _class_names(cfg):
    names = cfg.dataloader.test.dataset.names
    name = names if isinstance(names, str) else names[0]
    return list(MetadataCatalog.get(name).get("thing_classes", None) or []) or None


def get_parser():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], epilog="\n".join(__doc__.splitlines()[1:]),
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("source", choices=["mmdet", "torchvision"], help="what the checkpoint is")
    parser.add_argument("--config", help="the dsla_d2 lazy config the weights are converted for")
    parser.add_argument("--checkpoint", help="the source checkpoint file")
    parser.add_argument("--zoo", help="a model zoo entry (docs/MODEL_ZOO.md): its config, and with --download its checkpoint")
    parser.add_argument("--download", action="store_true", help="fetch the zoo entry's checkpoint and verify its hash (online)")
    parser.add_argument("--output", required=True, help="mmdet: the run directory to write; torchvision: the .pth to write")
    parser.add_argument("--debug", action="store_true", help="print the traceback of a refusal too")
    return parser


def main(args):
    return convert_mmdet(args) if args.source == "mmdet" else convert_torchvision(args)


if __name__ == "__main__":
    args = get_parser().parse_args()
    run_cli(lambda: main(args), "convert_checkpoint.py", debug=args.debug or debug_requested())
