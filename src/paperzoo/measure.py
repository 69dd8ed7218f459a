"""Measuring a model: the one way this project counts parameters and multiply-accumulates."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameters (each shared tensor once), as the papers and the references count them."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def run_example(model: nn.Module, example_input: torch.Tensor | tuple[torch.Tensor, ...]) -> Any:
    """Call ``model`` on an input made by ``InputSpec.example_input``: a tuple (a translation model's source
    and target) is spread over the arguments, a tensor is passed as is."""
    return model(*example_input) if isinstance(example_input, tuple) else model(example_input)


def measure_gmacs(model: nn.Module, example_input: torch.Tensor | tuple[torch.Tensor, ...]) -> float:
    """Multiply-accumulates of one forward pass, in billions, per example of ``example_input``.

    ``torch.utils.flop_counter`` counts the matrix products (convolutions, linear layers, attention),
    2 FLOPs per multiply-accumulate, as the papers' "FLOPs" mostly mean MACs. It works on the meta device,
    so a full-size model can be measured without allocating its weights.
    """
    from torch.utils.flop_counter import FlopCounterMode  # here, not at the top: it imports triton (~0.5 s)

    with FlopCounterMode(display=False) as counter, torch.no_grad():
        run_example(model, example_input)
    batch = example_input[0] if isinstance(example_input, tuple) else example_input
    return counter.get_total_flops() / 2 / 1e9 / len(batch)
