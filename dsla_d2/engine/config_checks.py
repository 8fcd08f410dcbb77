"""Numeric config values checked at start-up, before the model or data are built.

Overrides are parsed by Hydra's grammar, so ``train.max_iter=abc`` arrives as the string
``'abc'`` and ``train.max_iter=-5`` as a number that Detectron2 would accept (``range(0,
-5)`` is empty: the run "finishes" at once and writes an untrained model_final.pth).
:func:`validate_config` rejects such values with the key, the value and the rule.
Integer keys refuse floats and booleans (``train.max_iter=1e3`` is a float: write 1000).
"""
import math
from dataclasses import dataclass
from typing import Callable, List, Optional

from omegaconf import OmegaConf

__all__ = ["ConfigValueError", "Rule", "RULES", "validate_config"]

_MISSING = object()


class ConfigValueError(ValueError):
    """A config value that train_net.py cannot run with; the message names the key."""


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def int_at_least(minimum: int) -> Callable:
    def check(v):
        return _is_int(v) and v >= minimum

    check.describe = f"an integer >= {minimum}"
    return check


def any_int(v) -> bool:
    return _is_int(v)


any_int.describe = "an integer"


def number_at_least(minimum: float, strict: bool = False) -> Callable:
    def check(v):
        return _is_number(v) and (v > minimum if strict else v >= minimum)

    check.describe = f"a finite number {'>' if strict else '>='} {minimum}"
    return check


def optional(check: Callable) -> Callable:
    def wrapped(v):
        return v is None or check(v)

    wrapped.describe = f"None or {check.describe}"
    return wrapped


def non_empty_str(v) -> bool:
    return isinstance(v, str) and v.strip() != ""


non_empty_str.describe = "a non-empty string"


@dataclass(frozen=True)
class Rule:
    key: str
    check: Callable
    required: bool = False


RULES: List[Rule] = [
    Rule("train.max_iter", int_at_least(1), required=True),
    Rule("train.output_dir", non_empty_str, required=True),
    Rule("train.checkpointer.period", int_at_least(1), required=True),
    Rule("train.checkpointer.max_to_keep", optional(int_at_least(1))),
    Rule("train.eval_period", int_at_least(0)),
    Rule("train.log_period", int_at_least(1)),
    Rule("train.seed", any_int),
    Rule("train.clip_grad_norm", number_at_least(0.0)),
    Rule("dataloader.train.total_batch_size", int_at_least(1)),
    Rule("dataloader.train.num_workers", int_at_least(0)),
    Rule("dataloader.test.num_workers", int_at_least(0)),
    Rule("optimizer.lr", number_at_least(0.0, strict=True)),
    Rule("model.num_classes", int_at_least(1)),
]


def _select(cfg, key):
    try:
        return OmegaConf.select(cfg, key, default=_MISSING)
    except Exception as e:  # an interpolation that does not resolve
        raise ConfigValueError(f"config key {key} cannot be read: {e}") from e


def validate_config(cfg, world_size: int = 1, rules: Optional[List[Rule]] = None) -> None:
    """Raise :class:`ConfigValueError` for the first value in ``cfg`` that breaks a rule.

    Args:
        cfg: the lazy config (after command-line overrides).
        world_size: number of training processes; the total batch size must divide.
        rules: defaults to :data:`RULES`. Keys absent from ``cfg`` are skipped unless the
            rule says ``required``.
    """
    for rule in RULES if rules is None else rules:
        value = _select(cfg, rule.key)
        if value is _MISSING:
            if rule.required:
                raise ConfigValueError(f"config key {rule.key} is missing: train_net.py needs {rule.check.describe}")
            continue
        if not rule.check(value):
            raise ConfigValueError(f"{rule.key}={value!r} is invalid: expected {rule.check.describe}")
    batch = _select(cfg, "dataloader.train.total_batch_size")
    if batch is not _MISSING and batch % world_size != 0:
        raise ConfigValueError(
            f"dataloader.train.total_batch_size={batch} is invalid: it must be divisible by the "
            f"number of processes ({world_size})"
        )
