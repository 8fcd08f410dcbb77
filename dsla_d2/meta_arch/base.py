"""A dense detector assembled from swappable parts.

``AssignedDenseDetector`` = backbone + FPN + head + priors + box coder + **assigner** +
**quality coupling** + losses. The meta-architecture only wires them together; a paper's
method is a choice of parts in a config file. Training, for all images and levels at once:

1. the head gives per-level maps, flattened to (N, R, K) with levels concatenated;
2. the box coder decodes the regression output into absolute boxes (N, R, 4);
3. the assigner, given the priors, the gts, the detached outputs and the training
   progress, returns an :class:`~dsla_d2.assigners.Assignment` (who learns what);
4. the loss, given every output with gradient, the priors, the assignment, the box coder
   and the quality coupling, returns every loss term (how much each sample counts).
"""
import logging
from typing import Dict, List, Optional

import torch
from torch import Tensor, nn

from detectron2.config import configurable
from detectron2.layers import batched_nms
from detectron2.modeling.meta_arch.dense_detector import DenseDetector, permute_to_N_HWA_K
from detectron2.structures import Boxes, ImageList, Instances

from ..assigners.base import DenseAssigner
from ..losses.dense_loss import DenseDetectionLoss
from ..priors import PriorGenerator, Priors
from ..quality.coupling import QualityCoupling
from ..utils.progress import TrainingProgress
from .agreement import check_parts_agree
from .yacs_bridge import lazy_model_kwargs

__all__ = ["AssignedDenseDetector", "TOPK_MODES", "TOPK_RANKS", "BOX_CLIPS"]

#: Per-level candidate selection at inference (``test_topk_mode``): the top-k
#: (location, class) pairs above the threshold (Detectron2's RetinaNet/FCOS, mmdetection
#: 3.x's ``filter_scores_and_topk``), or the top-k locations by their best value over the
#: classes, every class above the threshold at those locations then kept (mmdetection 2.x
#: heads: ``max(dim=1)`` then ``topk``; the DSLA and DDOD authors' code).
TOPK_MODES = ("pairs", "locations")
#: What ranks those candidates (``test_topk_rank``): "score", the final score (class
#: probability × quality: Detectron2, mmdetection 2.x FCOS/ATSS ``(scores * centerness)``),
#: or "cls", the class probability alone (mmdetection 3.x, which multiplies by the quality
#: after the top-k; the DDOD authors' code).
TOPK_RANKS = ("score", "cls")
#: Where decoded boxes are clipped (``test_box_clip``): "edges", to [0, W] x [0, H]
#: (Detectron2's ``Boxes.clip``, mmdetection's point and delta coders), or "last_pixel", to
#: [0, W - 1] x [0, H - 1] (mmdetection's FoveaHead).
BOX_CLIPS = ("edges", "last_pixel")

logger = logging.getLogger(__name__)


class AssignedDenseDetector(DenseDetector):
    """
    Args:
        backbone: a Detectron2 ``Backbone`` (e.g. ResNet+FPN).
        head: a module mapping the ``head_in_features`` to a dict of per-level outputs
            ("cls_logits", "box_reg", optionally "quality" and others), see
            :mod:`dsla_d2.heads`.
        head_in_features: backbone outputs fed to the head, in stride order.
        prior_generator: :class:`~dsla_d2.priors.PriorGenerator`.
        box_coder: decodes "box_reg" into XYXY boxes (and encodes targets).
        assigner: a :class:`~dsla_d2.assigners.DenseAssigner`.
        quality: a :class:`~dsla_d2.quality.QualityCoupling`.
        loss: a loss module following the loss contract (:mod:`dsla_d2.losses`), e.g.
            :class:`~dsla_d2.losses.DenseDetectionLoss`.
        num_classes: number of foreground classes.
        test_score_thresh: threshold a candidate must exceed: the class probability, or
            the final score, per ``quality.threshold_on``.
        test_topk_candidates: candidates kept per level before NMS.
        test_topk_mode: "pairs" (top-k (location, class) pairs) or "locations" (top-k
            locations by their best class score), see :data:`TOPK_MODES`.
        test_topk_rank: what ranks the candidates: "score" or "cls", see :data:`TOPK_RANKS`.
        test_box_clip: "edges" or "last_pixel", see :data:`BOX_CLIPS`.
        test_min_box_size: None keeps every candidate; a number drops candidates whose
            clipped width or height is not above it before NMS (mmdetection's
            ``min_bbox_size``; 0 drops boxes that clipping flattened to zero).
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
        test_topk_mode: str = "pairs",
        test_topk_rank: str = "score",
        test_box_clip: str = "edges",
        test_min_box_size: Optional[float] = None,
        test_nms_thresh: float = 0.6,
        max_detections_per_image: int = 100,
        input_format: str = "BGR",
        pixel_mean=(103.53, 116.28, 123.675),
        pixel_std=(1.0, 1.0, 1.0),
    ):
        check_parts_agree(backbone, head, head_in_features, prior_generator, num_classes)
        super().__init__(backbone, head, head_in_features, pixel_mean=pixel_mean, pixel_std=pixel_std)
        self.prior_generator = prior_generator
        self.box_coder = box_coder
        self.assigner = assigner
        self.quality = quality
        self.loss = loss
        self.num_classes = num_classes
        self.test_score_thresh = test_score_thresh
        self.test_topk_candidates = test_topk_candidates
        if test_topk_mode not in TOPK_MODES:
            raise ValueError(f"test_topk_mode={test_topk_mode!r} is not one of {TOPK_MODES}")
        self.test_topk_mode = test_topk_mode
        if test_topk_rank not in TOPK_RANKS:
            raise ValueError(f"test_topk_rank={test_topk_rank!r} is not one of {TOPK_RANKS}")
        self.test_topk_rank = test_topk_rank
        if test_box_clip not in BOX_CLIPS:
            raise ValueError(f"test_box_clip={test_box_clip!r} is not one of {BOX_CLIPS}")
        self.test_box_clip = test_box_clip
        self.test_min_box_size = test_min_box_size
        self.test_nms_thresh = test_nms_thresh
        self.max_detections_per_image = max_detections_per_image
        self.input_format = input_format
        self.training_progress: Optional[TrainingProgress] = None
        head_has_quality = getattr(head, "quality_branch", None) is not None
        if quality.branch is not None and not head_has_quality:
            raise ValueError(f"quality coupling '{quality.branch}' needs a head with a quality branch")
        if quality.branch is None and head_has_quality:
            raise ValueError("the head has a quality branch but the quality coupling has none")
        _check_head_grid(head, prior_generator)

    @classmethod
    def from_config(cls, cfg):
        """Build from a yacs ``CfgNode`` made by :func:`dsla_d2.serving.lazy_to_yacs`.

        The lazy config's ``model`` node is carried verbatim (as YAML) in
        ``cfg.MODEL.DSLA_D2.LAZY_MODEL``, so ``DefaultPredictor`` builds exactly the
        trained model without a second description of it.
        """
        return lazy_model_kwargs(cfg)

    def set_training_progress(self, iteration: int, max_iter: int) -> None:
        """Where training is; handed to the assigner at every training step (set by
        :class:`dsla_d2.engine.TrainingProgressHook` before each iteration)."""
        self.training_progress = TrainingProgress(int(iteration), int(max_iter))

    # ------------------------------------------------------------------ shared steps
    def flatten_predictions(self, predictions: Dict[str, List[Tensor]]) -> Dict[str, Tensor]:
        """Per-level (N, K, Hi, Wi) maps -> (N, R, K), levels concatenated, float32."""
        out = {}
        for name, maps in predictions.items():
            k = maps[0].shape[1]
            out[name] = torch.cat([permute_to_N_HWA_K(m, k) for m in maps], dim=1).float()
        return out

    def decode(self, predictions: Dict[str, List[Tensor]], features: List[Tensor]):
        """Priors and the flattened outputs, with the decoded boxes added as
        ``outputs["pred_boxes"]`` (N, R, 4)."""
        priors = self.prior_generator(features)
        outputs = self.flatten_predictions(predictions)
        outputs["pred_boxes"] = self.box_coder.decode(outputs["box_reg"], priors)
        return priors, outputs

    # ------------------------------------------------------------------ training
    def forward_training(self, images: ImageList, features, predictions, gt_instances: List[Instances]):
        priors, outputs, assignment = self.assign_batch(features, predictions, gt_instances)
        return self.loss(outputs, priors, assignment, box_coder=self.box_coder, quality=self.quality)

    def assign_batch(self, features: List[Tensor], predictions: Dict[str, List[Tensor]], gt_instances: List[Instances]):
        """Steps 1-3 of a training step: the priors, the flattened outputs (with
        ``"pred_boxes"``) and the assigner's :class:`~dsla_d2.assigners.Assignment`.
        ``forward_training`` and ``tools/visualize_assignment.py`` both call this, so the
        visualised assignment is the one training uses."""
        priors, outputs = self.decode(predictions, features)
        progress = self.training_progress
        assignment = self.assigner(priors, gt_instances, self.num_classes, outputs, progress=progress)
        return priors, outputs, assignment

    # ------------------------------------------------------------------ inference
    def forward_inference(self, images: ImageList, features, predictions) -> List[Instances]:
        priors, outputs = self.decode(predictions, features)
        probs = outputs["cls_logits"].sigmoid()
        scores = self.quality.inference_scores(outputs["cls_logits"], outputs.get("quality"))
        return [
            self.inference_single_image(priors, probs[i], scores[i], outputs["pred_boxes"][i], image_size)
            for i, image_size in enumerate(images.image_sizes)
        ]

    def inference_single_image(self, priors: Priors, probs: Tensor, scores: Tensor, boxes: Tensor, image_size) -> Instances:
        """
        Args:
            probs: (R, C) class probabilities.
            scores: (R, C) final scores (probabilities × quality), used for ranking.
            boxes: (R, 4) decoded boxes.
        """
        kept_boxes, kept_scores, kept_classes = [], [], []
        for p, s, b in zip(priors.split(probs, 0), priors.split(scores, 0), priors.split(boxes, 0)):
            top, loc, cls = self.level_candidates(p, s)
            kept_scores.append(top)
            kept_boxes.append(b[loc])
            kept_classes.append(cls)
        boxes = Boxes(torch.cat(kept_boxes))
        if self.test_box_clip == "edges":
            boxes.clip(image_size)
        else:
            h, w = image_size
            boxes.tensor[:, 0::2] = boxes.tensor[:, 0::2].clamp(min=0, max=w - 1)
            boxes.tensor[:, 1::2] = boxes.tensor[:, 1::2].clamp(min=0, max=h - 1)
        scores = torch.cat(kept_scores)
        classes = torch.cat(kept_classes)
        if self.test_min_box_size is not None:
            wh = boxes.tensor[:, 2:] - boxes.tensor[:, :2]
            big = (wh > self.test_min_box_size).all(dim=1)
            boxes, scores, classes = boxes[big], scores[big], classes[big]
        if self.pre_nms_output:  # set by dsla_d2.evaluation.pre_nms_candidates only
            keep = scores.argsort(descending=True)
        else:
            keep = batched_nms(boxes.tensor, scores, classes, self.test_nms_thresh)[: self.max_detections_per_image]
        result = Instances(image_size)
        result.pred_boxes = boxes[keep]
        result.scores = scores[keep]
        result.pred_classes = classes[keep]
        return result

    def level_candidates(self, probs: Tensor, scores: Tensor):
        """One level's candidates before NMS (``test_topk_mode``).

        Args:
            probs, scores: (R_l, C) class probabilities and final scores of the level.
        Returns:
            (K,) scores, (K,) location indices, (K,) classes.
        """
        above = self.quality.thresholded_quantity(probs, scores) > self.test_score_thresh
        rank = scores if self.test_topk_rank == "score" else probs
        if self.test_topk_mode == "locations":
            # rank locations by their best value over all classes (before the threshold),
            # keep the top k, then every class above the threshold at those locations
            k = _topk_count(self.test_topk_candidates, scores.shape[0])
            locations = rank.max(dim=1).values.topk(k).indices
            chosen = torch.zeros_like(above).index_fill_(0, locations, 1) & above  # 1: the tracer has no bool fill
            idx = chosen.flatten().nonzero().squeeze(1)
        else:
            ranked = torch.where(above, rank, torch.full_like(rank, -1.0)).flatten()
            top, idx = ranked.topk(_topk_count(self.test_topk_candidates, ranked.numel()))
            idx = idx[top >= 0]
        return scores.flatten()[idx], idx // self.num_classes, idx % self.num_classes


def _topk_count(k: int, n):
    """``min(k, n)``. While ``torch.jit.trace`` runs, sizes arrive as 0-dim tensors: the
    count is then a ``clamp`` recorded in the graph, so an exported model applies the rule
    at every input size instead of the count of the sample it was traced on."""
    if isinstance(n, Tensor):
        return n.clamp(max=k)
    return min(k, n)


def _check_head_grid(head: nn.Module, prior_generator: PriorGenerator) -> None:
    """A head that places points itself (``strides``/``point_offset``, e.g. for box
    refinement) must place them where the prior generator does."""
    strides = getattr(head, "strides", None)
    if strides is None:
        return
    if [float(s) for s in strides] != [float(s) for s in prior_generator.strides]:
        raise ValueError(f"head strides {list(strides)} differ from the prior generator's {prior_generator.strides}")
    offset = getattr(head, "point_offset", prior_generator.offset)
    if float(offset) != prior_generator.offset:
        raise ValueError(f"head point_offset {offset} differs from the prior generator's offset {prior_generator.offset}")
