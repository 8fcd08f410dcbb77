"""What the assigner and the loss make of a batch, through the model's own methods.

:func:`assign_inputs` runs a model's network and then exactly the assignment step of its
training (``AssignedDenseDetector.assign_batch``, which ``forward_training`` calls) and the
loss's own target computation (``describe_targets``): nothing here re-implements an
assignment, so what is drawn or counted is what training uses.
"""
from dataclasses import dataclass
from typing import Dict, List

import numpy as np
import torch
from torch import Tensor

from detectron2.data.detection_utils import convert_image_to_rgb

from ..assigners.base import Assignment
from ..priors import Priors

__all__ = ["BatchAssignment", "ImageAssignment", "assign_inputs"]


@dataclass
class ImageAssignment:
    """One image's assignment as numpy arrays, for drawing.

    Attributes:
        pixels: (H, W, 3) uint8 RGB network input (resized, unpadded).
        gt_boxes: (G, 4) XYXY boxes of the image's valid gts, in input pixels.
        gt_classes: (G,) their classes.
        gt_index: (G,) their index in the image's gt list (what ``matched_gt`` refers to).
        points: (R, 2) prior points; strides (R,); levels (R,) level index.
        level_names: name of each level (the head's input features).
        cls_target: (R,) classification target of the labelled class (0 on background).
        matched_gt: (R,) classification gt index, -1 for background.
        reg_mask: (R,) bool regression positives; reg_matched_gt (R,) their gt, -1 elsewhere.
        cls_weight, reg_weight: (R,) classification-loss and box-loss weights.
    """

    pixels: np.ndarray
    gt_boxes: np.ndarray
    gt_classes: np.ndarray
    gt_index: np.ndarray
    points: np.ndarray
    strides: np.ndarray
    levels: np.ndarray
    level_names: List[str]
    cls_target: np.ndarray
    matched_gt: np.ndarray
    reg_mask: np.ndarray
    reg_matched_gt: np.ndarray
    cls_weight: np.ndarray
    reg_weight: np.ndarray

    @property
    def cls_positive(self) -> np.ndarray:
        """(R,) bool classification positives."""
        return self.matched_gt >= 0

    @property
    def reg_differs(self) -> np.ndarray:
        """(R,) bool regression positives whose regression gt is not their classification
        gt (regression-only positives included): only disentangled assigners (DDOD)."""
        return self.reg_mask & (self.reg_matched_gt != self.matched_gt)


@dataclass
class BatchAssignment:
    """What the assigner and the loss made of N images.

    Attributes:
        priors: the R priors (levels concatenated).
        assignment: the assigner's :class:`~dsla_d2.assigners.Assignment`.
        targets: the loss's ``describe_targets`` (N, R) tensors (``"cls_target"``,
            ``"reg_weight"``, ...).
        level_names: one name per level (the head's input features).
        pixels: per image, (H_i, W_i, 3) uint8 RGB network input, unpadded.
    """

    priors: Priors
    assignment: Assignment
    targets: Dict[str, Tensor]
    level_names: List[str]
    pixels: List[np.ndarray]

    def __len__(self) -> int:
        return len(self.pixels)

    def image(self, i: int) -> ImageAssignment:
        a, gt = self.assignment, self.assignment.gt
        valid = gt.valid[i]
        cpu = lambda t: t.detach().cpu().numpy()  # noqa: E731
        return ImageAssignment(
            pixels=self.pixels[i],
            gt_boxes=cpu(gt.boxes[i][valid]),
            gt_classes=cpu(gt.classes[i][valid]),
            gt_index=cpu(valid.nonzero().squeeze(1)),
            points=cpu(self.priors.points),
            strides=cpu(self.priors.strides),
            levels=cpu(self.priors.levels),
            level_names=list(self.level_names),
            cls_target=cpu(self.targets["cls_target"][i]).astype(np.float64),
            matched_gt=cpu(a.matched_gt[i]),
            reg_mask=cpu(a.reg_mask[i]).astype(bool),
            reg_matched_gt=cpu(a.reg_matched_gt[i]),
            cls_weight=cpu(a.cls_weights[i]),
            reg_weight=cpu(self.targets["reg_weight"][i]),
        )


def assign_inputs(model, batched_inputs: List[dict]) -> BatchAssignment:
    """The assignment and the loss's targets of a training step on mapped inputs.

    Calls, in order and without gradient: ``model.preprocess_image``, ``model.backbone``
    and ``model.head`` (as Detectron2's ``DenseDetector.forward``), ``model.assign_batch``
    (as ``forward_training``) and ``model.loss.describe_targets``. The network runs in the
    mode the model is in (``eval()``: BatchNorm uses its running statistics).

    Args:
        model: an :class:`~dsla_d2.meta_arch.AssignedDenseDetector`.
        batched_inputs: dataset-mapper outputs with ``"image"`` and ``"instances"``.
    """
    no_gt = [i for i, x in enumerate(batched_inputs) if "instances" not in x]
    if no_gt:
        raise ValueError(f"inputs {no_gt} have no 'instances': map them with is_train=True to keep the annotations")
    if not callable(getattr(model.loss, "describe_targets", None)):
        raise TypeError(f"{type(model.loss).__name__} has no describe_targets (required by the loss contract)")
    with torch.no_grad():
        images = model.preprocess_image(batched_inputs)
        features = model.backbone(images.tensor)
        features = [features[f] for f in model.head_in_features]
        predictions = model.head(features)
        gts = [x["instances"].to(model.device) for x in batched_inputs]
        priors, outputs, assignment = model.assign_batch(features, predictions, gts)
        parts = {"box_coder": model.box_coder, "quality": model.quality}
        targets = model.loss.describe_targets(outputs, priors, assignment, **parts)
    pixels = [
        np.ascontiguousarray(convert_image_to_rgb(x["image"].permute(1, 2, 0), model.input_format)).astype(np.uint8)
        for x in batched_inputs
    ]
    return BatchAssignment(priors, assignment, targets, list(model.head_in_features), pixels)
