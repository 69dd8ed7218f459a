r"""PyramidNet: deep pyramidal residual networks.

Paper: "Deep Pyramidal Residual Networks", Dongyoon Han, Jiwhan Kim, Junmo Kim, CVPR 2017 (arXiv 2016).
https://arxiv.org/abs/1610.02915

A ResNet keeps its width fixed inside a stage and doubles it, in one jump, where the feature map halves.
Veit et al. found that deleting one of those downsampling units hurts a ResNet far more than deleting any
other unit. PyramidNet spreads the widening over every unit instead, so that no unit is special:

* Additive widening (eq. 2/3). With N units in all and a total widening factor α, unit k has
  $D_k = \lfloor D_{k-1} + \alpha / N \rfloor$ channels: the width climbs like a pyramid from the stem's width (16 on
  CIFAR, 64 on ImageNet) to that plus α, whatever the stage. (The paper also tries multiplicative widening; additive
  does better, §4.)
* Zero-padded identity shortcuts (§3, Figure 5(d)). The width changes at every unit, yet no shortcut is a
  projection: the shortcut is the identity with zeros appended for the new channels, and a 2×2 average
  pool where the unit downsamples. The new channels have no identity path of their own; the paper reads the
  net as a mix of residual units and plain ones, and finds projection shortcuts (extra parameters) do worse.
* The unit of Figure 6(d): BN at the start (nothing else before the first convolution), a BN before the
  addition, and no ReLU after it. A ReLU after the addition would keep every unit's output non-negative,
  and the paper's comparison of BN and ReLU placements finds a ReLU at the start of the branch hurts too;
  the BN before the sum keeps the units' scale in check without it.
* Bottleneck units (1×1 reduce, 3×3, 1×1 restore to 4× the width) for the deep nets, as in ResNet.
* After the last unit, one BN and ReLU, then global average pooling and the fully-connected classifier.

Data flow of PyramidNet-272 (α = 200, bottleneck, N = 90 units) on a 32×32 CIFAR image::

    image 3×32×32
      conv1: 3×3, 16 → BN                                      16×32×32
      conv2_x: 30 bottleneck units, width 18 … 82              328×32×32   (4 × width channels out)
      conv3_x: 30 units, width 84 … 149, the first with stride 2   596×16×16
      conv4_x: 30 units, width 151 … 216, the first with stride 2  864×8×8
      BN → ReLU → global average pool → fc                     10 logits

    one unit:   x ──► BN ─► 1×1 ─► BN ─► ReLU ─► 3×3 (stride) ─► BN ─► ReLU ─► 1×1 ─► BN ──(+)──► y
                └───── identity (2×2 average pool if strided) + zero channels ──────────┘

PyramidNet-200 on ImageNet takes ResNet-200's stem (7×7 convolution with stride 2, BN, ReLU, 3×3 max pool)
and four stages of [3, 24, 36, 3] bottleneck units widening from 64 by α = 300.

Deviations from the paper:

* The widths are $D_k = \lfloor D_{k-1} + \alpha / N \rfloor$ with the running sum D carried in floating point, as a
  direct implementation of eq. (2) carries it. Where k·α/N is a whole number the sum lands a hair below it and the floor
  gives one channel fewer (PyramidNet-200's unit 22 has 163, not 164; PyramidNet-110's last unit 63, not 64). We keep
  this because it reproduces the paper's parameter counts: computed in exact arithmetic PyramidNet-200 has 62.15M
  parameters, outside the paper's 62.1M; with the float sum 62.12M, and 116.42M for α = 450 (paper: 116.4M). The
  authors' released code instead rounds to the nearest integer (``width_rounding="round"``), which gives 26.21M and
  1.77M for the CIFAR nets, against the paper's 26.0M and 1.7M; the paper's counts are the floor's.
* Global average pooling where the authors' code has a fixed 8×8 (CIFAR) or 7×7 (ImageNet) pool: the same
  at the canonical sizes, and other sizes work. The shortcut's 2×2 average pool uses ceil mode so that odd
  sizes keep the residual branch's shape (the strided 3×3 convolution rounds up); identical on even sizes.
* Initialisation as the authors' code: He normal (fan-out) convolutions, unit BN scales, zero biases.
* The CIFAR variants default to CIFAR-10's 10 classes, the head the paper's counts include (with CIFAR-100's
  100 classes PyramidNet-272 has 26.12M parameters).
"""

from __future__ import annotations

import math
from collections import OrderedDict
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from paperzoo.layers import ConvNormAct, FeatureInfo
from paperzoo.layers.classifier import ClassifierPool, ImageClassifier
from paperzoo.registry import InputSpec, ModelCard, Paper, TrainingRecipe, register

__all__ = ["PyramidNet", "BasicUnit", "BottleneckUnit", "ZeroPaddedShortcut", "pyramid_widths"]


def pyramid_widths(start: int, alpha: float, num_units: int, width_rounding: str = "floor") -> list[int]:
    """The width D_k of each unit k = 1 … N under additive widening (eq. 2/3): the running width grows by
    α/N per unit, and each unit takes its floor (the paper) or its nearest integer (the authors' code)."""
    if width_rounding not in ("floor", "round"):
        raise ValueError(f"width_rounding must be 'floor' or 'round', got {width_rounding!r}")
    widths, width = [], float(start)
    for _ in range(num_units):
        width += alpha / num_units  # D_k = D_{k−1} + α/N, carried unrounded so the steps add up to α
        widths.append(math.floor(width) if width_rounding == "floor" else math.floor(width + 0.5))
    return widths


class ZeroPaddedShortcut(nn.Module):
    """The shortcut of every unit: the identity (a 2×2 average pool where the unit downsamples), with zero
    channels appended up to the unit's output width. No parameters."""

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        if out_channels < in_channels:
            raise ValueError(f"additive widening never narrows: {in_channels} → {out_channels} channels")
        self.extra_channels = out_channels - in_channels
        self.pool = nn.AvgPool2d(2, stride=2, ceil_mode=True) if stride == 2 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(x)
        # (N, C_in, H, W) → (N, C_out, H, W): F.pad counts from the last axis, so the third pair pads channels.
        return F.pad(x, (0, 0, 0, 0, 0, self.extra_channels))


class BasicUnit(nn.Module):
    """The pyramidal residual unit of Figure 6(d): BN, 3×3 conv, BN, ReLU, 3×3 conv, BN; then the sum."""

    expansion = 1  # output channels = width * expansion

    def __init__(self, in_channels: int, width: int, stride: int = 1) -> None:
        super().__init__()
        self.norm = nn.BatchNorm2d(in_channels)  # BN first, with no ReLU after it
        self.conv1 = ConvNormAct(in_channels, width, 3, stride=stride)  # conv → BN → ReLU
        self.conv2 = ConvNormAct(width, width, 3, act_layer=None)  # conv → BN, the BN before the addition
        self.shortcut = ZeroPaddedShortcut(in_channels, width, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv2(self.conv1(self.norm(x))) + self.shortcut(x)  # no ReLU after the addition


class BottleneckUnit(nn.Module):
    """The bottleneck pyramidal unit (Figure 6(d) with 1×1, 3×3, 1×1 convolutions): BN, 1×1 to the unit's
    width, BN, ReLU, 3×3, BN, ReLU, 1×1 to 4× the width, BN; then the sum."""

    expansion = 4

    def __init__(self, in_channels: int, width: int, stride: int = 1) -> None:
        super().__init__()
        out_channels = width * self.expansion
        self.norm = nn.BatchNorm2d(in_channels)
        self.conv1 = ConvNormAct(in_channels, width, 1)
        self.conv2 = ConvNormAct(width, width, 3, stride=stride)
        self.conv3 = ConvNormAct(width, out_channels, 1, act_layer=None)
        self.shortcut = ZeroPaddedShortcut(in_channels, out_channels, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv3(self.conv2(self.conv1(self.norm(x)))) + self.shortcut(x)


class PyramidNet(ImageClassifier):
    """A pyramidal residual network with additive widening.

    Args:
        units_per_stage: residual units per stage: three stages on CIFAR (``(18, 18, 18)`` for the 110-layer
            basic net), four on ImageNet (``(3, 24, 36, 3)`` for PyramidNet-200). N is their sum.
        alpha: α, the total widening: the last unit is ``stem_width + α`` wide (before the bottleneck's ×4).
        bottleneck: bottleneck units (3 layers each) instead of basic ones (2 layers each).
        stem: ``"cifar"`` (3×3 convolution to 16 channels and BN, stride 1) or ``"imagenet"`` (7×7 convolution
            to 64 channels with stride 2, BN, ReLU, 3×3 max pool with stride 2).
        width_rounding: ``"floor"`` (eq. 2, the paper's counts) or ``"round"`` (the authors' released code).
        num_classes: outputs of the final fc layer; 0 leaves it out and returns pooled features.
        in_chans: channels of the input image.

    ``set_grad_checkpointing()`` checkpoints each residual unit in training (BatchNorm stats kept exact).
    """

    # Padded convolutions and ceil-mode pooling keep at least one pixel at every stage and the global pool
    # takes any size, so even a 1×1 image goes through (checked in eval mode for both stems).
    min_input_size = 1
    model_name = "pyramidnet"
    first_conv = "conv1.conv"
    final_modules = ("final_norm",)

    def __init__(
        self,
        units_per_stage: tuple[int, ...] = (30, 30, 30),
        alpha: float = 200,
        bottleneck: bool = True,
        stem: str = "cifar",
        width_rounding: str = "floor",
        num_classes: int = 10,
        in_chans: int = 3,
    ) -> None:
        super().__init__()
        if stem not in ("cifar", "imagenet"):
            raise ValueError(f"stem must be 'cifar' or 'imagenet', got {stem!r}")
        self.num_classes = num_classes
        self.in_chans = in_chans
        unit = BottleneckUnit if bottleneck else BasicUnit

        if stem == "cifar":
            stem_width = 16
            self.conv1 = ConvNormAct(in_chans, stem_width, 3, act_layer=None)  # BN, no ReLU: units start with BN
            self.maxpool = nn.Identity()
        else:
            stem_width = 64
            self.conv1 = ConvNormAct(in_chans, stem_width, 7, stride=2, padding=3)
            self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)

        widths = iter(pyramid_widths(stem_width, alpha, sum(units_per_stage), width_rounding))
        stages: OrderedDict[str, nn.Module] = OrderedDict()
        in_channels, stride_so_far, levels = stem_width, 1 if stem == "cifar" else 4, []
        for i, num_units in enumerate(units_per_stage):
            layers = []
            for j in range(num_units):
                stride = 2 if i > 0 and j == 0 else 1  # the first unit of every later stage halves the map
                width = next(widths)
                layers.append(unit(in_channels, width, stride=stride))
                in_channels = width * unit.expansion
            stages[f"conv{i + 2}_x"] = nn.Sequential(*layers)
            stride_so_far *= 2 if i > 0 else 1
            levels.append((in_channels, stride_so_far, f"stages.conv{i + 2}_x"))
        self.stages = nn.Sequential(stages)
        self.feature_info = FeatureInfo(levels)
        self.feature_info = FeatureInfo(levels)

        self.num_features = in_channels
        # The units end in BN and a sum, never a ReLU: the network closes with one BN-ReLU before pooling.
        self.final_norm = nn.Sequential(OrderedDict([("norm", nn.BatchNorm2d(in_channels)),
                                                     ("act", nn.ReLU(inplace=True))]))
        self.global_pool = ClassifierPool("avg")
        self.fc = nn.Linear(self.num_features, num_classes) if num_classes > 0 else nn.Identity()
        self._init_weights()

    def _init_weights(self) -> None:
        for module in self.modules():
            if isinstance(module, nn.Conv2d):  # N(0, 2/(k·k·out_channels)), the authors' initialisation
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
            elif isinstance(module, nn.Linear):
                self.init_classifier(module)

    def forward_stem(self, x: torch.Tensor) -> torch.Tensor:
        return self.maxpool(self.conv1(x))

    def init_classifier(self, fc: nn.Module) -> None:
        nn.init.zeros_(fc.bias)

_PAPER = Paper(
    title="Deep Pyramidal Residual Networks",
    authors="Dongyoon Han, Jiwhan Kim, Junmo Kim",
    year=2017,
    url="https://arxiv.org/abs/1610.02915",
)
_INNOVATIONS = (
    "additive widening: every unit adds alpha/N channels, D_k = floor(D_(k-1) + alpha/N), a pyramid, not steps",
    "zero-padded identity shortcuts: no projections; 2x2 average pooling where the map halves",
    "the unit of Figure 6(d): BN first, BN before the addition, no ReLU after it",
    "one BN-ReLU after the last unit, global average pooling, one fully-connected layer",
)


# §4 (CIFAR): SGD with Nesterov momentum 0.9, batch 128, weight decay 1e-4, lr 0.1 (CIFAR-10; 0.5 for
# CIFAR-100) divided by 10 at epochs 150 and 225 of 300, i.e. at 50% and 75% of the run.
_RECIPE = TrainingRecipe(optimizer="sgd", lr=0.1, momentum=0.9, nesterov=True, weight_decay=1e-4, schedule="step",
                         milestones=(0.5, 0.75), batch_size=128, source="Han et al. 2017, §4 (CIFAR)")
# PyramidNet-200 (ImageNet) keeps the CIFAR recipe, and its card says so: a short run on small images is the CIFAR
# setting. The authors' release trains it on ImageNet with lr 0.05, batch 128 and ÷10 every 30 epochs.
_CIFAR_RECIPE_ON_IMAGENET = TrainingRecipe(
    optimizer="sgd", lr=0.1, momentum=0.9, nesterov=True, weight_decay=1e-4, schedule="step", milestones=(0.5, 0.75),
    batch_size=128, source="Han et al. 2017, §4: the CIFAR recipe, not the ImageNet training (see the card's notes)")


def _card(name: str, architecture: str, params: int, source: str, gmacs: float, shape: tuple[int, int, int],
          canonical: bool = False, notes: str = "", recipe: TrainingRecipe = _RECIPE) -> ModelCard:
    return ModelCard(
        name=name,
        architecture=architecture,
        task="image-classification",
        paper=_PAPER,
        innovations=_INNOVATIONS,
        input=InputSpec(kind="image", shape=shape, min_size=PyramidNet.min_input_size),
        params=params,
        params_tolerance=50_000,  # the paper prints one decimal of millions
        params_source=source,
        reference="paper",
        gmacs=gmacs,
        recipe=recipe,
        canonical=canonical,
        notes=notes,
    )


@register(_card("pyramidnet_110_a48", "PyramidNet-110 (alpha=48)", params=1_700_000,
                source="paper, Table 4 (1.7M, CIFAR-10 head); built: 1,732,856",
                gmacs=0.393, shape=(3, 32, 32)))
def pyramidnet_110_a48(**kwargs: Any) -> PyramidNet:
    """PyramidNet-110, α = 48, basic units: 3 stages of 18 units on 32×32 CIFAR images."""
    return PyramidNet(units_per_stage=(18, 18, 18), alpha=48, bottleneck=False, stem="cifar", **kwargs)


@register(_card("pyramidnet_272_a200", "PyramidNet-272 (alpha=200, bottleneck)", params=26_000_000,
                source="paper, Table 4 (26.0M, CIFAR-10 head); built: 26,046,428",
                gmacs=4.444, shape=(3, 32, 32), canonical=True,
                notes="width_rounding='round' builds the authors' released code (26,210,842 parameters)."))
def pyramidnet_272_a200(**kwargs: Any) -> PyramidNet:
    """PyramidNet-272, α = 200, bottleneck units: 3 stages of 30 units on 32×32 CIFAR images."""
    return PyramidNet(units_per_stage=(30, 30, 30), alpha=200, bottleneck=True, stem="cifar", **kwargs)


@register(_card("pyramidnet_200_a300", "PyramidNet-200 (alpha=300, bottleneck)", params=62_100_000,
                source="paper, ImageNet results table (62.1M); built: 62,119,514", gmacs=16.456, shape=(3, 224, 224),
                recipe=_CIFAR_RECIPE_ON_IMAGENET,
                notes="The recipe is the paper's CIFAR one (§4: SGD with Nesterov momentum, lr 0.1, batch 128, "
                      "÷10 at 50% and 75% of the run), applied to this ImageNet network; the authors' release "
                      "(github.com/dyhan0920/PyramidNet-PyTorch) trains it on ImageNet with lr 0.05, batch 128, "
                      "÷10 every 30 epochs."))
def pyramidnet_200_a300(**kwargs: Any) -> PyramidNet:
    """PyramidNet-200 for ImageNet, α = 300: ResNet's stem and [3, 24, 36, 3] bottleneck units."""
    kwargs.setdefault("num_classes", 1000)
    return PyramidNet(units_per_stage=(3, 24, 36, 3), alpha=300, bottleneck=True, stem="imagenet", **kwargs)


if __name__ == "__main__":
    from paperzoo.cli import main

    main(["run", "pyramidnet_272_a200"])
