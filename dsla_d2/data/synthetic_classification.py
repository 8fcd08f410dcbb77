"""A synthetic *classification* set for pre-training the embedded backbone: the stand-in for
ImageNet next to the embedded detection dataset's stand-in for COCO.

It is drawn from a different distribution than the detection data
(:mod:`dsla_d2.data.synthetic`), as ImageNet differs from COCO:

=================  ==========================================  ==============================
                   detection data (COCO stand-in)              this set (ImageNet stand-in)
=================  ==========================================  ==============================
classes            rectangle, ellipse, triangle, cross, ring,  pentagon, hexagon, arrow,
                   star                                        chevron, crescent, heart,
                                                               L-shape, T-shape, trapezoid,
                                                               semicircle (none shared)
layout             0-12 objects, 6 px to the whole image,      one object, centred within
                   axis-aligned, occluding each other          ±15 %, 40-90 % of the side,
                                                               any rotation
colour             hue band per class                          any colour (the label is the
                                                               shape alone)
texture            noise, stripes, gradient, blotches          checkerboard, dots, concentric
                                                               rings, flat
background         smooth gradient + lines, curves, blobs,     multi-octave value noise in two
                   speckles                                    colours, or tiles, or a horizon
image              256-384 px JPEG                             64 × 64 px, in memory
=================  ==========================================  ==============================

Everything is a pure function of ``(seed, index)``: :func:`render_shape_image` draws image
``index`` of the set with ``seed``.
"""
from typing import Tuple

import cv2
import numpy as np

__all__ = ["SHAPE_CLASSES", "IMAGE_SIZE", "render_shape_image", "make_shape_set"]

#: The ten classes; label k is ``SHAPE_CLASSES[k]``. None of them is a detection class.
SHAPE_CLASSES = [
    "pentagon", "hexagon", "arrow", "chevron", "crescent",
    "heart", "l_shape", "t_shape", "trapezoid", "semicircle",
]
IMAGE_SIZE = 64
_TEXTURES = ("checker", "dots", "rings", "flat")
_BACKGROUNDS = ("value_noise", "tiles", "horizon")


def _regular_polygon(n: int) -> np.ndarray:
    t = np.arange(n) * (2 * np.pi / n) - np.pi / 2
    return 0.5 * np.stack([np.cos(t), np.sin(t)], axis=1)


def _unit_polygons(name: str, rng: np.random.Generator):
    """(fill, holes): lists of (N, 2) polygons in the unit box [-0.5, 0.5]^2; ``holes`` are
    cleared after ``fill`` is drawn."""
    if name == "pentagon":
        return [_regular_polygon(5)], []
    if name == "hexagon":
        return [_regular_polygon(6)], []
    if name == "arrow":  # shaft on the left, head on the right
        s = rng.uniform(0.12, 0.2)  # half the shaft's thickness
        head = rng.uniform(0.0, 0.2)  # where the head starts
        return [np.array([[-0.5, -s], [head, -s], [head, -0.5], [0.5, 0.0], [head, 0.5], [head, s], [-0.5, s]])], []
    if name == "chevron":
        d = rng.uniform(0.25, 0.4)  # thickness along x
        return [np.array([[-0.5, -0.5], [-0.5 + d, -0.5], [0.5, 0.0], [-0.5 + d, 0.5], [-0.5, 0.5], [0.5 - d, 0.0]])], []
    if name in ("crescent", "semicircle"):
        t = np.linspace(0, 2 * np.pi, 48, endpoint=False)
        disc = 0.5 * np.stack([np.cos(t), np.sin(t)], axis=1)
        if name == "semicircle":
            half = np.linspace(0, np.pi, 25)  # the lower half disc, its box centred
            return [np.stack([0.5 * np.cos(half), 0.5 * np.sin(half) - 0.25], axis=1)], []
        shift = rng.uniform(0.2, 0.35)
        return [disc], [disc * rng.uniform(0.85, 1.0) + np.array([shift, 0.0])]
    if name == "heart":
        t = np.linspace(0, 2 * np.pi, 64, endpoint=False)
        x = 16 * np.sin(t) ** 3
        y = -(13 * np.cos(t) - 5 * np.cos(2 * t) - 2 * np.cos(3 * t) - np.cos(4 * t))
        pts = np.stack([x, y], axis=1)
        pts = (pts - (pts.max(0) + pts.min(0)) / 2) / np.ptp(pts, axis=0)
        return [pts], []
    if name == "l_shape":
        a = rng.uniform(0.25, 0.4)
        return [np.array([[-0.5, -0.5], [-0.5 + a, -0.5], [-0.5 + a, 0.5 - a], [0.5, 0.5 - a], [0.5, 0.5], [-0.5, 0.5]])], []
    if name == "t_shape":
        a = rng.uniform(0.25, 0.35)
        return [np.array([[-0.5, -0.5], [0.5, -0.5], [0.5, -0.5 + a], [a / 2, -0.5 + a], [a / 2, 0.5], [-a / 2, 0.5], [-a / 2, -0.5 + a], [-0.5, -0.5 + a]])], []
    if name == "trapezoid":
        top = rng.uniform(0.15, 0.35)
        return [np.array([[-top, -0.35], [top, -0.35], [0.5, 0.35], [-0.5, 0.35]])], []
    raise ValueError(f"unknown shape class {name!r}")


def _value_noise(rng, size: int) -> np.ndarray:
    """(size, size) float32 in [0, 1]: octaves 2, 4, 8, 16 of bilinear value noise."""
    out = np.zeros((size, size), np.float32)
    weight = 1.0
    for cells in (2, 4, 8, 16):
        grid = rng.random((cells + 1, cells + 1), dtype=np.float32)
        out += weight * cv2.resize(grid, (size, size), interpolation=cv2.INTER_LINEAR)
        weight *= 0.55
    out -= out.min()
    return out / max(float(out.max()), 1e-6)


def _colour(rng) -> np.ndarray:
    return rng.uniform(0, 255, size=3).astype(np.float32)


def _background(rng, size: int) -> np.ndarray:
    kind = _BACKGROUNDS[int(rng.integers(len(_BACKGROUNDS)))]
    a, b = _colour(rng), _colour(rng)
    if kind == "value_noise":
        m = _value_noise(rng, size)[..., None]
    elif kind == "tiles":
        cell = int(rng.integers(6, 17))
        yy, xx = np.mgrid[0:size, 0:size]
        m = (((yy // cell) + (xx // cell)) % 2).astype(np.float32)
        m = cv2.GaussianBlur(m, (0, 0), rng.uniform(0.5, 2.0))[..., None]
    else:  # horizon: two colours split by a tilted line, softened
        yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
        level = rng.uniform(0.3, 0.7) * size + (xx - size / 2) * rng.uniform(-0.5, 0.5)
        m = (1 / (1 + np.exp(-(yy - level) / rng.uniform(1.0, 4.0))))[..., None]
    return a * (1 - m) + b * m


def _texture(rng, size: int, colour: np.ndarray) -> np.ndarray:
    kind = _TEXTURES[int(rng.integers(len(_TEXTURES)))]
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    if kind == "checker":
        cell = rng.uniform(2.0, 6.0)
        pat = ((np.floor(xx / cell) + np.floor(yy / cell)) % 2) * 2 - 1
    elif kind == "dots":
        period = rng.uniform(4.0, 9.0)
        dx, dy = (xx % period) - period / 2, (yy % period) - period / 2
        pat = np.where(dx * dx + dy * dy < (period / 3.5) ** 2, 1.0, -1.0)
    elif kind == "rings":
        cx, cy = rng.uniform(0, size, size=2)
        pat = np.sin(np.hypot(xx - cx, yy - cy) * (2 * np.pi / rng.uniform(4.0, 10.0)))
    else:
        pat = np.zeros_like(xx)
    return colour[None, None, :] + (pat * rng.uniform(10, 35))[..., None]


def render_shape_image(seed: int, index: int, size: int = IMAGE_SIZE) -> Tuple[np.ndarray, int]:
    """Image ``index`` of the set drawn with ``seed``: (uint8 BGR (size, size, 3), label)."""
    rng = np.random.default_rng([int(seed), int(index), 0x5EED])
    label = int(rng.integers(len(SHAPE_CLASSES)))
    image = _background(rng, size)
    fill, holes = _unit_polygons(SHAPE_CLASSES[label], rng)
    # any rotation, an aspect change up to 1.4:1, 40-90 % of the side, centred within ±15 %
    angle = rng.uniform(0, 2 * np.pi)
    rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    scale = size * rng.uniform(0.4, 0.9) * np.array([1.0, np.exp(rng.uniform(-0.34, 0.34))])
    centre = size / 2 + rng.uniform(-0.15, 0.15, size=2) * size

    def place(polys):
        return [np.round(((p * scale) @ rot.T + centre) * 16).astype(np.int32) for p in polys]

    mask = np.zeros((size, size), np.uint8)
    for poly in place(fill):
        cv2.fillPoly(mask, [poly], 1, lineType=cv2.LINE_8, shift=4)
    for poly in place(holes):
        cv2.fillPoly(mask, [poly], 0, lineType=cv2.LINE_8, shift=4)
    # a colour far enough from the background under the shape, so the shape is visible
    under = image[mask > 0].mean(0) if mask.any() else image.reshape(-1, 3).mean(0)
    colour = _colour(rng)
    for _ in range(8):
        if np.linalg.norm(colour - under) >= 80:
            break
        colour = _colour(rng)
    alpha = cv2.GaussianBlur(mask.astype(np.float32), (0, 0), rng.uniform(0.3, 0.8))[..., None]
    image = image * (1 - alpha) + _texture(rng, size, colour) * alpha
    image += rng.normal(0, rng.uniform(2, 8), size=image.shape).astype(np.float32)
    return np.clip(image, 0, 255).astype(np.uint8), label


def make_shape_set(seed: int, num_images: int, size: int = IMAGE_SIZE) -> Tuple[np.ndarray, np.ndarray]:
    """Images 0..num_images-1 of the set with ``seed``: (uint8 (N, size, size, 3) BGR,
    int64 (N,) labels)."""
    images = np.empty((num_images, size, size, 3), np.uint8)
    labels = np.empty(num_images, np.int64)
    for i in range(num_images):
        images[i], labels[i] = render_shape_image(seed, i, size)
    return images, labels
