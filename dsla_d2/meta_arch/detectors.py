"""The registered meta-architectures. Names are prefixed ``Dsla`` so they never collide
with Detectron2's own (``RetinaNet``, and ``FCOS`` in later versions) or AdelaiDet's."""
from detectron2.modeling import META_ARCH_REGISTRY

from .base import AssignedDenseDetector

__all__ = ["DslaFCOS", "DslaATSS", "DslaFoveaBox"]


@META_ARCH_REGISTRY.register()
class DslaFCOS(AssignedDenseDetector):
    """Anchor-free, point-based: FCOS and its assigners (FCOS ranges, DSLA, DW, ...)."""


@META_ARCH_REGISTRY.register()
class DslaATSS(AssignedDenseDetector):
    """Anchor-based with one square anchor per location: ATSS, Dynamic ATSS, DDOD."""


@META_ARCH_REGISTRY.register()
class DslaFoveaBox(AssignedDenseDetector):
    """FoveaBox: fovea-area assignment, log-space box targets against base edges."""
