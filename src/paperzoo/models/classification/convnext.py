"""ConvNeXt.

Paper: "A ConvNet for the 2020s", Zhuang Liu, Hanzi Mao, Chao-Yuan Wu, Christoph Feichtenhofer, Trevor
Darrell, Saining Xie, CVPR 2022 (arXiv 2022). https://arxiv.org/abs/2201.03545

By 2021 hierarchical vision Transformers (Swin) had overtaken ConvNets, and the usual explanation was
attention. The paper tests that explanation the other way round: it takes a standard ResNet-50 and
"modernises" it one design decision at a time towards a Swin-T, with no attention anywhere, measuring
ImageNet-1K top-1 after every step (Figure 2, all at about 4.5 GFLOPs). The steps, in the paper's order:

0. Training recipe (§2.1). The DeiT/Swin recipe alone (300 epochs, AdamW, Mixup, CutMix, RandAugment,
   Random Erasing, stochastic depth, label smoothing) lifts ResNet-50 from 76.1% to 78.8%. Everything
   below is architecture, trained with this fixed recipe.
1. Macro design (§2.2).
   * Stage compute ratio: Swin-T spends its blocks 1:1:3:1 over its four stages, so the blocks per stage
     go from ResNet-50's (3, 4, 6, 3) to (3, 3, 9, 3) (79.4%).
   * "Patchify" stem: ResNet's 7×7 stride-2 convolution and max pool become one 4×4 convolution with
     stride 4, non-overlapping, like a Transformer's patch embedding (79.5%).
2. ResNeXt-ify (§2.3). The 3×3 convolution of the bottleneck becomes depthwise (groups = channels), which
   mixes only spatially, like the per-channel weighted sum of self-attention; the FLOPs saved pay for a
   wider network, 64 → 96 channels in the first stage, Swin-T's width (80.5%).
3. Inverted bottleneck (§2.4). The Transformer's MLP is 4× wider inside than outside, so the block's hidden
   layer becomes 4× the block's width instead of ¼ (80.6%, and fewer FLOPs because the shortcut's 1×1
   downsampling convolution now runs on the narrow tensor).
4. Large kernel sizes (§2.5). The depthwise convolution moves up to the top of the block, before the 1×1
   layers, as attention comes before the MLP in a Transformer, so the expensive wide layers are the cheap
   1×1s (79.9%); then its kernel grows from 3×3 to 7×7, Swin's window size (80.6%; gains stop at 7×7).
5. Micro design (§2.6).
   * ReLU → GELU, as in BERT, GPT-2 and ViT (80.6%, equal).
   * Fewer activation functions: one GELU per block, between the two 1×1 layers, as in a Transformer's
     MLP (81.3%).
   * Fewer normalisation layers: one per block, before the 1×1 expansion (81.4%).
   * BatchNorm → LayerNorm (81.5%).
   * Separate downsampling layers: the stride-2 leaves the blocks; between stages a 2×2 convolution with
     stride 2 halves the resolution, with a LayerNorm before it (and one after the stem and one after the
     global pool) to keep training stable (82.0%).

The result, the ConvNeXt block, with C channels on an H×W map::

    x ──► 7×7 depthwise conv ─► LN ─► 1×1, 4C ─► GELU ─► 1×1, C ─► ×γ ─► drop path ──(+)──► y
    └─────────────────────────────── identity ───────────────────────────────────────┘

γ is layer scale (Touvron et al., "Going deeper with Image Transformers", 2021): a learned per-channel
factor initialised to 1e-6, so every block starts close to the identity (Appendix A.1). Stochastic depth
(Huang et al., 2016) drops whole residual branches in training, with a probability that grows linearly
from 0 at the first block to ``stochastic_depth_prob`` at the last (0.1, 0.4, 0.5 and 0.5 for T, S, B
and L). The variants (§3) differ only in the widths C and the blocks per stage B:
ConvNeXt-T C = (96, 192, 384, 768), B = (3, 3, 9, 3); -S the same C, B = (3, 3, 27, 3);
-B C = (128, 256, 512, 1024), B = (3, 3, 27, 3); -L C = (192, 384, 768, 1536), B = (3, 3, 27, 3).

Data flow of ConvNeXt-T at 224×224 (stage names as the paper's Table 9, after ResNet's)::

    image 3×224×224
      stem: 4×4 conv, stride 4 ("patchify") → LN                      96×56×56
      res2: 3 ConvNeXt blocks                                          96×56×56
      res3: downsampling (LN → 2×2 conv, stride 2); 3 blocks          192×28×28
      res4: downsampling; 9 blocks                                    384×14×14
      res5: downsampling; 3 blocks                                    768×7×7
      global average pool → LN → fc                                   1000 logits

The two 1×1 convolutions are ``nn.Linear`` layers on a channels-last ``(N, H, W, C)`` tensor, and the
block's LayerNorm is ``nn.LayerNorm`` there: a 1×1 convolution is the same linear map applied at every
pixel, and this is how the authors' code and torchvision compute it. The stem and the downsampling layers
work on channels-first maps, so they use :class:`LayerNorm2d`, the same normalisation over the channels
of each pixel.

Deviations from the paper: none in the architecture; torchvision's model is the paper's (the same weights
layout up to names). Worth knowing:

* The LayerNorm epsilon is 1e-6 (the authors' code and torchvision); the paper does not state it.
* Stochastic depth is off in eval mode, as everywhere, so outputs match torchvision's exactly; its
  schedule is torchvision's, p_i = stochastic_depth_prob · i / (number of blocks − 1) for block i
  (counted from 0 over the whole network), identical to the authors' ``linspace``.
* Initialisation is torchvision's and the authors': truncated normal, std 0.02, for every convolution
  and linear layer, zero biases, LayerNorms at weight 1 and bias 0, γ = 1e-6. The authors' optional
  ``head_init_scale`` (a smaller initial classifier, used in their fine-tuning recipes) is not built.
* ``in_chans`` may differ from 3 (torchvision fixes 3); ConvNeXt-XL, trained on ImageNet-22K only, is not
  registered, since torchvision, the reference, has no XL (``widths=(256, 512, 1024, 2048)`` and
  ``depths=(3, 3, 27, 3)`` build it).
* ``kernel_size`` and ``expansion`` are exposed so that the §2.4/§2.5 ablations can be built; the
  registered variants use the paper's 7 and 4.

TorchScript: torchvision's ConvNeXt compiles with ``torch.jit.script``; this one does not (its input check and the
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
from paperzoo.registry import InputSpec, ModelCard, Paper, TrainingRecipe, register

__all__ = ["ConvNeXt", "ConvNeXtBlock", "ConvNeXtStage", "DownsamplingLayer", "LayerNorm2d"]


class LayerNorm2d(nn.LayerNorm):
    """LayerNorm over the channels of each pixel of a channels-first ``(N, C, H, W)`` map.

    For each position the C-vector x is normalised, y = (x − mean(x)) / sqrt(var(x) + eps) · w + b, exactly
    what ``nn.LayerNorm(C)`` does on a channels-last tensor; this module moves the channels last and back.
    Used after the patchify stem and before every downsampling convolution (§2.6). Only ConvNeXt and
    ConvNeXt V2 need it, so it lives here and not in ``paperzoo.layers``.
    """

    def __init__(self, channels: int, eps: float = 1e-6) -> None:
        super().__init__(channels, eps=eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.permute(0, 2, 3, 1)  # (N, C, H, W) → (N, H, W, C)
        x = F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)
        return x.permute(0, 3, 1, 2)  # → (N, C, H, W)


class ConvNeXtBlock(nn.Module):
    """The ConvNeXt block: the end point of the paper's modernisation of the ResNet bottleneck.

    Args:
        channels: the block's width C (input and output).
        kernel_size: of the depthwise convolution (7: §2.5, Swin's window size).
        expansion: the inverted bottleneck's hidden width, as a multiple of C (4: §2.4, a Transformer's MLP).
        layer_scale_init: initial value of the per-channel scale γ on the residual branch.
        stochastic_depth_prob: probability of dropping the residual branch of an example in training.
    """

    def __init__(self, channels: int, kernel_size: int = 7, expansion: int = 4, layer_scale_init: float = 1e-6,
                 stochastic_depth_prob: float = 0.0) -> None:
        super().__init__()
        hidden = expansion * channels
        # Moved up to the top of the block (§2.5) and depthwise (§2.3): spatial mixing only, per channel.
        self.depthwise_conv = nn.Conv2d(channels, channels, kernel_size, padding=kernel_size // 2, groups=channels)
        self.norm = nn.LayerNorm(channels, eps=1e-6)  # the block's single normalisation (§2.6)
        self.expand = nn.Linear(channels, hidden)  # 1×1 conv, C → 4C (inverted bottleneck)
        self.act = nn.GELU()  # the block's single activation (§2.6)
        self.project = nn.Linear(hidden, channels)  # 1×1 conv, 4C → C, linear before the sum
        # γ, shaped (C, 1, 1) to scale a channels-first map (torchvision's layout, so its weights load as they are).
        self.layer_scale = nn.Parameter(torch.full((channels, 1, 1), layer_scale_init))
        self.stochastic_depth = StochasticDepth(stochastic_depth_prob)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        branch = self.depthwise_conv(x)
        branch = branch.permute(0, 2, 3, 1)  # (N, C, H, W) → (N, H, W, C): the 1×1 layers are Linear
        branch = self.project(self.act(self.expand(self.norm(branch))))  # (N, H, W, C) → (N, H, W, 4C) → (N, H, W, C)
        branch = branch.permute(0, 3, 1, 2)  # → (N, C, H, W)
        return x + self.stochastic_depth(self.layer_scale * branch)  # y = x + drop(γ · f(x))


class DownsamplingLayer(nn.Sequential):
    """Separate downsampling between stages (§2.6): LayerNorm, then a 2×2 convolution with stride 2 that
    halves the resolution and changes the width. The LayerNorm keeps training stable where the resolution
    changes; without it the paper reports divergence."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__(OrderedDict(
            norm=LayerNorm2d(in_channels),
            conv=nn.Conv2d(in_channels, out_channels, kernel_size=2, stride=2),
        ))


class ConvNeXtStage(nn.Module):
    """One stage (res2 … res5): the downsampling layer that opens it (none for res2, which follows the stem),
    then ``depth`` ConvNeXt blocks at constant width. Its output is that of its last block, so a feature map
    taken here is *before* the next stage's downsampling layer, as in timm."""

    def __init__(self, in_channels: int, channels: int, depth: int, stochastic_depth_probs: list[float],
                 downsample: bool = True, kernel_size: int = 7, expansion: int = 4,
                 layer_scale_init: float = 1e-6) -> None:
        super().__init__()
        self.downsample = DownsamplingLayer(in_channels, channels) if downsample else nn.Identity()
        self.blocks = nn.Sequential(*[
            ConvNeXtBlock(channels, kernel_size, expansion, layer_scale_init, stochastic_depth_probs[i])
            for i in range(depth)
        ])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(self.downsample(x))


class ConvNeXt(ImageClassifier):
    """ConvNeXt (§3): a patchify stem, four stages of ConvNeXt blocks, a pooled, normalised linear head.

    Args:
        depths: blocks per stage, res2 … res5 ((3, 3, 9, 3) for ConvNeXt-T).
        widths: channels per stage ((96, 192, 384, 768) for ConvNeXt-T).
        stochastic_depth_prob: the drop probability of the last block; block i of n gets
            ``stochastic_depth_prob * i / (n - 1)``.
        layer_scale_init: initial value of every block's γ.
        kernel_size: of the depthwise convolutions.
        expansion: hidden width of the inverted bottleneck, as a multiple of the block's width.
        num_classes: outputs of the final fc layer; 0 leaves it out and returns the pooled, normalised features.
        in_chans: channels of the input image.

    ``set_grad_checkpointing()`` checkpoints each ConvNeXt block (and downsampling layer) in training.
    """

    # The stem divides by 4 and each of the three downsampling layers by 2 with a 2×2 kernel, which needs a
    # map of at least 2×2: below 32×32 res5's downsampling gets a 1×1 map and fails, in torchvision too.
    min_input_size = 32
    first_conv = "stem.conv"
    head_modules = ("head_norm",)  # the LayerNorm after the pool (§2.6)
    model_name = "convnext"

    def __init__(
        self,
        depths: tuple[int, ...] = (3, 3, 9, 3),
        widths: tuple[int, ...] = (96, 192, 384, 768),
        stochastic_depth_prob: float = 0.0,
        layer_scale_init: float = 1e-6,
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

        # The "patchify" stem (§2.2): non-overlapping 4×4 patches, each embedded linearly, then LayerNorm.
        self.stem = ConvNormAct(in_chans, widths[0], kernel_size=4, stride=4, padding=0,
                                norm_layer=LayerNorm2d, act_layer=None, bias=True)

        # Stochastic depth grows linearly with the block's index over the whole network (torchvision's rule;
        # a one-block network would divide by zero there, and gets p = 0).
        total_blocks = sum(depths)
        probs = [stochastic_depth_prob * i / max(total_blocks - 1, 1) for i in range(total_blocks)]

        stages: OrderedDict[str, nn.Module] = OrderedDict()
        levels = []
        in_channels, first_block = widths[0], 0
        for i, (depth, channels) in enumerate(zip(depths, widths, strict=True)):
            name = f"res{i + 2}"
            stages[name] = ConvNeXtStage(in_channels, channels, depth, probs[first_block:first_block + depth],
                                         downsample=i > 0, kernel_size=kernel_size, expansion=expansion,
                                         layer_scale_init=layer_scale_init)
            levels.append((channels, 4 * 2**i, f"stages.{name}"))
            in_channels, first_block = channels, first_block + depth
        self.stages = nn.Sequential(stages)
        self.feature_info = FeatureInfo(levels)
        # a level is a stage's downsampling layer and its blocks: checkpointed one by one
        self.level_modules = tuple((f"stages.{name}.downsample", f"stages.{name}.blocks") for name in stages)

        self.num_features = widths[-1]
        self.global_pool = ClassifierPool("avg")
        self.head_norm = nn.LayerNorm(self.num_features, eps=1e-6)  # the LayerNorm after the pool (§2.6)
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
    title="A ConvNet for the 2020s",
    authors="Zhuang Liu, Hanzi Mao, Chao-Yuan Wu, Christoph Feichtenhofer, Trevor Darrell, Saining Xie",
    year=2022,
    url="https://arxiv.org/abs/2201.03545",
)
_INNOVATIONS = (
    "a ResNet-50 modernised step by step towards Swin-T, with no attention: a pure ConvNet that matches it",
    "macro design: stage ratio 3:3:9:3 and a 'patchify' stem, a 4x4 convolution with stride 4",
    "depthwise 7x7 convolutions moved to the top of an inverted bottleneck (1x1 expand x4, 1x1 project)",
    "micro design: GELU, one activation and one LayerNorm per block, separate LN + 2x2 downsampling layers",
    "layer scale (gamma = 1e-6 at init) and stochastic depth growing linearly with depth",
)


# Appendix A.1: AdamW, lr 4e-3 at batch 4096, weight decay 0.05, cosine decay after a 20-epoch linear warm-up
# (of 300). Here at batch 128: lr 1.25e-4, scaled linearly; the warm-up is one epoch at 10%.
_RECIPE = TrainingRecipe(optimizer="adamw", lr=1.25e-4, weight_decay=0.05, schedule="cosine", batch_size=128,
                         warmup_epochs=1, source="Liu et al. 2022, Appendix A.1 (lr scaled from batch 4096 to 128)")


def _card(name: str, size: str, params: int, gmacs: float, stochastic_depth_prob: float,
          canonical: bool = False) -> ModelCard:
    return ModelCard(
        name=name,
        architecture=f"ConvNeXt-{size}",
        task="image-classification",
        paper=_PAPER,
        innovations=_INNOVATIONS,
        input=InputSpec(kind="image", shape=(3, 224, 224), min_size=ConvNeXt.min_input_size),
        params=params,
        params_source=f"torchvision.models.{name}, counted",
        reference=f"torchvision.models.{name}",
        gmacs=gmacs,
        recipe=_RECIPE,
        canonical=canonical,
        notes=f"stochastic depth up to {stochastic_depth_prob} in training (torchvision's default for {size}).",
    )


@register(_card("convnext_tiny", "T", params=28_589_128, gmacs=4.456, stochastic_depth_prob=0.1, canonical=True))
def convnext_tiny(**kwargs: Any) -> ConvNeXt:
    """ConvNeXt-T: widths (96, 192, 384, 768), blocks (3, 3, 9, 3)."""
    kwargs.setdefault("stochastic_depth_prob", 0.1)
    return ConvNeXt(depths=(3, 3, 9, 3), widths=(96, 192, 384, 768), **kwargs)


@register(_card("convnext_small", "S", params=50_223_688, gmacs=8.684, stochastic_depth_prob=0.4))
def convnext_small(**kwargs: Any) -> ConvNeXt:
    """ConvNeXt-S: widths (96, 192, 384, 768), blocks (3, 3, 27, 3)."""
    kwargs.setdefault("stochastic_depth_prob", 0.4)
    return ConvNeXt(depths=(3, 3, 27, 3), widths=(96, 192, 384, 768), **kwargs)


@register(_card("convnext_base", "B", params=88_591_464, gmacs=15.355, stochastic_depth_prob=0.5))
def convnext_base(**kwargs: Any) -> ConvNeXt:
    """ConvNeXt-B: widths (128, 256, 512, 1024), blocks (3, 3, 27, 3)."""
    kwargs.setdefault("stochastic_depth_prob", 0.5)
    return ConvNeXt(depths=(3, 3, 27, 3), widths=(128, 256, 512, 1024), **kwargs)


@register(_card("convnext_large", "L", params=197_767_336, gmacs=34.361, stochastic_depth_prob=0.5))
def convnext_large(**kwargs: Any) -> ConvNeXt:
    """ConvNeXt-L: widths (192, 384, 768, 1536), blocks (3, 3, 27, 3)."""
    kwargs.setdefault("stochastic_depth_prob", 0.5)
    return ConvNeXt(depths=(3, 3, 27, 3), widths=(192, 384, 768, 1536), **kwargs)


if __name__ == "__main__":
    from paperzoo.cli import main

    main(["run", "convnext_tiny"])
