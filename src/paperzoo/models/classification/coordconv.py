r"""CoordConv: convolution that knows where it is.

Paper: "An Intriguing Failing of Convolutional Neural Networks and the CoordConv Solution", Rosanne Liu, Joel
Lehman, Piero Molino, Felipe Petroski Such, Eric Frank, Alex Sergeev, Jason Yosinski, NeurIPS 2018.
https://arxiv.org/abs/1807.03247

A convolution applies the same filter everywhere and never sees the position it is applied at. That is what
makes it translation-equivariant, and it is also why convolutional nets fail at the simplest *coordinate
transform*: given a pixel's coordinates (i, j), paint that pixel in a 64×64 one-hot image (supervised
coordinate classification), or the inverse, given the one-hot image, say where the pixel is (supervised
coordinate regression). On the paper's Not-so-Clevr data a deconvolutional net trains slowly and reaches at
most about 86% test accuracy when the train and test positions are interleaved, and essentially none when
a whole quadrant of positions is held out (§4).

* The CoordConv layer (§3, Figure 3). Before the convolution, concatenate hard-coded coordinate channels to
  its input: an i channel (row r holds r) and a j channel (column c holds c), both scaled linearly to
  [−1, 1], and optionally a radius channel $r = \sqrt{i^2 + j^2}$, the distance from the centre. The filter can
  now use position, or learn to ignore it (zero weights on those channels) and stay translation-invariant.
  The cost is 2 or 3 extra input channels: (c + 2)·c'·k² weights instead of c·c'·k².
* With coordinates the coordinate transform is easy: a stack of 1×1 CoordConvs compares, at every pixel, the
  input coordinates tiled over the canvas with the pixel's own, and generalises perfectly to held-out
  quadrants within seconds of training (§4). (``tests/test_coordconv.py`` reproduces this on a 16×16 canvas:
  most seeds paint every held-out pixel, a few 88–97% of them; a deconvolutional net of the same size, 2%.)
* Elsewhere (§5) a CoordConv in front of a network is harmless where translation invariance is what the
  task needs: on ImageNet, one 1×1 CoordConv (with the r channel) of 8 output channels in front of ResNet-50
  changes top-5 accuracy by 0.04%, not significant.

Data flow of ``coordconv_resnet50`` at 224×224::

    image 3×224×224
      AddCoords: + i, j, r channels                         6×224×224
      1×1 convolution, 8 channels                           8×224×224
      ResNet-50 with an 8-channel first convolution         1000 logits

Data flow of the coordinate classifier (``coordconv_classifier``, 64×64 canvas)::

    coordinates (i, j) in [−1, 1]                  2
      tile over the canvas                         2×64×64      every pixel sees the target
      1×1 CoordConv (+ i, j of each pixel), 32     32×64×64     then ReLU
      1×1 convolutions 32, 64, 64 (ReLU), 1        1×64×64
      flatten                                      4096 logits: a softmax over the pixels paints one

and of the coordinate regressor (one-hot 64×64 image → its pixel's (i, j))::

    image 1×64×64 → 1×1 CoordConv 8 → 1×1 8 → 1×1 8 → 3×3 8 → 3×3 2 → global max over the pixels → 2

Deviations from the paper, and its gaps filled:

* ``coordconv_resnet50`` builds ResNet-50 through the registry (``create_model("resnet50", in_chans=8)``),
  so it is torchvision's ResNet-50 (stride on the 3×3 convolution, "v1.5"); the paper does not say which
  ResNet-50 it used. The 1×1 CoordConv has a bias and no normalisation or activation after it (the paper
  names only the layer) and keeps PyTorch's default initialisation.
* The Not-so-Clevr networks take their layers from the authors' released models (``CoordConvPainter`` and
  the CoordConv ``ConvRegressor``): the classifier's 1×1 stack 32, 32, 64, 64, 1 with ReLUs; the
  regressor's 8, 8, 8, 8, 2 with no non-linearity between layers (the global max pool is the only one: the
  pixel under the dot responds in a way no other can, and the max picks it). He-normal weights and zero
  biases, as there.
* The coordinate classifier takes the coordinates scaled to [−1, 1] like the coordinate channels
  (:func:`normalize_coordinates` converts pixel indices); the released code tiles the raw pixel indices
  (0 … 63). An affine change of the input, absorbed by the first layer's weights; it puts the tiled input
  and the coordinate channels on one scale and makes the input independent of the canvas size.
* The released code appends the coordinate channels as (j, i); we append (i, j), the paper's order.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

import torch
from torch import nn

from paperzoo.layers import FeatureInfo, check_image_batch, check_input_values, skip_on_fx_proxies
from paperzoo.layers.classifier import ImageClassifier
from paperzoo.registry import InputSpec, ModelCard, Paper, create_model, register

__all__ = [
    "AddCoords", "CoordConv2d", "CoordConvResNet", "CoordinateClassifier", "CoordinateRegressor",
    "normalize_coordinates",
]


class AddCoords(nn.Module):
    """Concatenate coordinate channels to a feature map: (N, C, H, W) → (N, C + 2, H, W), or C + 3 with r.

    Channel C holds the row index i, channel C + 1 the column index j, each scaled linearly so that the first
    row (column) is −1 and the last is +1; channel C + 2, with ``with_r``, the radius r = √(i² + j²).
    """

    def __init__(self, with_r: bool = False) -> None:
        super().__init__()
        self.with_r = with_r

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, _, h, w = x.shape
        # 2·index/(size − 1) − 1; a single row or column gets −1.
        rows = torch.linspace(-1.0, 1.0, h, dtype=x.dtype, device=x.device)
        cols = torch.linspace(-1.0, 1.0, w, dtype=x.dtype, device=x.device)
        i = rows.view(1, 1, h, 1).expand(n, 1, h, w)  # (H,) → (N, 1, H, W): constant along each row
        j = cols.view(1, 1, 1, w).expand(n, 1, h, w)  # (W,) → (N, 1, H, W): constant along each column
        channels = [x, i, j]
        if self.with_r:
            channels.append(torch.sqrt(i * i + j * j))  # distance from the centre of the map
        return torch.cat(channels, dim=1)

    def extra_repr(self) -> str:
        return f"with_r={self.with_r}"


class CoordConv2d(nn.Module):
    """A CoordConv layer (Figure 3): :class:`AddCoords`, then an ``nn.Conv2d`` over ``in_channels`` + 2 (+ 1)
    channels. A drop-in replacement for ``nn.Conv2d(in_channels, out_channels, ...)``.

    Args:
        in_channels, out_channels, kernel_size, stride, padding, bias: as ``nn.Conv2d``.
        with_r: add the radius channel as well as i and j.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 1, stride: int = 1,
                 padding: int = 0, bias: bool = True, with_r: bool = False) -> None:
        super().__init__()
        self.add_coords = AddCoords(with_r)
        self.conv = nn.Conv2d(in_channels + 2 + int(with_r), out_channels, kernel_size, stride=stride,
                              padding=padding, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(self.add_coords(x))


class CoordConvResNet(ImageClassifier):
    """A 1×1 CoordConv in front of a registered classifier: the paper's ImageNet experiment (§5).

    Args:
        backbone: the registered classifier behind the CoordConv (``"resnet50"`` in the paper), built with
            ``in_chans=coord_channels``.
        coord_channels: output channels of the CoordConv (8).
        with_r: the CoordConv adds the radius channel (the paper's ImageNet model does).
        num_classes: outputs of the backbone's classifier; 0 returns pooled features.
        in_chans: channels of the input image.
        **backbone_kwargs: passed on to the backbone (``stride_in_1x1=True``, ...).

    The feature levels, the head and the classifier are the backbone's; the CoordConv joins its stem.
    """

    min_input_size = 32  # ResNet-50's total stride (its own input check enforces it too)
    model_name = "coordconv_resnet"
    first_conv = "coord_conv.conv"

    def __init__(self, backbone: str = "resnet50", coord_channels: int = 8, with_r: bool = True,
                 num_classes: int = 1000, in_chans: int = 3, **backbone_kwargs: Any) -> None:
        super().__init__()
        self.in_chans = in_chans
        self.coord_conv = CoordConv2d(in_chans, coord_channels, kernel_size=1, with_r=with_r)
        self.backbone = create_model(backbone, in_chans=coord_channels, num_classes=num_classes,
                                     **backbone_kwargs)
        self.num_classes = num_classes
        self.num_features = self.backbone.num_features
        self.head_hidden_size = self.backbone.head_hidden_size
        # the backbone's levels, final layers and classifier, named from here
        self.feature_info = FeatureInfo((level.channels, level.stride, f"backbone.{level.module}")
                                        for level in self.backbone.all_levels)
        self.level_modules = tuple(tuple(f"backbone.{name}" for name in names)
                                   for names in self.backbone._level_names())
        self.final_modules = tuple(f"backbone.{name}" for name in self.backbone.final_modules)
        self.classifier_name = f"backbone.{self.backbone.classifier_name}"

    def forward_stem(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone.forward_stem(self.coord_conv(x))  # (N, 8, H, W) into the backbone's stem

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        return self.backbone.forward_head(x, pre_logits=pre_logits)

    def set_global_pool(self, global_pool: str) -> None:
        self.backbone.set_global_pool(global_pool)

    def set_drop_rate(self, drop_rate: float) -> None:
        self.backbone.set_drop_rate(drop_rate)

    def reset_classifier(self, num_classes: int, global_pool: str | None = None) -> None:
        self.backbone.reset_classifier(num_classes, global_pool)
        self.num_classes = num_classes


def normalize_coordinates(indices: torch.Tensor, size: int) -> torch.Tensor:
    """Pixel indices 0 … size − 1 → the [−1, 1] scale of :class:`AddCoords`' channels (float)."""
    return indices.float() * (2.0 / (size - 1)) - 1.0


def _init_he_normal(module: nn.Module) -> None:
    """He-normal (fan-in) weights and zero biases, the initialisation of the authors' toy models."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)


class CoordinateClassifier(nn.Module):
    """Supervised coordinate classification (§4): coordinates (i, j) → one logit per pixel of the canvas.

    ``forward`` takes ``(N, 2)`` coordinates in [−1, 1] (row, column; :func:`normalize_coordinates` converts
    pixel indices) and returns ``(N, canvas_size²)`` logits, row-major: ``.view(N, canvas_size, canvas_size)``
    gives the painted image, and a softmax cross-entropy against the pixel's index trains it.

    Args:
        canvas_size: the canvas is ``canvas_size × canvas_size`` (64 in the paper).
        widths: output channels of the 1×1 layers before the last (the first is the CoordConv).
        with_r: the CoordConv adds the radius channel too.
    """

    model_name = "coordinate_classifier"

    def __init__(self, canvas_size: int = 64, widths: tuple[int, ...] = (32, 32, 64, 64),
                 with_r: bool = False) -> None:
        super().__init__()
        self.canvas_size = canvas_size
        self.num_classes = canvas_size * canvas_size  # one class per pixel
        layers: OrderedDict[str, nn.Module] = OrderedDict()
        layers["coord_conv"] = CoordConv2d(2, widths[0], kernel_size=1, with_r=with_r)
        layers["act1"] = nn.ReLU(inplace=True)
        for k, (c_in, c_out) in enumerate(zip(widths[:-1], widths[1:], strict=True), start=2):
            layers[f"conv{k}"] = nn.Conv2d(c_in, c_out, kernel_size=1)
            layers[f"act{k}"] = nn.ReLU(inplace=True)
        layers["logits"] = nn.Conv2d(widths[-1], 1, kernel_size=1)
        self.layers = nn.Sequential(layers)
        _init_he_normal(self)

    def forward(self, coords: torch.Tensor) -> torch.Tensor:
        _check_coordinates(coords, self)
        size = self.canvas_size
        tiled = coords[:, :, None, None].expand(-1, -1, size, size)  # (N, 2) → (N, 2, S, S)
        return self.layers(tiled).flatten(1)  # (N, 1, S, S) → (N, S·S)


class CoordinateRegressor(nn.Module):
    """Supervised coordinate regression (§4): a one-hot image → the (i, j) of its hot pixel, in [−1, 1].

    Args:
        widths: output channels of the 1×1 CoordConv, two 1×1 and one 3×3 convolution (8 each); a last
            3×3 convolution gives the two coordinates, and a global max over the pixels reads them out.
        with_r: the CoordConv adds the radius channel too.
        in_chans: channels of the input image (1).
    """

    model_name = "coordinate_regressor"

    def __init__(self, widths: tuple[int, int, int, int] = (8, 8, 8, 8), with_r: bool = False,
                 in_chans: int = 1) -> None:
        super().__init__()
        self.in_chans = in_chans
        self.layers = nn.Sequential(OrderedDict([  # linear throughout; the max pool below is the non-linearity
            ("coord_conv", CoordConv2d(in_chans, widths[0], kernel_size=1, with_r=with_r)),
            ("conv2", nn.Conv2d(widths[0], widths[1], kernel_size=1)),
            ("conv3", nn.Conv2d(widths[1], widths[2], kernel_size=1)),
            ("conv4", nn.Conv2d(widths[2], widths[3], kernel_size=3, padding=1)),
            ("conv5", nn.Conv2d(widths[3], 2, kernel_size=3, padding=1)),
        ]))
        _init_he_normal(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_image_batch(x, model=self, in_chans=self.in_chans)
        return self.layers(x).amax(dim=(2, 3))  # global max pool: (N, 2, H, W) → (N, 2)


@skip_on_fx_proxies  # as every input check: nothing to check on torch.fx's symbolic input
def _check_coordinates(x: object, model: nn.Module) -> None:
    """A batch of coordinate pairs: a float tensor of shape (N, 2), of the model's dtype."""
    expected = f"{model.model_name} expects a float tensor of shape (N, 2) of (i, j) coordinates in [-1, 1]"
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"{expected}; got {type(x).__name__}: convert it with torch.as_tensor")
    problem = None
    if x.ndim == 1 and x.shape[0] == 2:
        problem = "the batch dimension is missing; add it with x.unsqueeze(0)"
    elif x.ndim != 2 or x.shape[1] != 2:
        problem = "pass one (i, j) pair per row"
    elif not x.is_floating_point():
        problem = "integer pixel indices; scale them with normalize_coordinates(x, canvas_size)"
    if problem is not None:
        raise ValueError(f"{expected}; got {tuple(x.shape)}: {problem}")
    check_input_values(x, model=model, expected=expected)


_PAPER = Paper(
    title="An Intriguing Failing of Convolutional Neural Networks and the CoordConv Solution",
    authors="Rosanne Liu, Joel Lehman, Piero Molino, Felipe Petroski Such, Eric Frank, Alex Sergeev, "
            "Jason Yosinski",
    year=2018,
    url="https://arxiv.org/abs/1807.03247",
)
_INNOVATIONS = (
    "CoordConv: concatenate i and j coordinate channels, scaled to [-1, 1], to a convolution's input",
    "an optional radius channel r = sqrt(i^2 + j^2) (the ImageNet model uses it)",
    "the network learns how much translation dependence to keep; zero weights on the coordinates restore a conv",
    "solves the coordinate transform (coordinates <-> one-hot pixel) that plain convolution fails to generalise",
)


@register(ModelCard(
    name="coordconv_resnet50",
    architecture="CoordConv ResNet-50",
    task="image-classification",
    paper=_PAPER,
    innovations=_INNOVATIONS,
    input=InputSpec(kind="image", shape=(3, 224, 224), min_size=CoordConvResNet.min_input_size),
    params=25_572_768,
    params_source="derived by hand (§5; the paper states no count): 25,557,032 (ResNet-50) + 15,680 (an 8-channel "
                  "first convolution, 64·5·7·7 more weights) + 56 (the 1×1 CoordConv with r, 3 + 3 → 8 channels, "
                  "6·8 + 8) = 25,572,768",
    reference="paper",
    gmacs=4.288,
    canonical=True,
))
def coordconv_resnet50(**kwargs: Any) -> CoordConvResNet:
    """ResNet-50 behind one 1×1 CoordConv (with r) of 8 channels, the paper's ImageNet model."""
    return CoordConvResNet(backbone="resnet50", coord_channels=8, with_r=True, **kwargs)


@register(ModelCard(
    name="coordconv_classifier",
    architecture="CoordConv coordinate classifier",
    task="image-classification",
    paper=_PAPER,
    innovations=_INNOVATIONS,
    input=InputSpec(kind="coordinates", shape=(2,)),
    params=7_553,
    params_source="derived by hand from the widths of the authors' released model (the paper states no count): "
                  "160 (1×1 CoordConv, 2 + 2 → 32) + 1,056 (32 → 32) + 2,112 (32 → 64) + 4,160 (64 → 64) + 65 "
                  "(64 → 1) = 7,553",
    reference="paper",
    gmacs=0.030,
    notes="Input: (N, 2) coordinates in [-1, 1]; output: (N, 4096) logits, one per pixel of the 64x64 canvas.",
))
def coordconv_classifier(**kwargs: Any) -> CoordinateClassifier:
    """The Not-so-Clevr coordinate classifier: (i, j) → one-hot 64×64 canvas, 1×1 CoordConvs only."""
    return CoordinateClassifier(**kwargs)


if __name__ == "__main__":
    from paperzoo.cli import main

    main(["run", "coordconv_resnet50"])
