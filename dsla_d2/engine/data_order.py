"""The training data stream as a pure function of (seed, iteration): exact resume.

Detectron2's loader (``TrainingSampler`` → ``AspectRatioGroupedDataset``, augmentations
drawing from the worker's global ``np.random``) restarts from its beginning on resume, and
its augmentations depend on how much randomness was drawn before. Here:

* :class:`BatchOrder` gives the **global** batch (dataset indices, ``total_batch_size`` of
  them) of every iteration. The index stream is ``TrainingSampler``'s (the same seeded
  ``torch.randperm`` per epoch) and the grouping is ``AspectRatioGroupedDataset``'s (two
  buckets, w > h and w <= h, a batch is emitted when its bucket fills), replayed on the
  images' sizes without loading them. In one process, the batches are therefore the ones
  Detectron2's loader gives for the same seed; with N processes, process r takes slice r
  of each global batch (Detectron2 instead groups each process's share separately), so N
  processes see the batches one process sees.
* Each sample is mapped (read + augmented) under random generators (``np.random``,
  ``random``, torch CPU) seeded from (seed, iteration, slot in the global batch), restored
  afterwards: the augmentation is a function of the sample's position, wherever and
  whenever it is computed.
* :class:`ResumableTrainLoader` starts the stream at ``start_iter`` (set by
  :class:`~dsla_d2.engine.hooks.DataOrderHook` from the trainer) when it is first iterated,
  and batches it with Detectron2's ``build_detection_train_loader`` (DataLoader workers
  take whole iterations in turn, so the order is kept).
"""
import contextlib
import logging
import random
from typing import Callable, Iterator, List, Optional, Sequence, Tuple

import numpy as np
import torch
from torch.utils.data import IterableDataset, get_worker_info

from detectron2.data import build_detection_train_loader
from detectron2.data.common import DatasetFromList
from detectron2.utils import comm

__all__ = ["BatchOrder", "sample_rng", "TrainStream", "ResumableTrainLoader", "build_resumable_train_loader"]

logger = logging.getLogger(__name__)

_MAX_RETRIES = 10


class BatchOrder:
    """Global batches of dataset indices, one per iteration, a pure function of the seed.

    Args:
        num_samples: dataset size.
        batch_size: images per global batch (``total_batch_size``).
        seed: seed of the shuffle (a non-negative int).
        groups: per-image group id (0: w > h, 1: otherwise) to batch images of one group
            together, or None for consecutive chunks of the stream.
    """

    def __init__(self, num_samples: int, batch_size: int, seed: int, groups: Optional[Sequence[int]] = None):
        if num_samples <= 0:
            raise ValueError(f"BatchOrder needs a non-empty dataset (got {num_samples} samples)")
        if groups is not None and len(groups) != num_samples:
            raise ValueError(f"{len(groups)} group ids for {num_samples} samples")
        self.num_samples = int(num_samples)
        self.batch_size = int(batch_size)
        self.seed = int(seed)
        self.groups = None if groups is None else np.asarray(groups, dtype=np.int64)

    def _indices(self) -> Iterator[int]:
        g = torch.Generator()
        g.manual_seed(self.seed)
        while True:  # as detectron2's TrainingSampler(shuffle=True)
            yield from torch.randperm(self.num_samples, generator=g).tolist()

    def batches(self, start_iter: int = 0) -> Iterator[Tuple[int, List[int]]]:
        """(iteration, indices) for iterations start_iter, start_iter + 1, ... (forever);
        the batches before ``start_iter`` are replayed on indices only."""
        iteration = 0
        if self.groups is None:
            stream = self._indices()
            while True:
                batch = [next(stream) for _ in range(self.batch_size)]
                if iteration >= start_iter:
                    yield iteration, batch
                iteration += 1
        buckets = {}
        for idx in self._indices():
            bucket = buckets.setdefault(int(self.groups[idx]), [])
            bucket.append(idx)
            if len(bucket) == self.batch_size:
                if iteration >= start_iter:
                    yield iteration, bucket[:]
                del bucket[:]
                iteration += 1


def aspect_ratio_groups(dataset) -> List[int]:
    """AspectRatioGroupedDataset's two groups: 0 if width > height, else 1."""
    return [0 if d["width"] > d["height"] else 1 for d in dataset]


@contextlib.contextmanager
def sample_rng(seed: int, iteration: int, slot: int):
    """Seed ``np.random``, ``random`` and torch's CPU generator from (seed, iteration,
    slot) for the body, then restore the states they had."""
    np_seed, py_seed, torch_seed = np.random.SeedSequence([seed, iteration, slot]).generate_state(3)
    np_state, py_state, torch_state = np.random.get_state(), random.getstate(), torch.get_rng_state()
    np.random.seed(int(np_seed))
    random.seed(int(py_seed))
    torch.default_generator.manual_seed(int(torch_seed))
    try:
        yield
    finally:
        np.random.set_state(np_state)
        random.setstate(py_state)
        torch.set_rng_state(torch_state)


class TrainStream(IterableDataset):
    """This process's mapped samples, iteration after iteration, from ``start_iter``.

    In a DataLoader with W workers, worker w produces iterations start_iter + w,
    start_iter + w + W, ... (whole iterations, so batching keeps the order).
    """

    def __init__(self, dataset, mapper: Optional[Callable], order: BatchOrder, start_iter: int, rank: int, world_size: int):
        self.dataset = dataset
        self.mapper = mapper
        self.order = order
        self.start_iter = int(start_iter)
        self.rank = rank
        self.local_batch = order.batch_size // world_size

    def _map(self, iteration: int, slot: int, index: int):
        for retry in range(_MAX_RETRIES + 1):
            with sample_rng(self.order.seed, iteration, slot + retry * self.order.batch_size):
                if retry:  # the mapper skipped the sample: another one, drawn deterministically
                    index = random.randrange(self.order.num_samples)
                data = self.dataset[index]
                if self.mapper is not None:
                    data = self.mapper(data)
            if data is not None:
                return data
            logger.warning("The mapper returned None for dataset index %d (iteration %d); drawing another sample", index, iteration)
        raise RuntimeError(f"The mapper returned None {_MAX_RETRIES + 1} times in a row at iteration {iteration}")

    def __iter__(self):
        info = get_worker_info()
        worker, num_workers = (0, 1) if info is None else (info.id, info.num_workers)
        first = self.rank * self.local_batch
        for iteration, batch in self.order.batches(self.start_iter):
            if (iteration - self.start_iter) % num_workers != worker:
                continue
            for slot in range(first, first + self.local_batch):
                yield self._map(iteration, slot, batch[slot])


class ResumableTrainLoader:
    """An iterable of this process's training batches (lists of mapped dicts), as
    ``build_detection_train_loader`` returns, that can start at any iteration.

    The stream starts at :attr:`start_iter` when iteration begins (at the trainer's first
    step, after the checkpoint was loaded). ``state_dict`` holds the seed, so a resumed
    run shuffles as the original one even when the seed was drawn at random.
    """

    def __init__(self, dataset, *, mapper, total_batch_size: int, aspect_ratio_grouping: bool = True, num_workers: int = 0, seed: Optional[int] = None):
        world_size = comm.get_world_size()
        if total_batch_size <= 0 or total_batch_size % world_size:
            raise ValueError(f"total_batch_size={total_batch_size} must be a positive multiple of the number of processes ({world_size})")
        if seed is None:
            seed = comm.shared_random_seed()  # as TrainingSampler(seed=None)
        if int(seed) < 0:
            raise ValueError(f"seed={seed}: the data-order seed must be a non-negative integer")
        groups = aspect_ratio_groups(dataset) if aspect_ratio_grouping else None
        if isinstance(dataset, list):
            dataset = DatasetFromList(dataset, copy=False)
        self.dataset = dataset
        self.mapper = mapper
        self.total_batch_size = int(total_batch_size)
        self.num_workers = int(num_workers)
        self.groups = groups
        self.seed = int(seed)
        self.start_iter = 0

    def order(self) -> BatchOrder:
        return BatchOrder(len(self.dataset), self.total_batch_size, self.seed, self.groups)

    def __iter__(self):
        return self._batches()

    def _batches(self):
        stream = TrainStream(self.dataset, self.mapper, self.order(), self.start_iter, comm.get_rank(), comm.get_world_size())
        loader = build_detection_train_loader(
            stream, mapper=None, total_batch_size=self.total_batch_size, aspect_ratio_grouping=False, num_workers=self.num_workers
        )
        logger.info("Training data stream starts at iteration %d (data-order seed %d)", self.start_iter, self.seed)
        yield from loader

    def state_dict(self):
        return {"seed": self.seed}

    def load_state_dict(self, state):
        self.seed = int(state["seed"])


def _check_has_training_targets(dataset) -> None:
    """A training set whose annotations are all crowd (or absent) trains with zero
    positives; refuse it, saying so."""
    total = crowd = 0
    for d in dataset:
        for a in d.get("annotations", ()):
            total += 1
            crowd += bool(a.get("iscrowd", 0))
    if total == crowd:
        what = f"all {total} annotations are crowd (iscrowd=1) regions" if total else "there are no annotations"
        first = dataset[0].get("file_name", "?") if len(dataset) else "?"
        raise ValueError(
            f"The training set ({len(dataset)} images, first {first}) has nothing to learn from: "
            f"{what}, so every location would be a negative."
        )


def build_resumable_train_loader(dataset, *, mapper, total_batch_size: int, aspect_ratio_grouping: bool = True, num_workers: int = 0, seed: Optional[int] = None) -> ResumableTrainLoader:
    """``build_detection_train_loader``'s arguments (list of dataset dicts, mapper, batch,
    grouping, workers) plus the data-order ``seed`` (None: drawn as TrainingSampler
    draws it, and stored in checkpoints). Refuses a training set without any non-crowd
    annotation."""
    if isinstance(dataset, list):
        if not dataset:
            raise ValueError("The training set is empty")
        _check_has_training_targets(dataset)
    return ResumableTrainLoader(
        dataset, mapper=mapper, total_batch_size=total_batch_size, aspect_ratio_grouping=aspect_ratio_grouping, num_workers=num_workers, seed=seed
    )
