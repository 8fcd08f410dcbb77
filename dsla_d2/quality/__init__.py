"""Quality coupling parts (centerness / IoU branch, IoU-coupled soft targets)."""
from .coupling import QualityCoupling
