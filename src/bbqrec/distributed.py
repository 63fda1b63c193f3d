"""Data-parallel training over several processes: the process group and the few collectives the trainer needs.

The processes are started by `torchrun --standalone --nproc_per_node N` (the train rule does this when the
config's `processes` is N > 1), which gives each its RANK, LOCAL_RANK, WORLD_SIZE and a rendezvous address.
Without torchrun there is one process and every helper here is the identity: world size 1, rank 0.
Gradients travel over gloo on CPU and NCCL on CUDA, where each process drives the GPU of its LOCAL_RANK;
small CPU objects (validation ranks, random states) always go over gloo.
"""

from __future__ import annotations

import inspect
import os
from contextlib import contextmanager
from typing import Any, Callable, Iterator

import numpy as np
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel


def launched() -> bool:
    """Whether torchrun started this process as one of several."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def local_device(device: torch.device) -> torch.device:
    """This process's device: with several processes on CUDA, the GPU of its LOCAL_RANK."""
    if launched() and device.type == "cuda":
        return torch.device("cuda", int(os.environ["LOCAL_RANK"]))
    return device


@contextmanager
def process_group(device: torch.device) -> Iterator[None]:
    """Join the group of the processes torchrun started (nothing to join when there is one), leave it at the end."""
    if not launched():
        yield
        return
    if device.type == "cuda":
        torch.cuda.set_device(local_device(device))
    dist.init_process_group("cpu:gloo,cuda:nccl" if device.type == "cuda" else "gloo")
    try:
        yield
        # leave together: a gloo rank whose peer has already torn down its connections can abort in
        # destroy_process_group ("terminate called without an active exception", seen once under load)
        dist.barrier()
    finally:
        dist.destroy_process_group()


def world_size() -> int:
    return dist.get_world_size() if dist.is_initialized() else 1


def rank() -> int:
    return dist.get_rank() if dist.is_initialized() else 0


def is_main() -> bool:
    """Rank 0 writes the outputs, the checkpoint and the log."""
    return rank() == 0


def shard(n: int) -> slice:
    """This rank's contiguous share of n rows (shares differ by at most one row; some are empty when n < world)."""
    world, me = world_size(), rank()
    return slice(me * n // world, (me + 1) * n // world)


def rank_seed(seed: int) -> int:
    """`seed` on rank 0 (a single process draws what it always drew); an independent seed on every other rank."""
    me = rank()
    return seed if me == 0 else int(np.random.SeedSequence([seed, me]).generate_state(1)[0])


def sum_all(values: list[float]) -> list[float]:
    """Each value summed over the ranks."""
    if world_size() == 1:
        return values
    total = torch.tensor(values, dtype=torch.float64)
    dist.all_reduce(total)
    return total.tolist()


def broadcast_(tensor: torch.Tensor) -> torch.Tensor:
    """Overwrite `tensor` (CPU) with rank 0's, in place."""
    if world_size() > 1:
        dist.broadcast(tensor, src=0)
    return tensor


def gather_objects(value: Any) -> list[Any]:
    """Every rank's `value`, in rank order, on every rank."""
    if world_size() == 1:
        return [value]
    out: list[Any] = [None] * world_size()
    dist.all_gather_object(out, value)
    return out


class _LossForward(torch.nn.Module):
    # DDP averages the gradients of what runs through forward(); a SASRec trains through `loss`.
    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, *args: Any) -> torch.Tensor:
        return self.model.loss(*args)


def data_parallel_loss(model: torch.nn.Module) -> Callable[..., torch.Tensor]:
    """`model.loss`, or with several processes the same through DDP: backward() averages gradients over ranks.

    DDP starts every rank from rank 0's weights. The model's buffers are frozen item inputs, the same on every
    rank, so they are not broadcast again at each step.
    """
    if world_size() == 1:
        return model.loss
    # torch 2.14 renamed the switch (and deprecated the old name); older versions know only broadcast_buffers
    renamed = "forward_sync_buffers" in inspect.signature(DistributedDataParallel.__init__).parameters
    no_buffer_sync = {"forward_sync_buffers" if renamed else "broadcast_buffers": False}
    return DistributedDataParallel(_LossForward(model), **no_buffer_sync)
