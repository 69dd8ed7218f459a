r"""SqueezeNet.

Paper: "SqueezeNet: AlexNet-level accuracy with 50x fewer parameters and <0.5MB model size", Forrest N.
Iandola, Song Han, Matthew W. Moskewicz, Khalid Ashraf, William J. Dally, Kurt Keutzer, 2016.
https://arxiv.org/abs/1602.07360

SqueezeNet asks how few parameters AlexNet's accuracy needs, and answers 1.2M instead of AlexNet's 60M, from
three design strategies (§3.1):

1. Replace 3×3 filters with 1×1 filters: a 1×1 filter has 9× fewer parameters.
2. Decrease the number of input channels to the remaining 3×3 filters, since a 3×3 layer costs
   (input channels) × (filters) × 9 parameters.
3. Downsample late, so that most convolutions work on large activation maps (the paper's bet: larger maps,
   higher accuracy at the same parameter count).

* The Fire module (§3.2, Figure 1) implements 1 and 2: a *squeeze* layer of s_1x1 1×1 filters feeds an
  *expand* layer of e_1x1 1×1 and e_3x3 3×3 filters, whose outputs are concatenated along the channels.
  With s_1x1 < e_1x1 + e_3x3 the squeeze layer limits what the 3×3 filters read. ReLU follows the squeeze
  and both expand convolutions; the 3×3 filters get a one-pixel zero border so both halves keep the size.
* The macro-architecture (§3.3, Table 1): conv1, eight Fire modules (fire2 … fire9) and conv10, with a
  stride-2 max pool after conv1, fire4 and fire8 only (strategy 3), dropout (50%) after fire9.
* No fully-connected layer (after Network-in-Network): conv10 is a 1×1 convolution with one filter per
  class, producing a class map at every position, and a global average pool turns the maps into logits.
* The widths follow five metaparameters (§5.1): Fire module i = 0 … 7 has
  $e_i = base_e + incr_e \cdot \lfloor i / freq \rfloor$ expand filters, $e_{i,3\times3} = pct_{3\times3} \cdot e_i$
  of them 3×3, and $s_{i,1\times1} = SR \cdot e_i$ squeeze filters; SqueezeNet uses
  base_e = 128, incr_e = 128, pct_3x3 = 0.5, freq = 2 and the squeeze ratio SR = 0.125.

Data flow of SqueezeNet 1.0 at 224×224::

    image 3×224×224
      conv1: 7×7 conv, 96, stride 2 → ReLU                96×109×109
      maxpool1: 3×3, stride 2                             96×54×54
      fire2, fire3: squeeze 16, expand 64 + 64           128×54×54
      fire4: squeeze 32, expand 128 + 128                256×54×54
      maxpool4                                           256×27×27
      fire5: squeeze 32, expand 128 + 128                256×27×27
      fire6, fire7: squeeze 48, expand 192 + 192         384×27×27
      fire8: squeeze 64, expand 256 + 256                512×27×27
      maxpool8                                           512×13×13
      fire9: squeeze 64, expand 256 + 256                512×13×13
      dropout → conv10: 1×1 conv, 1000 → ReLU           1000×13×13
      global average pool                                1000 logits

    Fire module:  x ─► squeeze 1×1 (s) ─► ReLU ─┬─► expand 1×1 (e_1x1) ─► ReLU ─┐
                                                └─► expand 3×3 (e_3x3) ─► ReLU ─┴─► concat (e_1x1 + e_3x3)

SqueezeNet 1.1 (``squeezenet1_1``) is not in the paper: the authors released it later
(https://github.com/forresti/SqueezeNet) with 2.4× less computation and the same accuracy. Its conv1 is a
3×3 convolution with 64 filters, and it pools earlier, after conv1, fire3 and fire5; the Fire modules are
those of 1.0.

The head, and what ``pre_logits`` means here: conv10 is the classifier, and it acts *before* the pool, on
every position of fire9's map. Because a ReLU sits between conv10 and the pool, the logits
mean_ij ReLU(W x_ij + b) are not a function of the pooled features mean_ij x_ij, so no linear layer on the
pooled features reproduces them. As in timm's heads, the pre-logits features are what the head receives,
pooled: ``forward_head(x, pre_logits=True)`` returns the globally averaged fire9 map, ``num_features`` = 512
values per image, and ``reset_classifier(num_classes)`` replaces conv10 (0 removes it and its ReLU, so the
model returns those pooled features). Note that the logits are never negative.

Deviations from the paper, all torchvision's, kept so that its weights load and its outputs match:

* The max pools round their output size up (``ceil_mode``), as Caffe does, in which the paper's model was
  built; so a pool's last window may hang one pixel over the edge of the map.
* Table 1's map sizes (conv1 111×111, maxpool1 55×55) imply a 227×227 input; at 224×224 they are 109 and
  54, and from maxpool8 on (13×13) the two agree. The 13×13 average pool (avgpool10) is a global adaptive
  average pool, which is the same at these sizes and lets other sizes through.
* Initialisation, which the paper does not state: Kaiming (He) uniform with fan-in for every convolution
  but conv10, N(0, 0.01²) for conv10 (so the class maps start near zero), zero biases.
* conv10 is followed by a ReLU, as in the released model; the paper's text names ReLU only after the
  squeeze and expand layers. The paper's bypass variants (Table 3) and its compressed models (Deep
  Compression) are not built.

TorchScript: torchvision's SqueezeNet compiles with ``torch.jit.script``; this one does not (its input check and the
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

__all__ = ["SqueezeNet", "FireModule", "fire_widths", "smallest_input_size"]

NUM_FIRE_MODULES = 8  # fire2 … fire9


def fire_widths(base_e: int = 128, incr_e: int = 128, pct_3x3: float = 0.5, freq: int = 2,
                squeeze_ratio: float = 0.125) -> list[tuple[int, int, int]]:
    """(s_1x1, e_1x1, e_3x3) of the eight Fire modules, from the paper's metaparameters (§5.1)."""
    widths = []
    for i in range(NUM_FIRE_MODULES):
        expand = base_e + incr_e * (i // freq)  # e_i = base_e + incr_e·⌊i / freq⌋
        expand_3x3 = int(pct_3x3 * expand)  # e_i,3x3 = pct_3x3·e_i
        widths.append((int(squeeze_ratio * expand), expand - expand_3x3, expand_3x3))  # s_i,1x1 = SR·e_i
    return widths


def smallest_input_size(stem_kernel_size: int, num_pools: int = 3) -> int:
    """The smallest H = W the network takes. Each 3×3, stride-2 max pool in ceil mode turns 2m pixels into
    m (its last window may hang one pixel over the edge), so the last pool needs 2 pixels and the stem must
    leave 2^num_pools; the stem (k×k, stride 2, no padding) leaves ⌊(H − k)/2⌋ + 1. At the smallest size
    fire9 works on a 1×1 map. 21 for SqueezeNet 1.0 (7×7 stem), 17 for 1.1 (3×3), as for torchvision's."""
    return stem_kernel_size + 2 * (2 ** num_pools - 1)


class FireModule(nn.Module):
    """The Fire module (Figure 1): squeeze with 1×1 filters, expand with 1×1 and 3×3 filters, concatenate.

    Args:
        in_channels: channels of the input.
        squeeze_channels: s_1x1, the squeeze layer's 1×1 filters.
        expand1x1_channels: e_1x1, the expand layer's 1×1 filters.
        expand3x3_channels: e_3x3, the expand layer's 3×3 filters.

    Output channels: e_1x1 + e_3x3 (``out_channels``).
    """

    def __init__(self, in_channels: int, squeeze_channels: int, expand1x1_channels: int,
                 expand3x3_channels: int) -> None:
        super().__init__()
        # No normalisation (the paper predates its use here): ConvNormAct is conv (with bias) → ReLU.
        self.squeeze = ConvNormAct(in_channels, squeeze_channels, kernel_size=1, norm_layer=None)
        self.expand1x1 = ConvNormAct(squeeze_channels, expand1x1_channels, kernel_size=1, norm_layer=None)
        # A one-pixel zero border, so the 3×3 outputs have the size of the 1×1 outputs and can be stacked.
        self.expand3x3 = ConvNormAct(squeeze_channels, expand3x3_channels, kernel_size=3, padding=1,
                                     norm_layer=None)
        self.out_channels = expand1x1_channels + expand3x3_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        squeezed = self.squeeze(x)  # (N, s_1x1, H, W): strategy 2, few inputs for the 3×3 filters
        return torch.cat([self.expand1x1(squeezed), self.expand3x3(squeezed)], dim=1)  # (N, e_1x1 + e_3x3, H, W)


class SqueezeNet(ImageClassifier):
    """SqueezeNet: conv1, Fire modules fire2 … fire9 with three max pools between them, conv10, global pool.

    Args:
        stem_channels: filters of conv1 (96 in 1.0, 64 in 1.1).
        stem_kernel_size: conv1's kernel (7 in 1.0, 3 in 1.1); stride 2, no padding.
        pool_after: the layers, numbered as in the paper (conv1 = 1, fire2 … fire9 = 2 … 9), after which a
            3×3, stride-2 max pool downsamples: ``(1, 4, 8)`` in 1.0, ``(1, 3, 5)`` in 1.1.
        base_e, incr_e, pct_3x3, freq, squeeze_ratio: the metaparameters of the Fire modules' widths
            (§5.1, :func:`fire_widths`); the defaults are SqueezeNet's.
        dropout: dropout probability after fire9 (the paper's 0.5).
        num_classes: filters of conv10, one class map each; 0 leaves conv10 out and returns the pooled
            fire9 features.
        in_chans: channels of the input image.
    """

    min_input_size = smallest_input_size(7)  # of SqueezeNet 1.0; each instance sets its own
    model_name = "squeezenet"
    first_conv = "features.conv1.conv"
    classifier_name = "conv10"  # a 1×1 convolution before the pool, not a linear layer after it
    head_dropout_name = "dropout"

    def __init__(
        self,
        stem_channels: int = 96,
        stem_kernel_size: int = 7,
        pool_after: tuple[int, ...] = (1, 4, 8),
        base_e: int = 128,
        incr_e: int = 128,
        pct_3x3: float = 0.5,
        freq: int = 2,
        squeeze_ratio: float = 0.125,
        dropout: float = 0.5,
        num_classes: int = 1000,
        in_chans: int = 3,
    ) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.in_chans = in_chans
        self.min_input_size = smallest_input_size(stem_kernel_size, num_pools=len(pool_after))

        layers: OrderedDict[str, nn.Module] = OrderedDict()
        layers["conv1"] = ConvNormAct(in_chans, stem_channels, kernel_size=stem_kernel_size, stride=2, padding=0,
                                      norm_layer=None)
        channels = stem_channels
        for number in range(1, NUM_FIRE_MODULES + 2):  # the layers conv1, fire2, …, fire9
            if number > 1:
                fire = FireModule(channels, *fire_widths(base_e, incr_e, pct_3x3, freq, squeeze_ratio)[number - 2])
                layers[f"fire{number}"] = fire
                channels = fire.out_channels
            if number in pool_after:  # (N, C, H, W) → (N, C, ⌈(H − 3)/2⌉ + 1, ⌈(W − 3)/2⌉ + 1)
                layers[f"maxpool{number}"] = nn.MaxPool2d(kernel_size=3, stride=2, ceil_mode=True)
        self.features = nn.Sequential(layers)
        # A feature level at each stride: conv1 (2), and the last fire module before each pool (4, 8, 16).
        levels, level_modules, level, stride = [], [], [], 2
        names = list(layers)
        for i, name in enumerate(names):
            level.append(f"features.{name}")
            if name.startswith("maxpool"):
                stride *= 2
            elif i + 1 == len(names) or names[i + 1].startswith("maxpool"):
                levels.append((layers[name].out_channels, stride, f"features.{name}"))
                level_modules.append(tuple(level))
                level = []
        self.feature_info = FeatureInfo(levels)
        self.level_modules = tuple(level_modules)

        self.num_features = channels
        self.dropout = nn.Dropout(p=dropout)
        self.conv10 = self._new_classifier(num_classes, None)
        self.global_pool = ClassifierPool("avg")
        self._init_weights()

    def _new_classifier(self, num_classes: int, like: nn.Module | None) -> nn.Module:
        """conv10 → ReLU, initialised from N(0, 0.01²); or nothing, for ``num_classes=0``."""
        if num_classes == 0:
            return nn.Identity()
        reference = next(self.features.parameters())
        conv10 = ConvNormAct(self.num_features, num_classes, kernel_size=1, norm_layer=None).to(reference)
        nn.init.normal_(conv10.conv.weight, mean=0.0, std=0.01)
        nn.init.zeros_(conv10.conv.bias)
        return conv10

    def _init_weights(self) -> None:
        for module in self.features.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_uniform_(module.weight)
                nn.init.zeros_(module.bias)

    def forward_stem(self, x: torch.Tensor) -> torch.Tensor:
        return x  # conv1 is the first feature level

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """fire9's map → logits ``(N, num_classes)``: conv10 and its ReLU at every position, then the
        average; or, if ``pre_logits``, the averaged fire9 map ``(N, num_features)``."""
        x = self.dropout(x)
        if not pre_logits:
            x = self.conv10(x)  # (N, 512, h, w) → (N, num_classes, h, w): a class map per class
        return self.global_pool(x)  # (N, C, h, w) → (N, C)

_PAPER = Paper(
    title="SqueezeNet: AlexNet-level accuracy with 50x fewer parameters and <0.5MB model size",
    authors="Forrest N. Iandola, Song Han, Matthew W. Moskewicz, Khalid Ashraf, William J. Dally, Kurt Keutzer",
    year=2016,
    url="https://arxiv.org/abs/1602.07360",
)
_INNOVATIONS = (
    "the Fire module: a 1x1 squeeze layer feeding parallel 1x1 and 3x3 expand filters, concatenated",
    "fewer parameters by design: 1x1 instead of 3x3 filters, few input channels for the 3x3 filters",
    "late downsampling, so that most layers work on large activation maps",
    "no fully-connected layer: a 1x1 convolution per class and global average pooling",
    "AlexNet-level ImageNet accuracy with 50x fewer parameters (1.2M)",
)


# The paper trains with the solver of the authors' repository (its §4 points there): SGD, momentum 0.9, weight
# decay 2e-4, lr 0.04 at batch 512 decayed linearly to 0 ("poly" with power 1). Here at batch 128: lr 0.01.
_RECIPE = TrainingRecipe(optimizer="sgd", lr=0.01, momentum=0.9, weight_decay=2e-4, schedule="linear",
                         batch_size=128, source="Iandola et al. 2016, the authors' solver (lr scaled to batch 128)")


def _card(name: str, version: str, stem_kernel_size: int, params: int, params_source: str, gmacs: float,
          canonical: bool = False, notes: str = "") -> ModelCard:
    return ModelCard(
        name=name,
        architecture=f"SqueezeNet {version}",
        task="image-classification",
        paper=_PAPER,
        innovations=_INNOVATIONS,
        input=InputSpec(kind="image", shape=(3, 224, 224), min_size=smallest_input_size(stem_kernel_size)),
        params=params,
        params_source=params_source,
        reference=f"torchvision.models.{name}",
        gmacs=gmacs,
        recipe=_RECIPE,
        canonical=canonical,
        notes=notes,
    )


@register(_card("squeezenet1_0", "1.0", 7, params=1_248_424, gmacs=0.819, canonical=True,
                params_source="torchvision.models.squeezenet1_0, counted (paper: 4.8MB of 32-bit weights)"))
def squeezenet1_0(**kwargs: Any) -> SqueezeNet:
    """SqueezeNet 1.0, the paper's Table 1: a 7×7 conv1 of 96 filters, max pools after conv1, fire4, fire8."""
    return SqueezeNet(stem_channels=96, stem_kernel_size=7, pool_after=(1, 4, 8), **kwargs)


@register(_card("squeezenet1_1", "1.1", 3, params=1_235_496, gmacs=0.349,
                params_source="torchvision.models.squeezenet1_1, counted",
                notes="Released by the authors after the paper: 2.4x less computation, same accuracy."))
def squeezenet1_1(**kwargs: Any) -> SqueezeNet:
    """SqueezeNet 1.1: a 3×3 conv1 of 64 filters, max pools after conv1, fire3, fire5."""
    return SqueezeNet(stem_channels=64, stem_kernel_size=3, pool_after=(1, 3, 5), **kwargs)


if __name__ == "__main__":
    from paperzoo.cli import main

    main(["run", "squeezenet1_0"])
