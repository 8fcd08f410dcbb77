"""Today's dense assigners, frozen as the reference of the sparse ones (test-only).

Copied from ``dsla_d2/assigners/{fcos,dsla,fovea,dsla_fovea,atss}.py`` at commit 926271f
(main before issue 13), when every assigner built images × priors × gts (× 4) tensors.
The library now enumerates only the relevant (prior, gt) pairs; this module keeps the old
computation so that ``tests/test_sparse_equivalence.py`` can check that every
``Assignment`` field is unchanged, and ``benchmarks/bench_assigners.py --before`` can time
it. It is not part of the ``dsla_d2`` package.

``DenseDDODAssigner`` came later (DDOD landed after issue 13): it is not a frozen copy but
written from the paper and the authors' code, on the full images × priors × gts cost
grid, as an independent reference for the sparse ``DDODAssigner``.

Each class subclasses the library assigner it replaces, so it takes exactly the same
constructor arguments, and overrides only ``assign`` with the dense body. Elementwise
primitives (centerness, aligned IoU, the relaxation ramp, the unbiased std) and the dense
k-nearest selection on a distance block (``select_topk_candidates``, which the sparse code
still uses on its exact path) are the library's, unchanged.
"""
import torch
from torch import Tensor

from dsla_d2.assigners import (
    ATSSAssigner,
    DDODAssigner,
    DSLAAssigner,
    DSLAFoveaAssigner,
    DynamicATSSAssigner,
    FCOSAssigner,
    FoveaAssigner,
)
from dsla_d2.assigners.atss import select_topk_candidates, unbiased_std
from dsla_d2.assigners.base import Assignment
from dsla_d2.assigners.dsla import relaxation_score
from dsla_d2.box_ops import aligned_box_iou, centerness_from_ltrb

__all__ = [
    "DenseFCOSAssigner",
    "DenseDSLAAssigner",
    "DenseFoveaAssigner",
    "DenseDSLAFoveaAssigner",
    "DenseATSSAssigner",
    "DenseDynamicATSSAssigner",
    "DenseDDODAssigner",
]


# ---------------------------------------------------------------- dense (N, R, G) helpers
def point_box_ltrb(points, boxes):
    """(R, 2) points, (N, G, 4) boxes -> (N, R, G, 4) (l, t, r, b)."""
    x = points[None, :, None, 0]
    y = points[None, :, None, 1]
    b = boxes[:, None]
    return torch.stack([x - b[..., 0], y - b[..., 1], b[..., 2] - x, b[..., 3] - y], dim=-1)


def center_sampling_mask(points, strides, boxes, radius):
    """(N, R, G): strictly inside the radius·stride square around the centre ∩ the box."""
    centers = (boxes[..., :2] + boxes[..., 2:]) / 2
    half = (radius * strides)[None, :, None, None]
    lo = torch.max(centers[:, None] - half, boxes[:, None, :, :2])
    hi = torch.min(centers[:, None] + half, boxes[:, None, :, 2:])
    p = points[None, :, None]
    return ((p > lo) & (p < hi)).all(dim=-1)


def core_zone_mask(points, strides, boxes):
    """(N, R, G): |x − cx| ≤ s/2 and |y − cy| ≤ s/2."""
    centers = (boxes[..., :2] + boxes[..., 2:]) / 2
    delta = (points[None, :, None, :] - centers[:, None, :, :]).abs()
    half = (strides / 2)[None, :, None, None]
    return (delta <= half).all(dim=-1)


def fovea_mask(priors, boxes, sigma):
    """(N, R, G): the point lies in the σ-fovea of the box on its own level."""
    s = priors.strides[None, :, None]
    b = boxes[:, None, :, :] / s[..., None]
    half_w = 0.5 * (b[..., 2] - b[..., 0])
    half_h = 0.5 * (b[..., 3] - b[..., 1])

    def grid_index(coords, strides):
        u = coords / strides
        j = torch.floor(u + 1e-4)
        return j, u - j

    col, off_x = grid_index(priors.points[:, 0], priors.strides)
    row, off_y = grid_index(priors.points[:, 1], priors.strides)
    off_x = off_x[None, :, None]
    off_y = off_y[None, :, None]
    left = torch.ceil(b[..., 0] + (1 - sigma) * half_w - off_x)
    right = torch.floor(b[..., 0] + (1 + sigma) * half_w - off_x)
    top = torch.ceil(b[..., 1] + (1 - sigma) * half_h - off_y)
    bottom = torch.floor(b[..., 1] + (1 + sigma) * half_h - off_y)
    col = col[None, :, None]
    row = row[None, :, None]
    return (col >= left) & (col <= right) & (row >= top) & (row <= bottom)


def paint_order_match(candidate, sqrt_areas):
    """(N, R) covering gt of smallest sqrt area, ties the highest index; −1 if none."""
    n, r, g = candidate.shape
    if g == 0:
        return torch.full((n, r), -1, dtype=torch.long, device=candidate.device)
    key = sqrt_areas[:, None, :].expand(n, r, g)
    key = torch.where(candidate, key, torch.full_like(key, float("inf")))
    smallest = key.min(dim=-1, keepdim=True).values
    winners = candidate & (key == smallest)
    index = torch.arange(g, device=candidate.device).expand(n, r, g)
    return torch.where(winners, index, torch.full_like(index, -1)).max(dim=-1).values


# ---------------------------------------------------------------- FCOS
class DenseFCOSAssigner(FCOSAssigner):
    def assign(self, priors, gt, num_classes, **preds):
        ltrb = point_box_ltrb(priors.points, gt.boxes)
        if self.center_sampling_radius > 0:
            inside = center_sampling_mask(priors.points, priors.strides, gt.boxes, self.center_sampling_radius)
        else:
            inside = ltrb.min(dim=-1).values > 0
        m = ltrb.max(dim=-1).values
        lo, hi = priors.per_level(self.size_ranges).unbind(-1)
        in_range = (m >= lo[None, :, None]) & (m <= hi[None, :, None])
        candidate = inside & in_range & gt.valid[:, None, :]
        areas = gt.areas[:, None, :].expand_as(m)
        areas = torch.where(candidate, areas, torch.full_like(areas, float("inf")))
        if areas.shape[-1]:
            min_area, matched = areas.min(dim=-1)
            matched = torch.where(torch.isfinite(min_area), matched, torch.full_like(matched, -1))
        else:
            matched = torch.full(m.shape[:2], -1, dtype=torch.long, device=m.device)
        reg_weights = None
        if self.regression_weight == "centerness":
            idx = matched.clamp(min=0)[..., None, None].expand(-1, -1, 1, 4)
            if ltrb.shape[2]:
                own = torch.gather(ltrb, 2, idx).squeeze(2)
            else:
                own = torch.zeros(*matched.shape, 4, device=m.device)
            reg_weights = centerness_from_ltrb(own)
        return Assignment.from_matches(gt, matched, num_classes, reg_weights=reg_weights)


# ---------------------------------------------------------------- DSLA
class DenseDSLAAssigner(DSLAAssigner):
    def dense_static_labels(self, priors, gt):
        points, strides = priors.points, priors.strides
        ltrb = point_box_ltrb(points, gt.boxes)
        if self.center_sampling_radius > 0:
            inside = center_sampling_mask(points, strides, gt.boxes, self.center_sampling_radius)
        elif self.strict_inside:
            inside = ltrb.min(dim=-1).values > 0
        else:
            inside = ltrb.min(dim=-1).values >= 0
        inside = inside & gt.valid[:, None, :]
        ctr = centerness_from_ltrb(ltrb, eps=self.centerness_eps)
        ctr = torch.where(inside, ctr, torch.zeros_like(ctr))
        if self.core_zone:
            in_core = core_zone_mask(points, strides, gt.boxes) & inside
            ctr = torch.where(in_core, torch.ones_like(ctr), ctr)
        m = ltrb.max(dim=-1).values
        lo, hi = priors.per_level(self.size_ranges).unbind(-1)
        lo, hi = lo[None, :, None], hi[None, :, None]
        if self.relaxation:
            glo, ghi = priors.per_level(self.relaxed_size_ranges).unbind(-1)
            head = relaxation_score(m, lo, hi, glo[None, :, None], ghi[None, :, None])
        else:
            head = ((m >= lo) & (m <= hi)).to(m.dtype)
        head = torch.where(inside, head, torch.zeros_like(head))
        return ctr * head, ctr, head

    @staticmethod
    def dense_match_highest(label, areas):
        n, r, g = label.shape
        if g == 0:
            return torch.full((n, r), -1, dtype=torch.long, device=label.device)
        best = label.max(dim=-1, keepdim=True).values
        tied = (label == best) & (best > 0)
        area = torch.where(tied, areas[:, None, :].expand_as(label), torch.full_like(label, float("inf")))
        tied = tied & (area == area.min(dim=-1, keepdim=True).values)
        index = torch.arange(g, device=label.device).expand_as(label)
        index = torch.where(tied, index, torch.full_like(index, g)).min(dim=-1).values
        return torch.where(index < g, index, torch.full_like(index, -1))

    def assign(self, priors, gt, num_classes, **preds):
        label, ctr, head = self.dense_static_labels(priors, gt)
        matched = self.dense_match_highest(label, gt.areas)
        pos = matched >= 0

        def of_match(t: Tensor) -> Tensor:
            if t.shape[-1] == 0:
                return torch.zeros(t.shape[:2], dtype=t.dtype, device=t.device)
            v = torch.gather(t, 2, matched.clamp(min=0)[..., None]).squeeze(-1)
            return torch.where(pos, v, torch.zeros_like(v))

        label_s = of_match(label)
        extras = {"label_s": label_s, "centerness_s": of_match(ctr), "head_s": of_match(head)}
        return Assignment.from_matches(gt, matched, num_classes, cls_scores=label_s, reg_weights=label_s, extras=extras)


# ---------------------------------------------------------------- FoveaBox
class DenseFoveaAssigner(FoveaAssigner):
    def assign(self, priors, gt, num_classes, **preds):
        sqrt_areas = gt.areas.sqrt()
        lo, hi = priors.per_level(self.scale_ranges).unbind(-1)
        in_range = (sqrt_areas[:, None, :] >= lo[None, :, None]) & (sqrt_areas[:, None, :] <= hi[None, :, None])
        candidate = fovea_mask(priors, gt.boxes, self.sigma) & in_range & gt.valid[:, None, :]
        matched = paint_order_match(candidate, sqrt_areas)
        return Assignment.from_matches(gt, matched, num_classes)


class DenseDSLAFoveaAssigner(DSLAFoveaAssigner):
    def assign(self, priors, gt, num_classes, **preds):
        ltrb = point_box_ltrb(priors.points, gt.boxes)
        inside = ltrb.min(dim=-1).values > 0
        c = centerness_from_ltrb(ltrb, eps=self.centerness_eps)
        if self.core_zone:
            core = core_zone_mask(priors.points, priors.strides, gt.boxes) & inside
            c = torch.where(core, torch.ones_like(c), c)
        lo, hi = priors.per_level(self.scale_ranges).unbind(-1)
        glo, ghi = priors.per_level(self.relaxed_ranges).unbind(-1)
        sqrt_areas = gt.areas.sqrt()
        h = relaxation_score(
            sqrt_areas[:, None, :], lo[None, :, None], hi[None, :, None], glo[None, :, None], ghi[None, :, None]
        )
        keep = inside & gt.valid[:, None, :]
        if self.fovea_region:
            keep = keep & fovea_mask(priors, gt.boxes, self.sigma)
        labels = c * h
        labels = torch.where(keep, labels, torch.zeros_like(labels))
        candidate = labels > 0
        n, r, g = labels.shape
        if g == 0:
            matched = torch.full((n, r), -1, dtype=torch.long, device=labels.device)
            label_s = torch.zeros(n, r, device=labels.device)
        else:
            best = torch.where(candidate, labels, torch.full_like(labels, -1.0)).max(dim=-1, keepdim=True).values
            matched = paint_order_match(candidate & (labels == best), sqrt_areas)
            label_s = torch.gather(labels, 2, matched.clamp(min=0)[..., None]).squeeze(2)
            label_s = torch.where(matched >= 0, label_s, torch.zeros_like(label_s))
        return Assignment.from_matches(
            gt, matched, num_classes, cls_scores=label_s, reg_weights=label_s, extras={"label_s": label_s}
        )


# ---------------------------------------------------------------- ATSS / Dynamic ATSS
def dense_atss_assign(self, priors, gt, num_classes, predictions, progress=None):
    """ATSSAssigner.assign as of 926271f: (N, R, G) distances, full per-level sort, and an
    (N, R, G) score grid for the per-prior resolution."""
    anchors = priors.anchors
    device = anchors.device
    n_img, n_gt = gt.classes.shape
    n_pri = anchors.shape[0]
    w_a, w_p = self.iou_weights(progress)
    weights_t = torch.tensor([w_a, w_p], device=device)
    pred_boxes = predictions.get("pred_boxes")
    if self.required_predictions and pred_boxes is None:
        raise ValueError(f"{type(self).__name__} with pred_iou_weight={self.pred_iou_weight!r} needs pred_boxes")
    if n_gt == 0 or n_pri == 0:
        matched = torch.full((n_img, n_pri), -1, dtype=torch.long, device=device)
        extras = {
            "threshold": torch.zeros(n_img, n_gt, device=device),
            "matched_iou": torch.zeros(n_img, n_pri, device=device),
            "iou_weights": weights_t,
        }
        return Assignment.from_matches(gt, matched, num_classes, extras=extras)

    boxes = gt.boxes.to(anchors.dtype)
    anchor_centers = (anchors[:, :2] + anchors[:, 2:]) / 2
    gt_centers = (boxes[..., :2] + boxes[..., 2:]) / 2
    dist = (anchor_centers[None, :, None, :] - gt_centers[:, None, :, :]).pow(2).sum(-1).sqrt()
    cand = select_topk_candidates(dist, priors.num_per_level, self.topk)
    k_total = cand.shape[1]
    cand_anchors = anchors[cand]
    cand_centers = anchor_centers[cand]
    gt_b = boxes[:, None]
    ciou = torch.zeros(n_img, k_total, n_gt, device=device, dtype=anchors.dtype)
    threshold = torch.zeros(n_img, n_gt, device=device, dtype=anchors.dtype)
    if w_a != 0.0:
        aiou = aligned_box_iou(cand_anchors, gt_b)
        ciou = ciou + w_a * aiou
        threshold = threshold + w_a * (aiou.mean(dim=1) + unbiased_std(aiou, dim=1))
    if w_p != 0.0:
        flat = cand.reshape(n_img, k_total * n_gt, 1).expand(-1, -1, 4)
        cand_pred = torch.gather(pred_boxes.to(anchors.dtype), 1, flat).view(n_img, k_total, n_gt, 4)
        piou = torch.nan_to_num(aligned_box_iou(cand_pred, gt_b), nan=0.0, posinf=0.0, neginf=0.0)
        ciou = ciou + w_p * piou
        threshold = threshold + w_p * (piou.mean(dim=1) + unbiased_std(piou, dim=1))
    threshold = torch.where(gt.valid, threshold, torch.zeros_like(threshold))
    ltrb = torch.cat([cand_centers - gt_b[..., :2], gt_b[..., 2:] - cand_centers], dim=-1)
    inside = ltrb.min(dim=-1).values > self.center_margin
    positive = (ciou >= threshold[:, None, :]) & inside & gt.valid[:, None, :]
    neg_inf = torch.full_like(ciou, float("-inf"))
    score = torch.full((n_img, n_pri, n_gt), float("-inf"), device=device, dtype=ciou.dtype)
    score.scatter_(1, cand, torch.where(positive, ciou, neg_inf))
    best, matched = score.max(dim=2)
    is_pos = torch.isfinite(best)
    matched = torch.where(is_pos, matched, torch.full_like(matched, -1))
    reg_weights = None
    if self.regression_weight == "centerness":
        idx = matched.clamp(min=0)[..., None].expand(-1, -1, 4)
        own = torch.gather(boxes, 1, idx)
        own_ltrb = torch.cat([anchor_centers[None] - own[..., :2], own[..., 2:] - anchor_centers[None]], dim=-1)
        reg_weights = torch.where(is_pos, centerness_from_ltrb(own_ltrb), torch.zeros_like(best))
    extras = {
        "threshold": threshold,
        "matched_iou": torch.where(is_pos, best, torch.zeros_like(best)),
        "iou_weights": weights_t,
    }
    return Assignment.from_matches(gt, matched, num_classes, reg_weights=reg_weights, extras=extras)


class DenseATSSAssigner(ATSSAssigner):
    assign = dense_atss_assign


class DenseDynamicATSSAssigner(DynamicATSSAssigner):
    assign = dense_atss_assign


# ---------------------------------------------------------------- DDOD (from the spec)
class DenseDDODAssigner(DDODAssigner):
    """DDOD's label-assignment disentanglement (spec ``ddod.md`` §1), dense: the cost of
    every (prior, gt) pair, C[a, g] = p(a, class_g)^(1−α) · IoU(pred_box[a], gt_g)^α (paper
    eq. 1), is an (N, R, G) grid; candidates are the k nearest anchor centres per level
    (L2); threshold = mean + unbiased std of C over the candidates; positive iff C ≥
    threshold and the anchor centre is more than ``center_margin`` inside the gt; several
    gts → the highest cost (exact ties: the lowest gt index). Run with α_cls for the
    classification positives and α_reg for the regression positives.

    Bad input, as the library documents it: a non-finite score or predicted box gives
    p = 0 or IoU = 0; padding gts are never positive and have threshold 0.
    """

    def dense_cost_atss(self, priors, gt, prob, iou, alpha):
        """(matched (N, R), winning cost (N, R), threshold (N, G)) for one α."""
        anchors = priors.anchors
        boxes = gt.boxes.to(anchors.dtype)
        cost = prob.pow(1.0 - alpha) * iou.pow(alpha)  # (N, R, G), eq. 1
        centers = (anchors[:, :2] + anchors[:, 2:]) / 2
        gt_centers = (boxes[..., :2] + boxes[..., 2:]) / 2
        dist = (centers[None, :, None, :] - gt_centers[:, None, :, :]).pow(2).sum(-1).sqrt()
        cand = select_topk_candidates(dist, priors.num_per_level, self.topk)  # (N, K, G)
        cand_cost = torch.gather(cost, 1, cand)
        threshold = cand_cost.mean(dim=1) + unbiased_std(cand_cost, dim=1)
        threshold = torch.where(gt.valid, threshold, torch.zeros_like(threshold))
        is_cand = torch.zeros_like(cost, dtype=torch.bool).scatter_(1, cand, True)
        inside = point_box_ltrb(centers, boxes).min(dim=-1).values > self.center_margin
        positive = is_cand & (cost >= threshold[:, None, :]) & inside & gt.valid[:, None, :]
        score = torch.where(positive, cost, torch.full_like(cost, float("-inf")))
        best, matched = score.max(dim=2)  # first maximum: the lowest gt index
        is_pos = torch.isfinite(best)
        matched = torch.where(is_pos, matched, torch.full_like(matched, -1))
        return matched, torch.where(is_pos, best, torch.zeros_like(best)), threshold

    def assign(self, priors, gt, num_classes, predictions, progress=None):
        logits, pred_boxes = predictions["cls_logits"], predictions["pred_boxes"]
        n_img, n_gt = gt.classes.shape
        n_pri = len(priors)
        if n_gt == 0 or n_pri == 0:
            matched = torch.full((n_img, n_pri), -1, dtype=torch.long, device=logits.device)
            zeros_g = torch.zeros(n_img, n_gt, device=logits.device)
            zeros_r = torch.zeros(n_img, n_pri, device=logits.device)
            extras = {"cls_threshold": zeros_g, "reg_threshold": zeros_g, "cls_cost": zeros_r, "reg_cost": zeros_r}
            return Assignment.from_matches(gt, matched, num_classes, extras=extras, reg_matched=matched)
        own_class = gt.classes.clamp(min=0)[:, None, :].expand(n_img, n_pri, n_gt)
        prob = torch.nan_to_num(torch.gather(logits, 2, own_class).sigmoid(), nan=0.0)  # (N, R, G)
        iou = aligned_box_iou(pred_boxes[:, :, None, :], gt.boxes.to(pred_boxes.dtype)[:, None, :, :])
        iou = torch.nan_to_num(iou, nan=0.0, posinf=0.0, neginf=0.0)
        cls_matched, cls_cost, cls_thr = self.dense_cost_atss(priors, gt, prob, iou, self.cls_alpha)
        reg_matched, reg_cost, reg_thr = self.dense_cost_atss(priors, gt, prob, iou, self.reg_alpha)
        extras = {"cls_threshold": cls_thr, "reg_threshold": reg_thr, "cls_cost": cls_cost, "reg_cost": reg_cost}
        return Assignment.from_matches(gt, cls_matched, num_classes, extras=extras, reg_matched=reg_matched)
