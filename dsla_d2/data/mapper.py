"""Detectron2's DatasetMapper, reading images with :func:`dsla_d2.data.image_io.read_image`
(16-bit images scaled to 8 bits, float images refused) and with image read failures that
name the file."""
import copy

import numpy as np
import torch

from dsla_d2 import compat as _compat

_compat.apply()

from detectron2.data import DatasetMapper  # noqa: E402
from detectron2.data import detection_utils  # noqa: E402
from detectron2.data import transforms as T  # noqa: E402

from ..errors import UserInputError  # noqa: E402
from .image_io import UnsupportedImageError, read_image  # noqa: E402

__all__ = ["CheckedDatasetMapper", "ImageReadError", "read_image_checked"]


class ImageReadError(UserInputError, RuntimeError):
    """An image (or semantic segmentation) file could not be read.

    ``file_name`` is the path; the original exception is chained as ``__cause__``.
    The message alone also reconstructs the exception (torch's DataLoader re-raises
    worker exceptions as ``type(e)(message)``).
    """

    def __init__(self, message, file_name=None):
        super().__init__(message)
        self.file_name = file_name

    def __reduce__(self):
        return (type(self), (self.args[0], self.file_name))


def _reason(exc):
    """What went wrong reading an image file, in words, from the exception raised."""
    from PIL import UnidentifiedImageError

    if isinstance(exc, UnsupportedImageError):
        return exc.reason
    if isinstance(exc, FileNotFoundError):
        return "the file does not exist"
    if isinstance(exc, IsADirectoryError):
        return "the path is a directory, not an image file"
    if isinstance(exc, PermissionError):
        return "permission denied"
    if isinstance(exc, UnidentifiedImageError):
        return "PIL cannot identify it as an image (corrupt file or unsupported format)"
    if "truncated" in str(exc).lower():
        return "the image data is truncated"
    return "it could not be decoded (corrupt or unsupported image)"


def read_image_checked(file_name, format="BGR", reader=read_image):
    """``reader(file_name, format)`` (by default :func:`~dsla_d2.data.image_io.read_image`),
    any failure raised as :class:`ImageReadError` naming the file and the reason."""
    try:
        return reader(file_name, format)
    except Exception as e:
        detail = "" if isinstance(e, UnsupportedImageError) else f" [{type(e).__name__}: {e}]"  # its reason says all
        message = f"Cannot read image file '{file_name}': {_reason(e)}{detail}"
        raise ImageReadError(message, file_name=str(file_name)) from e


class CheckedDatasetMapper(DatasetMapper):
    """:class:`detectron2.data.DatasetMapper` with the same constructor (``@configurable``:
    ``CheckedDatasetMapper(cfg, is_train)`` or ``CheckedDatasetMapper(is_train=...,
    augmentations=[...], image_format=...)``) and the same output for 8-bit images, except
    that

    * images are read by :func:`dsla_d2.data.image_io.read_image`: 16-bit images are
      scaled onto 0..255 (Detectron2 reads them as nearly white), float images refused;
    * any failure to read an image file (missing, unreadable, corrupt, truncated or of an
      unsupported pixel format) raises :class:`ImageReadError` (a RuntimeError) naming the
      file and what went wrong, with the original exception chained.

    Other errors (e.g. Detectron2's SizeMismatchError) propagate unchanged. Semantic
    segmentation label files are read by Detectron2's own reader (labels must not be
    rescaled), with the same error wrapping.
    """

    def __call__(self, dataset_dict):
        dataset_dict = copy.deepcopy(dataset_dict)  # it is modified below
        image, sem_seg = self._read(dataset_dict)
        aug_input = T.AugInput(image, sem_seg=sem_seg)
        transforms = self.augmentations(aug_input)
        self._put_pixels(dataset_dict, aug_input.image, aug_input.sem_seg)
        image_shape = aug_input.image.shape[:2]  # h, w
        if self.proposal_topk is not None:
            detection_utils.transform_proposals(dataset_dict, image_shape, transforms, proposal_topk=self.proposal_topk)
        if not self.is_train:
            dataset_dict.pop("annotations", None)
            dataset_dict.pop("sem_seg_file_name", None)
        elif "annotations" in dataset_dict:
            self._transform_annotations(dataset_dict, transforms, image_shape)
        return dataset_dict

    def _read(self, dataset_dict):
        """The image (size checked against the dict) and the semantic segmentation labels
        (or None) of ``dataset_dict``; pops ``sem_seg_file_name``."""
        image = read_image_checked(dataset_dict["file_name"], self.image_format)
        detection_utils.check_image_size(dataset_dict, image)
        if "sem_seg_file_name" not in dataset_dict:
            return image, None
        sem_seg = read_image_checked(dataset_dict.pop("sem_seg_file_name"), "L", reader=detection_utils.read_image)
        return image, sem_seg.squeeze(2)

    @staticmethod
    def _put_pixels(dataset_dict, image, sem_seg):
        """Store the augmented image (CHW tensor) and labels as DatasetMapper does."""
        dataset_dict["image"] = torch.as_tensor(np.ascontiguousarray(image.transpose(2, 0, 1)))
        if sem_seg is not None:
            dataset_dict["sem_seg"] = torch.as_tensor(sem_seg.astype("long"))
