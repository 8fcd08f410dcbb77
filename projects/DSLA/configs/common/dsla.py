"""DSLA's parts (Su, He et al., Pattern Recognition 2022; arXiv:2208.00817, and the authors' code)
as edits of a detector config: ``to_dsla(model)`` turns an FCOS model node into FCOS-DSLA
(the authors' recipe) and a FoveaBox model node into DSLA-FoveaBox (our design), keeping
everything the paper does not change (backbone, towers, scale ranges, budget)."""
from detectron2.config import LazyCall as L

from dsla_d2.assigners.dsla import DSLAAssigner
from dsla_d2.assigners.dsla_fovea import DSLAFoveaAssigner
from dsla_d2.heads import DSLAHead
from dsla_d2.losses import DenseDetectionLoss
from dsla_d2.meta_arch import DslaFCOS, DslaFoveaBox
from dsla_d2.quality import QualityCoupling


def dsla_quality():
    """label_d = label_s · IoU(detached decoded box, target); no quality branch."""
    return L(QualityCoupling)(branch=None, cls_target="iou_product")


def dsla_loss(box_loss="iou", cls_weight=2.0):
    """QFL (β 2) on label_d over the all-reduced Σ label_d; box loss weighted by label_s
    over Σ label_s. The authors' R-50 recipe: QFL weight 2.0, −log IoU weight 1.0."""
    return L(DenseDetectionLoss)(
        cls_loss="qfl",
        qfl_beta=2.0,
        cls_normalizer="sum_scores",
        cls_weight=cls_weight,
        box_loss=box_loss,
        smooth_l1_beta=0.11,
        box_normalizer="sum_weights",
        box_weight=1.0,
    )


def _fcos_to_dsla(model):
    """FCOS → FCOS-DSLA (spec decision 6): two-branch head, points at (j·s, i·s), static
    smooth labels on the model's own size ranges."""
    model.head._target_ = DSLAHead  # no centerness / IoU branch: quality is in the target
    model.head.pop("quality_branch", None)
    # Spec decision 3: the DSLA code places the point of cell (i, j) at (j·s, i·s), with no
    # half-stride offset (``dsla_head.py:_get_points_single`` drops FCOS's "+ stride // 2").
    # The core zone (a square of side s around the gt centre) and the relaxed ranges were
    # tuned on that grid, so we keep it; Detectron2's FCOS uses 0.5.
    model.prior_generator.offset = 0.0
    # label_s = centerness (core zone → 1) × relaxed range score h_j(m), κ 0.2, no center
    # sampling, "inside" strict, highest label_s wins an ambiguous location.
    model.assigner = L(DSLAAssigner)(
        size_ranges=model.assigner.size_ranges,
        kappa=0.2,
        core_zone=True,
        relaxation=True,
        center_sampling_radius=0.0,
        centerness_eps=0.01,
        strict_inside=True,
    )


def _fovea_to_dsla(model):
    """FoveaBox → DSLA-FoveaBox **(our design; the DSLA paper reports FoveaBox w/ DSLA
    36.5 -> 37.5 AP without a recipe)**: label_s = centerness (core zone → 1) × relaxed
    scale score h_l(sqrt(area)) on FoveaBox's ranges (κ 0.2), positives = points inside
    the box with label_s > 0, highest label_s wins; FoveaBox's head, priors, log-space box
    coder, ranges and σ stay."""
    model.assigner = L(DSLAFoveaAssigner)(
        scale_ranges=model.assigner.scale_ranges,
        kappa=0.2,
        core_zone=True,
        relaxation=True,
        fovea_region=False,
        sigma=model.assigner.sigma,
        centerness_eps=0.01,
    )


def to_dsla(model, box_loss="iou", cls_weight=2.0):
    """Swap DSLA's parts into an FCOS (``DslaFCOS``) or FoveaBox (``DslaFoveaBox``)
    ``model`` node, in place; returns it.

    Both: IoU coupling (QFL target label_d = label_s · IoU of the detached decoded box) and
    QFL (β 2, weight ``cls_weight``, over Σ label_d) + ``box_loss`` weighted by label_s over
    Σ label_s. ``box_loss``: "iou" (−log IoU on decoded boxes, DSLA's R-50 recipe), "giou",
    or "smooth_l1" (FoveaBox's own loss on the log targets).

    Ablation switches: ``model.assigner.core_zone`` / ``.relaxation`` / ``.kappa`` (and
    ``.fovea_region`` on FoveaBox), ``model.quality.cls_target`` ("static": no IoU
    coupling; "iou": IoU only), ``model.loss.box_loss``.
    """
    if model._target_ is DslaFCOS:
        _fcos_to_dsla(model)
    elif model._target_ is DslaFoveaBox:
        _fovea_to_dsla(model)
    else:
        raise ValueError(f"to_dsla: DSLA is defined here for DslaFCOS and DslaFoveaBox models, not {model._target_!r}")
    model.quality = dsla_quality()
    model.loss = dsla_loss(box_loss=box_loss, cls_weight=cls_weight)
    return model
