"""Renaming a state dict key by key, with a complete report of what does not fit.

A conversion is a list of :class:`KeyRule` (a regular expression over the source key and
the target key it becomes, or None to drop it on purpose). :func:`convert_state_dict`
applies the first rule that matches each source key and checks the result against the
target model's own state dict: every source tensor must be used or dropped by a rule, every
target tensor must be filled (or be listed as starting from the model's initial value), and
shapes must agree. Anything else raises :class:`ConversionError` listing every problem, so
that a conversion is complete or nothing is written — never a partial load.
"""
import re
from dataclasses import dataclass
from typing import Dict, Iterable, List, Optional, Sequence

import torch

from ..errors import UserInputError

__all__ = ["KeyRule", "ConversionError", "convert_state_dict"]


class ConversionError(UserInputError, ValueError):
    """A checkpoint that does not convert completely onto the target model."""


@dataclass(frozen=True)
class KeyRule:
    """``pattern`` (a regular expression matched against the whole source key) becomes
    ``target`` (a ``re`` replacement template, or a function of the match), or is dropped
    when ``target`` is None (``why`` says why)."""

    pattern: str
    target: object
    why: str = ""

    def apply(self, key: str) -> Optional[object]:
        m = re.fullmatch(self.pattern, key)
        if m is None:
            return None
        if self.target is None:
            return False  # dropped on purpose
        return self.target(m) if callable(self.target) else m.expand(self.target)


def _shape(t) -> tuple:
    return tuple(t.shape)


def convert_state_dict(
    source: Dict[str, torch.Tensor],
    rules: Sequence[KeyRule],
    target: Dict[str, torch.Tensor],
    keep_initial: Iterable[str] = (),
    source_name: str = "the checkpoint",
) -> Dict[str, torch.Tensor]:
    """``source`` renamed by ``rules`` for a model whose state dict is ``target``.

    Args:
        keep_initial: regular expressions of target keys that the source does not have and
            that keep the model's initial value (returned from ``target``), e.g. training
            counters.
    Returns:
        a state dict with exactly the keys of ``target``.
    Raises:
        ConversionError: listing every unmapped source key, missing target key, key mapped
            twice or shape mismatch.
    """
    out: Dict[str, torch.Tensor] = {}
    unmapped: List[str] = []
    problems: List[str] = []
    origin: Dict[str, str] = {}
    for key, value in source.items():
        new = next((r for r in (rule.apply(key) for rule in rules) if r is not None), None)
        if new is None:
            unmapped.append(key)
            continue
        if new is False:
            continue
        if new in origin:
            problems.append(f"{key} and {origin[new]} both map to {new}")
            continue
        if new not in target:
            problems.append(f"{key} maps to {new}, which the model does not have")
            continue
        value = torch.as_tensor(value)
        if _shape(value) != _shape(target[new]):
            if value.numel() == target[new].numel() and value.numel() == 1:
                value = value.reshape(target[new].shape)  # a scalar stored as () or (1,)
            else:
                problems.append(f"{key} {_shape(value)} -> {new} {_shape(target[new])}: shapes differ")
                continue
        origin[new] = key
        out[new] = value.to(target[new].dtype)
    keep = [re.compile(p) for p in keep_initial]
    missing = []
    for key, value in target.items():
        if key in out:
            continue
        if any(p.fullmatch(key) for p in keep):
            out[key] = value.clone()
        else:
            missing.append(key)
    if unmapped or missing or problems:
        lines = [f"{source_name} does not convert completely onto this model:"]
        if unmapped:
            lines.append(f"  {len(unmapped)} tensor(s) of the checkpoint have no place in the model: {_listed(unmapped)}")
        if missing:
            lines.append(f"  {len(missing)} tensor(s) of the model are not in the checkpoint: {_listed(missing)}")
        lines.extend(f"  {p}" for p in problems[:20])
        raise ConversionError("\n".join(lines))
    return {k: out[k] for k in target}


def _listed(keys: List[str], n: int = 12) -> str:
    return ", ".join(keys[:n]) + (f" and {len(keys) - n} more" if len(keys) > n else "")
