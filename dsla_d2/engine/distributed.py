"""Multi-process training: Detectron2's ``launch`` on GPUs, gloo processes on CPUs,
and processes started by ``torchrun``.

``launch(main, n, ...)`` is Detectron2's ``launch`` when CUDA is available (NCCL, one
process per GPU). Without CUDA, Detectron2's launcher stops ("cuda is not available");
here the same layout of processes is spawned with the gloo backend instead (development
and CI on CPU machines; each process gets ``cpu_count / n`` intra-op threads unless
``OMP_NUM_THREADS`` is set). When ``torchrun`` started the process (``RANK``,
``WORLD_SIZE``, ``LOCAL_RANK``, ``LOCAL_WORLD_SIZE``, ``MASTER_ADDR``/``MASTER_PORT`` in the
environment), the process joins that group (NCCL on GPUs, gloo on CPUs) and runs ``main``
itself.

:func:`create_ddp_model` is Detectron2's, except that a model on the CPU is wrapped
without ``device_ids`` (which DistributedDataParallel only accepts for GPU models).
"""
import logging
import os
from datetime import timedelta

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch.nn.parallel import DistributedDataParallel

from detectron2.engine import launch as d2_launch
from detectron2.engine.launch import DEFAULT_TIMEOUT, _find_free_port
from detectron2.utils import comm

__all__ = ["launch", "launched_by_torchrun", "create_ddp_model"]

logger = logging.getLogger(__name__)

_TORCHRUN_ENV = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE")


def launched_by_torchrun() -> bool:
    """True in a process started by torchrun (or any launcher that sets its variables)."""
    return all(k in os.environ for k in _TORCHRUN_ENV)


def _set_local_group(num_per_machine: int, machine_rank: int, world_size: int) -> None:
    """Detectron2's per-machine process group (``comm.get_local_rank``), as its launcher
    makes it. Every process must create every group, in the same order."""
    if comm._LOCAL_PROCESS_GROUP is not None:
        raise RuntimeError("the local process group already exists: launch() was called twice")
    for i in range(world_size // num_per_machine):
        group = dist.new_group(list(range(i * num_per_machine, (i + 1) * num_per_machine)))
        if i == machine_rank:
            comm._LOCAL_PROCESS_GROUP = group


def _cpu_threads(num_per_machine: int) -> None:
    if "OMP_NUM_THREADS" not in os.environ:
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // num_per_machine))


def _cpu_worker(local_rank, main_func, world_size, num_per_machine, machine_rank, dist_url, args, timeout):
    rank = machine_rank * num_per_machine + local_rank
    dist.init_process_group(backend="gloo", init_method=dist_url, world_size=world_size, rank=rank, timeout=timeout)
    _set_local_group(num_per_machine, machine_rank, world_size)
    _cpu_threads(num_per_machine)
    comm.synchronize()
    main_func(*args)


def _join_torchrun_group(timeout: timedelta) -> None:
    local_size = int(os.environ["LOCAL_WORLD_SIZE"])
    world_size, rank = int(os.environ["WORLD_SIZE"]), int(os.environ["RANK"])
    cuda = torch.cuda.is_available()
    dist.init_process_group(backend="nccl" if cuda else "gloo", init_method="env://", timeout=timeout)
    _set_local_group(local_size, rank // local_size, world_size)
    if cuda:
        torch.cuda.set_device(int(os.environ["LOCAL_RANK"]))
    else:
        _cpu_threads(local_size)
    comm.synchronize()


def launch(main_func, num_processes_per_machine: int, num_machines: int = 1, machine_rank: int = 0, dist_url=None, args=(), timeout=DEFAULT_TIMEOUT):
    """Run ``main_func(*args)`` in ``num_machines × num_processes_per_machine`` processes
    (Detectron2's ``launch`` arguments; ``dist_url="auto"`` picks a free local port).

    Under torchrun, ``num_processes_per_machine`` and ``num_machines`` must be 1 (torchrun
    started the processes) and the group comes from the environment.
    """
    if launched_by_torchrun() and int(os.environ["WORLD_SIZE"]) > 1:
        if num_processes_per_machine * num_machines != 1:
            raise ValueError(
                "This process was started by torchrun (WORLD_SIZE="
                f"{os.environ['WORLD_SIZE']}): leave --num-gpus and --num-machines at 1, "
                "torchrun's --nproc-per-node and --nnodes set the processes"
            )
        _join_torchrun_group(timeout)
        return main_func(*args)
    world_size = num_machines * num_processes_per_machine
    if world_size == 1:
        return main_func(*args)
    if torch.cuda.is_available():
        return d2_launch(main_func, num_processes_per_machine, num_machines=num_machines, machine_rank=machine_rank, dist_url=dist_url, args=args, timeout=timeout)
    if dist_url == "auto":
        if num_machines != 1:
            raise ValueError("dist_url='auto' only works on one machine; give --dist-url tcp://HOST:PORT")
        dist_url = f"tcp://127.0.0.1:{_find_free_port()}"
    logger.warning("CUDA is not available: %d CPU processes per machine with the gloo backend", num_processes_per_machine)
    mp.spawn(
        _cpu_worker,
        nprocs=num_processes_per_machine,
        args=(main_func, world_size, num_processes_per_machine, machine_rank, dist_url, args, timeout),
        daemon=False,
    )


def create_ddp_model(model, *, fp16_compression: bool = False, **kwargs):
    """``detectron2.engine.create_ddp_model``, also for a model on the CPU (gloo)."""
    if comm.get_world_size() == 1:
        return model
    on_cpu = next(model.parameters()).device.type == "cpu"
    if not on_cpu and "device_ids" not in kwargs:
        kwargs["device_ids"] = [comm.get_local_rank()]
    ddp = DistributedDataParallel(model, **kwargs)
    if fp16_compression:
        from torch.distributed.algorithms.ddp_comm_hooks import default as comm_hooks

        ddp.register_comm_hook(state=None, hook=comm_hooks.fp16_compress_hook)
    return ddp
