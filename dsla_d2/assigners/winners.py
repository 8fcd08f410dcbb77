"""Deterministic resolution of ambiguous priors: the best candidate pair per (image, prior).

A prior that is a candidate of several gts takes one of them by a rule each assigner
states (FCOS: the smallest gt area; DSLA: the highest label_s, then the smaller area; ATSS:
the highest IoU; FoveaBox: the smallest gt, painted last). Every rule here is a
*lexicographic* order on per-pair keys, ending with the gt index, which is unique among
a prior's candidates — so exactly one pair wins, whatever the device or the pair order.

:class:`PriorWinners` keeps the current winner of every (image, prior) and merges chunks
of pairs into it (:func:`~dsla_d2.assigners.pairs.region_pair_chunks` yields them), so
the memory of the resolution is (images × priors), never (priors × gts).
"""
from typing import Dict, Mapping, Optional, Sequence

import torch
from torch import Tensor

from .pairs import CandidatePairs

__all__ = ["PriorWinners"]

_MODES = ("max", "min")


class PriorWinners:
    """Running lexicographic best pair of every (image, prior).

    Args:
        num_images, num_priors: N and R.
        modes: one of "max" / "min" per key, in priority order; the last key must be the
            gt index (unique per prior), e.g. ``("max", "min", "min")`` for DSLA's
            (label_s ↑, area ↓, gt index ↓).
        device: of the (N, R) state.

    After the pairs are merged, :attr:`matched` is the (N, R) int64 gt index of each
    prior's winner (−1: no candidate) and :meth:`value` the (N, R) value a pair carried.
    """

    def __init__(self, num_images: int, num_priors: int, modes: Sequence[str], device=None):
        bad = [m for m in modes if m not in _MODES]
        if bad or not modes:
            raise ValueError(f"modes must be a non-empty sequence of {_MODES}, got {list(modes)}")
        self.shape = (num_images, num_priors)
        self.modes = tuple(modes)
        self.device = device
        self.keys = None  # List[(N·R,)] current winner's keys
        self.values: Dict[str, Tensor] = {}
        self._gt = torch.full((num_images * num_priors,), -1, dtype=torch.long, device=device)

    # ------------------------------------------------------------------ merging
    def update(self, pairs: CandidatePairs, keys: Sequence[Tensor], values: Optional[Mapping[str, Tensor]] = None):
        """Merge candidate pairs.

        Args:
            pairs: P candidate pairs (any order); ``pairs.gt`` is the final key.
            keys: one (P,) tensor per mode but the last (the gt index is taken from
                ``pairs``), compared exactly (no NaN).
            values: (P,) per-pair tensors to carry with the winner (e.g. label_s).
        """
        values = dict(values or {})
        if len(keys) != len(self.modes) - 1:
            raise ValueError(f"{len(self.modes) - 1} keys expected before the gt index, got {len(keys)}")
        keys = list(keys) + [pairs.gt]
        flat = pairs.image * self.shape[1] + pairs.prior
        if self.keys is None:
            self.keys = [self._worst(k.dtype, m) for k, m in zip(keys, self.modes)]
            size = self._gt.numel()
            self.values = {name: torch.zeros(size, dtype=v.dtype, device=self.device) for name, v in values.items()}
        if flat.numel() == 0:
            return
        # 1. the best pair of each prior within the chunk: filter key by key
        alive = torch.ones_like(flat, dtype=torch.bool)
        for key, mode in zip(keys, self.modes):
            masked = torch.where(alive, key, self._worst(key.dtype, mode, ()))
            best = self._worst(key.dtype, mode).scatter_reduce(0, flat, masked, "a" + mode, include_self=True)
            alive &= key == best.index_select(0, flat)
        win = alive.nonzero().squeeze(1)  # one per prior: the last key is unique
        where = flat.index_select(0, win)
        # 2. merge with the winners of earlier chunks: lexicographic comparison
        better = torch.zeros_like(where, dtype=torch.bool)
        tied = torch.ones_like(where, dtype=torch.bool)
        for key, cur, mode in zip(keys, self.keys, self.modes):
            new, old = key.index_select(0, win), cur.index_select(0, where)
            strictly = new > old if mode == "max" else new < old
            better |= tied & strictly
            tied &= new == old
        keep = better.nonzero().squeeze(1)
        where, win = where.index_select(0, keep), win.index_select(0, keep)
        for key, cur in zip(keys, self.keys):
            cur.index_copy_(0, where, key.index_select(0, win))
        for name, v in values.items():
            self.values[name].index_copy_(0, where, v.index_select(0, win))
        self._gt.index_copy_(0, where, pairs.gt.index_select(0, win))

    def _worst(self, dtype, mode: str, shape=None) -> Tensor:
        """The key every real key beats: −inf / +inf (floats), or beyond any index."""
        shape = (self._gt.numel(),) if shape is None else shape
        if dtype.is_floating_point:
            fill = float("-inf") if mode == "max" else float("inf")
        else:
            fill = -1 if mode == "max" else torch.iinfo(dtype).max
        return torch.full(shape, fill, dtype=dtype, device=self.device)

    # ------------------------------------------------------------------ results
    @property
    def matched(self) -> Tensor:
        """(N, R) int64 gt index of each prior's winner, −1 where it had no candidate."""
        return self._gt.view(self.shape)

    def value(self, name: str, dtype=torch.float32) -> Tensor:
        """(N, R) value carried by each winner, 0 where there is none."""
        if name not in self.values:  # no pair was ever merged
            return torch.zeros(self.shape, dtype=dtype, device=self.device)
        return self.values[name].view(self.shape)
