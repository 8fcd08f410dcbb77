"""The assigner contract: who learns what, from which ground truth, with which weight.

An assigner is called on a whole batch at once::

    assignment = assigner(priors, gt_instances, num_classes, predictions, progress=...)

and returns an :class:`Assignment`. Everything is batched over images (N), priors of all
levels (R) and padded ground truths (G); no Python loop runs over locations or boxes.
``predictions`` are the flattened head outputs and the decoded boxes, **detached** by the
assigner before use: it decides *who* learns *what*; how much each sample weighs, with
gradient, is the loss's business (:mod:`dsla_d2.losses`). Dynamic methods (Dynamic ATSS,
DDOD) read the predictions, static ones ignore them. An assigner needs no model or trainer,
so it can be called on its own in tests, benchmarks and visualisations.

Box targets are absolute XYXY boxes in input-image pixels; the meta-architecture's box
coder turns them into whatever the head regresses.
"""
from dataclasses import dataclass, field
from typing import Dict, List, Mapping, Optional, Tuple

import torch
from torch import Tensor, nn

from detectron2.structures import Instances
from detectron2.utils.registry import Registry

from ..priors import Priors
from ..utils.progress import TrainingProgress
from .pairs import CandidatePairs

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

    Classification and regression have separate positive sets, each with its own matched
    gt, so that methods with disentangled assignments (DDOD) fit; for all others they
    coincide (``reg_matched_gt`` is then the same tensor as ``matched_gt``).

    Attributes:
        labels: (N, R) int64 class of each prior; ``num_classes`` means background.
        cls_scores: (N, R) target score in [0, 1] for the labelled class: 1 for hard
            assignments, a soft static label (DSLA's label_s) otherwise; 0 for background.
            Quality coupling may multiply it by an IoU (DSLA's label_d, Dynamic ATSS).
        cls_weights: (N, R) per-prior weight of the classification loss (1 by default;
            0 to ignore a prior). DDOD's per-level weights are not here: the loss applies
            them (:class:`~dsla_d2.losses.LevelWeighting`).
        reg_mask: (N, R) bool regression positives.
        box_targets: (N, R, 4) absolute XYXY box of the regression ground truth
            (zeros where not ``reg_mask``).
        reg_weights: (N, R) weight of each regression positive (1, centerness, label_s).
        matched_gt: (N, R) int64 index into the image's ``gt_instances`` of the gt a prior
            was assigned to for classification, -1 for background.
        reg_matched_gt: (N, R) int64 index of the regression gt, -1 where not
            ``reg_mask``; defaults to ``matched_gt`` (one matching drives both).
        gt: the padded ground truths the indices refer to (None only for hand-built
            assignments whose two positive sets coincide).
        pairs: sparse (image, prior, gt) candidate pairs handed to the loss (DW's candidate
            bags), or None. Their per-pair tensors are in ``pairs.values``.
        extras: method-specific tensors (e.g. DSLA's static labels, ATSS thresholds).
    """

    labels: Tensor
    cls_scores: Tensor
    cls_weights: Tensor
    reg_mask: Tensor
    box_targets: Tensor
    reg_weights: Tensor
    matched_gt: Tensor
    reg_matched_gt: Optional[Tensor] = None
    gt: Optional[GTBatch] = None
    pairs: Optional[CandidatePairs] = None
    extras: Dict[str, Tensor] = field(default_factory=dict)

    def __post_init__(self):
        if self.reg_matched_gt is None:
            self.reg_matched_gt = self.matched_gt

    @property
    def pos_mask(self) -> Tensor:
        """(N, R) classification positives."""
        return self.matched_gt >= 0

    @property
    def shares_positives(self) -> bool:
        """Whether classification and regression use the same matching."""
        return self.reg_matched_gt is self.matched_gt or torch.equal(self.reg_matched_gt, self.matched_gt)

    def cls_box_targets(self) -> Tensor:
        """(N, R, 4) absolute box of each classification positive's gt (zeros elsewhere).

        Equal to ``box_targets`` when the two positive sets coincide; with disentangled
        assignments (DDOD) a classification-only positive still gets its own gt's box
        (what IoU-coupled classification targets are measured against)."""
        if self.shares_positives:
            return self.box_targets
        if self.gt is None:
            raise ValueError("an Assignment with separate cls/reg matchings needs its GTBatch (Assignment.gt)")
        return _gather_boxes(self.gt, self.matched_gt)

    @classmethod
    def from_matches(
        cls,
        gt: GTBatch,
        matched: Tensor,
        num_classes: int,
        cls_scores: Optional[Tensor] = None,
        reg_weights: Optional[Tensor] = None,
        extras: Optional[Dict[str, Tensor]] = None,
        reg_matched: Optional[Tensor] = None,
        pairs: Optional[CandidatePairs] = None,
    ) -> "Assignment":
        """Build an assignment from per-prior matchings.

        Args:
            gt: padded ground truths.
            matched: (N, R) index of the classification gt per prior, -1 for background.
            cls_scores: (N, R); default 1 on classification positives.
            reg_weights: (N, R); default 1 on regression positives.
            reg_matched: (N, R) index of the regression gt per prior, -1 for none; by
                default the same matching as ``matched`` (every method but DDOD).
            pairs: candidate pairs handed to the loss, if any.
        """
        pos = matched >= 0
        labels = torch.gather(gt.classes, 1, matched.clamp(min=0)) if gt.classes.shape[1] else torch.zeros_like(matched)
        labels = torch.where(pos, labels, torch.full_like(labels, num_classes))
        if reg_matched is None:
            reg_matched = matched
        reg_pos = reg_matched >= 0
        boxes = _gather_boxes(gt, reg_matched)
        cls_scores = _on(pos, cls_scores, boxes.dtype)
        reg_weights = _on(reg_pos, reg_weights, boxes.dtype)
        return cls(
            labels=labels,
            cls_scores=cls_scores,
            cls_weights=torch.ones_like(cls_scores),
            reg_mask=reg_pos,
            box_targets=boxes,
            reg_weights=reg_weights,
            matched_gt=matched,
            reg_matched_gt=reg_matched,
            gt=gt,
            pairs=pairs,
            extras=extras or {},
        )


def _gather_boxes(gt: GTBatch, matched: Tensor) -> Tensor:
    """(N, R, 4) box of the matched gt of each prior, zeros where ``matched`` < 0."""
    if gt.boxes.shape[1]:
        idx = matched.clamp(min=0)
        boxes = torch.gather(gt.boxes, 1, idx[..., None].expand(*idx.shape, 4))
    else:
        boxes = torch.zeros(*matched.shape, 4, device=matched.device)
    return torch.where((matched >= 0)[..., None], boxes, torch.zeros_like(boxes))


def _on(mask: Tensor, values: Optional[Tensor], dtype) -> Tensor:
    """``values`` on ``mask`` and 0 elsewhere; 1 on ``mask`` if ``values`` is None."""
    if values is None:
        return mask.to(dtype)
    return torch.where(mask, values, torch.zeros_like(values))


class DenseAssigner(nn.Module):
    """Base class. Subclasses implement :meth:`assign` on a padded :class:`GTBatch`.

    ``required_predictions`` names the entries of ``predictions`` a subclass reads (e.g.
    ``("pred_boxes",)`` for Dynamic ATSS, ``("pred_boxes", "cls_logits")`` for DDOD).
    """

    required_predictions: Tuple[str, ...] = ()

    def forward(
        self,
        priors: Priors,
        gt_instances: List[Instances],
        num_classes: int,
        predictions: Optional[Mapping[str, Tensor]] = None,
        progress: Optional[TrainingProgress] = None,
    ) -> Assignment:
        """
        Args:
            priors: priors of all levels (R of them).
            gt_instances: per image, ``Instances`` with ``gt_boxes`` and ``gt_classes``.
                Crowd boxes are expected to have been removed by the dataset mapper, as
                Detectron2's ``DatasetMapper`` does.
            num_classes: number of foreground classes (the background label).
            predictions: the model's flattened outputs, (N, R, K) each: ``"pred_boxes"``
                (decoded XYXY boxes), ``"cls_logits"``, ``"box_reg"`` and any other head
                output. Detached here; only ``required_predictions`` must be present.
            progress: where training is, for assigners that change over training
                (Dynamic ATSS's D_up / D_down); None outside a trainer.
        """
        predictions = {k: v.detach() for k, v in (predictions or {}).items()}
        missing = [k for k in self.required_predictions if k not in predictions]
        if missing:
            raise ValueError(f"{type(self).__name__} needs the predictions {missing}; got {sorted(predictions)}")
        gt = GTBatch.from_instances(gt_instances, device=priors.points.device)
        with torch.no_grad():
            return self.assign(priors, gt, num_classes, predictions=predictions, progress=progress)

    def assign(
        self,
        priors: Priors,
        gt: GTBatch,
        num_classes: int,
        predictions: Mapping[str, Tensor],
        progress: Optional[TrainingProgress] = None,
    ) -> Assignment:
        raise NotImplementedError
