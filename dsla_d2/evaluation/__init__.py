"""Evaluation beyond COCO AP: score–IoU consistency of detections and pre-NMS candidates;
the evaluator chosen from a test set's ``evaluator_type``; test-time augmentation in runs."""
from .candidates import pre_nms_candidates
from .consistency import ConsistencyEvaluator, dataset_ground_truths, plot_score_iou
from .evaluators import EvaluatorTypeError, build_evaluator, check_evaluator, evaluator_class
from .runner import evaluate_model, tta_settings, tta_test_loader
from .score_iou import average_ranks, consistency_metrics, match_detections, pearson, per_gt_consistency, spearman

__all__ = [
    "ConsistencyEvaluator",
    "EvaluatorTypeError",
    "average_ranks",
    "build_evaluator",
    "check_evaluator",
    "consistency_metrics",
    "dataset_ground_truths",
    "evaluate_model",
    "evaluator_class",
    "match_detections",
    "pearson",
    "per_gt_consistency",
    "plot_score_iou",
    "pre_nms_candidates",
    "spearman",
    "tta_settings",
    "tta_test_loader",
]
