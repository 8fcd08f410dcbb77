"""Datasets and data loading for dsla_d2.

* :mod:`.synthetic`: the embedded, deterministic synthetic COCO-format dataset
  (``dsla_synth_train`` / ``dsla_synth_val`` / ``dsla_synth_tiny``), generated on first use
  and cached under :func:`synthetic_root`.
* :mod:`.coco_json`: registration of any COCO-format json + image directory, with clear
  errors for broken inputs.
* :mod:`.image_io`: :func:`read_image`, Detectron2's image reader with 16-bit images
  scaled onto 0..255 (Detectron2 reads them as nearly white) and float images refused.
* :mod:`.mapper`: :class:`CheckedDatasetMapper`, Detectron2's ``DatasetMapper`` reading
  through :func:`read_image`, with errors that name the image file that could not be read
  (also :func:`read_image_checked` for any caller).
"""
from dsla_d2 import compat as _compat

_compat.apply()

from .coco_json import num_classes_of, register_coco_json_dataset  # noqa: E402
from .image_io import UnsupportedImageError, read_image  # noqa: E402
from .mapper import CheckedDatasetMapper, ImageReadError, read_image_checked  # noqa: E402
from .synthetic import (  # noqa: E402
    GENERATOR_VERSION,
    SYNTH_CLASSES,
    SYNTH_DATASET_PREFIX,
    SYNTH_SPLITS,
    ensure_synthetic_split,
    generate_synthetic_coco,
    register_synthetic_datasets,
    render_synthetic_image,
    synthetic_root,
    synthetic_split_paths,
)

__all__ = [
    "GENERATOR_VERSION",
    "SYNTH_CLASSES",
    "SYNTH_DATASET_PREFIX",
    "SYNTH_SPLITS",
    "CheckedDatasetMapper",
    "ImageReadError",
    "UnsupportedImageError",
    "ensure_synthetic_split",
    "generate_synthetic_coco",
    "num_classes_of",
    "read_image",
    "read_image_checked",
    "register_coco_json_dataset",
    "register_synthetic_datasets",
    "render_synthetic_image",
    "synthetic_root",
    "synthetic_split_paths",
]
