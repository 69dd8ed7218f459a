"""``paperzoo train NAME --shard``: fully sharded data parallel, for models whose weights, gradients and optimizer
state do not fit one device (GPT-2 XL, ViT-H, ConvNeXt V2-Huge, BERT-Large with Adam's two moments).

Under the same ``torchrun`` command as a data-parallel run, each of the N processes keeps 1/N of every parameter,
of its gradient and of its optimizer state (ZeRO stage 3, Rajbhandari et al. 2020, as PyTorch's FSDP2
``fully_shard``). A unit's full weights are gathered just before its forward (and again for its backward) and
freed after it, so a process holds whole weights only for one unit at a time, plus the root's own parameters
(embeddings, heads). The units are picked the same way for every model: the children of each ``ModuleList`` or
``Sequential`` made of two or more modules of one class that hold parameters, innermost only (the transformer
blocks; a CNN's blocks, whose stages stay with the model), then the model itself, then the task's objective.
One process is allowed too (a process group of one): the same checkpoints, which a later run may resume on N
processes.

A sharded run writes the folder ``checkpoint/`` instead of ``checkpoint.pt``: every process writes its own
shards of the model and of the optimizer state as safetensors (``torch.distributed.checkpoint`` with its
Hugging Face storage, which reads back without unpickling anything: the default storage keeps its index as a
pickle), and the first process adds ``state.pt`` (read with ``weights_only=True``: the schedules, the random
generators, the epoch, the history, the run's settings, the optimizers' hyperparameters). The folder is written
as ``.checkpoint.tmp`` and renamed into place; the run's end gathers the full weights into one
``model.safetensors``, and :func:`export` does the same from a checkpoint folder without any process group (an
interrupted run): ``python -m paperzoo.training.sharding RUN/checkpoint [OUT.safetensors]``.

Every process must take part in every gather, so evaluation gives each the same number of batches, and a task
whose evaluation decodes a different number of steps per process (translation's beam search, the GANs' two
players) names why in ``not_shardable``.
"""

from __future__ import annotations

import os
import shutil
import sys
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from paperzoo.training import checkpoints

if TYPE_CHECKING:
    from paperzoo.training.distributed import Context
    from paperzoo.training.loop import TrainConfig
    from paperzoo.training.tasks import Task

STATE = "state.pt"  # the first process's part of a sharded checkpoint


def check(config: TrainConfig, task: Task, context: Context) -> None:
    """Refuse, before anything is written, what a sharded run cannot do."""
    if not supported():
        raise ValueError(f"--shard needs torch.distributed with FSDP2 (fully_shard) and the safetensors storage of "
                         f"torch.distributed.checkpoint, which torch {torch.__version__} lacks: upgrade torch "
                         "(tested with 2.14)")
    if task.not_shardable:
        raise ValueError(f"--shard does not train {task.card.task} models: {task.not_shardable}; train without --shard")
    device = torch.device(config.device)
    if device.type not in ("cpu", "cuda"):
        raise ValueError(f"--shard runs on cpu (gloo) or cuda (NCCL), not --device {config.device}")
    if config.amp and device.type == "cuda":
        # float16's loss scaling skips a step where any gradient overflowed: with sharded gradients each process
        # sees only its part, and the processes would disagree about skipping (this loop has no sharded scaler).
        raise ValueError("--shard --amp on CUDA is not supported (float16 loss scaling over sharded gradients); "
                         "drop --amp, or train bfloat16 on --device cpu")
    if len(task.test_set) < context.world_size:
        raise ValueError(f"--shard: the held-out set has {len(task.test_set)} examples for {context.world_size} "
                         "processes, and every process must evaluate at least one: use more data or fewer processes")


def supported() -> bool:
    """Whether this torch has what ``--shard`` uses (FSDP2 is public from torch 2.6; the checkpoints' safetensors
    storage came later)."""
    if not torch.distributed.is_available():
        return False
    import torch.distributed.checkpoint as dcp
    import torch.distributed.fsdp as fsdp

    return hasattr(fsdp, "fully_shard") and hasattr(dcp, "HuggingFaceStorageReader")


def units(model: nn.Module) -> list[nn.Module]:
    """The modules sharded as units of their own: the children of every ``ModuleList`` or ``Sequential`` of two
    or more modules of one class that hold parameters, innermost only (a CNN's blocks, not the stages around
    them: a model may call a stage's parts one by one, past the stage's forward, where its weights are gathered)."""
    found = []
    for module in model.modules():
        if isinstance(module, (nn.ModuleList, nn.Sequential)) and len(module) > 1:
            children = list(module)
            if len({type(c) for c in children}) == 1 and all(any(True for _ in c.parameters()) for c in children):
                found.extend(children)
    ids = {id(unit) for unit in found}
    return [unit for unit in found if not any(id(m) in ids for m in unit.modules() if m is not unit)]


def shard(model: nn.Module, objective: nn.Module, device: torch.device) -> None:
    """Shard ``model`` in place over the default process group: its units innermost first (``fully_shard`` wraps
    a module's parameters that no inner unit holds), then the model, then the objective (its own parameters)."""
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard

    if device.type == "cuda":  # the mesh, and NCCL's collectives, take the current device
        torch.cuda.set_device(device)
    mesh = init_device_mesh(device.type, (torch.distributed.get_world_size(),))
    for unit in reversed(units(model)):
        fully_shard(unit, mesh=mesh)
    fully_shard(model, mesh=mesh)
    if objective is not model:
        fully_shard(objective, mesh=mesh)


def _split(tree: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """A state dict's tensors (for safetensors, nested dicts kept) and everything else (for ``state.pt``)."""
    tensors: dict[str, Any] = {}
    rest: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, torch.Tensor):
            tensors[key] = value
        elif isinstance(value, Mapping):
            tensors[key], rest[key] = _split(value)
        else:
            rest[key] = value
    return tensors, rest


def _merge(tensors: Mapping[str, Any], rest: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(rest)
    for key, value in tensors.items():
        merged[key] = _merge(value, rest.get(key, {})) if isinstance(value, Mapping) else value
    return merged


def _sharded_state(model: nn.Module, optimizers: list[torch.optim.Optimizer]) -> tuple[dict[str, Any], list]:
    from torch.distributed.checkpoint.state_dict import get_model_state_dict, get_optimizer_state_dict

    tensors: dict[str, Any] = {"model": get_model_state_dict(model)}
    rests = []
    for i, optimizer in enumerate(optimizers):
        tensors[f"optimizer{i}"], rest = _split(get_optimizer_state_dict(model, optimizer))
        rests.append(rest)
    return tensors, rests


def save_checkpoint(path: Path, model: nn.Module, optimizers: list[torch.optim.Optimizer], state: dict[str, Any],
                    is_main: bool) -> None:
    """Every process writes its shards, the first ``state.pt``, into ``.NAME.tmp``; then the first renames it
    over ``path`` (the old folder moves aside first and is deleted last: :func:`checkpoint_folder` falls back on
    it if a run dies between the two renames)."""
    import torch.distributed as dist
    import torch.distributed.checkpoint as dcp

    tmp, old = path.with_name(f".{path.name}.tmp"), path.with_name(f".{path.name}.old")
    if is_main:  # what an interrupted save left: its folder, and an old one (stale once the checkpoint is in place)
        for stale in (tmp, old) if path.exists() else (tmp,):
            shutil.rmtree(stale, ignore_errors=True)
    dist.barrier()
    tensors, rests = _sharded_state(model, optimizers)
    dcp.save(tensors, storage_writer=dcp.HuggingFaceStorageWriter(str(tmp), save_distributed=True))
    if is_main:
        checkpoints.atomic_write(tmp / STATE, lambda file: torch.save(
            {"format": checkpoints.FORMAT, "version": checkpoints.VERSION, "sharded": True, **state,
             "optimizer_settings": rests}, file))
    dist.barrier()  # every shard is on disk before the folder is renamed into place
    if is_main:
        if path.exists():
            os.replace(path, old)
        os.replace(tmp, path)
        shutil.rmtree(old, ignore_errors=True)
    dist.barrier()


def checkpoint_folder(path: Path) -> Path:
    """The sharded checkpoint at ``path``, or the previous one where a run died between its two renames."""
    old = path.with_name(f".{path.name}.old")
    return old if not path.exists() and (old / STATE).is_file() else path


def load_checkpoint(path: str | Path, model: nn.Module, optimizers: list[torch.optim.Optimizer],
                    state: Mapping[str, Any]) -> None:
    """Read the shards of ``path`` into the sharded ``model`` and ``optimizers`` (each process reads the parts it
    holds, whatever the number of processes that wrote them)."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import set_model_state_dict, set_optimizer_state_dict

    tensors, _ = _sharded_state(model, optimizers)  # the shapes and shards to fill
    dcp.load(tensors, storage_reader=dcp.HuggingFaceStorageReader(str(checkpoint_folder(Path(path)))))
    set_model_state_dict(model, tensors["model"])
    for i, optimizer in enumerate(optimizers):
        set_optimizer_state_dict(model, optimizer, _merge(tensors[f"optimizer{i}"],
                                                          state["optimizer_settings"][i]))


def full_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """The whole model's weights, gathered on the first process's CPU (every process must call it; the others
    get an empty dict)."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    return get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))


def export(checkpoint: str | Path, out: str | Path) -> Path:
    """Gather a sharded checkpoint folder's model weights into one safetensors file that
    :func:`paperzoo.load_weights` reads; runs in one process, without a process group."""
    import torch.distributed.checkpoint as dcp
    from safetensors.torch import save_file

    folder = checkpoint_folder(Path(checkpoint))
    if not (folder / STATE).is_file():
        raise ValueError(f"{checkpoint} is not a sharded paperzoo checkpoint (a folder with {STATE} and the "
                         "shards' .safetensors files, as paperzoo train --shard writes)")
    reader = dcp.HuggingFaceStorageReader(str(folder))
    stored = reader.read_metadata().state_dict_metadata
    weights = {key: torch.empty(meta.size, dtype=meta.properties.dtype) for key, meta in stored.items()
               if key.startswith("model.")}
    with warnings.catch_warnings():  # "assuming the intent is to load in a single process": it is
        warnings.simplefilter("ignore", UserWarning)
        dcp.load(weights, storage_reader=dcp.HuggingFaceStorageReader(str(folder)), no_dist=True)
    out = Path(out)
    full = {key.removeprefix("model."): value.contiguous() for key, value in weights.items()}
    checkpoints.atomic_write(out, lambda tmp: save_file(full, str(tmp)))
    return out


if __name__ == "__main__":
    if len(sys.argv) not in (2, 3):
        print("usage: python -m paperzoo.training.sharding RUN/checkpoint [OUT.safetensors]", file=sys.stderr)
        sys.exit(2)
    target = sys.argv[2] if len(sys.argv) == 3 else Path(sys.argv[1]).parent / "model.safetensors"
    try:
        print(export(sys.argv[1], target))
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
