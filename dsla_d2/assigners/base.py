"""The assigner contract: who learns what, from which ground truth, with which weight.

An assigner is called on a whole batch at once::

    assignment = assigner(priors, gt, num_classes, pred_boxes=..., pred_logits=...)

and returns an :class:`Assignment`. Everything is batched over images (N), priors of all
levels (R) and padded ground truths (G); no Python loop runs over locations or boxes.
Predictions handed to an assigner are **detached** (dynamic methods such as DSLA's IoU
coupling, Dynamic ATSS and DDOD read them; static ones ignore them). An assigner needs no
model or trainer, so it can be called on its own in tests, benchmarks and visualisations.

Box targets are absolute XYXY boxes in input-image pixels; the meta-architecture's box
coder turns them into whatever the head regresses.
"""
from dataclasses import dataclass, field
from typing import Dict, List, Optional

import torch
from torch import Tensor, nn

from detectron2.structures import Instances
from detectron2.utils.registry import Registry

from ..priors import Priors
from ..utils.progress import TrainingProgress

__all__ = ["ASSIGNER_REGISTRY", "Assignment", "GTBatch", "DenseAssigner"]

ASSIGNER_REGISTRY = Registry("DSLA_D2_ASSIGNER")
ASSIGNER_REGISTRY.__doc__ = "Label assigners of dsla_d2 (FCOS, DSLA, ATSS, FoveaBox, ...)."


@dataclass
class GTBatch:
    """Ground truths of a batch padded to the largest count.

    Attributes:
        boxes: (N, G, 4) XYXY; padding rows are zeros.
        classes: (N, G) int64; padding is -1.
        valid: (N, G) bool; False for padding and for degenerate boxes (zero width/height).
    """

    boxes: Tensor
    classes: Tensor
    valid: Tensor

    @classmethod
    def from_instances(cls, gt_instances: List[Instances], device=None) -> "GTBatch":
        """Pad ``gt_boxes``/``gt_classes`` of each image; drop nothing, mark degenerate."""
        n = len(gt_instances)
        g = max([len(x) for x in gt_instances] + [0])
        if device is None:
            device = gt_instances[0].gt_boxes.device if n else torch.device("cpu")
        boxes = torch.zeros(n, g, 4, device=device)
        classes = torch.full((n, g), -1, dtype=torch.long, device=device)
        for i, inst in enumerate(gt_instances):  # loop over images only, to pad
            k = len(inst)
            if k:
                boxes[i, :k] = inst.gt_boxes.tensor.to(device=device, dtype=boxes.dtype)
                classes[i, :k] = inst.gt_classes.to(device)
        finite = torch.isfinite(boxes).all(dim=-1)
        boxes = torch.where(finite[..., None], boxes, torch.zeros_like(boxes))
        wh = boxes[..., 2:] - boxes[..., :2]
        valid = (classes >= 0) & finite & (wh > 0).all(dim=-1)
        return cls(boxes, classes, valid)

    @property
    def areas(self) -> Tensor:
        wh = (self.boxes[..., 2:] - self.boxes[..., :2]).clamp(min=0)
        return wh[..., 0] * wh[..., 1]

    @property
    def centers(self) -> Tensor:
        return (self.boxes[..., :2] + self.boxes[..., 2:]) / 2


@dataclass
class Assignment:
    """Targets for every prior of every image.

    Classification and regression have separate positive sets so that methods with
    disentangled assignments (DDOD) fit; for all others they coincide.

    Attributes:
        labels: (N, R) int64 class of each prior; ``num_classes`` means background.
        cls_scores: (N, R) target score in [0, 1] for the labelled class: 1 for hard
            assignments, a soft static label (DSLA's label_s) otherwise; 0 for background.
            Quality coupling may multiply it by an IoU (DSLA's label_d, Dynamic ATSS).
        cls_weights: (N, R) per-prior weight of the classification loss (1 by default;
            0 to ignore a prior; per-level weights for DDOD's hierarchical loss).
        reg_mask: (N, R) bool regression positives.
        box_targets: (N, R, 4) absolute XYXY box of the regression ground truth
            (zeros where not ``reg_mask``).
        reg_weights: (N, R) weight of each regression positive (1, centerness, label_s).
        matched_gt: (N, R) int64 index into the image's ``gt_instances`` of the gt a prior
            was assigned to for classification, -1 for background.
        extras: method-specific tensors (e.g. DSLA's static labels, ATSS thresholds).
    """

    labels: Tensor
    cls_scores: Tensor
    cls_weights: Tensor
    reg_mask: Tensor
    box_targets: Tensor
    reg_weights: Tensor
    matched_gt: Tensor
    extras: Dict[str, Tensor] = field(default_factory=dict)

    @property
    def pos_mask(self) -> Tensor:
        """(N, R) classification positives."""
        return self.matched_gt >= 0

    @classmethod
    def from_matches(
        cls,
        gt: GTBatch,
        matched: Tensor,
        num_classes: int,
        cls_scores: Optional[Tensor] = None,
        reg_weights: Optional[Tensor] = None,
        extras: Optional[Dict[str, Tensor]] = None,
    ) -> "Assignment":
        """Build an assignment where one matching drives classification and regression.

        Args:
            gt: padded ground truths.
            matched: (N, R) index of the matched gt per prior, -1 for background.
            cls_scores / reg_weights: (N, R); default 1 on positives.
        """
        pos = matched >= 0
        idx = matched.clamp(min=0)
        labels = torch.gather(gt.classes, 1, idx) if gt.classes.shape[1] else torch.zeros_like(idx)
        labels = torch.where(pos, labels, torch.full_like(labels, num_classes))
        if gt.boxes.shape[1]:
            boxes = torch.gather(gt.boxes, 1, idx[..., None].expand(*idx.shape, 4))
        else:
            boxes = torch.zeros(*idx.shape, 4, device=idx.device)
        boxes = torch.where(pos[..., None], boxes, torch.zeros_like(boxes))
        ones = pos.to(boxes.dtype)
        cls_scores = ones if cls_scores is None else torch.where(pos, cls_scores, torch.zeros_like(cls_scores))
        reg_weights = ones if reg_weights is None else torch.where(pos, reg_weights, torch.zeros_like(reg_weights))
        return cls(
            labels=labels,
            cls_scores=cls_scores,
            cls_weights=torch.ones_like(ones),
            reg_mask=pos,
            box_targets=boxes,
            reg_weights=reg_weights,
            matched_gt=matched,
            extras=extras or {},
        )


class DenseAssigner(nn.Module):
    """Base class. Subclasses implement :meth:`assign` on a padded :class:`GTBatch`."""

    #: Whether this assigner reads the (detached) predicted boxes / class logits.
    needs_predictions = False

    def forward(
        self,
        priors: Priors,
        gt_instances: List[Instances],
        num_classes: int,
        pred_boxes: Optional[Tensor] = None,
        pred_logits: Optional[Tensor] = None,
        progress: Optional[TrainingProgress] = None,
    ) -> Assignment:
        """
        Args:
            priors: priors of all levels (R of them).
            gt_instances: per image, ``Instances`` with ``gt_boxes`` and ``gt_classes``.
                Crowd boxes are expected to have been removed by the dataset mapper, as
                Detectron2's ``DatasetMapper`` does.
            num_classes: number of foreground classes (the background label).
            pred_boxes: (N, R, 4) decoded predicted boxes, detached.
            pred_logits: (N, R, C) classification logits, detached.
            progress: where training is, for assigners that change over training
                (Dynamic ATSS's D_up / D_down); None outside a trainer.
        """
        gt = GTBatch.from_instances(gt_instances, device=priors.points.device)
        if self.needs_predictions:
            if pred_boxes is None:
                raise ValueError(f"{type(self).__name__} needs the predicted boxes")
            pred_boxes = pred_boxes.detach()
            pred_logits = None if pred_logits is None else pred_logits.detach()
        with torch.no_grad():
            return self.assign(priors, gt, num_classes, pred_boxes=pred_boxes, pred_logits=pred_logits, progress=progress)

    def assign(self, priors: Priors, gt: GTBatch, num_classes: int, **preds) -> Assignment:
        raise NotImplementedError
