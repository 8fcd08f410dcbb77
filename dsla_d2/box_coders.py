"""Box coders: between a head's regression output and absolute XYXY boxes.

Assigners produce targets as absolute boxes; how a head parametrises them is the coder's
business. Each coder has ``decode(pred, priors) -> boxes`` and ``encode(boxes, priors)
-> regression targets`` on tensors shaped (..., R, 4) broadcast against the priors.
"""
import math

import torch
from torch import Tensor

from detectron2.modeling.box_regression import Box2BoxTransform

from .priors import Priors

__all__ = ["LTRBBoxCoder", "DeltaBoxCoder", "FoveaLogBoxCoder"]


class LTRBBoxCoder:
    """Distances (left, top, right, bottom) from a point to the box sides (FCOS, DSLA).

    The head applies the activation (exp, or ReLU for "norm_on_bbox"); with
    ``normalize_by_stride`` the distances are in units of the level's stride.
    """

    def __init__(self, normalize_by_stride: bool = False):
        self.normalize_by_stride = normalize_by_stride

    def _unit(self, priors: Priors) -> Tensor:
        if self.normalize_by_stride:
            return priors.strides[:, None]
        return torch.ones_like(priors.strides)[:, None]

    def decode(self, pred: Tensor, priors: Priors) -> Tensor:
        d = pred * self._unit(priors)
        p = priors.points
        return torch.cat([p - d[..., :2], p + d[..., 2:]], dim=-1)

    def encode(self, boxes: Tensor, priors: Priors) -> Tensor:
        p = priors.points
        d = torch.cat([p - boxes[..., :2], boxes[..., 2:] - p], dim=-1)
        return d / self._unit(priors)


class DeltaBoxCoder:
    """(dx, dy, dw, dh) against the square anchors (ATSS); wraps Detectron2's transform."""

    def __init__(self, weights=(10.0, 10.0, 5.0, 5.0), scale_clamp: float = math.log(1000.0 / 16)):
        self.transform = Box2BoxTransform(weights=tuple(weights), scale_clamp=scale_clamp)

    def decode(self, pred: Tensor, priors: Priors) -> Tensor:
        anchors = priors.anchors.expand_as(pred).reshape(-1, 4)
        boxes = self.transform.apply_deltas(pred.reshape(-1, 4), anchors)
        return boxes.view(pred.shape)

    def encode(self, boxes: Tensor, priors: Priors) -> Tensor:
        anchors = priors.anchors.expand_as(boxes).reshape(-1, 4)
        deltas = self.transform.get_deltas(anchors, boxes.reshape(-1, 4))
        return deltas.view(boxes.shape)


class FoveaLogBoxCoder:
    """FoveaBox: t = log(distance / z_l) per side, z_l the level's base edge.

    Targets are clamped to [1/16, 16]·z_l before the log (FoveaBox paper / mmdetection).

    Args:
        base_edges: z_l per level (16, 32, 64, 128, 256 for strides 8..128).
        clamp: the range of distance / z_l that targets are clamped to.
        cap_decode: cap the decoded exp at the largest encodable distance (``clamp[1]``;
            a guard against overflow of an unbounded output), or decode ``exp`` uncapped
            (False: mmdetection's FoveaHead, for the same outputs as its checkpoints).
    """

    def __init__(self, base_edges=(16, 32, 64, 128, 256), clamp=(1.0 / 16, 16.0), cap_decode: bool = True):
        self.base_edges = [float(z) for z in base_edges]
        self.clamp = clamp
        self.cap_decode = bool(cap_decode)

    def _edges(self, priors: Priors) -> Tensor:
        z = torch.tensor(self.base_edges, device=priors.points.device, dtype=priors.points.dtype)
        return z[priors.levels][:, None]

    def decode(self, pred: Tensor, priors: Priors) -> Tensor:
        # exp of an unbounded linear output: cap at the largest encodable distance.
        d = (pred.clamp(max=math.log(self.clamp[1])) if self.cap_decode else pred).exp() * self._edges(priors)
        p = priors.points
        return torch.cat([p - d[..., :2], p + d[..., 2:]], dim=-1)

    def encode(self, boxes: Tensor, priors: Priors) -> Tensor:
        p = priors.points
        d = torch.cat([p - boxes[..., :2], boxes[..., 2:] - p], dim=-1) / self._edges(priors)
        return d.clamp(min=self.clamp[0], max=self.clamp[1]).log()
