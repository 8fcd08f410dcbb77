"""All-reduce helpers: loss normalisers averaged over processes, so N GPUs give the loss of
one big batch, and counts summed over processes (through ``detectron2.utils.comm``)."""
import torch.distributed as dist
from torch import Tensor

from detectron2.utils import comm

__all__ = ["reduce_mean", "reduce_sum", "normalizer"]


def reduce_sum(value: Tensor) -> Tensor:
    """All-reduce sum of a tensor over all processes (identity in one process); a new
    tensor without gradient either way."""
    value = value.detach().clone()
    if comm.get_world_size() > 1:
        dist.all_reduce(value, op=dist.ReduceOp.SUM)
    return value


def reduce_mean(value: Tensor) -> Tensor:
    """All-reduce mean of a tensor over all processes (identity in one process)."""
    world = comm.get_world_size()
    if world == 1:
        return value
    value = value.detach().clone()
    dist.all_reduce(value, op=dist.ReduceOp.SUM)
    return value / world


def normalizer(total: Tensor, minimum: float = 1.0) -> Tensor:
    """max(all-reduce-mean(total), minimum) as a float tensor without gradient."""
    return reduce_mean(total.detach().float()).clamp(min=minimum)
