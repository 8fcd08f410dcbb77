"""What a served config may instantiate, and how a config file from a run directory is read.

A run directory is something people download and share (a model zoo entry, a colleague's
run). Serving it, resuming it or evaluating it must never run code that it carries:

* its ``config.yaml`` is read with a safe YAML loader (:func:`load_config`): plain data only,
  no ``!!python/...`` tags (Detectron2's ``LazyConfig.load`` uses ``yaml.unsafe_load``);
* the ``_target_``\\ s of its ``model`` node are instantiated only if they are *model parts*
  (:func:`check_targets`), never arbitrary callables.

The rule for a ``_target_`` (:func:`is_model_part`): it must resolve, by its own import
path, to

1. a subclass of ``torch.nn.Module`` defined in one of :data:`TRUSTED_PACKAGES`
   (dsla_d2, detectron2, torchvision, torch), or
2. one of the config helpers in :data:`MODEL_HELPERS` (stage builders, box coders,
   ``ShapeSpec``) named exactly.

Functions such as ``torch.load``, ``torch.hub.load``, ``detectron2.config.LazyConfig.load``
or ``torch.utils.collect_env.run`` are therefore refused although they live in those
packages. To serve a model built from your own code, name what you trust in
``allowed_targets=``: a module name (``"my_project.models"``) extends rule 1 to the
``nn.Module`` subclasses defined in that module or below it; a full name
(``"my_project.coders.MyCoder"``) allows exactly that callable.

A ``.py`` config is Python: loading it runs it, so :func:`load_config` runs one only when
the caller names it, never one found in a run directory.
"""
import importlib
import inspect
import os
from typing import FrozenSet, Iterable, List, Optional, Sequence

import yaml
from omegaconf import DictConfig, ListConfig, OmegaConf

from ..errors import UserInputError

__all__ = [
    "TRUSTED_PACKAGES",
    "MODEL_HELPERS",
    "UntrustedTargetError",
    "UnsafeConfigError",
    "find_targets",
    "is_model_part",
    "check_targets",
    "resolved_targets",
    "map_targets",
    "load_config",
]

TRUSTED_PACKAGES = ("dsla_d2", "detectron2", "torchvision", "torch")
# the callables a model description needs that are not nn.Module classes
MODEL_HELPERS: FrozenSet[str] = frozenset(
    {
        "detectron2.layers.shape_spec.ShapeSpec",
        "detectron2.modeling.backbone.resnet.ResNet.make_default_stages",
        "detectron2.modeling.backbone.resnet.ResNet.make_stage",
        "dsla_d2.backbones.basic_block_stages",
        "dsla_d2.box_coders.DeltaBoxCoder",
        "dsla_d2.box_coders.FoveaLogBoxCoder",
        "dsla_d2.box_coders.LTRBBoxCoder",
    }
)


class UntrustedTargetError(UserInputError, ValueError):
    """A config names a ``_target_`` that is not a model part."""


class UnsafeConfigError(UserInputError, ValueError):
    """A config file holds more than plain data (YAML tags that build Python objects)."""


def find_targets(node, path: str = "") -> List[tuple]:
    """(config path, target string) of every ``_target_`` in a lazy config node."""
    found = []
    if isinstance(node, (DictConfig, dict)):
        for key, value in node.items():
            sub = f"{path}.{key}" if path else str(key)
            if key == "_target_":
                found.append((sub, value if isinstance(value, str) else f"{value.__module__}.{value.__qualname__}"))
            else:
                found.extend(find_targets(value, sub))
    elif isinstance(node, (ListConfig, list, tuple)):
        for i, value in enumerate(node):
            found.extend(find_targets(value, f"{path}[{i}]"))
    return found


def _under(name: str, modules: Iterable[str]) -> bool:
    return any(name == m or name.startswith(m + ".") for m in modules)


def _resolve(target: str):
    """The object at import path ``target`` (module, then attributes), or None.

    Only modules inside the names' own package are imported: ``target`` has already
    been checked to lie under a trusted package or an allowed name."""
    parts = target.split(".")
    for i in range(len(parts) - 1, 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:i]))
        except ImportError:
            continue
        try:
            for attr in parts[i:]:
                obj = getattr(obj, attr)
        except AttributeError:
            continue  # a package attribute may shadow a submodule: try the longer module
        return obj
    return None


def _home(obj) -> Optional[str]:
    module, qualname = getattr(obj, "__module__", None), getattr(obj, "__qualname__", None)
    return f"{module}.{qualname}" if module and qualname else None


def is_model_part(target: str, allowed_targets: Sequence[str] = ()) -> bool:
    """Whether ``target`` (an import path) may be instantiated from a served config (the
    module docstring's rule). Nothing outside :data:`TRUSTED_PACKAGES` and
    ``allowed_targets`` is imported to decide."""
    import torch

    allowed = tuple(allowed_targets)
    if not _under(target, TRUSTED_PACKAGES + allowed):
        return False
    obj = _resolve(target)
    home = _home(obj)
    if obj is None or home is None:
        return False
    if home in MODEL_HELPERS or home in allowed:
        return _resolve(home) is obj
    return (
        inspect.isclass(obj)
        and issubclass(obj, torch.nn.Module)
        and _under(obj.__module__, TRUSTED_PACKAGES + allowed)
    )


def check_targets(node, extra_allowed: Sequence[str] = (), source: str = "the config", path: str = "") -> None:
    """Raise :class:`UntrustedTargetError` naming every ``_target_`` of ``node`` (whose
    config path is ``path``) that is not a model part (:func:`is_model_part`, with
    ``extra_allowed`` as ``allowed_targets``)."""
    bad = [(p, t) for p, t in find_targets(node, path) if not is_model_part(str(t), extra_allowed)]
    if bad:
        listed = ", ".join(f"{p}={t}" for p, t in bad)
        raise UntrustedTargetError(
            f"{source} names {listed}: a served config may only instantiate nn.Module classes of "
            f"{', '.join(TRUSTED_PACKAGES)} and the model-building helpers of dsla_d2.utils.trust.MODEL_HELPERS. "
            "If you trust this code, name it explicitly (allowed_targets=['module.or.full.Name'])."
        )


def resolved_targets(node, extra_allowed: Sequence[str] = (), source: str = "the config"):
    """:func:`check_targets`, then a copy of ``node`` whose ``_target_`` strings are replaced
    by the objects that were checked, so that ``instantiate`` calls exactly those (and does
    not resolve the names again its own way)."""
    check_targets(node, extra_allowed, source=source)
    node = OmegaConf.create(OmegaConf.to_container(node, resolve=True), flags={"allow_objects": True})
    return map_targets(node, lambda t: _resolve(t) if isinstance(t, str) else t)


def map_targets(node, fn):
    """Replace, in place, every ``_target_`` of a lazy config tree by ``fn(target)``;
    return ``node``."""
    if isinstance(node, DictConfig):
        if "_target_" in node:
            node._target_ = fn(node._target_)
        for value in node.values():
            map_targets(value, fn)
    elif isinstance(node, ListConfig):
        for value in node:
            map_targets(value, fn)
    return node


class _PlainDataLoader(yaml.SafeLoader):
    """YAML's safe loader: maps, lists, strings, numbers, booleans and null only."""


def _refuse_tag(loader, tag_suffix, node):
    raise UnsafeConfigError(
        f"line {node.start_mark.line + 1}: the tag !!python/{tag_suffix} would build a Python object "
        "(and can run code); a config file here must be plain data"
    )


_PlainDataLoader.add_multi_constructor("tag:yaml.org,2002:python/", _refuse_tag)


def load_config(path: str, trust_python: bool = True):
    """A lazy config from ``path``, reading YAML as plain data only.

    ``.yaml``/``.yml``: parsed with a safe loader (a ``!!python/...`` tag raises
    :class:`UnsafeConfigError` naming the file and line; nothing is constructed).
    ``.py``: run by Detectron2's ``LazyConfig.load`` when ``trust_python`` (the caller named
    the file), refused otherwise.
    """
    from detectron2.config import LazyConfig

    ext = os.path.splitext(path)[1]
    if ext == ".py":
        if not trust_python:
            raise UnsafeConfigError(f"{path} is Python: loading it would run it; only a YAML config is read here")
        return LazyConfig.load(path)
    if ext not in (".yaml", ".yml"):
        raise ValueError(f"Config file {path} has to be a .py or .yaml file")
    with open(path, encoding="utf-8") as f:
        try:
            data = yaml.load(f, Loader=_PlainDataLoader)  # noqa: S506 (a SafeLoader subclass)
        except UnsafeConfigError as e:
            raise UnsafeConfigError(f"{path}: {e}") from None
        except yaml.YAMLError as e:
            raise ValueError(f"{path} is not valid YAML: {e}") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path} does not hold a config (a YAML mapping); got {type(data).__name__}")
    return OmegaConf.create(data, flags={"allow_objects": True})
