"""One evaluation of a model on the test set: the config's evaluator (by default chosen from
the test set's ``evaluator_type``, :mod:`dsla_d2.evaluation.evaluators`), plus, when asked,
the score–IoU consistency of its detections and of its pre-NMS candidates, optionally with
test-time augmentation (:class:`~dsla_d2.meta_arch.tta.DenseDetectorWithTTA`). Used by
``train_net.py`` for ``EvalHook`` and ``--eval-only``."""
import copy
import logging
from typing import Callable, Iterable, Optional

from omegaconf import OmegaConf
from torch import nn

from detectron2.data.transforms import ResizeShortestEdge
from detectron2.evaluation import DatasetEvaluator, DatasetEvaluators, inference_on_dataset
from detectron2.utils.registry import locate

from ..engine.config_checks import ConfigValueError
from .candidates import pre_nms_candidates
from .consistency import ConsistencyEvaluator

__all__ = ["evaluate_model", "tta_settings", "tta_test_loader"]

logger = logging.getLogger(__name__)

TTA_KEYS = ("min_sizes", "max_size", "flip")


def tta_settings(cfg) -> dict:
    """``train.tta``'s ``min_sizes``/``max_size``/``flip`` as plain values, checked
    (:class:`ConfigValueError` naming the key otherwise)."""
    node = OmegaConf.select(cfg, "train.tta", default=None)
    if node is None:
        raise ConfigValueError("test-time augmentation needs train.tta = dict(enabled=..., min_sizes=[...], max_size=..., flip=...) "
                               "in the config (see configs/common/train.py)")
    out = {}
    for key in TTA_KEYS:
        try:
            value = node[key]
        except Exception as e:  # noqa: BLE001 (a missing key or an interpolation that does not resolve)
            raise ConfigValueError(f"train.tta.{key} cannot be read: {e}") from e
        out[key] = OmegaConf.to_container(value) if OmegaConf.is_config(value) else value
    sizes = out["min_sizes"]
    if not isinstance(sizes, (list, tuple)) or not sizes or any(isinstance(s, bool) or not isinstance(s, int) or s < 1 for s in sizes):
        raise ConfigValueError(f"train.tta.min_sizes={sizes!r} is invalid: expected a non-empty list of positive integers")
    if isinstance(out["max_size"], bool) or not isinstance(out["max_size"], int) or out["max_size"] < 1:
        raise ConfigValueError(f"train.tta.max_size={out['max_size']!r} is invalid: expected a positive integer")
    if not isinstance(out["flip"], bool):
        raise ConfigValueError(f"train.tta.flip={out['flip']!r} is invalid: expected true or false")
    out["min_sizes"] = list(sizes)
    return out


def _is_resize(aug) -> bool:
    target = aug.get("_target_", None) if OmegaConf.is_dict(aug) or isinstance(aug, dict) else None
    if isinstance(target, str):
        try:
            target = locate(target)
        except Exception:  # noqa: BLE001
            return False
    return isinstance(target, type) and issubclass(target, ResizeShortestEdge)


def tta_test_loader(loader_cfg):
    """A copy of the test loader's config whose mapper does not resize (its
    ``ResizeShortestEdge`` augmentations removed), so that test-time augmentation resizes
    each original image once. A mapper without ``augmentations`` is left as it is (the TTA
    then maps boxes back through the loader's resize, as Detectron2's does)."""
    loader_cfg = copy.deepcopy(loader_cfg)
    mapper = loader_cfg.get("mapper", None)
    augs = mapper.get("augmentations", None) if mapper is not None and hasattr(mapper, "get") else None
    if augs is not None:
        mapper.augmentations = [a for a in augs if not _is_resize(a)]
    return loader_cfg


def evaluate_model(
    model: nn.Module,
    make_loader: Callable[[], Iterable],
    evaluator: DatasetEvaluator,
    *,
    dataset_name,
    output_dir: str,
    enabled: bool = False,
    pre_nms: bool = False,
    tta: Optional[dict] = None,
) -> dict:
    """
    Args:
        model: the detector (possibly DDP-wrapped), in the mode the caller set.
        make_loader: builds the test loader (called again for the pre-NMS pass). With
            ``tta``, one whose mapper does not resize (:func:`tta_test_loader`) resizes
            each image once.
        evaluator: the config's evaluator.
        dataset_name: the test dataset (the consistency evaluators read its gts).
        output_dir: where ``consistency.json/png`` and ``consistency_pre_nms.json/png`` go.
        enabled: add a :class:`ConsistencyEvaluator` ("consistency/…") to the same pass.
        pre_nms: one more inference pass with :func:`pre_nms_candidates`, evaluated by a
            ConsistencyEvaluator only ("consistency_pre_nms/…"); it costs a second pass.
            With ``tta``: the merged candidates of all augmentations, before the one NMS.
        tta: None, or ``dict(min_sizes=[...], max_size=..., flip=...)``: evaluate the
            detector wrapped in :class:`~dsla_d2.meta_arch.tta.DenseDetectorWithTTA`.

    Returns the merged results dict (``{"bbox": …, "consistency": …, "consistency_pre_nms": …}``).
    """
    if tta is not None:
        from ..meta_arch.tta import DenseDetectorWithTTA

        model = DenseDetectorWithTTA(model, **tta)
        logger.info("Evaluating with test-time augmentation: shortest edges %s, max size %d, flip %s",
                    model.min_sizes, model.max_size, model.flip)
    if enabled:
        evaluator = DatasetEvaluators([evaluator, ConsistencyEvaluator(dataset_name, output_dir)])
    results = dict(inference_on_dataset(model, make_loader(), evaluator) or {})
    if pre_nms:
        logger.info("Score-IoU consistency of the pre-NMS candidates: a second inference pass")
        pre = ConsistencyEvaluator(dataset_name, output_dir, prefix="consistency_pre_nms")
        with pre_nms_candidates(model):
            results.update(inference_on_dataset(model, make_loader(), pre) or {})
    return results
