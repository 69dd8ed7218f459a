r"""Darknet-53.

Paper: "YOLOv3: An Incremental Improvement", Joseph Redmon, Ali Farhadi, 2018 (tech report).
https://arxiv.org/abs/1804.02767

YOLOv3 needed a stronger feature extractor than YOLOv2's Darknet-19, and a faster one than ResNet-101/152. Its
authors built a hybrid (§2.4): Darknet-19's successive 3×3 and 1×1 convolutions, plus ResNet's shortcut
connections, 53 convolutional layers in all:

* No pooling: every downsampling is a 3×3 convolution with stride 2 (five of them, total stride 32).
* Residual units of two layers (Table 1): a 1×1 convolution halves the channels, a 3×3 convolution restores
  them, and the unit's input is added back:  y = x + conv3×3(conv1×1(x)). The units repeat 1, 2, 8, 8 and 4
  times at strides 2, 4, 8, 16 and 32.
* Every convolution is followed by batch normalisation and a leaky ReLU with slope 0.1 (Darknet's "leaky").
* For classification, a global average pool and one fully-connected layer (the "Connected 1000" of Table 1).
  As Table 2 shows, Darknet-53 matches ResNet-152's ImageNet accuracy at twice its speed: it uses the GPU
  better (more floating point operations per second) because it is shallower and wider where it matters.

The 52 convolutions (1 + 5 downsampling + 2·23 in the residual units) are YOLOv3's backbone; with the classifier
they make 53 layers. Data flow (Table 1) at 256×256::

    image 3×256×256
      conv 32, 3×3                                       32×256×256
      conv 64, 3×3/2;    1× [conv 32 1×1, conv 64 3×3, +]     64×128×128    stage1
      conv 128, 3×3/2;   2× [conv 64 1×1, conv 128 3×3, +]    128×64×64     stage2
      conv 256, 3×3/2;   8× [conv 128 1×1, conv 256 3×3, +]   256×32×32     stage3 (YOLOv3's stride 8)
      conv 512, 3×3/2;   8× [conv 256 1×1, conv 512 3×3, +]   512×16×16     stage4 (stride 16)
      conv 1024, 3×3/2;  4× [conv 512 1×1, conv 1024 3×3, +]  1024×8×8      stage5 (stride 32)
      global average pool → fc                                1000 logits

    one residual unit:   x ──► 1×1, C/2 ─► 3×3, C ──(+)──► y      (no activation after the sum: Darknet's
                         └──────── identity ───────────┘        shortcut layer is linear)

Deviations from the paper and from Darknet (the authors' C framework, whose cfg files define the network):

* BatchNorm has PyTorch's defaults (ε = 1e-5, running averages with momentum 0.1; Darknet keeps them with 0.01),
  as timm's ``darknet53`` does; the momentum only changes how fast the statistics follow training.
* Darknet's classifier cfg ends in a 1×1 convolution with 1000 filters after the average pool; here it is the
  ``nn.Linear`` that Table 1 draws ("Connected"), the same map and the same parameters.
* timm's ``darknet53`` (``timm.models.cspnet``) is this network with a leaky ReLU of slope 0.01 (its default), so
  its ImageNet weights were trained with 0.01: build ours with ``negative_slope=0.01`` to use them. With that
  one argument the two give the same outputs from the same (converted) weights (tests/test_yolov3.py). The card's
  reference is therefore the paper, not timm: the generic timm parity test builds our default, Darknet's 0.1.
* Initialisation as Darknet's: convolution weights He-normal with fan-in ($\sigma = \sqrt{2 / (k^2 C_{in})}$), BatchNorm
  scale 1 and shift 0, the connected layer uniform in $\pm\sqrt{2 / \text{inputs}}$ with zero bias.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from functools import partial
from typing import Any

import torch
from torch import nn

from paperzoo.layers import ConvNormAct, FeatureInfo
from paperzoo.layers.classifier import ClassifierPool, ImageClassifier
from paperzoo.registry import InputSpec, ModelCard, Paper, register

__all__ = ["Darknet", "ResidualUnit", "DarknetStage"]


class ResidualUnit(nn.Module):
    """Two layers and a shortcut (Table 1's boxed rows): a 1×1 convolution halves the channels, a 3×3 restores
    them, and the input is added back, with no activation after the sum."""

    def __init__(self, channels: int, act_layer: type[nn.Module] | partial) -> None:
        super().__init__()
        self.reduce = ConvNormAct(channels, channels // 2, kernel_size=1, act_layer=act_layer)
        self.expand = ConvNormAct(channels // 2, channels, kernel_size=3, act_layer=act_layer)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.expand(self.reduce(x))  # y = x + F(x); Darknet's shortcut layer is linear


class DarknetStage(nn.Module):
    """A 3×3 convolution with stride 2 (Darknet's only way to downsample) and ``num_units`` residual units."""

    def __init__(self, in_channels: int, out_channels: int, num_units: int,
                 act_layer: type[nn.Module] | partial) -> None:
        super().__init__()
        self.downsample = ConvNormAct(in_channels, out_channels, kernel_size=3, stride=2, act_layer=act_layer)
        self.units = nn.Sequential(*[ResidualUnit(out_channels, act_layer) for _ in range(num_units)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.units(self.downsample(x))


class Darknet(ImageClassifier):
    """Darknet-53 (Table 1) and smaller networks of the same plan.

    Args:
        units_per_stage: residual units in each of the five stages, ``(1, 2, 8, 8, 4)`` for Darknet-53.
        stage_widths: output channels of the five stages, ``(64, 128, 256, 512, 1024)``.
        stem_width: channels of the first 3×3 convolution (32).
        negative_slope: the leaky ReLU's slope for negative inputs (0.1 in Darknet; 0.01 loads timm's weights).
        num_classes: outputs of the final fully-connected layer; 0 leaves it out and returns pooled features.
        in_chans: channels of the input image.
    """

    # Every convolution is padded, so the network runs even on a 1×1 image (so does timm's darknet53), but below
    # its total stride of 32 the stride-32 map holds less than one input cell; refused, as for ResNet.
    min_input_size = 32
    model_name = "darknet"
    first_conv = "stem.conv"

    def __init__(
        self,
        units_per_stage: tuple[int, ...] = (1, 2, 8, 8, 4),
        stage_widths: tuple[int, ...] = (64, 128, 256, 512, 1024),
        stem_width: int = 32,
        negative_slope: float = 0.1,
        num_classes: int = 1000,
        in_chans: int = 3,
    ) -> None:
        super().__init__()
        if len(units_per_stage) != len(stage_widths):
            raise ValueError(f"units_per_stage {units_per_stage} and stage_widths {stage_widths} differ in length")
        self.num_classes = num_classes
        self.in_chans = in_chans
        act_layer = partial(nn.LeakyReLU, negative_slope=negative_slope)

        self.stem = ConvNormAct(in_chans, stem_width, kernel_size=3, act_layer=act_layer)
        stages: OrderedDict[str, nn.Module] = OrderedDict()
        levels = []
        in_channels, stride = stem_width, 1
        plan = zip(stage_widths, units_per_stage, strict=True)
        for i, (width, num_units) in enumerate(plan):
            stride *= 2
            stages[f"stage{i + 1}"] = DarknetStage(in_channels, width, num_units, act_layer)
            in_channels = width
            levels.append((width, stride, f"stages.stage{i + 1}"))
        self.stages = nn.Sequential(stages)
        self.feature_info = FeatureInfo(levels)

        self.num_features = stage_widths[-1]
        self.global_pool = ClassifierPool("avg")
        self.fc = self._new_classifier(num_classes, None)
        self._init_weights()

    def init_classifier(self, fc: nn.Module) -> None:
        bound = math.sqrt(2.0 / fc.in_features)  # Darknet's connected layer: uniform in ±√(2 / inputs)
        nn.init.uniform_(fc.weight, -bound, bound)
        nn.init.zeros_(fc.bias)

    def _init_weights(self) -> None:
        for module in self.modules():
            if isinstance(module, nn.Conv2d):  # Darknet: σ = √(2 / (k² · C_in)), He et al. 2015 with fan-in
                nn.init.kaiming_normal_(module.weight, mode="fan_in", nonlinearity="relu")
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)


_PAPER = Paper(
    title="YOLOv3: An Incremental Improvement",
    authors="Joseph Redmon, Ali Farhadi",
    year=2018,
    url="https://arxiv.org/abs/1804.02767",
)


# 52 convolutions (no bias; BatchNorm scale and shift) and the classifier, from Table 1: the stem 3·32·9 + 64,
# the downsampling convolutions C_in·C_out·9 + 2·C_out, each residual unit C·(C/2) + (C/2)·C·9 + 2·(C/2) + 2·C,
# and the connected layer 1024·1000 + 1000: 41,609,928 in all. timm's darknet53 (the same layers) counts the same.
# gmacs at 256×256: 9.285, i.e. 18.57 billion operations at 2 per MAC; Table 2 lists 18.7 for Darknet-53.
@register(ModelCard(
    name="darknet53",
    architecture="Darknet-53",
    task="image-classification",
    paper=_PAPER,
    innovations=(
        "Darknet-19's 3x3 and 1x1 convolutions with ResNet's shortcuts: 53 layers, residual units 1-2-8-8-4",
        "residual unit: a 1x1 convolution halves the channels, a 3x3 restores them, the input is added back",
        "no pooling: every downsampling is a 3x3 convolution with stride 2",
        "batch normalisation and leaky ReLU (slope 0.1) after every convolution",
        "ResNet-152's ImageNet accuracy at twice the speed (Table 2): YOLOv3's backbone",
    ),
    input=InputSpec(kind="image", shape=(3, 256, 256), min_size=Darknet.min_input_size),
    params=41_609_928,
    params_source="derived by hand from Table 1 of the paper (which states no count; timm's darknet53 counts the "
                  "same): 40,549,216 (the 52 bias-free convolutions) + 35,712 (their BatchNorm scales and shifts) + "
                  "1,025,000 (the 1000-way connected layer) = 41,609,928",
    reference="paper",
    gmacs=9.285,
    canonical=True,
    notes="timm:darknet53 is the same network with leaky ReLU slope 0.01; negative_slope=0.01 loads its weights "
          "(load_weights(..., source='timm')).",
))
def darknet53(**kwargs: Any) -> Darknet:
    """Darknet-53: residual units [1, 2, 8, 8, 4], widths 64 … 1024 (narrower or shallower if the keyword
    arguments say so: the small YOLOv3 of the learning test)."""
    return Darknet(**{"units_per_stage": (1, 2, 8, 8, 4), "stage_widths": (64, 128, 256, 512, 1024), **kwargs})


if __name__ == "__main__":
    from paperzoo.cli import main

    main(["run", "darknet53"])
