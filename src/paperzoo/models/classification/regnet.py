r"""RegNet (RegNetX and RegNetY).

Paper: "Designing Network Design Spaces", Ilija Radosavovic, Raj Prateek Kosaraju, Ross Girshick, Kaiming He,
Piotr Dollár, CVPR 2020. https://arxiv.org/abs/2003.13678

The paper designs *design spaces*, populations of networks, rather than single networks. It samples and
trains a few hundred models from a space, compares spaces by the error distribution of their models (the
empirical distribution function of eq. 1), and narrows the space step by step where that costs nothing:

* AnyNetX: a stem (3×3 convolution, 32 channels, stride 2), a body of four stages, a head (average pool, fc).
  Stage i has d_i identical *X blocks*, each a residual bottleneck with a grouped 3×3 convolution: width w_i,
  bottleneck ratio b_i, group width g_i. The first block of a stage has stride 2.
* Sharing one b and one g across all stages costs no accuracy; letting widths and depths only grow from
  stage to stage improves it. The good models' widths lie close to a line in the block index j; the
  *RegNet* design space keeps only such networks.
* The quantized linear parametrisation (§3.3), six numbers for a whole network: depth d, initial width w_0,
  slope w_a, width multiplier w_m, group width g and bottleneck ratio b. A continuous width per block (eq. 2),

  $$u_j = w_0 + w_a \cdot j, \quad 0 \le j < d,$$

  is written as a power of $w_m$, $u_j = w_0 \cdot w_m^{s_j}$ (eq. 3), and $s_j$ is rounded, so that the widths
  form a geometric series $w_j = w_0 \cdot w_m^{\lfloor s_j \rceil}$ (eq. 4), rounded to a multiple of 8.
  Blocks of equal width form a stage. :func:`regnet_stages` does exactly this, so every variant below is six numbers,
  not a width list.
* The good RegNets have no bottleneck (b = 1), about 20 blocks and w_m ≈ 2.5. *RegNetY* adds
  squeeze-and-excitation (Hu et al. 2018) with ratio 1/4 to the X block, with consistent gains.
  Variants are named by their FLOPs: ``regnet_x_400mf`` has 400 MFLOPs (multiply-adds), ``regnet_y_16gf``
  16 GFLOPs.

Data flow of RegNetY-400MF (d=16, w_0=48, w_a=27.89, w_m=2.09, g=8, b=1) at 224×224::

    image 3×224×224
      stem: 3×3, 32, stride 2 → BN → ReLU                          32×112×112
      stage1: 1 Y block,  width  48, 6 groups of 8, stride 2        48×56×56
      stage2: 3 Y blocks, width 104, 13 groups, first stride 2     104×28×28
      stage3: 6 Y blocks, width 208, 26 groups, first stride 2     208×14×14
      stage4: 6 Y blocks, width 440, 55 groups, first stride 2     440×7×7
      global average pool → fc                                   1000 logits

    one X block (Y block: with the SE gate):
      x ──► 1×1, w·b ─► 3×3 grouped (group width g), stride s ─► [SE] ─► 1×1, w ──(+)──► ReLU ─► y
      └──────────────────── identity, or 1×1 projection with stride s ─────────────┘

``features_only=True`` returns the four stages, at strides 4, 8, 16 and 32, as ResNet and ResNeXt do, so a
detection or segmentation head takes any of these backbones with the same ``out_indices``. The stem's output
(32 channels at stride 2, after a single convolution) is not offered: torchvision's detection and segmentation
heads read strides 4 to 32, and a stride-2 level would shift RegNet's ``out_indices`` against ResNet's.

Deviations from the paper, and details it leaves open, all as torchvision has them, so that its weights load
and its outputs match:

* Group-width compatibility. A grouped convolution needs its width w·b to be a multiple of the group width g.
  Both the authors' code (pycls) and torchvision first shrink g to at most w·b, then move w·b to a multiple
  of g; pycls rounds to the nearest multiple (halves to even), torchvision rounds halves up and never more
  than 10% down. This changes three of torchvision's networks against the authors': ``regnet_x_400mf``
  (stage 4: 400 channels, not 384), ``regnet_y_800mf`` (stages 2 and 4: 144 and 784, not 128 and 768) and
  ``regnet_y_8gf`` (stage 1: 224, not 168); torchvision's ImageNet weights are trained for its widths.
* ``regnet_y_128gf`` is not in the paper (its largest model is 32GF); it comes from Singh et al. 2022
  ("Revisiting Weakly Supervised Pre-Training of Visual Perception Models"), built with the same rule.
* The paper gives only the SE ratio, 1/4. The squeeze width is round(0.25 · the block's *input* width), as
  in both pycls and torchvision; with b = 1 this differs from a quarter of the block's own width only in the
  first block of each stage.
* No stochastic depth or dropout: torchvision's RegNet has neither (its ``models/regnet.py`` builds no drop
  path), and the paper trains its models without such enhancements, to compare designs and not recipes.
* Initialisation: convolutions N(0, 2/fan_out) (He normal, fan-out; the SE convolutions too, with PyTorch's
  default biases), BN weight 1 and bias 0, fc N(0, 0.01²) with zero bias, as torchvision does.

TorchScript: torchvision's RegNet compiles with ``torch.jit.script``; this one does not (its input check and the
shared classifier plumbing are Python that TorchScript cannot compile, and TorchScript is deprecated upstream).
``torch.export``, ``torch.compile(fullgraph=True)`` and ``torch.fx`` capture it instead (tests/test_export.py,
tests/test_graph_capture.py).
"""

from __future__ import annotations

import math
from collections import OrderedDict
from typing import Any, NamedTuple

import torch
from torch import nn

from paperzoo.layers import ConvNormAct, FeatureInfo, SqueezeExcite
from paperzoo.layers.classifier import ClassifierPool, ImageClassifier
from paperzoo.registry import InputSpec, ModelCard, Paper, TrainingRecipe, register

__all__ = ["RegNet", "XBlock", "StageSpec", "regnet_stages"]

WIDTH_QUANTUM = 8  # every block width is a multiple of 8 (§3.3)


class StageSpec(NamedTuple):
    """One stage of a RegNet: ``depth`` blocks of output width ``width``, grouped 3×3 with ``group_width``."""

    width: int
    depth: int
    group_width: int


def regnet_stages(depth: int, w_0: int, w_a: float, w_m: float, group_width: int,
                  bottleneck_ratio: float = 1.0) -> list[StageSpec]:
    """The stages of a RegNet from its six parameters: the quantized linear rule (eqs. 2–4).

    The paper's symbols are the clearest names here: ``depth`` is d (blocks in all), ``w_0`` the initial
    width, ``w_a`` the slope of the line, ``w_m`` the width multiplier between stages, ``group_width`` g
    and ``bottleneck_ratio`` b.
    """
    if not (depth > 0 and w_a >= 0 and w_0 > 0 and w_m > 1 and w_0 % WIDTH_QUANTUM == 0):
        raise ValueError(f"invalid RegNet parameters: depth={depth}, w_0={w_0} (a positive multiple of "
                         f"{WIDTH_QUANTUM}), w_a={w_a} (>= 0), w_m={w_m} (> 1)")
    block_widths = []
    for j in range(depth):
        u_j = w_0 + w_a * j  # eq. 2: the continuous width of block j, a line
        s_j = math.log(u_j / w_0) / math.log(w_m)  # eq. 3: u_j = w_0 · w_m^{s_j}, solved for s_j
        w_j = w_0 * w_m ** round(s_j)  # eq. 4: round s_j, so the widths step by the factor w_m
        block_widths.append(round(w_j / WIDTH_QUANTUM) * WIDTH_QUANTUM)

    # Consecutive blocks of equal width form a stage (the widths only grow, so these are the distinct widths).
    stages: list[list[int]] = []
    for width in block_widths:
        if stages and stages[-1][0] == width:
            stages[-1][1] += 1
        else:
            stages.append([width, 1])

    specs = []
    for width, stage_depth in stages:
        # Group-width compatibility: the grouped 3×3 runs on w·b channels, which must be a multiple of the
        # group width. A group cannot be wider than the layer, so g shrinks to at most w·b first; then w·b
        # moves to a multiple of g, rounding halves up and never more than 10% down (torchvision's rule).
        inner = int(width * bottleneck_ratio)
        g = min(group_width, inner)
        compatible = max(g, int(inner + g / 2) // g * g)
        if compatible < 0.9 * inner:
            compatible += g
        specs.append(StageSpec(width=int(compatible / bottleneck_ratio), depth=stage_depth, group_width=g))
    return specs


class XBlock(nn.Module):
    """The X block (Figure 4): a residual bottleneck whose 3×3 convolution is grouped; with ``se_ratio`` it is
    RegNetY's Y block, with a squeeze-and-excitation gate after the 3×3.

    Args:
        in_channels: channels of x.
        out_channels: w, the stage's width.
        stride: of the 3×3 convolution and the projection (2 in the first block of each stage).
        group_width: g, channels per group of the 3×3 convolution.
        bottleneck_ratio: b; the inner width is w·b (1 in every RegNet here: no bottleneck).
        se_ratio: squeeze width as a fraction of ``in_channels`` (0.25 in RegNetY), or ``None`` (RegNetX).
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int, group_width: int,
                 bottleneck_ratio: float = 1.0, se_ratio: float | None = None) -> None:
        super().__init__()
        inner = int(round(out_channels * bottleneck_ratio))
        self.conv1 = ConvNormAct(in_channels, inner, 1)
        self.conv2 = ConvNormAct(inner, inner, 3, stride=stride, groups=inner // group_width)
        self.se = (SqueezeExcite(inner, int(round(se_ratio * in_channels))) if se_ratio else nn.Identity())
        self.conv3 = ConvNormAct(inner, out_channels, 1, act_layer=None)  # linear before the sum
        if stride == 1 and in_channels == out_channels:
            self.shortcut: nn.Module = nn.Identity()
        else:
            self.shortcut = ConvNormAct(in_channels, out_channels, 1, stride=stride, act_layer=None)
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        residual = self.conv3(self.se(self.conv2(self.conv1(x))))
        return self.act(residual + self.shortcut(x))


class RegNet(ImageClassifier):
    """A RegNet: stem, four stages of X (or Y) blocks generated by :func:`regnet_stages`, head.

    Args:
        depth, w_0, w_a, w_m, group_width, bottleneck_ratio: the RegNet parameters (see :func:`regnet_stages`).
        se_ratio: ``None`` for RegNetX; 0.25 for RegNetY's squeeze-and-excitation.
        stem_width: output channels of the stem (32 in the paper).
        num_classes: outputs of the final fc layer; 0 leaves it out and returns pooled features.
        in_chans: channels of the input image.

    ``set_grad_checkpointing()`` checkpoints each X block in training (BatchNorm stats kept exact).
    """

    # The network's total stride. Smaller images do run (every stride-2 layer pads, so each map keeps at least
    # one pixel, in torchvision's too), but below 32 the last stage's map is one pixel computed mostly from
    # padding; 32 is the smallest size at which every stage sees real image content.
    min_input_size = 32
    model_name = "regnet"
    first_conv = "stem.conv"

    def __init__(
        self,
        depth: int,
        w_0: int,
        w_a: float,
        w_m: float,
        group_width: int,
        bottleneck_ratio: float = 1.0,
        se_ratio: float | None = None,
        stem_width: int = 32,
        num_classes: int = 1000,
        in_chans: int = 3,
    ) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.in_chans = in_chans
        self.stage_specs = regnet_stages(depth, w_0, w_a, w_m, group_width, bottleneck_ratio)

        self.stem = ConvNormAct(in_chans, stem_width, kernel_size=3, stride=2)

        stages: OrderedDict[str, nn.Module] = OrderedDict()
        levels = []
        in_channels, stride_so_far = stem_width, 2
        for i, spec in enumerate(self.stage_specs):
            stride_so_far *= 2
            blocks = [XBlock(in_channels if j == 0 else spec.width, spec.width, stride=2 if j == 0 else 1,
                             group_width=spec.group_width, bottleneck_ratio=bottleneck_ratio, se_ratio=se_ratio)
                      for j in range(spec.depth)]
            in_channels = spec.width
            name = f"stage{i + 1}"
            stages[name] = nn.Sequential(*blocks)
            levels.append((spec.width, stride_so_far, f"stages.{name}"))
        self.stages = nn.Sequential(stages)
        self.feature_info = FeatureInfo(levels)

        self.num_features = self.stage_specs[-1].width
        self.global_pool = ClassifierPool("avg")
        self.fc = nn.Linear(self.num_features, num_classes) if num_classes > 0 else nn.Identity()
        self._init_weights()

    def _init_weights(self) -> None:
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
            elif isinstance(module, nn.Linear):
                nn.init.normal_(module.weight, std=0.01)
                nn.init.zeros_(module.bias)

# Each variant is its RegNet parameters (b = 1 throughout), as torchvision builds them; all but 128gf are the
# configurations of the authors' released models (pycls). se_ratio=0.25 makes it a RegNetY.
REGNET_CONFIGS: dict[str, dict[str, Any]] = {
    "regnet_x_400mf": dict(depth=22, w_0=24, w_a=24.48, w_m=2.54, group_width=16),
    "regnet_x_800mf": dict(depth=16, w_0=56, w_a=35.73, w_m=2.28, group_width=16),
    "regnet_x_1_6gf": dict(depth=18, w_0=80, w_a=34.01, w_m=2.25, group_width=24),
    "regnet_x_3_2gf": dict(depth=25, w_0=88, w_a=26.31, w_m=2.25, group_width=48),
    "regnet_x_8gf": dict(depth=23, w_0=80, w_a=49.56, w_m=2.88, group_width=120),
    "regnet_x_16gf": dict(depth=22, w_0=216, w_a=55.59, w_m=2.1, group_width=128),
    "regnet_x_32gf": dict(depth=23, w_0=320, w_a=69.86, w_m=2.0, group_width=168),
    "regnet_y_400mf": dict(depth=16, w_0=48, w_a=27.89, w_m=2.09, group_width=8, se_ratio=0.25),
    "regnet_y_800mf": dict(depth=14, w_0=56, w_a=38.84, w_m=2.4, group_width=16, se_ratio=0.25),
    "regnet_y_1_6gf": dict(depth=27, w_0=48, w_a=20.71, w_m=2.65, group_width=24, se_ratio=0.25),
    "regnet_y_3_2gf": dict(depth=21, w_0=80, w_a=42.63, w_m=2.66, group_width=24, se_ratio=0.25),
    "regnet_y_8gf": dict(depth=17, w_0=192, w_a=76.82, w_m=2.19, group_width=56, se_ratio=0.25),
    "regnet_y_16gf": dict(depth=18, w_0=200, w_a=106.23, w_m=2.48, group_width=112, se_ratio=0.25),
    "regnet_y_32gf": dict(depth=20, w_0=232, w_a=115.89, w_m=2.53, group_width=232, se_ratio=0.25),
    "regnet_y_128gf": dict(depth=27, w_0=456, w_a=160.83, w_m=2.52, group_width=264, se_ratio=0.25),
}


_PAPER = Paper(
    title="Designing Network Design Spaces",
    authors="Ilija Radosavovic, Raj Prateek Kosaraju, Ross Girshick, Kaiming He, Piotr Dollár",
    year=2020,
    url="https://arxiv.org/abs/2003.13678",
)
_INNOVATIONS = (
    "design design spaces, not single networks: compare populations of sampled models by their error EDFs",
    "quantized linear widths: u_j = w_0 + w_a*j, rounded in log space to a geometric series with ratio w_m",
    "a whole network from six numbers (d, w_0, w_a, w_m, g, b); blocks of equal width form a stage",
    "X block: residual bottleneck with a grouped 3x3 convolution; the best models use no bottleneck (b = 1)",
    "RegNetY adds squeeze-and-excitation to every block",
)


# §3 (and Appendix): SGD, momentum 0.9, lr 0.1 at batch 128 (scaled linearly with the batch), a half-period
# cosine schedule, weight decay 5e-5.
_RECIPE = TrainingRecipe(optimizer="sgd", lr=0.1, momentum=0.9, weight_decay=5e-5, schedule="cosine",
                         batch_size=128, source="Radosavovic et al. 2020, §3")


def _card(name: str, params: int, gmacs: float, canonical: bool = False, notes: str = "") -> ModelCard:
    family, flops = name.removeprefix("regnet_").split("_", 1)
    return ModelCard(
        name=name,
        architecture=f"RegNet{family.upper()}-{flops.upper().replace('_', '.')}",
        task="image-classification",
        paper=_PAPER,
        innovations=_INNOVATIONS if family == "y" else _INNOVATIONS[:4],
        input=InputSpec(kind="image", shape=(3, 224, 224), min_size=RegNet.min_input_size),
        params=params,
        params_source=f"torchvision.models.{name}, counted",
        reference=f"torchvision.models.{name}",
        gmacs=gmacs,
        recipe=_RECIPE,
        canonical=canonical,
        notes=notes,
    )


def _rounding(ours: str, theirs: str) -> str:
    return f"torchvision's group-width rounding: {ours}, where the authors' code (pycls) has {theirs}."


@register(_card("regnet_x_400mf", params=5_495_976, gmacs=0.414,
                notes=_rounding("stage 4 has 400 channels", "384")))
def regnet_x_400mf(**kwargs: Any) -> RegNet:
    return RegNet(**REGNET_CONFIGS["regnet_x_400mf"], **kwargs)


@register(_card("regnet_x_800mf", params=7_259_656, gmacs=0.800))
def regnet_x_800mf(**kwargs: Any) -> RegNet:
    return RegNet(**REGNET_CONFIGS["regnet_x_800mf"], **kwargs)


@register(_card("regnet_x_1_6gf", params=9_190_136, gmacs=1.603))
def regnet_x_1_6gf(**kwargs: Any) -> RegNet:
    return RegNet(**REGNET_CONFIGS["regnet_x_1_6gf"], **kwargs)


@register(_card("regnet_x_3_2gf", params=15_296_552, gmacs=3.177))
def regnet_x_3_2gf(**kwargs: Any) -> RegNet:
    return RegNet(**REGNET_CONFIGS["regnet_x_3_2gf"], **kwargs)


@register(_card("regnet_x_8gf", params=39_572_648, gmacs=7.995))
def regnet_x_8gf(**kwargs: Any) -> RegNet:
    return RegNet(**REGNET_CONFIGS["regnet_x_8gf"], **kwargs)


@register(_card("regnet_x_16gf", params=54_278_536, gmacs=15.941))
def regnet_x_16gf(**kwargs: Any) -> RegNet:
    return RegNet(**REGNET_CONFIGS["regnet_x_16gf"], **kwargs)


@register(_card("regnet_x_32gf", params=107_811_560, gmacs=31.736))
def regnet_x_32gf(**kwargs: Any) -> RegNet:
    return RegNet(**REGNET_CONFIGS["regnet_x_32gf"], **kwargs)


@register(_card("regnet_y_400mf", params=4_344_144, gmacs=0.402, canonical=True))
def regnet_y_400mf(**kwargs: Any) -> RegNet:
    return RegNet(**REGNET_CONFIGS["regnet_y_400mf"], **kwargs)


@register(_card("regnet_y_800mf", params=6_432_512, gmacs=0.834,
                notes=_rounding("stages 2 and 4 have 144 and 784 channels", "128 and 768")))
def regnet_y_800mf(**kwargs: Any) -> RegNet:
    return RegNet(**REGNET_CONFIGS["regnet_y_800mf"], **kwargs)


@register(_card("regnet_y_1_6gf", params=11_202_430, gmacs=1.612))
def regnet_y_1_6gf(**kwargs: Any) -> RegNet:
    return RegNet(**REGNET_CONFIGS["regnet_y_1_6gf"], **kwargs)


@register(_card("regnet_y_3_2gf", params=19_436_338, gmacs=3.176))
def regnet_y_3_2gf(**kwargs: Any) -> RegNet:
    return RegNet(**REGNET_CONFIGS["regnet_y_3_2gf"], **kwargs)


@register(_card("regnet_y_8gf", params=39_381_472, gmacs=8.473,
                notes=_rounding("stage 1 has 224 channels", "168")))
def regnet_y_8gf(**kwargs: Any) -> RegNet:
    return RegNet(**REGNET_CONFIGS["regnet_y_8gf"], **kwargs)


@register(_card("regnet_y_16gf", params=83_590_140, gmacs=15.912))
def regnet_y_16gf(**kwargs: Any) -> RegNet:
    return RegNet(**REGNET_CONFIGS["regnet_y_16gf"], **kwargs)


@register(_card("regnet_y_32gf", params=145_046_770, gmacs=32.280))
def regnet_y_32gf(**kwargs: Any) -> RegNet:
    return RegNet(**REGNET_CONFIGS["regnet_y_32gf"], **kwargs)


@register(_card("regnet_y_128gf", params=644_812_894, gmacs=127.518,
                notes="Not in the paper: from Singh et al. 2022 (SWAG), with the same RegNetY rule."))
def regnet_y_128gf(**kwargs: Any) -> RegNet:
    return RegNet(**REGNET_CONFIGS["regnet_y_128gf"], **kwargs)


if __name__ == "__main__":
    from paperzoo.cli import main

    main(["run", "regnet_y_400mf"])
