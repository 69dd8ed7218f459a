r"""Vision Transformer (ViT).

Paper: "An Image is Worth 16x16 Words: Transformers for Image Recognition at Scale", Alexey Dosovitskiy,
Lucas Beyer, Alexander Kolesnikov, Dirk Weissenborn, Xiaohua Zhai, Thomas Unterthiner, Mostafa Dehghani,
Matthias Minderer, Georg Heigold, Sylvain Gelly, Jakob Uszkoreit, Neil Houlsby, ICLR 2021 (arXiv 2020).
https://arxiv.org/abs/2010.11929

The standard Transformer encoder of NLP, applied to an image with as few changes as possible (§3.1):

* Patch embedding. The image $x \in \mathbb{R}^{H \times W \times C}$ is cut into $N = HW/P^2$ patches of P×P
  pixels, each flattened and projected by one trainable linear map E to the model width D. The patches are the "words".
* Class token. A learned embedding $x_{class}$ is prepended to the sequence (as BERT's [class] token); its
  state at the encoder's output, $z_L^0$, is the image representation the classifier reads.
* Position embeddings. Learned 1-D embeddings $E_{pos}$ are added, one per position (2-D-aware ones did not
  help, Appendix D.4). They are the only place where the model learns the image's 2-D layout.
* Pre-norm encoder. L blocks of multi-head self-attention (MSA) and a two-layer GELU MLP, each preceded by
  LayerNorm and wrapped in a residual connection (eqs. 1 to 4):

  $$z_0 = [x_{class}; x_p^1 E; \dots; x_p^N E] + E_{pos},$$

  $$
  z'_\ell = \text{MSA}(\text{LN}(z_{\ell-1})) + z_{\ell-1}, \qquad z_\ell = \text{MLP}(\text{LN}(z'_\ell)) + z'_\ell,
  \qquad \ell = 1 \dots L,
  $$

  $$y = \text{LN}(z_L^0).$$

* The MLP head: a hidden tanh layer at pre-training (``representation_size``), a single linear layer when
  fine-tuning, the layer torchvision's models have.
* Little image-specific inductive bias: given enough data (ImageNet-21k, JFT-300M), scale beats it.

Other resolutions (§3.2, "Fine-tuning and higher resolution"). Fine-tuning at a higher resolution keeps
P, so the sequence gets longer and the learned position embeddings no longer fit; the paper interpolates
them in 2-D according to their location in the original image. Here: the L = g_h·g_w patch embeddings
are laid back on their (g_h, g_w) grid and resized bicubically to the new grid with ``align_corners=True``
(the corner patches keep their embeddings), as torchvision's ``interpolate_embeddings``; the class token's
embedding has no location and is kept as it is. ``img_size=(H, W)`` at build time makes the learned grid
(H/P, W/P); ``model.set_image_size((H, W))`` resamples the current embeddings (e.g. loaded weights) to a
new, possibly non-square, grid; loading torchvision weights into a model built for another size resamples
them the same way. An input of any other size raises a ``ValueError`` that says so.

Data flow of ViT-B/16 at 224×224::

    image 3×224×224
      patch embedding: conv 16×16, stride 16, 768 filters     768×14×14 → 196 tokens × 768
      prepend class token, add position embeddings          197 × 768      (eq. 1)
      12 × encoder block:                                   197 × 768
          z ─► LN ─► MSA (12 heads) ─(+)─► LN ─► MLP 768→3072→768 ─(+)─►
          └─────────────────────────┘ └──────────────────────────────┘
      LayerNorm                                             197 × 768      (eq. 4)
      class token z_L^0 → linear head                       1000 logits

    variants (Table 1):  Base L=12 D=768 MLP=3072 h=12 · Large 24/1024/4096/16 · Huge 32/1280/5120/16;
                         the /16, /32, /14 suffix is the patch size P.

Deviations from the paper, all torchvision's unless said otherwise, so that its weights load and its outputs
match:

* The linear patch projection E is a convolution with kernel = stride = P: the same linear map applied to
  every patch (E reshaped to (D, C, P, P)), without cutting and flattening the patches first.
* Dropout defaults to 0 (torchvision's recipe, after DeiT); the paper trains with dropout 0.1 after every
  dense layer but the qkv projection and after adding the position embeddings (Appendix B.1): pass
  ``dropout=0.1`` for it. ``attention_dropout`` on the attention probabilities is also 0 by default.
* The head is the fine-tuning head (one linear layer); ``representation_size=D_h`` adds the pre-training
  head's hidden tanh layer, as torchvision's ``representation_size``.
* Initialisation is torchvision's (patch projection truncated normal with std √(1/fan_in), class token 0,
  position embeddings N(0, 0.02), MLP Xavier-uniform with biases N(0, 1e-6), attention as
  ``torch.nn.MultiheadAttention``) except for the head: torchvision, like the paper's fine-tuning head,
  starts it at zero, which passes no gradient to the rest of a fresh network on its first step; this model
  starts it truncated-normal with std 0.02 (timm's ViT head), and ``zero_init_head=True`` gives the zeros.
* LayerNorm's ε is 1e-6 (the authors' JAX code; the paper does not state it).

TorchScript: torchvision's ViT compiles with ``torch.jit.script``; this one does not (its input check and the shared
classifier plumbing are Python that TorchScript cannot compile, and TorchScript is deprecated upstream).
``torch.export``, ``torch.compile(fullgraph=True)`` and ``torch.fx`` capture it instead (tests/test_export.py,
tests/test_graph_capture.py).
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from paperzoo.layers import FeatureInfo, MultiHeadAttention, check_image_batch, skip_on_fx_proxies
from paperzoo.layers.classifier import ImageClassifier, feature_indices
from paperzoo.registry import InputSpec, ModelCard, Paper, TrainingRecipe, register

__all__ = ["VisionTransformer", "EncoderBlock", "PatchEmbedding", "resample_position_embedding"]


def _pair(size: int | tuple[int, int]) -> tuple[int, int]:
    return (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))


def resample_position_embedding(embedding: torch.Tensor, old_grid: tuple[int, int],
                                new_grid: tuple[int, int]) -> torch.Tensor:
    """Position embeddings (1, 1 + g_h·g_w, D) learned on ``old_grid`` → (1, 1 + g_h'·g_w', D) for ``new_grid``.

    The paper's 2-D interpolation "according to their location in the original image" (§3.2): bicubic on the
    grid of patch embeddings, corners aligned; the class token's embedding (index 0) is kept.
    """
    if tuple(old_grid) == tuple(new_grid):
        return embedding
    class_embedding, patch_embeddings = embedding[:, :1], embedding[:, 1:]  # (1, 1, D), (1, g_h·g_w, D)
    dim = embedding.shape[-1]
    grid = patch_embeddings.transpose(1, 2).reshape(1, dim, *old_grid)  # (1, D, g_h, g_w): back on the image
    grid = F.interpolate(grid, size=tuple(new_grid), mode="bicubic", align_corners=True)  # (1, D, g_h', g_w')
    patch_embeddings = grid.flatten(2).transpose(1, 2)  # (1, g_h'·g_w', D), row-major as the patches
    return torch.cat([class_embedding, patch_embeddings], dim=1)


class PatchEmbedding(nn.Module):
    """Cut the image into P×P patches and project each to D dimensions: the x_p E of eq. 1.

    A convolution whose kernel and stride are both P applies the same linear map E to every patch.
    """

    def __init__(self, patch_size: int, in_chans: int, embed_dim: int) -> None:
        super().__init__()
        self.patch_size = patch_size
        self.projection = nn.Conv2d(in_chans, embed_dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.projection(x)  # (N, C, H, W) → (N, D, H/P, W/P)
        return x.flatten(2).transpose(1, 2)  # (N, L, D), L = H/P · W/P patches in row-major order


class MLP(nn.Sequential):
    """The encoder's feed-forward part: two linear layers with a GELU between them (§3.1)."""

    def __init__(self, dim: int, hidden_dim: int, dropout: float = 0.0) -> None:
        super().__init__(OrderedDict(fc1=nn.Linear(dim, hidden_dim), act=nn.GELU(), drop1=nn.Dropout(dropout),
                                     fc2=nn.Linear(hidden_dim, dim), drop2=nn.Dropout(dropout)))


class EncoderBlock(nn.Module):
    """One pre-norm Transformer encoder layer: eqs. 2 and 3."""

    def __init__(self, hidden_dim: int, num_heads: int, mlp_dim: int, dropout: float = 0.0,
                 attention_dropout: float = 0.0) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(hidden_dim, eps=1e-6)
        self.attention = MultiHeadAttention(hidden_dim, num_heads, attention_dropout=attention_dropout)
        self.dropout = nn.Dropout(dropout)
        self.norm2 = nn.LayerNorm(hidden_dim, eps=1e-6)
        self.mlp = MLP(hidden_dim, mlp_dim, dropout)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        z = z + self.dropout(self.attention(self.norm1(z)))  # z'_ℓ = MSA(LN(z_{ℓ−1})) + z_{ℓ−1}   (eq. 2)
        return z + self.mlp(self.norm2(z))  # z_ℓ = MLP(LN(z'_ℓ)) + z'_ℓ   (eq. 3)


class VisionTransformer(ImageClassifier):
    """The Vision Transformer (Figure 1, Table 1).

    Args:
        img_size: the input size (H, W), or one int for a square, that the position embeddings are learned
            for; both must be multiples of ``patch_size``. ``set_image_size`` changes it later.
        patch_size: P, the side of a patch in pixels.
        num_layers: L, the number of encoder blocks.
        num_heads: attention heads per block.
        hidden_dim: D, the width of every token.
        mlp_dim: the hidden width of each block's MLP (4·D in all of Table 1).
        dropout: dropout after the position embeddings, the attention output and in the MLP.
        attention_dropout: dropout on the attention probabilities.
        representation_size: width of the pre-training head's hidden tanh layer; ``None`` for none.
        num_classes: outputs of the head; 0 leaves it out and returns the pre-logits features.
        in_chans: channels of the input image.
        zero_init_head: start the head at zero (torchvision, the paper's fine-tuning head).

    ``set_grad_checkpointing()`` checkpoints each encoder block in training.
    """

    # The smallest H = W a model built with the default img_size takes; it takes exactly its img_size, and
    # min_input_size follows img_size (set_image_size updates it on the instance).
    min_input_size = 224
    model_name = "vit"
    first_conv = "patch_embed.projection"
    classifier_name = "head"
    final_modules = ("norm",)
    head_modules = ("representation",)
    grad_checkpointing = False  # set_grad_checkpointing

    def __init__(
        self,
        img_size: int | tuple[int, int] = 224,
        patch_size: int = 16,
        num_layers: int = 12,
        num_heads: int = 12,
        hidden_dim: int = 768,
        mlp_dim: int = 3072,
        dropout: float = 0.0,
        attention_dropout: float = 0.0,
        representation_size: int | None = None,
        num_classes: int = 1000,
        in_chans: int = 3,
        zero_init_head: bool = False,
    ) -> None:
        super().__init__()
        self.patch_size = patch_size
        self.hidden_dim = hidden_dim
        self.num_classes = num_classes
        self.in_chans = in_chans
        self.img_size = self._checked_size(img_size)
        self.grid_size = (self.img_size[0] // patch_size, self.img_size[1] // patch_size)
        self.min_input_size = min(self.img_size)

        self.patch_embed = PatchEmbedding(patch_size, in_chans, hidden_dim)
        self.class_token = nn.Parameter(torch.zeros(1, 1, hidden_dim))  # x_class
        num_patches = self.grid_size[0] * self.grid_size[1]
        self.position_embedding = nn.Parameter(torch.empty(1, 1 + num_patches, hidden_dim))  # E_pos
        self.dropout = nn.Dropout(dropout)
        self.encoder = nn.Sequential(*[EncoderBlock(hidden_dim, num_heads, mlp_dim, dropout, attention_dropout)
                                       for _ in range(num_layers)])
        self.norm = nn.LayerNorm(hidden_dim, eps=1e-6)

        # the feature levels: every encoder block's tokens, as a (D, H/P, W/P) map of the patches
        self.feature_info = FeatureInfo((hidden_dim, patch_size, f"encoder.{i}") for i in range(num_layers))
        self.num_features = hidden_dim
        self.global_pool = "token"  # eq. 4 reads the class token; "avg" averages the patch tokens, "" keeps all
        if representation_size is None:
            self.representation: nn.Module = nn.Identity()
        else:  # the pre-training head's hidden layer
            self.representation = nn.Sequential(OrderedDict(fc=nn.Linear(hidden_dim, representation_size),
                                                            act=nn.Tanh()))
            self.head_hidden_size = representation_size
        self.head = nn.Linear(self.head_hidden_size, num_classes) if num_classes > 0 else nn.Identity()
        self._init_weights(zero_init_head)

    def _init_weights(self, zero_init_head: bool) -> None:
        projection = self.patch_embed.projection
        fan_in = projection.in_channels * projection.kernel_size[0] * projection.kernel_size[1]
        nn.init.trunc_normal_(projection.weight, std=math.sqrt(1 / fan_in))
        nn.init.zeros_(projection.bias)
        nn.init.normal_(self.position_embedding, std=0.02)  # as BERT's
        for block in self.encoder:
            for layer in (block.mlp.fc1, block.mlp.fc2):
                nn.init.xavier_uniform_(layer.weight)
                nn.init.normal_(layer.bias, std=1e-6)
        if isinstance(self.representation, nn.Sequential):
            fc = self.representation.fc
            nn.init.trunc_normal_(fc.weight, std=math.sqrt(1 / fc.in_features))
            nn.init.zeros_(fc.bias)
        if isinstance(self.head, nn.Linear):
            self.init_classifier(self.head)
            if zero_init_head:
                nn.init.zeros_(self.head.weight)

    def init_classifier(self, layer: nn.Module) -> None:
        nn.init.trunc_normal_(layer.weight, std=0.02)
        nn.init.zeros_(layer.bias)

    def check_input(self, x: torch.Tensor) -> None:
        check_image_batch(x, model=self, in_chans=self.in_chans)  # everything but the size, which
        self._check_image_size(x)  # must be exactly img_size: this check says so, and how to allow others

    def forward_stem(self, x: torch.Tensor) -> torch.Tensor:
        """Images → z_0 (eq. 1), the class token and the embedded patches ``(N, 1 + L, D)``."""
        patches = self.patch_embed(x)  # (N, L, D)
        class_token = self.class_token.expand(x.shape[0], -1, -1)  # (N, 1, D); len(x) would fix N in export
        return self.dropout(torch.cat([class_token, patches], dim=1) + self.position_embedding)

    def forward_intermediates(self, x: torch.Tensor, indices: int | Sequence[int] | None = None, norm: bool = False,
                              stop_early: bool = False, output_fmt: str = "NCHW", intermediates_only: bool = False
                              ) -> list[torch.Tensor] | tuple[torch.Tensor, list[torch.Tensor]]:
        """As :meth:`ImageClassifier.forward_intermediates`, from tokens: each block's patch tokens (``norm``:
        through the final LayerNorm) as ``(N, D, H/P, W/P)`` maps, or ``(N, L, D)`` with ``output_fmt="NLC"``;
        the final output is every token after the LayerNorm, ``(N, 1 + L, D)``, as ``forward_features``."""
        if output_fmt not in ("NCHW", "NLC"):
            raise ValueError(f"output_fmt must be 'NCHW' or 'NLC' for a ViT's tokens, got {output_fmt!r}")
        self.check_input(x)
        take = feature_indices(indices, len(self.all_levels))
        last = max(take, default=-1) if (stop_early or intermediates_only) else len(self.all_levels) - 1
        z, intermediates = self.forward_stem(x), []
        for index, names in enumerate(self._level_names()[:last + 1]):
            z = self._run(names, z)  # z_l (eqs. 2, 3)
            if index in take:
                patches = (self.norm(z) if norm else z)[:, 1:]  # (N, L, D) without the class token
                intermediates.append(patches if output_fmt == "NLC" else
                                     patches.transpose(1, 2).reshape(z.shape[0], -1, *self.grid_size))
        if intermediates_only:
            return intermediates
        return self.norm(z), intermediates  # LN(z_L); eq. 4 reads its class token

    def set_global_pool(self, global_pool: str) -> None:
        if global_pool not in ("token", "avg", ""):
            raise ValueError(f"global_pool must be 'token', 'avg' or '' for a ViT, got {global_pool!r}")
        self.global_pool = global_pool

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """Tokens ``(N, 1 + L, D)`` → logits ``(N, num_classes)``, or the class token's features if ``pre_logits``."""
        if self.global_pool == "token":
            x = x[:, 0]  # y = LN(z_L^0) (eq. 4): (N, D)
        elif self.global_pool == "avg":
            x = x[:, 1:].mean(dim=1)
        y = self.head_drop(self.representation(x))
        return y if pre_logits else self.head(y)

    def _checked_size(self, img_size: int | tuple[int, int]) -> tuple[int, int]:
        size = _pair(img_size)
        if min(size) < self.patch_size or any(s % self.patch_size for s in size):
            raise ValueError(f"img_size {size} must be positive multiples of the patch size {self.patch_size}")
        return size

    def set_image_size(self, img_size: int | tuple[int, int]) -> None:
        """Take inputs of ``img_size`` = (H, W) from now on (both multiples of the patch size).

        The position embeddings are resampled to the new (H/P, W/P) grid (see
        :func:`resample_position_embedding`) and replace the old parameter: build a new optimizer after this.
        """
        size = self._checked_size(img_size)
        grid = (size[0] // self.patch_size, size[1] // self.patch_size)
        with torch.no_grad():
            resampled = resample_position_embedding(self.position_embedding, self.grid_size, grid)
        self.position_embedding = nn.Parameter(resampled.contiguous())
        self.img_size, self.grid_size, self.min_input_size = size, grid, min(size)

    def resample_position_embedding(self, embedding: torch.Tensor,
                                    old_grid: tuple[int, int] | None = None) -> torch.Tensor:
        """``embedding`` (1, 1 + L, D) from a grid ``old_grid`` (square if ``None``) → this model's grid."""
        if old_grid is None:
            side = math.isqrt(embedding.shape[1] - 1)
            if side * side != embedding.shape[1] - 1:
                raise ValueError(f"{embedding.shape[1] - 1} patch embeddings do not form a square grid; "
                                 "pass old_grid=(rows, columns)")
            old_grid = (side, side)
        return resample_position_embedding(embedding, old_grid, self.grid_size)

    @skip_on_fx_proxies  # as every input check: nothing to check on torch.fx's symbolic input
    def _check_image_size(self, x: torch.Tensor) -> None:
        height, width = x.shape[-2:]
        if (height, width) != self.img_size:
            h, w = self.img_size
            raise ValueError(
                f"{self.model_name} expects a float tensor of shape (N, {self.in_chans}, H, W) with "
                f"(H, W) = ({h}, {w}); got {tuple(x.shape)}: its position embeddings cover a "
                f"{self.grid_size[0]}x{self.grid_size[1]} grid of {self.patch_size}x{self.patch_size} patches. "
                f"Resize the images to {h}x{w}, or allow ({height}, {width}) with "
                f"model.set_image_size(({height}, {width})) or img_size=({height}, {width}) at build time "
                f"(H and W must be multiples of {self.patch_size}; the position embeddings are interpolated)")

_PAPER = Paper(
    title="An Image is Worth 16x16 Words: Transformers for Image Recognition at Scale",
    authors="Alexey Dosovitskiy, Lucas Beyer, Alexander Kolesnikov, Dirk Weissenborn, Xiaohua Zhai, "
            "Thomas Unterthiner, Mostafa Dehghani, Matthias Minderer, Georg Heigold, Sylvain Gelly, "
            "Jakob Uszkoreit, Neil Houlsby",
    year=2020,
    url="https://arxiv.org/abs/2010.11929",
)
_INNOVATIONS = (
    "an image is a sequence of 16x16 patches, each linearly embedded like a word",
    "a learned class token whose final state is the image representation",
    "learned 1-D position embeddings, interpolated in 2-D for other resolutions",
    "a standard pre-norm Transformer encoder with no convolutional inductive bias",
    "large-scale pre-training (ImageNet-21k, JFT-300M) beats built-in priors",
)
_SIZES = {"b": "Base", "l": "Large", "h": "Huge"}


# Table 3 (ImageNet from scratch, ViT-B): Adam (β1 0.9, β2 0.999), batch 4096, lr 3e-3, weight decay 0.3,
# cosine decay after a linear warm-up of 10k steps. Here at batch 128: lr 9.4e-5, scaled linearly, with decoupled
# weight decay (AdamW); the warm-up is one epoch at 10%.
_RECIPE = TrainingRecipe(optimizer="adamw", lr=9.4e-5, weight_decay=0.3, schedule="cosine", batch_size=128,
                         warmup_epochs=1, source="Dosovitskiy et al. 2021, Table 3 (lr scaled from batch 4096 to 128)")


def _card(name: str, params: int, gmacs: float, canonical: bool = False) -> ModelCard:
    size, patch = name.split("_")[1:]
    return ModelCard(
        name=name,
        architecture=f"ViT-{_SIZES[size]}/{patch}",
        task="image-classification",
        paper=_PAPER,
        innovations=_INNOVATIONS,
        input=InputSpec(kind="image", shape=(3, 224, 224), min_size=VisionTransformer.min_input_size,
                        fixed_size=True),
        params=params,
        params_source=f"torchvision.models.{name}, counted",
        reference=f"torchvision.models.{name}",
        gmacs=gmacs,
        recipe=_RECIPE,
        canonical=canonical,
        notes="takes exactly img_size (224x224 by default); img_size=(H, W) or set_image_size((H, W)) "
              "interpolates the position embeddings for another size.",
    )


@register(_card("vit_b_16", params=86_567_656, gmacs=17.564, canonical=True))
def vit_b_16(**kwargs: Any) -> VisionTransformer:
    """ViT-B/16: L=12, D=768, MLP 3072, 12 heads, 16×16 patches."""
    return VisionTransformer(patch_size=16, num_layers=12, num_heads=12, hidden_dim=768, mlp_dim=3072, **kwargs)


@register(_card("vit_b_32", params=88_224_232, gmacs=4.409))
def vit_b_32(**kwargs: Any) -> VisionTransformer:
    """ViT-B/32: L=12, D=768, MLP 3072, 12 heads, 32×32 patches."""
    return VisionTransformer(patch_size=32, num_layers=12, num_heads=12, hidden_dim=768, mlp_dim=3072, **kwargs)


@register(_card("vit_l_16", params=304_326_632, gmacs=61.555))
def vit_l_16(**kwargs: Any) -> VisionTransformer:
    """ViT-L/16: L=24, D=1024, MLP 4096, 16 heads, 16×16 patches."""
    return VisionTransformer(patch_size=16, num_layers=24, num_heads=16, hidden_dim=1024, mlp_dim=4096, **kwargs)


@register(_card("vit_l_32", params=306_535_400, gmacs=15.378))
def vit_l_32(**kwargs: Any) -> VisionTransformer:
    """ViT-L/32: L=24, D=1024, MLP 4096, 16 heads, 32×32 patches."""
    return VisionTransformer(patch_size=32, num_layers=24, num_heads=16, hidden_dim=1024, mlp_dim=4096, **kwargs)


@register(_card("vit_h_14", params=632_045_800, gmacs=167.295))
def vit_h_14(**kwargs: Any) -> VisionTransformer:
    """ViT-H/14: L=32, D=1280, MLP 5120, 16 heads, 14×14 patches."""
    return VisionTransformer(patch_size=14, num_layers=32, num_heads=16, hidden_dim=1280, mlp_dim=5120, **kwargs)


if __name__ == "__main__":
    from paperzoo.cli import main

    main(["run", "vit_b_16"])
