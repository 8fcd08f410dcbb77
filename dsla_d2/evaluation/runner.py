"""One evaluation of a model on the test set: the config's evaluator (``COCOEvaluator``),
plus, when asked, the score–IoU consistency of its detections and of its pre-NMS
candidates. Used by ``train_net.py`` for ``EvalHook`` and ``--eval-only``."""
import logging
from typing import Callable, Iterable

from torch import nn

from detectron2.evaluation import DatasetEvaluator, DatasetEvaluators, inference_on_dataset

from .candidates import pre_nms_candidates
from .consistency import ConsistencyEvaluator

__all__ = ["evaluate_model"]

logger = logging.getLogger(__name__)


def evaluate_model(
    model: nn.Module,
    make_loader: Callable[[], Iterable],
    evaluator: DatasetEvaluator,
    *,
    dataset_name,
    output_dir: str,
    enabled: bool = False,
    pre_nms: bool = False,
) -> dict:
    """
    Args:
        model: the detector (possibly DDP-wrapped), in the mode the caller set.
        make_loader: builds the test loader (called again for the pre-NMS pass).
        evaluator: the config's evaluator.
        dataset_name: the test dataset (the consistency evaluators read its gts).
        output_dir: where ``consistency.json/png`` and ``consistency_pre_nms.json/png`` go.
        enabled: add a :class:`ConsistencyEvaluator` ("consistency/…") to the same pass.
        pre_nms: one more inference pass with :func:`pre_nms_candidates`, evaluated by a
            ConsistencyEvaluator only ("consistency_pre_nms/…"); it costs a second pass.

    Returns the merged results dict (``{"bbox": …, "consistency": …, "consistency_pre_nms": …}``).
    """
    if enabled:
        evaluator = DatasetEvaluators([evaluator, ConsistencyEvaluator(dataset_name, output_dir)])
    results = dict(inference_on_dataset(model, make_loader(), evaluator) or {})
    if pre_nms:
        logger.info("Score-IoU consistency of the pre-NMS candidates: a second inference pass")
        pre = ConsistencyEvaluator(dataset_name, output_dir, prefix="consistency_pre_nms")
        with pre_nms_candidates(model):
            results.update(inference_on_dataset(model, make_loader(), pre) or {})
    return results
