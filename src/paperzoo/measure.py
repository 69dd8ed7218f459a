"""Measuring a model: the one way this project counts parameters and multiply-accumulates."""

from __future__ import annotations

import re
from typing import Any

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

ExampleInput = torch.Tensor | tuple[torch.Tensor, ...] | list[torch.Tensor]


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameters (each shared tensor once), as the papers and the references count them."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def run_example(model: nn.Module, example_input: ExampleInput) -> Any:
    """Call ``model`` on an input made by ``InputSpec.example_input``: a tuple (a translation model's source
    and target) is spread over the arguments; a tensor, or a list of images (a detector's input), is passed as is."""
    return model(*example_input) if isinstance(example_input, tuple) else model(example_input)


# What PyTorch and torchvision say when a meta tensor meets an operation whose output depends on the values.
_DATA_DEPENDENCE = re.compile(
    r"data-independent implementation does not exist|data-dependent shape|cannot be called on meta tensors"
    r"|Cannot copy out of meta tensor|with Meta tensors, but there was no fake impl or Meta kernel"
    r"|meta tensor without output_size")


def stops_at_data_dependence(error: Exception) -> bool:
    """Whether ``error`` is a meta tensor meeting an operation whose output size or value depends on the data
    (boolean indexing and ``nonzero``, NMS, ``.item()``, ``unique``): there is nothing to compute it from."""
    return isinstance(error, (NotImplementedError, RuntimeError)) and bool(_DATA_DEPENDENCE.search(str(error)))


def measure_gmacs(model: nn.Module, example_input: ExampleInput) -> float:
    """Multiply-accumulates of one forward pass, in billions, per example of ``example_input``.

    ``torch.utils.flop_counter`` counts the matrix products (convolutions, linear layers, attention),
    2 FLOPs per multiply-accumulate, as the papers' "FLOPs" mostly mean MACs. It works on the meta device,
    so a full-size model can be measured without allocating its weights.

    Detectors (a list of images as input) on the meta device: the count covers the dense network, everything
    a forward pass computes before its first data-dependent step (filtering scores by a threshold, NMS): the
    transform, the backbone, the FPN and the dense heads (the whole classification and box subnets of a one-stage
    detector; the RPN head of Faster/Mask R-CNN). Which region-wise work follows (Faster R-CNN's box head on the
    proposals that survive NMS, Mask R-CNN's mask head on the detections) depends on the image and the weights, so
    it is left out: the figure is the same for every image of the canonical size. On a real device the whole
    forward pass is counted, for the given weights and image.
    """
    images = isinstance(example_input, list)
    on_meta = any(p.is_meta for p in model.parameters()) or (
        images and any(isinstance(image, torch.Tensor) and image.is_meta for image in example_input))
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        try:
            run_example(model, example_input)
        except (NotImplementedError, RuntimeError) as error:
            if not (images and on_meta and stops_at_data_dependence(error)) or counter.get_total_flops() == 0:
                raise
    batch = example_input[0] if isinstance(example_input, tuple) else example_input
    return counter.get_total_flops() / 2 / 1e9 / len(batch)
