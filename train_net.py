#!/usr/bin/env python
"""Train and evaluate dsla_d2 detectors from lazy configs.

    python train_net.py --config-file configs/fcos_r18_synth.py
    python train_net.py --config-file configs/fcos_R_50_FPN_1x.py --num-gpus 8 \
        train.init_checkpoint=/path/to/R-50.pkl
    python train_net.py --config-file configs/fcos_r18_synth.py --resume
    python train_net.py --config-file CFG --eval-only train.init_checkpoint=output/model_final.pth
    python train_net.py --config-file CFG --eval-only --tta train.init_checkpoint=output/model_final.pth
    python train_net.py --config-file configs/fcos_r18_synth.py \
        --train-json a.json --train-images imgs/ --test-json b.json --test-images imgs/

Built like Detectron2's ``tools/lazyconfig_train_net.py``: ``LazyConfig.load`` +
``apply_overrides`` + ``default_setup``, ``SimpleTrainer`` (``AMPTrainer`` on CUDA),
``DetectionCheckpointer`` (our atomic, self-describing :class:`RunCheckpointer`),
periodic checkpoints, ``EvalHook`` with the test set's evaluator (chosen from its
``evaluator_type``: ``COCOEvaluator``, ``LVISEvaluator``, ``PascalVOCDetectionEvaluator``,
unless the config names one; and ``dsla_d2.evaluation.ConsistencyEvaluator`` with
``train.consistency_eval.enabled=True``), test-time augmentation (``--tta`` or
``train.tta.enabled=True``: ``--eval-only`` evaluates with it, under the evaluator's keys; a
training run adds a TTA evaluation after its final one, under ``bbox_TTA/...``), and
metrics.json / TensorBoard / console writers; ``launch`` for multi-GPU, multi-machine and
multi-process CPU (gloo). Start-up checks, in order: overrides (known keys), values,
datasets (files, boxes, images, classes of train vs test vs model), the checkpoint to
resume or evaluate (readable, of this model), output directory (no silent rerun); all
before the model is built and before anything is written. Then the output directory is
locked (one run at a time) and the run starts.

A refusal of user input prints one line (``train_net.py: error: ...``) and exits with
status 2; ``--debug`` (or ``DSLA_D2_DEBUG=1``) shows its traceback.
"""
import difflib
import hashlib
import logging
import os

import contextlib

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
from dsla_d2.engine.checkpoint import (
    DESCRIPTION_KEY,
    ModelMismatchError,
    RunCheckpointer,
    _torch_load,
    describe_mismatch,
    load_for_inference,
    model_description,
    read_checkpoint,
    resume_candidates,
    resume_description,
)
from dsla_d2.engine.config_checks import RULES, check_initial_weights, validate_config
from dsla_d2.engine.data_checks import DatasetMismatchError, check_datasets_agree, count_annotations, dataset_names
from dsla_d2.engine.data_order import ResumableTrainLoader
from dsla_d2.engine.distributed import create_ddp_model, launch
from dsla_d2.engine.hooks import METRICS_WINDOW, DataOrderHook, EvalAfterSuccess, MetricsHistory, RunWriters
from dsla_d2.engine.lock import OutputDirLock
from dsla_d2.engine.run_dir import check_output_dir, eval_output_dir, move_run_aside, repair_metrics
from dsla_d2.errors import UnknownConfigKeyError, UsageError, debug_requested, run_cli
from dsla_d2.evaluation import check_evaluator, evaluate_model, tta_settings, tta_test_loader
from dsla_d2.utils.trust import load_config

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
    parser.add_argument("--debug", action="store_true",
                        help="print the traceback of a refused input too (also: DSLA_D2_DEBUG=1)")
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
            raise UsageError(f"--{split}-json and --{split}-images must be given together")
        if json_file:
            pairs.append((split, os.path.abspath(json_file), os.path.abspath(images)))
    if not pairs:
        return cfg
    records = list(OmegaConf.select(cfg, "train.coco_json_datasets", default=None) or [])
    given = _overridden(args.opts, "model.num_classes")
    for split, json_file, images in pairs:
        # one name per file (and role), so several datasets can be registered in one process
        name = f"coco_json_{split}_{hashlib.sha1(json_file.encode()).hexdigest()[:8]}"
        meta = register_coco_json_dataset(name, json_file, images, bad_boxes=args.bad_boxes, for_training=split == "train")
        cfg.dataloader[split].dataset.names = name
        if given and cfg.model.num_classes != len(meta.thing_classes):
            raise DatasetMismatchError(
                f"model.num_classes={cfg.model.num_classes} was given, but {json_file} has {len(meta.thing_classes)} "
                f"classes {list(meta.thing_classes)[:10]}: drop the override (the number of classes comes from the json)"
            )
        cfg.model.num_classes = len(meta.thing_classes)
        records.append({"name": name, "json_file": json_file, "image_root": images,
                        "thing_classes": list(meta.thing_classes), "bad_boxes": args.bad_boxes})
    cfg.dataloader.evaluator.dataset_name = cfg.dataloader.test.dataset.names
    cfg.train.coco_json_datasets = records
    return cfg


def _overridden(overrides, key):
    """Whether the command line sets ``key`` (``key=...`` or ``+key=...``)."""
    return any(opt.partition("=")[0].lstrip("+~") == key for opt in overrides or ())


def check_overrides(cfg, overrides):
    """Reject ``key=value`` overrides whose key is not in the config (a typo such as
    ``train.max_iters=10`` would otherwise be added silently and ignored). Prefix a key
    with ``+`` to add a new one on purpose."""
    checked = []
    for opt in overrides:
        key, sep, value = opt.partition("=")
        if opt.startswith("--"):
            raise UsageError(f"{opt}: options go before the key=value overrides (all that follows the first override is read as one)")
        if not sep:
            raise UsageError(f"config override {opt!r} is not of the form key=value")
        if key.startswith("+"):
            checked.append(f"{key[1:]}={value}")
            continue
        if OmegaConf.select(cfg, key, default=_MISSING) is _MISSING:
            parent, _, leaf = key.rpartition(".")
            node = OmegaConf.select(cfg, parent) if parent else cfg
            known = list(node.keys()) if hasattr(node, "keys") else []
            close = difflib.get_close_matches(leaf, [str(k) for k in known], n=3)
            hint = f"; did you mean {', '.join(f'{parent}.{c}' if parent else c for c in close)}?" if close else ""
            raise UnknownConfigKeyError(f"Unknown config key '{key}'{hint} (prefix it with '+' to add a new key)")
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


def check_weights(cfg, args, class_names):
    """The checkpoint that ``--resume`` continues from, or that ``--eval-only`` evaluates,
    must be readable and hold this model: checked before anything is written, so that a
    refused run leaves its output directory as it was."""
    expected = model_description(cfg.model, class_names)
    if args.eval_only:
        path = cfg.train.init_checkpoint
        found = (path, read_checkpoint(path, _torch_load).get(DESCRIPTION_KEY)) if "://" not in path else None
    elif args.resume:
        found = resume_description(cfg.train.output_dir)
    else:
        return
    if found is None or found[1] is None:
        return
    problem = describe_mismatch(found[1], expected)
    if problem:
        raise ModelMismatchError(f"{'--eval-only' if args.eval_only else '--resume'}: {found[0]}: {problem}")


def check_output_policy(cfg, args):
    """The output-directory policy (dsla_d2.engine.run_dir): where --eval-only writes, and
    no training over a run without --resume or --restart."""
    if args.eval_only:
        cfg.train.output_dir = eval_output_dir(cfg.train.output_dir)
    else:
        check_output_dir(cfg.train.output_dir, resume=args.resume, restart=args.restart)


@contextlib.contextmanager
def claim_output_dir(cfg, args):
    """After every check has passed: lock the output directory (main process), check its
    policy again under the lock (another run may have finished there meanwhile), move a
    replaced run aside (--restart), write config.yaml and the log (``default_setup``)."""
    lock = OutputDirLock(cfg.train.output_dir) if comm.is_main_process() else contextlib.nullcontext()
    with lock:
        if comm.is_main_process() and not args.eval_only:
            check_output_dir(cfg.train.output_dir, resume=args.resume, restart=args.restart)
            if args.restart:
                move_run_aside(cfg.train.output_dir)
        comm.synchronize()
        default_setup(cfg, args)
        yield


def tta_enabled(cfg):
    """``train.tta.enabled`` (``--tta`` sets it); False for a config without ``train.tta``."""
    return bool(OmegaConf.select(cfg, "train.tta.enabled", default=False))


def do_test(cfg, model, tta=False, suffix=""):
    """Evaluate ``model`` on the test set; with ``tta``, wrapped in test-time augmentation
    (``train.tta``), on images the test loader does not resize, written to inference_tta/.
    ``suffix`` is appended to the result keys ("bbox" -> "bbox_TTA")."""
    if "evaluator" not in cfg.dataloader:
        return {}
    problem = eval_problem(cfg)
    if problem:
        logger.error("Not evaluating: %s", problem)
        return {}
    output_dir = os.path.join(cfg.train.output_dir, "inference_tta" if tta else "inference")
    cfg.dataloader.evaluator.output_dir = output_dir
    loader = tta_test_loader(cfg.dataloader.test) if tta else cfg.dataloader.test
    # train.consistency_eval: {enabled, pre_nms}, score-IoU consistency next to COCO AP
    results = evaluate_model(
        model, lambda: instantiate(loader), instantiate(cfg.dataloader.evaluator),
        dataset_name=cfg.dataloader.test.dataset.names, output_dir=output_dir,
        tta=tta_settings(cfg) if tta else None,
        **dict(cfg.train.get("consistency_eval", None) or {}),
    )
    results = {f"{k}{suffix}": v for k, v in results.items()}
    if comm.is_main_process():
        if tta:  # on Detectron2's logger: default_setup gives dsla_d2's loggers no handler
            logging.getLogger("detectron2").info(
                "Results with test-time augmentation (train.tta: %s):", ", ".join(f"{k}={v}" for k, v in tta_settings(cfg).items()))
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
    """Detectron2's hooks, with the metrics row of an iteration written *before* the
    checkpoint that claims it (a kill between the two then re-runs that iteration on
    resume, instead of losing its row), and no evaluation after a failed step."""
    resumable = isinstance(train_loader, ResumableTrainLoader)
    main = comm.is_main_process()
    return [
        hooks.IterationTimer(),
        TrainingProgressHook(),
        hooks.LRScheduler(scheduler=instantiate(cfg.lr_multiplier)),
        DataOrderHook(train_loader) if resumable else None,
        MetricsHistory(),
        EvalAfterSuccess(cfg.train.eval_period, lambda: do_test(cfg, model)),
        # train.tta.enabled / --tta: after the final evaluation, one with TTA ("bbox_TTA/...")
        EvalAfterSuccess(0, lambda: do_test(cfg, model, tta=True, suffix="_TTA")) if tta_enabled(cfg) else None,
        RunWriters(lambda start_iter: writers(cfg, start_iter), period=cfg.train.log_period) if main else None,
        hooks.PeriodicCheckpointer(checkpointer, **cfg.train.checkpointer) if main else None,
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
    if start_iter >= cfg.train.max_iter > 0 and checkpointer.resumed_from:
        logger.info("The run in %s is complete (iteration %d of %d): nothing to train; evaluating %s",
                    cfg.train.output_dir, start_iter, cfg.train.max_iter, checkpointer.resumed_from)
        results = do_test(cfg, model)  # printed, not added to metrics.json: its row is there
        if tta_enabled(cfg):
            results.update(do_test(cfg, model, tta=True, suffix="_TTA"))
        return results
    if checkpointer.resumed_from and not isinstance(train_loader, ResumableTrainLoader):
        logger.warning("The training loader is not dsla_d2's resumable loader: the data stream restarts from its beginning")
    if comm.is_main_process():
        repair_metrics(os.path.join(cfg.train.output_dir, "metrics.json"), start_iter - 1)
    trainer.train(start_iter, cfg.train.max_iter)


def do_eval_only(cfg, class_names):
    model = build_model(cfg)
    load_for_inference(model, cfg.train.init_checkpoint, model_description(cfg.model, class_names))
    return do_test(cfg, create_ddp_model(model), tta=tta_enabled(cfg))


def setup(args):
    """Every start-up check, in order; nothing is written. Returns (cfg, class names)."""
    if not os.path.isfile(args.config_file):
        raise UsageError(f"--config-file {args.config_file}: no such file")
    cfg = load_config(args.config_file)
    cfg = LazyConfig.apply_overrides(cfg, check_overrides(cfg, args.opts))
    resuming = args.resume and bool(resume_candidates(cfg.train.output_dir))
    # a resumed run does not read train.init_checkpoint: it may have gone since
    rules = [r for r in RULES if not (resuming and r.key == "train.init_checkpoint")]
    validate_config(cfg, world_size=comm.get_world_size(), rules=rules)
    if not args.eval_only:
        check_initial_weights(cfg, resuming=resuming)
    if args.eval_only and not cfg.train.init_checkpoint:
        final = os.path.join(cfg.train.output_dir, "model_final.pth")
        hint = f" (e.g. train.init_checkpoint={final})" if os.path.isfile(final) else ""
        raise UsageError(f"--eval-only needs the weights to evaluate: set train.init_checkpoint=PATH{hint}")
    if args.resume and args.restart:
        raise UsageError("--resume continues the run in the output directory, --restart replaces it: pass one of them")
    cfg = apply_dataset_args(cfg, args)
    apply_tta_flag(cfg, args)
    check_evaluator(cfg)  # an evaluator_type without an evaluator fails now, not after training
    class_names = check_datasets_agree(cfg, splits=("test",) if args.eval_only else ("train", "test"))
    problem = eval_problem(cfg) if args.eval_only else None  # loads the test set: once
    if problem:
        raise DatasetMismatchError(f"--eval-only: {problem}")
    resolve_device(cfg)
    check_weights(cfg, args, class_names)
    check_output_policy(cfg, args)
    return cfg, class_names


def apply_tta_flag(cfg, args):
    """``--tta`` sets ``train.tta.enabled``; with TTA on, its settings are checked now."""
    if getattr(args, "tta", False):
        if OmegaConf.select(cfg, "train.tta", default=None) is None:
            raise UsageError("--tta: the config has no train.tta = dict(enabled=..., min_sizes=[...], max_size=..., flip=...) "
                             "(configs/common/train.py has the defaults)")
        cfg.train.tta.enabled = True
    if tta_enabled(cfg):
        tta_settings(cfg)


def main(args):
    cfg, class_names = setup(args)
    with claim_output_dir(cfg, args):
        if args.eval_only:
            return do_eval_only(cfg, class_names)
        return do_train(args, cfg, class_names)


def get_parser():
    parser = add_run_args(add_dataset_args(default_argument_parser()))
    parser.add_argument("--tta", action="store_true",
                        help="test-time augmentation (train.tta: sizes, flip): --eval-only evaluates with it; "
                             "training adds a TTA evaluation (bbox_TTA/...) after the final one")
    return parser


if __name__ == "__main__":
    args = get_parser().parse_args()
    if "--debug" in args.opts:  # after the overrides, argparse leaves it among them
        args.opts.remove("--debug")
        args.debug = True
    run_cli(
        lambda: launch(
            main,
            args.num_gpus,
            num_machines=args.num_machines,
            machine_rank=args.machine_rank,
            dist_url=args.dist_url,
            args=(args,),
        ),
        "train_net.py",
        debug=args.debug or debug_requested(),
    )
