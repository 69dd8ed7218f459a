"""ShuffleNet (v1).

Paper: "ShuffleNet: An Extremely Efficient Convolutional Neural Network for Mobile Devices", Xiangyu Zhang,
Xinyu Zhou, Mengxiao Lin, Jian Sun, CVPR 2018 (arXiv 2017). https://arxiv.org/abs/1707.01083

ShuffleNet is built for budgets of 10 to 150 MFLOPs (the paper's "FLOPs" are multiply-adds). At that size the
dense 1×1 convolutions of Xception- and ResNeXt-style units eat almost all of the computation (93.4% of the
multiply-adds of a ResNeXt unit), so a small network can afford only a few channels. Two operations cut them:

* Pointwise group convolution (§3.1): split the channels of every 1×1 convolution into g groups, each output
  channel computed from its own group's share of the input only; the 1×1 layers cost g times less.
* Channel shuffle (§3.1, Figure 1): stacked group convolutions would let each group see only its own
  group's channels forever, which blocks information flow and weakens the representation. Between them,
  reshape the output channel dimension of a layer with g groups into (g, n), transpose it to (n, g) and
  flatten it back: every group of the next layer then receives channels from every group of the previous
  one. It is a fixed permutation, differentiable and free of parameters.
* The ShuffleNet unit (§3.2, Figure 2): a bottleneck residual unit whose 3×3 convolution is depthwise and
  whose two 1×1 convolutions are grouped, with a shuffle after the first. BN after every convolution, ReLU
  after the first 1×1 and after the sum, none after the depthwise convolution (as Xception suggests). For a
  c×h×w input and m bottleneck channels it costs hw(2cm/g + 9m) multiply-adds, against hw(2cm + 9m²) for a
  ResNet bottleneck and hw(2cm + 9m²/g) for a ResNeXt one. A unit with stride 2 puts a 3×3 average pool on
  the shortcut and concatenates instead of adding: more channels at almost no extra cost.
* The network (§3.3, Table 1): three stages of units, the bottleneck a quarter of the unit's output channels;
  for each g the widths are chosen to keep the whole network at about 140 MFLOPs, so more groups buy wider
  feature maps for the same cost. "ShuffleNet s×" scales every width by s (cost about s² as much).

Data flow of ShuffleNet 1× (g = 3) at 224×224 (Table 1)::

    image 3×224×224
      conv1: 3×3, 24, stride 2 → BN → ReLU                                24×112×112
      maxpool: 3×3, stride 2                                              24×56×56
      stage2: 1 unit of stride 2 (its first 1×1 not grouped), 3 units     240×28×28
      stage3: 1 unit of stride 2, 7 units                                 480×14×14
      stage4: 1 unit of stride 2, 3 units                                 960×7×7
      global average pool → fc                                            1000 logits

    one unit of stride 1 (Figure 2b):

      x ─┬─► 1×1 GConv, BN, ReLU ─► shuffle ─► 3×3 DWConv, BN ─► 1×1 GConv, BN ─(+)─► ReLU ─► y
         └────────────────────────────── identity ───────────────────────────────┘

    one unit of stride 2 (Figure 2c): C_in channels in, C_out out, half the size

      x ─┬─► 1×1 GConv, BN, ReLU ─► shuffle ─► 3×3 DWConv /2, BN ─► 1×1 GConv, BN ─┐  C_out − C_in
         │                                                                         ├─ concat ─► ReLU ─► y
         └────────────────────────── 3×3 average pool /2 ──────────────────────────┘  C_in

Complexity and size. Table 1 gives 143, 140, 137, 133 and 137 MFLOPs for g = 1, 2, 3, 4, 8 (Tables 2 and 5 round
the 1× networks to 140, the 0.5× ones to 38); this build measures 143.1, 140.8, 137.5, 134.3 and 138.4
(``paperzoo.measure.measure_gmacs``, which counts convolutions and the fc layer and, like the paper, a 3×3
depthwise convolution as 9 multiply-adds per output), and 38.5, 37.6 and 40.5 for the 0.5× networks with
g = 1, 3, 8 (for 0.5× g = 8 the release too reports 40M, not Table 2's 38). The paper states no parameter counts.
The authors' released implementation (github.com/megvii-model/ShuffleNet-Series, ShuffleNetV1) reports 1.9M for
1× g = 3, 2.4M for g = 8, 0.7M and 1.0M for their 0.5× networks; this build has 1,864,728, 2,433,768, 717,324 and
1,010,448, which round to them. That 1.9M is the "≈1.9M" usually quoted for ShuffleNet 1× (g = 3); the cards
carry the exact counts, each split into the stem, the three stages and the fc layer.

The paper leaves some details open; they are taken from that release: the shortcut comes first in the
concatenation; the average pool pads by one pixel and counts the padding; the fc layer has no bias; the 0.5×
networks halve the stem too (12 channels, 16 for g = 8, where 12 would leave the stride-2 branch of Stage 2 a
width of 180, not divisible by 8); a unit whose first 1×1 layer is not grouped still shuffles (a fixed
permutation a dense layer could have learned: harmless, and every unit stays the same); the initialisation
(below).

Deviations:

* The global pool is an adaptive average pool, so any input size works; the release's fixed 7×7 window is the
  same thing at 224×224 (Table 1's "GlobalPool 7×7").
* The release shuffles after the depthwise convolution, with the channels reshaped as (n, g), the inverse
  permutation of §3.1's (g, n). This file follows the paper: Figure 2's order (shuffle, then depthwise) and
  §3.1's reshape. Either way every group of the second 1×1 convolution sees channels of every group of the
  first (a depthwise convolution acts on each channel alone, so the shuffle may sit before or after it), but
  the release's trained weights would not load here as they are.
* The release applies the final ReLU of a stride-2 unit to the branch only, before the concatenation; Figure
  2(c) applies it after. The unit's input comes out of a ReLU, so its average pool is never negative and
  the two agree.
* Only the 0.5× networks for g = 1, 3 and 8 are registered: for g = 2 and g = 4 the halved widths give
  bottlenecks of 25 and 34 channels, which cannot be split into 2 and 4 groups, and the paper does not say
  how it rounded them (Table 2 reports those networks all the same).

Initialisation as the authors' release: the stem convolution from N(0, 0.01²), every other convolution from
N(0, (1/k)²) with k its input channels per group (so the depthwise ones from N(0, 1)), BN scale 1 and shift
0.0001, the fc layer from N(0, 0.01²).
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

import torch
from torch import nn

from paperzoo.layers import ConvNormAct, FeatureInfo
from paperzoo.layers.classifier import ClassifierPool, ImageClassifier
from paperzoo.registry import InputSpec, ModelCard, Paper, TrainingRecipe, register

__all__ = ["ShuffleNetV1", "ShuffleNetUnit", "ChannelShuffle", "channel_shuffle", "TABLE1_STAGE_CHANNELS"]

# Table 1: output channels of Stage 2, 3 and 4 of ShuffleNet 1× for each number of groups g.
TABLE1_STAGE_CHANNELS: dict[int, tuple[int, int, int]] = {
    1: (144, 288, 576),
    2: (200, 400, 800),
    3: (240, 480, 960),
    4: (272, 544, 1088),
    8: (384, 768, 1536),
}
UNITS_PER_STAGE = (4, 8, 4)  # Table 1's "Repeat": one unit of stride 2, then 3, 7, 3 units of stride 1


def channel_shuffle(x: torch.Tensor, groups: int) -> torch.Tensor:
    """Shuffle the channels of ``x``, the output of a layer with ``groups`` groups (§3.1, Figure 1c).

    With C = g·n channels, output channel j·g + i is input channel i·n + j: the j-th channel of group i.
    Split the result into g consecutive groups again and each one holds channels of every input group
    (when n >= g).
    """
    batch, channels, height, width = x.shape
    if channels % groups:
        raise ValueError(f"cannot shuffle {channels} channels in {groups} groups")
    x = x.reshape(batch, groups, channels // groups, height, width)  # (N, g, n, H, W): one row per group
    x = x.transpose(1, 2)  # (N, n, g, H, W): the j-th channels of all groups side by side
    return x.reshape(batch, channels, height, width)  # (N, g·n, H, W), flattened back


# The check above reads the channel count, which torch.fx's symbolic trace does not know: it records the call as
# one operation instead, so that the traced graph keeps the check (torch.export sees the sizes and traces through it).
torch.fx.wrap("channel_shuffle")


class ChannelShuffle(nn.Module):
    """:func:`channel_shuffle` as a layer, so that it shows where it sits when the network is printed."""

    def __init__(self, groups: int) -> None:
        super().__init__()
        self.groups = groups

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return channel_shuffle(x, self.groups) if self.groups > 1 else x

    def extra_repr(self) -> str:
        return f"groups={self.groups}"


class ShuffleNetUnit(nn.Module):
    """The ShuffleNet unit (Figure 2b), or with ``stride=2`` its down-sampling form (Figure 2c).

    Args:
        in_channels: channels of the input.
        out_channels: channels of the output; with stride 2 the branch adds ``out_channels − in_channels``
            channels to the pooled input.
        groups: g, the groups of the two 1×1 convolutions and of the shuffle.
        stride: 1 (residual sum) or 2 (halves the size, concatenation).
        group_first_pointwise: whether the first 1×1 convolution is grouped; not in the first unit of
            Stage 2, whose input has only 24 channels (§3.3).
    """

    def __init__(self, in_channels: int, out_channels: int, groups: int, stride: int = 1,
                 group_first_pointwise: bool = True) -> None:
        super().__init__()
        if stride not in (1, 2):
            raise ValueError(f"a ShuffleNet unit has stride 1 or 2, got {stride}")
        if stride == 1 and in_channels != out_channels:
            raise ValueError("a unit of stride 1 adds its input back, so it keeps the channel count")
        self.stride = stride
        bottleneck_channels = out_channels // 4  # §3.3: a quarter of the unit's output channels
        branch_channels = out_channels - in_channels if stride == 2 else out_channels
        self.gconv1 = ConvNormAct(in_channels, bottleneck_channels, kernel_size=1,
                                  groups=groups if group_first_pointwise else 1)
        self.shuffle = ChannelShuffle(groups)
        # Depthwise: one 3×3 filter per channel. BN but no ReLU after it (§3.2, following Xception).
        self.dwconv = ConvNormAct(bottleneck_channels, bottleneck_channels, kernel_size=3, stride=stride,
                                  groups=bottleneck_channels, act_layer=None)
        # The second pointwise group convolution recovers the width the shortcut needs; linear before the sum.
        self.gconv2 = ConvNormAct(bottleneck_channels, branch_channels, kernel_size=1, groups=groups,
                                  act_layer=None)
        # Zero padding counted in the average, as the release (torch's count_include_pad default).
        self.shortcut = nn.AvgPool2d(kernel_size=3, stride=2, padding=1) if stride == 2 else nn.Identity()
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Cost of the branch: hw(2cm/g + 9m) multiply-adds for c input and m bottleneck channels (§3.2).
        branch = self.gconv2(self.dwconv(self.shuffle(self.gconv1(x))))
        if self.stride == 2:  # (N, C_in, H/2, W/2) and (N, C_out − C_in, H/2, W/2) → (N, C_out, H/2, W/2)
            return self.act(torch.cat([self.shortcut(x), branch], dim=1))
        return self.act(x + branch)


class ShuffleNetV1(ImageClassifier):
    """ShuffleNet (Table 1), for any number of groups and width.

    Args:
        groups: g, the groups of the pointwise convolutions (1, 2, 3, 4 or 8 in the paper).
        stage_channels: output channels of Stage 2, 3 and 4 (Table 1's for the 1× networks).
        stem_channels: output channels of conv1 (24 in the 1× networks).
        units_per_stage: units in Stage 2, 3 and 4, the first of each with stride 2.
        num_classes: outputs of the fc layer; 0 leaves it out and returns pooled features.
        in_chans: channels of the input image.
    """

    # Every stride-2 layer pads, so even a 1×1 image stays 1×1 through all five of them; the 3×3 kernels
    # then see mostly padding, which is legal. (Train mode needs more than one value per BN channel.)
    min_input_size = 1
    model_name = "shufflenet_v1"
    first_conv = "conv1.conv"

    def __init__(
        self,
        groups: int = 3,
        stage_channels: tuple[int, int, int] = TABLE1_STAGE_CHANNELS[3],
        stem_channels: int = 24,
        units_per_stage: tuple[int, int, int] = UNITS_PER_STAGE,
        num_classes: int = 1000,
        in_chans: int = 3,
    ) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.in_chans = in_chans
        self.groups = groups

        # Stage 1: conv1 and the max pool, together stride 4.
        self.conv1 = ConvNormAct(in_chans, stem_channels, kernel_size=3, stride=2)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)

        stages: OrderedDict[str, nn.Module] = OrderedDict()
        in_channels = stem_channels
        for i, (out_channels, num_units) in enumerate(zip(stage_channels, units_per_stage, strict=True)):
            units = [ShuffleNetUnit(in_channels, out_channels, groups, stride=2, group_first_pointwise=i > 0)]
            units += [ShuffleNetUnit(out_channels, out_channels, groups) for _ in range(num_units - 1)]
            stages[f"stage{i + 2}"] = nn.Sequential(*units)
            in_channels = out_channels
        self.stages = nn.Sequential(stages)
        self.feature_info = FeatureInfo((channels, 2 ** (i + 3), f"stages.stage{i + 2}")
                                        for i, channels in enumerate(stage_channels))

        self.num_features = stage_channels[-1]
        self.global_pool = ClassifierPool("avg")
        self.fc = self._new_classifier(num_classes, None)
        self._init_weights()

    def _new_classifier(self, num_classes: int, like: nn.Module | None) -> nn.Module:
        if num_classes == 0:
            return nn.Identity()
        reference = next(self.parameters())
        fc = nn.Linear(self.num_features, num_classes, bias=False,  # no bias, as the authors' release
                       device=reference.device, dtype=reference.dtype)
        nn.init.normal_(fc.weight, mean=0.0, std=0.01)
        return fc

    def _init_weights(self) -> None:
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                std = 0.01 if module is self.conv1.conv else 1.0 / module.weight.shape[1]
                nn.init.normal_(module.weight, mean=0.0, std=std)
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.constant_(module.bias, 1e-4)

    def forward_stem(self, x: torch.Tensor) -> torch.Tensor:
        return self.maxpool(self.conv1(x))

_PAPER = Paper(
    title="ShuffleNet: An Extremely Efficient Convolutional Neural Network for Mobile Devices",
    authors="Xiangyu Zhang, Xinyu Zhou, Mengxiao Lin, Jian Sun",
    year=2017,
    url="https://arxiv.org/abs/1707.01083",
)
_INNOVATIONS = (
    "pointwise group convolutions: the 1x1 layers that dominate small networks cost g times less",
    "channel shuffle: reshape to (g, n), transpose, flatten, so stacked group convolutions exchange information",
    "the ShuffleNet unit: grouped 1x1, shuffle, 3x3 depthwise, grouped 1x1, in a residual bottleneck",
    "stride-2 units concatenate an average-pooled shortcut, widening the network at almost no cost",
    "for a fixed budget (about 140 MFLOPs) more groups buy wider feature maps",
)
# Table 1's "Complexity" row (MFLOPs, i.e. millions of multiply-adds) of ShuffleNet 1×, and Table 2's
# complexity of ShuffleNet 0.5× (38 MFLOPs for every g).
_PAPER_MFLOPS = {(1, 1.0): 143, (2, 1.0): 140, (3, 1.0): 137, (4, 1.0): 133, (8, 1.0): 137,
                 (1, 0.5): 38, (3, 0.5): 38, (8, 0.5): 38}
# The authors' released implementation (github.com/megvii-model/ShuffleNet-Series, ShuffleNetV1/README.md):
# parameters and FLOPs it reports for the networks it trained.
_RELEASE = {(3, 1.0): ("1.9M", "138M"), (8, 1.0): ("2.4M", "138M"), (3, 0.5): ("0.7M", "38M"),
            (8, 0.5): ("1.0M", "40M")}
# How each count is made up (the paper states none): the stem's 3×3 convolution and BatchNorm (3·9·C + 2·C), the
# units of stages 2, 3 and 4 at Table 1's widths, and the bias-free fc layer of the release (C_out·1000).
_PARAMS_BY_PART = {(1, 1.0): (696, 39_264, 322_848, 592_128, 576_000),
                   (2, 1.0): (696, 39_752, 316_400, 576_000, 800_000),
                   (3, 1.0): (696, 39_552, 307_680, 556_800, 960_000),
                   (4, 1.0): (696, 39_256, 299_744, 539_648, 1_088_000),
                   (8, 1.0): (696, 42_288, 307_968, 546_816, 1_536_000),
                   (1, 0.5): (348, 10_560, 83_664, 150_912, 288_000),
                   (3, 0.5): (348, 11_136, 81_840, 144_000, 480_000),
                   (8, 0.5): (464, 12_736, 84_864, 144_384, 768_000)}


# §4: weight decay 4e-5, a linear-decay learning rate policy from 0.5 to 0, batch 1024 (momentum 0.9 as the
# authors' code). Here at batch 128: lr 0.0625, the paper's scaled linearly with the batch.
_RECIPE = TrainingRecipe(optimizer="sgd", lr=0.0625, momentum=0.9, weight_decay=4e-5, schedule="linear",
                         batch_size=128, source="Zhang et al. 2018, §4 (lr scaled to batch 128)")


def _card(name: str, groups: int, width: float, params: int, gmacs: float, canonical: bool = False) -> ModelCard:
    scale = "1×" if width == 1.0 else "0.5×"
    release = _RELEASE.get((groups, width))
    stem, stage2, stage3, stage4, fc = _PARAMS_BY_PART[groups, width]
    source = (f"derived from Table 1's widths, the details the paper leaves open taken from the authors' release (the "
              f"paper states no parameter counts): {stem:,} (stem) + {stage2:,} (stage 2) + {stage3:,} (stage 3) + "
              f"{stage4:,} (stage 4) + {fc:,} (bias-free fc) = {params:,}")
    notes = (f"The paper gives {_PAPER_MFLOPS[groups, width]} MFLOPs (multiply-adds; Table "
             f"{1 if width == 1.0 else 2}); this build measures {gmacs * 1000:.0f}. No implementation to compare "
             "outputs with: the widths are Table 1's, the details the paper leaves open the authors' release's.")
    if release:
        source += f"; the authors' release reports {release[0]}, which it matches when rounded"
        notes += f" The release reports {release[0]} parameters and {release[1]} FLOPs for this network."
    if canonical:
        notes += (" Tables 2 and 5 round the 1× networks to 140 MFLOPs. The often quoted ≈1.9M is the release's "
                  "rounded figure; this faithful build has 1,864,728, which rounds to it.")
    return ModelCard(
        name=name,
        architecture=f"ShuffleNet {scale} (g={groups})",
        task="image-classification",
        paper=_PAPER,
        innovations=_INNOVATIONS,
        input=InputSpec(kind="image", shape=(3, 224, 224), min_size=ShuffleNetV1.min_input_size),
        params=params,
        params_source=source,
        reference="paper",
        gmacs=gmacs,
        recipe=_RECIPE,
        canonical=canonical,
        params_tolerance=0,
        notes=notes,
    )


def _halved(groups: int) -> tuple[int, int, int]:
    """Table 1's widths for ``groups``, scaled by s = 0.5 ("ShuffleNet 0.5×")."""
    stage2, stage3, stage4 = TABLE1_STAGE_CHANNELS[groups]
    return stage2 // 2, stage3 // 2, stage4 // 2


@register(_card("shufflenet_v1_g1", groups=1, width=1.0, params=1_530_936, gmacs=0.143))
def shufflenet_v1_g1(**kwargs: Any) -> ShuffleNetV1:
    """ShuffleNet 1× with g = 1 (no grouped convolutions, no shuffle)."""
    return ShuffleNetV1(groups=1, stage_channels=TABLE1_STAGE_CHANNELS[1], **kwargs)


@register(_card("shufflenet_v1_g2", groups=2, width=1.0, params=1_732_848, gmacs=0.141))
def shufflenet_v1_g2(**kwargs: Any) -> ShuffleNetV1:
    """ShuffleNet 1× with g = 2."""
    return ShuffleNetV1(groups=2, stage_channels=TABLE1_STAGE_CHANNELS[2], **kwargs)


@register(_card("shufflenet_v1_g3", groups=3, width=1.0, params=1_864_728, gmacs=0.137, canonical=True))
def shufflenet_v1_g3(**kwargs: Any) -> ShuffleNetV1:
    """ShuffleNet 1× with g = 3, the paper's reference setting (Table 5)."""
    return ShuffleNetV1(groups=3, stage_channels=TABLE1_STAGE_CHANNELS[3], **kwargs)


@register(_card("shufflenet_v1_g4", groups=4, width=1.0, params=1_967_344, gmacs=0.134))
def shufflenet_v1_g4(**kwargs: Any) -> ShuffleNetV1:
    """ShuffleNet 1× with g = 4."""
    return ShuffleNetV1(groups=4, stage_channels=TABLE1_STAGE_CHANNELS[4], **kwargs)


@register(_card("shufflenet_v1_g8", groups=8, width=1.0, params=2_433_768, gmacs=0.138))
def shufflenet_v1_g8(**kwargs: Any) -> ShuffleNetV1:
    """ShuffleNet 1× with g = 8."""
    return ShuffleNetV1(groups=8, stage_channels=TABLE1_STAGE_CHANNELS[8], **kwargs)


@register(_card("shufflenet_v1_g1_x0_5", groups=1, width=0.5, params=533_484, gmacs=0.039))
def shufflenet_v1_g1_x0_5(**kwargs: Any) -> ShuffleNetV1:
    """ShuffleNet 0.5× with g = 1: every width of the 1× network halved."""
    return ShuffleNetV1(groups=1, stage_channels=_halved(1), stem_channels=12, **kwargs)


@register(_card("shufflenet_v1_g3_x0_5", groups=3, width=0.5, params=717_324, gmacs=0.038))
def shufflenet_v1_g3_x0_5(**kwargs: Any) -> ShuffleNetV1:
    """ShuffleNet 0.5× with g = 3: every width of the 1× network halved."""
    return ShuffleNetV1(groups=3, stage_channels=_halved(3), stem_channels=12, **kwargs)


@register(_card("shufflenet_v1_g8_x0_5", groups=8, width=0.5, params=1_010_448, gmacs=0.04))
def shufflenet_v1_g8_x0_5(**kwargs: Any) -> ShuffleNetV1:
    """ShuffleNet 0.5× with g = 8: the widths halved, the stem 16 (12 would not split into 8 groups)."""
    return ShuffleNetV1(groups=8, stage_channels=_halved(8), stem_channels=16, **kwargs)


if __name__ == "__main__":
    from paperzoo.cli import main

    main(["run", "shufflenet_v1_g3"])
