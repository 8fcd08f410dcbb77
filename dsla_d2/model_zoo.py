"""Load this repository's lazy configs by their path, as Detectron2's ``model_zoo.get_config``.

Configs under ``projects/<paper>/configs/`` build on the detectors in ``configs/`` by path,
never by climbing relative imports out of their folder::

    from dsla_d2.model_zoo import NODES, get_config

    dataloader, lr_multiplier, model, optimizer, train = get_config("configs/fcos_R_50_FPN_1x.py", keys=NODES)

Paths are relative to the repository root (the folder holding ``configs/`` and
``projects/``); absolute paths are used as they are. Every call loads the file afresh, so
editing what it returns never changes another config.
"""
import os
from typing import Optional, Sequence, Union

from detectron2.config import LazyConfig

__all__ = ["NODES", "REPO_ROOT", "get_config", "get_config_file"]

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# The five nodes of a training config read by train_net.py, in the order the configs
# unpack them.
NODES = ("dataloader", "lr_multiplier", "model", "optimizer", "train")


def get_config_file(config_path: str) -> str:
    """Absolute path of ``config_path`` (repository-relative or absolute); a clear error
    naming the path when it does not exist."""
    path = config_path if os.path.isabs(config_path) else os.path.join(REPO_ROOT, config_path)
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"config {config_path!r} not found (looked for {path}; paths are relative to the "
            f"repository root {REPO_ROOT})"
        )
    return path


def get_config(config_path: str, keys: Optional[Union[str, Sequence[str]]] = None):
    """The lazy config at ``config_path`` (``LazyConfig.load``): all its config nodes as
    one ``DictConfig``, or only ``keys`` — one name, or a tuple of names returned in that
    order; a name may also be a helper function the file defines (``to_dsla``)."""
    path = get_config_file(config_path)
    if keys is None:
        return LazyConfig.load(path)
    try:
        return LazyConfig.load(path, keys=keys if isinstance(keys, str) else tuple(keys))
    except KeyError as e:
        raise KeyError(f"config {config_path!r} defines no {e.args[0]!r}") from None
