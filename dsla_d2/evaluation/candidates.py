"""Pre-NMS candidates: what the detector's NMS sees, for the consistency evaluator.

NMS keeps the top-scored box of each cluster, so the score–IoU consistency that matters
for AP is decided *before* NMS, among the candidates of one object. Inside
``with pre_nms_candidates(model):`` an :class:`~dsla_d2.meta_arch.AssignedDenseDetector`
returns, instead of its detections, every candidate that would enter NMS (probability
above ``test_score_thresh``, top ``test_topk_candidates`` per level, boxes clipped),
sorted by score, without NMS and without the ``max_detections_per_image`` cut. The
outputs keep Detectron2's format (``{"instances": Instances}`` rescaled to the input's
height/width), so any ``DatasetEvaluator`` can consume them.

The mechanism is one flag, ``AssignedDenseDetector.pre_nms_output`` (False by default),
read in ``inference_single_image``; this context manager is the only thing meant to set it.
"""
from contextlib import contextmanager

from torch import nn
from torch.nn.parallel import DistributedDataParallel

__all__ = ["pre_nms_candidates"]


@contextmanager
def pre_nms_candidates(model: nn.Module):
    """Switch ``model`` (or the detector inside a ``DistributedDataParallel``) to output
    its pre-NMS candidates for the duration of the ``with`` block."""
    detector = model.module if isinstance(model, DistributedDataParallel) else model
    if not hasattr(detector, "pre_nms_output"):
        raise TypeError(f"{type(detector).__name__} cannot output pre-NMS candidates "
                        "(only dsla_d2's AssignedDenseDetector meta-architectures can)")
    previous = detector.pre_nms_output
    detector.pre_nms_output = True
    try:
        yield model
    finally:
        detector.pre_nms_output = previous
