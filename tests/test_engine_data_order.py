"""The resumable training data stream (dsla_d2/engine/data_order.py)."""
import random

import numpy as np
import pytest
import torch

import dsla_d2  # noqa: F401
from detectron2.data import build_detection_train_loader
from detectron2.data.samplers import TrainingSampler

from dsla_d2.engine.data_order import (
    BatchOrder,
    ResumableTrainLoader,
    TrainStream,
    aspect_ratio_groups,
    build_resumable_train_loader,
    sample_rng,
)


def dataset(n=23):
    """Images of both orientations in an irregular pattern (w > h for indices 0, 3, 5, 6, 9...)."""
    rng = np.random.RandomState(1)
    return [{"idx": i, "width": 100 + int(rng.randint(-40, 40)), "height": 100, "annotations": [{"iscrowd": 0}]} for i in range(n)]


def randomised(d):
    """A mapper whose output depends on every global random generator."""
    return {"idx": d["idx"], "np": float(np.random.rand()), "py": random.random(), "torch": float(torch.rand(()))}


@pytest.mark.parametrize("grouping", [True, False])
def test_batches_are_detectron2s_for_the_same_seed(grouping):
    # One process: Detectron2's TrainingSampler + AspectRatioGroupedDataset (or plain
    # batching) and BatchOrder give the same batches, so the embedded configs see the
    # images they saw with Detectron2's loader.
    data = dataset()
    ref = iter(build_detection_train_loader(
        data, mapper=lambda d: d, sampler=TrainingSampler(len(data), seed=7), total_batch_size=4,
        aspect_ratio_grouping=grouping, num_workers=0))
    ref_batches = [[d["idx"] for d in next(ref)] for _ in range(25)]  # > 4 epochs of 23
    order = BatchOrder(len(data), 4, seed=7, groups=aspect_ratio_groups(data) if grouping else None)
    ours = order.batches()
    assert [b for _, (_, b) in zip(range(25), ours)] == ref_batches
    if grouping:  # each batch is one orientation
        groups = aspect_ratio_groups(data)
        assert all(len({groups[i] for i in b}) == 1 for b in ref_batches)


def test_batches_from_any_iteration():
    order = BatchOrder(23, 4, seed=3, groups=aspect_ratio_groups(dataset()))
    full = [x for _, x in zip(range(30), order.batches())]
    assert [x for _, x in zip(range(10), order.batches(start_iter=20))] == full[20:30]
    assert [it for it, _ in full] == list(range(30))


def test_sample_rng_is_a_function_of_position_and_restores_the_global_state():
    np.random.seed(5)
    random.seed(5)
    torch.manual_seed(5)
    before = (np.random.rand(), random.random(), float(torch.rand(())))
    np.random.seed(5)
    random.seed(5)
    torch.manual_seed(5)
    with sample_rng(1, 2, 3):
        a = randomised({"idx": 0})
    with sample_rng(1, 2, 3):
        b = randomised({"idx": 0})
    with sample_rng(1, 2, 4):
        c = randomised({"idx": 0})
    assert a == b and a != c
    # the draws inside did not advance the global generators
    assert (np.random.rand(), random.random(), float(torch.rand(()))) == before


def take(loader, n):
    it = iter(loader)
    return [next(it) for _ in range(n)]


@pytest.mark.parametrize("num_workers", [0, 2])
def test_a_loader_started_at_k_continues_the_uninterrupted_stream(num_workers):
    data = dataset()
    uninterrupted = take(ResumableTrainLoader(data, mapper=randomised, total_batch_size=4, seed=11, num_workers=num_workers), 9)
    resumed = ResumableTrainLoader(data, mapper=randomised, total_batch_size=4, seed=11, num_workers=num_workers)
    resumed.start_iter = 6
    assert take(resumed, 3) == uninterrupted[6:]  # same images, same random draws
    assert len({d["np"] for b in uninterrupted for d in b}) == 36  # draws differ per sample
    if num_workers:
        single = take(ResumableTrainLoader(data, mapper=randomised, total_batch_size=4, seed=11), 9)
        assert single == uninterrupted  # workers keep the order


def test_processes_split_the_global_batch():
    # 2 processes take halves of each global batch, with the same augmentation draws
    data = dataset()
    order = BatchOrder(len(data), 4, seed=2, groups=aspect_ratio_groups(data))
    one = list(zip(range(12), TrainStream(data, randomised, order, 1, rank=0, world_size=1)))
    halves = [list(zip(range(6), TrainStream(data, randomised, order, 1, rank=r, world_size=2))) for r in (0, 1)]
    one = [d for _, d in one]
    halves = [[d for _, d in h] for h in halves]
    for it in range(3):  # iteration 1 + it
        assert halves[0][2 * it: 2 * it + 2] + halves[1][2 * it: 2 * it + 2] == one[4 * it: 4 * it + 4]


def test_state_dict_carries_the_seed():
    data = dataset()
    a = ResumableTrainLoader(data, mapper=randomised, total_batch_size=4, seed=123)
    b = ResumableTrainLoader(data, mapper=randomised, total_batch_size=4, seed=9)
    b.load_state_dict(a.state_dict())
    assert take(a, 3) == take(b, 3)


def test_mapper_returning_none_draws_a_deterministic_replacement():
    data = dataset()

    def skip_odd(d):
        return None if d["idx"] % 2 else randomised(d)

    a = take(ResumableTrainLoader(data, mapper=skip_odd, total_batch_size=4, seed=1), 5)
    b = take(ResumableTrainLoader(data, mapper=skip_odd, total_batch_size=4, seed=1), 5)
    assert a == b and all(d["idx"] % 2 == 0 for batch in a for d in batch)


def test_bad_training_sets_are_refused():
    crowd = [{"width": 10, "height": 10, "file_name": "a.jpg", "annotations": [{"iscrowd": 1}, {"iscrowd": 1}]}]
    with pytest.raises(ValueError, match="all 2 annotations are crowd") as e:
        build_resumable_train_loader(crowd, mapper=None, total_batch_size=1)
    assert "a.jpg" in str(e.value)
    with pytest.raises(ValueError, match="no annotations"):
        build_resumable_train_loader([{"width": 10, "height": 10, "annotations": []}], mapper=None, total_batch_size=1)
    with pytest.raises(ValueError, match="empty"):
        build_resumable_train_loader([], mapper=None, total_batch_size=1)
    with pytest.raises(ValueError, match="non-negative"):
        build_resumable_train_loader(dataset(), mapper=None, total_batch_size=1, seed=-1)
