r"""ResNeXt.

Paper: "Aggregated Residual Transformations for Deep Neural Networks", Saining Xie, Ross Girshick, Piotr
Dollár, Zhuowen Tu, Kaiming He, CVPR 2017 (arXiv 2016). https://arxiv.org/abs/1611.05431

Inception modules showed that splitting an input, transforming the pieces and merging them
("split-transform-merge") gives accurate networks at low cost, but each module is hand-tailored. ResNeXt keeps
the idea and drops the tailoring:

* A neuron already is split-transform-merge: $\sum_i w_i x_i$ (eq. 1). Replace the elementary transform
  $w_i x_i$ by a small network $T_i$, all of the *same topology*, and aggregate $F(x) = \sum_{i=1}^{C} T_i(x)$
  (eq. 2). In a residual block, $y = x + \sum_{i=1}^{C} T_i(x)$ (eq. 3).
* The number of paths C is the *cardinality*, a dimension beside depth and width. At equal parameters and
  FLOPs, raising C beats going deeper or wider (Tables 3 and 4): ResNeXt-50 (32×4d) costs what ResNet-50
  costs and cuts its top-1 error by 1.7 points (Table 3).
* Each T_i is a bottleneck: 1×1 (256 → d), 3×3 (d → d), 1×1 (d → 256), with d the *bottleneck width*
  (4 in "32×4d"). A block then costs C·(256·d + 3·3·d·d + d·256) parameters (eq. 4): 70k for C=32, d=4,
  the same as ResNet's 64-wide bottleneck (Table 2).
* Two template rules fix the whole network from (C, d) and the depth (§3.1): blocks that produce maps of the
  same size share their hyperparameters, and each time the map is halved the widths double, so every stage
  costs about the same. Table 1 is ResNet-50 with its bottlenecks replaced.

Figure 3 shows three equivalent forms of one block; this file builds (c), as the paper's own code does:

    (a) C paths, each 1×1 256→4, 3×3 4→4, 1×1 4→256, outputs summed (eq. 3 literally).
    (b) The C last 1×1 layers, summed, are one 1×1 layer (128 → 256) on the concatenation of the C 4-channel
        outputs: a sum of products over separate inputs is one product over their concatenation.
    (c) The C first 1×1 layers (256 → 4 each) read the same input, so together they are one 1×1 layer
        256 → 128. The C 3×3 layers each read only their own 4 of those 128 channels: that is a *grouped*
        convolution with C groups (Krizhevsky et al. 2012). So: 1×1 256→128, 3×3 grouped 128→128 (C=32),
        1×1 128→256. The three forms compute the same function with the same weights; (c) is the fastest.

The reformulation gives a new topology only for blocks of depth >= 3 (§3.3); in a two-layer block the
grouped form collapses to a wide dense one, which is why ResNeXt is built from bottlenecks.

Data flow (Table 1) of ResNeXt-50 (32×4d) at 224×224::

    image 3×224×224
      conv1: 7×7, 64, stride 2 → BN → ReLU                                64×112×112
      conv2_x: 3×3 max pool, stride 2; 3 blocks [1×1 128, 3×3 128 C=32, 1×1 256]   256×56×56
      conv3_x: 4 blocks [1×1 256, 3×3 256 C=32, 1×1 512], first has stride 2       512×28×28
      conv4_x: 6 blocks [1×1 512, 3×3 512 C=32, 1×1 1024], first has stride 2     1024×14×14
      conv5_x: 3 blocks [1×1 1024, 3×3 1024 C=32, 1×1 2048], first has stride 2   2048×7×7
      global average pool → fc                                               1000 logits

    one block (form c):
      x ──► 1×1, C·d ─► 3×3 grouped, C·d, C groups ─► 1×1, out ──(+)──► ReLU ─► y
      └────────────── identity, or 1×1 projection with stride ────┘

The stride of a downsampling block sits on its 3×3 convolution, as the paper says (§4, following
fb.resnet.torch), which is what torchvision's ResNets call "v1.5"; here it is the paper's own network.

Deviations from the paper, all kept to match torchvision (its weights load and its outputs match):

* ``resnext101_32x8d`` is not one of the configurations in the paper's tables (they report 32×4d and 64×4d
  for 101 layers); it is the same template with d = 8, trained by torchvision and by Mahajan et al. 2018.
* Initialisation: He normal with fan-out for every convolution (the paper adopts He et al. 2015's
  initialisation without saying more); the fc layer keeps PyTorch's default. ``zero_init_residual=True``
  zeroes the last BN scale of each block (Goyal et al. 2017), off by default as in torchvision.
* ``output_stride`` 16 or 8 replaces the stride of the last one or two stages by dilation (DeepLab), for the
  segmentation models that build on this backbone; 32, the paper's network, is the default.

TorchScript: torchvision's ResNeXt compiles with ``torch.jit.script``; this one does not (its input check and the
shared classifier plumbing are Python that TorchScript cannot compile, and TorchScript is deprecated upstream).
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

__all__ = ["ResNeXt", "AggregatedBottleneck"]

STAGE_OUT_CHANNELS = (256, 512, 1024, 2048)  # Table 1: doubles each time the map is halved (template rule 2)


def shortcut(in_channels: int, out_channels: int, stride: int) -> nn.Module:
    """The identity where the shape is kept, else a 1×1 projection with stride (ResNet's option B)."""
    if stride == 1 and in_channels == out_channels:
        return nn.Identity()
    return ConvNormAct(in_channels, out_channels, kernel_size=1, stride=stride, act_layer=None)


class AggregatedBottleneck(nn.Module):
    r"""A block of aggregated residual transformations, $y = x + \sum_{i=1}^{C} T_i(x)$ (eq. 3), in the grouped
    form of Figure 3(c).

    Args:
        in_channels: channels of x.
        out_channels: channels of y (256, 512, 1024, 2048 by stage).
        cardinality: C, the number of transformations T_i (the groups of the 3×3 convolution).
        group_width: channels of one path T_i in this stage (d, doubled in every later stage).
        stride: stride of the 3×3 convolution and of the projection (2 in the first block of conv3_x … conv5_x).
        dilation, first_dilation: dilation of the 3×3 convolution (``first_dilation`` for the first block of a
            stage that trades its stride for dilation, as DeepLab and torchvision do).
    """

    def __init__(self, in_channels: int, out_channels: int, cardinality: int, group_width: int, stride: int = 1,
                 dilation: int = 1, first_dilation: int | None = None) -> None:
        super().__init__()
        width = cardinality * group_width  # the C first 1×1 layers of (a), side by side: one 1×1 to C·d channels
        self.conv1 = ConvNormAct(in_channels, width, 1)
        # Path i's 3×3 sees only its own d channels: groups=C is exactly the C separate 3×3 layers of (a).
        self.conv2 = ConvNormAct(width, width, 3, stride=stride, dilation=first_dilation or dilation,
                                 groups=cardinality)
        # The C last 1×1 layers of (a), summed, are one 1×1 over the concatenated paths (form b): Σ_i T_i(x).
        self.conv3 = ConvNormAct(width, out_channels, 1, act_layer=None)  # linear before the sum
        self.shortcut = shortcut(in_channels, out_channels, stride)
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        aggregated = self.conv3(self.conv2(self.conv1(x)))  # Σ_{i=1}^{C} T_i(x)  (eq. 2)
        return self.act(aggregated + self.shortcut(x))  # y = x + Σ T_i(x) (eq. 3), then the block's ReLU


class ResNeXt(ImageClassifier):
    """A ResNeXt (Table 1): ResNet's layout with every bottleneck replaced by an aggregated one.

    Args:
        blocks_per_stage: number of blocks in conv2_x … conv5_x, e.g. ``(3, 4, 6, 3)`` for 50 layers.
        cardinality: C, the number of paths in every block (32 in "32×4d").
        bottleneck_width: d, the width of one path in conv2_x (4 in "32×4d"); it doubles with every stage.
        num_classes: outputs of the final fc layer; 0 leaves it out and returns pooled features.
        in_chans: channels of the input image.
        zero_init_residual: start every block as the identity by zeroing its last BN scale.
        output_stride: 32 (the paper), 16 or 8: the last stages trade their stride for dilation.

    ``set_grad_checkpointing()`` checkpoints each aggregated residual block in training (BatchNorm stats kept exact).
    """

    # The network's total stride. Smaller images do run (every stride-2 layer pads, so each map keeps at least
    # one pixel, in torchvision's too), but below 32 the conv5_x "map" is one pixel computed mostly from
    # padding; 32 is the smallest size at which every stage sees real image content, as for ResNet.
    min_input_size = 32
    model_name = "resnext"
    first_conv = "conv1.conv"

    def __init__(
        self,
        blocks_per_stage: tuple[int, int, int, int] = (3, 4, 6, 3),
        cardinality: int = 32,
        bottleneck_width: int = 4,
        num_classes: int = 1000,
        in_chans: int = 3,
        zero_init_residual: bool = False,
        output_stride: int = 32,
    ) -> None:
        super().__init__()
        if output_stride not in (8, 16, 32):
            raise ValueError(f"output_stride must be 8, 16 or 32, got {output_stride}")
        self.num_classes = num_classes
        self.in_chans = in_chans
        self.cardinality = cardinality
        self.bottleneck_width = bottleneck_width

        # conv1 and the max pool that Table 1 lists at the top of conv2_x: together stride 4.
        self.conv1 = ConvNormAct(in_chans, 64, kernel_size=7, stride=2, padding=3)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)

        stages: OrderedDict[str, nn.Module] = OrderedDict()
        levels = []
        in_channels, stride_so_far, dilation = 64, 4, 1
        for i, (out_channels, num_blocks) in enumerate(zip(STAGE_OUT_CHANNELS, blocks_per_stage, strict=True)):
            group_width = bottleneck_width * 2**i  # template rule 2: widths double as the map halves
            stride = 1 if i == 0 else 2
            first_dilation = dilation
            if stride_so_far * stride > output_stride:  # keep the resolution, widen the receptive field
                dilation, stride = dilation * stride, 1
            stride_so_far *= stride
            layers = []
            for j in range(num_blocks):
                layers.append(AggregatedBottleneck(
                    in_channels, out_channels, cardinality, group_width, stride=stride if j == 0 else 1,
                    dilation=dilation, first_dilation=first_dilation if j == 0 else None))
                in_channels = out_channels
            name = f"conv{i + 2}_x"
            stages[name] = nn.Sequential(*layers)
            levels.append((in_channels, stride_so_far, f"stages.{name}"))
        self.stages = nn.Sequential(stages)
        self.feature_info = FeatureInfo(levels)

        self.num_features = STAGE_OUT_CHANNELS[-1]
        self.global_pool = ClassifierPool("avg")
        self.fc = nn.Linear(self.num_features, num_classes) if num_classes > 0 else nn.Identity()
        self._init_weights(zero_init_residual)

    def _init_weights(self, zero_init_residual: bool) -> None:
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
        if zero_init_residual:
            for module in self.modules():
                if isinstance(module, AggregatedBottleneck):
                    nn.init.zeros_(module.conv3.norm.weight)

    def forward_stem(self, x: torch.Tensor) -> torch.Tensor:
        return self.maxpool(self.conv1(x))


_PAPER = Paper(
    title="Aggregated Residual Transformations for Deep Neural Networks",
    authors="Saining Xie, Ross Girshick, Piotr Dollár, Zhuowen Tu, Kaiming He",
    year=2017,
    url="https://arxiv.org/abs/1611.05431",
)
_INNOVATIONS = (
    "aggregated transformations: y = x + sum of C same-topology paths T_i(x), split-transform-merge made uniform",
    "cardinality C (the number of paths) as a dimension beside depth and width; raising it beats deeper or wider",
    "the C paths are one grouped 3x3 convolution between two 1x1 convolutions (Figure 3c), exactly equivalent",
    "two template rules (same-size maps share widths; halve the map, double the width) fix the whole network",
)


# §5.3 (CIFAR): SGD, momentum 0.9, batch 128, lr 0.1 divided by 10 at 50% and 75% of the run (epochs 150 and
# 225 of 300), weight decay 5e-4; on ImageNet (§5.1) ResNet's recipe: batch 256, weight decay 1e-4.
_RECIPE = TrainingRecipe(optimizer="sgd", lr=0.1, momentum=0.9, weight_decay=5e-4, schedule="step",
                         milestones=(0.5, 0.75), batch_size=128, source="Xie et al. 2017, §5.1 and §5.3")


def _card(name: str, layers: int, cardinality: int, bottleneck_width: int, params: int, gmacs: float,
          canonical: bool = False, notes: str = "") -> ModelCard:
    return ModelCard(
        name=name,
        architecture=f"ResNeXt-{layers} ({cardinality}x{bottleneck_width}d)",
        task="image-classification",
        paper=_PAPER,
        innovations=_INNOVATIONS,
        input=InputSpec(kind="image", shape=(3, 224, 224), min_size=ResNeXt.min_input_size),
        params=params,
        params_source=f"torchvision.models.{name}, counted",
        reference=f"torchvision.models.{name}",
        gmacs=gmacs,
        recipe=_RECIPE,
        canonical=canonical,
        notes=notes,
    )


@register(_card("resnext50_32x4d", 50, 32, 4, params=25_028_904, gmacs=4.230, canonical=True))
def resnext50_32x4d(**kwargs: Any) -> ResNeXt:
    """ResNeXt-50 (32×4d): blocks [3, 4, 6, 3], C = 32, d = 4 (Table 1)."""
    return ResNeXt(blocks_per_stage=(3, 4, 6, 3), cardinality=32, bottleneck_width=4, **kwargs)


@register(_card("resnext101_32x8d", 101, 32, 8, params=88_791_336, gmacs=16.414,
                notes="Not among the paper's tables; the template with d=8, as torchvision trains it."))
def resnext101_32x8d(**kwargs: Any) -> ResNeXt:
    """ResNeXt-101 (32×8d): blocks [3, 4, 23, 3], C = 32, d = 8."""
    return ResNeXt(blocks_per_stage=(3, 4, 23, 3), cardinality=32, bottleneck_width=8, **kwargs)


@register(_card("resnext101_64x4d", 101, 64, 4, params=83_455_272, gmacs=15.460))
def resnext101_64x4d(**kwargs: Any) -> ResNeXt:
    """ResNeXt-101 (64×4d): blocks [3, 4, 23, 3], C = 64, d = 4 (Tables 4 and 5)."""
    return ResNeXt(blocks_per_stage=(3, 4, 23, 3), cardinality=64, bottleneck_width=4, **kwargs)


if __name__ == "__main__":
    from paperzoo.cli import main

    main(["run", "resnext50_32x4d"])
