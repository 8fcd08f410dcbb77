"""Dense heads and their registry."""
from .box_refinement import BoxRefinement, refine_ltrb
from .layers import DeformConv3x3, Scale
from .registry import DENSE_HEAD_REGISTRY, build_dense_head
from .tower_head import ATSSHead, DSLAHead, DWHead, FCOSHead, FoveaBoxHead, TowerHead
