"""Evaluation beyond COCO AP: score–IoU consistency of detections and pre-NMS candidates."""
from .candidates import pre_nms_candidates
from .consistency import ConsistencyEvaluator, dataset_ground_truths, plot_score_iou
from .runner import evaluate_model
from .score_iou import average_ranks, consistency_metrics, match_detections, pearson, per_gt_consistency, spearman

__all__ = [
    "ConsistencyEvaluator",
    "average_ranks",
    "consistency_metrics",
    "dataset_ground_truths",
    "evaluate_model",
    "match_detections",
    "pearson",
    "per_gt_consistency",
    "plot_score_iou",
    "pre_nms_candidates",
    "spearman",
]
