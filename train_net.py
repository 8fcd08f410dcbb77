#!/usr/bin/env python
"""Train and evaluate dsla_d2 detectors from lazy configs.

    python train_net.py --config-file configs/fcos_r18_synth.py
    python train_net.py --config-file configs/fcos_R_50_FPN_1x.py --num-gpus 8 \
        train.init_checkpoint=/path/to/R-50.pkl
    python train_net.py --config-file configs/fcos_r18_synth.py --resume
    python train_net.py --config-file CFG --eval-only train.init_checkpoint=output/model_final.pth
    python train_net.py --config-file configs/fcos_r18_synth.py \
        --train-json a.json --train-images imgs/ --test-json b.json --test-images imgs/

Built like Detectron2's ``tools/lazyconfig_train_net.py``: ``LazyConfig.load`` +
``apply_overrides`` + ``default_setup``, ``SimpleTrainer`` (``AMPTrainer`` on CUDA),
``DetectionCheckpointer``, periodic checkpoints, ``EvalHook`` with ``COCOEvaluator`` (and
``dsla_d2.evaluation.ConsistencyEvaluator`` with ``train.consistency_eval.enabled=True``), and
metrics.json / TensorBoard / console writers; ``launch`` for multi-GPU and multi-machine.
"""
import difflib
import hashlib
import logging
import os

import torch

import dsla_d2  # noqa: F401  (applies dsla_d2.compat, registers our parts and datasets)
from detectron2.checkpoint import DetectionCheckpointer
from detectron2.config import LazyConfig, instantiate
from detectron2.engine import (
    AMPTrainer,
    SimpleTrainer,
    create_ddp_model,
    default_argument_parser,
    default_setup,
    default_writers,
    hooks,
    launch,
)
from detectron2.evaluation import print_csv_format
from detectron2.solver.build import _generate_optimizer_class_with_gradient_clipping
from detectron2.utils import comm
from omegaconf import OmegaConf

from dsla_d2.data import register_coco_json_dataset
from dsla_d2.engine import TrainingProgressHook
from dsla_d2.evaluation import evaluate_model

logger = logging.getLogger("dsla_d2.train_net")
_MISSING = object()


def add_dataset_args(parser):
    group = parser.add_argument_group("COCO-format dataset from files (no Python needed)")
    group.add_argument("--train-json", help="COCO instances json of the training set")
    group.add_argument("--train-images", help="image directory of the training set")
    group.add_argument("--test-json", help="COCO instances json of the test set")
    group.add_argument("--test-images", help="image directory of the test set")
    return parser


def apply_dataset_args(cfg, args):
    """Register the datasets given on the command line and point the config at them.

    Class names and the number of classes come from the json's categories.
    """
    pairs = []
    for split, json_file, images in (
        ("train", args.train_json, args.train_images),
        ("test", args.test_json, args.test_images),
    ):
        if bool(json_file) != bool(images):
            raise SystemExit(f"--{split}-json and --{split}-images must be given together")
        if json_file:
            pairs.append((split, os.path.abspath(json_file), os.path.abspath(images)))
    if not pairs:
        return cfg
    records = list(OmegaConf.select(cfg, "train.coco_json_datasets", default=None) or [])
    num_classes = None
    for split, json_file, images in pairs:
        # one name per file, so several datasets can be registered in one process
        name = f"coco_json_{split}_{hashlib.sha1(json_file.encode()).hexdigest()[:8]}"
        meta = register_coco_json_dataset(name, json_file, images)
        n = len(meta.thing_classes)
        if num_classes is not None and n != num_classes:
            raise SystemExit(f"train and test jsons have different categories ({num_classes} vs {n})")
        num_classes = n
        cfg.dataloader[split].dataset.names = name
        records.append({"name": name, "json_file": json_file, "image_root": images})
    cfg.dataloader.evaluator.dataset_name = cfg.dataloader.test.dataset.names
    cfg.model.num_classes = num_classes
    cfg.train.coco_json_datasets = records
    return cfg


def check_overrides(cfg, overrides):
    """Reject ``key=value`` overrides whose key is not in the config (a typo such as
    ``train.max_iters=10`` would otherwise be added silently and ignored). Prefix a key
    with ``+`` to add a new one on purpose."""
    checked = []
    for opt in overrides:
        key, sep, value = opt.partition("=")
        if not sep:
            raise SystemExit(f"config override {opt!r} is not of the form key=value")
        if key.startswith("+"):
            checked.append(f"{key[1:]}={value}")
            continue
        if OmegaConf.select(cfg, key, default=_MISSING) is _MISSING:
            parent, _, leaf = key.rpartition(".")
            node = OmegaConf.select(cfg, parent) if parent else cfg
            known = list(node.keys()) if hasattr(node, "keys") else []
            close = difflib.get_close_matches(leaf, [str(k) for k in known], n=3)
            hint = f"; did you mean {', '.join(f'{parent}.{c}' if parent else c for c in close)}?" if close else ""
            raise KeyError(f"Unknown config key '{key}'{hint} (prefix it with '+' to add a new key)")
        checked.append(opt)
    return checked


def resolve_device(cfg):
    device = cfg.train.get("device", "cuda")
    if str(device).startswith("cuda") and not torch.cuda.is_available():
        logger.warning("CUDA is not available: training on CPU")
        device = "cpu"
    cfg.train.device = device
    return device


def do_test(cfg, model):
    if "evaluator" not in cfg.dataloader:
        return {}
    output_dir = os.path.join(cfg.train.output_dir, "inference")
    cfg.dataloader.evaluator.output_dir = output_dir
    # train.consistency_eval: {enabled, pre_nms}, score-IoU consistency next to COCO AP
    results = evaluate_model(
        model, lambda: instantiate(cfg.dataloader.test), instantiate(cfg.dataloader.evaluator),
        dataset_name=cfg.dataloader.test.dataset.names, output_dir=output_dir,
        **dict(cfg.train.get("consistency_eval", None) or {}),
    )
    if comm.is_main_process():
        print_csv_format(results)
    return results


def build_optimizer(cfg, model):
    cfg.optimizer.params.model = model
    optimizer = instantiate(cfg.optimizer)
    max_norm = float(cfg.train.get("clip_grad_norm", 0.0) or 0.0)
    if max_norm > 0:
        clipper = lambda params: torch.nn.utils.clip_grad_norm_(params, max_norm)  # noqa: E731
        optimizer.__class__ = _generate_optimizer_class_with_gradient_clipping(type(optimizer), global_clipper=clipper)
    return optimizer


def do_train(args, cfg):
    model = instantiate(cfg.model)
    model.to(torch.device(cfg.train.device))
    logger.info("Model:\n%s", model)
    optimizer = build_optimizer(cfg, model)
    train_loader = instantiate(cfg.dataloader.train)
    model = create_ddp_model(model, **cfg.train.ddp)
    use_amp = cfg.train.amp.enabled and cfg.train.device.startswith("cuda")
    if cfg.train.amp.enabled and not use_amp:
        logger.warning("train.amp.enabled is ignored on CPU")
    trainer = (AMPTrainer if use_amp else SimpleTrainer)(model, train_loader, optimizer)
    checkpointer = DetectionCheckpointer(model, cfg.train.output_dir, trainer=trainer)
    trainer.register_hooks(
        [
            hooks.IterationTimer(),
            TrainingProgressHook(),
            hooks.LRScheduler(scheduler=instantiate(cfg.lr_multiplier)),
            hooks.PeriodicCheckpointer(checkpointer, **cfg.train.checkpointer) if comm.is_main_process() else None,
            hooks.EvalHook(cfg.train.eval_period, lambda: do_test(cfg, model)),
            hooks.PeriodicWriter(default_writers(cfg.train.output_dir, cfg.train.max_iter), period=cfg.train.log_period)
            if comm.is_main_process()
            else None,
        ]
    )
    checkpointer.resume_or_load(cfg.train.init_checkpoint, resume=args.resume)
    start_iter = trainer.iter + 1 if args.resume and checkpointer.has_checkpoint() else 0
    trainer.train(start_iter, cfg.train.max_iter)


def setup(args):
    cfg = LazyConfig.load(args.config_file)
    cfg = LazyConfig.apply_overrides(cfg, check_overrides(cfg, args.opts))
    cfg = apply_dataset_args(cfg, args)
    resolve_device(cfg)
    default_setup(cfg, args)
    return cfg


def main(args):
    cfg = setup(args)
    if args.eval_only:
        model = instantiate(cfg.model)
        model.to(torch.device(cfg.train.device))
        model = create_ddp_model(model)
        DetectionCheckpointer(model).load(cfg.train.init_checkpoint)
        return do_test(cfg, model)
    do_train(args, cfg)


def get_parser():
    return add_dataset_args(default_argument_parser())


if __name__ == "__main__":
    args = get_parser().parse_args()
    launch(
        main,
        args.num_gpus,
        num_machines=args.num_machines,
        machine_rank=args.machine_rank,
        dist_url=args.dist_url,
        args=(args,),
    )
