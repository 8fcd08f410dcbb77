"""Wall-clock timing of repeated calls, shared by both sides of ``bench_vs_mmdet.py`` (our
process and the mmdetection worker, which runs in another venv: plain Python only)."""
import time

__all__ = ["timed_ms"]


def timed_ms(fn, k):
    """Milliseconds of each of ``k`` calls of ``fn()`` (``time.perf_counter``)."""
    times = []
    for _ in range(k):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1000)
    return times
