"""torchvision's ResNet ImageNet weights (``torchvision.models.resnet50``: PyTorch style,
stride in the 3x3 conv, RGB input with ImageNet mean/std) for the ``bottom_up`` of
Detectron2's ResNet (``stride_in_1x1=False``).

torchvision's keys: ``conv1``, ``bn1``, ``layer{1-4}.{b}.conv{1-3}``/``bn{1-3}``,
``downsample.0`` (conv) / ``downsample.1`` (BN), ``fc`` (the classifier, dropped).
"""
import os
from typing import List

from .mapping import KeyRule

__all__ = ["resnet_rules", "torchvision_resnet_rules", "converted_torchvision_resnet", "register_torchvision_handler"]

_BN = r"(weight|bias|running_mean|running_var)"


def resnet_rules(src: str = "", dst: str = "backbone.bottom_up.") -> List[KeyRule]:
    """Rules from the torchvision / mmdetection ResNet layout (keys under ``src``) to
    Detectron2's ResNet (under ``dst``). Stage ``layerL`` is Detectron2's ``res{L+1}``."""
    s = src.replace(".", r"\.")
    return [
        KeyRule(rf"{s}conv1\.weight", f"{dst}stem.conv1.weight"),
        KeyRule(rf"{s}bn1\.{_BN}", rf"{dst}stem.conv1.norm.\1"),
        KeyRule(rf"{s}(bn1|layer\d\.\d+\.bn\d|layer\d\.\d+\.downsample\.1)\.num_batches_tracked", None,
                "BatchNorm's step counter: FrozenBN has none"),
        KeyRule(rf"{s}layer(\d)\.(\d+)\.conv(\d)\.weight", lambda m: f"{dst}res{int(m[1]) + 1}.{m[2]}.conv{m[3]}.weight"),
        KeyRule(rf"{s}layer(\d)\.(\d+)\.bn(\d)\.{_BN}", lambda m: f"{dst}res{int(m[1]) + 1}.{m[2]}.conv{m[3]}.norm.{m[4]}"),
        KeyRule(rf"{s}layer(\d)\.(\d+)\.downsample\.0\.weight", lambda m: f"{dst}res{int(m[1]) + 1}.{m[2]}.shortcut.weight"),
        KeyRule(rf"{s}layer(\d)\.(\d+)\.downsample\.1\.{_BN}", lambda m: f"{dst}res{int(m[1]) + 1}.{m[2]}.shortcut.norm.{m[3]}"),
    ]


def torchvision_resnet_rules() -> List[KeyRule]:
    """torchvision's ``resnet50()``/``resnet101()`` state dict -> ``backbone.bottom_up``."""
    return resnet_rules("", "backbone.bottom_up.") + [KeyRule(r"fc\.(weight|bias)", None, "the ImageNet classifier")]


# --------------------------------------------------------------------------- torchvision://
PREFIX = "torchvision://"


def resnet_bottom_up_state(depth: int) -> dict:
    """The state dict (under ``backbone.bottom_up.``) of a PyTorch-style Detectron2 ResNet of
    ``depth`` with FrozenBN: the target of a torchvision conversion."""
    from detectron2.modeling.backbone import BasicStem, ResNet

    stages = ResNet.make_default_stages(depth=depth, stride_in_1x1=False, norm="FrozenBN")
    model = ResNet(BasicStem(in_channels=3, out_channels=64, norm="FrozenBN"), stages, out_features=["res5"])
    return {f"backbone.bottom_up.{k}": v for k, v in model.state_dict().items()}


def converted_torchvision_resnet(name: str, cache_dir: str = "") -> str:
    """The local path of torchvision's ImageNet ``name`` (``resnet50``, ``resnet101``;
    ``IMAGENET1K_V1``, the weights mmdetection's ``torchvision://`` configs use) converted for
    Detectron2's ResNet: downloaded once by ``torch.hub`` (hash checked), converted once,
    both cached."""
    import torch
    import torchvision

    from ..engine.atomic import atomic_open
    from ..engine.checkpoint import write_checksum
    from .mapping import convert_state_dict

    depth = {"resnet50": 50, "resnet101": 101}.get(name)
    if depth is None:
        raise ValueError(f"{PREFIX}{name}: supported are {PREFIX}resnet50 and {PREFIX}resnet101")
    cache_dir = cache_dir or os.path.join(torch.hub.get_dir(), "dsla_d2")
    path = os.path.join(cache_dir, f"{name}_imagenet1k_v1_detectron2.pth")
    if os.path.isfile(path):
        return path
    weights = torchvision.models.get_model_weights(name).IMAGENET1K_V1
    source = torch.hub.load_state_dict_from_url(weights.url, map_location="cpu", check_hash=True)
    state = convert_state_dict(source, torchvision_resnet_rules(), resnet_bottom_up_state(depth), source_name=weights.url)
    os.makedirs(cache_dir, exist_ok=True)
    with atomic_open(path, "wb") as f:
        torch.save({"model": state, "__author__": "torchvision", "matching_heuristics": False}, f)
    write_checksum(path)
    return path


def register_torchvision_handler() -> None:
    """Let ``train.init_checkpoint`` (and anything read through Detectron2's
    ``PathManager``) name ``torchvision://resnet50`` / ``torchvision://resnet101``."""
    from detectron2.utils.file_io import PathManager
    from iopath.common.file_io import PathHandler

    class TorchvisionHandler(PathHandler):
        def _get_supported_prefixes(self):
            return [PREFIX]

        def _get_local_path(self, path, **kwargs):
            return converted_torchvision_resnet(path[len(PREFIX):])

        def _open(self, path, mode="r", **kwargs):
            return PathManager.open(self._get_local_path(path), mode, **kwargs)

        def _isfile(self, path, **kwargs):
            return True

    if PREFIX not in PathManager._path_handlers:
        PathManager.register_handler(TorchvisionHandler())
