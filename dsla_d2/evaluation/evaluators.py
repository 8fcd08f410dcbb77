"""The evaluator of a test set, chosen from its metadata as Detectron2's ``tools/train_net.py``
does (``MetadataCatalog.get(name).evaluator_type``), for box detections:

=================  ==================================  ==================================
evaluator_type     evaluator                           registered by (for instance)
=================  ==================================  ==================================
``coco``           ``COCOEvaluator``                   ``register_coco_instances``, our
                                                       synthetic and ``--test-json`` sets
``lvis``           ``LVISEvaluator`` (needs ``lvis``)  ``register_lvis_instances``
``pascal_voc``     ``PascalVOCDetectionEvaluator``     Detectron2's builtin VOC sets; a
                                                       ``register_pascal_voc`` set once
                                                       its ``evaluator_type`` is set
=================  ==================================  ==================================

(Detectron2 v0.6's ``register_pascal_voc`` sets ``dirname``/``year``/``split`` but not
``evaluator_type``; its builtin registration adds it. The error for such a dataset says so.)

Any other type (``cityscapes_instance``, ``sem_seg``, ``coco_panoptic_seg``, …) or none is
refused with an :class:`EvaluatorTypeError` naming it.

The shipped data configs set ``dataloader.evaluator = L(build_evaluator)(dataset_name=...)``:
that is the default, "choose from the metadata". A config (or a command-line override of
``dataloader.evaluator._target_``) that names any other evaluator is *explicit* and is
used as written, for every dataset. ``train_net.py`` checks the choice before training
(:func:`check_evaluator`), so an unsupported type fails at start-up, not after training.
"""
import logging
from typing import Optional, Sequence

from detectron2.data import MetadataCatalog
from detectron2.evaluation import COCOEvaluator, DatasetEvaluator, LVISEvaluator, PascalVOCDetectionEvaluator
from detectron2.utils.registry import locate

from ..errors import UserInputError

__all__ = ["EVALUATORS", "EvaluatorTypeError", "build_evaluator", "check_evaluator", "evaluator_class"]

logger = logging.getLogger(__name__)

#: evaluator_type -> the evaluator of box detections built for it
EVALUATORS = {"coco": COCOEvaluator, "lvis": LVISEvaluator, "pascal_voc": PascalVOCDetectionEvaluator}


class EvaluatorTypeError(UserInputError, ValueError):
    """The test set's ``evaluator_type`` has no evaluator of box detections here."""


def _one_name(dataset_name) -> str:
    if isinstance(dataset_name, str):
        return dataset_name
    names = list(dataset_name)
    if len(names) != 1:
        raise EvaluatorTypeError(f"the evaluator is chosen for one test dataset, got {names!r}")
    return str(names[0])


def evaluator_class(dataset_name) -> type:
    """The evaluator class for the dataset's ``evaluator_type`` (see :data:`EVALUATORS`)."""
    name = _one_name(dataset_name)
    kind = MetadataCatalog.get(name).get("evaluator_type", None)
    if kind in EVALUATORS:
        return EVALUATORS[kind]
    what = "has no evaluator_type in its metadata" if kind is None else f"has evaluator_type {kind!r}"
    hint = ""
    if kind is None and _looks_like_voc(name):  # Detectron2's register_pascal_voc does not set it
        hint = f" (a register_pascal_voc dataset: set MetadataCatalog.get({name!r}).evaluator_type = 'pascal_voc', as Detectron2's builtin datasets do)"
    raise EvaluatorTypeError(
        f"test dataset {name!r} {what}{hint}: box detections are evaluated for "
        f"{', '.join(repr(k) for k in EVALUATORS)} ({', '.join(c.__name__ for c in EVALUATORS.values())}); "
        "or set dataloader.evaluator to an evaluator for it (e.g. "
        "dataloader.evaluator._target_=detectron2.evaluation.COCOEvaluator)"
    )


def _looks_like_voc(name) -> bool:
    meta = MetadataCatalog.get(name)
    return all(meta.get(k, None) is not None for k in ("dirname", "year", "split"))


def build_evaluator(
    dataset_name,
    output_dir: Optional[str] = None,
    *,
    distributed: bool = True,
    tasks: Optional[Sequence[str]] = None,
    max_dets_per_image: Optional[int] = None,
    use_fast_impl: bool = True,
    kpt_oks_sigmas: Sequence[float] = (),
) -> DatasetEvaluator:
    """The evaluator of ``dataset_name`` from its ``evaluator_type``.

    The keyword arguments are ``COCOEvaluator``'s (so a config written for it, e.g.
    ``dataloader.evaluator.max_dets_per_image=1000``, keeps its meaning) and go to the
    evaluator that takes them: all to ``COCOEvaluator``; ``output_dir``, ``distributed``,
    ``tasks`` and ``max_dets_per_image`` to ``LVISEvaluator``; none to
    ``PascalVOCDetectionEvaluator``, which scores every detection of an image (a
    ``max_dets_per_image`` is then ignored with a warning).
    """
    name = _one_name(dataset_name)
    cls = evaluator_class(name)
    if cls is COCOEvaluator:
        return COCOEvaluator(name, tasks=tasks, distributed=distributed, output_dir=output_dir,
                             max_dets_per_image=max_dets_per_image, use_fast_impl=use_fast_impl,
                             kpt_oks_sigmas=kpt_oks_sigmas)
    if cls is LVISEvaluator:
        try:
            return LVISEvaluator(name, tasks=tasks, distributed=distributed, output_dir=output_dir,
                                 max_dets_per_image=max_dets_per_image)
        except ImportError as e:
            raise ImportError(f"LVISEvaluator (dataset {name!r} has evaluator_type 'lvis') needs the lvis package: {e}") from e
    if max_dets_per_image is not None:
        logger.warning("%s: PascalVOCDetectionEvaluator scores every detection; max_dets_per_image=%s is ignored",
                       name, max_dets_per_image)
    return PascalVOCDetectionEvaluator(name)


def _is_build_evaluator(target) -> bool:
    if isinstance(target, str):
        try:
            target = locate(target)
        except Exception:  # noqa: BLE001 (an unknown target is not ours; instantiate reports it)
            return False
    return target is build_evaluator


def check_evaluator(cfg) -> None:
    """Before a run: when ``dataloader.evaluator`` is :func:`build_evaluator` (the
    default), its test dataset must have a supported ``evaluator_type``. An explicit
    evaluator is not checked here."""
    node = cfg.dataloader.get("evaluator", None) if "dataloader" in cfg else None
    if node is None or not _is_build_evaluator(node.get("_target_", None)):
        return
    evaluator_class(node.dataset_name)
