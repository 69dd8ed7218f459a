"""Measuring a model: the one way this project counts parameters and multiply-accumulates."""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameters (each shared tensor once), as the papers and the references count them."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def measure_gmacs(model: nn.Module, example_input: torch.Tensor) -> float:
    """Multiply-accumulates of one forward pass, in billions, per example of ``example_input``.

    ``torch.utils.flop_counter`` counts the matrix products (convolutions, linear layers, attention),
    2 FLOPs per multiply-accumulate, as the papers' "FLOPs" mostly mean MACs. It works on the meta device,
    so a full-size model can be measured without allocating its weights.
    """
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(example_input)
    return counter.get_total_flops() / 2 / 1e9 / len(example_input)
