r"""U-Net.

Paper: "U-Net: Convolutional Networks for Biomedical Image Segmentation", Olaf Ronneberger, Philipp Fischer,
Thomas Brox, MICCAI 2015. https://arxiv.org/abs/1505.04597

Biomedical segmentation has few annotated images and needs a label for every pixel. U-Net builds on the
fully convolutional network (Long et al. 2015) and makes its upsampling path as rich as its downsampling one:

* A contracting path (§2), the typical convolutional network: at each of four steps two unpadded 3×3
  convolutions with ReLU, then a 2×2 max pool with stride 2 that halves the resolution, while the number of
  feature channels doubles (64 → 128 → 256 → 512), down to 1024 channels at the bottom.
* A symmetric expansive path: each step up-samples with a 2×2 "up-convolution" that halves the channels,
  concatenates the correspondingly cropped feature map of the contracting path (context meets localisation),
  and applies two 3×3 convolutions with ReLU. A final 1×1 convolution maps the 64 channels to the classes.
  The two paths give the network its U shape (Figure 1).
* Valid convolutions only: an output pixel is computed from input pixels only, none padded, so the output
  (388×388 for a 572×572 tile) covers the centre of the input and large images are segmented seamlessly by
  overlapping tiles, the missing context at the image border extrapolated by mirroring (Figure 2). A tile
  must be chosen so that every 2×2 pooling meets an even size.
* A weighted loss (eq. 1, 2): the pixel-wise softmax with cross entropy, each pixel's term scaled by a weight
  map $w(x) = w_c(x) + w_0 \exp(-(d_1(x) + d_2(x))^2 / 2\sigma^2)$ that balances the class frequencies and puts a large
  weight on the thin background gaps between touching cells (d_1, d_2: distances to the nearest and the
  second nearest cell; w_0 = 10, σ ≈ 5 pixels). :func:`separation_weight_map` computes it.
* Strong data augmentation with elastic deformations, so that a few dozen annotated images suffice (§3.1),
  and dropout at the end of the contracting path.

Data flow at the paper's tile (Figure 1), channels × height × width::

    tile 1×572×572
      contracting step 1: 3×3, 3×3 → 64×568×568 ──────── crop 88 ─── copy ──────┐
      pool → step 2: 3×3, 3×3       → 128×280×280 ─── crop 40 ─── copy ──┐      │
      pool → step 3: 3×3, 3×3       → 256×136×136 ─ crop 16 ─ copy ─┐    │      │
      pool → step 4: 3×3, 3×3       → 512×64×64  ─ crop 4 ─ copy ┐  │    │      │
      pool → bottom: 3×3, 3×3       → 1024×28×28                 │  │    │      │
      up-conv 2×2 → 512×56×56,   concat (1024) → 3×3, 3×3 → 512×52×52  │    │      │
      up-conv 2×2 → 256×104×104, concat (512)  → 3×3, 3×3 → 256×100×100     │      │
      up-conv 2×2 → 128×200×200, concat (256)  → 3×3, 3×3 → 128×196×196            │
      up-conv 2×2 → 64×392×392,  concat (128)  → 3×3, 3×3 → 64×388×388
      1×1 convolution                                     → 2×388×388 class scores

Parameters: 31,030,658, counted from Figure 1 (the paper states none): 23 convolutional layers with biases,
the four up-convolutions among them.

``unet_padded`` pads every 3×3 convolution by one pixel, so that the output has the input's size (any multiple
of 16): not the paper's network, but the form most later work uses; the parameters are the same.

Initialisation as §3: every weight from a Gaussian with standard deviation √(2/N), N the number of incoming
nodes of one neuron (3·3·C_in for a 3×3 convolution, C_in for the 2×2 up-convolution, which has one tap per
output pixel); biases zero.

Deviations:

* The paper places "drop-out layers at the end of the contracting path" without saying where exactly; as in
  the authors' released Caffe model, dropout (p = 0.5) is applied to the output of the fourth contracting step
  (which feeds both the pool and the copy) and of the bottom step.
* ``loss`` averages the per-tile energy of eq. 1 (a sum over the tile's pixels) over the tiles of a batch;
  the paper trains on one tile per batch, where the two agree. Target pixels labelled 255 are ignored (the
  convention of the other segmentation models here; the paper has no such label).
* Not part of the model: the overlap-tile strategy with mirrored borders, the elastic deformations, and the
  paper's optimiser (SGD, momentum 0.99).
"""

from __future__ import annotations

import itertools
import math
from collections import OrderedDict
from typing import Any

import torch
from torch import nn

from paperzoo.layers import ClassLayersMixin, ConvNormAct, check_image_batch, pixelwise_cross_entropy
from paperzoo.registry import InputSpec, ModelCard, Paper, register

__all__ = ["UNet", "DoubleConv", "ExpansiveStep", "center_crop", "separation_weight_map"]


class DoubleConv(nn.Sequential):
    """"The repeated application of two 3x3 convolutions (unpadded convolutions), each followed by a ReLU";
    ``padding=1`` keeps the size instead (the padded variant)."""

    def __init__(self, in_channels: int, out_channels: int, padding: int) -> None:
        super().__init__(OrderedDict(
            conv1=ConvNormAct(in_channels, out_channels, kernel_size=3, padding=padding, norm_layer=None),
            conv2=ConvNormAct(out_channels, out_channels, kernel_size=3, padding=padding, norm_layer=None),
        ))


def center_crop(feature_map: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    r"""The centre ``size`` of a map ``(N, C, H, W)``: the part of a contracting-path map that the up-convolved
    map below it still covers.

    Why the copy is larger: with valid convolutions each 3×3 layer trims one pixel off every border, so the
    path that goes down from a contracting step and comes back up trims more than the copy does. Call $D_l$ the
    difference in size between the map copied at step l and the up-convolved map it meets. One level deeper the
    pool halves the size, the two convolutions of that level's contracting step and the two of its expansive
    step trim 4 each, and its own difference $D_{l+1}$ is cut out in between; the up-convolution doubles it all
    back, so $D_l = 2 (4 + D_{l+1} + 4) = 16 + 2 D_{l+1}$. Above the bottom, whose two convolutions trim 4,
    $D = 2 \cdot 4 = 8$. Hence D = 8, 32, 80, 176 from the deepest copy up: the paper's crops of 4, 16, 40 and 88
    pixels on each side (64 → 56, 136 → 104, 280 → 200, 568 → 392 at the 572 tile). Each D is even, so the
    crop is centred exactly.
    """
    height, width = feature_map.shape[-2:]
    top, left = (height - size[0]) // 2, (width - size[1]) // 2
    return feature_map[..., top:top + size[0], left:left + size[1]]


class ExpansiveStep(nn.Module):
    """One step of the expansive path: 2×2 up-convolution halving the channels, concatenation with the cropped
    copy from the contracting path, two 3×3 convolutions."""

    def __init__(self, in_channels: int, out_channels: int, padding: int) -> None:
        super().__init__()
        # Stride 2 with a 2×2 kernel: every input pixel becomes a 2×2 block of outputs, no overlap.
        self.up_conv = nn.ConvTranspose2d(in_channels, out_channels, kernel_size=2, stride=2)
        self.convs = DoubleConv(2 * out_channels, out_channels, padding)

    def forward(self, x: torch.Tensor, copied: torch.Tensor) -> torch.Tensor:
        x = self.up_conv(x)  # (N, C, h, w) → (N, C/2, 2h, 2w)
        x = torch.cat([center_crop(copied, x.shape[-2:]), x], dim=1)  # (N, C, 2h, 2w)
        return self.convs(x)


def _init_conv(conv: nn.Conv2d) -> None:
    nn.init.normal_(conv.weight, std=math.sqrt(2 / conv.weight[0].numel()))  # N = k·k·C_in incoming nodes
    nn.init.zeros_(conv.bias)


class UNet(ClassLayersMixin, nn.Module):
    """U-Net (Figure 1).

    Args:
        num_classes: output channels of the final 1×1 convolution (2 in the paper: cell and background).
        in_chans: channels of the input tile (1: the paper's grey-value microscopy images).
        base_width: channels of the first contracting step (64); each step down doubles them.
        depth: number of poolings (4); the bottom step has ``base_width · 2^depth`` channels.
        padded: pad the 3×3 convolutions so that the output has the input's size (not the paper's network).
        dropout: dropout probability at the end of the contracting path.
    """

    min_input_size = 188  # the smallest valid tile at depth 4: 12 + 16·11, output 4×4 (see valid_sizes)
    model_name = "unet"
    class_layer_names = ("classifier",)  # reset_classifier rebuilds it

    def __init__(self, num_classes: int = 2, in_chans: int = 1, base_width: int = 64, depth: int = 4,
                 padded: bool = False, dropout: float = 0.5) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.in_chans = in_chans
        self.depth = depth
        self.padded = padded
        padding = 1 if padded else 0
        widths = [base_width * 2**level for level in range(depth + 1)]  # 64, 128, 256, 512, 1024

        inputs = [in_chans, *widths[:depth - 1]]
        self.contracting = nn.ModuleList(
            DoubleConv(c_in, c_out, padding) for c_in, c_out in zip(inputs, widths[:depth], strict=True))
        self.pool = nn.MaxPool2d(kernel_size=2, stride=2)
        self.bottom = DoubleConv(widths[depth - 1], widths[depth], padding)
        self.dropout = nn.Dropout(dropout)
        self.expansive = nn.ModuleList(ExpansiveStep(widths[level + 1], widths[level], padding)
                                       for level in reversed(range(depth)))
        self.classifier = nn.Conv2d(base_width, num_classes, kernel_size=1)
        self.min_input_size = self.valid_sizes(1)[0]
        self._init_weights()

    def _init_weights(self) -> None:
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                _init_conv(module)
            elif isinstance(module, nn.ConvTranspose2d):  # stride = kernel: one tap per input channel
                nn.init.normal_(module.weight, std=math.sqrt(2 / module.in_channels))
                nn.init.zeros_(module.bias)

    def new_class_layer(self, name: str, layer: nn.Module, num_classes: int) -> nn.Module:
        conv = super().new_class_layer(name, layer, num_classes)
        _init_conv(conv)
        return conv

    def output_size(self, size: int) -> int | None:
        """The output's height (or width) for an input of ``size``, or ``None`` where the arithmetic of the
        valid convolutions does not close: a pooling would meet an odd size, or a map would vanish."""
        trim = 0 if self.padded else 4  # two 3×3 convolutions
        for _ in range(self.depth):  # contracting step, then the 2×2 pool
            size -= trim
            if size < 2 or size % 2:
                return None
            size //= 2
        size -= trim  # the bottom step
        for _ in range(self.depth):  # up-convolution doubles, the two convolutions trim
            size = 2 * size - trim
            if size < 1:
                return None
        return size

    def valid_sizes(self, near: int) -> list[int]:
        """The valid input sizes closest to ``near``: the largest one below it (if any) and the smallest one
        at or above it. At depth 4 the valid sizes are 188 + 16k with valid convolutions (572 = 188 + 16·24),
        the multiples of 16 when padded; beyond the smallest, every 2^depth-th size is valid, so both searches end."""
        below = next((s for s in range(near - 1, 0, -1) if self.output_size(s) is not None), None)
        above = next(s for s in itertools.count(max(near, 1)) if self.output_size(s) is not None)
        return [s for s in (below, above) if s is not None]

    def _check_size(self, x: torch.Tensor) -> None:
        for size in x.shape[-2:]:
            if self.output_size(size) is None:
                nearest = " and ".join(map(str, self.valid_sizes(size)))
                rule = (f"multiples of {2**self.depth}" if self.padded
                        else f"of the form {self.min_input_size} + {2**self.depth}k, so that every 2×2 pooling of "
                             "the valid convolutions meets an even size")
                raise ValueError(f"{self.model_name} expects a float tensor of shape (N, {self.in_chans}, H, W) "
                                 f"with H and W {rule}; got {tuple(x.shape)}: {size} is not such a size; the "
                                 f"nearest valid sizes are {nearest} (crop, or pad by mirroring as the paper does)")

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Tiles ``(N, in_chans, H, W)`` → ``{"out": class scores (N, num_classes, h, w)}``, h = H − 184 at depth 4
        (the centre of the tile), or h = H when padded."""
        check_image_batch(x, model=self, in_chans=self.in_chans, min_size=self.min_input_size)
        self._check_size(x)
        copies = []
        for level, step in enumerate(self.contracting):
            x = step(x)
            if level == self.depth - 1:  # the end of the contracting path
                x = self.dropout(x)
            copies.append(x)
            x = self.pool(x)  # (N, C, H, W) → (N, C, H/2, W/2)
        x = self.dropout(self.bottom(x))
        for step, copied in zip(self.expansive, reversed(copies), strict=True):
            x = step(x, copied)
        return {"out": self.classifier(x)}

    def loss(self, outputs: dict[str, torch.Tensor], target: torch.Tensor,
             weight_map: torch.Tensor | None = None) -> torch.Tensor:
        """The energy of eq. 1: −Σ_x w(x) log p_ℓ(x)(x) over each tile's pixels, averaged over the tiles.

        ``target`` ``(N, H, W)`` holds class indices (255: ignored) for the output's pixels, or for the whole
        input tile, whose centre the output covers: it is then cropped to it, as is ``weight_map`` (``w(x)``
        of eq. 2, from :func:`separation_weight_map`; none: w = 1).
        """
        logits = outputs["out"]
        size = tuple(logits.shape[-2:])
        if isinstance(target, torch.Tensor) and target.ndim == 3 and tuple(target.shape[-2:]) != size:
            target = center_crop(target, size)
            if weight_map is not None:
                weight_map = center_crop(weight_map, size)
        return pixelwise_cross_entropy(logits, target, name=self.model_name, pixel_weights=weight_map,
                                       sum_over_pixels=True)


def _distance_to(mask: torch.Tensor) -> torch.Tensor:
    """Euclidean distance from every pixel of a map ``(H, W)`` to the nearest pixel where ``mask`` is true.

    The squared distance is separable: min over (y', x') of (y − y')² + (x − x')² is a minimum over rows, then
    one over columns (Felzenszwalb and Huttenlocher 2012). Each minimum is taken by brute force, O(H·W·(H + W)).
    """
    height, width = mask.shape
    far = float(height**2 + width**2)  # more than any distance inside the map
    ys = torch.arange(height, dtype=torch.float32)
    xs = torch.arange(width, dtype=torch.float32)
    cost = torch.where(mask, 0.0, far)  # (H, W)
    along_y = ((ys[:, None] - ys[None, :]) ** 2)[:, :, None] + cost[None, :, :]  # (H, H', W): (y − y')² + cost
    nearest_in_column = along_y.min(dim=1).values  # (H, W)
    along_x = ((xs[:, None] - xs[None, :]) ** 2)[None, :, :] + nearest_in_column[:, None, :]  # (H, W, W')
    return along_x.min(dim=2).values.sqrt()


def separation_weight_map(instances: torch.Tensor, w0: float = 10.0, sigma: float = 5.0) -> torch.Tensor:
    """The weight map of eq. 2 for one annotated image: w(x) = w_c(x) + w0 · exp(−(d1(x) + d2(x))² / (2σ²)).

    Args:
        instances: ``(H, W)`` integers, 0 for background and 1, 2, … for the individual cells.
        w0, sigma: the paper's w_0 = 10 and σ ≈ 5 pixels.

    w_c balances the class frequencies (the paper gives no formula; here each of the two classes, cell and
    background, gets the same total weight: w_c = H·W / (2 · pixels of that class)). The border term, with
    d1 and d2 the distances to the nearest and the second-nearest cell, is added on background pixels only:
    it is there for the "separating background labels between touching cells" (§3).
    """
    foreground = instances > 0
    total = instances.numel()
    weights = torch.ones(instances.shape, dtype=torch.float32)
    for pixels in (foreground, ~foreground):
        count = int(pixels.sum())
        if 0 < count < total:
            weights[pixels] = total / (2 * count)
    cells = [c for c in instances.unique().tolist() if c > 0]
    if len(cells) >= 2:
        distances = torch.stack([_distance_to(instances == c) for c in cells])  # (cells, H, W)
        d1, d2 = distances.topk(2, dim=0, largest=False).values  # the two nearest cells
        border = w0 * torch.exp(-((d1 + d2) ** 2) / (2 * sigma**2))
        weights = weights + torch.where(foreground, 0.0, border)
    return weights


_PAPER = Paper(
    title="U-Net: Convolutional Networks for Biomedical Image Segmentation",
    authors="Olaf Ronneberger, Philipp Fischer, Thomas Brox",
    year=2015,
    url="https://arxiv.org/abs/1505.04597",
)
_INNOVATIONS = (
    "a contracting path for context and a symmetric expansive path for localisation: the U shape",
    "copy-and-crop skip connections carry high-resolution features across the U",
    "unpadded 3x3 convolutions: the output covers the tile's centre, and overlapping tiles segment any image",
    "a weight map in the loss that stresses the thin background gaps between touching cells",
    "elastic-deformation augmentation to learn from a few dozen annotated images",
)


def _card(name: str, architecture: str, shape: tuple[int, int, int], min_size: int, gmacs: float,
          canonical: bool = False, notes: str = "") -> ModelCard:
    return ModelCard(
        name=name,
        architecture=architecture,
        task="semantic-segmentation",
        paper=_PAPER,
        innovations=_INNOVATIONS,
        input=InputSpec(kind="image", shape=shape, min_size=min_size),
        params=31_030_658,
        params_source="derived by hand from the paper's Figure 1 (the paper states no count), 23 convolutions with "
                      "biases: 4,684,224 (contracting path, eight 3x3) + 14,157,824 (bottom, two 3x3) + 12,188,480 "
                      "(expanding path, four 2x2 up-convolutions and eight 3x3) + 130 (1x1 classifier) = 31,030,658",
        reference="paper",
        gmacs=gmacs,
        canonical=canonical,
        notes=notes,
    )


@register(_card("unet", "U-Net", (1, 572, 572), UNet.min_input_size, gmacs=150.428, canonical=True,
                notes="valid convolutions: a 572x572 tile gives 388x388 scores; sizes 188 + 16k"))
def unet(**kwargs: Any) -> UNet:
    """The paper's U-Net: valid convolutions, 572×572 tiles → 388×388 scores, 2 classes."""
    return UNet(**kwargs)


@register(_card("unet_padded", "U-Net (padded convolutions)", (1, 512, 512), 16, gmacs=192.384,
                notes="padded 3x3 convolutions (not the paper's): the output has the input's size, any multiple of 16"))
def unet_padded(**kwargs: Any) -> UNet:
    """U-Net with padded 3×3 convolutions: output size = input size (a multiple of 16)."""
    return UNet(padded=True, **kwargs)


if __name__ == "__main__":
    from paperzoo.cli import main

    main(["run", "unet"])
