"""VGG.

Paper: "Very Deep Convolutional Networks for Large-Scale Image Recognition", Karen Simonyan and Andrew
Zisserman, ICLR 2015 (arXiv 2014). https://arxiv.org/abs/1409.1556

VGG asked one question: what does depth alone buy, if everything else is kept plain? Its answers:

* Only 3×3 convolutions (stride 1, padding 1). A stack of two has the receptive field of one 5×5, a stack
  of three that of a 7×7, but with three ReLUs instead of one (a more discriminative function) and fewer
  weights: 3·(3²C²) = 27C² against 7²C² = 49C² for C channels in and out (§2.3).
* Five blocks of convolutions, each closed by a 2×2 max pool with stride 2; the width starts at 64 and
  doubles after each pool until it reaches 512, so every block costs about the same.
* Depth grows from 11 to 19 weight layers (configurations A, B, D and E of Table 1, here ``vgg11``,
  ``vgg13``, ``vgg16`` and ``vgg19``) and the error falls with it (Table 3).
* The same three fully-connected layers as AlexNet (4096, 4096, 1000) with dropout on the first two.

Data flow of VGG-16 (configuration D) at 224×224::

    image 3×224×224
      block1: conv1_1, conv1_2 (3×3, 64)               → pool1   64×112×112
      block2: conv2_1, conv2_2 (3×3, 128)              → pool2  128×56×56
      block3: conv3_1 … conv3_3 (3×3, 256)             → pool3  256×28×28
      block4: conv4_1 … conv4_3 (3×3, 512)             → pool4  512×14×14
      block5: conv5_1 … conv5_3 (3×3, 512)             → pool5  512×7×7
      adaptive average pool to 7×7, flatten                    25088
      fc6 → ReLU → dropout → fc7 → ReLU → dropout               4096
      fc8                                                      1000 logits

The layers keep the names of the authors' released Caffe models (``conv4_3``, ``fc7``), the names that the
FCN and SSD papers use when they build on VGG.

Deviations from the paper, all torchvision's, kept so that its weights load and its outputs match:

* ``vgg*_bn`` add batch normalisation after every convolution (the paper predates it; the convolutions keep
  their biases, as in torchvision). Configuration C (with 1×1 convolutions) and A-LRN are not built.
* An adaptive average pool to 7×7 before fc6 lets other input sizes through; the paper instead evaluated
  densely, turning fc6–fc8 into convolutions over the whole image (§3.2). At 224×224 the two agree.
* He (Kaiming) normal initialisation of the convolutions and N(0, 0.01²) for the fully-connected layers;
  the paper initialised the deeper nets from the trained configuration A, and notes (§3.1) that Glorot
  initialisation without pre-training works as well.

Options for the networks built on VGG, off by default: ``ceil_mode=True`` rounds a pooled size up, as Caffe's
pooling did (the FCN paper's VGG-16 relies on it); ``block_widths`` narrows the blocks (the small FCN of the
segmentation learning test).

TorchScript: torchvision's VGG compiles with ``torch.jit.script``; this one does not (its input check and the shared
classifier plumbing are Python that TorchScript cannot compile, and TorchScript is deprecated upstream).
``torch.export``, ``torch.compile(fullgraph=True)`` and ``torch.fx`` capture it instead (tests/test_export.py,
tests/test_graph_capture.py).
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

import torch
from torch import nn

from paperzoo.layers import ConvNormAct, FeatureInfo
from paperzoo.layers.classifier import ImageClassifier
from paperzoo.registry import InputSpec, ModelCard, Paper, TrainingRecipe, register

__all__ = ["VGG", "VGGBlock"]

# Table 1: convolutions per block for configurations A (11 layers), B (13), D (16), E (19).
VGG_CONFIGS: dict[str, tuple[int, int, int, int, int]] = {
    "vgg11": (1, 1, 2, 2, 2),
    "vgg13": (2, 2, 2, 2, 2),
    "vgg16": (2, 2, 3, 3, 3),
    "vgg19": (2, 2, 4, 4, 4),
}
BLOCK_WIDTHS = (64, 128, 256, 512, 512)  # doubles after every pool, capped at 512


class VGGBlock(nn.Sequential):
    """``num_convs`` 3×3 convolutions with ReLU (and BatchNorm if asked), then a 2×2 max pool.

    Children are named as in the released models: ``conv{b}_1`` … ``conv{b}_{num_convs}``, ``pool{b}``.
    """

    def __init__(self, index: int, in_channels: int, out_channels: int, num_convs: int, batch_norm: bool,
                 ceil_mode: bool = False) -> None:
        layers: OrderedDict[str, nn.Module] = OrderedDict()
        for k in range(1, num_convs + 1):
            layers[f"conv{index}_{k}"] = ConvNormAct(
                in_channels if k == 1 else out_channels, out_channels, kernel_size=3,
                norm_layer=nn.BatchNorm2d if batch_norm else None, bias=True,
            )
        layers[f"pool{index}"] = nn.MaxPool2d(kernel_size=2, stride=2, ceil_mode=ceil_mode)  # halves H and W
        super().__init__(layers)


class VGG(ImageClassifier):
    """A VGG network: five :class:`VGGBlock` s and three fully-connected layers.

    Args:
        convs_per_block: how many 3×3 convolutions each of the five blocks has (:data:`VGG_CONFIGS`).
        batch_norm: BatchNorm after every convolution (torchvision's ``_bn`` variants).
        num_classes: outputs of fc8; 0 leaves fc8 out and returns fc7's features.
        in_chans: channels of the input image.
        dropout: dropout probability after fc6 and fc7 (the paper's 0.5).
        ceil_mode: pooled sizes rounded up (Caffe's pooling), not down.
        block_widths: channels of the five blocks (Table 1: 64, 128, 256, 512, 512).
    """

    min_input_size = 32  # five 2×2 pools need at least 2⁵ pixels
    model_name = "vgg"
    first_conv = "features.block1.conv1_1.conv"
    classifier_name = "fc8"
    # fc6 and fc7 work on the 7×7 map, not on globally pooled features (timm's VGG too): global_pool does not apply
    head_modules = ("avgpool", "classifier")

    def __init__(
        self,
        convs_per_block: tuple[int, ...] = VGG_CONFIGS["vgg16"],
        batch_norm: bool = False,
        num_classes: int = 1000,
        in_chans: int = 3,
        dropout: float = 0.5,
        ceil_mode: bool = False,
        block_widths: tuple[int, ...] = BLOCK_WIDTHS,
    ) -> None:
        super().__init__()
        if not len(convs_per_block) == len(block_widths) == len(BLOCK_WIDTHS):
            raise ValueError(f"convs_per_block and block_widths need {len(BLOCK_WIDTHS)} entries, "
                             f"got {convs_per_block} and {block_widths}")
        self.num_classes = num_classes
        self.in_chans = in_chans

        num_blocks = len(block_widths)
        blocks: OrderedDict[str, nn.Module] = OrderedDict()
        channels = in_chans
        for i in range(num_blocks):
            blocks[f"block{i + 1}"] = VGGBlock(i + 1, channels, block_widths[i], convs_per_block[i], batch_norm,
                                               ceil_mode)
            channels = block_widths[i]
        self.features = nn.Sequential(blocks)
        # the feature levels: each block's output, after its pool (strides 2 … 32)
        self.feature_info = FeatureInfo((width, 2 ** (i + 1), f"features.block{i + 1}")
                                        for i, width in enumerate(block_widths))

        self.num_features = block_widths[-1]  # pool5's channels
        self.head_hidden_size = 4096  # fc7's, what fc8 reads
        self.avgpool = nn.AdaptiveAvgPool2d((7, 7))
        self.classifier = nn.Sequential(OrderedDict(
            fc6=nn.Linear(block_widths[-1] * 7 * 7, 4096),
            relu6=nn.ReLU(inplace=True),
            drop6=nn.Dropout(p=dropout),
            fc7=nn.Linear(4096, 4096),
            relu7=nn.ReLU(inplace=True),
            drop7=nn.Dropout(p=dropout),
        ))
        self.fc8 = nn.Linear(4096, num_classes) if num_classes > 0 else nn.Identity()
        self._init_weights()

    def _init_weights(self) -> None:
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(module.bias)
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
            elif isinstance(module, nn.Linear):
                self.init_classifier(module)

    def init_classifier(self, fc: nn.Module) -> None:
        nn.init.normal_(fc.weight, mean=0.0, std=0.01)
        nn.init.zeros_(fc.bias)

    def forward_stem(self, x: torch.Tensor) -> torch.Tensor:
        return x  # block1 is the first feature level

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """pool5 map → logits ``(N, num_classes)``, or fc7's features ``(N, 4096)`` if ``pre_logits``."""
        x = self.classifier(torch.flatten(self.avgpool(x), 1))  # (N, 512, 7, 7) → (N, 25088) → (N, 4096)
        x = self.head_drop(x)
        return x if pre_logits else self.fc8(x)

_PAPER = Paper(
    title="Very Deep Convolutional Networks for Large-Scale Image Recognition",
    authors="Karen Simonyan, Andrew Zisserman",
    year=2014,
    url="https://arxiv.org/abs/1409.1556",
)
_INNOVATIONS = (
    "only 3x3 convolutions: stacks reach large receptive fields with fewer weights and more non-linearities",
    "depth as the single design axis: 11 to 19 weight layers in five pooled blocks",
    "width doubling after each pooling (64 to 512) keeps the cost per block level",
)

# §3.1: mini-batch SGD, batch 256, momentum 0.9, weight decay 5e-4, dropout 0.5, lr 0.01 divided by 10 when
# the validation accuracy stopped improving (three times in 74 epochs).
_RECIPE = TrainingRecipe(optimizer="sgd", lr=0.01, momentum=0.9, weight_decay=5e-4, schedule="step",
                         milestones=(0.5, 0.75), batch_size=128, source="Simonyan & Zisserman 2014, §3.1")


def _card(name: str, layers: int, params: int, gmacs: float, canonical: bool = False) -> ModelCard:
    batch_norm = name.endswith("_bn")
    return ModelCard(
        name=name,
        architecture=f"VGG-{layers}" + (" with BatchNorm" if batch_norm else ""),
        task="image-classification",
        paper=_PAPER,
        innovations=_INNOVATIONS,
        input=InputSpec(kind="image", shape=(3, 224, 224), min_size=VGG.min_input_size),
        params=params,
        params_source=f"torchvision.models.{name}, counted",
        reference=f"torchvision.models.{name}",
        gmacs=gmacs,
        canonical=canonical,
        recipe=_RECIPE,
        notes="BatchNorm after every convolution is torchvision's addition to the paper." if batch_norm else "",
    )


@register(_card("vgg11", 11, params=132_863_336, gmacs=7.609))
def vgg11(**kwargs: Any) -> VGG:
    """VGG-11, configuration A."""
    return VGG(convs_per_block=VGG_CONFIGS["vgg11"], **kwargs)


@register(_card("vgg11_bn", 11, params=132_868_840, gmacs=7.609))
def vgg11_bn(**kwargs: Any) -> VGG:
    """VGG-11, configuration A, with BatchNorm."""
    return VGG(convs_per_block=VGG_CONFIGS["vgg11"], batch_norm=True, **kwargs)


@register(_card("vgg13", 13, params=133_047_848, gmacs=11.308))
def vgg13(**kwargs: Any) -> VGG:
    """VGG-13, configuration B."""
    return VGG(convs_per_block=VGG_CONFIGS["vgg13"], **kwargs)


@register(_card("vgg13_bn", 13, params=133_053_736, gmacs=11.308))
def vgg13_bn(**kwargs: Any) -> VGG:
    """VGG-13, configuration B, with BatchNorm."""
    return VGG(convs_per_block=VGG_CONFIGS["vgg13"], batch_norm=True, **kwargs)


@register(_card("vgg16", 16, params=138_357_544, gmacs=15.47, canonical=True))
def vgg16(**kwargs: Any) -> VGG:
    """VGG-16, configuration D."""
    return VGG(convs_per_block=VGG_CONFIGS["vgg16"], **kwargs)


@register(_card("vgg16_bn", 16, params=138_365_992, gmacs=15.47))
def vgg16_bn(**kwargs: Any) -> VGG:
    """VGG-16, configuration D, with BatchNorm."""
    return VGG(convs_per_block=VGG_CONFIGS["vgg16"], batch_norm=True, **kwargs)


@register(_card("vgg19", 19, params=143_667_240, gmacs=19.632))
def vgg19(**kwargs: Any) -> VGG:
    """VGG-19, configuration E."""
    return VGG(convs_per_block=VGG_CONFIGS["vgg19"], **kwargs)


@register(_card("vgg19_bn", 19, params=143_678_248, gmacs=19.632))
def vgg19_bn(**kwargs: Any) -> VGG:
    """VGG-19, configuration E, with BatchNorm."""
    return VGG(convs_per_block=VGG_CONFIGS["vgg19"], batch_norm=True, **kwargs)


if __name__ == "__main__":
    from paperzoo.cli import main

    main(["run", "vgg16"])
