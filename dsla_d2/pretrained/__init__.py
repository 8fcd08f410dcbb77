"""Initial weights shipped with the package, named ``dsla_d2://pretrained/<file>`` in configs
(``train.init_checkpoint``) and anything else read through Detectron2's ``PathManager``.

``synth_r18_shapes10.pth``: the embedded detectors' small ResNet-18-style backbone
(``configs/common/models/small_backbone.py``) pre-trained on the synthetic shape
classification set, the embedded dataset's stand-in for ImageNet weights; written by
``tools/pretrain_backbone.py``, with its ``.sha256`` and its record (``.json``: recipe,
seed, accuracy).
"""
import os

__all__ = ["PRETRAINED_DIR", "EMBEDDED_BACKBONE_FILE", "EMBEDDED_BACKBONE", "PREFIX", "register_pretrained_handler"]

PRETRAINED_DIR = os.path.dirname(os.path.abspath(__file__))
PREFIX = "dsla_d2://"
EMBEDDED_BACKBONE_FILE = "synth_r18_shapes10.pth"
#: ``train.init_checkpoint`` of the embedded detectors' pre-trained regime
EMBEDDED_BACKBONE = f"{PREFIX}pretrained/{EMBEDDED_BACKBONE_FILE}"


def _local_path(path: str) -> str:
    rel = path[len(PREFIX):]
    if not rel.startswith("pretrained/") or ".." in rel.split("/"):
        raise FileNotFoundError(f"{path}: {PREFIX} names files of the package's pretrained/ folder, e.g. {EMBEDDED_BACKBONE}")
    local = os.path.join(PRETRAINED_DIR, rel[len("pretrained/"):])
    if not os.path.isfile(local):
        raise FileNotFoundError(f"{path}: no such file {local} (tools/pretrain_backbone.py writes it)")
    return local


def register_pretrained_handler() -> None:
    """Let ``PathManager`` (hence ``DetectionCheckpointer``) open ``dsla_d2://pretrained/...``."""
    from detectron2.utils.file_io import PathManager
    from iopath.common.file_io import PathHandler

    class PretrainedHandler(PathHandler):
        def _get_supported_prefixes(self):
            return [PREFIX]

        def _get_local_path(self, path, **kwargs):
            return _local_path(path)

        def _open(self, path, mode="r", **kwargs):
            return PathManager.open(_local_path(path), mode, **kwargs)

        def _isfile(self, path, **kwargs):
            try:
                return bool(_local_path(path))
            except FileNotFoundError:
                return False

        def _exists(self, path, **kwargs):
            return self._isfile(path)

    if PREFIX not in PathManager._path_handlers:
        PathManager.register_handler(PretrainedHandler())
