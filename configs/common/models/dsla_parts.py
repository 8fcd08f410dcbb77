"""DSLA's quality coupling and losses (Su, He et al. 2022; spec decision 5-6), shared by
every DSLA detector config (FCOS-DSLA COCO / embedded, FoveaBox-DSLA)."""
from detectron2.config import LazyCall as L

from dsla_d2.losses import DenseDetectionLoss
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
