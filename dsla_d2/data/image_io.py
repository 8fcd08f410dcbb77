"""Reading image files the way Detectron2 does, plus 16-bit images.

:func:`read_image` returns exactly what ``detectron2.data.detection_utils.read_image``
returns for ordinary 8-bit images (same EXIF orientation handling, same formats: "BGR",
"RGB", "L", any PIL mode, "YUV-BT.601" or None), and differs only where Detectron2 is
wrong or unclear:

* 16-bit grayscale images (PIL modes "I;16", "I;16B", "I;16L", "I;16N", e.g. a 16-bit PNG
  or TIFF) and 32-bit integer images ("I") whose values lie in 0..65535: Detectron2's
  ``convert("RGB")`` clips every value above 255 to 255, so such an image reads as almost
  white. Here they are mapped linearly onto 0..255, ``round(v / 257)`` (0 -> 0,
  65535 -> 255), the rule the predictor uses for uint16 arrays
  (:func:`dsla_d2.serving.as_bgr_uint8`), and then converted to the requested format as
  an 8-bit gray ("L") image.
* "I" images with values outside 0..65535, and floating-point images (PIL mode "F",
  e.g. a 32-bit float TIFF), have no agreed 8-bit meaning: they are refused with
  :class:`UnsupportedImageError` (a ValueError) naming the file.

16-bit colour images are not affected: PIL itself reads them as 8-bit "RGB"/"RGBA".
"""
import numpy as np
from PIL import Image

from dsla_d2 import compat as _compat

_compat.apply()

from detectron2.data.detection_utils import _apply_exif_orientation, convert_PIL_to_numpy  # noqa: E402
from detectron2.utils.file_io import PathManager  # noqa: E402

from ..errors import UserInputError  # noqa: E402

__all__ = ["read_image", "uint16_to_uint8", "UnsupportedImageError", "unsupported_mode", "SIXTEEN_BIT_MODES"]

SIXTEEN_BIT_MODES = ("I;16", "I;16B", "I;16L", "I;16N")
_UINT16_MAX = 65535


class UnsupportedImageError(UserInputError, ValueError):
    """An image file whose pixel format has no 8-bit reading; ``reason`` says which."""

    def __init__(self, message, reason=None):
        super().__init__(message)
        self.reason = reason or message


def uint16_to_uint8(values):
    """``round(v / 257)`` as uint8: 0..65535 mapped linearly onto 0..255."""
    return np.round(np.asarray(values) / 257.0).astype(np.uint8)


def unsupported_mode(mode):
    """Why an image of PIL ``mode`` cannot be read, judged from the header alone; or None.
    ("I" images are judged by their values, see :func:`read_image`.)"""
    if mode == "F":
        return "a floating-point image (PIL mode 'F'), which has no 8-bit reading; convert it to 8 or 16 bits"
    return None


def _to_8bit_gray(image, file_name):
    """The 8-bit "L" image of a 16-bit (or 0..65535 "I") PIL image, by :func:`uint16_to_uint8`."""
    values = np.asarray(image)
    if image.mode == "I" and values.size and (values.min() < 0 or values.max() > _UINT16_MAX):
        reason = (f"a 32-bit integer image (PIL mode 'I') with values {values.min()}..{values.max()}, "
                  "outside the 16-bit range 0..65535")
        raise UnsupportedImageError(f"{file_name}: cannot read {reason}", reason)
    return Image.fromarray(uint16_to_uint8(values))


def read_image(file_name, format="BGR"):
    """Read ``file_name`` into an HWC numpy array of ``format`` (default "BGR", as the
    models take; None: PIL's own mode), like Detectron2's ``read_image`` (EXIF orientation
    applied), with 16-bit images scaled to 8 bits and float images refused (see the module
    docstring)."""
    with PathManager.open(file_name, "rb") as f:
        image = Image.open(f)
        reason = unsupported_mode(image.mode)
        if reason:
            raise UnsupportedImageError(f"{file_name}: cannot read {reason}", reason)
        image = _apply_exif_orientation(image)
        if image.mode in SIXTEEN_BIT_MODES or image.mode == "I":
            image = _to_8bit_gray(image, file_name)
        return convert_PIL_to_numpy(image, format)
