r"""DenseNet.

Paper: "Densely Connected Convolutional Networks", Gao Huang, Zhuang Liu, Laurens van der Maaten, Kilian Q.
Weinberger, CVPR 2017 (arXiv 2016). https://arxiv.org/abs/1608.06993

ResNet showed that short paths from early to late layers make deep networks trainable. DenseNet takes the
idea to its limit: inside a block, every layer is connected to every later layer.

* Dense connectivity (§3, Figure 1). Layer ℓ receives the feature maps of *all* preceding layers of its
  block, concatenated along the channels, $x_\ell = H_\ell([x_0, x_1, \dots, x_{\ell-1}])$ (eq. 2).
  ResNet adds instead, $x_\ell = H_\ell(x_{\ell-1}) + x_{\ell-1}$ (eq. 1), and the paper argues that the summation
  may impede the information flow; concatenation keeps every earlier map intact, so a layer can reuse
  any of them as it is, and the loss gradient reaches each layer directly ("implicit deep supervision").
* The growth rate k (§3, "Growth rate"). Each H_ℓ produces only k feature maps (k = 32 or 48 here), so the
  ℓ-th layer of a block reads k_0 + k·(ℓ − 1) maps, k_0 being the block's input channels. Every layer
  adds a little to the block's "collective knowledge" and leaves the rest alone, so narrow layers suffice
  and the network needs fewer parameters than a ResNet of the same accuracy.
* The composite function H_ℓ (§3): batch normalisation, then ReLU, then the convolution, the
  "pre-activation" order of He et al. (2016). Each layer normalises the concatenation it reads with its
  own scale and shift, so one stored map can be weighted differently by every layer that reuses it.
* Bottleneck layers (DenseNet-B): a BN-ReLU-Conv(1×1) producing 4k maps before the BN-ReLU-Conv(3×3), so
  the expensive 3×3 convolution never sees the block's growing width.
* Transition layers between blocks (§3, "Pooling layers"): the concatenation needs equal map sizes, so
  downsampling happens only between blocks, by a 1×1 convolution and a 2×2 average pool with stride 2.
  With compression θ (DenseNet-C), a transition turns m maps into ⌊θm⌋; θ = 0.5. The ImageNet networks
  use both ideas: DenseNet-BC.

Data flow (Table 1) of DenseNet-121 (k = 32, blocks of 6, 12, 24, 16 layers) at 224×224::

    image 3×224×224
      conv0: 7×7 conv, 2k = 64, stride 2 → BN → ReLU                       64×112×112
      pool0: 3×3 max pool, stride 2                                        64×56×56
      dense_block1: 6 layers,  64 + 6·32                                  256×56×56
      transition1: BN-ReLU-Conv 1×1 (θ = 0.5), 2×2 average pool           128×28×28
      dense_block2: 12 layers, 128 + 12·32                                512×28×28
      transition2                                                         256×14×14
      dense_block3: 24 layers, 256 + 24·32                               1024×14×14
      transition3                                                         512×7×7
      dense_block4: 16 layers, 512 + 16·32                               1024×7×7
      final_norm: BN → ReLU                                              1024×7×7
      global average pool → fc                                            1000 logits

    dense layer ℓ:  [x_0, …, x_{ℓ−1}] ─► BN-ReLU-Conv 1×1 (4k) ─► BN-ReLU-Conv 3×3 (k) ─► x_ℓ
                    k_0 + k·(ℓ−1) maps                                                   k maps

Deviations from the paper, all torchvision's, kept so that its weights load and its outputs match:

* Transition layers are BN → ReLU → 1×1 conv → 2×2 average pool: the paper's text lists batch
  normalisation, the 1×1 convolution and the pool, without the ReLU.
* ``final_norm`` (torchvision's ``norm5`` and the ReLU in its ``forward``), a BN-ReLU after the last block,
  is not in Table 1: with pre-activation layers the last block ends in a bare convolution, and this pair
  normalises and rectifies its output before the global pool.
* ``drop_rate`` puts dropout after the 3×3 convolution of each dense layer only; the paper, which uses
  dropout (0.2) only on CIFAR and SVHN without augmentation, puts it after every convolution but the
  first. The ImageNet models use none (the default 0).
* Initialisation: He (Kaiming) normal with fan-in for the convolutions, BatchNorm scale 1 and shift 0,
  PyTorch's default for the fc weights and zero fc biases.

``memory_efficient=True`` is not from the paper but from Pleiss et al., "Memory-Efficient Implementation of
DenseNets" (2017, https://arxiv.org/abs/1707.06990), as torchvision's flag of that name: a naive dense block
stores the concatenation and its normalised copy for every layer, memory quadratic in depth; checkpointing
the concatenate-BN-ReLU-Conv(1×1) part discards those and recomputes them in the backward pass: memory
linear in depth, for some extra time. Outputs and gradients are unchanged. Unlike torchvision, which lets
the recomputed BatchNorm update its running statistics a second time in every training step, this file
restores them after the recomputation, so training with and without the flag leaves the same statistics.

As a backbone (``features_only=True``), DenseNet-121 returns four maps: the outputs of dense_block1,
dense_block2 and dense_block3 (256, 512, 1024 channels at strides 4, 8, 16: each block's concatenation,
taken before the transition that follows it normalises and halves it, as timm takes them), and the output
of ``final_norm`` (1024 channels at stride 32): dense_block4 after torchvision's ``norm5`` and ReLU, the
map the classifier pools, since the bare concatenation of a pre-activation network is not normalised.

TorchScript: torchvision's DenseNet compiles with ``torch.jit.script``; this one does not (its input check and the
shared classifier plumbing are Python that TorchScript cannot compile, and TorchScript is deprecated upstream).
``torch.export``, ``torch.compile(fullgraph=True)`` and ``torch.fx`` capture it instead (tests/test_export.py,
tests/test_graph_capture.py).
"""

from __future__ import annotations

import contextlib
import math
from collections import OrderedDict
from collections.abc import Iterator
from typing import Any

import torch
import torch.utils.checkpoint
from torch import nn

from paperzoo.layers import ConvNormAct, FeatureInfo
from paperzoo.layers.classifier import ClassifierPool, ImageClassifier
from paperzoo.registry import InputSpec, ModelCard, Paper, TrainingRecipe, register

__all__ = ["DenseNet", "DenseBlock", "DenseLayer", "Transition", "BNReLUConv"]


class BNReLUConv(nn.Sequential):
    """The composite function in pre-activation order (§3): BN → ReLU → convolution (no bias: the next
    layer's BN absorbs any shift). Children ``norm``, ``act``, ``conv``."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int) -> None:
        super().__init__(OrderedDict(
            norm=nn.BatchNorm2d(in_channels),
            act=nn.ReLU(inplace=True),  # acts on the fresh BN output, never on a stored feature map
            conv=nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2, bias=False),
        ))


@contextlib.contextmanager
def _running_stats_kept(norm: nn.BatchNorm2d) -> Iterator[None]:
    """Undo what a BatchNorm's recomputation in the backward pass does to its running statistics (and its
    batch counter): they were already updated once, in the forward pass."""
    saved = [buffer.clone() for buffer in norm.buffers()]
    try:
        yield
    finally:
        with torch.no_grad():
            for buffer, value in zip(norm.buffers(), saved, strict=True):
                buffer.copy_(value)


class DenseLayer(nn.Module):
    """One layer ℓ of a dense block: H_ℓ with a bottleneck (DenseNet-B), producing k new feature maps.

    Args:
        in_channels: the channels of [x_0, …, x_{ℓ−1}], k_0 + k·(ℓ − 1).
        growth_rate: k, the feature maps this layer adds.
        bottleneck_factor: the 1×1 convolution produces ``bottleneck_factor · k`` maps (the paper's 4k;
            torchvision's ``bn_size``).
        drop_rate: dropout after the 3×3 convolution, in training.
        memory_efficient: recompute the concatenation and the 1×1 bottleneck in the backward pass.
    """

    def __init__(self, in_channels: int, growth_rate: int, bottleneck_factor: int = 4, drop_rate: float = 0.0,
                 memory_efficient: bool = False) -> None:
        super().__init__()
        width = bottleneck_factor * growth_rate
        self.bottleneck = BNReLUConv(in_channels, width, kernel_size=1)
        self.conv3x3 = BNReLUConv(width, growth_rate, kernel_size=3)
        self.dropout = nn.Dropout(drop_rate) if drop_rate > 0 else nn.Identity()
        self.memory_efficient = memory_efficient

    def concat_and_reduce(self, *features: torch.Tensor) -> torch.Tensor:
        x = torch.cat(features, dim=1)  # [x_0, x_1, …, x_{ℓ−1}]: (N, k_0 + k·(ℓ−1), H, W)
        return self.bottleneck(x)  # (N, 4k, H, W)

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        """The block's feature maps so far ``[x_0, …, x_{ℓ−1}]`` → the new maps x_ℓ ``(N, k, H, W)``."""
        if self.memory_efficient and any(f.requires_grad for f in features):
            # The concatenation and its normalised copy grow with ℓ; keeping them for every layer is what
            # makes a naive dense block's memory quadratic in depth. Recompute them in the backward pass.
            reduced = torch.utils.checkpoint.checkpoint(
                self.concat_and_reduce, *features, use_reentrant=False,
                context_fn=lambda: (contextlib.nullcontext(), _running_stats_kept(self.bottleneck.norm)))
        else:
            reduced = self.concat_and_reduce(*features)
        return self.dropout(self.conv3x3(reduced))


class DenseBlock(nn.ModuleDict):
    """A dense block (Figure 1): ``num_layers`` dense layers, each reading all maps before it.

    The output is the concatenation of the block's input and every layer's maps, k_0 + k·L channels
    (``out_channels``). Children ``layer1`` … ``layer{L}``.
    """

    def __init__(self, num_layers: int, in_channels: int, growth_rate: int, bottleneck_factor: int = 4,
                 drop_rate: float = 0.0, memory_efficient: bool = False) -> None:
        super().__init__()
        for i in range(num_layers):
            # layer ℓ = i + 1 reads k_0 + k·(ℓ − 1) channels: the input and the i maps added before it
            self[f"layer{i + 1}"] = DenseLayer(in_channels + i * growth_rate, growth_rate, bottleneck_factor,
                                               drop_rate, memory_efficient)
        self.out_channels = in_channels + num_layers * growth_rate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = [x]  # x_0, the block's input
        for layer in self.values():
            features.append(layer(features))  # x_ℓ = H_ℓ([x_0, x_1, …, x_{ℓ−1}])   (eq. 2)
        return torch.cat(features, dim=1)  # (N, k_0 + k·L, H, W)


class Transition(nn.Sequential):
    """A transition layer between two blocks: BN-ReLU-Conv(1×1) compressing m maps to ⌊θm⌋, then a 2×2
    average pool with stride 2, the only place where a DenseNet halves its maps. Children ``compress``,
    ``pool``."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__(OrderedDict(
            compress=BNReLUConv(in_channels, out_channels, kernel_size=1),
            pool=nn.AvgPool2d(kernel_size=2, stride=2),  # (N, C, H, W) → (N, C, H/2, W/2)
        ))


class DenseNet(ImageClassifier):
    """A DenseNet-BC for ImageNet (Table 1): a stem, dense blocks joined by transitions, a classifier.

    Args:
        growth_rate: k, the maps each dense layer adds (32; 48 for DenseNet-161).
        layers_per_block: dense layers in each block, e.g. ``(6, 12, 24, 16)`` for DenseNet-121.
        stem_channels: outputs of the 7×7 stem convolution, 2k in the paper.
        bottleneck_factor: the bottleneck's 1×1 convolution produces ``bottleneck_factor · k`` maps (4).
        compression: θ, the fraction of maps a transition keeps (0.5, DenseNet-C); a transition outputs ⌊θm⌋.
        drop_rate: dropout after each dense layer's 3×3 convolution (0 for ImageNet).
        num_classes: outputs of the fc layer; 0 leaves it out and returns the pooled features.
        in_chans: channels of the input image.
        memory_efficient: checkpoint each layer's concatenation and bottleneck (see the module docstring).

    ``set_grad_checkpointing()`` sets ``memory_efficient``: each layer's concatenation and bottleneck checkpointed.
    """

    # Three 2×2 average pools need 2³ = 8 pixels after pool0, so 15 after conv0, so 29 at the input
    # (conv0 and pool0 both map n pixels to ⌊(n − 1)/2⌋ + 1). dense_block4 then works on a 1×1 map.
    min_input_size = 29
    model_name = "densenet"
    first_conv = "conv0.conv"

    def __init__(
        self,
        growth_rate: int = 32,
        layers_per_block: tuple[int, ...] = (6, 12, 24, 16),
        stem_channels: int = 64,
        bottleneck_factor: int = 4,
        compression: float = 0.5,
        drop_rate: float = 0.0,
        num_classes: int = 1000,
        in_chans: int = 3,
        memory_efficient: bool = False,
    ) -> None:
        super().__init__()
        if not 0.0 < compression <= 1.0:
            raise ValueError(f"compression θ must be in (0, 1], got {compression}")
        self.num_classes = num_classes
        self.in_chans = in_chans

        # The stem is post-activation (conv → BN → ReLU): there is no earlier BN to normalise its input.
        self.conv0 = ConvNormAct(in_chans, stem_channels, kernel_size=7, stride=2, padding=3)
        self.pool0 = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)

        num_blocks = len(layers_per_block)
        blocks: OrderedDict[str, nn.Module] = OrderedDict()
        # A feature level is a dense block's output (before the next transition; the last one normalised by
        # final_norm, the pre-activation network's last BN-ReLU), computed by the transition before it and the block.
        levels, level_modules = [], []
        channels, stride = stem_channels, 4
        for i, num_layers in enumerate(layers_per_block):
            blocks[f"dense_block{i + 1}"] = DenseBlock(num_layers, channels, growth_rate, bottleneck_factor,
                                                       drop_rate, memory_efficient)
            channels += num_layers * growth_rate  # k_0 + k·L: the block passes on everything it read and made
            is_last = i == num_blocks - 1
            levels.append((channels, stride, "final_norm" if is_last else f"blocks.dense_block{i + 1}"))
            level_modules.append(((f"blocks.transition{i}",) if i else ()) + (f"blocks.dense_block{i + 1}",)
                                 + (("final_norm",) if is_last else ()))
            if not is_last:
                compressed = math.floor(compression * channels)  # ⌊θm⌋
                blocks[f"transition{i + 1}"] = Transition(channels, compressed)
                channels, stride = compressed, stride * 2
        self.blocks = nn.Sequential(blocks)
        self.feature_info = FeatureInfo(levels)
        self.level_modules = tuple(level_modules)

        self.num_features = channels
        self.final_norm = nn.Sequential(OrderedDict(norm=nn.BatchNorm2d(channels), act=nn.ReLU(inplace=True)))
        self.global_pool = ClassifierPool("avg")
        self.fc = nn.Linear(channels, num_classes) if num_classes > 0 else nn.Identity()
        self._init_weights()

    def _init_weights(self) -> None:
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight)
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
            elif isinstance(module, nn.Linear):
                self.init_classifier(module)

    def init_classifier(self, fc: nn.Module) -> None:
        nn.init.zeros_(fc.bias)  # the weight keeps torch's default, as torchvision

    def forward_stem(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool0(self.conv0(x))

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """timm's name for ``memory_efficient``: set it on every dense layer (see the module docstring)."""
        for module in self.modules():
            if isinstance(module, DenseLayer):
                module.memory_efficient = enable


_PAPER = Paper(
    title="Densely Connected Convolutional Networks",
    authors="Gao Huang, Zhuang Liu, Laurens van der Maaten, Kilian Q. Weinberger",
    year=2017,
    url="https://arxiv.org/abs/1608.06993",
)
_INNOVATIONS = (
    "dense connectivity: each layer reads the concatenation of all earlier maps, x_l = H_l([x_0, ..., x_l-1])",
    "a small growth rate k: every layer adds only k maps to the block's collective knowledge",
    "pre-activation layers (BN-ReLU-Conv) with a 1x1 bottleneck of 4k maps before each 3x3 (DenseNet-B)",
    "transition layers with compression theta = 0.5 and 2x2 average pooling between blocks (DenseNet-C)",
    "feature reuse makes it more parameter-efficient than ResNet at equal accuracy",
)


# §4.2: SGD with Nesterov momentum 0.9 (without dampening), weight decay 1e-4, lr 0.1 divided by 10 at 50% and
# 75% of the training epochs (CIFAR and SVHN, batch 64; on ImageNet ÷10 at epochs 30 and 60 of 90, batch 256).
_RECIPE = TrainingRecipe(optimizer="sgd", lr=0.1, momentum=0.9, nesterov=True, weight_decay=1e-4, schedule="step",
                         milestones=(0.5, 0.75), batch_size=64, source="Huang et al. 2017, §4.2")


def _card(name: str, layers: int, growth_rate: int, params: int, gmacs: float, canonical: bool = False) -> ModelCard:
    return ModelCard(
        name=name,
        architecture=f"DenseNet-{layers} (k={growth_rate})",
        task="image-classification",
        paper=_PAPER,
        innovations=_INNOVATIONS,
        input=InputSpec(kind="image", shape=(3, 224, 224), min_size=DenseNet.min_input_size),
        params=params,
        params_source=f"torchvision.models.{name}, counted",
        reference=f"torchvision.models.{name}",
        gmacs=gmacs,
        recipe=_RECIPE,
        canonical=canonical,
        notes="DenseNet-BC (bottleneck and compression 0.5) as in Table 1; memory_efficient=True checkpoints "
              "the bottlenecks.",
    )


@register(_card("densenet121", 121, 32, params=7_978_856, gmacs=2.834, canonical=True))
def densenet121(**kwargs: Any) -> DenseNet:
    """DenseNet-121: k = 32, blocks of 6, 12, 24, 16 layers."""
    return DenseNet(growth_rate=32, layers_per_block=(6, 12, 24, 16), stem_channels=64, **kwargs)


@register(_card("densenet161", 161, 48, params=28_681_000, gmacs=7.728))
def densenet161(**kwargs: Any) -> DenseNet:
    """DenseNet-161: k = 48, blocks of 6, 12, 36, 24 layers, a stem of 2k = 96 maps."""
    return DenseNet(growth_rate=48, layers_per_block=(6, 12, 36, 24), stem_channels=96, **kwargs)


@register(_card("densenet169", 169, 32, params=14_149_480, gmacs=3.36))
def densenet169(**kwargs: Any) -> DenseNet:
    """DenseNet-169: k = 32, blocks of 6, 12, 32, 32 layers."""
    return DenseNet(growth_rate=32, layers_per_block=(6, 12, 32, 32), stem_channels=64, **kwargs)


@register(_card("densenet201", 201, 32, params=20_013_928, gmacs=4.291))
def densenet201(**kwargs: Any) -> DenseNet:
    """DenseNet-201: k = 32, blocks of 6, 12, 48, 32 layers."""
    return DenseNet(growth_rate=32, layers_per_block=(6, 12, 48, 32), stem_channels=64, **kwargs)


if __name__ == "__main__":
    from paperzoo.cli import main

    main(["run", "densenet121"])
