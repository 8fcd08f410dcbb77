"""Statistics of an assigner's decisions over a dataset.

Accumulated batch by batch from :class:`~dsla_d2.analysis.BatchAssignment` (the model's own
assignment and the loss's own targets), vectorised over images, priors and gts:

* positives per level (classification and regression);
* positives per gt: histogram, and the gts with **zero** positives by size (area in network
  input pixels, COCO's thresholds 32² and 96²), how many of them contain no prior point at
  all (no assigner that requires the point inside can pick them), with examples;
* the histogram of the classification targets of the positives (soft targets: DSLA
  label_d, Dynamic ATSS PIoU; all 1 for hard methods) and of the assigner's static scores;
* **ambiguous locations**: prior points strictly inside two or more gts, and how the
  assigner resolved them — to the smallest of those gts (ties included), to the largest, to
  another one of them, to a gt that does not contain the point, or to background. The
  (prior, gt) containment is enumerated from the grid geometry
  (:func:`~dsla_d2.assigners.pairs.inside_box_pairs`), not as a priors × gts grid.
"""
import math
from typing import Dict, List, Optional, Sequence

import torch
from tabulate import tabulate

from ..assigners.pairs import inside_box_pairs
from .assignment_view import BatchAssignment

__all__ = ["AssignmentStatistics", "SIZE_BUCKETS", "RESOLUTIONS", "format_statistics"]

#: (name, min area, max area) in network-input pixels (COCO's small / medium / large).
SIZE_BUCKETS = (("small", 0.0, 32.0**2), ("medium", 32.0**2, 96.0**2), ("large", 96.0**2, math.inf))
#: how an ambiguous location (inside ≥ 2 gts) was resolved
RESOLUTIONS = ("smallest", "largest", "other_containing", "not_containing", "background")


class AssignmentStatistics:
    """
    Args:
        level_names: one per level.
        class_names: names of the classes (for the zero-positive examples), optional.
        bins: number of bins of the target histograms over [0, 1].
        max_examples: zero-positive gts listed in the summary.
    """

    def __init__(self, level_names: Sequence[str], class_names: Optional[Sequence[str]] = None, bins: int = 10,
                 max_examples: int = 20):
        self.level_names = list(level_names)
        self.class_names = list(class_names) if class_names else None
        self.bins = bins
        self.max_examples = max_examples
        num_levels = len(self.level_names)
        self.num_images = 0
        self.cls_per_level = torch.zeros(num_levels, dtype=torch.long)
        self.reg_per_level = torch.zeros(num_levels, dtype=torch.long)
        self.ambiguous_per_level = torch.zeros(num_levels, dtype=torch.long)
        self.per_gt_histogram = torch.zeros(1, dtype=torch.long)
        self.bucket_gts = torch.zeros(len(SIZE_BUCKETS), dtype=torch.long)
        self.bucket_zero = torch.zeros(len(SIZE_BUCKETS), dtype=torch.long)
        self.bucket_positives = torch.zeros(len(SIZE_BUCKETS), dtype=torch.long)
        self.target_hist = torch.zeros(bins, dtype=torch.long)
        self.static_hist = torch.zeros(bins, dtype=torch.long)
        self.target_sum = 0.0
        self.resolutions = torch.zeros(len(RESOLUTIONS), dtype=torch.long)
        self.outside_own_gt = 0
        self.zero_without_point = 0
        self.reg_differs = 0
        self.examples: List[dict] = []

    def update(self, batch: BatchAssignment, image_ids: Optional[Sequence] = None) -> None:
        """Add a batch; ``image_ids`` (one per image) label the zero-positive examples."""
        a, priors, t = batch.assignment, batch.priors, batch.targets
        if len(priors.num_per_level) != len(self.level_names):
            raise ValueError(f"the batch has {len(priors.num_per_level)} levels, "
                             f"the statistics {len(self.level_names)}")
        pos, reg = a.pos_mask, t["reg_mask"]
        levels = priors.levels
        self.num_images += len(batch)
        self.cls_per_level += _per_level(levels, pos.sum(0), len(self.level_names))
        self.reg_per_level += _per_level(levels, reg.sum(0), len(self.level_names))
        self.reg_differs += int((reg & (a.reg_matched_gt != a.matched_gt)).sum())
        self._targets(t["cls_target"][pos], a.cls_scores[pos])
        g = a.gt.classes.shape[1]
        inside = _containing_pairs(priors, a.gt) if g else None
        self._per_gt(batch, pos, image_ids, inside)
        self._ambiguity(batch, pos, inside)

    def _targets(self, target, static):
        self.target_hist += torch.histc(target.float().cpu(), self.bins, 0, 1).long()
        self.static_hist += torch.histc(static.float().cpu(), self.bins, 0, 1).long()
        self.target_sum += float(target.sum())

    def _per_gt(self, batch, pos, image_ids, inside):
        a, gt = batch.assignment, batch.assignment.gt
        n, g = gt.classes.shape
        if g == 0:
            return
        counts = torch.zeros(n, g, device=pos.device).scatter_add_(1, a.matched_gt.clamp(min=0), pos.float()).long()
        valid, areas = gt.valid, gt.areas
        key, gt_of_pair, _ = inside
        has_point = torch.zeros(n * g, dtype=torch.bool, device=pos.device)
        has_point[torch.div(key, len(batch.priors), rounding_mode="floor") * g + gt_of_pair] = True
        self.zero_without_point += int((valid & (counts == 0) & ~has_point.view(n, g)).sum())
        c = counts[valid].cpu()
        hist = torch.bincount(c)
        size = max(len(hist), len(self.per_gt_histogram))
        self.per_gt_histogram = _pad(self.per_gt_histogram, size) + _pad(hist, size)
        bucket = _bucket(areas[valid].cpu())
        k = len(SIZE_BUCKETS)
        self.bucket_gts += torch.bincount(bucket, minlength=k)
        self.bucket_zero += torch.bincount(bucket, weights=(c == 0).float(), minlength=k).long()
        self.bucket_positives += torch.bincount(bucket, weights=c.float(), minlength=k).long()
        room = self.max_examples - len(self.examples)
        if room > 0:
            img, col = (valid & (counts == 0)).nonzero(as_tuple=True)
            for i, j in zip(img[:room].tolist(), col[:room].tolist()):  # ≤ max_examples rows
                cls = int(gt.classes[i, j])
                box = [round(v, 1) for v in gt.boxes[i, j].tolist()]
                self.examples.append({
                    "image_id": image_ids[i] if image_ids is not None else i, "gt_index": j, "box_xyxy": box,
                    "class": self.class_names[cls] if self.class_names and cls < len(self.class_names) else cls,
                    "sqrt_area": round(float(areas[i, j].sqrt()), 1),
                })

    def _ambiguity(self, batch, pos, inside):
        a, gt, priors = batch.assignment, batch.assignment.gt, batch.priors
        n, g = gt.classes.shape
        r = len(priors)
        matched = a.matched_gt
        contains = torch.zeros(n * r, dtype=torch.bool, device=pos.device)
        inside_count = torch.zeros(n * r, dtype=torch.long, device=pos.device)
        if g:
            key, gt_of_pair, area = inside
            inside_count = torch.bincount(key, minlength=n * r)
            smallest = torch.full((n * r,), math.inf, device=pos.device).scatter_reduce(0, key, area, "amin")
            largest = torch.zeros(n * r, device=pos.device).scatter_reduce(0, key, area, "amax")
            contains[key[gt_of_pair == matched.flatten()[key]]] = True
            own_area = torch.gather(gt.areas, 1, matched.clamp(min=0)).flatten()
        flat_pos = pos.flatten()
        self.outside_own_gt += int((flat_pos & ~contains).sum())
        amb = inside_count >= 2
        if not amb.any():
            return
        self.ambiguous_per_level += _per_level(priors.levels, amb.view(n, r).sum(0), len(self.level_names))
        is_small = contains & (own_area == smallest)
        is_large = contains & ~is_small & (own_area == largest)
        kinds = torch.stack([
            is_small, is_large, contains & ~is_small & ~is_large, flat_pos & ~contains, ~flat_pos,
        ])
        self.resolutions += (kinds & amb).sum(1).cpu()

    def summary(self) -> Dict:
        """Everything accumulated, as plain numbers (json-serialisable)."""
        num_gts = int(self.per_gt_histogram.sum())
        npos = int(self.cls_per_level.sum())
        edges = [round(i / self.bins, 6) for i in range(self.bins + 1)]
        per_gt = self.per_gt_histogram.tolist()
        return {
            "num_images": self.num_images,
            "num_gts": num_gts,
            "per_level": [
                {"level": name, "cls_positives": int(c), "reg_positives": int(rg), "ambiguous_locations": int(am),
                 "cls_positives_per_image": float(c) / max(self.num_images, 1)}
                for name, c, rg, am in zip(
                    self.level_names, self.cls_per_level, self.reg_per_level, self.ambiguous_per_level
                )
            ],
            "cls_positives": npos,
            "reg_positives": int(self.reg_per_level.sum()),
            "reg_positives_with_another_gt": self.reg_differs,
            "positives_per_gt": {
                "histogram": per_gt,  # index = number of positives of a gt
                "mean": sum(i * c for i, c in enumerate(per_gt)) / max(num_gts, 1),
            },
            "zero_positive_gts": {
                "total": int(self.bucket_zero.sum()),
                "without_any_prior_point_inside": self.zero_without_point,
                "by_size": {
                    name: {"gts": int(n), "zero_positive": int(z), "mean_positives": float(p) / max(int(n), 1)}
                    for (name, _, _), n, z, p in zip(
                        SIZE_BUCKETS, self.bucket_gts, self.bucket_zero, self.bucket_positives
                    )
                },
                "size_buckets_px2": {name: [lo, hi if hi != math.inf else None] for name, lo, hi in SIZE_BUCKETS},
                "examples": self.examples,
            },
            "cls_target": {
                "bin_edges": edges, "counts": self.target_hist.tolist(), "mean": self.target_sum / max(npos, 1)
            },
            "cls_target_static": {"bin_edges": edges, "counts": self.static_hist.tolist()},
            "positives_outside_their_gt": self.outside_own_gt,
            "ambiguous_locations": {"total": int(self.ambiguous_per_level.sum()),
                                    **{k: int(v) for k, v in zip(RESOLUTIONS, self.resolutions)}},
        }


def _containing_pairs(priors, gt):
    """(image·R + prior, gt index, gt area) of every (prior, valid gt) pair whose prior
    point lies strictly inside the gt box (FCOS's inside test: l, t, r, b > 0)."""
    pairs = inside_box_pairs(priors, gt.boxes, gt.valid)
    key = pairs.image * len(priors) + pairs.prior
    return key, pairs.gt, gt.areas[pairs.image, pairs.gt]


def _per_level(levels, per_prior, num_levels):
    return torch.bincount(levels, weights=per_prior.float(), minlength=num_levels).long().cpu()


def _bucket(areas):
    edges = torch.tensor([hi for _, _, hi in SIZE_BUCKETS[:-1]])
    return torch.bucketize(areas, edges, right=True)


def _pad(x, size):
    return torch.cat([x, x.new_zeros(size - len(x))])


def format_statistics(summary: Dict, title: str = "") -> str:
    """The summary as plain-text tables."""
    lines = [title] if title else []
    s = summary
    lines.append(f"{s['num_images']} images, {s['num_gts']} gts, {s['cls_positives']} classification positives, "
                 f"{s['reg_positives']} regression positives ({s['reg_positives_with_another_gt']} with another gt)")
    rows = [[d["level"], d["cls_positives"], f"{d['cls_positives_per_image']:.2f}", d["reg_positives"],
             d["ambiguous_locations"]] for d in s["per_level"]]
    lines.append(tabulate(rows, ["level", "cls pos", "per image", "reg pos", "ambiguous"], tablefmt="pipe"))
    hist = s["positives_per_gt"]["histogram"]
    shown = [(str(i), c) for i, c in enumerate(hist[:10])] + ([("≥10", sum(hist[10:]))] if len(hist) > 10 else [])
    lines.append(f"positives per gt (mean {s['positives_per_gt']['mean']:.2f}):")
    lines.append(tabulate([[c for _, c in shown]], [k for k, _ in shown], tablefmt="pipe"))
    z = s["zero_positive_gts"]
    rows = [[k, v["gts"], v["zero_positive"], f"{v['mean_positives']:.2f}"] for k, v in z["by_size"].items()]
    lines.append(f"gts with zero positives: {z['total']}, {z['without_any_prior_point_inside']} of them without any "
                 "prior point inside (size = area in network-input pixels, COCO thresholds)")
    lines.append(tabulate(rows, ["size", "gts", "zero positives", "mean positives"], tablefmt="pipe"))
    ct, st = s["cls_target"], s["cls_target_static"]
    rows = [[f"[{lo:.1f}, {hi:.1f}{']' if i == len(ct['counts']) - 1 else ')'}", c, cs]
            for i, (lo, hi, c, cs) in enumerate(zip(ct["bin_edges"], ct["bin_edges"][1:], ct["counts"], st["counts"]))]
    lines.append(f"classification targets of the positives (mean {ct['mean']:.3f}):")
    lines.append(tabulate(rows, ["target", "after quality coupling", "assigner's static score"], tablefmt="pipe"))
    amb = s["ambiguous_locations"]
    lines.append(f"ambiguous locations (inside ≥ 2 gts): {amb['total']}; resolved to: "
                 + ", ".join(f"{k} {amb[k]}" for k in RESOLUTIONS))
    lines.append(f"positives whose point is outside their own gt: {s['positives_outside_their_gt']}")
    return "\n".join(lines)
