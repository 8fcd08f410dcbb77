"""The test loader of the COCO configs: Detectron2's ``build_detection_test_loader`` with
its worker count capped at the CPUs this process may use.

The config keeps the intended count (``dataloader.test.num_workers=4``), so the config's
values do not depend on the machine that loads it; a 2-core machine starts 2 workers
instead of 4 (PyTorch warns when a DataLoader starts more workers than CPUs)."""
import os

from detectron2.data import build_detection_test_loader

__all__ = ["available_cpus", "build_test_loader"]


def available_cpus() -> int:
    """CPUs this process may run on (its affinity where the OS tells it, else the count)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def build_test_loader(dataset, *, mapper, sampler=None, num_workers: int = 0, collate_fn=None):
    """``build_detection_test_loader(dataset, mapper=..., ...)`` with
    ``min(num_workers, available_cpus())`` workers."""
    return build_detection_test_loader(
        dataset, mapper=mapper, sampler=sampler, num_workers=min(int(num_workers), available_cpus()), collate_fn=collate_fn
    )
