"""Score–IoU consistency: matching detections to ground truths, and the statistics.

DSLA (§1, Fig. 1) and DW argue that a dense detector's ranking score should follow the
localisation quality of its box: NMS keeps the top-scored box of each object, and AP at
high IoU thresholds rewards that box only if it is also the best-localised one. This
module measures that on a detector's output:

* every detection is matched to the ground truth **of its own class** it overlaps most
  (IoU); with no such gt (a false positive, or a gt of another class only) its IoU is 0;
* crowd regions are ignored as COCO does at IoU 0.5: a detection whose best IoU with a
  real gt is below ``crowd_iou_thresh`` but which covers a same-class crowd region by at
  least that much (COCO's crowd "IoU": intersection / detection area) is dropped;
* :func:`consistency_metrics` then reports the correlation of score and IoU over the
  detections, and, per gt, whether the top-scored of its detections is the best-localised.

Everything is vectorised over detections and gts (numpy / torch); the only loop is over
images, where the per-image matching happens.
"""
from typing import Dict, List, Optional

import numpy as np
import torch

from detectron2.structures import Boxes, pairwise_ioa, pairwise_iou

__all__ = ["match_detections", "pearson", "spearman", "average_ranks", "per_gt_consistency", "consistency_metrics"]


def match_detections(det_boxes, det_classes, gt_boxes, gt_classes, gt_crowd, crowd_iou_thresh: float = 0.5):
    """Match the detections of one image to its gts.

    Args:
        det_boxes: (D, 4) XYXY; det_classes: (D,) int.
        gt_boxes: (G, 4) XYXY; gt_classes: (G,) int; gt_crowd: (G,) bool (``iscrowd``).
        crowd_iou_thresh: see the module docstring (COCO's IoU 0.5 convention).

    Returns:
        ious: (D,) float, IoU with the matched real (non-crowd) gt, 0 if none overlaps.
        gt_index: (D,) int64, index of the matched gt among the **real** gts (in their
            order in ``gt_boxes``), -1 when the IoU is 0. Equal IoUs: the lower index wins.
        ignored: (D,) bool, detections explained by a crowd region (to be dropped).
    """
    det_boxes = torch.as_tensor(det_boxes, dtype=torch.float32).reshape(-1, 4)
    det_classes = torch.as_tensor(det_classes, dtype=torch.int64).reshape(-1)
    gt_boxes = torch.as_tensor(gt_boxes, dtype=torch.float32).reshape(-1, 4)
    gt_classes = torch.as_tensor(gt_classes, dtype=torch.int64).reshape(-1)
    gt_crowd = torch.as_tensor(gt_crowd, dtype=torch.bool).reshape(-1)
    d = len(det_boxes)
    real = ~gt_crowd
    iou = pairwise_iou(Boxes(det_boxes), Boxes(gt_boxes[real]))  # (D, Gr)
    iou = torch.where(det_classes[:, None] == gt_classes[real][None, :], iou, torch.zeros_like(iou))
    if iou.shape[1] > 0:
        ious, gt_index = iou.max(dim=1)
        gt_index = torch.where(ious > 0, gt_index, torch.full_like(gt_index, -1))
    else:
        ious, gt_index = torch.zeros(d), torch.full((d,), -1, dtype=torch.int64)
    # COCO's crowd "IoU" is the fraction of the detection inside the crowd region
    crowd_cover = pairwise_ioa(Boxes(gt_boxes[gt_crowd]), Boxes(det_boxes))  # (Gc, D)
    same_class = gt_classes[gt_crowd][:, None] == det_classes[None, :]
    crowd_cover = torch.where(same_class, crowd_cover, torch.zeros_like(crowd_cover))
    covered = crowd_cover.max(dim=0).values if crowd_cover.shape[0] > 0 else torch.zeros(d)
    ignored = (ious < crowd_iou_thresh) & (covered >= crowd_iou_thresh)
    return ious, gt_index, ignored


def _is_constant(x: np.ndarray) -> bool:
    return x.size == 0 or x.min() == x.max()


def pearson(x, y) -> Optional[float]:
    """Pearson's r of two (n,) arrays, in float64. ``None`` (undefined) when n < 2 or
    either array is constant — never NaN."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    if x.size < 2 or _is_constant(x) or _is_constant(y):
        return None
    dx, dy = x - x.mean(), y - y.mean()
    r = (dx * dy).sum() / np.sqrt((dx * dx).sum() * (dy * dy).sum())
    return float(np.clip(r, -1.0, 1.0))


def average_ranks(x) -> np.ndarray:
    """1-based ranks of (n,) values, tied values sharing the mean of their ranks
    (e.g. [10, 20, 20, 30] -> [1, 2.5, 2.5, 4])."""
    _, inverse, counts = np.unique(np.asarray(x), return_inverse=True, return_counts=True)
    last = np.cumsum(counts)  # rank of the last member of each group of equal values
    return (last - (counts - 1) / 2.0)[inverse.reshape(-1)]


def spearman(x, y) -> Optional[float]:
    """Spearman's ρ: Pearson's r of the average ranks (the usual tie correction).
    ``None`` when undefined (n < 2 or a constant array)."""
    x, y = np.asarray(x), np.asarray(y)
    if x.size < 2 or _is_constant(x) or _is_constant(y):
        return None
    return pearson(average_ranks(x), average_ranks(y))


def per_gt_consistency(scores, ious, gt_index, num_gts: int) -> Dict[str, np.ndarray]:
    """Per gt: does its top-scored detection have its best IoU?

    Args:
        scores, ious: (D,) of the detections; gt_index: (D,) gt of each detection in
            [0, num_gts), or -1 (matched to none, left out).
        num_gts: G.

    Returns (all (G,), meaningful where ``num_dets > 0``):
        num_dets: detections matched to the gt.
        top_iou: IoU of its top-scored detection. Tied top scores: the mean IoU of the
            tied detections (the expectation when NMS breaks the tie at random).
        best_iou: the largest IoU among its detections.
        inconsistent: 1 if the top-scored detection is not a best-IoU one; with tied top
            scores, the fraction of the tied detections that are not best-IoU ones.
    """
    scores, ious = np.asarray(scores, np.float64), np.asarray(ious, np.float64)
    gt_index = np.asarray(gt_index, np.int64)
    keep = gt_index >= 0
    g, s, u = gt_index[keep], scores[keep], ious[keep]
    num_dets = np.bincount(g, minlength=num_gts).astype(np.float64)
    top_score = np.full(num_gts, -np.inf)
    np.maximum.at(top_score, g, s)
    best_iou = np.full(num_gts, -np.inf)
    np.maximum.at(best_iou, g, u)
    is_top = s == top_score[g]
    is_top_best = is_top & (u == best_iou[g])
    num_top = np.bincount(g, weights=is_top, minlength=num_gts)
    safe = np.maximum(num_top, 1.0)
    top_iou = np.bincount(g, weights=np.where(is_top, u, 0.0), minlength=num_gts) / safe
    inconsistent = 1.0 - np.bincount(g, weights=is_top_best, minlength=num_gts) / safe
    best_iou = np.where(num_dets > 0, best_iou, 0.0)
    return dict(num_dets=num_dets, top_iou=top_iou, best_iou=best_iou, inconsistent=inconsistent)


FG_IOU = 0.5  # the ``_iou50`` metrics: detections that are true positives at AP50


def consistency_metrics(records: List[dict]) -> Dict[str, Optional[float]]:
    """The score–IoU consistency of a whole dataset.

    Args:
        records: one per image: ``scores`` (D,), ``ious`` (D,), ``gt_index`` (D,) (index
            among the image's real gts, -1 for none), ``num_gts`` (real gts), ``num_ignored``
            (detections dropped as crowd). Crowd-ignored detections are not in the arrays.

    Returns a flat dict. Counts are always defined. ``pearson``/``spearman`` (all kept
    detections, IoU 0 for unmatched ones), ``pearson_iou50``/``spearman_iou50`` (detections
    with IoU >= 0.5: does the score rank the localised boxes by quality?),
    ``top_iou``, ``best_iou`` and ``inconsistent_frac`` (means over the gts that have at
    least one detection) are ``None`` where undefined: fewer than two detections or a
    constant score / IoU for the correlations, no matched gt for the per-gt means.
    """
    num_gts = np.array([r["num_gts"] for r in records], dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(num_gts)[:-1]]).astype(np.int64)
    def cat(key, dtype):
        return np.concatenate([np.asarray(r[key], dtype).reshape(-1) for r in records] or [np.zeros(0, dtype)])

    scores, ious, local = cat("scores", np.float64), cat("ious", np.float64), cat("gt_index", np.int64)
    image_of_det = np.repeat(np.arange(len(records)), [np.asarray(r["scores"]).size for r in records])
    gt_index = np.where(local >= 0, local + offsets[image_of_det], -1)  # index among all gts
    total_gts = int(num_gts.sum())
    per_gt = per_gt_consistency(scores, ious, gt_index, total_gts)
    matched = per_gt["num_dets"] > 0
    fg = ious >= FG_IOU
    mean = lambda v: float(v[matched].mean()) if matched.any() else None  # noqa: E731
    return {
        "num_images": len(records),
        "num_gts": total_gts,
        "num_detections": int(scores.size),
        "num_ignored": int(sum(int(r["num_ignored"]) for r in records)),
        "pearson": pearson(scores, ious),
        "spearman": spearman(scores, ious),
        "num_detections_iou50": int(fg.sum()),
        "pearson_iou50": pearson(scores[fg], ious[fg]),
        "spearman_iou50": spearman(scores[fg], ious[fg]),
        "num_gts_matched": int(matched.sum()),
        "num_gts_multi": int((per_gt["num_dets"] > 1).sum()),
        "top_iou": mean(per_gt["top_iou"]),
        "best_iou": mean(per_gt["best_iou"]),
        "inconsistent_frac": mean(per_gt["inconsistent"]),
    }
