"""Serving a model trained from a lazy config through Detectron2's ``DefaultPredictor``.

``DefaultPredictor`` takes a yacs ``CfgNode`` and builds the model with
``META_ARCH_REGISTRY.get(cfg.MODEL.META_ARCHITECTURE)(cfg)``. :func:`lazy_to_yacs` writes
the lazy config's ``model`` node, verbatim, into ``cfg.MODEL.DSLA_D2.LAZY_MODEL``; our
meta-architectures' ``from_config`` instantiate it back, so the served model is exactly the
trained one and there is no second description of it to keep in sync.

One call from a training output directory::

    predictor = dsla_d2.predictor_from_output_dir("output/fcos_synth")
    outputs = predictor(bgr_image)   # {"instances": Instances}

Serving is a trust boundary: a run directory's ``config.yaml`` is read as plain data (no
YAML tags that build objects), only model parts are instantiated from it (``nn.Module``
classes of dsla_d2, detectron2, torchvision and torch, and the helpers that
:mod:`dsla_d2.utils.trust` lists; ``allowed_targets`` names more), ``last_checkpoint`` is
followed only to a ``.pth`` file of the directory (read with ``weights_only``), and the
weights must be those of the configured model
(:func:`dsla_d2.engine.checkpoint.load_for_inference`). What ``predictor(image)``
accepts is :func:`as_bgr_uint8`'s contract; images of any size (down to 1 pixel per side)
are served.

Device: the predictor runs where the config says (``train.device``) when that device
exists; a config that says ``cuda`` on a machine without CUDA is served on the CPU with one
warning (as training does). A ``device=`` argument is used as given.

Test-time augmentation: ``predictor_from_output_dir(dir, tta=True)`` (or
``predictor_from_config(..., tta=True)``) serves the model wrapped in
:class:`~dsla_d2.meta_arch.tta.DenseDetectorWithTTA` with the run's ``train.tta`` settings;
``tta=dict(min_sizes=[...], max_size=..., flip=...)`` overrides some or all of them. The
wrapper resizes the original image itself (the predictor's own resize is skipped).
"""
import copy
import logging
import os
from typing import Optional, Sequence

import numpy as np
from omegaconf import DictConfig, ListConfig, OmegaConf

import torch

from detectron2.config import CfgNode, get_cfg
from detectron2.data import MetadataCatalog
from detectron2.data import transforms as T
from detectron2.engine import DefaultPredictor
from detectron2.modeling import META_ARCH_REGISTRY
from detectron2.utils.registry import _convert_target_to_string, locate

from .engine.checkpoint import DESCRIPTION_KEY, CheckpointNotFoundError, load_for_inference, model_description, pointed_checkpoint
from .meta_arch.yacs_bridge import lazy_model_kwargs
from .utils.trust import check_targets, load_config, map_targets

__all__ = [
    "lazy_to_yacs",
    "lazy_model_yaml",
    "lazy_model_kwargs",
    "add_dsla_d2_config",
    "as_bgr_uint8",
    "DslaPredictor",
    "predictor_from_output_dir",
    "predictor_from_config",
    "find_weights",
    "register_config_datasets",
    "load_yacs_config",
    "serving_device",
]

logger = logging.getLogger(__name__)


def _target_strings(node):
    """Deep copy of a lazy node with every ``_target_`` replaced by its import path."""
    return map_targets(copy.deepcopy(node), lambda t: _convert_target_to_string(t) if callable(t) else t)


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


def lazy_model_yaml(model_cfg) -> str:
    """The lazy ``model`` node as YAML, each ``_target_`` as an import path, resolved."""
    return OmegaConf.to_yaml(_target_strings(model_cfg), resolve=True)


def add_dsla_d2_config(ycfg: CfgNode) -> CfgNode:
    """Add our keys (``MODEL.DSLA_D2``) to a yacs config, as Detectron2 projects do, so that
    ``get_cfg()`` + ``add_dsla_d2_config`` + ``merge_from_file`` reads a dumped config."""
    ycfg.MODEL.DSLA_D2 = CfgNode({"LAZY_MODEL": "", "ALLOWED_TARGETS": []})
    return ycfg


def _as_merged(node: CfgNode) -> CfgNode:
    """Nested tuples as yacs' ``merge_from_file`` gives them back (inner ones as lists; e.g.
    Detectron2's default ``ROI_BOX_CASCADE_HEAD.BBOX_REG_WEIGHTS``), so that a dumped
    config reads back equal."""
    for key, value in node.items():
        if isinstance(value, CfgNode):
            _as_merged(value)
        elif isinstance(value, tuple) and any(isinstance(v, tuple) for v in value):
            node[key] = tuple(list(v) if isinstance(v, tuple) else v for v in value)
    return node


def lazy_to_yacs(cfg, weights: str = "", device: Optional[str] = None, allowed_targets: Sequence[str] = ()) -> CfgNode:
    """A yacs config for ``DefaultPredictor`` from a lazy config (object or file path).

    The model node's ``_target_`` entries must be model parts (:mod:`dsla_d2.utils.trust`:
    ``nn.Module`` classes of dsla_d2, detectron2, torchvision and torch, and the listed
    helpers), or named in ``allowed_targets``.
    """
    if isinstance(cfg, str):
        cfg = load_config(cfg)
    model = cfg.model
    check_targets(model, allowed_targets, source="the config", path="model")
    target = model._target_
    cls = locate(target) if isinstance(target, str) else target
    name = cls.__name__
    if META_ARCH_REGISTRY.get(name) is not cls:
        raise ValueError(f"{target} is not registered in META_ARCH_REGISTRY under {name!r}")

    ycfg = add_dsla_d2_config(get_cfg())
    ycfg.MODEL.META_ARCHITECTURE = name
    ycfg.MODEL.DSLA_D2.LAZY_MODEL = lazy_model_yaml(model)
    ycfg.MODEL.DSLA_D2.ALLOWED_TARGETS = list(allowed_targets)
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
    ycfg.MODEL.DEVICE = serving_device(cfg, device)
    return _as_merged(ycfg)


def serving_device(cfg, device: Optional[str] = None) -> str:
    """``device`` if given; else the config's ``train.device`` if it exists on this machine,
    else the CPU (with a warning for a CUDA device that is not there)."""
    if device is not None:
        return device
    configured = str(OmegaConf.select(cfg, "train.device", default=None) or "cpu")
    if configured.startswith("cuda") and not torch.cuda.is_available():
        logger.warning("The config says train.device=%s but CUDA is not available: serving on the CPU", configured)
        return "cpu"
    return configured


def load_yacs_config(path: str, allowed_targets: Sequence[str] = ()) -> CfgNode:
    """A yacs config dumped from :func:`lazy_to_yacs` (``cfg.dump()``), read safely.

    Detectron2's ``CfgNode.merge_from_file`` falls back to ``yaml.unsafe_load``; this reads
    plain YAML only (a ``!!python/...`` tag is refused). ``MODEL.DSLA_D2.ALLOWED_TARGETS``
    is taken from ``allowed_targets``, never from the file (a file cannot widen its own
    trust)."""
    import yaml

    from .utils.trust import UnsafeConfigError

    ycfg = add_dsla_d2_config(get_cfg())
    try:
        ycfg.merge_from_file(path, allow_unsafe=False)  # yaml.safe_load, which refuses the tags
    except yaml.constructor.ConstructorError:
        raise UnsafeConfigError(f"{path} holds YAML tags that build Python objects; a config here must be plain data") from None
    ycfg.MODEL.DSLA_D2.ALLOWED_TARGETS = list(allowed_targets)
    return ycfg


def find_weights(output_dir: str) -> str:
    """``model_final.pth`` if present, else the checkpoint named in ``last_checkpoint``
    (only a ``.pth`` file of ``output_dir`` is followed: see
    :func:`~dsla_d2.engine.checkpoint.pointed_checkpoint`)."""
    final = os.path.join(output_dir, "model_final.pth")
    if os.path.isfile(final):
        return final
    path = pointed_checkpoint(output_dir)
    if path is not None and os.path.isfile(path):
        return path
    raise CheckpointNotFoundError(f"No model_final.pth or last_checkpoint in {output_dir}")


def register_config_datasets(cfg) -> None:
    """Make the class names of a run's datasets available when serving: our synthetic
    datasets, and the COCO-json datasets it was trained on (``train_net.py --train-json``,
    recorded in ``cfg.train.coco_json_datasets`` with their class names). A json that has
    moved since is not needed: its recorded class names are used."""
    from .data import register_coco_json_dataset, register_synthetic_datasets

    register_synthetic_datasets()
    for d in OmegaConf.select(cfg, "train.coco_json_datasets", default=None) or []:
        if os.path.isfile(d["json_file"]) and os.path.isdir(d["image_root"]):
            register_coco_json_dataset(d["name"], d["json_file"], d["image_root"], check_images=False, bad_boxes=d.get("bad_boxes", "error"))
        elif d.get("thing_classes"):
            logger.warning("%s is gone; serving with the class names recorded in the run", d["json_file"])
            MetadataCatalog.get(d["name"]).set(thing_classes=list(d["thing_classes"]))


# --------------------------------------------------------------------------- input contract
def _to_uint8(image: np.ndarray) -> np.ndarray:
    dtype = image.dtype
    if dtype == np.uint8:
        return image
    if dtype == np.uint16:  # full 16-bit range onto 0..255
        return np.round(image / 257.0).astype(np.uint8)
    if dtype == np.bool_ or not np.issubdtype(dtype, np.number) or np.issubdtype(dtype, np.complexfloating):
        raise TypeError(f"image dtype {dtype} is not supported: pass uint8, uint16, another integer type in 0..255, or floats in [0, 255]")
    if np.issubdtype(dtype, np.floating) and not np.isfinite(image).all():
        raise ValueError("the image holds NaN or infinite values")
    lo, hi = float(image.min()), float(image.max())
    if lo < 0 or hi > 255:
        raise ValueError(f"{dtype} image values span [{lo:g}, {hi:g}]; expected 0..255 (uint16 images are rescaled; scale others first)")
    if np.issubdtype(dtype, np.floating) and 0 < hi <= 1:
        raise ValueError(
            f"{dtype} image values lie in [0, 1] (max {hi:g}): floats are read as 0..255, so this would be an almost "
            "black image. Multiply by 255 (or pass uint8)."
        )
    return np.round(image).astype(np.uint8) if np.issubdtype(dtype, np.floating) else image.astype(np.uint8)


def as_bgr_uint8(image) -> np.ndarray:
    """The serving input contract: any of

    * an (H, W) or (H, W, 1) grayscale array (copied into 3 channels),
    * an (H, W, 3) array in BGR order (as ``cv2.imread``, as ``DefaultPredictor``),
    * an (H, W, 4) BGRA array (``cv2.IMREAD_UNCHANGED``): the alpha channel is dropped,

    with dtype uint8; uint16 (0..65535 mapped linearly onto 0..255); another integer type
    with values in 0..255; or floats in [0, 255] (rounded). Floats whose maximum is in
    (0, 1] are refused as ambiguous (a [0, 1] image would be read as nearly black).
    Empty arrays, other channel counts, channels-first arrays, NaN/inf and non-arrays raise
    ValueError/TypeError saying what was given. Returns a contiguous (H, W, 3) uint8 array.
    """
    if not isinstance(image, np.ndarray):
        raise TypeError(f"predictor(image) takes a numpy array (H, W[, C]); got {type(image).__name__}")
    if image.ndim == 2:
        image = image[:, :, None]
    if image.ndim != 3:
        raise ValueError(f"image of shape {image.shape}: expected (H, W) or (H, W, C)")
    if image.shape[0] == 0 or image.shape[1] == 0:
        raise ValueError(f"empty image of shape {image.shape}")
    channels = image.shape[2]
    if channels not in (1, 3, 4):
        hint = " (channels first? transpose to (H, W, C))" if image.shape[0] in (1, 3, 4) else ""
        raise ValueError(f"image of shape {image.shape} has {channels} channels: expected 1, 3 or 4{hint}")
    image = _to_uint8(image)
    if channels == 1:
        image = np.repeat(image, 3, axis=2)
    elif channels == 4:
        image = image[:, :, :3]
    return np.ascontiguousarray(image)


class ResizeShortestEdgeAtLeastOnePixel(T.ResizeShortestEdge):
    """Detectron2's test-time ``ResizeShortestEdge``, except that no side is rounded down to
    0 pixels: a 3 x 20000 image capped at ``max_size`` would become 0 x 1333 (and PIL
    refuses it); here it becomes 1 x 1333."""

    def get_transform(self, image):
        transform = super().get_transform(image)
        if isinstance(transform, T.ResizeTransform):
            transform.new_h, transform.new_w = max(1, transform.new_h), max(1, transform.new_w)
        return transform


class DslaPredictor(DefaultPredictor):
    """``DefaultPredictor`` that refuses weights of another model and accepts the inputs
    of :func:`as_bgr_uint8`. ``cfg`` is a :func:`lazy_to_yacs` config; its weights are
    checked against ``description`` (:func:`~dsla_d2.engine.checkpoint.model_description`
    of its model node when not given). ``tta``: None, or the settings of a
    :class:`~dsla_d2.meta_arch.tta.DenseDetectorWithTTA` (``min_sizes``, ``max_size``,
    ``flip``) that then serves the model (``self.tta_model``; ``self.model`` stays the
    detector)."""

    def __init__(self, cfg: CfgNode, description: Optional[dict] = None, tta: Optional[dict] = None):
        weights = cfg.MODEL.WEIGHTS
        empty = cfg.clone()
        empty.MODEL.WEIGHTS = ""  # loaded below, checked
        super().__init__(empty)
        aug = self.aug
        self.aug = ResizeShortestEdgeAtLeastOnePixel(aug.short_edge_length, aug.max_size, aug.sample_style, aug.interp)
        if description is None:
            description = model_description(OmegaConf.create(cfg.MODEL.DSLA_D2.LAZY_MODEL))
        extra = load_for_inference(self.model, weights, description)
        self.cfg.MODEL.WEIGHTS = weights
        stored = (extra.get(DESCRIPTION_KEY) or {}).get("class_names") or description.get("class_names")
        if stored and hasattr(self, "metadata") and not self.metadata.as_dict().get("thing_classes"):
            self.metadata.set(thing_classes=list(stored))
        self.tta_model = None
        if tta is not None:
            from .meta_arch.tta import DenseDetectorWithTTA

            self.tta_model = DenseDetectorWithTTA(self.model, **tta).eval()

    def __call__(self, original_image):
        image = as_bgr_uint8(original_image)
        if self.tta_model is None:
            return super().__call__(image)
        with torch.no_grad():  # the 8-bit image at its own size: the TTA resizes it
            if self.input_format == "RGB":
                image = image[:, :, ::-1]
            height, width = image.shape[:2]
            tensor = torch.as_tensor(np.ascontiguousarray(image.transpose(2, 0, 1)))
            return self.tta_model([{"image": tensor, "height": height, "width": width}])[0]


def _tta_settings(cfg, tta) -> Optional[dict]:
    """None (no TTA), or the TTA settings: the config's ``train.tta`` (``tta=True``), with
    the keys of a ``tta`` dict over them."""
    if tta is None or tta is False:
        return None
    from .evaluation.runner import TTA_KEYS, tta_settings

    given = {} if tta is True else dict(tta)
    unknown = sorted(set(given) - set(TTA_KEYS))
    if unknown:
        raise ValueError(f"tta={tta!r}: unknown keys {unknown}; expected some of {list(TTA_KEYS)}")
    if OmegaConf.select(cfg, "train.tta", default=None) is not None:
        return {**tta_settings(cfg), **given}
    missing = [k for k in TTA_KEYS if k not in given]
    if missing:
        raise ValueError(f"tta={tta!r}: the config has no train.tta to take {missing} from; pass "
                         "tta=dict(min_sizes=[...], max_size=..., flip=...)")
    return given


def predictor_from_config(cfg, weights: str, device: Optional[str] = None, allowed_targets: Sequence[str] = (), tta=False) -> DslaPredictor:
    """A :class:`DslaPredictor` (a ``DefaultPredictor``) for a lazy config (object or path:
    a ``.py`` config is run, as you named it; a ``.yaml`` one is read as plain data) and a
    checkpoint of that model. ``tta``: False; True (test-time augmentation with the
    config's ``train.tta`` settings; its ``enabled`` is not read); or a dict of some of
    ``min_sizes``/``max_size``/``flip`` over them."""
    if isinstance(cfg, str):
        cfg = load_config(cfg)
    register_config_datasets(cfg)
    settings = _tta_settings(cfg, tta)
    return DslaPredictor(lazy_to_yacs(cfg, weights=weights, device=device, allowed_targets=allowed_targets), tta=settings)


def predictor_from_output_dir(output_dir: str, device: Optional[str] = None, allowed_targets: Sequence[str] = (), tta=False) -> DslaPredictor:
    """:func:`predictor_from_config` for a ``train_net.py`` output directory (its
    ``config.yaml`` and final or last checkpoint); ``tta`` as there."""
    config = os.path.join(output_dir, "config.yaml")
    if not os.path.isfile(config):
        raise CheckpointNotFoundError(f"{config} not found: is {output_dir} a train_net.py output directory?")
    cfg = load_config(config, trust_python=False)
    return predictor_from_config(cfg, find_weights(output_dir), device=device, allowed_targets=allowed_targets, tta=tta)
