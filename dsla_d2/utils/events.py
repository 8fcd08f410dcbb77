"""Training statistics written to Detectron2's ``EventStorage`` (when a trainer runs)."""
from detectron2.utils.events import get_event_storage

__all__ = ["put_scalar"]


def put_scalar(name: str, value) -> None:
    """Log a training statistic to the current EventStorage, if there is one."""
    try:
        storage = get_event_storage()
    except AssertionError:  # called outside a trainer (tests, benchmarks)
        return
    storage.put_scalar(name, float(value))
