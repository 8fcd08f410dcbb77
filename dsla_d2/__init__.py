"""dsla_d2: dense detectors with swappable label assignment for Detectron2.

Importing this package applies :mod:`dsla_d2.compat` (only what the installed Detectron2
needs), registers our meta-architectures in Detectron2's ``META_ARCH_REGISTRY`` (``DslaFCOS``,
``DslaATSS``, ``DslaFoveaBox``), our heads and assigners in our own registries, and the
embedded synthetic datasets in ``DatasetCatalog``, and ``torchvision://`` ImageNet weights
in Detectron2's ``PathManager`` (:mod:`dsla_d2.convert.torchvision`), and the shipped
``dsla_d2://pretrained/...`` weights (:mod:`dsla_d2.pretrained`).
"""
from . import compat

compat.apply()

from . import assigners, backbones, box_coders, box_ops, engine, heads, losses, meta_arch, model_zoo, priors, quality, utils  # noqa: E402
from .convert.torchvision import register_torchvision_handler  # noqa: E402
from .data import register_synthetic_datasets  # noqa: E402
from .pretrained import register_pretrained_handler  # noqa: E402
from .serving import lazy_to_yacs, predictor_from_config, predictor_from_output_dir  # noqa: E402

register_synthetic_datasets()
register_torchvision_handler()  # train.init_checkpoint=torchvision://resnet50
register_pretrained_handler()  # train.init_checkpoint=dsla_d2://pretrained/synth_r18_shapes10.pth

__version__ = "0.1.0"
