"""``ConsistencyEvaluator``: score–IoU consistency of a detector's output, as a Detectron2
``DatasetEvaluator`` (runs next to ``COCOEvaluator`` in ``DatasetEvaluators``).

The statistics and their undefined cases are in :mod:`dsla_d2.evaluation.score_iou`.
"""
import json
import logging
import os
from typing import Dict, Optional, Union

import numpy as np
import torch

from detectron2.data import DatasetCatalog
from detectron2.evaluation import DatasetEvaluator
from detectron2.structures import BoxMode
from detectron2.utils import comm

from .score_iou import consistency_metrics, match_detections

__all__ = ["ConsistencyEvaluator", "dataset_ground_truths", "plot_score_iou"]

logger = logging.getLogger(__name__)


def dataset_ground_truths(dataset_name: str) -> Dict[object, dict]:
    """image_id -> {"boxes": (G, 4) XYXY float32, "classes": (G,), "crowd": (G,) bool}
    from a dataset registered in ``DatasetCatalog`` (contiguous class ids, as the model's
    ``pred_classes``). A record without ``annotations`` has no gt; a dataset where no
    record has any is an error (consistency needs ground truth)."""
    dicts = DatasetCatalog.get(dataset_name)
    if dicts and not any("annotations" in d for d in dicts):
        raise ValueError(f"dataset '{dataset_name}' has no annotations: score–IoU consistency needs ground truth")
    gts = {}
    for d in dicts:  # one loop over images; per-image arrays are built from the annotation lists
        annos = d.get("annotations", [])
        boxes = [BoxMode.convert(list(a["bbox"]), a["bbox_mode"], BoxMode.XYXY_ABS) for a in annos]
        gts[d["image_id"]] = {
            "boxes": np.asarray(boxes, np.float32).reshape(-1, 4),
            "classes": np.asarray([a["category_id"] for a in annos], np.int64),
            "crowd": np.asarray([bool(a.get("iscrowd", 0)) for a in annos], bool),
        }
    return gts


def plot_score_iou(path: str, scores: np.ndarray, ious: np.ndarray, title: str) -> None:
    """Hexbin of score (y) against IoU (x), log-scaled counts, written as a small PNG."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(4.8, 4.0), dpi=100)
    ax = fig.subplots()
    if scores.size:
        hb = ax.hexbin(ious, scores, gridsize=40, bins="log", mincnt=1, cmap="viridis",
                       extent=(0.0, 1.0, min(0.0, float(scores.min())), max(1.0, float(scores.max()))))
        fig.colorbar(hb, ax=ax, label="detections")
    else:
        ax.text(0.5, 0.5, "no detections", ha="center", va="center", transform=ax.transAxes)
    ax.set_xlim(0.0, 1.0)
    ax.set_xlabel("IoU with the best same-class gt")
    ax.set_ylabel("score")
    ax.set_title(title, fontsize=8)
    fig.tight_layout()
    fig.savefig(path)


def _fmt(value) -> str:
    return "undefined" if value is None else f"{value:.3f}"


class ConsistencyEvaluator(DatasetEvaluator):
    """Score–IoU consistency of the detections the model outputs.

    Args:
        dataset_name: a ``DatasetCatalog`` name (one dataset); the gts are read from its
            dicts, so any registered COCO-format dataset works.
        output_dir: where ``<prefix>.json`` (every metric, ``null`` where undefined) and
            ``<prefix>.png`` (score vs IoU hexbin) are written; None: no files.
        distributed: gather the per-image records to the main process (as
            ``COCOEvaluator`` does) before computing the metrics.
        prefix: the results key, e.g. ``"consistency"`` -> ``consistency/pearson`` in
            metrics.json; ``"consistency_pre_nms"`` for pre-NMS candidates.
        crowd_iou_thresh: see :func:`~dsla_d2.evaluation.score_iou.match_detections`.
        plot: write the PNG.

    ``evaluate()`` returns ``{prefix: metrics}`` on the main process, where ``metrics``
    holds the defined values only (undefined correlations / means are left out rather
    than reported as NaN; the json file has them as ``null``), and ``{}`` elsewhere.
    """

    def __init__(
        self,
        dataset_name: Union[str, list],
        output_dir: Optional[str] = None,
        *,
        distributed: bool = True,
        prefix: str = "consistency",
        crowd_iou_thresh: float = 0.5,
        plot: bool = True,
    ):
        names = [dataset_name] if isinstance(dataset_name, str) else list(dataset_name)
        if len(names) != 1:
            raise ValueError(f"ConsistencyEvaluator evaluates one dataset, got {names!r}")
        self.dataset_name = names[0]
        self.output_dir = output_dir
        self.distributed = distributed
        self.prefix = prefix
        self.crowd_iou_thresh = crowd_iou_thresh
        self.plot = plot
        self._gts = dataset_ground_truths(self.dataset_name)
        self._records = []

    def reset(self):
        self._records = []

    def process(self, inputs, outputs):
        for inp, out in zip(inputs, outputs):
            image_id = inp["image_id"]
            if image_id not in self._gts:
                raise KeyError(f"image_id {image_id!r} is not in dataset '{self.dataset_name}'")
            inst = out["instances"].to("cpu")
            boxes, scores = inst.pred_boxes.tensor, inst.scores
            if not (torch.isfinite(boxes).all() and torch.isfinite(scores).all()):
                raise ValueError(f"image_id {image_id!r}: the model output non-finite boxes or scores")
            gt = self._gts[image_id]
            ious, gt_index, ignored = match_detections(
                boxes, inst.pred_classes, gt["boxes"], gt["classes"], gt["crowd"], self.crowd_iou_thresh
            )
            kept = ~ignored
            self._records.append({
                "scores": scores[kept].numpy().astype(np.float32),
                "ious": ious[kept].numpy().astype(np.float32),
                "gt_index": gt_index[kept].numpy().astype(np.int32),
                "num_gts": int((~gt["crowd"]).sum()),
                "num_ignored": int(ignored.sum()),
            })

    def evaluate(self):
        records = self._records
        if self.distributed and comm.get_world_size() > 1:
            comm.synchronize()
            records = [r for part in comm.gather(records, dst=0) for r in part]
            if not comm.is_main_process():
                return {}
        metrics = consistency_metrics(records)
        logger.info(
            "%s on %s: Pearson %s, Spearman %s over %d detections; "
            "top-scored IoU %s, inconsistent %s of %d matched gts",
            self.prefix, self.dataset_name, _fmt(metrics["pearson"]), _fmt(metrics["spearman"]),
            metrics["num_detections"], _fmt(metrics["top_iou"]), _fmt(metrics["inconsistent_frac"]),
            metrics["num_gts_matched"],
        )
        if self.output_dir:
            self._write(metrics, records)
        return {self.prefix: {k: v for k, v in metrics.items() if v is not None}}

    def _write(self, metrics, records):
        os.makedirs(self.output_dir, exist_ok=True)
        with open(os.path.join(self.output_dir, f"{self.prefix}.json"), "w") as f:
            json.dump({"dataset": self.dataset_name, **metrics}, f, indent=1)
        if self.plot:
            scores = np.concatenate([r["scores"] for r in records] or [np.zeros(0, np.float32)])
            ious = np.concatenate([r["ious"] for r in records] or [np.zeros(0, np.float32)])
            title = (f"{self.prefix} — {self.dataset_name}: {scores.size} detections\n"
                     f"Pearson {_fmt(metrics['pearson'])}, Spearman {_fmt(metrics['spearman'])}, "
                     f"top-scored IoU {_fmt(metrics['top_iou'])}")
            plot_score_iou(os.path.join(self.output_dir, f"{self.prefix}.png"), scores, ious, title)
