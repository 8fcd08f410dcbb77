"""Our heads registry (Detectron2's ``Registry``), separate from Detectron2's own."""
from detectron2.utils.registry import Registry

DENSE_HEAD_REGISTRY = Registry("DSLA_D2_DENSE_HEAD")
DENSE_HEAD_REGISTRY.__doc__ = """
Dense heads of dsla_d2. A head maps the list of FPN features (N, in_channels, Hi, Wi) to a
dict of per-level predictions: "cls_logits" (N, C, Hi, Wi), "box_reg" (N, 4, Hi, Wi) and,
when it has a quality branch, "quality" (N, 1, Hi, Wi).
"""


def build_dense_head(name: str, **kwargs):
    """Build a registered head by name."""
    return DENSE_HEAD_REGISTRY.get(name)(**kwargs)
