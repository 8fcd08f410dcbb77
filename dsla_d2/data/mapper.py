"""Detectron2's DatasetMapper, with image read failures that name the file."""
from dsla_d2 import compat as _compat

_compat.apply()

from detectron2.data import DatasetMapper  # noqa: E402
from detectron2.data import detection_utils  # noqa: E402

__all__ = ["CheckedDatasetMapper", "ImageReadError"]


class ImageReadError(RuntimeError):
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
    from PIL import UnidentifiedImageError

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


def _path_being_read(exc):
    """The ``file_name`` argument of the innermost ``detection_utils.read_image`` call in
    the traceback of ``exc``, or None if the exception did not come from there."""
    read_image = detection_utils.read_image
    code = getattr(read_image, "__code__", None)
    path = None
    tb = exc.__traceback__
    while tb is not None:
        frame_code = tb.tb_frame.f_code
        if frame_code is code or (
            frame_code.co_name == "read_image"
            and frame_code.co_filename == getattr(code, "co_filename", None)
        ):
            path = tb.tb_frame.f_locals.get("file_name", path)
        tb = tb.tb_next
    return path


class CheckedDatasetMapper(DatasetMapper):
    """:class:`detectron2.data.DatasetMapper` with the same constructor (``@configurable``:
    ``CheckedDatasetMapper(cfg, is_train)`` or ``CheckedDatasetMapper(is_train=...,
    augmentations=[...], image_format=...)``) and the same output, except that any failure
    to read an image file (missing, unreadable, corrupt or truncated) raises
    :class:`ImageReadError` (a RuntimeError) naming the file and what went wrong, with
    the original exception chained. Other errors propagate unchanged.
    """

    def __call__(self, dataset_dict):
        try:
            return super().__call__(dataset_dict)
        except ImageReadError:
            raise
        except Exception as e:
            path = _path_being_read(e)
            if path is None:
                raise
            raise ImageReadError(
                f"Cannot read image file '{path}': {_reason(e)} [{type(e).__name__}: {e}]",
                file_name=str(path),
            ) from e
