"""A deterministic synthetic COCO-format detection dataset ("the embedded dataset").

The dataset is made to exercise the label assignment of dense detectors, not to look
natural: objects of six classes, sizes log-uniform from a few pixels to almost the whole
image, aspect ratios from 1:3 to 3:1, up to 12 objects per image with overlap and
occlusion, on cluttered backgrounds with unannotated distractors (lines, curves, soft
blobs, speckles, wires). Classes are separable by *hue band and shape*: class ``c``
(``SYNTH_CLASSES[c]``, 0-based) is painted with a hue of ``c * 60`` degrees +- 12 degrees
(red, yellow, green, cyan, blue, magenta for rectangle, ellipse, triangle, cross, ring,
star; the two round classes, ellipse and ring, are opposite on the colour wheel), with
saturation in [0.55, 1] and value in [0.5, 1] random per instance, plus the texture and
noise inside every object. Why: the CPU-budget benchmark trains small detectors from
random init for minutes, and what it has to compare is label assignment (which anchors
or points become positives across FPN levels, aspect ratios, overlaps and clutter), not
fine shape recognition; with colours random per instance, classification was too hard
in that budget and dominated the AP. Backgrounds and distractors still have arbitrary
colours (any hue), so colour alone does not tell where objects are. The annotated box is
the tight box of the *visible* pixels of an
instance. Instances that are mostly hidden or cut off (visible fraction below
``min_visible_fraction``) are not annotated as objects; those of them that are still
clearly visible (visible box at least ``crowd_min_box_size`` pixels on each side and at
least ``crowd_min_pixels`` visible pixels) are written as ``iscrowd: 1`` annotations, so
that COCO evaluation ignores detections on them and Detectron2's ``DatasetMapper`` drops
them from training, instead of penalising detectors that find them. Smaller ones are
dropped.

Everything is a pure function of ``(split, seed, image index, parameters)``: two
generations give byte-identical json files and identical image files.

Layout (``root`` is :func:`synthetic_root`)::

    root/<split>.json        COCO instances json
    root/<split>/000000.jpg  images (JPEG quality 95)
    root/<split>.stamp       generator version + parameters of a *complete* split
    root/.<split>.lock       lock file for concurrent callers

Datasets ``dsla_synth_train`` (2000 images), ``dsla_synth_val`` (300),
``dsla_synth_tiny`` (16, for tests) and ``dsla_synth_crowd`` (8 crowded images, 300–1000
objects each) are registered by :func:`register_synthetic_datasets`; a split is generated
on first use and cached.
"""
import contextlib
import fcntl
import functools
import json
import logging
import os
import shutil
import tempfile
import zlib
from statistics import NormalDist

import cv2
import numpy as np

__all__ = [
    "GENERATOR_VERSION",
    "SYNTH_CLASSES",
    "CLASS_HUE_CENTRES",
    "CLASS_HUE_JITTER",
    "SYNTH_SPLITS",
    "SYNTH_DATASET_PREFIX",
    "DEFAULT_PARAMS",
    "synthetic_root",
    "render_synthetic_image",
    "generate_synthetic_coco",
    "synthetic_split_paths",
    "ensure_synthetic_split",
    "register_synthetic_datasets",
]

logger = logging.getLogger(__name__)

#: Bump whenever the output of the generator changes for the same parameters: cached
#: splits with another version are regenerated.
GENERATOR_VERSION = 3  # 2: mostly hidden but clearly visible instances -> iscrowd
# 3: per-class hue bands (object colour no longer random per instance)

#: Class names; category id ``k + 1`` is ``SYNTH_CLASSES[k]``. Class ``k`` is painted in
#: the hue band ``CLASS_HUE_CENTRES[k] +- CLASS_HUE_JITTER`` degrees (red, yellow, green,
#: cyan, blue, magenta): classes are separable by hue band and shape, so that the
#: CPU-budget benchmark measures label assignment rather than fine shape recognition.
SYNTH_CLASSES = ["rectangle", "ellipse", "triangle", "cross", "ring", "star"]

#: Hue band of each class (degrees, centre ``k * 60``) and its half width.
CLASS_HUE_CENTRES = tuple(60.0 * k for k in range(len(SYNTH_CLASSES)))
CLASS_HUE_JITTER = 12.0
#: Saturation and value ranges (HSV in [0, 1]) of object colours, uniform per instance.
CLASS_SATURATION_RANGE = (0.55, 1.0)
CLASS_VALUE_RANGE = (0.5, 1.0)

#: split -> number of images, seed and generator parameters overriding
#: :data:`DEFAULT_PARAMS`. Dataset names are ``SYNTH_DATASET_PREFIX + split``.
#: ``crowd``: 8 larger images, each with 400–1300 small objects (5–16 px) of which about
#: 300–1000 stay visible enough to be annotated — the crowded scenes (CrowdHuman, aerial,
#: retail shelves) that stress label assignment with hundreds of gts per image.
SYNTH_SPLITS = {
    "train": {"num_images": 2000, "seed": 0},
    "val": {"num_images": 300, "seed": 1},
    "tiny": {"num_images": 16, "seed": 2},
    "crowd": {
        "num_images": 8,
        "seed": 3,
        "params": {
            "image_size_range": (448, 512),
            "num_objects_range": (400, 1300),
            "min_object_size": 5.0,
            "max_object_frac": 0.032,
            "max_aspect_ratio": 2.0,
            "empty_fraction": 0.0,
        },
    },
}
SYNTH_DATASET_PREFIX = "dsla_synth_"

#: Generator parameters (keyword arguments of :func:`generate_synthetic_coco`).
DEFAULT_PARAMS = {
    "image_size_range": (256, 384),  # width and height, each uniform in [lo, hi]
    "max_objects": 12,
    "num_objects_range": None,  # (lo, hi): object count uniform in it instead (crowded splits)
    "min_object_size": 6.0,  # long side of an object, pixels (log-uniform from here ...)
    "max_object_frac": 0.95,  # ... up to this fraction of the image side it lies along
    "max_aspect_ratio": 3.0,
    "empty_fraction": 0.03,  # fraction of images with no objects at all
    "min_visible_fraction": 0.3,  # less visible instances are no objects (crowd or dropped)
    "min_box_size": 3,  # visible boxes narrower or lower than this (pixels) are dropped
    "crowd_min_box_size": 8,  # less visible instances with a visible box at least this
    "crowd_min_pixels": 64,  # wide and high, and this many visible pixels: iscrowd 1
    "jpeg_quality": 95,
}

_TEXTURES = ("noise", "stripes", "gradient", "blotches")

# Standard normal quantiles of 256 equiprobable bins: indexing it with uniform random bytes
# gives Gaussian noise (quantised, tails cut at 2.9 sigma) several times faster than
# Generator.standard_normal, which dominated the generation time.
_GAUSS_LUT = np.array([NormalDist().inv_cdf((k + 0.5) / 256) for k in range(256)], np.float32)


def _gauss(rng, shape, sigma):
    """float32 Gaussian noise of std ~``sigma``."""
    return _GAUSS_LUT[rng.integers(0, 256, size=shape, dtype=np.uint8)] * np.float32(sigma)


# ============================================================================ geometry
def _unit_shape(cls_name, rng):
    """Polygons of one shape in the unit box [-0.5, 0.5]^2.

    Returns (fill, holes): lists of (N, 2) float arrays; ``holes`` are cleared after
    ``fill`` is drawn (only the ring has one).
    """
    if cls_name == "rectangle":
        return [np.array([[-0.5, -0.5], [0.5, -0.5], [0.5, 0.5], [-0.5, 0.5]])], []
    if cls_name in ("ellipse", "ring"):
        t = np.linspace(0, 2 * np.pi, 64, endpoint=False)
        outer = 0.5 * np.stack([np.cos(t), np.sin(t)], axis=1)
        if cls_name == "ellipse":
            return [outer], []
        return [outer], [outer * rng.uniform(0.45, 0.7)]
    if cls_name == "triangle":
        apex = rng.uniform(-0.5, 0.5)
        tri = np.array([[apex, -0.5], [0.5, 0.5], [-0.5, 0.5]])
        k = int(rng.integers(4))  # which side the apex points to
        rot = np.array([[0.0, -1.0], [1.0, 0.0]])
        for _ in range(k):
            tri = tri @ rot.T
        return [tri], []
    if cls_name == "cross":
        t = rng.uniform(0.28, 0.45)  # bar thickness
        ox, oy = rng.uniform(-0.12, 0.12, size=2)  # where the bars cross
        horiz = np.array([[-0.5, oy - t / 2], [0.5, oy - t / 2], [0.5, oy + t / 2], [-0.5, oy + t / 2]])
        vert = np.array([[ox - t / 2, -0.5], [ox + t / 2, -0.5], [ox + t / 2, 0.5], [ox - t / 2, 0.5]])
        return [horiz, vert], []
    if cls_name == "star":
        inner = rng.uniform(0.38, 0.5)
        a0 = rng.uniform(0, 2 * np.pi / 5)
        ang = a0 + np.arange(10) * np.pi / 5
        rad = np.where(np.arange(10) % 2 == 0, 0.5, 0.5 * inner)
        return [np.stack([rad * np.cos(ang), rad * np.sin(ang)], axis=1)], []
    raise ValueError(f"unknown synthetic class {cls_name!r}")


def _rasterize(fill, holes):
    """Binary mask of polygons given in image coordinates, on the smallest local canvas.

    Returns (mask uint8 {0,1}, x0, y0): the mask's top-left pixel is (x0, y0).
    """
    pts = np.concatenate(fill)
    x0, y0 = np.floor(pts.min(0)).astype(int) - 1
    x1, y1 = np.ceil(pts.max(0)).astype(int) + 2
    mask = np.zeros((y1 - y0, x1 - x0), np.uint8)
    off = np.array([x0, y0], np.float64)

    def fixed(polys):  # sub-pixel coordinates, 4 fractional bits; pixel centres at .0
        return [np.round((p - off) * 16).astype(np.int32) for p in polys]

    # one call per polygon: a single fillPoly call with overlapping polygons leaves the
    # overlap empty (even-odd rule), which would punch a hole in the cross
    for poly in fixed(fill):
        cv2.fillPoly(mask, [poly], 1, lineType=cv2.LINE_8, shift=4)
    for poly in fixed(holes):
        cv2.fillPoly(mask, [poly], 0, lineType=cv2.LINE_8, shift=4)
    return mask, int(x0), int(y0)


# ============================================================================ painting
def _hsv_to_bgr(hue, sat, val):
    """BGR colour (3 floats in [0, 255]) of hue (degrees), saturation and value in [0, 1]."""
    h6 = (hue % 360.0) / 60.0
    k = int(h6) % 6
    f = h6 - int(h6)
    p, q, t = val * (1 - sat), val * (1 - sat * f), val * (1 - sat * (1 - f))
    r, g, b = ((val, t, p), (q, val, p), (p, val, t), (p, q, val), (t, p, val), (val, p, q))[k]
    return np.array([b, g, r]) * 255.0


def _class_colour(rng, cls, avoid, min_dist=90.0, tries=24):
    """A colour (3 floats, BGR) in the hue band of class ``cls``, with random saturation
    and value, preferably far from ``avoid`` (what it will be painted over)."""
    best, best_d = None, -1.0
    for _ in range(tries):
        hue = CLASS_HUE_CENTRES[cls] + rng.uniform(-CLASS_HUE_JITTER, CLASS_HUE_JITTER)
        c = _hsv_to_bgr(hue, rng.uniform(*CLASS_SATURATION_RANGE), rng.uniform(*CLASS_VALUE_RANGE))
        d = float(np.linalg.norm(c - avoid))
        if d >= min_dist:
            return c
        if d > best_d:
            best, best_d = c, d
    return best


def _texture(rng, h, w, colour):
    """An (h, w, 3) float32 texture around ``colour``."""
    kind = _TEXTURES[int(rng.integers(len(_TEXTURES)))]
    if kind == "noise":
        pat = _gauss(rng, (h, w, 1), rng.uniform(8, 22))
    elif kind == "stripes":
        period = rng.uniform(3, 16)
        phi = rng.uniform(0, np.pi)
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        pat = np.sin((xx * np.cos(phi) + yy * np.sin(phi)) * (2 * np.pi / period) + rng.uniform(0, 6.3))
        pat = (pat * rng.uniform(15, 40))[..., None]
    elif kind == "gradient":
        phi = rng.uniform(0, 2 * np.pi)
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        ramp = xx * np.cos(phi) + yy * np.sin(phi)
        ramp = (ramp - ramp.min()) / max(float(np.ptp(ramp)), 1.0) - 0.5
        pat = (ramp * rng.uniform(30, 80))[..., None]
    else:  # blotches: low-frequency colour noise
        gh, gw = max(2, h // 8), max(2, w // 8)
        small = rng.standard_normal((gh, gw, 3), dtype=np.float32)
        pat = cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR) * rng.uniform(12, 30)
    tex = colour.astype(np.float32)[None, None, :] + pat
    tex += _gauss(rng, (h, w, 3), rng.uniform(2, 6))  # grain
    return tex


def _background(rng, h, w):
    """Smooth colour gradient + low-frequency variation, uint8 (h, w, 3)."""
    k = int(rng.integers(2, 5))
    grid = rng.uniform(0, 255, size=(k, k, 3)).astype(np.float32)
    bg = cv2.resize(grid, (w, h), interpolation=cv2.INTER_LINEAR)
    g = int(rng.integers(4, 12))
    low = rng.standard_normal((g, g, 3), dtype=np.float32) * rng.uniform(5, 25)
    bg += cv2.resize(low, (w, h), interpolation=cv2.INTER_CUBIC)
    return np.clip(bg, 0, 255).astype(np.uint8)


def _rand_bgr(rng):
    return tuple(int(v) for v in rng.integers(0, 256, size=3))


def _distractors(rng, img):
    """Unannotated clutter, drawn on the background (below the objects)."""
    h, w = img.shape[:2]
    # straight lines, some crossing the whole image
    for _ in range(int(rng.integers(0, 9))):
        p1 = (int(rng.integers(-w // 4, w + w // 4)), int(rng.integers(-h // 4, h + h // 4)))
        p2 = (int(rng.integers(-w // 4, w + w // 4)), int(rng.integers(-h // 4, h + h // 4)))
        cv2.line(img, p1, p2, _rand_bgr(rng), int(rng.integers(1, 4)), cv2.LINE_AA)
    # open random-walk curves
    for _ in range(int(rng.integers(0, 4))):
        n = int(rng.integers(3, 9))
        start = rng.uniform([0, 0], [w, h])
        steps = rng.normal(0, rng.uniform(8, 40), size=(n, 2))
        pts = np.round(start + np.cumsum(steps, axis=0)).astype(np.int32)
        cv2.polylines(img, [pts], False, _rand_bgr(rng), int(rng.integers(1, 3)), cv2.LINE_AA)
    # thin open arcs (at most 240 degrees, so they never look like a ring)
    for _ in range(int(rng.integers(0, 3))):
        c = (int(rng.integers(0, w)), int(rng.integers(0, h)))
        ax = (int(rng.integers(5, 60)), int(rng.integers(5, 60)))
        a0 = float(rng.uniform(0, 360))
        cv2.ellipse(img, c, ax, 0.0, a0, a0 + float(rng.uniform(40, 240)), _rand_bgr(rng),
                    int(rng.integers(1, 3)), cv2.LINE_AA)
    # soft (blurred-edge) blobs: no crisp outline, unlike every object class
    for _ in range(int(rng.integers(1, 8))):
        r = float(rng.uniform(3, 22))
        size = int(np.ceil(r * 3)) | 1
        cx, cy = int(rng.integers(0, w)), int(rng.integers(0, h))
        x0, y0 = cx - size // 2, cy - size // 2
        ys, xs = slice(max(y0, 0), min(y0 + size, h)), slice(max(x0, 0), min(x0 + size, w))
        if ys.start >= ys.stop or xs.start >= xs.stop:
            continue
        yy, xx = np.mgrid[ys, xs].astype(np.float32)
        sx, sy = r * rng.uniform(0.5, 1.0), r * rng.uniform(0.5, 1.0)
        alpha = np.exp(-0.5 * (((xx - cx) / sx) ** 2 + ((yy - cy) / sy) ** 2))
        alpha = (alpha * rng.uniform(0.3, 0.85))[..., None]
        col = np.array(_rand_bgr(rng), np.float32)
        roi = img[ys, xs].astype(np.float32)
        img[ys, xs] = (roi * (1 - alpha) + col * alpha).astype(np.uint8)
    # speckle clusters
    for _ in range(int(rng.integers(0, 3))):
        c = rng.uniform([0, 0], [w, h])
        col = _rand_bgr(rng)
        for p in c + rng.normal(0, rng.uniform(3, 12), size=(int(rng.integers(4, 15)), 2)):
            cv2.circle(img, (int(p[0]), int(p[1])), int(rng.integers(0, 2)), col, -1)


def _sample_objects(rng, width, height, n, p):
    """Class, nominal size, rotation and centre of n objects, in painting order."""
    objs = []
    lo, hi = p["min_object_size"], p["max_object_frac"]
    for _ in range(n):
        cls = int(rng.integers(len(SYNTH_CLASSES)))
        horizontal = bool(rng.random() < 0.5)
        side = width if horizontal else height
        long_ = float(np.exp(rng.uniform(np.log(lo), np.log(hi * side))))
        ratio = float(np.exp(rng.uniform(0, np.log(p["max_aspect_ratio"]))))
        short = max(long_ / ratio, min(4.0, long_))
        w, h = (long_, short) if horizontal else (short, long_)
        angle = float(rng.uniform(-15, 15)) if rng.random() < 0.6 else 0.0
        objs.append({"cls": cls, "w": w, "h": h, "angle": angle})
    # big objects mostly first (so they are the ones occluded), with some shuffling
    keys = [-np.log(o["w"] * o["h"]) / 2 + rng.normal(0, 0.6) for o in objs]
    objs = [objs[i] for i in np.argsort(keys, kind="stable")]
    for i, o in enumerate(objs):
        w, h = o["w"], o["h"]
        if i > 0 and rng.random() < 0.3:  # place next to an earlier object: overlaps
            ref = objs[int(rng.integers(i))]
            cx = ref["cx"] + rng.normal(0, 0.35 * (ref["w"] + w))
            cy = ref["cy"] + rng.normal(0, 0.35 * (ref["h"] + h))
        else:  # up to 20% of the object may stick out of the image
            cx = rng.uniform(min(0.3 * w, width / 2), max(width - 0.3 * w, width / 2))
            cy = rng.uniform(min(0.3 * h, height / 2), max(height - 0.3 * h, height / 2))
        o["cx"], o["cy"] = float(cx), float(cy)
    return objs


def render_synthetic_image(split, seed, index, return_visible_map=False, **params):
    """Render image ``index`` of a split.

    Returns (image, annotations): ``image`` is BGR uint8 (H, W, 3); annotations are dicts
    with ``category_id`` (1-based), ``bbox`` [x, y, w, h] (tight box of the visible pixels),
    ``area`` (number of visible pixels) and ``iscrowd``: 0 for objects (visible fraction of
    the whole shape >= ``min_visible_fraction``), 1 for mostly hidden instances that are
    still clearly visible (see the module docstring). Annotations are in painting order.
    With ``return_visible_map``, also an int16 (H, W) map: the index in ``annotations``
    (crowd ones included) of the instance each pixel shows, -1 where no annotated instance
    is visible.
    """
    p = dict(DEFAULT_PARAMS)
    unknown = set(params) - set(p)
    if unknown:
        raise TypeError(f"unknown generator parameters: {sorted(unknown)}")
    p.update(params)
    rng = np.random.default_rng([int(seed), zlib.crc32(split.encode("utf-8")), int(index)])
    lo, hi = p["image_size_range"]
    width, height = int(rng.integers(lo, hi + 1)), int(rng.integers(lo, hi + 1))

    img = _background(rng, height, width)
    _distractors(rng, img)

    if p["num_objects_range"] is not None:
        n = int(rng.integers(p["num_objects_range"][0], p["num_objects_range"][1] + 1))
    elif rng.random() < p["empty_fraction"]:
        n = 0
    elif rng.random() < 0.5:
        n = int(rng.integers(1, min(4, p["max_objects"]) + 1))
    else:
        n = int(rng.integers(1, p["max_objects"] + 1))
    objs = _sample_objects(rng, width, height, n, p)

    owner = np.full((height, width), -1, np.int16)  # which instance owns each pixel
    painted = []  # (instance index, cls, full area, clipped roi)
    for i, o in enumerate(objs):
        fill, holes = _unit_shape(SYNTH_CLASSES[o["cls"]], rng)
        t = np.deg2rad(o["angle"])
        rot = np.array([[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]])
        scale, centre = np.array([o["w"], o["h"]]), np.array([o["cx"], o["cy"]])

        def place(polys):
            return [(q * scale) @ rot.T + centre for q in polys]

        mask, x0, y0 = _rasterize(place(fill), place(holes))
        full_area = int(mask.sum())
        ix0, iy0 = max(x0, 0), max(y0, 0)
        ix1, iy1 = min(x0 + mask.shape[1], width), min(y0 + mask.shape[0], height)
        if full_area == 0 or ix0 >= ix1 or iy0 >= iy1:
            continue
        m = mask[iy0 - y0 : iy1 - y0, ix0 - x0 : ix1 - x0].astype(bool)
        if not m.any():
            continue
        roi = img[iy0:iy1, ix0:ix1]
        colour = _class_colour(rng, o["cls"], roi[m].mean(axis=0))
        tex = _texture(rng, iy1 - iy0, ix1 - ix0, colour)
        if rng.random() < 0.25 and min(o["w"], o["h"]) > 12:  # darker or lighter outline
            edge = m & ~cv2.erode(m.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
            tex[edge] = tex[edge] * rng.uniform(0.3, 0.6) + (rng.random() < 0.5) * 120
        roi[m] = np.clip(tex[m], 0, 255).astype(np.uint8)
        owner[iy0:iy1, ix0:ix1][m] = i
        painted.append((i, o["cls"], full_area, (ix0, iy0, ix1, iy1)))

    # a few thin "wires" on top of everything (occlude objects a little)
    if rng.random() < 0.3:
        wires = np.zeros((height, width), np.uint8)
        for _ in range(int(rng.integers(1, 3))):
            p1 = (int(rng.integers(0, width)), int(rng.integers(0, height)))
            p2 = (int(rng.integers(0, width)), int(rng.integers(0, height)))
            cv2.line(wires, p1, p2, 1, int(rng.integers(1, 3)))
        wires = wires.astype(bool)
        img[wires] = np.array(_rand_bgr(rng), np.uint8)
        owner[wires] = -1

    annotations, kept = [], []
    for i, cls, full_area, (ix0, iy0, ix1, iy1) in painted:
        vis = owner[iy0:iy1, ix0:ix1] == i
        count = int(vis.sum())
        if count == 0:
            continue
        rows, cols = np.flatnonzero(vis.any(axis=1)), np.flatnonzero(vis.any(axis=0))
        bw, bh = int(cols[-1] - cols[0] + 1), int(rows[-1] - rows[0] + 1)
        if count < p["min_visible_fraction"] * full_area:
            # mostly hidden: not an object, but an ignore region if clearly visible
            crowd = 1
            if (bw < p["crowd_min_box_size"] or bh < p["crowd_min_box_size"]
                    or count < p["crowd_min_pixels"]):
                continue
        else:
            crowd = 0
            if bw < p["min_box_size"] or bh < p["min_box_size"]:
                continue
        x, y = int(ix0 + cols[0]), int(iy0 + rows[0])
        annotations.append(
            {"category_id": cls + 1, "bbox": [float(x), float(y), float(bw), float(bh)],
             "area": float(count), "iscrowd": crowd}
        )
        kept.append(i)

    # camera: optional slight blur, then sensor noise
    if rng.random() < 0.3:
        img = cv2.GaussianBlur(img, (3, 3), float(rng.uniform(0.5, 1.0)))
    noise = np.round(_GAUSS_LUT * rng.uniform(2, 6)).astype(np.int16)
    noisy = img.astype(np.int16) + noise[rng.integers(0, 256, size=img.shape, dtype=np.uint8)]
    img = np.clip(noisy, 0, 255).astype(np.uint8)
    if return_visible_map:
        remap = np.full(len(objs) + 1, -1, np.int16)  # index -1 (background) -> -1
        remap[kept] = np.arange(len(kept))
        return img, annotations, remap[owner]
    return img, annotations


def generate_synthetic_coco(out_dir, split, num_images, seed, **params):
    """Write ``num_images`` images to ``out_dir/<split>/`` and ``out_dir/<split>.json``.

    ``params`` override :data:`DEFAULT_PARAMS`. Deterministic: the same arguments give a
    byte-identical json and identical images. Returns the json path.
    """
    p = dict(DEFAULT_PARAMS)
    p.update(params)
    image_dir = os.path.join(out_dir, split)
    os.makedirs(image_dir, exist_ok=True)
    images, annotations = [], []
    encode = [int(cv2.IMWRITE_JPEG_QUALITY), int(p["jpeg_quality"])]
    for index in range(int(num_images)):
        img, anns = render_synthetic_image(split, seed, index, **params)
        file_name = f"{index:06d}.jpg"
        ok, buf = cv2.imencode(".jpg", img, encode)
        if not ok:
            raise RuntimeError(f"cv2 could not encode synthetic image {file_name}")
        with open(os.path.join(image_dir, file_name), "wb") as f:
            f.write(buf.tobytes())
        image_id = index + 1
        images.append(
            {"id": image_id, "file_name": file_name, "width": img.shape[1], "height": img.shape[0]}
        )
        for a in anns:  # ids start at 1: COCOeval treats id 0 as "unmatched"
            annotations.append({"id": len(annotations) + 1, "image_id": image_id, **a})
    coco = {
        "info": {
            "description": "dsla_d2 synthetic shapes dataset",
            "generator_version": GENERATOR_VERSION,
            "split": split,
            "seed": int(seed),
        },
        "licenses": [],
        "images": images,
        "annotations": annotations,
        "categories": [
            {"id": k + 1, "name": name, "supercategory": "shape"}
            for k, name in enumerate(SYNTH_CLASSES)
        ],
    }
    json_path = os.path.join(out_dir, f"{split}.json")
    with open(json_path, "w", encoding="utf-8") as f:
        json.dump(coco, f)
    return json_path


# ============================================================================ caching
def synthetic_root():
    """Directory of the cached synthetic splits."""
    root = os.environ.get("DSLA_D2_SYNTH_ROOT")
    if not root:
        root = os.path.join(os.environ.get("DETECTRON2_DATASETS", "datasets"), "dsla_synth")
    return root


def _split_name(split):
    if split.startswith(SYNTH_DATASET_PREFIX):
        split = split[len(SYNTH_DATASET_PREFIX):]
    if split not in SYNTH_SPLITS:
        raise KeyError(
            f"unknown synthetic split {split!r}; known: {sorted(SYNTH_SPLITS)} "
            f"(or dataset names {[SYNTH_DATASET_PREFIX + s for s in SYNTH_SPLITS]})"
        )
    return split


def synthetic_split_paths(split, root=None):
    """(json path, image root) of a split (they may not exist yet)."""
    split = _split_name(split)
    root = os.path.abspath(root or synthetic_root())
    return os.path.join(root, f"{split}.json"), os.path.join(root, split)


def _split_params(split):
    """The generator parameters of a split: the defaults with its overrides."""
    return {**DEFAULT_PARAMS, **SYNTH_SPLITS[split].get("params", {})}


def _stamp_text(split):
    params = {k: list(v) if isinstance(v, tuple) else v for k, v in _split_params(split).items() if v is not None}
    stamp = {"generator_version": GENERATOR_VERSION, "split": split, **SYNTH_SPLITS[split], "params": params}
    return json.dumps(stamp, sort_keys=True) + "\n"


def _read(path):
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except OSError:
        return None


@contextlib.contextmanager
def _locked(path):
    with open(path, "a") as f:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)


def ensure_synthetic_split(split, root=None):
    """Make sure a split exists under ``root`` (default :func:`synthetic_root`); return
    its json path.

    ``split`` is ``"train"``, ``"val"``, ``"tiny"`` or a dataset name such as
    ``"dsla_synth_train"``. The split is (re)generated when it is missing or its stamp
    file (generator version + parameters) differs. Generation happens in a temporary
    directory that is moved into place, and the stamp is written last, so an interrupted
    run leaves no half dataset. Concurrent callers (threads or processes) serialise on a
    lock file; the second one finds the split ready.
    """
    split = _split_name(split)
    root = os.path.abspath(root or synthetic_root())
    os.makedirs(root, exist_ok=True)
    json_path, image_dir = synthetic_split_paths(split, root)
    stamp_path = os.path.join(root, f"{split}.stamp")
    want = _stamp_text(split)
    with _locked(os.path.join(root, f".{split}.lock")):
        if _read(stamp_path) == want and os.path.isfile(json_path) and os.path.isdir(image_dir):
            return json_path
        # leftovers of interrupted runs (nobody else can be generating this split now)
        for name in os.listdir(root):
            if name.startswith((f".tmp-{split}-", f".old-{split}-")):
                shutil.rmtree(os.path.join(root, name), ignore_errors=True)
        cfg = SYNTH_SPLITS[split]
        logger.info(
            "Generating synthetic split %r (%d images, seed %d) under %s",
            split, cfg["num_images"], cfg["seed"], root,
        )
        tmp = tempfile.mkdtemp(prefix=f".tmp-{split}-", dir=root)
        try:
            generate_synthetic_coco(tmp, split, cfg["num_images"], cfg["seed"], **cfg.get("params", {}))
            with contextlib.suppress(FileNotFoundError):
                os.remove(stamp_path)  # from here on the split is marked incomplete
            if os.path.lexists(image_dir):
                old = tempfile.mkdtemp(prefix=f".old-{split}-", dir=root)
                os.rename(image_dir, os.path.join(old, split))
                shutil.rmtree(old, ignore_errors=True)
            os.rename(os.path.join(tmp, split), image_dir)
            os.replace(os.path.join(tmp, f"{split}.json"), json_path)
            with open(os.path.join(tmp, "stamp"), "w", encoding="utf-8") as f:
                f.write(want)
            os.replace(os.path.join(tmp, "stamp"), stamp_path)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return json_path


# ============================================================================ detectron2
class _SplitSource:
    """Where a registered split lives; the root is fixed on first use, so that
    ``DSLA_D2_SYNTH_ROOT`` may be set after registration (e.g. after ``import dsla_d2``)."""

    def __init__(self, split, root, dataset_name):
        self.split, self._root, self.dataset_name = split, root, dataset_name

    def root(self):
        if self._root is None:
            self._root = os.path.abspath(synthetic_root())
        return self._root

    def image_root(self):
        return synthetic_split_paths(self.split, self.root())[1]

    def json_file(self):
        return ensure_synthetic_split(self.split, root=self.root())

    def __call__(self):  # the DatasetCatalog function
        from detectron2.data.datasets import load_coco_json

        return load_coco_json(self.json_file(), self.image_root(), self.dataset_name)

    def __repr__(self):
        return f"<synthetic split {self.split!r} under {self._root or '$DSLA_D2_SYNTH_ROOT'}>"


@functools.lru_cache(maxsize=None)
def _lazy_metadata_class():
    from detectron2.data.catalog import Metadata

    class SyntheticMetadata(Metadata):
        """Metadata whose ``image_root`` and ``json_file`` are resolved on first access;
        reading ``json_file`` generates the split if needed, so that ``COCOEvaluator``
        works on these names even before the dataset was loaded."""

        _sources = {}  # dataset name -> _SplitSource; kept out of as_dict()

        def __getattr__(self, key):
            source = self._sources.get(self.__dict__.get("name"))
            if source is not None and key in ("json_file", "image_root"):
                value = source.json_file() if key == "json_file" else source.image_root()
                self.__dict__[key] = value
                return value
            return super().__getattr__(key)

    return SyntheticMetadata


def register_synthetic_datasets(root=None):
    """Register ``dsla_synth_{train,val,tiny,crowd}`` in DatasetCatalog/MetadataCatalog.

    Nothing is generated here: a split is generated (once, then cached) when its dataset
    is loaded or its ``json_file`` metadata is read. ``root`` defaults to
    :func:`synthetic_root` as it is at that first use. Names that are already registered
    are skipped. Returns the names registered by this call.
    """
    from dsla_d2 import compat

    compat.apply()
    from detectron2.data import DatasetCatalog, MetadataCatalog

    root = os.path.abspath(root) if root else None
    meta_cls = _lazy_metadata_class()
    registered = []
    for split in SYNTH_SPLITS:
        name = SYNTH_DATASET_PREFIX + split
        if name in DatasetCatalog.list():
            continue
        source = _SplitSource(split, root, name)
        DatasetCatalog.register(name, source)
        if name in MetadataCatalog:  # someone created it already: keep their object
            meta = MetadataCatalog.get(name)
            meta.set(json_file=synthetic_split_paths(split, source.root())[0],
                     image_root=source.image_root())
        else:
            meta = MetadataCatalog[name] = meta_cls(name=name)
            meta_cls._sources[name] = source
        meta.set(
            thing_classes=list(SYNTH_CLASSES),
            thing_dataset_id_to_contiguous_id={k + 1: k for k in range(len(SYNTH_CLASSES))},
            evaluator_type="coco",
        )
        registered.append(name)
    return registered
