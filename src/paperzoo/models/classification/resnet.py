"""ResNet.

Paper: "Deep Residual Learning for Image Recognition", Kaiming He, Xiangyu Zhang, Shaoqing Ren, Jian Sun,
CVPR 2016 (arXiv 2015). https://arxiv.org/abs/1512.03385

Deeper plain networks trained worse, not only tested worse: a 56-layer plain net has higher *training*
error than a 20-layer one (Figure 1). This "degradation" is an optimisation problem, since the deeper net
could copy the shallower one and set its extra layers to identity. ResNet makes that easy:

* Residual learning (§3.1). Let a few stacked layers fit the residual F(x) = H(x) − x instead of the
  desired mapping H(x), and add x back through a shortcut:  y = F(x, {W_i}) + x   (eq. 1).
  If the identity is nearly optimal, pushing F towards zero is easier than fitting an identity with a
  stack of non-linear layers. Identity shortcuts add neither parameters nor computation.
* Projection shortcuts (eq. 2): y = F(x, {W_i}) + W_s x, a 1×1 convolution with stride, only where the
  shape changes (the paper's option B; Table 3 shows it a little better than zero-padding, option A).
* The bottleneck block (§4.1, Figure 5) for the 50-, 101- and 152-layer nets: 1×1 reduces the width, the
  3×3 works on the narrow tensor, 1×1 restores the width (×4), so depth costs less.
* Batch normalisation after every convolution and before the activation, no dropout, and a global
  average pool before one fully-connected layer.

Data flow (Table 1) of ResNet-50 at 224×224::

    image 3×224×224
      conv1: 7×7, 64, stride 2 → BN → ReLU                     64×112×112
      conv2_x: 3×3 max pool, stride 2; 3 bottlenecks (64→256)  256×56×56
      conv3_x: 4 bottlenecks (128→512), first has stride 2     512×28×28
      conv4_x: 6 bottlenecks (256→1024), first has stride 2   1024×14×14
      conv5_x: 3 bottlenecks (512→2048), first has stride 2   2048×7×7
      global average pool → fc                                    1000 logits

    one bottleneck:   x ──► 1×1 reduce ─► 3×3 ─► 1×1 restore ──(+)──► ReLU ─► y
                      └──────── identity, or 1×1 projection W_s ───┘

Deviations from the paper, all torchvision's, kept so that its weights load and its outputs match:

* "ResNet v1.5": a bottleneck that downsamples puts its stride on the 3×3 convolution, not on the first
  1×1 as the paper does (a 1×1 convolution with stride 2 ignores three quarters of its input; moving the
  stride gains about 0.5% top-1). ``stride_in_1x1=True`` builds the paper's original block; the parameter
  count is the same either way.
* He (Kaiming) normal initialisation with fan-out (the paper cites [13], He et al. 2015, fan-in);
  ``zero_init_residual=True`` sets the last BN scale of each block to zero (Goyal et al. 2017), off by
  default as in torchvision.
* ``output_stride`` 16 or 8 replaces the stride of the last one or two stages by dilation (DeepLab); this
  is for the segmentation models built on this backbone, and 32, the paper's network, is the default.
* Also for the segmentation models, and off by default: ``deep_stem=True`` replaces the 7×7 conv1 by three
  3×3 convolutions (64, 64, 128 channels; the first with stride 2), the stem of the ResNets that the PSPNet
  authors trained (the "ResNet-C" of He et al. 2019, "Bag of Tricks", there with 32, 32, 64); ``stem_width``
  and ``stage_widths`` narrow the network (the small variants of the segmentation learning tests).

TorchScript: torchvision's ResNet compiles with ``torch.jit.script``; this one does not (its input check and the
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

__all__ = ["ResNet", "BasicBlock", "Bottleneck"]


def shortcut(in_channels: int, out_channels: int, stride: int) -> nn.Module:
    """The identity shortcut (eq. 1) where the shape is kept, else the projection W_s (eq. 2, option B)."""
    if stride == 1 and in_channels == out_channels:
        return nn.Identity()
    return ConvNormAct(in_channels, out_channels, kernel_size=1, stride=stride, act_layer=None)


class BasicBlock(nn.Module):
    """The "building block" of ResNet-18/34 (Figure 2 and Figure 5, left): two 3×3 convolutions."""

    expansion = 1  # output channels = width * expansion

    def __init__(self, in_channels: int, width: int, stride: int = 1, dilation: int = 1,
                 first_dilation: int | None = None, stride_in_1x1: bool = False) -> None:
        super().__init__()
        del stride_in_1x1  # only the bottleneck has a 1×1 convolution to put the stride on
        out_channels = width * self.expansion
        self.conv1 = ConvNormAct(in_channels, width, 3, stride=stride, dilation=first_dilation or dilation)
        self.conv2 = ConvNormAct(width, out_channels, 3, dilation=dilation, act_layer=None)
        self.shortcut = shortcut(in_channels, out_channels, stride)
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        residual = self.conv2(self.conv1(x))  # F(x, {W1, W2})
        return self.act(residual + self.shortcut(x))  # y = F(x) + x, then the second non-linearity


class Bottleneck(nn.Module):
    """The bottleneck block of ResNet-50/101/152 (Figure 5, right): 1×1 reduce, 3×3, 1×1 restore."""

    expansion = 4

    def __init__(self, in_channels: int, width: int, stride: int = 1, dilation: int = 1,
                 first_dilation: int | None = None, stride_in_1x1: bool = False) -> None:
        super().__init__()
        out_channels = width * self.expansion
        stride_1x1, stride_3x3 = (stride, 1) if stride_in_1x1 else (1, stride)  # paper vs. v1.5
        self.conv1 = ConvNormAct(in_channels, width, 1, stride=stride_1x1)  # reduce
        self.conv2 = ConvNormAct(width, width, 3, stride=stride_3x3, dilation=first_dilation or dilation)
        self.conv3 = ConvNormAct(width, out_channels, 1, act_layer=None)  # restore, linear before the sum
        self.shortcut = shortcut(in_channels, out_channels, stride)
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        residual = self.conv3(self.conv2(self.conv1(x)))  # F(x, {W1, W2, W3})
        return self.act(residual + self.shortcut(x))  # y = F(x) + W_s x


class ResNet(ImageClassifier):
    """A residual network (Table 1).

    Args:
        block: :class:`BasicBlock` (18, 34 layers) or :class:`Bottleneck` (50, 101, 152).
        blocks_per_stage: number of blocks in conv2_x … conv5_x, e.g. ``(3, 4, 6, 3)`` for ResNet-50.
        num_classes: outputs of the final fc layer; 0 leaves it out and returns pooled features.
        in_chans: channels of the input image.
        stride_in_1x1: put a downsampling bottleneck's stride on its first 1×1 convolution, as the paper
            (``False``, the default, is torchvision's v1.5).
        zero_init_residual: start every block as the identity by zeroing its last BN scale.
        output_stride: 32 (the paper), 16 or 8: the last stages trade their stride for dilation.
        deep_stem: conv1 as three 3×3 convolutions (``stem_width``, ``stem_width``, 2·``stem_width``) instead
            of one 7×7 (PSPNet's backbone).
        stem_width: output channels of the 7×7 conv1 (64 in Table 1).
        stage_widths: the widths of conv2_x … conv5_x (Table 1: 64, 128, 256, 512; a bottleneck outputs 4×).

    The feature levels are conv2_x … conv5_x (strides 4 … 32); the rest of the interface (``features_only``,
    ``forward_intermediates``, ``reset_classifier``, checkpointing) is the shared one of ``ImageClassifier``.
    """

    min_input_size = 32  # the network's total stride; smaller images leave conv5_x less than one pixel
    model_name = "resnet"

    def __init__(
        self,
        block: type[BasicBlock] | type[Bottleneck] = Bottleneck,
        blocks_per_stage: tuple[int, int, int, int] = (3, 4, 6, 3),
        num_classes: int = 1000,
        in_chans: int = 3,
        stride_in_1x1: bool = False,
        zero_init_residual: bool = False,
        output_stride: int = 32,
        deep_stem: bool = False,
        stem_width: int = 64,
        stage_widths: tuple[int, int, int, int] = (64, 128, 256, 512),
    ) -> None:
        super().__init__()
        if output_stride not in (8, 16, 32):
            raise ValueError(f"output_stride must be 8, 16 or 32, got {output_stride}")
        self.num_classes = num_classes
        self.in_chans = in_chans

        # conv1 and the max pool that Table 1 lists at the top of conv2_x: together stride 4.
        if deep_stem:  # three 3×3 convolutions see the same 7×7 window with more non-linearity
            self.conv1 = nn.Sequential(OrderedDict(
                conv1_1=ConvNormAct(in_chans, stem_width, kernel_size=3, stride=2),
                conv1_2=ConvNormAct(stem_width, stem_width, kernel_size=3),
                conv1_3=ConvNormAct(stem_width, 2 * stem_width, kernel_size=3),
            ))
            stem_channels = 2 * stem_width
            self.first_conv = "conv1.conv1_1.conv"
        else:
            self.conv1 = ConvNormAct(in_chans, stem_width, kernel_size=7, stride=2, padding=3)
            stem_channels = stem_width
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)

        stages: OrderedDict[str, nn.Module] = OrderedDict()
        levels = []
        in_channels, stride_so_far, dilation = stem_channels, 4, 1
        for i, (width, num_blocks) in enumerate(zip(stage_widths, blocks_per_stage, strict=True)):
            stride = 1 if i == 0 else 2
            first_dilation = dilation
            if stride_so_far * stride > output_stride:  # keep the resolution, widen the receptive field
                dilation, stride = dilation * stride, 1
            stride_so_far *= stride
            layers = []
            for j in range(num_blocks):
                layers.append(block(in_channels, width, stride=stride if j == 0 else 1, dilation=dilation,
                                    first_dilation=first_dilation if j == 0 else None,
                                    stride_in_1x1=stride_in_1x1))
                in_channels = width * block.expansion
            name = f"conv{i + 2}_x"
            stages[name] = nn.Sequential(*layers)
            levels.append((in_channels, stride_so_far, f"stages.{name}"))
        self.stages = nn.Sequential(stages)
        self.feature_info = FeatureInfo(levels)

        self.num_features = stage_widths[-1] * block.expansion
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
                if isinstance(module, (BasicBlock, Bottleneck)):
                    last = module.conv3 if isinstance(module, Bottleneck) else module.conv2
                    nn.init.zeros_(last.norm.weight)

    def forward_stem(self, x: torch.Tensor) -> torch.Tensor:
        return self.maxpool(self.conv1(x))  # conv1 and conv2_x's max pool: stride 4


_PAPER = Paper(
    title="Deep Residual Learning for Image Recognition",
    authors="Kaiming He, Xiangyu Zhang, Shaoqing Ren, Jian Sun",
    year=2015,
    url="https://arxiv.org/abs/1512.03385",
)
_INNOVATIONS = (
    "residual learning: blocks fit F(x) = H(x) - x and add the input back, y = F(x) + x",
    "identity shortcuts cost nothing; 1x1 projections only where the shape changes",
    "bottleneck blocks (1x1 reduce, 3x3, 1x1 restore) make 50 to 152 layers affordable",
    "batch normalisation after every convolution, global average pooling, no dropout",
)

# §3.4: SGD, momentum 0.9, weight decay 1e-4, lr 0.1 divided by 10 when the error plateaus; for CIFAR-10 (§4.2)
# batch 128 and ÷10 at 32k and 48k of 64k iterations, i.e. at 50% and 75% of the run, with lr 0.01 "to warm up
# the training until the training error is below 80%" (here: the first epoch).
_RECIPE = TrainingRecipe(optimizer="sgd", lr=0.1, momentum=0.9, weight_decay=1e-4, schedule="step",
                         milestones=(0.5, 0.75), batch_size=128, warmup_epochs=1, warmup_factor=0.1,
                         source="He et al. 2015, §3.4 and §4.2")


def _card(name: str, layers: int, params: int, gmacs: float, canonical: bool = False) -> ModelCard:
    return ModelCard(
        name=name,
        architecture=f"ResNet-{layers}",
        task="image-classification",
        paper=_PAPER,
        innovations=_INNOVATIONS,
        input=InputSpec(kind="image", shape=(3, 224, 224), min_size=ResNet.min_input_size),
        params=params,
        params_source=f"torchvision.models.{name}, counted",
        reference=f"torchvision.models.{name}",
        gmacs=gmacs,
        canonical=canonical,
        recipe=_RECIPE,
        notes="torchvision's v1.5 (stride on the 3x3 convolution); stride_in_1x1=True builds the paper's block."
        if layers >= 50 else "",
    )


@register(_card("resnet18", 18, params=11_689_512, gmacs=1.814))
def resnet18(**kwargs: Any) -> ResNet:
    """ResNet-18: basic blocks [2, 2, 2, 2]."""
    return ResNet(block=BasicBlock, blocks_per_stage=(2, 2, 2, 2), **kwargs)


@register(_card("resnet34", 34, params=21_797_672, gmacs=3.664))
def resnet34(**kwargs: Any) -> ResNet:
    """ResNet-34: basic blocks [3, 4, 6, 3]."""
    return ResNet(block=BasicBlock, blocks_per_stage=(3, 4, 6, 3), **kwargs)


@register(_card("resnet50", 50, params=25_557_032, gmacs=4.089, canonical=True))
def resnet50(**kwargs: Any) -> ResNet:
    """ResNet-50: bottleneck blocks [3, 4, 6, 3]."""
    return ResNet(block=Bottleneck, blocks_per_stage=(3, 4, 6, 3), **kwargs)


@register(_card("resnet101", 101, params=44_549_160, gmacs=7.801))
def resnet101(**kwargs: Any) -> ResNet:
    """ResNet-101: bottleneck blocks [3, 4, 23, 3]."""
    return ResNet(block=Bottleneck, blocks_per_stage=(3, 4, 23, 3), **kwargs)


@register(_card("resnet152", 152, params=60_192_808, gmacs=11.514))
def resnet152(**kwargs: Any) -> ResNet:
    """ResNet-152: bottleneck blocks [3, 8, 36, 3]."""
    return ResNet(block=Bottleneck, blocks_per_stage=(3, 8, 36, 3), **kwargs)


if __name__ == "__main__":
    from paperzoo.cli import main

    main(["run", "resnet50"])
