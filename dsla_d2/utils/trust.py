"""Which ``_target_``\\ s a served config may instantiate.

A ``config.yaml`` in an output directory names the classes (``_target_``) that serving
instantiates; a doctored one could name any importable callable (``os.system``). Serving
therefore instantiates only targets in :data:`ALLOWED_MODULES` (and their submodules),
plus what the caller explicitly allows.
"""
from typing import Iterable, List, Sequence

from omegaconf import DictConfig, ListConfig

__all__ = ["ALLOWED_MODULES", "UntrustedTargetError", "find_targets", "check_targets"]

ALLOWED_MODULES = ("dsla_d2", "detectron2", "torch", "torchvision")


class UntrustedTargetError(ValueError):
    """A config names a ``_target_`` outside the allowed modules."""


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


def _allowed(target: str, modules: Iterable[str]) -> bool:
    return any(target == m or target.startswith(m + ".") for m in modules)


def _trusted(target: str, modules: Sequence[str]) -> bool:
    """The name is in an allowed module, and so is what it resolves to (a name such as
    ``torch.os.system`` is under ``torch`` but resolves to ``os.system``)."""
    if not _allowed(target, modules):
        return False
    from detectron2.utils.registry import locate

    try:
        obj = locate(target)
    except Exception:
        return True  # instantiate() will report that it does not exist
    home = getattr(obj, "__module__", None)
    if not home:  # nothing says where it comes from: its name decides
        return True
    return _allowed(f"{home}.{getattr(obj, '__qualname__', '')}", modules)


def check_targets(node, extra_allowed: Sequence[str] = (), source: str = "the config", path: str = "") -> None:
    """Raise :class:`UntrustedTargetError` naming every ``_target_`` of ``node`` (whose
    config path is ``path``) that is not in :data:`ALLOWED_MODULES` or ``extra_allowed``
    (module or full names)."""
    modules = tuple(ALLOWED_MODULES) + tuple(extra_allowed)
    bad = [(p, target) for p, target in find_targets(node, path) if not _trusted(str(target), modules)]
    if bad:
        listed = ", ".join(f"{path}={target}" for path, target in bad)
        raise UntrustedTargetError(
            f"{source} names {listed}: serving only instantiates classes from {', '.join(ALLOWED_MODULES)}. "
            "If you trust this config, allow the module explicitly (allowed_targets=[...])."
        )
