"""GhostNet.

Paper: "GhostNet: More Features from Cheap Operations", Kai Han, Yunhe Wang, Qi Tian, Jianyuan Guo, Chunjing Xu,
Chang Xu, CVPR 2020. https://arxiv.org/abs/1911.11907

The feature maps of a trained CNN are redundant: many of them look like near copies of another, shifted,
blurred or rescaled (Figure 1 of the paper, ResNet-50's first residual group). Those "ghosts" need not be
computed by an ordinary convolution, which spends c·k² multiply-adds per output pixel on each of them; a cheap
linear operation applied to one "intrinsic" map can produce them. GhostNet builds a whole network on this idea:

* The Ghost module (§3.1). To produce n output maps, an ordinary convolution (the *primary* convolution, a
  1×1 here) makes only m = n / s intrinsic maps, Y' = X * f' (eq. 2). Each intrinsic map y'_i then spawns s − 1
  ghosts through cheap linear operations, y_ij = Φ_i,j(y'_i) (eq. 3); the s-th operation Φ_i,s is the identity,
  which keeps the intrinsic map itself. Here every Φ is a d×d depthwise convolution (d = 3), so the cheap part
  is one depthwise convolution with channel multiplier s − 1. With s = 2, half the maps are computed by the
  primary convolution and half are ghosts, and the module costs about 1/s of the convolution it replaces
  (eq. 4: the speed-up ratio is s·c / (s + c − 1) ≈ s).
* The Ghost bottleneck (§3.2, Figure 3). Two Ghost modules around a shortcut, like MobileNetV2's inverted
  residual: the first *expands* the channels (with ReLU), the second *projects* them back to the output width
  without ReLU (a linear bottleneck, as MobileNetV2 recommends). With stride 2, a depthwise convolution with
  stride 2 sits between the two, and the shortcut is a downsampling path (depthwise convolution with stride 2,
  then a 1×1 convolution). Squeeze-and-excitation follows the expansion in some blocks.
* GhostNet (Table 1) is MobileNetV3-Large with its bottlenecks replaced by Ghost bottlenecks and ReLU in place
  of hard-swish (whose latency the paper found too high); a width multiplier α scales every layer
  (the paper reports GhostNet-0.5×, 1.0× and 1.3×).

Data flow of GhostNet 1.0× at 224×224 (Table 1; G-bneck(exp, out) is a Ghost bottleneck expanding to ``exp``
channels inside and giving ``out`` channels, k its depthwise kernel; SE marks squeeze-and-excitation)::

    image 3×224×224
      stem: conv 3×3, 16, stride 2 → BN → ReLU                                 16×112×112
      stage1: G-bneck(16, 16) k3                                               16×112×112
      stage2: G-bneck(48, 24) k3 stride 2; G-bneck(72, 24) k3                  24×56×56
      stage3: G-bneck(72, 40) k5 SE stride 2; G-bneck(120, 40) k5 SE           40×28×28
      stage4: G-bneck(240, 80) k3 stride 2; (200, 80); (184, 80); (184, 80);
              G-bneck(480, 112) SE; G-bneck(672, 112) SE, all k3              112×14×14
      stage5: G-bneck(672, 160) k5 SE stride 2; (960, 160); (960, 160) SE;
              (960, 160); (960, 160) SE, all k5                               160×7×7
      final_conv: conv 1×1, 960 → BN → ReLU                                   960×7×7
      global average pool → conv 1×1, 1280 (head_conv) → ReLU → dropout → fc  1000 logits

    one Ghost module (n outputs, ratio s = 2):
      x ─► primary 1×1 conv → BN [→ ReLU] ──► m = ⌈n/s⌉ intrinsic maps ─┬────────────────────────┐
                                           └─► 3×3 depthwise → BN [→ ReLU] ─► m·(s−1) ghosts ─ concat ─► first n maps

    one Ghost bottleneck:
      x ─► Ghost module (expand, ReLU) ─► [k×k depthwise, stride 2, BN] ─► [SE] ─► Ghost module (project) ─(+)─► y
      └──── identity; or k×k depthwise (stride s) → BN → 1×1 conv → BN where the shape changes ───────────┘

Deviations from the paper: none in the architecture; the details below are the released code's (timm's
``ghostnet_100`` is a port of it), where the paper does not state them:

* The depthwise kernel size of each bottleneck (3 or 5, MobileNetV3-Large's), which Table 1 does not list.
* Squeeze-and-excitation as in MobileNetV3: a bottleneck of 1/4 of the expanded channels, rounded to a multiple
  of 4, ReLU inside and a hard sigmoid, relu6(x + 3) / 6, as the gate.
* The projection shortcut (depthwise k×k with the block's stride, BN, 1×1 convolution, BN) is used wherever the
  width or the resolution changes, also in the stride-1 blocks that widen (80 → 112); the paper describes it
  only for stride 2.
* The Ghost module makes ⌈n / s⌉ intrinsic maps and keeps the first n of the concatenation, so that n need not
  be a multiple of s (every registered width gives even channel counts, so nothing is dropped there).
* Width multiplier α: channels are ``α · c`` rounded to the nearest multiple of 4, never more than 10% down;
  head_conv keeps 1280 channels at every width.
* Dropout 0.2 before the classifier, PyTorch's default BatchNorm (eps 1e-5, momentum 0.1) and PyTorch's default
  initialisation of every layer (the released code and timm initialise nothing themselves).
* ``features_only`` returns the output of each of the five stages (strides 2, 4, 8, 16, 32; 16, 24, 40, 112 and
  160 channels at 1.0×), the last block at each resolution. timm's feature maps differ: it takes the stem's
  convolution before its BN and ReLU, and at strides 4 … 32 the output of the first, downsampling block of
  each resolution. final_conv belongs to the classifier here and is not built.

TorchScript: timm's GhostNet compiles with ``torch.jit.script``; this one does not (its input check and the shared
classifier plumbing are Python that TorchScript cannot compile, and TorchScript is deprecated upstream).
``torch.export``, ``torch.compile(fullgraph=True)`` and ``torch.fx`` capture it instead (tests/test_export.py,
tests/test_graph_capture.py).
"""

from __future__ import annotations

import math
from collections import OrderedDict
from typing import Any

import torch
from torch import nn

from paperzoo.layers import ConvNormAct, FeatureInfo, SqueezeExcite
from paperzoo.layers.classifier import ClassifierPool, ImageClassifier
from paperzoo.registry import InputSpec, ModelCard, Paper, register

__all__ = ["GhostNet", "GhostModule", "GhostBottleneck", "GHOSTNET_STAGES", "round_channels"]

# Table 1, one entry per stage (one resolution), one row per Ghost bottleneck:
# depthwise kernel (the released code's), expansion channels (#exp), output channels (#out), SE, stride.
GHOSTNET_STAGES: tuple[tuple[tuple[int, int, int, bool, int], ...], ...] = (
    ((3, 16, 16, False, 1),),
    ((3, 48, 24, False, 2), (3, 72, 24, False, 1)),
    ((5, 72, 40, True, 2), (5, 120, 40, True, 1)),
    ((3, 240, 80, False, 2), (3, 200, 80, False, 1), (3, 184, 80, False, 1), (3, 184, 80, False, 1),
     (3, 480, 112, True, 1), (3, 672, 112, True, 1)),
    ((5, 672, 160, True, 2), (5, 960, 160, False, 1), (5, 960, 160, True, 1), (5, 960, 160, False, 1),
     (5, 960, 160, True, 1)),
)
STEM_CHANNELS, FINAL_CHANNELS, HEAD_CHANNELS = 16, 960, 1280
SE_RATIO = 0.25


def round_channels(channels: float, divisor: int = 4) -> int:
    """Round a (width-scaled) channel count to the nearest multiple of ``divisor``, at least ``divisor`` and
    never more than 10% below the scaled value (the released code's rule)."""
    rounded = max(divisor, int(channels + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * channels else rounded


class GhostModule(nn.Module):
    """The Ghost module (§3.1): ``out_channels`` maps from a few intrinsic maps and their cheap ghosts.

    Args:
        in_channels: channels of the input X.
        out_channels: n, the maps the module outputs.
        ratio: s, how many maps each intrinsic map accounts for (itself and s − 1 ghosts); 2 in GhostNet.
        cheap_kernel_size: d, the kernel of the depthwise "cheap operations" Φ (3 in GhostNet).
        relu: whether BN is followed by ReLU (the expanding module) or not (the projecting, linear one).
    """

    def __init__(self, in_channels: int, out_channels: int, ratio: int = 2, cheap_kernel_size: int = 3,
                 relu: bool = True) -> None:
        super().__init__()
        act_layer = nn.ReLU if relu else None
        intrinsic = math.ceil(out_channels / ratio)  # m = n / s, rounded up so that m · s >= n
        ghosts = intrinsic * (ratio - 1)
        # Eq. 2, Y' = X * f': the ordinary (here pointwise) convolution, producing only the intrinsic maps.
        self.primary_conv = ConvNormAct(in_channels, intrinsic, 1, act_layer=act_layer)
        # Eq. 3, y_ij = Φ_i,j(y'_i): groups = m gives each intrinsic map its own s − 1 d×d filters.
        self.cheap_operation = ConvNormAct(intrinsic, ghosts, cheap_kernel_size, groups=intrinsic,
                                           act_layer=act_layer)
        self.out_channels = out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        intrinsic = self.primary_conv(x)  # (N, m, H, W)
        ghosts = self.cheap_operation(intrinsic)  # (N, m·(s−1), H, W)
        # Φ_i,s is the identity: the intrinsic maps are part of the output.
        out = torch.cat([intrinsic, ghosts], dim=1)  # (N, m·s, H, W)
        return out[:, :self.out_channels]  # (N, n, H, W)


class GhostBottleneck(nn.Module):
    """The Ghost bottleneck (§3.2, Figure 3): expand with a Ghost module, optionally downsample with a depthwise
    convolution and gate with squeeze-and-excitation, project with a second (linear) Ghost module, add the
    shortcut.

    Args:
        in_channels, out_channels: of the block.
        expansion_channels: the width between the two Ghost modules (Table 1's #exp).
        kernel_size: of the stride-2 depthwise convolution and of the shortcut's depthwise convolution.
        stride: 1, or 2 to halve the resolution.
        squeeze_excite: whether the expanded maps are gated by squeeze-and-excitation.
    """

    def __init__(self, in_channels: int, expansion_channels: int, out_channels: int, kernel_size: int = 3,
                 stride: int = 1, squeeze_excite: bool = False) -> None:
        super().__init__()
        if stride not in (1, 2):
            raise ValueError(f"stride must be 1 or 2, got {stride}")
        self.ghost1 = GhostModule(in_channels, expansion_channels, relu=True)
        self.depthwise = (ConvNormAct(expansion_channels, expansion_channels, kernel_size, stride=stride,
                                      groups=expansion_channels, act_layer=None)
                          if stride == 2 else nn.Identity())
        self.squeeze_excite = (SqueezeExcite(expansion_channels, round_channels(expansion_channels * SE_RATIO),
                                             act_layer=nn.ReLU, gate_layer=nn.Hardsigmoid)
                               if squeeze_excite else nn.Identity())
        # No ReLU after the second Ghost module: the projection into the narrow output is linear (MobileNetV2).
        self.ghost2 = GhostModule(expansion_channels, out_channels, relu=False)
        if stride == 1 and in_channels == out_channels:
            self.shortcut: nn.Module = nn.Identity()
        else:  # a downsampling / widening path, itself a (linear) depthwise separable convolution
            self.shortcut = nn.Sequential(OrderedDict(
                depthwise=ConvNormAct(in_channels, in_channels, kernel_size, stride=stride, groups=in_channels,
                                      act_layer=None),
                pointwise=ConvNormAct(in_channels, out_channels, 1, act_layer=None),
            ))
        self.out_channels = out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        branch = self.ghost2(self.squeeze_excite(self.depthwise(self.ghost1(x))))
        return branch + self.shortcut(x)


class GhostNet(ImageClassifier):
    """GhostNet (Table 1), scaled by a width multiplier.

    Args:
        width: α, multiplies the channels of every layer but head_conv (then :func:`round_channels`).
        dropout: probability of dropping a pre-logits feature before the classifier.
        num_classes: outputs of the classifier; 0 leaves it out and returns the 1280 pre-logits features.
        in_chans: channels of the input image.

    Initialisation: PyTorch's defaults, as the released code and timm (which initialise nothing themselves).
    """

    # Every convolution pads by (k - 1) / 2, so a stride-2 layer maps a 1×1 map to 1×1, and the pooling is
    # global: a 1×1 image passes the whole network, as it passes timm's (checked).
    min_input_size = 1
    model_name = "ghostnet"
    first_conv = "stem.conv"
    final_modules = ("final_conv",)
    head_modules = ("head_conv",)  # pruned with the head
    head_dropout_name = "dropout"

    def __init__(
        self,
        width: float = 1.0,
        dropout: float = 0.2,
        num_classes: int = 1000,
        in_chans: int = 3,
    ) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.in_chans = in_chans

        in_channels = round_channels(STEM_CHANNELS * width)
        self.stem = ConvNormAct(in_chans, in_channels, 3, stride=2)

        stages: OrderedDict[str, nn.Module] = OrderedDict()
        levels = []
        stride = 2
        for i, rows in enumerate(GHOSTNET_STAGES):
            blocks = []
            for kernel, expansion, channels, squeeze_excite, block_stride in rows:
                out_channels = round_channels(channels * width)
                blocks.append(GhostBottleneck(in_channels, round_channels(expansion * width), out_channels,
                                              kernel_size=kernel, stride=block_stride,
                                              squeeze_excite=squeeze_excite))
                in_channels, stride = out_channels, stride * block_stride
            name = f"stage{i + 1}"
            stages[name] = nn.Sequential(*blocks)
            levels.append((in_channels, stride, f"stages.{name}"))
        self.stages = nn.Sequential(stages)
        self.feature_info = FeatureInfo(levels)

        self.final_conv = ConvNormAct(in_channels, round_channels(FINAL_CHANNELS * width), 1)
        self.num_features = round_channels(FINAL_CHANNELS * width)  # the map forward_features returns
        self.head_hidden_size = HEAD_CHANNELS  # the pre-logits width: head_conv's output, not scaled by α
        self.global_pool = ClassifierPool("avg")
        # A 1×1 convolution with bias on the pooled map, and ReLU: MobileNetV3's efficient last stage.
        self.head_conv = nn.Conv2d(round_channels(FINAL_CHANNELS * width), HEAD_CHANNELS, 1)
        self.head_act = nn.ReLU(inplace=True)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(HEAD_CHANNELS, num_classes) if num_classes > 0 else nn.Identity()

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """The map → pooled → head_conv, ReLU (on the 1×1 map, after the pool) → logits, or the 1280 features."""
        x = self.head_act(self.head_conv(self.global_pool(x)[..., None, None]))  # (N, C) → (N, 1280, 1, 1)
        x = self.dropout(torch.flatten(x, 1))
        return x if pre_logits else self.fc(x)


_PAPER = Paper(
    title="GhostNet: More Features from Cheap Operations",
    authors="Kai Han, Yunhe Wang, Qi Tian, Jianyuan Guo, Chunjing Xu, Chang Xu",
    year=2020,
    url="https://arxiv.org/abs/1911.11907",
)
_INNOVATIONS = (
    "feature maps are redundant: many are 'ghosts' of others, cheap to compute from them",
    "Ghost module: a primary 1x1 convolution makes n/s intrinsic maps, cheap depthwise operations the rest",
    "Ghost bottleneck: two Ghost modules (expand with ReLU, project linearly) around a shortcut, SE in some",
    "GhostNet: MobileNetV3-Large with Ghost bottlenecks and ReLU; width multiplier 0.5x / 1.0x / 1.3x",
)


def _card(name: str, width: float, timm_name: str, params: int, gmacs: float, canonical: bool = False) -> ModelCard:
    return ModelCard(
        name=name,
        architecture=f"GhostNet {width:.1f}x",
        task="image-classification",
        paper=_PAPER,
        innovations=_INNOVATIONS,
        input=InputSpec(kind="image", shape=(3, 224, 224), min_size=GhostNet.min_input_size),
        params=params,
        params_source=f"timm:{timm_name}, counted",
        reference=f"timm:{timm_name}",
        gmacs=gmacs,
        canonical=canonical,
    )


@register(_card("ghostnet", 1.0, "ghostnet_100", params=5_182_508, gmacs=0.141, canonical=True))
def ghostnet(**kwargs: Any) -> GhostNet:
    """GhostNet 1.0× (Table 1), 5.2M parameters."""
    return GhostNet(width=1.0, **kwargs)


@register(_card("ghostnet_050", 0.5, "ghostnet_050", params=2_587_292, gmacs=0.042))
def ghostnet_050(**kwargs: Any) -> GhostNet:
    """GhostNet 0.5×: every width but head_conv's halved."""
    return GhostNet(width=0.5, **kwargs)


@register(_card("ghostnet_130", 1.3, "ghostnet_130", params=7_358_820, gmacs=0.227))
def ghostnet_130(**kwargs: Any) -> GhostNet:
    """GhostNet 1.3×: every width but head_conv's multiplied by 1.3."""
    return GhostNet(width=1.3, **kwargs)


if __name__ == "__main__":
    from paperzoo.cli import main

    main(["run", "ghostnet"])
