"""The sparse assigners give exactly the dense ones' assignments (issue 13).

The reference is today's dense implementation, frozen in ``tests/reference/
dense_assigners.py`` (DDOD's, which landed later, written there from its spec). Every
``Assignment`` field is compared: bit for bit for labels, matched gts and masks; within
1e-6 for the float ones (box targets, scores, weights, extras). The inputs are randomised
but seeded, and built to hit the edge cases of each rule:

* 0–300 gts per image (one case with 3000), several images with different counts (padding),
  images without a gt, no gt at all in the batch;
* tiny (< 1 px), huge (10⁵ px), partly / far outside the image, duplicated (same box,
  other class), degenerate (zero or negative width, non-finite) boxes, and boxes whose
  area overflows float32 (sides ~10¹⁹ px: area = inf);
* range edges: boxes whose max distance m = max(l, t, r, b) from a grid point is exactly a
  size-range or relaxed bound, sqrt(w·h) exactly on a FoveaBox scale bound, box sides on
  grid lines (fovea bounds landing on integers), equal-area overlapping boxes;
* ATSS distance ties: gt centres exactly on a grid point or halfway between grid points,
  centres outside the grid (near and far);
* Dynamic ATSS / DDOD: noisy predicted boxes (one NaN, one inverted) and random class
  logits;
* grid priors with offset 0 and 0.5, several grid shapes, and hand-made arbitrary point
  sets (``Priors`` without ``grid_sizes``) that take the sparse code's fallback path.
"""
import math

import pytest
import torch

import dsla_d2  # noqa: F401
from detectron2.structures import Boxes, Instances

from dsla_d2.assigners import (
    ATSSAssigner,
    DDODAssigner,
    DSLAAssigner,
    DSLAFoveaAssigner,
    DynamicATSSAssigner,
    FCOSAssigner,
    FoveaAssigner,
)
from dsla_d2.priors import PriorGenerator, Priors
from dsla_d2.utils.progress import TrainingProgress

from reference.dense_assigners import (
    DenseATSSAssigner,
    DenseDDODAssigner,
    DenseDSLAAssigner,
    DenseDSLAFoveaAssigner,
    DenseDynamicATSSAssigner,
    DenseFCOSAssigner,
    DenseFoveaAssigner,
)

STRIDES = [8, 16, 32, 64, 128]
SMALL_RANGES = [(0, 16), (16, 32), (32, 64), (64, 128), (128, 1e8)]  # for 100-px images
SMALL_SCALES = [(1, 16), (8, 32), (16, 64), (32, 128), (64, 512)]
NC = 7

# (name, sparse class, dense class, kwargs); every constructor switch that changes a rule.
R, F = {"size_ranges": SMALL_RANGES}, {"scale_ranges": SMALL_SCALES}
SCHEDULE = {"anchor_iou_weight": "down", "pred_iou_weight": "up"}  # D_down / D_up
VARIANTS = [
    ("fcos", FCOSAssigner, DenseFCOSAssigner, {}),
    ("fcos-small", FCOSAssigner, DenseFCOSAssigner, R),
    ("fcos-cs", FCOSAssigner, DenseFCOSAssigner, {**R, "center_sampling_radius": 1.5}),
    ("fcos-inf-range", FCOSAssigner, DenseFCOSAssigner, {"size_ranges": SMALL_RANGES[:4] + [(128, float("inf"))]}),
    ("fcos-uniform", FCOSAssigner, DenseFCOSAssigner, {**R, "regression_weight": "uniform"}),
    ("dsla", DSLAAssigner, DenseDSLAAssigner, {}),
    ("dsla-small", DSLAAssigner, DenseDSLAAssigner, R),
    ("dsla-cs", DSLAAssigner, DenseDSLAAssigner, {**R, "center_sampling_radius": 1.5}),
    ("dsla-nocore-norelax", DSLAAssigner, DenseDSLAAssigner, {**R, "core_zone": False, "relaxation": False}),
    ("dsla-k0-loose", DSLAAssigner, DenseDSLAAssigner, {**R, "kappa": 0.0, "strict_inside": False}),
    ("dsla-k05", DSLAAssigner, DenseDSLAAssigner, {**R, "kappa": 0.5, "centerness_eps": 0.0}),
    ("fovea", FoveaAssigner, DenseFoveaAssigner, {}),
    ("fovea-small", FoveaAssigner, DenseFoveaAssigner, F),
    ("fovea-sigma1", FoveaAssigner, DenseFoveaAssigner, {**F, "sigma": 1.0}),
    ("dsla-fovea", DSLAFoveaAssigner, DenseDSLAFoveaAssigner, F),
    ("dsla-fovea-region", DSLAFoveaAssigner, DenseDSLAFoveaAssigner, {**F, "fovea_region": True}),
    ("dsla-fovea-plain", DSLAFoveaAssigner, DenseDSLAFoveaAssigner, {**F, "core_zone": False, "relaxation": False}),
    ("dsla-fovea-coco", DSLAFoveaAssigner, DenseDSLAFoveaAssigner, {}),
    ("atss", ATSSAssigner, DenseATSSAssigner, {}),
    ("atss-k1-uniform", ATSSAssigner, DenseATSSAssigner, {"topk": 1, "regression_weight": "uniform"}),
    ("atss-k4-margin", ATSSAssigner, DenseATSSAssigner, {"topk": 4, "center_margin": 2.0}),
    ("atss-k30", ATSSAssigner, DenseATSSAssigner, {"topk": 30}),
    ("dynamic-atss", DynamicATSSAssigner, DenseDynamicATSSAssigner, {}),
    ("dynamic-atss-piou", ATSSAssigner, DenseATSSAssigner, {"anchor_iou_weight": 0.0, "pred_iou_weight": 1.0}),
    ("dynamic-atss-sched", DynamicATSSAssigner, DenseDynamicATSSAssigner, SCHEDULE),
    ("ddod", DDODAssigner, DenseDDODAssigner, {}),
    ("ddod-k1", DDODAssigner, DenseDDODAssigner, {"topk": 1}),
    ("ddod-k4-margin", DDODAssigner, DenseDDODAssigner, {"topk": 4, "center_margin": 2.0}),
    ("ddod-k30-alphas", DDODAssigner, DenseDDODAssigner, {"topk": 30, "cls_alpha": 0.5, "reg_alpha": 0.8}),
    ("ddod-alpha-ends", DDODAssigner, DenseDDODAssigner, {"cls_alpha": 0.0, "reg_alpha": 1.0}),  # score / IoU only
]


# ------------------------------------------------------------------------------ priors
def grid_priors(height, width, offset, anchor_scale=4.0):
    sizes = [(math.ceil(height / s), math.ceil(width / s)) for s in STRIDES]
    feats = [torch.zeros(1, 1, h, w) for h, w in sizes]
    return PriorGenerator(STRIDES, offset=offset, anchor_scale=anchor_scale)(feats)


def point_set_priors(gen, width, height, count=150):
    """An arbitrary point set on the 5 levels: random points (some on the 8-px lattice,
    some duplicated), no grid geometry."""
    levels = torch.sort(torch.randint(0, 5, (count,), generator=gen)).values
    pts = torch.rand(count, 2, generator=gen) * torch.tensor([width, height])
    lattice = torch.rand(count, generator=gen) < 0.3
    pts[lattice] = torch.round(pts[lattice] / 8) * 8
    pts[5:10] = pts[0:5]
    strides = torch.tensor(STRIDES, dtype=torch.float32)[levels]
    half = (4 * strides / 2)[:, None]
    anchors = torch.cat([pts - half, pts + half], dim=1)
    num = [int((levels == i).sum()) for i in range(5)]
    return Priors(pts, anchors, strides, levels, num)


# ------------------------------------------------------------------------------ gts
def edge_boxes(gen, priors, n):
    """Boxes built on exact values: max distance from a prior exactly a range bound,
    sqrt(w·h) exactly a scale bound, sides on grid lines, centres on / between points."""
    if n == 0 or len(priors) == 0:
        return torch.zeros(0, 4)
    idx = torch.randint(0, len(priors), (n,), generator=gen)
    p = priors.points[idx]
    s = priors.strides[idx]
    bounds = torch.tensor([8.0, 16, 32, 51, 64, 76, 102, 128, 153, 256, 12.8, 19.2, 24, 38])
    bound = bounds[torch.randint(0, len(bounds), (n,), generator=gen)]
    kind = torch.randint(0, 5, (n,), generator=gen)
    frac = torch.randint(1, 8, (n, 3), generator=gen).float() / 8
    # kind 0: the left side at distance exactly `bound` from point p, other sides closer
    x, y = p[:, 0], p[:, 1]
    b0 = torch.stack([x - bound, y - frac[:, 0] * bound, x + frac[:, 1] * bound, y + frac[:, 2] * bound], 1)
    # kind 1: a square of side `bound` (sqrt area exactly the bound) centred on p
    b1 = torch.cat([p - bound[:, None] / 2, p + bound[:, None] / 2], 1)
    # kind 2: sides on grid lines (multiples of the stride)
    k = torch.randint(1, 6, (n, 2), generator=gen).float()
    lo = torch.floor(p / s[:, None]) * s[:, None]
    b2 = torch.cat([lo, lo + k * s[:, None]], 1)
    # kind 3: centre halfway between two grid points (ATSS distance ties)
    half = torch.cat([p + s[:, None] / 2 - bound[:, None] / 2, p + s[:, None] / 2 + bound[:, None] / 2], 1)
    # kind 4: centre exactly on a point, w = h = integer multiple of the stride
    b4 = torch.cat([p - k * s[:, None] / 2, p + k * s[:, None] / 2], 1)
    out = torch.stack([b0, b1, b2, half, b4], 1)[torch.arange(n), kind]
    return out


def random_boxes(gen, priors, n, width, height):
    """n boxes: a mix of ordinary, tiny, huge, outside, duplicate, degenerate and edge
    boxes (see the module docstring)."""
    if n == 0:
        return torch.zeros(0, 4)
    kind = torch.randint(0, 11, (n,), generator=gen)
    xy = torch.rand(n, 2, generator=gen) * torch.tensor([width, height]) * 1.2 - 10
    wh = torch.exp(torch.rand(n, 2, generator=gen) * math.log(2 * max(width, height)))  # 1 .. 2·side
    boxes = torch.cat([xy, xy + wh], 1)
    tiny = torch.cat([xy, xy + torch.rand(n, 2, generator=gen) * 0.9 + 0.01], 1)
    huge = torch.cat([xy - 1e5 * torch.rand(n, 2, generator=gen), xy + 1e5 * torch.rand(n, 2, generator=gen)], 1)
    far = boxes + torch.tensor([1, -1, 1, -1]) * (200 + 1e4 * torch.rand(n, 1, generator=gen))
    near_out = boxes - torch.cat([xy + wh, xy + wh], 1) + torch.rand(n, 1, generator=gen) * 4  # just left/above
    degenerate = torch.cat([xy, xy + wh * torch.tensor([0.0, 1.0])], 1)
    overflow = torch.cat([xy - 3e19 * torch.rand(n, 2, generator=gen), xy + 3e19 * torch.rand(n, 2, generator=gen)], 1)
    edges = edge_boxes(gen, priors, n)
    choice = torch.stack([boxes, boxes, boxes, tiny, huge, far, near_out, degenerate, edges, edges, overflow], 1)
    out = choice[torch.arange(n), kind]
    dup = torch.rand(n, generator=gen) < 0.1  # duplicates of an earlier box
    src = torch.randint(0, n, (n,), generator=gen)
    out[dup] = out[src[dup]]
    if n > 3:
        out[0, 2] = out[0, 0] - 3  # inverted
        out[1] = torch.tensor([float("nan"), 0, 10, 10])
        out[2] = torch.tensor([0, 0, float("inf"), 10])
    return out


def image_gts(gen, priors, counts, width, height):
    gts = []
    for n in counts:
        inst = Instances((height, width))
        inst.gt_boxes = Boxes(random_boxes(gen, priors, n, width, height))
        inst.gt_classes = torch.randint(0, NC, (n,), generator=gen)
        gts.append(inst)
    return gts


def predictions(gen, priors, num_images):
    r = len(priors)
    centers = priors.points[None].expand(num_images, r, 2)
    wh = torch.exp(torch.randn(num_images, r, 2, generator=gen)) * priors.strides[None, :, None] * 2
    boxes = torch.cat([centers - wh / 2, centers + wh / 2], -1)
    boxes[:, ::7] = boxes[:, ::7].round()
    if r > 20:
        boxes[0, 3] = float("nan")
        boxes[-1, 11] = torch.tensor([5.0, 5.0, 2.0, 2.0])  # inverted
    return {"pred_boxes": boxes, "cls_logits": torch.randn(num_images, r, NC, generator=gen)}


# ------------------------------------------------------------------------------ cases
def cases():
    """(name, priors, gts, predictions) of every scenario, seeded."""
    gen = torch.Generator().manual_seed(13)
    out = []
    for offset in (0.5, 0.0):
        for (h, w) in ((96, 128), (72, 40)):
            p = grid_priors(h, w, offset)
            for counts in ([0], [1], [0, 3, 17], [60, 0], [140, 300, 2]):
                gts = image_gts(gen, p, counts, w, h)
                out.append((f"grid{h}x{w}-o{offset}-{counts}", p, gts, predictions(gen, p, len(counts))))
    p = point_set_priors(gen, 128, 96)
    for counts in ([0], [5, 40], [150, 0, 90]):
        out.append((f"points-{counts}", p, image_gts(gen, p, counts, 128, 96), predictions(gen, p, len(counts))))
    big = grid_priors(160, 224, 0.5)
    out.append(("grid160x224-3000", big, image_gts(gen, big, [3000], 224, 160), predictions(gen, big, 1)))
    empty = grid_priors(96, 128, 0.5)
    none = Instances((96, 128), gt_boxes=Boxes(torch.zeros(0, 4)), gt_classes=torch.zeros(0, dtype=torch.long))
    out.append(("no-gt-column", empty, [none, none], predictions(gen, empty, 2)))
    return out


CASES = cases()


def assert_same(sparse, dense, where):
    for name in ("labels", "matched_gt", "reg_matched_gt", "reg_mask"):
        a, b = getattr(sparse, name), getattr(dense, name)
        assert a.dtype == b.dtype and torch.equal(a, b), f"{where}: {name} differs at {(a != b).nonzero()[:5].tolist()}"
    for name in ("cls_scores", "cls_weights", "box_targets", "reg_weights"):
        a, b = getattr(sparse, name), getattr(dense, name)
        assert a.dtype == b.dtype and a.shape == b.shape, f"{where}: {name} {a.shape}/{a.dtype} vs {b.shape}/{b.dtype}"
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6, msg=lambda m: f"{where}: {name}: {m}")
    assert sorted(sparse.extras) == sorted(dense.extras), where
    for name, b in dense.extras.items():
        a = sparse.extras[name]
        assert a.dtype == b.dtype and a.shape == b.shape, f"{where}: extras[{name}]"
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6, msg=lambda m: f"{where}: extras[{name}]: {m}")
    assert (sparse.pairs is None) == (dense.pairs is None), where
    for name in ("boxes", "classes", "valid"):
        assert torch.equal(getattr(sparse.gt, name), getattr(dense.gt, name)), where


@pytest.mark.parametrize("variant", VARIANTS, ids=[v[0] for v in VARIANTS])
def test_sparse_equals_dense(variant):
    name, sparse_cls, dense_cls, kwargs = variant
    sparse, dense = sparse_cls(**kwargs), dense_cls(**kwargs)
    progress = TrainingProgress(3, 10)
    positives = 0
    for case, priors, gts, preds in CASES:
        if "3000" in case and not name.endswith(("fcos", "dsla", "atss", "fovea", "dynamic-atss", "ddod")):
            continue  # the large case once per assigner family
        a = sparse(priors, gts, NC, preds, progress=progress)
        b = dense(priors, gts, NC, preds, progress=progress)
        assert_same(a, b, f"{name} on {case}")
        positives += int(b.pos_mask.sum())
    assert positives > 0  # the cases exercise the rules, not only the background
