"""Test-time augmentation for any :class:`~dsla_d2.meta_arch.AssignedDenseDetector`.

``DenseDetectorWithTTA(model, min_sizes=(...), max_size=..., flip=True)`` is called like
the detector itself (a list of Detectron2 input dicts in, ``[{"instances": Instances}]``
in the original image size out), so it works with ``inference_on_dataset`` and every
``DatasetEvaluator``. For each image:

1. **Augmented inputs**, as Detectron2's ``DatasetMapperTTA``: the image resized to each
   shortest edge of ``min_sizes`` (longer side capped at ``max_size``; no side below one
   pixel), and, with ``flip``, each of them mirrored horizontally. An input whose image is
   not at its ``height``/``width`` (a test loader that already resized it) is mapped from
   that original size first, as ``DatasetMapperTTA``'s pre-transform does.
2. **Candidates**: each augmented image goes through the detector's backbone, head and
   decoding (``forward_inference``) in its pre-NMS mode (``pre_nms_output``, see
   :mod:`dsla_d2.evaluation.candidates`), one image per forward pass, as the test loader
   feeds plain inference: the detector's own candidate selection (score threshold, top-k
   per level, ``test_topk_mode``/``test_topk_rank``, box clipping, ``test_min_box_size``)
   applies to every augmented image unchanged.
3. **Back to the original frame**: the inverse of each augmentation's transforms (undo the
   flip in the resized frame, then the resize) is applied to the candidate boxes, which
   are then clipped to the original image.
4. **One merge**: all candidates of all augmented images, with their own scores, go
   through ONE class-aware NMS at the detector's ``test_nms_thresh``, and the
   ``max_detections_per_image`` best are kept (mmdetection's ``DetTTAModel`` merges with
   one class-aware NMS and its ``max_per_img`` too, though over each augmented image's
   post-NMS detections; boxes are not averaged in either). As in plain inference, boxes
   left empty are dropped after that cut (``detector_postprocess``).

With ``pre_nms_output`` set on the wrapper (``with pre_nms_candidates(tta_model):``) step
4 returns every merged candidate sorted by score, without the NMS and the cut.

A TTA of one augmentation that reproduces the test loader's input (``min_sizes`` = its
shortest edge, same ``max_size``, no flip) returns plain inference's detections; the only
difference is that NMS runs in the original frame instead of the resized one, which
changes IoUs only where rounding made the resize anisotropic (by < 1 px / side).
"""
import copy
import logging
from typing import Dict, List, Sequence

import numpy as np
import torch
from fvcore.transforms import HFlipTransform, NoOpTransform, TransformList
from PIL import Image
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from detectron2.data.detection_utils import read_image
from detectron2.data.transforms import ResizeShortestEdge, ResizeTransform
from detectron2.layers import batched_nms
from detectron2.structures import Boxes, Instances

from .base import AssignedDenseDetector

__all__ = ["DenseDetectorWithTTA", "tta_transforms"]

logger = logging.getLogger(__name__)


def _check_settings(min_sizes, max_size, flip):
    sizes = list(min_sizes) if isinstance(min_sizes, (list, tuple)) or hasattr(min_sizes, "__iter__") else None
    if not sizes or any(isinstance(s, bool) or not isinstance(s, (int, np.integer)) or s < 1 for s in sizes):
        raise ValueError(f"TTA min_sizes={min_sizes!r}: expected a non-empty list of positive integers (shortest edges)")
    if isinstance(max_size, bool) or not isinstance(max_size, (int, np.integer)) or max_size < 1:
        raise ValueError(f"TTA max_size={max_size!r}: expected a positive integer")
    if not isinstance(flip, bool):
        raise ValueError(f"TTA flip={flip!r}: expected True or False")
    return [int(s) for s in sizes], int(max_size), flip


def tta_transforms(height: int, width: int, input_hw, min_sizes: Sequence[int], max_size: int, flip: bool,
                   interp=Image.BILINEAR):
    """``(pre, augmentations)`` for an input image of size ``input_hw`` whose original size
    is (``height``, ``width``): ``pre`` maps the original frame to the input's (a no-op when
    they are equal, as ``DatasetMapperTTA``'s pre-transform), and each augmentation (a
    ``TransformList`` applied to the input image) resizes to one shortest edge, then flips;
    in ``DatasetMapperTTA``'s order (per size: unflipped, then flipped). Boxes of an
    augmented image go back to the original frame by ``(pre + augmentation).inverse()``."""
    h, w = int(input_hw[0]), int(input_hw[1])
    pre = ResizeTransform(height, width, h, w, interp) if (h, w) != (height, width) else NoOpTransform()
    augmentations = []
    for size in min_sizes:
        new_h, new_w = ResizeShortestEdge.get_output_shape(h, w, size, max_size)
        new_h, new_w = max(1, new_h), max(1, new_w)  # never a side of 0 pixels
        resize = ResizeTransform(h, w, new_h, new_w, interp)
        augmentations.append(TransformList([resize]))
        if flip:
            augmentations.append(TransformList([resize, HFlipTransform(new_w)]))
    return pre, augmentations


class DenseDetectorWithTTA(nn.Module):
    """Multi-scale and horizontal-flip test-time augmentation of a dense detector (see
    the module docstring for what is merged and how).

    Args:
        model: an :class:`AssignedDenseDetector` (or a ``DistributedDataParallel`` of one),
            in eval mode when called.
        min_sizes: shortest edges of the augmented images (Detectron2's
            ``TEST.AUG.MIN_SIZES``).
        max_size: cap of their longer side (``TEST.AUG.MAX_SIZE``).
        flip: also run each size mirrored horizontally (``TEST.AUG.FLIP``).
    """

    #: True: return every merged candidate sorted by score, without the final NMS and the
    #: max_detections_per_image cut (set by dsla_d2.evaluation.pre_nms_candidates only).
    pre_nms_output: bool = False

    def __init__(self, model: nn.Module, min_sizes: Sequence[int] = (400, 500, 600, 700, 800, 900, 1000, 1100, 1200),
                 max_size: int = 4000, flip: bool = True):
        super().__init__()
        if isinstance(model, DistributedDataParallel):
            model = model.module
        if not isinstance(model, AssignedDenseDetector):
            raise TypeError(f"DenseDetectorWithTTA wraps an AssignedDenseDetector, got {type(model).__name__}")
        self.model = model
        self.training = model.training  # the mode inference_context restores after evaluating
        self.min_sizes, self.max_size, self.flip = _check_settings(min_sizes, max_size, flip)

    def extra_repr(self) -> str:
        return f"min_sizes={self.min_sizes}, max_size={self.max_size}, flip={self.flip}"

    # ------------------------------------------------------------------ steps
    def _read(self, inp: Dict) -> Dict:
        """``inp`` with an ``image`` (read from ``file_name`` if absent) and its original
        ``height``/``width`` (the image's size if absent)."""
        inp = copy.copy(inp)
        if "image" not in inp:
            image = read_image(inp["file_name"], self.model.input_format)
            inp["image"] = torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1)))
        if "height" not in inp or "width" not in inp:
            inp["height"], inp["width"] = inp["image"].shape[1:3]
        return inp

    def augmented_inputs(self, inp: Dict):
        """[(CHW image tensor, TransformList from the original image to it)], one per
        augmentation."""
        inp = self._read(inp)
        array = inp["image"].permute(1, 2, 0).cpu().numpy()
        pre, augmentations = tta_transforms(int(inp["height"]), int(inp["width"]), array.shape[:2],
                                            self.min_sizes, self.max_size, self.flip)
        out = []
        for aug in augmentations:
            pixels = aug.apply_image(array)
            out.append((torch.from_numpy(np.ascontiguousarray(pixels.transpose(2, 0, 1))), pre + aug))
        return out

    def _pass(self, image: torch.Tensor) -> Instances:
        """The detector's pre-NMS candidates of one image, in that image's frame."""
        model = self.model
        previous = model.pre_nms_output
        model.pre_nms_output = True
        try:
            images = model.preprocess_image([{"image": image}])
            features = model.backbone(images.tensor)
            features = [features[f] for f in model.head_in_features]
            predictions = model.head(features)
            return model.forward_inference(images, features, predictions)[0]
        finally:
            model.pre_nms_output = previous

    def candidates(self, inp: Dict) -> List[Instances]:
        """Per augmentation, the detector's pre-NMS candidates mapped back to the original
        image (``Instances`` of the original size; boxes clipped to it, empty ones kept)."""
        inp = self._read(inp)
        size = (int(inp["height"]), int(inp["width"]))
        out = []
        for image, tfm in self.augmented_inputs(inp):
            found = self._pass(image)
            boxes = found.pred_boxes.tensor
            back = tfm.inverse().apply_box(boxes.detach().cpu().numpy()) if len(boxes) else np.zeros((0, 4), np.float32)
            boxes = Boxes(torch.as_tensor(np.asarray(back, dtype=np.float32), device=boxes.device).reshape(-1, 4))
            boxes.clip(size)
            result = Instances(size)
            result.pred_boxes = boxes
            result.scores = found.scores
            result.pred_classes = found.pred_classes
            out.append(result)
        return out

    def merge(self, candidates: List[Instances], image_size) -> Instances:
        """One class-aware NMS over the candidates of every augmentation (the detector's
        ``test_nms_thresh``), the ``max_detections_per_image`` best kept, empty boxes
        dropped after that cut."""
        merged = Instances.cat(candidates) if len(candidates) > 1 else candidates[0]
        boxes, scores, classes = merged.pred_boxes.tensor, merged.scores, merged.pred_classes
        if self.pre_nms_output:
            keep = scores.argsort(descending=True)
        else:
            keep = batched_nms(boxes, scores, classes, self.model.test_nms_thresh)[: self.model.max_detections_per_image]
        result = Instances(tuple(image_size))
        result.pred_boxes = Boxes(boxes[keep])
        result.scores = scores[keep]
        result.pred_classes = classes[keep]
        return result[result.pred_boxes.nonempty()]

    # ------------------------------------------------------------------ call
    def forward(self, batched_inputs: List[Dict]):
        if self.model.training:
            raise RuntimeError("DenseDetectorWithTTA is for inference: call .eval() first")
        outputs = []
        with torch.no_grad():
            for inp in batched_inputs:
                inp = self._read(inp)
                size = (int(inp["height"]), int(inp["width"]))
                outputs.append({"instances": self.merge(self.candidates(inp), size)})
        return outputs
