"""Running the same training command on many processes: ``torchrun --nproc_per_node N paperzoo train …``.

torchrun sets ``RANK``, ``LOCAL_RANK`` and ``WORLD_SIZE``; with more than one process each joins a process
group (NCCL between GPUs, gloo on CPUs), wraps the model in DistributedDataParallel (gradients averaged
across processes at every step, so every replica takes the same step) and trains on its own shard of every
epoch's data. Only rank 0 writes checkpoints, logs and plots. With ``--shard`` the model is sharded across the
processes instead of replicated (:mod:`paperzoo.training.sharding`).
"""

from __future__ import annotations

import atexit
import hashlib
import os
from collections.abc import Mapping
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class Context:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def start(device: str, shard: bool = False) -> Context:
    """Join the process group torchrun describes in the environment (a no-op for a single process, except under
    ``--shard``: sharded parameters live on a process group, here one of one process).

    torchrun's group, once started, is kept until the process ends (``atexit``), and the next training in the same
    process (a script calling ``train()`` twice) runs on it. Destroying it and starting another would rendezvous
    again in torchrun's store, where the first group's keys are still written under the same names: a process that
    gets there first reads its peer's old address and waits forever in gloo's connect.
    """
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    backend = "nccl" if device.startswith("cuda") else "gloo"
    if world_size == 1:
        if shard and not dist.is_initialized():
            # A store in memory, new each time: this group of one can be destroyed and started again.
            dist.init_process_group(backend=backend, store=dist.HashStore(), rank=0, world_size=1)
        return Context()
    context = Context(int(os.environ["RANK"]), world_size, int(os.environ.get("LOCAL_RANK", "0")))
    if not dist.is_initialized():
        dist.init_process_group(backend=backend)
        atexit.register(_destroy_at_exit)
    return context


def _destroy_at_exit() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def stop(context: Context, shard: bool = False) -> None:
    """Leave the group of one that a single sharded process started; torchrun's group stays (see ``start``)."""
    if shard and not context.distributed and dist.is_initialized():
        dist.destroy_process_group()


def all_sum(values: list[float], context: Context, device: torch.device) -> list[float]:
    """Sum a few numbers over all processes (metrics counted on each process's shard)."""
    if not context.distributed:
        return values
    tensor = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(tensor)
    return tensor.tolist()


def sync_buffers(model: torch.nn.Module, context: Context) -> None:
    """Copy rank 0's buffers (BatchNorm running statistics) to every process.

    DDP averages the gradients, so the parameters stay identical, and it broadcasts the buffers at the start
    of each forward pass; but the last training forward of an epoch updates every process's running
    statistics from its own shard. Broadcasting them at the end of the epoch lets every process evaluate,
    and rank 0 save, the same model.
    """
    if context.distributed:
        for buffer in model.buffers():
            dist.broadcast(buffer, src=0)


def parameter_digest(model: torch.nn.Module | Mapping[str, torch.Tensor]) -> str:
    """A hash of every parameter's bytes (of a model or of its state dict): equal digests mean bit-identical
    replicas."""
    digest = hashlib.sha256()
    for tensor in (model.state_dict() if isinstance(model, torch.nn.Module) else model).values():
        digest.update(tensor.detach().cpu().reshape(-1).contiguous().view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def replicas_identical(model: torch.nn.Module, context: Context) -> bool:
    if not context.distributed:
        return True
    digests: list[str | None] = [None] * context.world_size
    dist.all_gather_object(digests, parameter_digest(model))
    return len(set(digests)) == 1
