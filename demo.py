#!/usr/bin/env python
"""Draw a trained detector's predictions with Detectron2's Visualizer.

    python demo.py --output-dir output/fcos_synth --input img1.jpg img2.jpg --out preds.png
    python demo.py --output-dir output/fcos_synth --dataset dsla_synth_val --num-images 6 --out preds.png
    python demo.py --config-file configs/fcos_r18_synth.py --weights model.pth --input a.jpg --out a.png

The model is served by Detectron2's ``DefaultPredictor`` built from the training run's own
config (``dsla_d2.predictor_from_output_dir``). Several images are tiled into one PNG.
Images are read by ``dsla_d2.data.read_image`` (Detectron2's reader, with 16-bit images
scaled onto 0..255); the --input images are read before the model is built, and an
unreadable one is reported in one line (exit status 2).
"""
import argparse
import os

import cv2
import numpy as np

import dsla_d2
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.utils.visualizer import Visualizer
from dsla_d2.data import read_image_checked
from dsla_d2.errors import UsageError, debug_requested, run_cli


def get_parser():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    src = parser.add_mutually_exclusive_group(required=True)
    src.add_argument("--output-dir", help="a train_net.py output directory (config.yaml + checkpoint)")
    src.add_argument("--config-file", help="a lazy config (with --weights)")
    parser.add_argument("--weights", help="checkpoint for --config-file")
    parser.add_argument("--input", nargs="+", help="image files")
    parser.add_argument("--dataset", help="draw the first images of this registered dataset")
    parser.add_argument("--num-images", type=int, default=4)
    parser.add_argument("--score-thresh", type=float, default=0.3, help="draw predictions above this score")
    parser.add_argument("--device", default=None)
    parser.add_argument("--out", required=True, help="output PNG")
    parser.add_argument("--debug", action="store_true", help="print the traceback of a refused input too (also: DSLA_D2_DEBUG=1)")
    return parser


def tile(images, cols=3):
    h = max(i.shape[0] for i in images)
    w = max(i.shape[1] for i in images)
    rows = (len(images) + cols - 1) // cols
    canvas = np.full((rows * h, min(cols, len(images)) * w, 3), 255, dtype=np.uint8)
    for k, img in enumerate(images):
        r, c = divmod(k, cols)
        canvas[r * h : r * h + img.shape[0], c * w : c * w + img.shape[1]] = img
    return canvas


def read_inputs(paths):
    """[(path, BGR uint8 image)] of ``paths``; ImageReadError names an unreadable file."""
    for path in paths:
        if not os.path.isfile(path):
            raise UsageError(f"image not found: {path}")
    return [(path, read_image_checked(path, "BGR")) for path in paths]


def main(args):
    inputs = read_inputs(args.input) if args.input else None  # before the (slow) model
    if args.output_dir:
        predictor = dsla_d2.predictor_from_output_dir(args.output_dir, device=args.device)
    else:
        if not args.weights:
            raise UsageError("--config-file needs --weights")
        predictor = dsla_d2.predictor_from_config(args.config_file, args.weights, device=args.device)
    if inputs is not None:
        metadata = predictor.metadata
    elif args.dataset:
        files = [d["file_name"] for d in DatasetCatalog.get(args.dataset)[: args.num_images]]
        inputs = read_inputs(files)
        metadata = MetadataCatalog.get(args.dataset)
    else:
        raise UsageError("give --input or --dataset")
    drawn = []
    for path, image in inputs:
        instances = predictor(image)["instances"].to("cpu")
        instances = instances[instances.scores > args.score_thresh]
        vis = Visualizer(image[:, :, ::-1], metadata=metadata)
        drawn.append(vis.draw_instance_predictions(instances).get_image())
        print(f"{path}: {len(instances)} detections above {args.score_thresh}")
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    cv2.imwrite(args.out, tile(drawn)[:, :, ::-1])
    print(f"wrote {args.out}")


if __name__ == "__main__":
    args = get_parser().parse_args()
    run_cli(lambda: main(args), "demo.py", debug=args.debug or debug_requested())
