"""Squeeze-and-Excitation (Hu et al., "Squeeze-and-Excitation Networks", CVPR 2018, arXiv:1709.01507).

A channel-attention gate used inside the blocks of SENet, MobileNetV3, EfficientNet, RegNetY and others:
squeeze each channel to one number by global average pooling, z = mean over (H, W) of x (eq. 2); excite
with two fully-connected layers around a bottleneck, s = σ(W2 δ(W1 z)) (eq. 3); rescale, y = s · x (eq. 4).
The fully-connected layers are 1×1 convolutions on the pooled (N, C, 1, 1) map, which is the same thing.
"""

from __future__ import annotations

import torch
from torch import nn


class SqueezeExcite(nn.Module):
    """Rescale channels by a gate computed from their global averages.

    Args:
        channels: channels of the input (and of the gate).
        squeeze_channels: width of the bottleneck W1 (the paper's C/r; each network states how it rounds).
        act_layer: the non-linearity δ between W1 and W2 (ReLU in the paper, SiLU in EfficientNet).
        gate_layer: the gate σ (sigmoid in the paper, hard-sigmoid in MobileNetV3).
    """

    def __init__(self, channels: int, squeeze_channels: int, act_layer: type[nn.Module] = nn.ReLU,
                 gate_layer: type[nn.Module] = nn.Sigmoid) -> None:
        super().__init__()
        self.fc1 = nn.Conv2d(channels, squeeze_channels, kernel_size=1)  # W1, with bias
        self.act = act_layer()
        self.fc2 = nn.Conv2d(squeeze_channels, channels, kernel_size=1)  # W2, with bias
        self.gate = gate_layer()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = x.mean(dim=(2, 3), keepdim=True)  # squeeze: (N, C, H, W) → (N, C, 1, 1)
        s = self.gate(self.fc2(self.act(self.fc1(z))))  # excite: s = σ(W2 δ(W1 z))
        return x * s  # rescale every channel of every position by its gate
