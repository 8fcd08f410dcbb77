"""Meta-architectures registered in Detectron2's META_ARCH_REGISTRY."""
from .base import AssignedDenseDetector
from .detectors import DslaATSS, DslaFCOS, DslaFoveaBox
