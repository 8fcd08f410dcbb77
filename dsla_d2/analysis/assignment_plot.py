"""Pictures of an assignment: one panel per FPN level over the network input (DSLA Fig. 1(b)
for any assigner).

In every panel each **classification positive** is a square cell of the level's stride
centred on its prior point, filled with its classification target on a colour scale (soft
targets: DSLA label_d, Dynamic ATSS PIoU; 1 for hard methods) and outlined in the colour of
its gt; the gts are drawn by Detectron2's ``Visualizer`` in the same colours and labelled
``index:class``. Priors the classification loss ignores (weight 0) are grey; regression
positives whose regression gt differs from the classification one (DDOD) are crosses in
their regression gt's colour. Needs matplotlib (object API, off-screen Agg canvas: importing
this module does not touch pyplot's backend).
"""
import textwrap
from typing import List, Optional, Sequence, Tuple

import matplotlib
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.cm import ScalarMappable
from matplotlib.collections import PolyCollection
from matplotlib.colors import Normalize
from matplotlib.figure import Figure

from detectron2.utils.colormap import colormap
from detectron2.utils.visualizer import Visualizer

from .assignment_view import ImageAssignment

__all__ = ["gt_colors", "level_cells", "draw_gts", "draw_level", "draw_assignments", "CMAP"]

CMAP = "viridis"
CELL_ALPHA = 0.75
_PALETTE = colormap(rgb=True, maximum=1)


def gt_colors(gt_index: np.ndarray) -> np.ndarray:
    """(K, 3) RGB colour in [0, 1] of each gt index (Detectron2's palette, cycled)."""
    return _PALETTE[np.asarray(gt_index, dtype=np.int64) % len(_PALETTE)]


def level_cells(view: ImageAssignment, level: int) -> dict:
    """The cells a panel draws for one level.

    Returns a dict of arrays over the level's classification positives: ``"prior"`` (P,)
    index into the image's priors, ``"verts"`` (P, 4, 2) the cell corners, ``"target"``
    (P,), ``"gt"`` (P,) classification gt index; ``"ignored_verts"`` for cells with
    classification weight 0 that are not positives; ``"reg_points"`` (Q, 2) and
    ``"reg_gt"`` (Q,) for regression positives whose regression gt differs; ``"stride"``.
    """
    on_level = view.levels == level
    stride = float(view.strides[on_level][0]) if on_level.any() else 0.0
    pos = np.nonzero(on_level & view.cls_positive)[0]
    ignored = np.nonzero(on_level & ~view.cls_positive & (view.cls_weight == 0))[0]
    reg = np.nonzero(on_level & view.reg_differs)[0]
    return {
        "prior": pos,
        "verts": _squares(view.points[pos], stride),
        "target": view.cls_target[pos],
        "gt": view.matched_gt[pos],
        "ignored_verts": _squares(view.points[ignored], stride),
        "reg_points": view.points[reg],
        "reg_gt": view.reg_matched_gt[reg],
        "stride": stride,
    }


def _squares(points: np.ndarray, side: float) -> np.ndarray:
    """(P, 4, 2) corners of the squares of the given side centred on (P, 2) points."""
    h = side / 2
    corners = np.array([[-h, -h], [h, -h], [h, h], [-h, h]])
    return points[:, None, :] + corners[None]


def draw_gts(view: ImageAssignment, class_names: Optional[Sequence[str]] = None, dim: float = 0.35,
             scale: float = 1.0) -> np.ndarray:
    """(scale·H, scale·W, 3) uint8: the input lightened by ``dim`` towards white, with its gts
    drawn by Detectron2's ``Visualizer`` (at the figure's scale, so labels keep their size)
    in their gt colours, labelled ``index:class``."""
    base = (view.pixels * (1 - dim) + 255 * dim).astype(np.uint8)
    vis = Visualizer(base, metadata=None, scale=scale)
    if len(view.gt_boxes):
        names = [class_names[c] if class_names and c < len(class_names) else str(c) for c in view.gt_classes.tolist()]
        labels = [f"{k}:{n}" for k, n in zip(view.gt_index.tolist(), names)]
        vis.overlay_instances(boxes=view.gt_boxes, labels=labels, assigned_colors=list(gt_colors(view.gt_index)))
    return vis.output.get_image()


def draw_level(ax, view: ImageAssignment, level: int, background: Optional[np.ndarray] = None,
               norm: Optional[Normalize] = None) -> dict:
    """Draw one level's panel on a matplotlib axes; returns the :func:`level_cells` drawn."""
    cells = level_cells(view, level)
    h, w = view.pixels.shape[:2]
    ax.imshow(view.pixels if background is None else background, extent=(0, w, h, 0), interpolation="nearest")
    cmap = matplotlib.colormaps[CMAP]
    norm = norm or Normalize(0.0, 1.0)
    if len(cells["ignored_verts"]):
        ax.add_collection(PolyCollection(cells["ignored_verts"], facecolors=(0.5, 0.5, 0.5, 0.6), edgecolors="none"))
    if len(cells["prior"]):
        face = cmap(norm(cells["target"]))
        face[:, 3] = CELL_ALPHA
        edges = gt_colors(cells["gt"])
        ax.add_collection(PolyCollection(cells["verts"], facecolors=face, edgecolors=edges, linewidths=1.0))
    if len(cells["reg_points"]):
        ax.scatter(cells["reg_points"][:, 0], cells["reg_points"][:, 1], marker="x", s=18, linewidths=1.2,
                   c=gt_colors(cells["reg_gt"]))
    ax.set_xlim(0, w)
    ax.set_ylim(h, 0)
    ax.set_axis_off()
    extra = f", {len(cells['reg_points'])} reg≠cls" if len(cells["reg_points"]) else ""
    ax.set_title(f"{view.level_names[level]} (stride {cells['stride']:g}): {len(cells['prior'])} pos{extra}",
                 fontsize=8)
    return cells


def draw_assignments(rows: List[Tuple[str, ImageAssignment]], *, suptitle: str = "",
                     class_names: Optional[Sequence[str]] = None, levels: Optional[Sequence[str]] = None,
                     scale: float = 1.5, dpi: int = 100, show_gts: bool = True):
    """A figure with one row per (row title, image assignment) — e.g. two assigners on the
    same image — and one panel per level (``levels``: names, default all of the first row);
    returns ``(figure, axes (rows, levels), cells per panel)`` (None for a level a row's
    model does not have)."""
    if not rows:
        raise ValueError("draw_assignments needs at least one row")
    levels = list(rows[0][1].level_names if levels is None else levels)
    unknown = [lv for lv in levels if all(lv not in v.level_names for _, v in rows)]
    if unknown:
        raise ValueError(f"levels {unknown} are not among the model's levels {rows[0][1].level_names}")
    h = max(v.pixels.shape[0] for _, v in rows)
    w = max(v.pixels.shape[1] for _, v in rows)
    width = len(levels) * w * scale / dpi + 0.8
    fig = Figure(figsize=(width, len(rows) * (h * scale / dpi + 0.6) + 0.4), dpi=dpi, layout="constrained")
    FigureCanvasAgg(fig)  # off-screen: no pyplot, no display
    wrap = max(int(width * dpi / 6.5), 40)  # characters per line at font size 8
    if suptitle:
        fig.suptitle(textwrap.fill(suptitle, wrap), fontsize=8)
    norm = Normalize(0.0, 1.0)
    axes, drawn = [], []
    for subfig, (name, view) in zip(fig.subfigures(len(rows), 1, squeeze=False)[:, 0], rows):
        subfig.suptitle(textwrap.fill(name, wrap), fontsize=8)
        row_axes = subfig.subplots(1, len(levels), squeeze=False)[0]
        background = draw_gts(view, class_names, scale=scale) if show_gts else None
        row = []
        for ax, name_l in zip(row_axes, levels):
            if name_l in view.level_names:
                row.append(draw_level(ax, view, view.level_names.index(name_l), background, norm))
            else:
                ax.set_axis_off()
                ax.set_title(f"{name_l}: not a level of this model", fontsize=8)
                row.append(None)
        mappable = ScalarMappable(norm, matplotlib.colormaps[CMAP])
        bar = subfig.colorbar(mappable, ax=list(row_axes), fraction=0.02, pad=0.01)
        bar.set_label("cls target (outline: gt)", fontsize=7)
        bar.ax.tick_params(labelsize=7)
        axes.append(row_axes)
        drawn.append(row)
    return fig, np.array(axes), drawn
