"""Feature Pyramid Network: "Feature Pyramid Networks for Object Detection", Tsung-Yi Lin, Piotr Dollár, Ross
Girshick, Kaiming He, Bharath Hariharan, Serge Belongie, 2017, https://arxiv.org/abs/1612.03144.

A ConvNet's feature hierarchy is already a pyramid, but its fine levels are semantically weak and its strong
levels coarse. The FPN gives every level strong semantics at its own resolution: a top-down pathway upsamples
the coarser map (nearest neighbour, ×2) and adds a lateral connection, a 1×1 convolution of the backbone's map of
the same size that brings it to d = 256 channels (§3, Fig. 3); a 3×3 convolution on each merged map "reduces the
aliasing effect of upsampling" and gives the output P_l. Every level has the same width d, so one head serves
all levels. Extra levels above the backbone's: P6 by subsampling P5 (Faster R-CNN with FPN, §4.1, "pool"), or
P6 and P7 by stride-2 3×3 convolutions (RetinaNet, Lin et al. 2017b §4, with a ReLU before P7)::

    C2 [256, H/4] ── 1×1 ─(+)─ 3×3 → P2      C5 [2048, H/32] ── 1×1 ──┬─ 3×3 → P5 ─ subsample → P6 ("pool")
    C3 [512, H/8] ── 1×1 ─(+)─ 3×3 → P3                               │
    C4 [1024,H/16]── 1×1 ─(+)─ 3×3 → P4        each (+) adds the ×2 nearest-upsampled merged map from above

Deviations: the upsampling is nearest to the lateral map's exact size rather than a fixed ×2, so odd sizes (an
unpadded image) still align, as torchvision does. RetinaNet's P6 input is C5 in the paper; torchvision's
``retinanet_resnet50_fpn`` (v1) feeds P5 instead, ``retinanet_resnet50_fpn_v2`` C5: :class:`LastLevelP6P7` takes P5
when its input width equals the FPN's (``in_channels == out_channels``), as torchvision decides it.
Initialisation is torchvision's: Kaiming-uniform with a = 1, zero biases.
"""

from __future__ import annotations

from collections import OrderedDict

import torch.nn.functional as F
from torch import Tensor, nn


def _init_conv(conv: nn.Conv2d) -> nn.Conv2d:
    nn.init.kaiming_uniform_(conv.weight, a=1)
    nn.init.zeros_(conv.bias)
    return conv


class LastLevelMaxPool(nn.Module):
    """P6 ("pool") for Faster/Mask R-CNN: P5 subsampled by 2 (a 1×1 max pool with stride 2), for the largest
    anchors (512²) of the RPN."""

    def forward(self, results: list[Tensor], features: list[Tensor], names: list[str]
                ) -> tuple[list[Tensor], list[str]]:
        return [*results, F.max_pool2d(results[-1], kernel_size=1, stride=2, padding=0)], [*names, "pool"]


class LastLevelP6P7(nn.Module):
    """P6 and P7 for RetinaNet: ``P6 = conv3×3/2(x)``, ``P7 = conv3×3/2(ReLU(P6))``, with x = P5 if
    ``in_channels == out_channels`` (torchvision's v1) else C5 (the paper).

    Args:
        in_channels: channels of the map P6 is computed from (256 for P5, 2048 for ResNet-50's C5).
        out_channels: the pyramid's width d.
    """

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.p6 = _init_conv(nn.Conv2d(in_channels, out_channels, kernel_size=3, stride=2, padding=1))
        self.p7 = _init_conv(nn.Conv2d(out_channels, out_channels, kernel_size=3, stride=2, padding=1))
        self.use_p5 = in_channels == out_channels

    def forward(self, results: list[Tensor], features: list[Tensor], names: list[str]
                ) -> tuple[list[Tensor], list[str]]:
        p6 = self.p6(results[-1] if self.use_p5 else features[-1])
        p7 = self.p7(F.relu(p6))
        return [*results, p6, p7], [*names, "p6", "p7"]


class FeaturePyramidNetwork(nn.Module):
    """Top-down pathway with lateral connections over the backbone's maps (finest first).

    Args:
        in_channels_list: channels of each input map, finest first (ResNet-50: 256, 512, 1024, 2048).
        out_channels: d, the width of every output level (256).
        extra_blocks: levels added above the coarsest (:class:`LastLevelMaxPool`, :class:`LastLevelP6P7`), or none.
    """

    def __init__(self, in_channels_list: list[int], out_channels: int, extra_blocks: nn.Module | None = None) -> None:
        super().__init__()
        self.lateral_convs = nn.ModuleList(  # 1×1: C_l → d channels
            _init_conv(nn.Conv2d(c, out_channels, kernel_size=1)) for c in in_channels_list)
        self.output_convs = nn.ModuleList(  # 3×3 on each merged map: against the aliasing of the upsampling
            _init_conv(nn.Conv2d(out_channels, out_channels, kernel_size=3, padding=1)) for _ in in_channels_list)
        self.extra_blocks = extra_blocks
        self.out_channels = out_channels

    def forward(self, features: OrderedDict[str, Tensor]) -> OrderedDict[str, Tensor]:
        """Backbone maps by name, finest first → pyramid levels ``[N, d, h_l, w_l]`` under the same names (plus
        the extra blocks' "pool" or "p6", "p7")."""
        names, maps = list(features.keys()), list(features.values())
        merged = self.lateral_convs[-1](maps[-1])  # the coarsest level has nothing above it
        results = [self.output_convs[-1](merged)]
        for level in range(len(maps) - 2, -1, -1):
            lateral = self.lateral_convs[level](maps[level])
            # M_l = lateral(C_l) + upsample(M_{l+1})
            merged = lateral + F.interpolate(merged, size=lateral.shape[-2:], mode="nearest")
            results.insert(0, self.output_convs[level](merged))
        if self.extra_blocks is not None:
            results, names = self.extra_blocks(results, maps, names)
        return OrderedDict(zip(names, results, strict=True))
