"""A dense detector assembled from swappable parts.

``AssignedDenseDetector`` = backbone + FPN + head + priors + box coder + **assigner** +
**quality coupling** + losses. The meta-architecture only wires them together; a paper's
method is a choice of parts in a config file. Training, for all images and levels at once:

1. the head gives per-level maps, flattened to (N, R, K) with levels concatenated;
2. the box coder decodes the regression output into absolute boxes (N, R, 4);
3. the assigner, given the priors, the gts and the detached predictions, returns an
   :class:`~dsla_d2.assigners.Assignment`;
4. the quality coupling turns it into classification targets (possibly IoU-coupled) and,
   if the head has a quality branch, that branch's loss;
5. :class:`~dsla_d2.losses.DenseDetectionLoss` computes the classification and box losses.
"""
import logging
from typing import Dict, List

import torch
from torch import Tensor, nn

from detectron2.config import configurable
from detectron2.layers import batched_nms
from detectron2.modeling.meta_arch.dense_detector import DenseDetector, permute_to_N_HWA_K
from detectron2.structures import Boxes, ImageList, Instances

from ..assigners.base import DenseAssigner
from ..assigners.geometry import aligned_box_iou
from ..losses.dense_loss import DenseDetectionLoss
from ..losses.normalizers import put_scalar
from ..priors import PriorGenerator, Priors
from ..quality.coupling import QualityCoupling

__all__ = ["AssignedDenseDetector"]

logger = logging.getLogger(__name__)


class AssignedDenseDetector(DenseDetector):
    """
    Args:
        backbone: a Detectron2 ``Backbone`` (e.g. ResNet+FPN).
        head: a module mapping the ``head_in_features`` to a dict of per-level outputs
            ("cls_logits", "box_reg", optionally "quality"), see :mod:`dsla_d2.heads`.
        head_in_features: backbone outputs fed to the head, in stride order.
        prior_generator: :class:`~dsla_d2.priors.PriorGenerator`.
        box_coder: decodes "box_reg" into XYXY boxes (and encodes targets).
        assigner: a :class:`~dsla_d2.assigners.DenseAssigner`.
        quality: a :class:`~dsla_d2.quality.QualityCoupling`.
        loss: a :class:`~dsla_d2.losses.DenseDetectionLoss`.
        num_classes: number of foreground classes.
        test_score_thresh: class probability a candidate must exceed (before the quality
            factor is applied).
        test_topk_candidates: candidates kept per level before NMS.
        test_nms_thresh: IoU threshold of the class-aware NMS.
        max_detections_per_image: detections kept after NMS.
        input_format, pixel_mean, pixel_std: as Detectron2's dense detectors.
    """

    #: True: inference returns every candidate that would enter NMS, sorted by score,
    #: without NMS or the max_detections_per_image cut (see dsla_d2/evaluation/candidates.py).
    pre_nms_output: bool = False

    @configurable
    def __init__(
        self,
        *,
        backbone,
        head: nn.Module,
        head_in_features: List[str],
        prior_generator: PriorGenerator,
        box_coder,
        assigner: DenseAssigner,
        quality: QualityCoupling,
        loss: DenseDetectionLoss,
        num_classes: int,
        test_score_thresh: float = 0.05,
        test_topk_candidates: int = 1000,
        test_nms_thresh: float = 0.6,
        max_detections_per_image: int = 100,
        input_format: str = "BGR",
        pixel_mean=(103.53, 116.28, 123.675),
        pixel_std=(1.0, 1.0, 1.0),
    ):
        super().__init__(backbone, head, head_in_features, pixel_mean=pixel_mean, pixel_std=pixel_std)
        self.prior_generator = prior_generator
        self.box_coder = box_coder
        self.assigner = assigner
        self.quality = quality
        self.loss = loss
        self.num_classes = num_classes
        self.test_score_thresh = test_score_thresh
        self.test_topk_candidates = test_topk_candidates
        self.test_nms_thresh = test_nms_thresh
        self.max_detections_per_image = max_detections_per_image
        self.input_format = input_format
        head_has_quality = getattr(head, "quality_branch", None) is not None
        if quality.branch is not None and not head_has_quality:
            raise ValueError(f"quality coupling '{quality.branch}' needs a head with a quality branch")
        if quality.branch is None and head_has_quality:
            raise ValueError("the head has a quality branch but the quality coupling has none")

    @classmethod
    def from_config(cls, cfg):
        """Build from a yacs ``CfgNode`` made by :func:`dsla_d2.serving.lazy_to_yacs`.

        The lazy config's ``model`` node is carried verbatim (as YAML) in
        ``cfg.MODEL.DSLA_D2.LAZY_MODEL``, so ``DefaultPredictor`` builds exactly the
        trained model without a second description of it.
        """
        from ..serving import lazy_model_kwargs

        return lazy_model_kwargs(cfg)

    # ------------------------------------------------------------------ shared steps
    def flatten_predictions(self, predictions: Dict[str, List[Tensor]]) -> Dict[str, Tensor]:
        """Per-level (N, K, Hi, Wi) maps -> (N, R, K), levels concatenated, float32."""
        out = {}
        for name, maps in predictions.items():
            k = maps[0].shape[1]
            out[name] = torch.cat([permute_to_N_HWA_K(m, k) for m in maps], dim=1).float()
        return out

    def decode(self, predictions: Dict[str, List[Tensor]], features: List[Tensor]):
        priors = self.prior_generator(features)
        preds = self.flatten_predictions(predictions)
        pred_boxes = self.box_coder.decode(preds["box_reg"], priors)
        return priors, preds, pred_boxes

    # ------------------------------------------------------------------ training
    def forward_training(self, images: ImageList, features, predictions, gt_instances: List[Instances]):
        priors, preds, pred_boxes = self.decode(predictions, features)
        assignment = self.assigner(
            priors,
            gt_instances,
            self.num_classes,
            pred_boxes=pred_boxes.detach(),
            pred_logits=preds["cls_logits"].detach(),
        )
        # IoU of each regression positive's detached prediction with its target: the
        # quality coupling's input (DSLA label_d, Dynamic ATSS soft targets, IoU branch),
        # and a training statistic. It never carries gradient.
        with torch.no_grad():
            ious = aligned_box_iou(pred_boxes.detach(), assignment.box_targets)
            ious = torch.where(assignment.reg_mask, ious, torch.zeros_like(ious))
        target_scores = self.quality.classification_targets(assignment, ious)
        losses = self.loss(
            preds["cls_logits"], pred_boxes, preds["box_reg"], assignment, target_scores, self.box_coder, priors
        )
        if self.quality.branch is not None:
            losses["loss_quality"] = self.quality.branch_loss(preds["quality"][..., 0], priors, assignment, ious)
        if assignment.reg_mask.any():
            put_scalar("mean_pos_iou", ious[assignment.reg_mask].mean())
        return losses

    # ------------------------------------------------------------------ inference
    def forward_inference(self, images: ImageList, features, predictions) -> List[Instances]:
        priors, preds, pred_boxes = self.decode(predictions, features)
        probs = preds["cls_logits"].sigmoid()
        scores = self.quality.inference_scores(preds["cls_logits"], preds.get("quality"))
        return [
            self.inference_single_image(priors, probs[i], scores[i], pred_boxes[i], image_size)
            for i, image_size in enumerate(images.image_sizes)
        ]

    def inference_single_image(self, priors: Priors, probs: Tensor, scores: Tensor, boxes: Tensor, image_size) -> Instances:
        """
        Args:
            probs: (R, C) class probabilities (thresholded).
            scores: (R, C) final scores (probabilities × quality), used for ranking.
            boxes: (R, 4) decoded boxes.
        """
        kept_boxes, kept_scores, kept_classes = [], [], []
        for p, s, b in zip(priors.split(probs, 0), priors.split(scores, 0), priors.split(boxes, 0)):
            s = torch.where(p > self.test_score_thresh, s, torch.full_like(s, -1.0)).flatten()
            k = min(self.test_topk_candidates, s.numel())
            top, idx = s.topk(k)
            keep = top >= 0
            top, idx = top[keep], idx[keep]
            kept_scores.append(top)
            kept_boxes.append(b[idx // self.num_classes])
            kept_classes.append(idx % self.num_classes)
        boxes = Boxes(torch.cat(kept_boxes))
        boxes.clip(image_size)
        scores = torch.cat(kept_scores)
        classes = torch.cat(kept_classes)
        if self.pre_nms_output:  # set by dsla_d2.evaluation.pre_nms_candidates only
            keep = scores.argsort(descending=True)
        else:
            keep = batched_nms(boxes.tensor, scores, classes, self.test_nms_thresh)[: self.max_detections_per_image]
        result = Instances(image_size)
        result.pred_boxes = boxes[keep]
        result.scores = scores[keep]
        result.pred_classes = classes[keep]
        return result
