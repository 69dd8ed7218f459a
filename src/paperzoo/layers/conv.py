"""Convolution → normalisation → activation, the unit almost every CNN in the zoo is built from."""

from __future__ import annotations

import inspect
from collections import OrderedDict

from torch import nn


class ConvNormAct(nn.Sequential):
    """``conv`` → ``norm`` → ``act``, each child present only when asked for.

    The children keep the names ``conv``, ``norm`` and ``act`` so that weight converters and readers can
    address them (``conv4_3.conv.weight``). ``padding=None`` keeps the spatial size for odd kernels at
    stride 1 (``dilation * (kernel_size - 1) // 2``, the "same" padding of the papers). The convolution has
    a bias only when there is no normalisation after it (the normalisation's shift makes it redundant),
    unless ``bias`` says otherwise (torchvision's VGG-BN keeps both).

    Args:
        in_channels, out_channels, kernel_size, stride, dilation, groups: as ``nn.Conv2d``.
        padding: as ``nn.Conv2d``; ``None`` for "same" padding.
        norm_layer: a constructor taking the channel count (``nn.BatchNorm2d``), or ``None``.
        act_layer: a constructor of the activation (``nn.ReLU``), or ``None`` for a linear output.
        bias: force the convolution's bias on or off.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        stride: int = 1,
        padding: int | None = None,
        dilation: int = 1,
        groups: int = 1,
        norm_layer: type[nn.Module] | None = nn.BatchNorm2d,
        act_layer: type[nn.Module] | None = nn.ReLU,
        bias: bool | None = None,
    ) -> None:
        if padding is None:
            padding = dilation * (kernel_size - 1) // 2
        if bias is None:
            bias = norm_layer is None
        layers: OrderedDict[str, nn.Module] = OrderedDict()
        layers["conv"] = nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride, padding=padding,
                                   dilation=dilation, groups=groups, bias=bias)
        if norm_layer is not None:
            layers["norm"] = norm_layer(out_channels)
        if act_layer is not None:
            # In place where the activation allows it: its input is a fresh output of conv or norm.
            takes_inplace = "inplace" in inspect.signature(act_layer).parameters
            layers["act"] = act_layer(inplace=True) if takes_inplace else act_layer()
        super().__init__(layers)
        self.out_channels = out_channels
