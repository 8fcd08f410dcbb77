"""Label assigners. See :mod:`dsla_d2.assigners.base` for the contract."""
from .atss import ATSSAssigner, DynamicATSSAssigner, resolve_iou_weight, select_topk_candidates, unbiased_std
from .atss_core import ATSSMatch, CandidateQuality, atss_match
from .base import ASSIGNER_REGISTRY, Assignment, DenseAssigner, GTBatch
from .ddod import DDODAssigner, ddod_cost
from .dsl import DynamicSoftLabelAssigner
from .dsla import DSLAAssigner, relaxation_score, relaxed_ranges
from .dsla_fovea import DSLAFoveaAssigner
from .dw import DWAssigner
from .fcos import DEFAULT_SIZE_RANGES, FCOSAssigner
from .fovea import FOVEA_SCALE_RANGES, FoveaAssigner, fovea_mask, gt_sqrt_areas, paint_order_match
from .simota import SimOTAAssigner, center_region, dynamic_k, simota_cost
from .tal import TaskAlignedAssigner, alignment_metric


def build_assigner(name: str, **kwargs) -> DenseAssigner:
    """Build a registered assigner by name (for yacs-style configs)."""
    return ASSIGNER_REGISTRY.get(name)(**kwargs)
