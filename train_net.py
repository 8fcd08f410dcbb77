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
``DetectionCheckpointer`` (our atomic, self-describing :class:`RunCheckpointer`),
periodic checkpoints, ``EvalHook`` with ``COCOEvaluator`` (and
``dsla_d2.evaluation.ConsistencyEvaluator`` with ``train.consistency_eval.enabled=True``), and
metrics.json / TensorBoard / console writers; ``launch`` for multi-GPU, multi-machine and
multi-process CPU (gloo). Start-up checks, in order: overrides (known keys), numeric
values, datasets (files, boxes, classes of train vs test vs model), output directory (no
silent rerun); all before the model is built.
"""
import difflib
import hashlib
import logging
import os

import torch

import dsla_d2  # noqa: F401  (applies dsla_d2.compat, registers our parts and datasets)
from detectron2.config import LazyConfig, instantiate
from detectron2.engine import AMPTrainer, SimpleTrainer, default_argument_parser, default_setup, hooks
from detectron2.evaluation import print_csv_format
from detectron2.solver.build import _generate_optimizer_class_with_gradient_clipping
from detectron2.utils import comm
from detectron2.utils.events import CommonMetricPrinter, JSONWriter, TensorboardXWriter
from omegaconf import OmegaConf

from dsla_d2.data import register_coco_json_dataset
from dsla_d2.data.coco_json import BAD_BOX_POLICIES
from dsla_d2.engine import TrainingProgressHook
from dsla_d2.engine.checkpoint import RunCheckpointer, load_for_inference, model_description
from dsla_d2.engine.config_checks import validate_config
from dsla_d2.engine.data_checks import check_datasets_agree, count_annotations, dataset_names
from dsla_d2.engine.data_order import ResumableTrainLoader
from dsla_d2.engine.distributed import create_ddp_model, launch
from dsla_d2.engine.hooks import METRICS_WINDOW, DataOrderHook, MetricsHistory
from dsla_d2.engine.run_dir import check_output_dir, eval_output_dir, move_run_aside, repair_metrics
from dsla_d2.evaluation import evaluate_model

logger = logging.getLogger("dsla_d2.train_net")
_MISSING = object()


def add_dataset_args(parser):
    group = parser.add_argument_group("COCO-format dataset from files (no Python needed)")
    group.add_argument("--train-json", help="COCO instances json of the training set")
    group.add_argument("--train-images", help="image directory of the training set")
    group.add_argument("--test-json", help="COCO instances json of the test set")
    group.add_argument("--test-images", help="image directory of the test set")
    group.add_argument("--bad-boxes", choices=BAD_BOX_POLICIES, default="error",
                       help="annotations whose bbox is not finite or has a negative size: refuse the json (error) or drop them (skip)")
    return parser


def add_run_args(parser):
    parser.add_argument("--restart", action="store_true",
                        help="train from scratch in an output directory that holds a run; its files are moved to replaced_runs/")
    return parser


def apply_dataset_args(cfg, args):
    """Register the datasets given on the command line and point the config at them.

    Class names and the number of classes come from the json's categories; train and
    test must have the same class names in the same order.
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
    for split, json_file, images in pairs:
        # one name per file (and role), so several datasets can be registered in one process
        name = f"coco_json_{split}_{hashlib.sha1(json_file.encode()).hexdigest()[:8]}"
        meta = register_coco_json_dataset(name, json_file, images, bad_boxes=args.bad_boxes, for_training=split == "train")
        cfg.dataloader[split].dataset.names = name
        cfg.model.num_classes = len(meta.thing_classes)
        records.append({"name": name, "json_file": json_file, "image_root": images,
                        "thing_classes": list(meta.thing_classes), "bad_boxes": args.bad_boxes})
    cfg.dataloader.evaluator.dataset_name = cfg.dataloader.test.dataset.names
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


def eval_problem(cfg):
    """Why the test set cannot be evaluated (no non-crowd annotation), or None."""
    if "evaluator" not in cfg.dataloader:
        return None
    empty = [n for n in dataset_names(cfg, "test") if count_annotations(n) == 0]
    if not empty:
        return None
    return f"the test set {', '.join(map(repr, empty))} has no (non-crowd) annotations, so AP cannot be computed"


def prepare_output_dir(cfg, args):
    """Apply the output-directory policy (dsla_d2.engine.run_dir) before anything is written."""
    if args.eval_only:
        cfg.train.output_dir = eval_output_dir(cfg.train.output_dir)
        return
    check_output_dir(cfg.train.output_dir, resume=args.resume, restart=args.restart)
    if args.restart and comm.is_main_process():
        move_run_aside(cfg.train.output_dir)
    comm.synchronize()


def do_test(cfg, model):
    if "evaluator" not in cfg.dataloader:
        return {}
    problem = eval_problem(cfg)
    if problem:
        logger.error("Not evaluating: %s", problem)
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


def build_model(cfg):
    model = instantiate(cfg.model)
    model.to(torch.device(cfg.train.device))
    logger.info("Model:\n%s", model)
    return model


def build_optimizer(cfg, model):
    cfg.optimizer.params.model = model
    optimizer = instantiate(cfg.optimizer)
    max_norm = float(cfg.train.get("clip_grad_norm", 0.0) or 0.0)
    if max_norm > 0:
        clipper = lambda params: torch.nn.utils.clip_grad_norm_(params, max_norm)  # noqa: E731
        optimizer.__class__ = _generate_optimizer_class_with_gradient_clipping(type(optimizer), global_clipper=clipper)
    return optimizer


def writers(cfg, start_iter):
    """Detectron2's default writers; TensorBoard drops events of a previous attempt past
    ``start_iter`` (purge_step), as metrics.json does (repair_metrics)."""
    out = cfg.train.output_dir
    return [
        CommonMetricPrinter(cfg.train.max_iter, window_size=METRICS_WINDOW),
        JSONWriter(os.path.join(out, "metrics.json"), window_size=METRICS_WINDOW),
        TensorboardXWriter(out, window_size=METRICS_WINDOW, purge_step=start_iter or None),
    ]


def training_hooks(cfg, model, checkpointer, train_loader):
    resumable = isinstance(train_loader, ResumableTrainLoader)
    return [
        hooks.IterationTimer(),
        TrainingProgressHook(),
        hooks.LRScheduler(scheduler=instantiate(cfg.lr_multiplier)),
        DataOrderHook(train_loader) if resumable else None,
        MetricsHistory(),
        hooks.PeriodicCheckpointer(checkpointer, **cfg.train.checkpointer) if comm.is_main_process() else None,
        hooks.EvalHook(cfg.train.eval_period, lambda: do_test(cfg, model)),
    ]


def do_train(args, cfg, class_names):
    train_loader = instantiate(cfg.dataloader.train)  # before the model: data errors come first
    model = build_model(cfg)
    optimizer = build_optimizer(cfg, model)
    model = create_ddp_model(model, **cfg.train.ddp)
    use_amp = cfg.train.amp.enabled and cfg.train.device.startswith("cuda")
    if cfg.train.amp.enabled and not use_amp:
        logger.warning("train.amp.enabled is ignored on CPU")
    trainer = (AMPTrainer if use_amp else SimpleTrainer)(model, train_loader, optimizer)
    description = model_description(cfg.model, class_names)
    checkpointer = RunCheckpointer(model, cfg.train.output_dir, description=description, trainer=trainer)
    trainer.register_hooks(training_hooks(cfg, model, checkpointer, train_loader))
    checkpointer.resume_or_load(cfg.train.init_checkpoint, resume=args.resume)
    start_iter = trainer.iter + 1 if checkpointer.resumed_from else 0
    if checkpointer.resumed_from and not isinstance(train_loader, ResumableTrainLoader):
        logger.warning("The training loader is not dsla_d2's resumable loader: the data stream restarts from its beginning")
    if comm.is_main_process():
        repair_metrics(os.path.join(cfg.train.output_dir, "metrics.json"), start_iter - 1)
        trainer.register_hooks([hooks.PeriodicWriter(writers(cfg, start_iter), period=cfg.train.log_period)])
    trainer.train(start_iter, cfg.train.max_iter)


def do_eval_only(cfg, class_names):
    problem = eval_problem(cfg)
    if problem:
        raise SystemExit(f"--eval-only: {problem}")
    model = build_model(cfg)
    load_for_inference(model, cfg.train.init_checkpoint, model_description(cfg.model, class_names))
    return do_test(cfg, create_ddp_model(model))


def setup(args):
    cfg = LazyConfig.load(args.config_file)
    cfg = LazyConfig.apply_overrides(cfg, check_overrides(cfg, args.opts))
    validate_config(cfg, world_size=comm.get_world_size())
    if args.eval_only and not cfg.train.init_checkpoint:
        final = os.path.join(cfg.train.output_dir, "model_final.pth")
        hint = f" (e.g. train.init_checkpoint={final})" if os.path.isfile(final) else ""
        raise SystemExit(f"--eval-only needs the weights to evaluate: set train.init_checkpoint=PATH{hint}")
    if args.resume and args.restart:
        raise SystemExit("--resume continues the run in the output directory, --restart replaces it: pass one of them")
    cfg = apply_dataset_args(cfg, args)
    class_names = check_datasets_agree(cfg, splits=("test",) if args.eval_only else ("train", "test"))
    resolve_device(cfg)
    prepare_output_dir(cfg, args)
    default_setup(cfg, args)
    return cfg, class_names


def main(args):
    cfg, class_names = setup(args)
    if args.eval_only:
        return do_eval_only(cfg, class_names)
    do_train(args, cfg, class_names)


def get_parser():
    return add_run_args(add_dataset_args(default_argument_parser()))


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
