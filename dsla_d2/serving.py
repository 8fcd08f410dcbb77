"""Serving a model trained from a lazy config through Detectron2's ``DefaultPredictor``.

``DefaultPredictor`` takes a yacs ``CfgNode`` and builds the model with
``META_ARCH_REGISTRY.get(cfg.MODEL.META_ARCHITECTURE)(cfg)``. :func:`lazy_to_yacs` writes
the lazy config's ``model`` node, verbatim, into ``cfg.MODEL.DSLA_D2.LAZY_MODEL``; our
meta-architectures' ``from_config`` instantiate it back, so the served model is exactly the
trained one and there is no second description of it to keep in sync.

One call from a training output directory::

    predictor = dsla_d2.predictor_from_output_dir("output/fcos_synth")
    outputs = predictor(bgr_image)   # {"instances": Instances}
"""
import copy
import os
from typing import Optional

from omegaconf import DictConfig, ListConfig, OmegaConf

from detectron2.config import CfgNode, LazyConfig, get_cfg
from detectron2.modeling import META_ARCH_REGISTRY
from detectron2.utils.registry import _convert_target_to_string, locate

from .meta_arch.yacs_bridge import lazy_model_kwargs

__all__ = [
    "lazy_to_yacs",
    "lazy_model_kwargs",
    "predictor_from_output_dir",
    "predictor_from_config",
    "find_weights",
    "register_config_datasets",
]


def _target_strings(node):
    """Deep copy of a lazy node with every ``_target_`` replaced by its import path."""
    node = copy.deepcopy(node)

    def visit(x):
        if isinstance(x, DictConfig):
            if "_target_" in x and callable(x._target_):
                x._target_ = _convert_target_to_string(x._target_)
            for v in x.values():
                visit(v)
        elif isinstance(x, ListConfig):
            for v in x:
                visit(v)

    visit(node)
    return node


def _test_resize(cfg):
    """(min_size, max_size) of the test mapper's ResizeShortestEdge, if it has one."""
    try:
        augs = cfg.dataloader.test.mapper.augmentations
    except Exception:
        return None
    for aug in augs or []:
        target = aug.get("_target_") if isinstance(aug, DictConfig) else None
        name = target if isinstance(target, str) else getattr(target, "__name__", "")
        if name.endswith("ResizeShortestEdge"):
            short = aug.short_edge_length
            short = short[0] if isinstance(short, (list, tuple, ListConfig)) else short
            return int(short), int(aug.get("max_size", 1333))
    return None


def lazy_to_yacs(cfg, weights: str = "", device: Optional[str] = None) -> CfgNode:
    """A yacs config for ``DefaultPredictor`` from a lazy config (object or file path)."""
    if isinstance(cfg, str):
        cfg = LazyConfig.load(cfg)
    model = cfg.model
    target = model._target_
    cls = locate(target) if isinstance(target, str) else target
    name = cls.__name__
    if META_ARCH_REGISTRY.get(name) is not cls:
        raise ValueError(f"{target} is not registered in META_ARCH_REGISTRY under {name!r}")

    node = _target_strings(model)
    ycfg = get_cfg()
    ycfg.MODEL.META_ARCHITECTURE = name
    ycfg.MODEL.DSLA_D2 = CfgNode({"LAZY_MODEL": OmegaConf.to_yaml(node, resolve=True)})
    ycfg.MODEL.WEIGHTS = weights
    ycfg.MODEL.PIXEL_MEAN = list(model.get("pixel_mean", ycfg.MODEL.PIXEL_MEAN))
    ycfg.MODEL.PIXEL_STD = list(model.get("pixel_std", ycfg.MODEL.PIXEL_STD))
    ycfg.INPUT.FORMAT = model.get("input_format", "BGR")
    resize = _test_resize(cfg)
    if resize is not None:
        ycfg.INPUT.MIN_SIZE_TEST, ycfg.INPUT.MAX_SIZE_TEST = resize
    try:
        names = cfg.dataloader.test.dataset.names
        ycfg.DATASETS.TEST = (names,) if isinstance(names, str) else tuple(names)
    except Exception:
        ycfg.DATASETS.TEST = ()
    if device is None:
        device = OmegaConf.select(cfg, "train.device", default=None) or "cpu"
    ycfg.MODEL.DEVICE = device
    return ycfg


def find_weights(output_dir: str) -> str:
    """``model_final.pth`` if present, else the checkpoint named in ``last_checkpoint``."""
    final = os.path.join(output_dir, "model_final.pth")
    if os.path.isfile(final):
        return final
    last = os.path.join(output_dir, "last_checkpoint")
    if os.path.isfile(last):
        with open(last) as f:
            path = os.path.join(output_dir, f.read().strip())
        if os.path.isfile(path):
            return path
    raise FileNotFoundError(f"No model_final.pth or last_checkpoint in {output_dir}")


def register_config_datasets(cfg) -> None:
    """Re-register the COCO-json datasets a run was trained on (``train_net.py
    --train-json ...``), recorded in ``cfg.train.coco_json_datasets``, and our synthetic
    datasets, so their metadata (class names) is available when serving."""
    from .data import register_coco_json_dataset, register_synthetic_datasets

    register_synthetic_datasets()
    for d in OmegaConf.select(cfg, "train.coco_json_datasets", default=None) or []:
        register_coco_json_dataset(d["name"], d["json_file"], d["image_root"], check_images=False)


def predictor_from_config(cfg, weights: str, device: Optional[str] = None):
    """``DefaultPredictor`` for a lazy config (object or path) and a checkpoint."""
    from detectron2.engine import DefaultPredictor

    if isinstance(cfg, str):
        cfg = LazyConfig.load(cfg)
    register_config_datasets(cfg)
    return DefaultPredictor(lazy_to_yacs(cfg, weights=weights, device=device))


def predictor_from_output_dir(output_dir: str, device: Optional[str] = None):
    """``DefaultPredictor`` for a ``train_net.py`` output directory (its ``config.yaml``
    and final or last checkpoint)."""
    config = os.path.join(output_dir, "config.yaml")
    if not os.path.isfile(config):
        raise FileNotFoundError(f"{config} not found: is {output_dir} a train_net.py output directory?")
    return predictor_from_config(config, find_weights(output_dir), device=device)
