#!/usr/bin/env python
"""Draw and count what a detector's label assigner does, for any config and dataset.

    python tools/visualize_assignment.py --config-file projects/DSLA/configs/fcos_dsla_r18_synth.py \\
        --num-images 4 --output-dir output/assign_dsla
    python tools/visualize_assignment.py --config-file configs/atss_r18_synth.py --weights atss/model_final.pth \\
        --compare configs/fcos_r18_synth.py --compare-weights fcos/model_final.pth --image-ids 3 7 --output-dir out
    python tools/visualize_assignment.py --config-file CFG --json val.json --images imgs/ --stats-images 500 \\
        --output-dir out

Writes ``assign_<image id>.png`` per chosen image (one panel per FPN level, one row per
config with ``--compare``) and ``assignment_stats.json``, and prints the statistics
(positives per level and per gt, gts with zero positives by size, target histograms,
ambiguous locations and how they were resolved) over ``--stats-images`` images.

What is shown is what training computes. Each image goes through the config's **test-time
mapper** (its deterministic resize; the training mapper's random multi-scale choice and
flip are not applied) with the annotations kept as in training (crowd boxes dropped); the
network runs in eval mode (BatchNorm running statistics; ``--train-mode`` for batch
statistics); then ``model.assign_batch`` (the assignment step ``forward_training`` calls)
and ``model.loss.describe_targets`` (the loss's own targets). Dynamic parts (IoU coupling,
Dynamic ATSS, DDOD, DW) depend on the predictions: without ``--weights`` they come from the
untrained, randomly initialised model, which the figures and the json say.
"""
import copy
import json
import os
from dataclasses import dataclass

import numpy as np
import torch

from tool_common import (
    add_common_args, build_model, class_names, config_label, dataset_names, documented_parser, load_config,
    resolve_device,
)

from detectron2.config import instantiate
from detectron2.data import get_detection_dataset_dicts

from dsla_d2.analysis import AssignmentStatistics, assign_inputs, format_statistics

INPUT_NOTE = ("images mapped by the config's test-time mapper (deterministic resize, no random augmentation), "
              "annotations kept as in training")


@dataclass
class Run:
    label: str
    model: object
    mapper: object
    weights: str
    progress: object

    @property
    def state(self) -> str:
        if not self.weights:
            return "UNTRAINED (random init, no checkpoint): dynamic targets come from random predictions"
        at = f" @ iter {self.progress.iteration}" if self.progress is not None else ""
        return f"weights {os.path.basename(self.weights)}{at}"


def get_parser():
    p = documented_parser(__doc__)
    p.add_argument("--config-file", required=True)
    p.add_argument("--weights", default="", help="checkpoint (default: none, the untrained model)")
    p.add_argument("--compare", help="a second config drawn below the first on the same images")
    p.add_argument("--compare-weights", default="")
    p.add_argument("--image-ids", nargs="+", help="image ids to draw (default: the first --num-images)")
    p.add_argument("--num-images", type=int, default=4)
    p.add_argument("--stats-images", type=int, default=-1, help="images for the statistics (-1: all, 0: none)")
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--levels", nargs="+", help="levels to draw, e.g. p3 p4 (default: all)")
    p.add_argument("--progress", type=float, help="training progress iter/max_iter in [0, 1] given to the assigner "
                   "(default: the checkpoint's iteration, else none = iteration 0)")
    p.add_argument("--train-mode", action="store_true", help="run the network in training mode (BN batch statistics)")
    p.add_argument("--scale", type=float, default=1.5, help="figure pixels per input pixel")
    p.add_argument("--palette", type=int, default=0, help="save PNGs with this many (≤ 256) palette colours: "
                   "a quarter of the size")
    p.add_argument("--output-dir", required=True)
    return add_common_args(p)


def test_size_training_mapper(cfg):
    """The config's test mapper (deterministic resize) keeping annotations (is_train=True)."""
    try:
        node = cfg.dataloader.test.mapper
    except Exception as e:
        raise SystemExit("the config has no dataloader.test.mapper to take the test-time resize from") from e
    node.is_train = True
    return instantiate(node)


def make_run(path, weights, opts, num_classes, args, device):
    cfg = load_config(path, opts)
    model, extras = build_model(cfg, weights, device, num_classes)
    model.train(args.train_mode)
    max_iter = int(cfg.train.max_iter) if "train" in cfg and "max_iter" in cfg.train else None
    if args.progress is not None:
        if not 0 <= args.progress <= 1 or max_iter is None:
            raise SystemExit(f"--progress {args.progress}: needs a value in [0, 1] and a config with train.max_iter")
        model.set_training_progress(round(args.progress * max_iter), max_iter)
    elif "iteration" in extras and max_iter:
        model.set_training_progress(int(extras["iteration"]), max_iter)
    return Run(config_label(path), model, test_size_training_mapper(cfg), weights, model.training_progress)


def choose(dicts, image_ids, num):
    if not image_ids:
        return dicts[:num]
    by_id = {str(d["image_id"]): d for d in dicts}
    missing = [i for i in image_ids if i not in by_id]
    if missing:
        raise SystemExit(f"image ids {missing} are not in the dataset (ids look like {list(by_id)[:5]})")
    return [by_id[i] for i in image_ids]


def draw(runs, dicts, classes, args):
    from dsla_d2.analysis.assignment_plot import draw_assignments  # matplotlib only when drawing

    written = []
    for d in dicts:
        rows = [(f"{r.label} [{r.state}]", assign_inputs(r.model, [r.mapper(copy.deepcopy(d))]).image(0)) for r in runs]
        h, w = rows[0][1].pixels.shape[:2]
        title = (f"image {d['image_id']} ({os.path.basename(d['file_name'])}), input {w}×{h}: {INPUT_NOTE}; "
                 f"network in {'train' if args.train_mode else 'eval'} mode")
        fig, _, _ = draw_assignments(rows, suptitle=title, class_names=classes, levels=args.levels, scale=args.scale)
        path = os.path.join(args.output_dir, f"assign_{d['image_id']}.png")
        save_png(fig, path, args.palette)
        written.append(path)
        print(f"wrote {path}")
    return written


def save_png(fig, path, colors=0):
    """Write the figure; with ``colors`` > 0 as an 8-bit palette PNG (a fraction of the size)."""
    if not colors:
        fig.savefig(path)
        return
    from PIL import Image

    fig.canvas.draw()
    rgb = Image.fromarray(np.asarray(fig.canvas.buffer_rgba())[..., :3])
    # octree keeps the colour bar's ramp; no dithering keeps cells flat (and files small)
    rgb.quantize(colors=colors, method=Image.Quantize.FASTOCTREE, dither=Image.Dither.NONE).save(path, optimize=True)


def statistics(run, dicts, classes, batch_size):
    stats = AssignmentStatistics(run.model.head_in_features, classes)
    for start in range(0, len(dicts), batch_size):
        chunk = dicts[start : start + batch_size]
        stats.update(assign_inputs(run.model, [run.mapper(copy.deepcopy(d)) for d in chunk]),
                     [d["image_id"] for d in chunk])
    return stats.summary()


def main(args):
    if args.threads:
        torch.set_num_threads(args.threads)
    if not 0 <= args.palette <= 256:
        raise SystemExit(f"--palette {args.palette}: a PNG palette has 1 to 256 colours (0: full colour)")
    device = resolve_device(args.device)
    os.makedirs(args.output_dir, exist_ok=True)
    names = dataset_names(load_config(args.config_file, args.opts), args)
    classes = class_names(names)
    runs = [make_run(args.config_file, args.weights, args.opts, len(classes) or None, args, device)]
    if args.compare:
        runs.append(make_run(args.compare, args.compare_weights, [], len(classes) or None, args, device))
    for r in runs:
        print(f"{r.label}: {r.state}")
    dicts = get_detection_dataset_dicts(names, filter_empty=False)
    pictures = draw(runs, choose(dicts, args.image_ids, args.num_images), classes, args) if args.num_images else []
    stats_dicts = dicts if args.stats_images < 0 else dicts[: args.stats_images]
    report = {"dataset": names, "input": INPUT_NOTE, "network_mode": "train" if args.train_mode else "eval",
              "pictures": pictures, "configs": {}}
    for r in runs:
        entry = {"weights": r.weights or None, "untrained": not r.weights,
                 "progress": None if r.progress is None else [r.progress.iteration, r.progress.max_iter]}
        if stats_dicts:
            entry["statistics"] = statistics(r, stats_dicts, classes, args.batch_size)
            print("\n" + format_statistics(entry["statistics"], f"== {r.label} [{r.state}] on {names}"))
        report["configs"][r.label] = entry
    path = os.path.join(args.output_dir, "assignment_stats.json")
    with open(path, "w") as f:
        json.dump(report, f, indent=1)
    print(f"wrote {path}")
    return report


if __name__ == "__main__":
    main(get_parser().parse_args())
