r"""ShuffleNet V2.

Paper: "ShuffleNet V2: Practical Guidelines for Efficient CNN Architecture Design", Ningning Ma, Xiangyu Zhang,
Hai-Tao Zheng, Jian Sun, ECCV 2018. https://arxiv.org/abs/1807.11164

FLOPs are an indirect measure of speed: two networks of equal FLOPs can run at very different speeds, because
memory access cost (MAC) and the degree of parallelism count too. Measuring speed on the target platforms
(GPU and ARM), the paper derives four guidelines (§2):

* G1, equal channel width minimises MAC: a 1×1 convolution with $c_1$ inputs and $c_2$ outputs on an h×w map has
  $B = hw c_1 c_2$ FLOPs and $\text{MAC} \ge 2\sqrt{hwB} + B/hw$ (eq. 1), the bound reached when $c_1 = c_2$.
* G2, excessive group convolution increases MAC: at fixed FLOPs, g groups allow g times more channels, and
  $\text{MAC} = hw(c_1 + c_2) + c_1 c_2 / g$ grows with g (eq. 2).
* G3, network fragmentation (many small parallel or sequential operators) reduces parallelism.
* G4, element-wise operations (ReLU, additions, depthwise convolutions) are not negligible: few FLOPs,
  much memory traffic.

ShuffleNet v1 breaks G2 (pointwise group convolutions) and G1 (bottlenecks) and adds element-wise "Add"s
(G4). The ShuffleNet V2 unit (§3, Figure 3c, d) avoids all of it:

* Channel split: the c input channels are split in two halves. One half is an identity (G3); the other
  goes through three convolutions with equal input and output widths (G1): 1×1, 3×3 depthwise, 1×1. The
  1×1 convolutions are not grouped (G2): the split already makes two groups.
* The two halves are concatenated, so the width is kept and there is no element-wise addition (G4), and a
  channel shuffle with two groups (as in ShuffleNet v1) mixes them for the next unit.
* The unit for spatial down-sampling drops the split: both branches see the whole input, the left one a
  3×3 depthwise convolution of stride 2 and a 1×1 convolution, and the output width doubles.
* Half of the features of a unit pass straight into the next, so the network reuses features like DenseNet,
  with a reuse that decays exponentially with the distance between units (§4).

The network (Table 5) is ShuffleNet v1's layout with an extra 1×1 convolution, conv5, before the global
average pool to mix the features; the width of each stage sets the complexity (0.5×, 1×, 1.5×, 2×).

Data flow of ShuffleNet V2 1× at 224×224 (Table 5)::

    image 3×224×224
      conv1: 3×3, 24, stride 2 → BN → ReLU                            24×112×112
      maxpool: 3×3, stride 2                                          24×56×56
      stage2: 1 down-sampling unit, 3 basic units                    116×28×28
      stage3: 1 down-sampling unit, 7 basic units                    232×14×14
      stage4: 1 down-sampling unit, 3 basic units                    464×7×7
      conv5: 1×1, 1024 → BN → ReLU                                  1024×7×7
      global average pool → fc                                       1000 logits

    basic unit (Figure 3c), C channels, the channel split halving them:

      x ─► split ─┬─ C/2 ────────────────────────── identity ───────────────────────────┬─► concat ─► shuffle ─► y
                  └─ C/2 ─► 1×1 Conv, BN, ReLU ─► 3×3 DWConv, BN ─► 1×1 Conv, BN, ReLU ─┘

    down-sampling unit (Figure 3d), C_in channels in, C_out out, half the size:

      x ─┬─► 3×3 DWConv /2, BN ─► 1×1 Conv, BN, ReLU ─────────────────────── C_out/2 ─┬─► concat ─► shuffle ─► y
         └─► 1×1 Conv, BN, ReLU ─► 3×3 DWConv /2, BN ─► 1×1 Conv, BN, ReLU ─ C_out/2 ─┘

Deviations: none in the architecture; the configuration and the layer order are torchvision's
(``torchvision.models.shufflenet_v2_x*``), which are the paper's. Two implementation notes:

* Concat, channel shuffle and the next unit's channel split run as three operations here; the paper merges
  them into one element-wise operation for speed (G4). The result is the same.
* The global pool is a mean over the whole map, the paper's "GlobalPool 7×7" at 224×224, for any input size.

Only the networks of Table 5 are built, not the larger ShuffleNet V2 (SE, residual) models of Tables 6 and 8.
Initialisation is PyTorch's default for every layer, as torchvision's.

TorchScript: torchvision's ShuffleNetV2 compiles with ``torch.jit.script``; this one does not (its input check and
the shared classifier plumbing are Python that TorchScript cannot compile, and TorchScript is deprecated upstream).
``torch.export``, ``torch.compile(fullgraph=True)`` and ``torch.fx`` capture it instead (tests/test_export.py,
tests/test_graph_capture.py).
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

import torch
from torch import nn

from paperzoo.layers import ConvNormAct, FeatureInfo
from paperzoo.layers.classifier import ClassifierPool, ImageClassifier
from paperzoo.registry import InputSpec, ModelCard, Paper, TrainingRecipe, register

__all__ = ["ShuffleNetV2", "BasicUnit", "DownsamplingUnit", "channel_shuffle"]


def channel_shuffle(x: torch.Tensor, groups: int) -> torch.Tensor:
    """ShuffleNet v1's channel shuffle (its §3.1): output channel j·g + i is input channel i·n + j, for
    C = g·n channels in g groups. With g = 2 it interleaves the two branches of a unit."""
    batch, channels, height, width = x.shape
    x = x.reshape(batch, groups, channels // groups, height, width)  # (N, g, n, H, W): one row per group
    x = x.transpose(1, 2)  # (N, n, g, H, W)
    return x.reshape(batch, channels, height, width)  # (N, g·n, H, W): the groups interleaved


def _depthwise(channels: int, stride: int) -> ConvNormAct:
    # One 3×3 filter per channel, BN and no ReLU after it (as in ShuffleNet v1 and Xception).
    return ConvNormAct(channels, channels, kernel_size=3, stride=stride, groups=channels, act_layer=None)


class BasicUnit(nn.Module):
    """The basic ShuffleNet V2 unit (Figure 3c): channel split, identity ‖ three convolutions, shuffle.

    Args:
        channels: channels of the input and of the output (the split gives each branch half of them).
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        if channels % 2:
            raise ValueError(f"the channel split halves the channels, got an odd count {channels}")
        half = channels // 2
        # Equal widths in and out of every convolution (G1); ungrouped 1×1 convolutions (G2).
        self.right_branch = nn.Sequential(OrderedDict(
            pointwise1=ConvNormAct(half, half, kernel_size=1),
            depthwise=_depthwise(half, stride=1),
            pointwise2=ConvNormAct(half, half, kernel_size=1),
        ))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        left, right = x.chunk(2, dim=1)  # channel split: (N, C, H, W) → 2 × (N, C/2, H, W)
        out = torch.cat([left, self.right_branch(right)], dim=1)  # (N, C, H, W), no addition (G4)
        return channel_shuffle(out, groups=2)


class DownsamplingUnit(nn.Module):
    """The ShuffleNet V2 unit for spatial down-sampling (Figure 3d): no split, two branches of stride 2.

    Args:
        in_channels: channels of the input, which both branches take whole.
        out_channels: channels of the output, half from each branch.
    """

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        half = out_channels // 2
        self.left_branch = nn.Sequential(OrderedDict(
            depthwise=_depthwise(in_channels, stride=2),
            pointwise=ConvNormAct(in_channels, half, kernel_size=1),
        ))
        self.right_branch = nn.Sequential(OrderedDict(
            pointwise1=ConvNormAct(in_channels, half, kernel_size=1),
            depthwise=_depthwise(half, stride=2),
            pointwise2=ConvNormAct(half, half, kernel_size=1),
        ))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.cat([self.left_branch(x), self.right_branch(x)], dim=1)  # (N, C_out, H/2, W/2)
        return channel_shuffle(out, groups=2)


class ShuffleNetV2(ImageClassifier):
    """ShuffleNet V2 (Table 5).

    Args:
        stage_channels: output channels of Stage 2, 3 and 4 (116, 232, 464 for 1×).
        conv5_channels: output channels of conv5, the 1×1 convolution before the pool (1024; 2048 for 2×).
        stem_channels: output channels of conv1.
        units_per_stage: units in Stage 2, 3 and 4: one down-sampling unit, then basic units.
        num_classes: outputs of the fc layer; 0 leaves it out and returns pooled features.
        in_chans: channels of the input image.
    """

    # Every stride-2 layer pads, so a 1×1 image stays 1×1 through all five (torchvision's min_size too).
    min_input_size = 1
    model_name = "shufflenet_v2"
    first_conv = "conv1.conv"
    final_modules = ("conv5",)

    def __init__(
        self,
        stage_channels: tuple[int, int, int] = (116, 232, 464),
        conv5_channels: int = 1024,
        stem_channels: int = 24,
        units_per_stage: tuple[int, int, int] = (4, 8, 4),
        num_classes: int = 1000,
        in_chans: int = 3,
    ) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.in_chans = in_chans

        self.conv1 = ConvNormAct(in_chans, stem_channels, kernel_size=3, stride=2)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)

        stages: OrderedDict[str, nn.Module] = OrderedDict()
        in_channels = stem_channels
        for i, (out_channels, num_units) in enumerate(zip(stage_channels, units_per_stage, strict=True)):
            units = [DownsamplingUnit(in_channels, out_channels)]
            units += [BasicUnit(out_channels) for _ in range(num_units - 1)]
            stages[f"stage{i + 2}"] = nn.Sequential(*units)
            in_channels = out_channels
        self.stages = nn.Sequential(stages)
        self.feature_info = FeatureInfo((channels, 2 ** (i + 3), f"stages.stage{i + 2}")
                                        for i, channels in enumerate(stage_channels))
        self.conv5 = ConvNormAct(in_channels, conv5_channels, kernel_size=1)  # mixes the features (§3)

        self.num_features = conv5_channels
        self.global_pool = ClassifierPool("avg")
        self.fc = nn.Linear(conv5_channels, num_classes) if num_classes > 0 else nn.Identity()

    def forward_stem(self, x: torch.Tensor) -> torch.Tensor:
        return self.maxpool(self.conv1(x))

_PAPER = Paper(
    title="ShuffleNet V2: Practical Guidelines for Efficient CNN Architecture Design",
    authors="Ningning Ma, Xiangyu Zhang, Hai-Tao Zheng, Jian Sun",
    year=2018,
    url="https://arxiv.org/abs/1807.11164",
)
_INNOVATIONS = (
    "measure speed on the target platform: FLOPs ignore memory access cost and parallelism",
    "four guidelines: equal widths, few groups, little fragmentation, few element-wise operations",
    "channel split: half the channels pass as an identity, the other half through 1x1, 3x3 depthwise, 1x1",
    "concatenation instead of addition, then a two-group channel shuffle mixes the halves",
    "half of each unit's features go straight to the next: DenseNet-like feature reuse",
)


# §5: "the same settings as ShuffleNet v1": weight decay 4e-5, lr 0.5 decayed linearly to 0 at batch 1024,
# momentum 0.9. Here at batch 128: lr 0.0625, scaled linearly with the batch.
_RECIPE = TrainingRecipe(optimizer="sgd", lr=0.0625, momentum=0.9, weight_decay=4e-5, schedule="linear",
                         batch_size=128, source="Ma et al. 2018, §5, ShuffleNet v1's settings (lr scaled to batch 128)")


def _card(name: str, width: str, params: int, gmacs: float, paper_mflops: int, paper_params: str,
          canonical: bool = False) -> ModelCard:
    return ModelCard(
        name=name,
        architecture=f"ShuffleNet V2 {width}",
        task="image-classification",
        paper=_PAPER,
        innovations=_INNOVATIONS,
        input=InputSpec(kind="image", shape=(3, 224, 224), min_size=ShuffleNetV2.min_input_size),
        params=params,
        params_source=f"torchvision.models.{name}, counted (paper, Table 5: {paper_params})",
        reference=f"torchvision.models.{name}",
        gmacs=gmacs,
        recipe=_RECIPE,
        canonical=canonical,
        notes=f"Paper, Table 5: {paper_mflops} MFLOPs (multiply-adds).",
    )


@register(_card("shufflenet_v2_x0_5", "0.5×", params=1_366_792, gmacs=0.040, paper_mflops=41, paper_params="1.4M"))
def shufflenet_v2_x0_5(**kwargs: Any) -> ShuffleNetV2:
    """ShuffleNet V2 0.5×: stages of 48, 96, 192 channels."""
    return ShuffleNetV2(stage_channels=(48, 96, 192), conv5_channels=1024, **kwargs)


@register(_card("shufflenet_v2_x1_0", "1×", params=2_278_604, gmacs=0.145, paper_mflops=146, paper_params="2.3M",
                canonical=True))
def shufflenet_v2_x1_0(**kwargs: Any) -> ShuffleNetV2:
    """ShuffleNet V2 1×: stages of 116, 232, 464 channels."""
    return ShuffleNetV2(stage_channels=(116, 232, 464), conv5_channels=1024, **kwargs)


@register(_card("shufflenet_v2_x1_5", "1.5×", params=3_503_624, gmacs=0.296, paper_mflops=299, paper_params="3.5M"))
def shufflenet_v2_x1_5(**kwargs: Any) -> ShuffleNetV2:
    """ShuffleNet V2 1.5×: stages of 176, 352, 704 channels."""
    return ShuffleNetV2(stage_channels=(176, 352, 704), conv5_channels=1024, **kwargs)


@register(_card("shufflenet_v2_x2_0", "2×", params=7_393_996, gmacs=0.583, paper_mflops=591, paper_params="7.4M"))
def shufflenet_v2_x2_0(**kwargs: Any) -> ShuffleNetV2:
    """ShuffleNet V2 2×: stages of 244, 488, 976 channels and a conv5 of 2048."""
    return ShuffleNetV2(stage_channels=(244, 488, 976), conv5_channels=2048, **kwargs)


if __name__ == "__main__":
    from paperzoo.cli import main

    main(["run", "shufflenet_v2_x1_0"])
