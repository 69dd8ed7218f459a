"""What a backbone built with ``features_only=True`` returns, described for the heads built on it."""

from __future__ import annotations

from collections.abc import Container, Iterable
from typing import NamedTuple

import torch
from torch import nn


class FeatureInfo(NamedTuple):
    """One feature map of a backbone: its channel count, its stride relative to the input, and the module
    (dotted name) whose output it is. ``model.feature_info`` is a list of these, one per returned map."""

    channels: int
    stride: int
    module: str


def stage_outputs(x: torch.Tensor, stages: Iterable[nn.Module], keep: Container[int]) -> list[torch.Tensor]:
    """Pass ``x`` through ``stages`` in order and return the outputs of the stages whose index is in ``keep``:
    the forward pass of a backbone built with ``features_only=True``."""
    outputs = []
    for index, stage in enumerate(stages):
        x = stage(x)
        if index in keep:
            outputs.append(x)
    return outputs
