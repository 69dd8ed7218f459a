r"""Swin Transformer (v1).

Paper: "Swin Transformer: Hierarchical Vision Transformer using Shifted Windows", Ze Liu, Yutong Lin, Yue Cao,
Han Hu, Yixuan Wei, Zheng Zhang, Stephen Lin, Baining Guo, ICCV 2021 (arXiv 2021).
https://arxiv.org/abs/2103.14030

ViT attends globally over a single, coarse 16×16-patch resolution, so its cost grows with the square of
the number of patches and it gives no multi-scale features to dense-prediction heads. Swin makes the
Transformer a general backbone with two changes (§3):

* Hierarchical feature maps. Small 4×4 patches are embedded linearly to C channels ("patch partition" and
  "linear embedding"); each later stage starts with patch merging, which concatenates the features of every
  2×2 group of neighbouring patches (4C) and reduces them linearly to 2C. The four stages see H/4, H/8,
  H/16 and H/32, the strides of a ResNet, so FPN or U-Net heads plug in unchanged.
* Self-attention in local windows (W-MSA). Attention is computed within non-overlapping M×M windows
  (M = 7), so the cost is linear in the image size (eqs. 1, 2):

  $$\Omega(\text{MSA}) = 4hwC^2 + 2(hw)^2 C, \qquad \Omega(\text{W-MSA}) = 4hwC^2 + 2M^2 hwC.$$

* Shifted windows (SW-MSA). Consecutive blocks alternate the regular partition and one displaced by
  (⌊M/2⌋, ⌊M/2⌋), so that each window of the second block straddles four windows of the first and
  information crosses window borders (eq. 3):

  $$\hat z^l = \text{W-MSA}(\text{LN}(z^{l-1})) + z^{l-1}, \qquad z^l = \text{MLP}(\text{LN}(\hat z^l)) + \hat z^l,$$

  $$
  \hat z^{l+1} = \text{SW-MSA}(\text{LN}(z^l)) + z^l, \qquad
  z^{l+1} = \text{MLP}(\text{LN}(\hat z^{l+1})) + \hat z^{l+1}.
  $$

  The shifted partition is computed as efficiently as the regular one by a cyclic shift (Figure 4): roll
  the map up and left by ⌊M/2⌋, partition regularly, and mask attention between the pieces that the roll
  brought together from opposite borders; roll back afterwards.
* Relative position bias. Each head adds a learned bias B to its attention logits, indexed by the relative
  position of query and key within the window (eq. 4):

  $$\text{Attention}(Q, K, V) = \text{SoftMax}(QK^T / \sqrt{d} + B)\, V.$$

  Offsets along each axis lie in $[-M + 1, M - 1]$, so $B \in \mathbb{R}^{M^2 \times M^2}$ is read from a table
  $\hat B \in \mathbb{R}^{(2M-1) \times (2M-1)}$ per head. Here B (plus the shift mask) is the additive mask of
  ``F.scaled_dot_product_attention``, through the zoo's one attention module.

Data flow of Swin-T at 224×224 (tokens are channels-last, N×H×W×C, where LayerNorm works)::

    image 3×224×224
      patch partition + linear embedding: conv 4×4, stride 4, 96 → LN        56×56×96
      stage 1:                          2 blocks (W-MSA, SW-MSA), 3 heads    56×56×96     stride 4
      stage 2: patch merging 2×2 → 192; 2 blocks, 6 heads                    28×28×192    stride 8
      stage 3: patch merging 2×2 → 384; 6 blocks, 12 heads                   14×14×384    stride 16
      stage 4: patch merging 2×2 → 768; 2 blocks, 24 heads                    7×7×768     stride 32
      LayerNorm → global average pool → linear                               1000 logits

    one pair of blocks:  z ─► LN ─► W-MSA ─(+)─► LN ─► MLP ─(+)─► LN ─► SW-MSA ─(+)─► LN ─► MLP ─(+)─►
    variants (Table 1 / §3.3): Swin-T C=96, depths 2-2-6-2; Swin-S C=96, 2-2-18-2; Swin-B C=128, 2-2-18-2;
    32 channels per head, MLP ratio 4, M = 7.

``forward_features`` returns the final map channels-last, (N, H/32, W/32, 8C), as torchvision's
``features`` + ``norm``; ``features_only=True`` returns the four stages' outputs (before the next patch
merging, without a final norm) channels-first, (N, C_i, H_i, W_i), like every backbone of the zoo.

Deviations from the paper, all torchvision's (and mostly the authors' code's), so that its weights load and
its outputs match:

* Sizes that are not whole windows: the normalised map is zero-padded at the bottom and right to a multiple
  of M before attention and cropped after it; the padded positions are not masked out (they take part in
  the softmax as zero-valued keys). The window stays M×M, and along an axis that is a single window after
  padding there is no shift (nothing to connect). The authors' classification code instead shrinks M to a
  map smaller than it; at 224×224 both agree (stage 4 is 7×7: one window, no shift).
* Patch merging zero-pads an odd height or width (bottom, right) and normalises the 4C concatenation with
  LayerNorm before the linear reduction; patch embedding is followed by a LayerNorm (the authors' code;
  the paper names only the linear layers). The patch partition + linear embedding is one 4×4, stride-4
  convolution: the same linear map on every patch.
* The shift mask adds −100, not −∞, to the logits of forbidden pairs (the authors' code); exp(−100) ≈ 4e-44.
* Stochastic depth grows linearly with the block index to 0.2 / 0.3 / 0.5 (T / S / B), the paper's rates.
* Initialisation is torchvision's: every linear layer truncated normal with std 0.02 and zero bias, B̂
  truncated normal with std 0.02, the convolution and LayerNorms at PyTorch's defaults.

TorchScript: torchvision's Swin Transformer compiles with ``torch.jit.script``; this one does not (its input check
and the shared classifier plumbing are Python that TorchScript cannot compile, and TorchScript is deprecated
upstream). ``torch.export``, ``torch.compile(fullgraph=True)`` and ``torch.fx`` capture it instead
(tests/test_export.py, tests/test_graph_capture.py).
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from paperzoo.layers import FeatureInfo, MultiHeadAttention, StochasticDepth
from paperzoo.layers.classifier import ClassifierPool, ImageClassifier
from paperzoo.registry import InputSpec, ModelCard, Paper, TrainingRecipe, register

__all__ = ["SwinTransformer", "SwinTransformerBlock", "WindowAttention", "PatchMerging", "shifted_window_attention",
           "window_partition", "window_reverse"]


def window_partition(x: torch.Tensor, window_size: int) -> torch.Tensor:
    """(N, H, W, C) → (N·nW, M², C): the M×M windows, each a sequence of M² tokens, image-major, windows
    row-major within an image. H and W must be multiples of M."""
    n, height, width, channels = x.shape
    m = window_size
    x = x.view(n, height // m, m, width // m, m, channels)  # (N, H/M, M, W/M, M, C): split each axis
    return x.permute(0, 1, 3, 2, 4, 5).reshape(-1, m * m, channels)  # (N·H/M·W/M, M·M, C)


def window_reverse(windows: torch.Tensor, window_size: int, height: int, width: int) -> torch.Tensor:
    """(N·nW, M², C) → (N, H, W, C): the inverse of :func:`window_partition`."""
    m, channels = window_size, windows.shape[-1]
    x = windows.view(-1, height // m, width // m, m, m, channels)  # (N, H/M, W/M, M, M, C)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(-1, height, width, channels)  # (N, H, W, C)


def relative_position_index(window_size: int) -> torch.Tensor:
    """For every (query, key) pair of an M×M window, the row of B̂ that holds their bias: (M²·M²,), flat.

    The offset (Δrow, Δcol) = query − key lies in [−M + 1, M − 1]²; shifted to [0, 2M − 2]² and numbered
    row-major it indexes the (2M − 1)² entries of B̂.
    """
    m = window_size
    rows, cols = torch.meshgrid(torch.arange(m), torch.arange(m), indexing="ij")
    coords = torch.stack([rows.flatten(), cols.flatten()])  # (2, M²): (row, col) of each token
    offset = coords[:, :, None] - coords[:, None, :] + (m - 1)  # (2, M², M²): query − key, from 0
    return (offset[0] * (2 * m - 1) + offset[1]).flatten()  # (M⁴,), flat as torchvision stores it


def shifted_window_mask(height: int, width: int, window_size: int, shift: tuple[int, int],
                        device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """The additive mask of SW-MSA after the cyclic shift (Figure 4): (nW, M², M²), 0 or −100.

    Rolling the map up and left by s brings the first s rows (columns) below (right of) the last ones, so
    the windows at the bottom and right borders hold pieces from opposite sides of the image. Along each
    axis the rolled map has three bands: [0, H − M) untouched windows, [H − M, H − s) and [H − s, H) the two
    pieces of the last window. Tokens may attend only to tokens of the same band in both axes.
    """
    def band(length: int, s: int) -> torch.Tensor:  # 0, 1 or 2 for every row (column); s = 0: no third band
        i = torch.arange(length, device=device)
        return (i >= length - window_size).long() + (i >= length - s).long()

    region = band(height, shift[0])[:, None] * 3 + band(width, shift[1])[None, :]  # (H, W): 9 regions at most
    region = window_partition(region[None, :, :, None], window_size).squeeze(-1)  # (nW, M²)
    different = region[:, :, None] != region[:, None, :]  # (nW, M², M²): query and key from different pieces
    return torch.zeros(different.shape, device=device, dtype=dtype).masked_fill_(different, -100.0)


def shifted_window_attention(x: torch.Tensor, window_size: int, shift_size: int, bias: torch.Tensor,
                             attention: nn.Module, dropout: nn.Module) -> torch.Tensor:
    """:class:`WindowAttention` on a channels-last map ``x`` (N, H, W, C): pad to whole windows, shift, attend
    within each window with the relative position ``bias`` B (heads, M², M²), shift back, crop.

    A function, wrapped for torch.fx below, because where the windows fall and whether they shift depend on the
    map's size, which fx's symbolic trace does not know (torchvision wraps its own the same way).
    """
    n, height, width, _ = x.shape
    m = window_size
    pad_bottom, pad_right = -height % m, -width % m
    x = F.pad(x, (0, 0, 0, pad_right, 0, pad_bottom))  # whole windows: (N, H_p, W_p, C)
    padded_height, padded_width = height + pad_bottom, width + pad_right
    # A single window along an axis has no neighbour to connect to: no shift along it.
    shift = (shift_size if padded_height > m else 0, shift_size if padded_width > m else 0)

    mask = bias.unsqueeze(0)  # B: (1, heads, M², M²), the same in every window
    if any(shift):
        x = torch.roll(x, shifts=(-shift[0], -shift[1]), dims=(1, 2))  # cyclic shift, up and left
        pieces = shifted_window_mask(padded_height, padded_width, m, shift, x.device, mask.dtype)
        mask = mask + pieces.unsqueeze(1)  # (nW, heads, M², M²): B, and −100 across pieces
        mask = mask.repeat(n, 1, 1, 1)  # (N·nW, heads, M², M²), image-major as window_partition

    windows = window_partition(x, m)  # (N·nW, M², C)
    windows = attention(windows, attn_mask=mask)  # SoftMax(QKᵀ/√d + B)V in every window (eq. 4)
    x = window_reverse(dropout(windows), m, padded_height, padded_width)  # (N, H_p, W_p, C)
    if any(shift):
        x = torch.roll(x, shifts=shift, dims=(1, 2))  # undo the cyclic shift
    return x[:, :height, :width].contiguous()  # drop the padding: (N, H, W, C)


torch.fx.wrap("shifted_window_attention")  # one operation in an fx graph; torch.export traces through it


class WindowAttention(nn.Module):
    """W-MSA (``shift_size=0``) or SW-MSA (``shift_size=M//2``): multi-head self-attention within M×M
    windows with a relative position bias (eq. 4), on a channels-last map of any size.

    Args:
        dim: channels C of the map.
        num_heads: attention heads.
        window_size: M.
        shift_size: the displacement of the partition, 0 or ⌊M/2⌋.
        attention_dropout: dropout on the attention probabilities.
        dropout: dropout on the output.
    """

    def __init__(self, dim: int, num_heads: int, window_size: int = 7, shift_size: int = 0,
                 attention_dropout: float = 0.0, dropout: float = 0.0) -> None:
        super().__init__()
        self.window_size = window_size
        self.shift_size = shift_size
        self.num_heads = num_heads
        # The site's diagram opens one instance of each block class: a shifted one, since only it shows the cyclic
        # shift and the mask of §3.2 (paperzoo.diagram reads ``drawn_opened``).
        self.drawn_opened = shift_size > 0
        self.attention = MultiHeadAttention(dim, num_heads, attention_dropout=attention_dropout)
        self.dropout = nn.Dropout(dropout)
        # B̂: one bias per head for each of the (2M − 1)² relative offsets.
        self.relative_position_bias_table = nn.Parameter(torch.zeros((2 * window_size - 1) ** 2, num_heads))
        self.register_buffer("relative_position_index", relative_position_index(window_size))

    def relative_position_bias(self) -> torch.Tensor:
        """B, gathered from B̂: (heads, M², M²)."""
        tokens = self.window_size**2
        bias = self.relative_position_bias_table[self.relative_position_index]  # (M⁴, heads)
        return bias.view(tokens, tokens, self.num_heads).permute(2, 0, 1)  # (heads, M², M²)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return shifted_window_attention(x, self.window_size, self.shift_size, self.relative_position_bias(),
                                        self.attention, self.dropout)

    def extra_repr(self) -> str:
        return f"window_size={self.window_size}, shift_size={self.shift_size}"


class MLP(nn.Sequential):
    """The block's feed-forward part: two linear layers around a GELU, hidden width α·C (α = 4)."""

    def __init__(self, dim: int, hidden_dim: int, dropout: float = 0.0) -> None:
        super().__init__(OrderedDict(fc1=nn.Linear(dim, hidden_dim), act=nn.GELU(), drop1=nn.Dropout(dropout),
                                     fc2=nn.Linear(hidden_dim, dim), drop2=nn.Dropout(dropout)))


class SwinTransformerBlock(nn.Module):
    """One Swin Transformer block (Figure 3b): (S)W-MSA then MLP, each pre-normed and residual (eq. 3)."""

    def __init__(self, dim: int, num_heads: int, window_size: int = 7, shift_size: int = 0,
                 mlp_ratio: float = 4.0, dropout: float = 0.0, attention_dropout: float = 0.0,
                 drop_path: float = 0.0) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = WindowAttention(dim, num_heads, window_size, shift_size, attention_dropout, dropout)
        self.drop_path = StochasticDepth(drop_path)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = MLP(dim, int(dim * mlp_ratio), dropout)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        z = z + self.drop_path(self.attn(self.norm1(z)))  # ẑ^l = (S)W-MSA(LN(z^{l−1})) + z^{l−1}
        return z + self.drop_path(self.mlp(self.norm2(z)))  # z^l = MLP(LN(ẑ^l)) + ẑ^l


class PatchMerging(nn.Module):
    """Halve the resolution and double the width: concatenate each 2×2 group of neighbouring patches (4C)
    and reduce them linearly to 2C (§3.1)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(4 * dim)
        self.reduction = nn.Linear(4 * dim, 2 * dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        height, width = x.shape[1:3]
        x = F.pad(x, (0, 0, 0, width % 2, 0, height % 2))  # odd sizes: a zero row / column, bottom and right
        # The four members of every 2×2 group, in torchvision's order: (0, 0), (1, 0), (0, 1), (1, 1).
        x = torch.cat([x[:, 0::2, 0::2], x[:, 1::2, 0::2], x[:, 0::2, 1::2], x[:, 1::2, 1::2]], dim=-1)
        return self.reduction(self.norm(x))  # (N, ⌈H/2⌉, ⌈W/2⌉, 4C) → (N, ⌈H/2⌉, ⌈W/2⌉, 2C)


class PatchEmbedding(nn.Module):
    """Patch partition and linear embedding: 4×4 patches projected to C channels, channels-last, normalised."""

    def __init__(self, patch_size: int, in_chans: int, embed_dim: int) -> None:
        super().__init__()
        self.projection = nn.Conv2d(in_chans, embed_dim, kernel_size=patch_size, stride=patch_size)
        self.norm = nn.LayerNorm(embed_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.projection(x).permute(0, 2, 3, 1)  # (N, C_in, H, W) → (N, H/4, W/4, C)
        return self.norm(x)


class SwinTransformer(ImageClassifier):
    """The Swin Transformer (Figure 3a).

    Args:
        patch_size: side of the patches of the patch partition (4).
        embed_dim: C, the channels of stage 1 (each later stage doubles them).
        depths: blocks per stage; an even number, as blocks alternate W-MSA and SW-MSA.
        num_heads: attention heads per stage (C_i / 32 in the paper's variants).
        window_size: M.
        mlp_ratio: α, the MLP's hidden width over its input width.
        dropout: dropout on the attention output and in the MLP.
        attention_dropout: dropout on the attention probabilities.
        stochastic_depth_prob: drop-path rate of the last block, growing linearly from 0 at the first.
        num_classes: outputs of the head; 0 leaves it out and returns the pooled features.
        in_chans: channels of the input image.

    ``set_grad_checkpointing()`` checkpoints each Swin Transformer block (and patch merging) in training.
    """

    # The patch partition needs one whole 4×4 patch; every later size is padded (to even for patch merging,
    # to whole windows for attention), so any H, W >= 4 works. torchvision's model takes 4×4 and fails on 3×3.
    min_input_size = 4
    model_name = "swin"
    output_fmt = map_fmt = "NHWC"  # forward_features' map is channels-last (N, H/32, W/32, 8C), as timm's Swin
    first_conv = "patch_embed.projection"
    classifier_name = "head"
    final_modules = ("norm",)

    def __init__(
        self,
        patch_size: int = 4,
        embed_dim: int = 96,
        depths: tuple[int, ...] = (2, 2, 6, 2),
        num_heads: tuple[int, ...] = (3, 6, 12, 24),
        window_size: int = 7,
        mlp_ratio: float = 4.0,
        dropout: float = 0.0,
        attention_dropout: float = 0.0,
        stochastic_depth_prob: float = 0.2,
        num_classes: int = 1000,
        in_chans: int = 3,
    ) -> None:
        super().__init__()
        if len(depths) != len(num_heads):
            raise ValueError(f"depths {depths} and num_heads {num_heads} must have one entry per stage")
        self.num_classes = num_classes
        self.in_chans = in_chans
        self.num_features = embed_dim * 2 ** (len(depths) - 1)

        self.patch_embed = PatchEmbedding(patch_size, in_chans, embed_dim)
        stages: OrderedDict[str, nn.Module] = OrderedDict()
        levels = []
        total_blocks, block_index = sum(depths), 0
        for i in range(len(depths)):
            dim = embed_dim * 2**i
            layers: OrderedDict[str, nn.Module] = OrderedDict()
            if i > 0:
                layers["patch_merging"] = PatchMerging(dim // 2)
            blocks = []
            for j in range(depths[i]):
                drop_path = stochastic_depth_prob * block_index / max(total_blocks - 1, 1)
                blocks.append(SwinTransformerBlock(dim, num_heads[i], window_size,
                                                   shift_size=0 if j % 2 == 0 else window_size // 2,
                                                   mlp_ratio=mlp_ratio, dropout=dropout,
                                                   attention_dropout=attention_dropout, drop_path=drop_path))
                block_index += 1
            layers["blocks"] = nn.Sequential(*blocks)
            stages[f"stage{i + 1}"] = nn.Sequential(layers)
            levels.append((dim, patch_size * 2**i, f"stages.stage{i + 1}"))
        self.stages = nn.Sequential(stages)
        self.feature_info = FeatureInfo(levels)
        # a level: a stage's patch merging and its blocks, checkpointed one by one
        self.level_modules = tuple(tuple(f"stages.{name}.{part}" for part in stage._modules)
                                   for name, stage in stages.items())

        self.norm = nn.LayerNorm(self.num_features)
        self.global_pool = ClassifierPool("avg", input_fmt="NHWC")
        self.head = nn.Linear(self.num_features, num_classes) if num_classes > 0 else nn.Identity()
        self._init_weights()

    def _init_weights(self) -> None:
        for module in self.modules():
            if isinstance(module, nn.Linear):
                self.init_classifier(module)
            elif isinstance(module, WindowAttention):
                nn.init.trunc_normal_(module.relative_position_bias_table, std=0.02)

    def init_classifier(self, layer: nn.Module) -> None:
        nn.init.trunc_normal_(layer.weight, std=0.02)
        if layer.bias is not None:
            nn.init.zeros_(layer.bias)

    def forward_stem(self, x: torch.Tensor) -> torch.Tensor:
        return self.patch_embed(x)  # (N, C_in, H, W) → (N, H/4, W/4, C), channels-last from here on

_PAPER = Paper(
    title="Swin Transformer: Hierarchical Vision Transformer using Shifted Windows",
    authors="Ze Liu, Yutong Lin, Yue Cao, Han Hu, Yixuan Wei, Zheng Zhang, Stephen Lin, Baining Guo",
    year=2021,
    url="https://arxiv.org/abs/2103.14030",
)
_INNOVATIONS = (
    "self-attention within local 7x7 windows: cost linear in the image size",
    "shifted windows in alternate blocks connect neighbouring windows",
    "cyclic shift plus masking computes the shifted partition as one batch",
    "relative position bias B added to the attention logits: SoftMax(QK^T/sqrt(d) + B)V",
    "patch merging builds a hierarchy at strides 4, 8, 16, 32, a backbone for dense prediction",
)


# §4.1: AdamW, 300 epochs, cosine decay after 20 epochs of linear warm-up, batch 1024, lr 1e-3, weight decay
# 0.05. Here at batch 128: lr 1.25e-4, scaled linearly; the warm-up is one epoch at 10%.
_RECIPE = TrainingRecipe(optimizer="adamw", lr=1.25e-4, weight_decay=0.05, schedule="cosine", batch_size=128,
                         warmup_epochs=1, source="Liu et al. 2021, §4.1 (lr scaled from batch 1024 to 128)")


def _card(name: str, size: str, params: int, gmacs: float, canonical: bool = False) -> ModelCard:
    return ModelCard(
        name=name,
        architecture=f"Swin-{size}",
        task="image-classification",
        paper=_PAPER,
        innovations=_INNOVATIONS,
        input=InputSpec(kind="image", shape=(3, 224, 224), min_size=SwinTransformer.min_input_size),
        params=params,
        params_source=f"torchvision.models.{name}, counted",
        reference=f"torchvision.models.{name}",
        gmacs=gmacs,
        recipe=_RECIPE,
        canonical=canonical,
        notes="any H, W >= 4: maps are zero-padded to whole windows as in torchvision.",
    )


@register(_card("swin_t", "T", params=28_288_354, gmacs=4.491, canonical=True))
def swin_t(**kwargs: Any) -> SwinTransformer:
    """Swin-T: C=96, depths 2-2-6-2, heads 3-6-12-24, drop path 0.2."""
    return SwinTransformer(embed_dim=96, depths=(2, 2, 6, 2), num_heads=(3, 6, 12, 24),
                           stochastic_depth_prob=kwargs.pop("stochastic_depth_prob", 0.2), **kwargs)


@register(_card("swin_s", "S", params=49_606_258, gmacs=8.741))
def swin_s(**kwargs: Any) -> SwinTransformer:
    """Swin-S: C=96, depths 2-2-18-2, heads 3-6-12-24, drop path 0.3."""
    return SwinTransformer(embed_dim=96, depths=(2, 2, 18, 2), num_heads=(3, 6, 12, 24),
                           stochastic_depth_prob=kwargs.pop("stochastic_depth_prob", 0.3), **kwargs)


@register(_card("swin_b", "B", params=87_768_224, gmacs=15.431))
def swin_b(**kwargs: Any) -> SwinTransformer:
    """Swin-B: C=128, depths 2-2-18-2, heads 4-8-16-32, drop path 0.5."""
    return SwinTransformer(embed_dim=128, depths=(2, 2, 18, 2), num_heads=(4, 8, 16, 32),
                           stochastic_depth_prob=kwargs.pop("stochastic_depth_prob", 0.5), **kwargs)


if __name__ == "__main__":
    from paperzoo.cli import main

    main(["run", "swin_t"])
