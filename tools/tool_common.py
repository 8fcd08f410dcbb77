"""Set-up shared by the analysis tools (visualize_assignment.py, benchmark.py): a lazy
config with checked ``key=value`` overrides, a dataset (registered name or COCO json +
image directory), a model with an optional checkpoint. Not a command itself."""
import argparse
import hashlib
import os
import sys

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import dsla_d2  # noqa: E402,F401  (registers our parts and datasets)
import train_net  # noqa: E402  (check_overrides: the same override checks as training)
from detectron2.checkpoint import DetectionCheckpointer  # noqa: E402
from detectron2.config import LazyConfig, instantiate  # noqa: E402
from detectron2.data import DatasetCatalog, MetadataCatalog  # noqa: E402

from dsla_d2.data import register_coco_json_dataset  # noqa: E402
from dsla_d2.serving import register_config_datasets  # noqa: E402
from dsla_d2.utils.trust import load_config as trusted_load_config  # noqa: E402


def documented_parser(doc):
    """An ArgumentParser whose help is the tool's docstring."""
    lines = doc.splitlines()
    return argparse.ArgumentParser(description=lines[0], epilog="\n".join(lines[1:]),
                                   formatter_class=argparse.RawDescriptionHelpFormatter)


def add_common_args(parser):
    parser.add_argument("--dataset", help="a registered dataset name (default: the config's)")
    parser.add_argument("--json", help="a COCO instances json (with --images) instead of --dataset")
    parser.add_argument("--images", help="the image directory of --json")
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda if available)")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    parser.add_argument("opts", nargs="*", default=[], help="key=value overrides of the (first) config")
    return parser


def config_label(path):
    """A short name for a config file: its path relative to the repository, no '.py'."""
    path = os.path.abspath(path)
    rel = os.path.relpath(path, ROOT) if path.startswith(ROOT + os.sep) else path
    return os.path.splitext(rel)[0]


def load_config(path, opts=()):
    if not os.path.isfile(path):
        raise SystemExit(f"config file not found: {path}")
    cfg = trusted_load_config(path)  # a run's config.yaml is read as plain data
    cfg = LazyConfig.apply_overrides(cfg, train_net.check_overrides(cfg, list(opts)))
    register_config_datasets(cfg)  # a train_net.py run's config.yaml: its --train-json datasets
    return cfg


def dataset_names(cfg, args, split="test"):
    """The dataset to read: ``--json/--images``, ``--dataset`` or the config's ``split`` one."""
    if bool(args.json) != bool(args.images):
        raise SystemExit("--json and --images must be given together")
    if args.json:
        json_file = os.path.abspath(args.json)
        name = f"coco_json_{hashlib.sha1(json_file.encode()).hexdigest()[:8]}"
        register_coco_json_dataset(name, json_file, args.images)
        return name
    if args.dataset:
        if args.dataset not in DatasetCatalog.list():
            known = ", ".join(DatasetCatalog.list())
            raise SystemExit(f"dataset {args.dataset!r} is not registered; registered: {known}")
        return args.dataset
    try:
        return cfg.dataloader[split].dataset.names
    except Exception as e:
        raise SystemExit(f"the config has no dataloader.{split}.dataset.names: "
                         "give --dataset or --json/--images") from e


def class_names(names):
    first = names if isinstance(names, str) else list(names)[0]
    classes = MetadataCatalog.get(first).get("thing_classes")
    if classes is None:
        DatasetCatalog.get(first)  # COCO-json loaders set thing_classes
        classes = MetadataCatalog.get(first).get("thing_classes")
    return list(classes or [])


def resolve_device(device):
    if device is None:
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit(f"--device {device}: CUDA is not available")
    return device


def build_model(cfg, weights, device, num_classes=None):
    """The config's model on ``device``, with ``weights`` loaded if given.

    With ``num_classes`` (the dataset's) different from the config's: a checkpoint must
    match (error otherwise); an untrained model is built with the dataset's count.
    Returns ``(model, checkpoint extras)`` (``{}`` without weights).
    """
    if num_classes is not None and num_classes != cfg.model.num_classes:
        if weights:
            raise SystemExit(f"the dataset has {num_classes} classes, the config's model {cfg.model.num_classes}")
        print(f"note: model.num_classes={cfg.model.num_classes} → {num_classes} (the dataset's; untrained model)")
        cfg.model.num_classes = num_classes
    model = instantiate(cfg.model).to(device)
    extras = {}
    if weights:
        if not os.path.isfile(weights):
            raise SystemExit(f"checkpoint not found: {weights}")
        extras = DetectionCheckpointer(model).load(weights)
    return model, extras
