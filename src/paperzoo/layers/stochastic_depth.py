"""Stochastic depth (Huang et al., "Deep Networks with Stochastic Depth", ECCV 2016, arXiv:1603.09382).

During training, drop a residual branch for a whole example with probability p, so the block passes only its
shortcut: y = x + b · f(x) / (1 − p), b ~ Bernoulli(1 − p) per example. Dividing by the survival probability
keeps the expected output equal to the eval-mode output, where the branch is always kept (and this module is
the identity, so eval outputs match a reference exactly). A short random-depth network is trained at every
step, an ensemble of depths at test time. The networks that use it raise p linearly with depth.
"""

from __future__ import annotations

import torch
from torch import nn


class StochasticDepth(nn.Module):
    """Drop the whole residual branch of each example with probability ``p`` in training ("row" mode)."""

    def __init__(self, p: float) -> None:
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ValueError(f"drop probability must be in [0, 1), got {p}")
        self.p = p

    def forward(self, branch: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return branch
        survival = 1.0 - self.p
        keep = branch.new_empty((branch.shape[0],) + (1,) * (branch.ndim - 1)).bernoulli_(survival)  # (N, 1, …)
        return branch * keep.div_(survival)

    def extra_repr(self) -> str:
        return f"p={self.p}"
