"""Deterministic weights for a model's key layout, the same in any environment.

The parity fixtures (``tools/parity/make_mmdet_fixtures.py``, run by hand beside
mmdetection) store a model's key names and shapes and a seed instead of its weights; the
tests regenerate the same tensors here, convert them and compare outputs. Each tensor is
drawn from its own generator, seeded by (seed, key name), so the values do not depend on
the order of the keys or on which other keys exist.

Scales keep activations of order 1 through a deep network: convolution / linear weights
N(0, 1/fan_in); norm scales 1 + 0.1 N(0, 1); norm shifts, biases and running means
0.1 N(0, 1); running variances 1 + U(0, 0.25); learnable scalars (FCOS ``Scale``)
1 + 0.1 N(0, 1); integer counters 0.
"""
import zlib
from typing import Dict, Iterable, Sequence, Tuple

import torch

__all__ = ["seeded_tensor", "seeded_state_dict", "key_spec"]


def _generator(seed: int, name: str) -> torch.Generator:
    return torch.Generator().manual_seed(int(seed) * 1_000_003 + zlib.crc32(name.encode("utf-8")))


def seeded_tensor(name: str, shape: Sequence[int], dtype: torch.dtype, seed: int) -> torch.Tensor:
    """The tensor of ``name`` with ``shape`` for ``seed`` (rules in the module docstring)."""
    shape = tuple(int(s) for s in shape)
    if not dtype.is_floating_point:
        return torch.zeros(shape, dtype=dtype)
    g = _generator(seed, name)
    leaf = name.rsplit(".", 1)[-1]
    if leaf == "running_var":
        t = 1.0 + 0.25 * torch.rand(shape, generator=g)
    elif leaf in ("running_mean", "bias"):
        t = 0.1 * torch.randn(shape, generator=g)
    elif len(shape) <= 1:  # norm scales (1-D weights) and learnable scalars
        t = 1.0 + 0.1 * torch.randn(shape, generator=g)
    else:
        fan_in = 1
        for s in shape[1:]:
            fan_in *= s
        t = torch.randn(shape, generator=g) / fan_in**0.5
    return t.to(dtype)


def seeded_state_dict(spec: Iterable[Tuple[str, Sequence[int], str]], seed: int) -> Dict[str, torch.Tensor]:
    """{name: tensor} for a key spec [(name, shape, dtype name)] (see :func:`key_spec`)."""
    return {name: seeded_tensor(name, shape, getattr(torch, dtype), seed) for name, shape, dtype in spec}


def key_spec(state_dict: Dict[str, torch.Tensor]):
    """[(name, shape, dtype name)] of a state dict, in its order."""
    return [(k, list(v.shape), str(v.dtype).replace("torch.", "")) for k, v in state_dict.items()]
