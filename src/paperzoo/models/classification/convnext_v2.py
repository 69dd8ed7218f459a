r"""ConvNeXt V2.

Paper: "ConvNeXt V2: Co-designing and Scaling ConvNets with Masked Autoencoders", Sanghyun Woo, Shoubhik Debnath,
Ronghang Hu, Xinlei Chen, Zhuang Liu, In So Kweon, Saining Xie, CVPR 2023. https://arxiv.org/abs/2301.00808

ConvNeXt (V1, ``convnext.py``) matched the vision Transformers in supervised training; V2 asks whether it can
also profit from the self-supervised pre-training that made them strong, masked autoencoding (MAE). Two things
were needed, designed together:

* A fully convolutional masked autoencoder, FCMAE. 60% of the 32×32 patches of an image are removed; the
  encoder, a ConvNeXt, sees only the visible pixels, as a sparse array computed with sparse convolutions (a
  dense convolution would let the masked regions leak into the visible ones through its sliding window), and a
  single lightweight ConvNeXt block decodes; the loss is the mean squared error on the masked patches. After
  pre-training the sparse convolutions are ordinary dense ones again, so the classifier below is all that is
  fine-tuned and deployed. (Pre-training is not built here: this file is the network.)
* Global Response Normalization, GRN. Pre-trained with FCMAE, ConvNeXt V1 shows *feature collapse* in its
  blocks' wide MLP layer: many channels are dead or saturated and the rest are redundant (the paper shows the
  activations, and a low pairwise cosine distance between the channels). GRN makes the channels compete, like
  lateral inhibition between biological neurons, in three steps on an H×W×C map X: (1) aggregation, the L2
  norm of each channel over H×W; (2) normalization, each channel's share of the total response;
  (3) calibration:

  $$
  G(X) = \{\|X_1\|, \|X_2\|, \dots, \|X_C\|\} \in \mathbb{R}^C, \qquad N(\|X_i\|) = \frac{\|X_i\|}{\sum_j \|X_j\|},
  \qquad X_i = X_i \cdot N(G(X)_i),
  $$

  and, to ease optimisation, two learned per-channel parameters γ and β, both initialised to zero, and a
  residual connection, $X_i \leftarrow \gamma_i \cdot X_i \cdot N(G(X)_i) + \beta_i + X_i$, so a fresh GRN is the
  identity. GRN has no other parameters and costs almost nothing.

The ConvNeXt V2 block is V1's with a GRN after the GELU of the MLP (on the 4C-wide layer), and without V1's layer
scale γ (with GRN it became redundant, the paper finds)::

    x ──► 7×7 depthwise conv ─► LN ─► 1×1, 4C ─► GELU ─► GRN ─► 1×1, C ─► drop path ──(+)──► y
    └───────────────────────────────────── identity ────────────────────────────────────┘

The macro-architecture is V1's (patchify stem, four stages, LN + 2×2 stride-2 downsampling between them, pooled
LN and linear head); the family (the paper's "model scaling") spans 3.7M to 659M parameters:
Atto C = (40, 80, 160, 320), Femto (48, …, 384), Pico (64, …, 512), each with B = (2, 2, 6, 2) blocks per stage;
Nano C = (80, …, 640), B = (2, 2, 8, 2); Tiny C = (96, …, 768), B = (3, 3, 9, 3); Base (128, …, 1024), Large
(192, …, 1536) and Huge (352, …, 2816), each with B = (3, 3, 27, 3). Every stage doubles the width of the last.

Data flow of ConvNeXt V2-Tiny at 224×224 (stage names as in ``convnext.py``, after ResNet's)::

    image 3×224×224
      stem: 4×4 conv, stride 4 ("patchify") → LN                      96×56×56
      res2: 3 ConvNeXt V2 blocks                                       96×56×56
      res3: downsampling (LN → 2×2 conv, stride 2); 3 blocks          192×28×28
      res4: downsampling; 9 blocks                                    384×14×14
      res5: downsampling; 3 blocks                                    768×7×7
      global average pool → LN → fc                                   1000 logits

As in ``convnext.py``, the block's 1×1 convolutions are ``nn.Linear`` layers on a channels-last ``(N, H, W, C)``
tensor (the same linear map at every pixel), the block's LayerNorm and GRN work there too, and the stem and
downsampling layers use :class:`LayerNorm2d` on channels-first maps.

Deviations from the paper:

* GRN's normalization (2) divides by the *mean* of the channel norms plus 1e-6, ‖X_i‖ / (mean_j ‖X_j‖ + 1e-6),
  not by their sum: the paper's own pseudo-code (Algorithm 1), the released code and timm do so, and the weights
  are trained with it. It is eq. 2 multiplied by C (a constant that γ absorbs), and the epsilon guards an
  all-zero map. ``tests/test_convnext_v2.py`` checks the layer against eq. 1–3 computed channel by channel.
* The LayerNorm epsilon is 1e-6 (the released code and timm); the paper does not state it.
* Initialisation as timm (and ConvNeXt V1's released code): truncated normal, std 0.02, for every convolution and
  linear layer, zero biases, LayerNorms at 1 and 0, GRN's γ and β at 0 as the paper says. (The V2 release leaves
  that call commented out, so PyTorch's default initialisation applies there.)
* Stochastic depth (p growing linearly to ``stochastic_depth_prob`` at the last block) defaults to 0, timm's and
  the released code's default; the paper's fine-tuning recipes set a rate per model size. Only in training.
* timm builds Atto … Nano with 1×1 ``nn.Conv2d`` layers on channels-first maps (its ``conv_mlp``) and the larger
  ones with ``nn.Linear``: the same function; this file uses ``nn.Linear`` for all, and the timm converter
  reshapes the 1×1 kernels.

TorchScript: timm's ConvNeXt V2 compiles with ``torch.jit.script``; this one does not (its input check and the
shared classifier plumbing are Python that TorchScript cannot compile, and TorchScript is deprecated upstream).
``torch.export``, ``torch.compile(fullgraph=True)`` and ``torch.fx`` capture it instead (tests/test_export.py,
tests/test_graph_capture.py).
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from paperzoo.layers import ConvNormAct, FeatureInfo, StochasticDepth
from paperzoo.layers.classifier import ClassifierPool, ImageClassifier
from paperzoo.registry import InputSpec, ModelCard, Paper, register

__all__ = ["ConvNeXtV2", "ConvNeXtV2Block", "ConvNeXtV2Stage", "DownsamplingLayer", "GlobalResponseNorm",
           "LayerNorm2d", "VARIANTS"]

# Model scaling: blocks per stage and widths per stage, res2 … res5.
VARIANTS: dict[str, tuple[tuple[int, ...], tuple[int, ...]]] = {
    "atto": ((2, 2, 6, 2), (40, 80, 160, 320)),
    "femto": ((2, 2, 6, 2), (48, 96, 192, 384)),
    "pico": ((2, 2, 6, 2), (64, 128, 256, 512)),
    "nano": ((2, 2, 8, 2), (80, 160, 320, 640)),
    "tiny": ((3, 3, 9, 3), (96, 192, 384, 768)),
    "base": ((3, 3, 27, 3), (128, 256, 512, 1024)),
    "large": ((3, 3, 27, 3), (192, 384, 768, 1536)),
    "huge": ((3, 3, 27, 3), (352, 704, 1408, 2816)),
}


class LayerNorm2d(nn.LayerNorm):
    """LayerNorm over the channels of each pixel of a channels-first ``(N, C, H, W)`` map: ``nn.LayerNorm(C)``
    applied with the channels moved last and back. Used after the patchify stem and before every downsampling
    convolution, as in ConvNeXt V1."""

    def __init__(self, channels: int, eps: float = 1e-6) -> None:
        super().__init__(channels, eps=eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.permute(0, 2, 3, 1)  # (N, C, H, W) → (N, H, W, C)
        x = F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)
        return x.permute(0, 3, 1, 2)  # → (N, C, H, W)


class GlobalResponseNorm(nn.Module):
    """Global Response Normalization on a channels-last ``(N, H, W, C)`` map: each channel is rescaled by its
    share of the total response of all channels, through learned γ and β, around a residual connection.

    Args:
        channels: C.
        eps: added to the mean channel norm in eq. 2 (1e-6, the released code's).

    γ (``gamma``) and β (``beta``) keep the paper's symbols; both start at zero, which makes the layer the
    identity at initialisation.
    """

    def __init__(self, channels: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.gamma = nn.Parameter(torch.zeros(channels))
        self.beta = nn.Parameter(torch.zeros(channels))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # (1) aggregation: gx_i = ‖X_i‖, the L2 norm of channel i over all positions; (N, H, W, C) → (N, 1, 1, C).
        gx = torch.linalg.vector_norm(x, ord=2, dim=(1, 2), keepdim=True)
        # (2) normalization: each channel's norm relative to the others' (over the mean, see Deviations).
        nx = gx / (gx.mean(dim=-1, keepdim=True) + self.eps)  # (N, 1, 1, C)
        # (3) calibration, with the learned γ, β and the residual: X_i ← γ_i · X_i · N(G(X)_i) + β_i + X_i.
        return self.gamma * (x * nx) + self.beta + x


class ConvNeXtV2Block(nn.Module):
    """The ConvNeXt V2 block: V1's block with GRN after the MLP's GELU and without layer scale.

    Args:
        channels: the block's width C (input and output).
        kernel_size: of the depthwise convolution (7, as V1).
        expansion: the MLP's hidden width as a multiple of C (4, as V1); GRN works on this wide layer.
        stochastic_depth_prob: probability of dropping the residual branch of an example in training.
    """

    def __init__(self, channels: int, kernel_size: int = 7, expansion: int = 4,
                 stochastic_depth_prob: float = 0.0) -> None:
        super().__init__()
        hidden = expansion * channels
        self.depthwise_conv = nn.Conv2d(channels, channels, kernel_size, padding=kernel_size // 2, groups=channels)
        self.norm = nn.LayerNorm(channels, eps=1e-6)
        self.expand = nn.Linear(channels, hidden)  # 1×1 conv, C → 4C
        self.act = nn.GELU()
        # Where FCMAE pre-training made V1's channels collapse: GRN makes the 4C channels compete.
        self.grn = GlobalResponseNorm(hidden)
        self.project = nn.Linear(hidden, channels)  # 1×1 conv, 4C → C
        self.stochastic_depth = StochasticDepth(stochastic_depth_prob)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        branch = self.depthwise_conv(x)
        branch = branch.permute(0, 2, 3, 1)  # (N, C, H, W) → (N, H, W, C): the 1×1 layers are Linear
        branch = self.grn(self.act(self.expand(self.norm(branch))))  # (N, H, W, C) → (N, H, W, 4C)
        branch = self.project(branch)  # → (N, H, W, C)
        branch = branch.permute(0, 3, 1, 2)  # → (N, C, H, W)
        return x + self.stochastic_depth(branch)  # no layer scale γ: GRN made it redundant


class DownsamplingLayer(nn.Sequential):
    """Between stages, as V1: LayerNorm, then a 2×2 convolution with stride 2 that halves the resolution and
    doubles the width."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__(OrderedDict(
            norm=LayerNorm2d(in_channels),
            conv=nn.Conv2d(in_channels, out_channels, kernel_size=2, stride=2),
        ))


class ConvNeXtV2Stage(nn.Module):
    """One stage (res2 … res5): the downsampling layer that opens it (none for res2), then ``depth`` blocks."""

    def __init__(self, in_channels: int, channels: int, depth: int, stochastic_depth_probs: list[float],
                 downsample: bool = True, kernel_size: int = 7, expansion: int = 4) -> None:
        super().__init__()
        self.downsample = DownsamplingLayer(in_channels, channels) if downsample else nn.Identity()
        self.blocks = nn.Sequential(*[
            ConvNeXtV2Block(channels, kernel_size, expansion, stochastic_depth_probs[i]) for i in range(depth)
        ])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(self.downsample(x))


class ConvNeXtV2(ImageClassifier):
    """ConvNeXt V2: a patchify stem, four stages of ConvNeXt V2 blocks, a pooled, normalised linear head.

    Args:
        depths: blocks per stage, res2 … res5 ((3, 3, 9, 3) for Tiny).
        widths: channels per stage ((96, 192, 384, 768) for Tiny).
        stochastic_depth_prob: the drop probability of the last block; block i of n gets
            ``stochastic_depth_prob * i / (n - 1)``.
        kernel_size: of the depthwise convolutions.
        expansion: hidden width of the blocks' MLP, as a multiple of the block's width.
        num_classes: outputs of the final fc layer; 0 leaves it out and returns the pooled, normalised features.
        in_chans: channels of the input image.

    ``set_grad_checkpointing()`` checkpoints each ConvNeXt V2 block (and downsampling layer) in training.
    """

    # The stem divides by 4 and each of the three downsampling layers by 2 with a 2×2 kernel, which needs a
    # map of at least 2×2: below 32×32 res5's downsampling gets a 1×1 map and fails, in timm too (checked).
    min_input_size = 32
    first_conv = "stem.conv"
    head_modules = ("head_norm",)  # the LayerNorm after the pool (§2.6)
    model_name = "convnext_v2"

    def __init__(
        self,
        depths: tuple[int, ...] = (3, 3, 9, 3),
        widths: tuple[int, ...] = (96, 192, 384, 768),
        stochastic_depth_prob: float = 0.0,
        kernel_size: int = 7,
        expansion: int = 4,
        num_classes: int = 1000,
        in_chans: int = 3,
    ) -> None:
        super().__init__()
        if len(depths) != len(widths):
            raise ValueError(f"depths and widths need one entry per stage, got {depths} and {widths}")
        self.num_classes = num_classes
        self.in_chans = in_chans

        self.stem = ConvNormAct(in_chans, widths[0], kernel_size=4, stride=4, padding=0,
                                norm_layer=LayerNorm2d, act_layer=None, bias=True)

        total_blocks = sum(depths)
        probs = [stochastic_depth_prob * i / max(total_blocks - 1, 1) for i in range(total_blocks)]

        stages: OrderedDict[str, nn.Module] = OrderedDict()
        levels = []
        in_channels, first_block = widths[0], 0
        for i, (depth, channels) in enumerate(zip(depths, widths, strict=True)):
            name = f"res{i + 2}"
            stages[name] = ConvNeXtV2Stage(in_channels, channels, depth, probs[first_block:first_block + depth],
                                           downsample=i > 0, kernel_size=kernel_size, expansion=expansion)
            levels.append((channels, 4 * 2**i, f"stages.{name}"))
            in_channels, first_block = channels, first_block + depth
        self.stages = nn.Sequential(stages)
        self.feature_info = FeatureInfo(levels)
        # a level is a stage's downsampling layer and its blocks: checkpointed one by one
        self.level_modules = tuple((f"stages.{name}.downsample", f"stages.{name}.blocks") for name in stages)

        self.num_features = widths[-1]
        self.global_pool = ClassifierPool("avg")
        self.head_norm = nn.LayerNorm(self.num_features, eps=1e-6)
        self.fc = nn.Linear(self.num_features, num_classes) if num_classes > 0 else nn.Identity()
        self._init_weights()

    def _init_weights(self) -> None:
        for module in self.modules():
            if isinstance(module, (nn.Conv2d, nn.Linear)):
                self.init_classifier(module)

    def init_classifier(self, layer: nn.Module) -> None:
        nn.init.trunc_normal_(layer.weight, std=0.02)
        if layer.bias is not None:
            nn.init.zeros_(layer.bias)


_PAPER = Paper(
    title="ConvNeXt V2: Co-designing and Scaling ConvNets with Masked Autoencoders",
    authors="Sanghyun Woo, Shoubhik Debnath, Ronghang Hu, Xinlei Chen, Zhuang Liu, In So Kweon, Saining Xie",
    year=2023,
    url="https://arxiv.org/abs/2301.00808",
)
_INNOVATIONS = (
    "FCMAE: a fully convolutional masked autoencoder, sparse convolutions on the visible 40% of the patches",
    "Global Response Normalization: channels compete by their share of the total L2 response",
    "GRN after the MLP's GELU prevents the feature collapse of MAE pre-training; layer scale is dropped",
    "one family from Atto (3.7M) to Huge (659M) parameters, the V1 macro-architecture throughout",
)


def _card(name: str, size: str, params: int, gmacs: float, canonical: bool = False) -> ModelCard:
    return ModelCard(
        name=name,
        architecture=f"ConvNeXt V2-{size}",
        task="image-classification",
        paper=_PAPER,
        innovations=_INNOVATIONS,
        input=InputSpec(kind="image", shape=(3, 224, 224), min_size=ConvNeXtV2.min_input_size),
        params=params,
        params_source=f"timm:{name}, counted",
        reference=f"timm:{name}",
        gmacs=gmacs,
        canonical=canonical,
    )


def _convnext_v2(size: str, **kwargs: Any) -> ConvNeXtV2:
    depths, widths = VARIANTS[size]
    return ConvNeXtV2(depths=depths, widths=widths, **kwargs)


@register(_card("convnextv2_atto", "Atto", params=3_708_400, gmacs=0.547))
def convnextv2_atto(**kwargs: Any) -> ConvNeXtV2:
    """ConvNeXt V2-Atto: widths (40, 80, 160, 320), blocks (2, 2, 6, 2)."""
    return _convnext_v2("atto", **kwargs)


@register(_card("convnextv2_femto", "Femto", params=5_233_240, gmacs=0.780))
def convnextv2_femto(**kwargs: Any) -> ConvNeXtV2:
    """ConvNeXt V2-Femto: widths (48, 96, 192, 384), blocks (2, 2, 6, 2)."""
    return _convnext_v2("femto", **kwargs)


@register(_card("convnextv2_pico", "Pico", params=9_066_280, gmacs=1.367))
def convnextv2_pico(**kwargs: Any) -> ConvNeXtV2:
    """ConvNeXt V2-Pico: widths (64, 128, 256, 512), blocks (2, 2, 6, 2)."""
    return _convnext_v2("pico", **kwargs)


@register(_card("convnextv2_nano", "Nano", params=15_623_800, gmacs=2.446))
def convnextv2_nano(**kwargs: Any) -> ConvNeXtV2:
    """ConvNeXt V2-Nano: widths (80, 160, 320, 640), blocks (2, 2, 8, 2)."""
    return _convnext_v2("nano", **kwargs)


@register(_card("convnextv2_tiny", "Tiny", params=28_635_496, gmacs=4.456, canonical=True))
def convnextv2_tiny(**kwargs: Any) -> ConvNeXtV2:
    """ConvNeXt V2-Tiny: widths (96, 192, 384, 768), blocks (3, 3, 9, 3)."""
    return _convnext_v2("tiny", **kwargs)


@register(_card("convnextv2_base", "Base", params=88_717_800, gmacs=15.355))
def convnextv2_base(**kwargs: Any) -> ConvNeXtV2:
    """ConvNeXt V2-Base: widths (128, 256, 512, 1024), blocks (3, 3, 27, 3)."""
    return _convnext_v2("base", **kwargs)


@register(_card("convnextv2_large", "Large", params=197_956_840, gmacs=34.361))
def convnextv2_large(**kwargs: Any) -> ConvNeXtV2:
    """ConvNeXt V2-Large: widths (192, 384, 768, 1536), blocks (3, 3, 27, 3)."""
    return _convnext_v2("large", **kwargs)


@register(_card("convnextv2_huge", "Huge", params=660_289_640, gmacs=114.922))
def convnextv2_huge(**kwargs: Any) -> ConvNeXtV2:
    """ConvNeXt V2-Huge: widths (352, 704, 1408, 2816), blocks (3, 3, 27, 3)."""
    return _convnext_v2("huge", **kwargs)


if __name__ == "__main__":
    from paperzoo.cli import main

    main(["run", "convnextv2_tiny"])
