"""The inverted residual block with a linear bottleneck (MobileNetV2), and its EfficientNet form, MBConv.

Paper: "MobileNetV2: Inverted Residuals and Linear Bottlenecks", Mark Sandler, Andrew Howard, Menglong Zhu,
Andrey Zhmoginov, Liang-Chieh Chen, CVPR 2018. https://arxiv.org/abs/1801.04381

A ResNet bottleneck goes wide → narrow → wide and its shortcut joins the wide ends. MobileNetV2 turns this
inside out (Table 1, Figure 3):

    x (k channels) ─► 1×1 expand to t·k, ReLU6 ─► k×k depthwise, stride s, ReLU6 ─► 1×1 project to k', linear ─┐
    └───────────────────────────── shortcut, only when s = 1 and k = k' ─────────────────────────────(+)─┴─► y

* Inverted residuals (§3.3): the shortcut connects the thin *bottlenecks*, because they already hold all the
  necessary information, while the expansion is only a workspace for the non-linear transformation.
  Only thin tensors cross block boundaries, which keeps the memory a block needs small.
* Linear bottlenecks (§3.2): the projection back to k' channels has no non-linearity. A ReLU on a
  low-dimensional embedding destroys information (Figure 1); a linear layer keeps it.
* The expensive spatial work is done by a depthwise convolution (one k×k filter per channel), which costs
  about k² times less than a full convolution; the 1×1 convolutions mix the channels.

MnasNet and EfficientNet (Tan & Le 2019) call this block MBConv ("mobile inverted bottleneck") and add three
things, all optional here: a squeeze-and-excitation gate after the depthwise convolution, SiLU ("swish") in
place of ReLU6, and stochastic depth on the residual branch.

The expansion 1×1 is left out when t = 1 (it would map k channels to k), as the released MobileNetV2 and
EfficientNet code do; Table 1 of the paper draws it in every block.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from paperzoo.layers.conv import ConvNormAct
from paperzoo.layers.squeeze_excite import SqueezeExcite
from paperzoo.layers.stochastic_depth import StochasticDepth


class InvertedResidual(nn.Module):
    """Expand (1×1) → depthwise (k×k) → optional squeeze-excitation → linear projection (1×1), with an identity
    shortcut where the input and output shapes agree.

    Args:
        in_channels: k, the width of the incoming bottleneck.
        out_channels: k', the width of the outgoing bottleneck.
        expand_ratio: t, the expansion factor; the block works on ``round(t · k)`` channels inside (the
            networks in this project always make that a multiple of 8, where MobileNetV2's and
            EfficientNet's released rounding rules agree). ``t = 1`` leaves the expansion out.
        kernel_size: of the depthwise convolution (3 in MobileNetV2; 3 or 5 in EfficientNet).
        stride: of the depthwise convolution; 2 halves the resolution and removes the shortcut.
        act_layer: the non-linearity after the expansion and the depthwise convolution (``nn.ReLU6`` in
            MobileNetV2, ``nn.SiLU`` in EfficientNet); also inside the squeeze-excitation gate.
        norm_layer: a constructor taking the channel count (BatchNorm, with each network's eps/momentum).
        se_ratio: squeeze-and-excitation on the expanded channels with a bottleneck of
            ``max(1, int(in_channels · se_ratio))`` units, computed from the block's *input* channels as
            EfficientNet's released code and torchvision do (not from the expanded ones); ``None``: no gate.
        stochastic_depth_prob: probability of dropping the residual branch of an example in training
            (only where there is a shortcut to fall back on); the identity in eval.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        *,
        expand_ratio: float,
        kernel_size: int = 3,
        stride: int = 1,
        act_layer: type[nn.Module] = nn.ReLU6,
        norm_layer: Callable[[int], nn.Module] = nn.BatchNorm2d,
        se_ratio: float | None = None,
        stochastic_depth_prob: float = 0.0,
    ) -> None:
        super().__init__()
        if stride not in (1, 2):
            raise ValueError(f"stride must be 1 or 2, got {stride}")
        expanded = round(in_channels * expand_ratio)
        self.expand = (ConvNormAct(in_channels, expanded, 1, norm_layer=norm_layer, act_layer=act_layer)
                       if expanded != in_channels else nn.Identity())
        # groups = channels: one k×k filter per channel, the spatial half of a depthwise separable convolution.
        self.depthwise = ConvNormAct(expanded, expanded, kernel_size, stride=stride, groups=expanded,
                                     norm_layer=norm_layer, act_layer=act_layer)
        self.squeeze_excite = (SqueezeExcite(expanded, max(1, int(in_channels * se_ratio)), act_layer=act_layer)
                               if se_ratio is not None else nn.Identity())
        # The linear bottleneck (§3.2): no activation after the projection.
        self.project = ConvNormAct(expanded, out_channels, 1, norm_layer=norm_layer, act_layer=None)
        self.use_residual = stride == 1 and in_channels == out_channels
        self.stochastic_depth = StochasticDepth(stochastic_depth_prob) if self.use_residual else nn.Identity()
        self.out_channels = out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        branch = self.project(self.squeeze_excite(self.depthwise(self.expand(x))))
        if self.use_residual:
            # The shortcut joins the two bottlenecks, added in place into the branch's fresh output (no autograd
            # node needs it): one allocation fewer per block, as torchvision's `result += input`.
            return self.stochastic_depth(branch).add_(x)
        return branch
