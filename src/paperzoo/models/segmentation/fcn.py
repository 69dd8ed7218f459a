"""FCN: fully convolutional networks.

Paper: "Fully Convolutional Networks for Semantic Segmentation", Jonathan Long, Evan Shelhamer, Trevor Darrell,
CVPR 2015 (arXiv 2014). https://arxiv.org/abs/1411.4038

A classification network, trained end to end, pixels to pixels, becomes a segmentation network:

* Convolutionalisation (§3.1). A fully-connected layer is a convolution whose kernel covers its whole input:
  VGG-16's fc6 (25088 → 4096) is a 7×7 convolution over pool5's 512 channels, fc7 a 1×1 convolution. The
  network then takes any input size and outputs a coarse map of class scores, one per 32×32 stride, computed
  in one pass with the sharing of computation that sliding a classifier over the image would waste.
* In-network upsampling by backwards ("de-") convolution with output stride f (§3.3): a transposed
  convolution with a 2f×2f kernel, initialised to bilinear interpolation. Upsampling layers can learn.
* The skip architecture (§4.2, Figure 3): the stride-32 predictions are coarse, so scores predicted from
  pool4 (stride 16) and pool3 (stride 8) by 1×1 "score" layers are added to the 2×-upsampled coarser ones.
  FCN-32s upsamples fc7's scores directly; FCN-16s fuses pool4's; FCN-8s fuses pool4's and pool3's. "Combining
  what and where": deep coarse semantics with shallow fine appearance. On PASCAL VOC 2011 the mean IU goes
  59.4 → 62.4 → 62.7 (Table 2).
* Whole-image training with the per-pixel multinomial logistic loss, summed over the image (§3, §4.3).

The input is zero-padded by 100 pixels (conv1_1's padding in the authors' Caffe models): fc6's valid 7×7
convolution needs pool5 to be at least 7×7, and with the padding every image size gets a score map that covers
the whole image; Caffe's pooling rounds sizes up (``ceil_mode``), which the padding's arithmetic relies on.
The upsampled scores are then cropped back to the image. The crop offsets follow from where each layer's
outputs sit on its input (see :func:`crop`).

Data flow of FCN-8s at 512×512, 21 classes (PASCAL VOC's 20 and background)::

    image 3×512×512 → zero-pad 100                                        3×712×712 (conv1_1's pad)
      VGG-16 blocks 1–3 (ceil-mode pools)        → pool3 256×89×89  ─→ score_pool3 1×1 → 21×89×89
      block 4                                    → pool4 512×45×45  ─→ score_pool4 1×1 → 21×45×45
      block 5                                    → pool5 512×23×23
      fc6 7×7 (valid) → ReLU → dropout           → 4096×17×17
      fc7 1×1 → ReLU → dropout → score_fr 1×1    → 21×17×17
      upscore2 (×2, learned)        → 21×36×36  + score_pool4 cropped at 5  → 21×36×36
      upscore_pool4 (×2, learned)   → 21×74×74  + score_pool3 cropped at 9  → 21×74×74
      upscore (×8, fixed bilinear)  → 21×600×600, cropped at 31             → 21×512×512 scores

Parameters of FCN-8s: VGG-16's 13 convolutions 14,714,688, fc6 102,764,544, fc7 16,781,312, the score
layers 102,207 and the two learned 2× upsamplings 2 × 21·21·4·4 = 14,112: 134,376,863 learnable, the paper's
"134M" (Table 1). The final ×8 upsampling is fixed bilinear interpolation (§4.3), no parameter. The authors'
released models fix every upsampling (``learn_upsampling=False``): 134,362,751. FCN-16s: 134,364,410;
FCN-32s: 134,346,581.

``fcn_resnet50`` and ``fcn_resnet101`` are torchvision's FCNs on a dilated ResNet (output stride 8): no skips,
a 3×3 conv-BN-ReLU head, bilinear upsampling of the stride-8 scores, and optionally an auxiliary head on
conv4_x (``aux_loss=True``). They are equal to torchvision's, weights and outputs.

Deviations:

* The paper initialises the score layers to zero, for fine-tuning from a trained VGG-16 (§4.3); here they are
  He-initialised like the other convolutions, because a from-scratch network with zero score layers sends no
  gradient below them on its first step. ``zero_init_scores=True`` gives the paper's initialisation.
* The new fc6/fc7 convolutions (converted from a trained classifier in the paper) are He-initialised too.
* The "at-once" FCN-8s of the authors' later release scales pool3 and pool4 by 1e-4 and 1e-2 before scoring;
  this is the paper's staged FCN-8s, without the scales.
* torchvision's FCN-ResNet: its auxiliary head and its training loss (cross entropy averaged over pixels,
  auxiliary term weighted 0.5, from torchvision's reference recipe) are not in the paper.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

import paperzoo
from paperzoo.layers import ClassLayersMixin, ConvNormAct, FCNHead, check_image_batch, pixelwise_cross_entropy
from paperzoo.registry import InputSpec, ModelCard, Paper, register

__all__ = ["FCN", "FCNResNet", "bilinear_kernel", "crop"]

# Caffe's conv1_1 pad. Equivalently: pad 99 zeros, then VGG's own 3×3 convolution with padding 1.
INPUT_PADDING = 100

# Where the finest score map's upsampled pixel x lies: input pixel x − offset (see crop), per output stride.
FINAL_CROP = {32: 19, 16: 27, 8: 31}
POOL4_CROP, POOL3_CROP = 5, 9


def bilinear_kernel(size: int, device: torch.device | None = None, dtype: torch.dtype | None = None) -> torch.Tensor:
    """The ``size``×``size`` kernel that makes a transposed convolution with stride ``size // 2`` (size even) an
    interpolation: bilinear weights 1 − |i − centre| / factor on each axis (Caffe's "bilinear" filler)."""
    factor = (size + 1) // 2
    centre = factor - 1 if size % 2 else factor - 0.5
    ramp = 1 - (torch.arange(size, device=device, dtype=dtype) - centre).abs() / factor  # (size,)
    return ramp[:, None] * ramp[None, :]  # (size, size), separable


class LearnedUpsampling(nn.ConvTranspose2d):
    """Backwards convolution with stride f and a 2f×2f kernel, initialised to bilinear interpolation of each
    class's score map (kernel on the diagonal: class c is upsampled from class c alone) and then learned
    (§4.2: "we initialize this 2× upsampling to bilinear interpolation, but allow the parameters to be learned")."""

    def __init__(self, channels: int, factor: int) -> None:
        super().__init__(channels, channels, kernel_size=2 * factor, stride=factor, bias=False)  # calls the below

    def reset_parameters(self) -> None:
        with torch.no_grad():
            self.weight.zero_()
            kernel = bilinear_kernel(self.kernel_size[0], device=self.weight.device, dtype=self.weight.dtype)
            for c in range(self.in_channels):
                self.weight[c, c] = kernel


class FixedUpsampling(nn.Module):
    """Bilinear interpolation as a transposed convolution whose kernel stays fixed (the last upsampling, §4.3):
    no parameters, each class's map upsampled on its own (``groups``)."""

    def __init__(self, factor: int) -> None:
        super().__init__()
        self.factor = factor

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        channels = x.shape[1]
        kernel = bilinear_kernel(2 * self.factor, device=x.device, dtype=x.dtype)
        weight = kernel.expand(channels, 1, *kernel.shape)  # (C, 1, 2f, 2f)
        return F.conv_transpose2d(x, weight, stride=self.factor, groups=channels)  # (N, C, f(h−1)+2f, ...)


def crop(x: torch.Tensor, offset: int, size: tuple[int, int]) -> torch.Tensor:
    """``x[..., offset:offset + h, offset:offset + w]``: the part of a score map aligned with a smaller one.

    The offsets come from where each layer puts its outputs on its input. A k×k convolution or pooling with
    stride s and padding p centres its output i on input coordinate s·i + (k − 1)/2 − p; a transposed one
    inverts that map. Composing from the image: conv1_1 (3×3, pad 100) shifts by −99, each 2×2 pool maps
    i → 2i + 0.5, every other 3×3 convolution keeps coordinates. So pool3's pixel i sits at image coordinate
    8i + 3.5 − 99, pool4's at 16i + 7.5 − 99, and (with fc6's 7×7 adding 3) score_fr's u at 32u + 12.5.
    upscore2 (kernel 4, stride 2) puts u at 2u + 1.5, so its pixel w sits at 16w − 11.5, which is pool4's
    pixel w + 5: offset 5. One more 2× upsampling puts the fused map's pixel z at 8z − 23.5 = pool3's z + 9:
    offset 9. Upscore8 (kernel 16, stride 8) puts pixel y at image coordinate y − 31: offset 31. Likewise
    FCN-16s' ×16 (kernel 32): 27, and FCN-32s' ×32 (kernel 64): 19.
    """
    return x[..., offset:offset + size[0], offset:offset + size[1]]


class FCN(ClassLayersMixin, nn.Module):
    """The paper's FCN on VGG-16: FCN-32s, FCN-16s or FCN-8s (§4.2).

    Args:
        output_stride: 32, 16 or 8: the finest stride whose predictions are fused (FCN-32s, -16s, -8s).
        num_classes: score channels (21: PASCAL VOC's 20 classes and background).
        in_chans: channels of the input image.
        backbone: the registered VGG whose convolutional blocks the network is built on (``vgg16``).
        backbone_kwargs: extra keyword arguments for the backbone (e.g. ``block_widths`` for a narrow one).
        fc_width: channels of fc6 and fc7 (VGG's 4096).
        dropout: dropout after fc6 and fc7, kept from the classifier (0.5).
        learn_upsampling: learn the 2× upsamplings (the paper, §4.2); ``False`` fixes them (the released models).
        zero_init_scores: start the score layers at zero, as the paper's fine-tuning does.
    """

    min_input_size = 1  # the 100-pixel padding gives any image a score map (pool5 >= 7×7 for fc6)
    model_name = "fcn"
    # Every layer with the classes as channels (reset_classifier rebuilds them): the score layers, and the learned
    # upsamplings between them (the fixed ones have no weights); those a coarser FCN lacks are skipped.
    class_layer_names = ("score_fr", "score_pool4", "score_pool3", "upscore2", "upscore_pool4")

    def __init__(self, output_stride: int = 8, num_classes: int = 21, in_chans: int = 3, backbone: str = "vgg16",
                 backbone_kwargs: dict[str, Any] | None = None, fc_width: int = 4096, dropout: float = 0.5,
                 learn_upsampling: bool = True, zero_init_scores: bool = False) -> None:
        super().__init__()
        if output_stride not in FINAL_CROP:
            raise ValueError(f"output_stride must be 32, 16 or 8 (FCN-32s, -16s, -8s), got {output_stride}")
        self.output_stride = output_stride
        self.num_classes = num_classes
        self.in_chans = in_chans
        # pool3, pool4, pool5 are the outputs of VGG's blocks 3, 4, 5 (strides 8, 16, 32).
        pools = {32: (4,), 16: (3, 4), 8: (2, 3, 4)}[output_stride]
        self.backbone = paperzoo.create_model(backbone, features_only=True, out_indices=pools, in_chans=in_chans,
                                              ceil_mode=True, **(backbone_kwargs or {}))
        channels = [info.channels for info in self.backbone.feature_info]

        self.fc6 = ConvNormAct(channels[-1], fc_width, kernel_size=7, padding=0, norm_layer=None)
        self.drop6 = nn.Dropout(dropout)
        self.fc7 = ConvNormAct(fc_width, fc_width, kernel_size=1, norm_layer=None)
        self.drop7 = nn.Dropout(dropout)
        self.score_fr = nn.Conv2d(fc_width, num_classes, kernel_size=1)

        def upsampling_2x() -> nn.Module:
            return LearnedUpsampling(num_classes, 2) if learn_upsampling else FixedUpsampling(2)

        if output_stride <= 16:
            self.upscore2 = upsampling_2x()
            self.score_pool4 = nn.Conv2d(channels[-2], num_classes, kernel_size=1)
        if output_stride == 8:
            self.upscore_pool4 = upsampling_2x()
            self.score_pool3 = nn.Conv2d(channels[-3], num_classes, kernel_size=1)
        self.upscore = FixedUpsampling(output_stride)  # Caffe: upscore8, upscore16, upscore
        self.zero_init_scores = zero_init_scores
        for name, module in self.named_modules():
            if isinstance(module, nn.Conv2d) and not name.startswith("backbone."):
                self._init_conv(name, module)

    def _init_conv(self, name: str, conv: nn.Conv2d) -> None:
        if self.zero_init_scores and name.startswith("score"):
            nn.init.zeros_(conv.weight)
        else:
            nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")
        nn.init.zeros_(conv.bias)

    def new_class_layer(self, name: str, layer: nn.Module, num_classes: int) -> nn.Module:
        if isinstance(layer, LearnedUpsampling):
            return LearnedUpsampling(num_classes, layer.stride[0])  # bilinear again, for the new classes
        if not isinstance(layer, nn.Conv2d):  # FixedUpsampling: no weights, any number of channels
            return layer
        conv = super().new_class_layer(name, layer, num_classes)
        self._init_conv(name, conv)
        return conv

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Images ``(N, C, H, W)`` → ``{"out": class scores (N, num_classes, H, W)}``."""
        check_image_batch(x, model=self, in_chans=self.in_chans, min_size=self.min_input_size)
        size = tuple(x.shape[-2:])
        pad = INPUT_PADDING - 1  # VGG's conv1_1 pads the last pixel itself
        *skips, pool5 = self.backbone(F.pad(x, (pad, pad, pad, pad)))  # [pool3], [pool4], pool5
        scores = self.score_fr(self.drop7(self.fc7(self.drop6(self.fc6(pool5)))))  # (N, K, H/32 + 1, ...)
        if self.output_stride <= 16:
            scores = self.upscore2(scores)
            pool4_scores = self.score_pool4(skips[-1])
            scores = scores + crop(pool4_scores, POOL4_CROP, scores.shape[-2:])  # fuse at stride 16
        if self.output_stride == 8:
            scores = self.upscore_pool4(scores)
            pool3_scores = self.score_pool3(skips[-2])
            scores = scores + crop(pool3_scores, POOL3_CROP, scores.shape[-2:])  # fuse at stride 8
        scores = self.upscore(scores)
        return {"out": crop(scores, FINAL_CROP[self.output_stride], size)}

    def loss(self, outputs: dict[str, torch.Tensor], target: torch.Tensor) -> torch.Tensor:
        """The per-pixel multinomial logistic loss, summed over each image's pixels (the paper's unnormalised
        loss, §3 and §4.3) and averaged over the images; pixels labelled 255 are ignored (PASCAL's void)."""
        return pixelwise_cross_entropy(outputs["out"], target, name=self.model_name, sum_over_pixels=True)


class FCNResNet(ClassLayersMixin, nn.Module):
    """torchvision's FCN: a dilated ResNet (output stride 8) with an FCN head, scores upsampled bilinearly.

    Args:
        num_classes: score channels (21).
        in_chans: channels of the input image.
        backbone: the registered ResNet (``resnet50``, ``resnet101``).
        backbone_kwargs: extra keyword arguments for the backbone.
        aux_loss: add the auxiliary FCN head on conv4_x; ``forward`` then also returns ``"aux"``.
    """

    min_input_size = 32  # the shared ResNet backbone refuses less (its total stride); torchvision's takes 1×1
    model_name = "fcn_resnet"
    class_layer_names = ("head.classifier", "aux_head.classifier")  # reset_classifier rebuilds these

    def __init__(self, num_classes: int = 21, in_chans: int = 3, backbone: str = "resnet50",
                 backbone_kwargs: dict[str, Any] | None = None, aux_loss: bool = False) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.in_chans = in_chans
        self.backbone = paperzoo.create_model(backbone, features_only=True, output_stride=8,
                                              out_indices=(2, 3) if aux_loss else (3,), in_chans=in_chans,
                                              **(backbone_kwargs or {}))
        channels = [info.channels for info in self.backbone.feature_info]
        self.head = FCNHead(channels[-1], num_classes)
        self.aux_head = FCNHead(channels[0], num_classes) if aux_loss else None

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Images ``(N, C, H, W)`` → ``{"out": scores (N, K, H, W)}`` (and ``"aux"``, from conv4_x)."""
        check_image_batch(x, model=self, in_chans=self.in_chans, min_size=self.min_input_size)
        size = x.shape[-2:]
        features = self.backbone(x)  # [conv4_x,] conv5_x, both at stride 8
        outputs = {"out": F.interpolate(self.head(features[-1]), size=size, mode="bilinear", align_corners=False)}
        if self.aux_head is not None:
            outputs["aux"] = F.interpolate(self.aux_head(features[0]), size=size, mode="bilinear",
                                           align_corners=False)
        return outputs

    def loss(self, outputs: dict[str, torch.Tensor], target: torch.Tensor) -> torch.Tensor:
        """Cross entropy averaged over the pixels not labelled 255, plus 0.5 × the auxiliary head's (torchvision's
        reference recipe)."""
        loss = pixelwise_cross_entropy(outputs["out"], target, name=self.model_name)
        if "aux" in outputs:
            loss = loss + 0.5 * pixelwise_cross_entropy(outputs["aux"], target, name=self.model_name)
        return loss


_PAPER = Paper(
    title="Fully Convolutional Networks for Semantic Segmentation",
    authors="Jonathan Long, Evan Shelhamer, Trevor Darrell",
    year=2015,
    url="https://arxiv.org/abs/1411.4038",
)
_INNOVATIONS = (
    "convolutionalisation: fully-connected layers become convolutions, so a classifier takes any image size",
    "dense prediction in one pass, trained end to end with a per-pixel loss",
    "in-network upsampling by backwards convolution, initialised to bilinear interpolation",
    "the skip architecture fuses coarse deep scores with fine shallow ones (FCN-32s, -16s, -8s)",
)


def _vgg_card(name: str, stride: int, built: int, gmacs: float, canonical: bool = False) -> ModelCard:
    return ModelCard(
        name=name,
        architecture=f"FCN-{stride}s (VGG-16)",
        task="semantic-segmentation",
        paper=_PAPER,
        innovations=_INNOVATIONS,
        input=InputSpec(kind="image", shape=(3, 512, 512), min_size=FCN.min_input_size),
        params=134_000_000,
        params_tolerance=500_000,  # the paper's "134M": half its last digit
        params_source=f"paper, Table 1 (FCN-VGG16: 134M); built: {built:,} learnable",
        reference="paper",
        gmacs=gmacs,
        canonical=canonical,
        notes="learnable parameters; the final upsampling is fixed bilinear interpolation",
    )


def _resnet_card(name: str, depth: int, params: int, gmacs: float) -> ModelCard:
    return ModelCard(
        name=name,
        architecture=f"FCN (ResNet-{depth}, dilated)",
        task="semantic-segmentation",
        paper=_PAPER,
        innovations=_INNOVATIONS,
        input=InputSpec(kind="image", shape=(3, 520, 520), min_size=FCNResNet.min_input_size),
        params=params,
        params_source=f"torchvision.models.segmentation.{name}, counted (without the auxiliary head)",
        reference=f"torchvision.models.segmentation.{name}(aux_loss=False, weights_backbone=None)",
        gmacs=gmacs,
        notes="torchvision's FCN on a dilated ResNet (output stride 8); aux_loss=True adds its auxiliary head.",
    )


@register(_vgg_card("fcn32s_vgg16", 32, built=134_346_581, gmacs=189.698))
def fcn32s_vgg16(**kwargs: Any) -> FCN:
    """FCN-32s: fc7's scores upsampled ×32."""
    return FCN(output_stride=32, **kwargs)


@register(_vgg_card("fcn16s_vgg16", 16, built=134_364_410, gmacs=189.725))
def fcn16s_vgg16(**kwargs: Any) -> FCN:
    """FCN-16s: fused with pool4's scores."""
    return FCN(output_stride=16, **kwargs)


@register(_vgg_card("fcn8s_vgg16", 8, built=134_376_863, gmacs=189.778, canonical=True))
def fcn8s_vgg16(**kwargs: Any) -> FCN:
    """FCN-8s: fused with pool4's and pool3's scores."""
    return FCN(output_stride=8, **kwargs)


@register(_resnet_card("fcn_resnet50", 50, params=32_957_013, gmacs=142.726))
def fcn_resnet50(**kwargs: Any) -> FCNResNet:
    """torchvision's FCN-ResNet-50."""
    return FCNResNet(backbone="resnet50", **kwargs)


@register(_resnet_card("fcn_resnet101", 101, params=51_949_141, gmacs=222.747))
def fcn_resnet101(**kwargs: Any) -> FCNResNet:
    """torchvision's FCN-ResNet-101."""
    return FCNResNet(backbone="resnet101", **kwargs)


if __name__ == "__main__":
    from paperzoo.cli import main

    main(["run", "fcn8s_vgg16"])
