#!/usr/bin/env python
"""Speed of any config's detector: train iterations/s, inference images/s, and the time
split backbone / head / decode / assignment / loss / post-processing, on CPU and CUDA.

    python tools/benchmark.py --config-file configs/atss_r18_synth.py --threads 1 --output bench.json
    python tools/benchmark.py --config-file projects/DSLA/configs/fcos_dsla_R_50_FPN_1x.py --devices cuda \\
        --batch-size 2 --weights model_final.pth --dataset coco_2017_val

Per device, after ``--warmup`` untimed repeats, the median of ``--repeats`` timed ones
(``torch.cuda.synchronize`` before and after every timed piece on CUDA):

* **train iterations/s**: Detectron2's ``SimpleTrainer.run_step`` (``AMPTrainer`` on CUDA
  when ``train.amp.enabled``) with the config's optimiser (``train_net.build_optimizer``:
  gradient clipping included), on one real batch — the first batch of the config's
  training dataloader (its random augmentations; ``--batch-size`` overrides
  ``total_batch_size``), fed again at every step;
* **inference images/s**: ``model(batch)`` in eval mode without gradient, on the first
  images of the test dataset mapped by the config's test mapper (as many as the training
  batch);
* **time split**: the same two batches, the meta-architecture's own methods called one by
  one in the order its forward calls them (no change to the model): *preprocess*
  (``preprocess_image``, gts to the device), *backbone* (``backbone``), *head* (``head``
  on ``head_in_features``), *decode* (``decode``: priors, flattening, box decoding);
  training: *assignment* (``assigner``), *loss* (``loss``), *backward*; inference:
  *post-processing* (``quality.inference_scores`` and ``inference_single_image`` per
  image — the body of ``forward_inference`` after its ``decode`` — then Detectron2's
  ``detector_postprocess`` to the original size, as ``DenseDetector.forward``). The split
  runs in float32.

Without ``--weights`` the model is untrained: its scores sit near the prior probability, so
few candidates pass the test threshold and post-processing is cheaper than for a trained
model (the json says which).
"""
import argparse
import itertools
import json
import os
import platform
import re
import statistics
import time
from collections import defaultdict

import torch
from tabulate import tabulate

from tool_common import (
    add_common_args, build_model, config_label, dataset_names, load_config, train_net,
)

from detectron2.config import instantiate
from detectron2.data import get_detection_dataset_dicts
from detectron2.engine import AMPTrainer, SimpleTrainer
from detectron2.modeling.postprocessing import detector_postprocess
from detectron2.utils.events import EventStorage

TRAIN_STAGES = ("preprocess", "backbone", "head", "decode", "assignment", "loss", "backward")
INFERENCE_STAGES = ("preprocess", "backbone", "head", "decode", "post-processing")


class StageTimer:
    """Wall time of each named call, synchronising CUDA before and after."""

    def __init__(self, device: str):
        self.cuda = device.startswith("cuda")
        self.times = defaultdict(list)

    def sync(self):
        if self.cuda:
            torch.cuda.synchronize()

    def __call__(self, name, fn, *args, **kwargs):
        self.sync()
        start = time.perf_counter()
        out = fn(*args, **kwargs)
        self.sync()
        self.times[name].append(time.perf_counter() - start)
        return out

    def medians(self, skip: int = 0):
        return {k: statistics.median(v[skip:]) for k, v in self.times.items()}


def network(model, batch, t, with_gts=False):
    """preprocess, backbone, head: ``DenseDetector.forward`` up to the training/inference fork."""
    def preprocess():
        images = model.preprocess_image(batch)
        return images, [x["instances"].to(model.device) for x in batch] if with_gts else None

    images, gts = t("preprocess", preprocess)
    features = t("backbone", model.backbone, images.tensor)
    features = [features[f] for f in model.head_in_features]
    return images, gts, features, t("head", model.head, features)


def staged_training(model, batch, t):
    """One training forward + backward, stage by stage; returns the losses."""
    _, gts, features, predictions = network(model, batch, t, with_gts=True)
    priors, outputs = t("decode", model.decode, predictions, features)
    progress = model.training_progress
    assignment = t("assignment", model.assigner, priors, gts, model.num_classes, outputs, progress=progress)
    losses = t("loss", model.loss, outputs, priors, assignment, box_coder=model.box_coder, quality=model.quality)
    t("backward", lambda: sum(losses.values()).backward())
    return losses


def postprocess(model, images, priors, outputs, batch):
    probs = outputs["cls_logits"].sigmoid()
    scores = model.quality.inference_scores(outputs["cls_logits"], outputs.get("quality"))
    results = []
    for i, size in enumerate(images.image_sizes):  # per image, as forward_inference
        r = model.inference_single_image(priors, probs[i], scores[i], outputs["pred_boxes"][i], size)
        height, width = batch[i].get("height", size[0]), batch[i].get("width", size[1])
        results.append({"instances": detector_postprocess(r, height, width)})
    return results


def staged_inference(model, batch, t):
    """One inference forward, stage by stage; returns what ``model(batch)`` returns."""
    with torch.no_grad():
        images, _, features, predictions = network(model, batch, t)
        priors, outputs = t("decode", model.decode, predictions, features)
        return t("post-processing", postprocess, model, images, priors, outputs, batch)


def measure(cfg, model, train_batch, test_batch, device, warmup, repeats):
    out = {}
    n = warmup + repeats
    model.eval()
    t = StageTimer(device)
    for _ in range(n):
        staged_inference(model, test_batch, t)
    out["inference_split_s"] = t.medians(warmup)
    t = StageTimer(device)
    with torch.no_grad():
        for _ in range(n):
            t("inference", model, test_batch)
    out["inference_batch_s"] = t.medians(warmup)["inference"]
    out["inference_images_per_s"] = len(test_batch) / out["inference_batch_s"]

    max_iter = int(cfg.train.get("max_iter", 1))
    model.train()
    model.set_training_progress(0, max_iter)
    t = StageTimer(device)
    with EventStorage(0):
        for _ in range(n):
            staged_training(model, train_batch, t)
            model.zero_grad(set_to_none=True)
        out["train_split_s"] = t.medians(warmup)
        use_amp = bool(cfg.train.get("amp", {}).get("enabled", False)) and device.startswith("cuda")
        trainer = (AMPTrainer if use_amp else SimpleTrainer)(model, itertools.repeat(train_batch),
                                                             train_net.build_optimizer(cfg, model))
        t = StageTimer(device)
        for i in range(n):
            trainer.iter = i
            model.set_training_progress(i, max_iter)
            t("step", trainer.run_step)
    out["train_amp"] = use_amp
    out["train_step_s"] = t.medians(warmup)["step"]
    out["train_iter_per_s"] = 1.0 / out["train_step_s"]
    return out


def batches(cfg, args):
    """(training batch from the config's train dataloader, test batch of the same size)."""
    cfg.dataloader.train.num_workers = 0
    if args.batch_size:
        cfg.dataloader.train.total_batch_size = args.batch_size
    if args.dataset or args.json:
        cfg.dataloader.train.dataset.names = dataset_names(cfg, args, "train")
        cfg.dataloader.test.dataset.names = cfg.dataloader.train.dataset.names
    train_batch = next(iter(instantiate(cfg.dataloader.train)))
    mapper = instantiate(cfg.dataloader.test.mapper)
    dicts = get_detection_dataset_dicts(cfg.dataloader.test.dataset.names, filter_empty=False)
    return train_batch, [mapper(d) for d in dicts[: len(train_batch)]]


def table(results):
    rows = []
    for device, r in results.items():
        rows.append([device, "train step (run_step)", f"{r['train_step_s'] * 1e3:.1f}",
                     f"{r['train_iter_per_s']:.2f} it/s"])
        rows.append([device, "inference (model(batch))", f"{r['inference_batch_s'] * 1e3:.1f}",
                     f"{r['inference_images_per_s']:.1f} img/s"])
        for split, stages in (("train", TRAIN_STAGES), ("inference", INFERENCE_STAGES)):
            total = sum(r[f"{split}_split_s"].values())
            for s in stages:
                v = r[f"{split}_split_s"][s]
                rows.append([device, f"  {split}: {s}", f"{v * 1e3:.1f}", f"{100 * v / total:.0f}%"])
    return tabulate(rows, ["device", "what", "median ms", "rate / share"], tablefmt="pipe")


def get_parser():
    lines = __doc__.splitlines()
    # conflict_handler="resolve": --devices, added after add_common_args, takes over the
    # common --device (the other tools run on one device) as its alias, so `--device cuda`
    # is obeyed here rather than ignored
    p = argparse.ArgumentParser(description=lines[0], epilog="\n".join(lines[1:]),
                                formatter_class=argparse.RawDescriptionHelpFormatter, conflict_handler="resolve")
    p.add_argument("--config-file", required=True)
    p.add_argument("--weights", default="", help="checkpoint (default: the untrained model)")
    p.add_argument("--batch-size", type=int, help="images per batch (default: the config's total_batch_size)")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--repeats", type=int, default=10)
    p.add_argument("--output", help="json file (default: print only)")
    add_common_args(p)
    p.add_argument("--devices", "--device", nargs="+", dest="devices",
                   help="the devices to time, in turn (default: cpu, and cuda when available)")
    return p


def main(args):
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.repeats < 1 or args.warmup < 0:
        raise SystemExit(f"--repeats {args.repeats} must be ≥ 1 and --warmup {args.warmup} ≥ 0")
    devices = args.devices or (["cpu"] + (["cuda"] if torch.cuda.is_available() else []))
    not_devices = [d for d in devices if not re.fullmatch(r"cpu|cuda(:\d+)?", d)]
    if not_devices:
        raise SystemExit(f"--devices {' '.join(devices)}: {', '.join(not_devices)} is not a device (cpu, cuda or cuda:N); "
                         "give key=value overrides before --devices")
    if any(d.startswith("cuda") for d in devices) and not torch.cuda.is_available():
        raise SystemExit(f"--devices {devices}: CUDA is not available")
    cfg = load_config(args.config_file, args.opts)
    train_batch, test_batch = batches(cfg, args)
    report = {"config": config_label(args.config_file), "weights": args.weights or None, "untrained": not args.weights,
              "torch": torch.__version__, "threads": torch.get_num_threads(), "batch_size": len(train_batch),
              "train_dataset": cfg.dataloader.train.dataset.names, "test_dataset": cfg.dataloader.test.dataset.names,
              "warmup": args.warmup, "repeats": args.repeats, "loadavg_start": list(os.getloadavg()), "devices": {}}
    for device in devices:
        torch.manual_seed(0)
        model, _ = build_model(cfg, args.weights, device)
        r = measure(cfg, model, train_batch, test_batch, device, args.warmup, args.repeats)
        r["device_name"] = torch.cuda.get_device_name(device) if device.startswith("cuda") else platform.processor()
        report["devices"][device] = r
    print(f"{report['config']} — batch {report['batch_size']}, {args.repeats} repeats after {args.warmup} warm-up, "
          f"{report['threads']} CPU threads{', untrained' if not args.weights else ''}; "
          f"load average {report['loadavg_start'][0]:.1f} at the start (timings need an otherwise idle machine)")
    print(table(report["devices"]))
    if args.output:
        with open(args.output, "w") as f:
            json.dump(report, f, indent=1)
        print(f"wrote {args.output}")
    return report


if __name__ == "__main__":
    main(get_parser().parse_args())
