"""MixNet, and its mixed depthwise convolution, MixConv.

Paper: "MixConv: Mixed Depthwise Convolutional Kernels", Mingxing Tan, Quoc V. Le, BMVC 2019.
https://arxiv.org/abs/1907.09595

Every depthwise convolution of a mobile network (MobileNet, MnasNet, EfficientNet) picks one kernel size, and
the choice matters: larger kernels see more and help accuracy, up to a point (on MobileNets accuracy peaks near
7×7 and then drops, Figure 1), while the small ones are cheap and see fine detail. The paper's point is that one
layer need not choose:

* MixConv (§3, Figure 2). Partition the C input channels into g groups, X = <X̂_1, …, X̂_g>, convolve each group
  with its own kernel size, Ŷ_t = X̂_t ⊛ Ŵ_t with kernels 3×3, 5×5, 7×7, … (the t-th is (2t + 1) × (2t + 1)),
  and concatenate the outputs, Y = Concat(Ŷ_1, …, Ŷ_g). Each group is an ordinary depthwise
  convolution, so the layer costs about what a depthwise convolution of the mixed sizes would, and a network
  built with it has both small and large receptive fields in one layer. The paper's design choices (§3.1):
  g groups, kernel sizes growing by 2 from 3×3, and *equal partition* of the channels: every group gets
  ⌊C / g⌋ channels and the first group takes the remainder (:func:`split_channels`).
* MixNets (§5). A neural architecture search over a MnasNet/MobileNetV3-like space, where every depthwise
  convolution may be a MixConv of 1 … 5 kernel groups, and where the 1×1 expansion and projection convolutions
  may be *grouped* (split into 2 groups by the same equal partition, each group mapped by its own 1×1
  convolution) to save parameters and FLOPs. It found MixNet-S and MixNet-M (Figure 5); MixNet-L is MixNet-M with
  every width multiplied by 1.3. Blocks are MobileNetV2's inverted residual ("MBConv": 1×1 expand, depthwise,
  linear 1×1 project, shortcut), with squeeze-and-excitation and swish (SiLU) from the third stage on, ReLU
  before.

Data flow of MixNet-S at 224×224 (Figure 5; k lists a MixConv's kernel sizes, e is the expansion, "g2/g2" marks
a grouped 1×1 expansion / projection, "-" an ungrouped one, SE the squeeze-and-excitation width as a fraction of
the block's input width)::

    image 3×224×224
      stem: conv 3×3, 16, stride 2 → BN → ReLU                                           16×112×112
      stage1: depthwise k3 (no expansion), ReLU                                            16×112×112
      stage2: k3 e6 g2/g2 stride 2; k3 e3 g2/g2, ReLU                                      24×56×56
      stage3: k3.5.7 e6 SE½ stride 2; 3× k3.5 e6 g2/g2 SE½, swish                          40×28×28
      stage4: k3.5.7 e6 -/g2 SE¼ stride 2; 2× k3.5 e6 -/g2 SE¼, swish                      80×14×14
      stage5: k3.5.7 e6 g2/g2 SE½; 2× k3.5.7.9 e3 g2/g2 SE½, swish                        120×14×14
      stage6: k3.5.7.9.11 e6 SE½ stride 2; 2× k3.5.7.9 e6 -/g2 SE½, swish                 200×7×7
      head_conv: conv 1×1, 1536 → BN → ReLU                                             1536×7×7
      global average pool → dropout → fc                                                  1000 logits

    one block:  x ─► 1×1 expand (grouped?) → BN → act ─► MixConv (k₁ | k₂ | …) → BN → act ─► SE
                  ─► 1×1 project (grouped?) → BN, linear ─(+)─► y
                └──────────── identity, only when the stride is 1 and the width is kept ──┘

    one MixConv (C channels, g = 3):
      x ─► split C into (⌊C/3⌋ + C mod 3, ⌊C/3⌋, ⌊C/3⌋) ─► 3×3 dw │ 5×5 dw │ 7×7 dw ─► concat ─► C channels

Deviations from the paper, all timm's (``mixnet_s``/``_m``/``_l``, the reference, trained in PyTorch):

* BatchNorm uses PyTorch's defaults (eps 1e-5, momentum 0.1) and every convolution pads symmetrically by
  (k − 1) / 2. The TensorFlow original (and timm's ``tf_mixnet_*`` ports of its weights) uses eps 1e-3, momentum
  0.99 (0.01 in PyTorch's convention) and TensorFlow's "SAME" padding, which for a stride-2 layer on an even size
  puts the extra pixel on the bottom and right only; timm's ``mixnet_*`` weights were trained with PyTorch's
  settings, which this file keeps so that they load and give timm's outputs.
* Block details from the released code, which the paper does not give: the first block (expansion 1) has no
  expansion convolution; squeeze-and-excitation has ``int(ratio · block input channels)`` units, SiLU inside
  and a sigmoid gate; widths are scaled by the multiplier and rounded to the nearest multiple of 8 (never more
  than 10% down); head_conv keeps its 1536 channels at every width.
* Dropout before the classifier is the released code's 0.2 (S) and 0.25 (M, L); timm defaults to none. No
  stochastic depth (neither the original nor timm's default uses it).
* Initialisation as the released code and timm: convolutions N(0, 2 / fan_out) with fan_out = k² · out / groups
  (each group of a MixConv on its own), BatchNorm at 1 and 0, the classifier uniform in ±1/√(num_classes),
  zero biases.
* ``features_only`` returns, at each stride 2, 4, 8, 16 and 32, the output of the last stage at that stride
  (stages 1, 2, 3, 5 and 6, as timm does); head_conv belongs to the classifier and is not built.

TorchScript: timm's MixNet compiles with ``torch.jit.script``; this one does not (its input check and the shared
classifier plumbing are Python that TorchScript cannot compile, and TorchScript is deprecated upstream).
``torch.export``, ``torch.compile(fullgraph=True)`` and ``torch.fx`` capture it instead (tests/test_export.py,
tests/test_graph_capture.py).
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any, NamedTuple

import torch
from torch import nn

from paperzoo.layers import ConvNormAct, FeatureInfo, SqueezeExcite
from paperzoo.layers.classifier import ClassifierPool, ImageClassifier
from paperzoo.registry import InputSpec, ModelCard, Paper, register

__all__ = ["MixNet", "MixConv", "MixNetBlock", "BlockConfig", "MIXNET_S", "MIXNET_M", "split_channels",
           "round_channels"]


def split_channels(channels: int, groups: int) -> list[int]:
    """The paper's equal partition (§3.1): ``groups`` groups of ⌊channels / groups⌋, the first group taking
    the remainder, e.g. 7 channels in 3 groups → [3, 2, 2]."""
    sizes = [channels // groups] * groups
    sizes[0] += channels - sum(sizes)
    return sizes


class MixConv(nn.Module):
    """Mixed convolution (§3): split the channels into groups, convolve group t with its own kernel
    size (bias-free, stride ``stride``, padding (k − 1) / 2), concatenate.

    With ``depthwise=True`` each group is a depthwise convolution (the paper's MixConv, ``in_channels`` =
    ``out_channels``). With ``depthwise=False`` and kernel sizes ``(1, 1)`` it is MixNet's grouped 1×1
    convolution: input and output channels are both split by the same rule and group t maps input group t to
    output group t. One kernel size is an ordinary convolution.

    Args:
        in_channels, out_channels: of the whole layer.
        kernel_sizes: one kernel size per group, in the order of the channel groups.
        stride: of every group.
        depthwise: one filter per channel in each group, or a full convolution inside each group.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_sizes: Sequence[int], stride: int = 1,
                 depthwise: bool = True) -> None:
        super().__init__()
        if depthwise and in_channels != out_channels:
            raise ValueError(f"a mixed depthwise convolution keeps its width, got {in_channels} → {out_channels}")
        self.in_splits = split_channels(in_channels, len(kernel_sizes))
        out_splits = split_channels(out_channels, len(kernel_sizes))
        self.convs = nn.ModuleList(
            nn.Conv2d(c_in, c_out, k, stride=stride, padding=(k - 1) // 2, groups=c_in if depthwise else 1,
                      bias=False)
            for k, c_in, c_out in zip(kernel_sizes, self.in_splits, out_splits, strict=True))
        self.kernel_sizes = tuple(kernel_sizes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        groups = torch.split(x, self.in_splits, dim=1)  # X = <X̂_1, …, X̂_g>, (N, c_t, H, W) each
        # Ŷ_t = X̂_t ⊛ Ŵ_t, Y = Concat(Ŷ_1, …, Ŷ_g): (N, out_channels, H', W').
        # groups[t], not zip(..., groups): torch.fx cannot iterate the traced tuple of splits
        return torch.cat([conv(groups[t]) for t, conv in enumerate(self.convs)], dim=1)


def _mixconv_norm_act(in_channels: int, out_channels: int, kernel_sizes: Sequence[int], *, stride: int = 1,
                      depthwise: bool, norm_layer: Callable[[int], nn.Module],
                      act_layer: type[nn.Module] | None) -> nn.Sequential:
    """MixConv → BN [→ act], with ConvNormAct's child names (``conv``, ``norm``, ``act``)."""
    layers: OrderedDict[str, nn.Module] = OrderedDict(
        conv=MixConv(in_channels, out_channels, kernel_sizes, stride=stride, depthwise=depthwise),
        norm=norm_layer(out_channels),
    )
    if act_layer is not None:
        layers["act"] = act_layer()
    return nn.Sequential(layers)


class MixNetBlock(nn.Module):
    """MixNet's block: MobileNetV2's inverted residual with a MixConv as its depthwise convolution and optionally
    grouped 1×1 expansion and projection.

    Args:
        in_channels, out_channels: of the block (the thin bottlenecks the shortcut joins).
        kernel_sizes: of the MixConv, one per channel group ((3,) is a plain 3×3 depthwise convolution).
        expand_groups, project_groups: groups of the 1×1 expansion and projection (1 or 2).
        stride: of the MixConv; 2 halves the resolution and removes the shortcut.
        expansion: t, the block works on t · in_channels channels; 1 leaves the expansion out.
        se_ratio: squeeze-and-excitation with ``int(se_ratio · in_channels)`` units on the expanded channels,
            or ``None`` for no gate.
        act_layer: ReLU or SiLU ("swish"), after the expansion and the MixConv, and inside the gate.
        norm_layer: a constructor taking the channel count (BatchNorm with the network's eps and momentum).
    """

    def __init__(self, in_channels: int, out_channels: int, *, kernel_sizes: Sequence[int], expand_groups: int = 1,
                 project_groups: int = 1, stride: int = 1, expansion: int = 1, se_ratio: float | None = None,
                 act_layer: type[nn.Module] = nn.ReLU,
                 norm_layer: Callable[[int], nn.Module] = nn.BatchNorm2d) -> None:
        super().__init__()
        if stride not in (1, 2):
            raise ValueError(f"stride must be 1 or 2, got {stride}")
        expanded = in_channels * expansion
        self.expand = (_mixconv_norm_act(in_channels, expanded, (1,) * expand_groups, depthwise=False,
                                         norm_layer=norm_layer, act_layer=act_layer)
                       if expansion != 1 else nn.Identity())
        self.mixconv = _mixconv_norm_act(expanded, expanded, kernel_sizes, stride=stride, depthwise=True,
                                         norm_layer=norm_layer, act_layer=act_layer)
        self.squeeze_excite = (SqueezeExcite(expanded, max(1, int(in_channels * se_ratio)), act_layer=act_layer)
                               if se_ratio is not None else nn.Identity())
        # The linear bottleneck: no activation after the projection.
        self.project = _mixconv_norm_act(expanded, out_channels, (1,) * project_groups, depthwise=False,
                                         norm_layer=norm_layer, act_layer=None)
        self.use_residual = stride == 1 and in_channels == out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        branch = self.project(self.squeeze_excite(self.mixconv(self.expand(x))))
        return x + branch if self.use_residual else branch


class BlockConfig(NamedTuple):
    """One row of a MixNet's architecture (Figure 5): ``repeats`` identical blocks, the first with ``stride``."""

    repeats: int
    kernel_sizes: tuple[int, ...]
    expand_groups: int
    project_groups: int
    stride: int
    expansion: int
    channels: int
    se_ratio: float | None
    act_layer: type[nn.Module]


_B = BlockConfig
# Figure 5, as the released code (and timm) encodes it; one tuple of rows per stage.
MIXNET_S: tuple[tuple[BlockConfig, ...], ...] = (
    (_B(1, (3,), 1, 1, 1, 1, 16, None, nn.ReLU),),
    (_B(1, (3,), 2, 2, 2, 6, 24, None, nn.ReLU), _B(1, (3,), 2, 2, 1, 3, 24, None, nn.ReLU)),
    (_B(1, (3, 5, 7), 1, 1, 2, 6, 40, 0.5, nn.SiLU), _B(3, (3, 5), 2, 2, 1, 6, 40, 0.5, nn.SiLU)),
    (_B(1, (3, 5, 7), 1, 2, 2, 6, 80, 0.25, nn.SiLU), _B(2, (3, 5), 1, 2, 1, 6, 80, 0.25, nn.SiLU)),
    (_B(1, (3, 5, 7), 2, 2, 1, 6, 120, 0.5, nn.SiLU), _B(2, (3, 5, 7, 9), 2, 2, 1, 3, 120, 0.5, nn.SiLU)),
    (_B(1, (3, 5, 7, 9, 11), 1, 1, 2, 6, 200, 0.5, nn.SiLU), _B(2, (3, 5, 7, 9), 1, 2, 1, 6, 200, 0.5, nn.SiLU)),
)
MIXNET_M: tuple[tuple[BlockConfig, ...], ...] = (
    (_B(1, (3,), 1, 1, 1, 1, 24, None, nn.ReLU),),
    (_B(1, (3, 5, 7), 2, 2, 2, 6, 32, None, nn.ReLU), _B(1, (3,), 2, 2, 1, 3, 32, None, nn.ReLU)),
    (_B(1, (3, 5, 7, 9), 1, 1, 2, 6, 40, 0.5, nn.SiLU), _B(3, (3, 5), 2, 2, 1, 6, 40, 0.5, nn.SiLU)),
    (_B(1, (3, 5, 7), 1, 1, 2, 6, 80, 0.25, nn.SiLU), _B(3, (3, 5, 7, 9), 2, 2, 1, 6, 80, 0.25, nn.SiLU)),
    (_B(1, (3,), 1, 1, 1, 6, 120, 0.5, nn.SiLU), _B(3, (3, 5, 7, 9), 2, 2, 1, 3, 120, 0.5, nn.SiLU)),
    (_B(1, (3, 5, 7, 9), 1, 1, 2, 6, 200, 0.5, nn.SiLU), _B(3, (3, 5, 7, 9), 1, 2, 1, 6, 200, 0.5, nn.SiLU)),
)
HEAD_CHANNELS = 1536
FEATURE_STRIDES = (2, 4, 8, 16, 32)


def round_channels(channels: int, width: float, divisor: int = 8) -> int:
    """Scale a channel count by ``width`` and round it to the nearest multiple of ``divisor``, at least
    ``divisor`` and never more than 10% below the scaled value (the released code's rule)."""
    scaled = channels * width
    rounded = max(divisor, int(scaled + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * scaled else rounded


class MixNet(ImageClassifier):
    """A MixNet: a stem, stages of MixNet blocks, a 1×1 head convolution, global pooling and a classifier.

    Args:
        stages: the architecture, one tuple of :class:`BlockConfig` rows per stage (:data:`MIXNET_S`,
            :data:`MIXNET_M`).
        stem_channels: of the first 3×3 convolution (16 in MixNet-S, 24 in MixNet-M), before scaling.
        width: multiplies every width but head_conv's (then :func:`round_channels`); 1.3 makes MixNet-L.
        dropout: probability of dropping a pooled feature before the classifier.
        norm_eps, norm_momentum: of every BatchNorm (see Deviations).
        num_classes: outputs of the classifier; 0 leaves it out and returns the pooled features.
        in_chans: channels of the input image.
    """

    # Every convolution pads by (k - 1) / 2, so a stride-2 layer maps a 1×1 map to 1×1, and the pooling is
    # global: a 1×1 image passes the whole network, as it passes timm's (checked).
    min_input_size = 1
    model_name = "mixnet"
    first_conv = "stem.conv"
    final_modules = ("head_conv",)  # the 1×1 convolution before the pool, part of the features as in timm
    head_dropout_name = "dropout"

    def __init__(
        self,
        stages: tuple[tuple[BlockConfig, ...], ...] = MIXNET_S,
        stem_channels: int = 16,
        width: float = 1.0,
        dropout: float = 0.2,
        norm_eps: float = 1e-5,
        norm_momentum: float = 0.1,
        num_classes: int = 1000,
        in_chans: int = 3,
    ) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.in_chans = in_chans
        norm_layer = partial(nn.BatchNorm2d, eps=norm_eps, momentum=norm_momentum)

        in_channels = round_channels(stem_channels, width)
        self.stem = ConvNormAct(in_chans, in_channels, 3, stride=2, norm_layer=norm_layer, act_layer=nn.ReLU)

        # A feature level for each stride: the output of the last stage that still has it.
        strides, stride = [], 2
        for rows in stages:
            stride *= rows[0].stride
            strides.append(stride)
        feature_stages = [max(i for i, s in enumerate(strides) if s == stride) for stride in FEATURE_STRIDES]

        built: OrderedDict[str, nn.Module] = OrderedDict()
        levels, level_modules, level = [], [], []
        for i, rows in enumerate(stages):
            blocks = []
            for row in rows:
                out_channels = round_channels(row.channels, width)
                for j in range(row.repeats):
                    blocks.append(MixNetBlock(
                        in_channels, out_channels, kernel_sizes=row.kernel_sizes, expand_groups=row.expand_groups,
                        project_groups=row.project_groups, stride=row.stride if j == 0 else 1,
                        expansion=row.expansion, se_ratio=row.se_ratio, act_layer=row.act_layer,
                        norm_layer=norm_layer))
                    in_channels = out_channels
            name = f"stage{i + 1}"
            built[name] = nn.Sequential(*blocks)
            level.append(f"stages.{name}")
            if i in feature_stages:
                levels.append((in_channels, strides[i], f"stages.{name}"))
                level_modules.append(tuple(level))
                level = []
        self.stages = nn.Sequential(built)
        self.feature_info = FeatureInfo(levels)
        self.level_modules = tuple(level_modules)

        self.num_features = HEAD_CHANNELS
        self.head_conv = ConvNormAct(in_channels, HEAD_CHANNELS, 1, norm_layer=norm_layer, act_layer=nn.ReLU)
        self.global_pool = ClassifierPool("avg")
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(HEAD_CHANNELS, num_classes) if num_classes > 0 else nn.Identity()
        self._init_weights()

    def _init_weights(self) -> None:
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                kernel_h, kernel_w = module.kernel_size
                fan_out = kernel_h * kernel_w * module.out_channels // module.groups
                nn.init.normal_(module.weight, 0.0, math.sqrt(2.0 / fan_out))
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
            elif isinstance(module, nn.Linear):
                self.init_classifier(module)

    def init_classifier(self, fc: nn.Module) -> None:
        bound = 1.0 / math.sqrt(fc.out_features)
        nn.init.uniform_(fc.weight, -bound, bound)
        nn.init.zeros_(fc.bias)


_PAPER = Paper(
    title="MixConv: Mixed Depthwise Convolutional Kernels",
    authors="Mingxing Tan, Quoc V. Le",
    year=2019,
    url="https://arxiv.org/abs/1907.09595",
)
_INNOVATIONS = (
    "MixConv: one depthwise layer mixes kernel sizes, 3x3, 5x5, 7x7, ... each on its own group of channels",
    "equal channel partition: floor(C/g) channels per group, the remainder to the first",
    "grouped 1x1 expansion and projection convolutions split by the same rule, to save parameters",
    "MixNets found by architecture search over MixConv-based MBConv blocks with SE and swish",
)


def _card(name: str, architecture: str, params: int, gmacs: float, canonical: bool = False) -> ModelCard:
    return ModelCard(
        name=name,
        architecture=architecture,
        task="image-classification",
        paper=_PAPER,
        innovations=_INNOVATIONS,
        input=InputSpec(kind="image", shape=(3, 224, 224), min_size=MixNet.min_input_size),
        params=params,
        params_source=f"timm:{name}, counted",
        reference=f"timm:{name}",
        gmacs=gmacs,
        canonical=canonical,
    )


@register(_card("mixnet_s", "MixNet-S", params=4_134_606, gmacs=0.239, canonical=True))
def mixnet_s(**kwargs: Any) -> MixNet:
    """MixNet-S (Figure 5), 4.1M parameters."""
    kwargs.setdefault("dropout", 0.2)
    return MixNet(stages=MIXNET_S, stem_channels=16, **kwargs)


@register(_card("mixnet_m", "MixNet-M", params=5_014_382, gmacs=0.339))
def mixnet_m(**kwargs: Any) -> MixNet:
    """MixNet-M (Figure 5), 5.0M parameters."""
    kwargs.setdefault("dropout", 0.25)
    return MixNet(stages=MIXNET_M, stem_channels=24, **kwargs)


@register(_card("mixnet_l", "MixNet-L", params=7_329_252, gmacs=0.555))
def mixnet_l(**kwargs: Any) -> MixNet:
    """MixNet-L: MixNet-M with every width but head_conv's multiplied by 1.3, 7.3M parameters."""
    kwargs.setdefault("dropout", 0.25)
    return MixNet(stages=MIXNET_M, stem_channels=24, width=1.3, **kwargs)


if __name__ == "__main__":
    from paperzoo.cli import main

    main(["run", "mixnet_s"])
