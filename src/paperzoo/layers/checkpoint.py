"""Gradient (activation) checkpointing: keep a block's input, recompute its insides in the backward pass.

Chen et al., "Training Deep Nets with Sublinear Memory Cost" (2016, https://arxiv.org/abs/1604.06174): the
activations a block saves for its backward pass are dropped after its forward pass and recomputed from the
block's input when the backward pass reaches it. Memory held between the passes falls from every activation
of every block to the blocks' inputs (plus one block's activations at a time during the backward pass), for
about one extra forward pass of compute. A model offers it as ``model.set_grad_checkpointing(True)`` (timm's
name); it acts only in training mode with autograd recording, so inference and export are unchanged.

Two things must not change when a block is recomputed:

* Randomness (dropout, stochastic depth): ``torch.utils.checkpoint`` saves the RNG state before the block and
  restores it for the recomputation (``preserve_rng_state=True``, its default), so the same units are dropped.
* BatchNorm's running statistics: the recomputation runs the block in training mode again, which would update
  the running mean, variance and batch counter a second time. The statistics are restored after it, so a
  training step leaves the same statistics with checkpointing as without.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator
from typing import Any

import torch
import torch.utils.checkpoint
from torch import nn

__all__ = ["checkpoint_module", "checkpoint_seq", "checkpointing"]


def checkpointing(module: nn.Module) -> bool:
    """Whether ``module`` should checkpoint now: ``grad_checkpointing`` set, training mode, autograd recording."""
    return bool(getattr(module, "grad_checkpointing", False)) and module.training and torch.is_grad_enabled()


def _running_statistics(module: nn.Module) -> list[torch.Tensor]:
    return [buffer for norm in module.modules()
            if isinstance(norm, nn.modules.batchnorm._NormBase) and norm.track_running_stats
            for buffer in norm.buffers()]


@contextlib.contextmanager
def _restored(buffers: list[torch.Tensor]) -> Iterator[None]:
    """Undo what the recomputation does to ``buffers``: they were already updated once, in the forward pass."""
    saved = [buffer.clone() for buffer in buffers]
    try:
        yield
    finally:
        with torch.no_grad():
            for buffer, value in zip(buffers, saved, strict=True):
                buffer.copy_(value)


def checkpoint_module(module: nn.Module, *args: Any, **kwargs: Any) -> Any:
    """``module(*args, **kwargs)``, its saved activations recomputed in the backward pass instead of kept.

    Non-reentrant checkpointing (``use_reentrant=False``: keyword arguments and inputs that need no gradient
    work, and gradients reach the parameters as usual), the RNG state preserved, BatchNorm running statistics
    updated once.
    """
    statistics = _running_statistics(module)
    if statistics:
        def context_fn() -> tuple[contextlib.AbstractContextManager, contextlib.AbstractContextManager]:
            return contextlib.nullcontext(), _restored(statistics)  # (forward, recomputation)
    else:
        context_fn = torch.utils.checkpoint.noop_context_fn
    return torch.utils.checkpoint.checkpoint(module, *args, use_reentrant=False, context_fn=context_fn, **kwargs)


def checkpoint_seq(modules: Iterable[nn.Module], x: torch.Tensor, flatten: bool = False) -> torch.Tensor:
    """``x`` through ``modules`` in turn, each one checkpointed. ``flatten``: each module is a container (a
    stage) whose children (its blocks) are checkpointed one by one."""
    for module in modules:
        for block in (module.children() if flatten else (module,)):
            x = checkpoint_module(block, x)
    return x
