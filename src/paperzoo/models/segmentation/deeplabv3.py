r"""DeepLabV3.

Paper: "Rethinking Atrous Convolution for Semantic Image Segmentation", Liang-Chieh Chen, George Papandreou,
Florian Schroff, Hartwig Adam, 2017. https://arxiv.org/abs/1706.05587

Repeated pooling and striding make a classification network's features 32 times coarser than the image,
which loses the detail that segmentation needs; objects also appear at many scales. DeepLabV3 answers both
with atrous (dilated) convolution:

* Atrous convolution (§3.1): $y[i] = \sum_k x[i + r \cdot k]\, w[k]$ with rate r samples the input r pixels apart, so a
  3×3 filter sees a (2r + 1)² field of view at the cost of 3×3 weights. Removing the strides of the last
  ResNet blocks and dilating their convolutions instead keeps the features at an *output stride* of 16 or 8
  (the ratio of input to feature resolution) while reusing the classifier's weights unchanged.
* Atrous Spatial Pyramid Pooling, ASPP (§3.3): parallel atrous convolutions with different rates look at the
  same features with different fields of view (multi-scale context). With large rates most of a 3×3 filter
  falls on the zero padding (Figure 4), degenerating to a 1×1 filter; so ASPP has one 1×1 convolution, three
  3×3 convolutions with rates (6, 12, 18) at output stride 16, and *image-level features*: global average
  pooling, a 1×1 convolution and bilinear upsampling back to the feature size. Each branch has 256 filters
  and batch normalisation; the concatenated branches pass through another 1×1 convolution (256, BN).
* At output stride 8 the rates double, to (12, 24, 36) (§4.3). The logits are upsampled bilinearly to the
  image, and the loss is taken at full resolution: "it is important to keep the groundtruths intact and
  instead upsample the final logits" (§4.1).

Data flow of torchvision's DeepLabV3-ResNet-50 at 520×520, output stride 8, 21 classes::

    image 3×520×520
      ResNet-50 conv1 … conv3_x                              512×65×65   (stride 8)
      conv4_x (dilation 2) ──────────────────────────────── 1024×65×65 ─→ [aux: FCN head → 21×65×65]
      conv5_x (dilation 4)                                  2048×65×65
      ASPP: 1×1 | 3×3 r12 | 3×3 r24 | 3×3 r36 | image pool  5 × 256×65×65 → concat 1280×65×65
            1×1 projection → BN → ReLU → dropout 0.5        256×65×65
      3×3 conv → BN → ReLU → 1×1 classifier                 21×65×65
      bilinear upsampling                                   21×520×520 scores

Parameters: 39,638,869 (42,004,074 with the auxiliary head), as torchvision's ``deeplabv3_resnet50``;
ResNet-101: 58,630,997 (60,996,202).

Deviations, all torchvision's, kept so that its weights load and its outputs match:

* After ASPP, torchvision adds a 3×3 convolution (256, BN, ReLU) before the classifier, and dropout 0.5 on
  ASPP's output; the paper goes from ASPP's 1×1 projection straight to the final 1×1 classifier.
* Multi-grid (§3.2: unit rates (1, 2, 4) within the last block) is not used: every 3×3 convolution of a dilated
  stage has the stage's rate, and the first block of each dilated stage keeps the previous stage's rate.
* The auxiliary FCN head on conv4_x and its loss weight 0.5 (``aux_loss=True``) are torchvision's training
  recipe, not the paper's.
* Bilinear upsampling with ``align_corners=False`` (the paper's TensorFlow code aligned the corners).
* Default output stride 8 (torchvision's); ``output_stride=16`` builds the paper's training configuration
  with rates (6, 12, 18).
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

import paperzoo
from paperzoo.layers import ClassLayersMixin, ConvNormAct, FCNHead, check_image_batch, pixelwise_cross_entropy
from paperzoo.registry import InputSpec, ModelCard, Paper, register

__all__ = ["DeepLabV3", "ASPP", "ImagePooling", "DeepLabHead"]

ATROUS_RATES = {16: (6, 12, 18), 8: (12, 24, 36)}  # §3.3, and doubled at output stride 8 (§4.3)


class ImagePooling(nn.Module):
    """ASPP's image-level features: global average pooling, 1×1 conv-BN-ReLU, bilinear upsampling to the map."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.conv = ConvNormAct(in_channels, out_channels, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = self.conv(self.pool(x))  # (N, C, H, W) → (N, 256, 1, 1): the whole image's context
        return F.interpolate(pooled, size=x.shape[-2:], mode="bilinear", align_corners=False)  # (N, 256, H, W)


class ASPP(nn.Module):
    """Atrous Spatial Pyramid Pooling (§3.3, Figure 5): a 1×1 convolution, three 3×3 atrous convolutions and
    image pooling in parallel, concatenated and projected by a 1×1 convolution."""

    def __init__(self, in_channels: int, atrous_rates: tuple[int, ...], out_channels: int = 256,
                 dropout: float = 0.5) -> None:
        super().__init__()
        self.conv1x1 = ConvNormAct(in_channels, out_channels, kernel_size=1)
        # padding = rate keeps the size: a rate-r 3×3 kernel spans 2r + 1 pixels.
        self.atrous = nn.ModuleList(ConvNormAct(in_channels, out_channels, kernel_size=3, dilation=rate)
                                    for rate in atrous_rates)
        self.image_pooling = ImagePooling(in_channels, out_channels)
        num_branches = len(atrous_rates) + 2
        self.project = ConvNormAct(num_branches * out_channels, out_channels, kernel_size=1)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        branches = [self.conv1x1(x), *(conv(x) for conv in self.atrous), self.image_pooling(x)]
        return self.dropout(self.project(torch.cat(branches, dim=1)))  # (N, 5·256, H, W) → (N, 256, H, W)


class DeepLabHead(nn.Sequential):
    """ASPP, then torchvision's 3×3 conv-BN-ReLU, then the 1×1 classifier."""

    def __init__(self, in_channels: int, num_classes: int, atrous_rates: tuple[int, ...],
                 channels: int = 256) -> None:
        super().__init__(OrderedDict(
            aspp=ASPP(in_channels, atrous_rates, channels),
            conv=ConvNormAct(channels, channels, kernel_size=3),
            classifier=nn.Conv2d(channels, num_classes, kernel_size=1),
        ))


class DeepLabV3(ClassLayersMixin, nn.Module):
    """DeepLabV3: an atrous ResNet with ASPP (§3.3).

    Args:
        num_classes: score channels (21: PASCAL VOC).
        in_chans: channels of the input image.
        backbone: the registered ResNet (``resnet50``, ``resnet101``).
        backbone_kwargs: extra keyword arguments for the backbone.
        output_stride: 8 (ASPP rates 12, 24, 36) or 16 (rates 6, 12, 18).
        aspp_channels: filters of each ASPP branch and of the head (256).
        aux_loss: add the auxiliary FCN head on conv4_x; ``forward`` then also returns ``"aux"``.
    """

    min_input_size = 32  # the shared ResNet backbone refuses less (its total stride); torchvision's takes 1×1
    model_name = "deeplabv3"
    class_layer_names = ("head.classifier", "aux_head.classifier")  # reset_classifier rebuilds these

    def __init__(self, num_classes: int = 21, in_chans: int = 3, backbone: str = "resnet50",
                 backbone_kwargs: dict[str, Any] | None = None, output_stride: int = 8, aspp_channels: int = 256,
                 aux_loss: bool = False) -> None:
        super().__init__()
        if output_stride not in ATROUS_RATES:
            raise ValueError(f"output_stride must be 8 or 16, got {output_stride}")
        self.num_classes = num_classes
        self.in_chans = in_chans
        self.output_stride = output_stride
        self.backbone = paperzoo.create_model(backbone, features_only=True, output_stride=output_stride,
                                              out_indices=(2, 3) if aux_loss else (3,), in_chans=in_chans,
                                              **(backbone_kwargs or {}))
        channels = [info.channels for info in self.backbone.feature_info]
        self.head = DeepLabHead(channels[-1], num_classes, ATROUS_RATES[output_stride], aspp_channels)
        self.aux_head = FCNHead(channels[0], num_classes) if aux_loss else None

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Images ``(N, C, H, W)`` → ``{"out": scores (N, K, H, W)}`` (and ``"aux"``, from conv4_x)."""
        check_image_batch(x, model=self, in_chans=self.in_chans, min_size=self.min_input_size)
        size = x.shape[-2:]
        features = self.backbone(x)  # [conv4_x,] conv5_x at the output stride
        # Upsample the logits, not the features: the loss sees the full-resolution ground truth (§4.1).
        outputs = {"out": F.interpolate(self.head(features[-1]), size=size, mode="bilinear", align_corners=False)}
        if self.aux_head is not None:
            outputs["aux"] = F.interpolate(self.aux_head(features[0]), size=size, mode="bilinear",
                                           align_corners=False)
        return outputs

    def loss(self, outputs: dict[str, torch.Tensor], target: torch.Tensor) -> torch.Tensor:
        """Cross entropy at full resolution, averaged over the pixels not labelled 255 (§4.1); with the
        auxiliary head, plus 0.5 × its loss (torchvision's reference recipe)."""
        loss = pixelwise_cross_entropy(outputs["out"], target, name=self.model_name)
        if "aux" in outputs:
            loss = loss + 0.5 * pixelwise_cross_entropy(outputs["aux"], target, name=self.model_name)
        return loss


_PAPER = Paper(
    title="Rethinking Atrous Convolution for Semantic Image Segmentation",
    authors="Liang-Chieh Chen, George Papandreou, Florian Schroff, Hartwig Adam",
    year=2017,
    url="https://arxiv.org/abs/1706.05587",
)
_INNOVATIONS = (
    "atrous convolution keeps the features at output stride 16 or 8 while reusing the classifier's weights",
    "ASPP: parallel atrous convolutions with rates 6, 12, 18 capture several scales of context",
    "image-level features (global pooling) in ASPP, because huge rates degenerate to 1x1 filters",
    "batch normalisation in the head; logits upsampled so that the loss sees the full-resolution labels",
)


def _card(name: str, depth: int, params: int, gmacs: float, canonical: bool = False) -> ModelCard:
    return ModelCard(
        name=name,
        architecture=f"DeepLabV3 (ResNet-{depth})",
        task="semantic-segmentation",
        paper=_PAPER,
        innovations=_INNOVATIONS,
        input=InputSpec(kind="image", shape=(3, 520, 520), min_size=DeepLabV3.min_input_size),
        params=params,
        params_source=f"torchvision.models.segmentation.{name}, counted (without the auxiliary head)",
        reference=f"torchvision.models.segmentation.{name}(aux_loss=False, weights_backbone=None)",
        gmacs=gmacs,
        canonical=canonical,
        notes="output stride 8 (rates 12, 24, 36); output_stride=16 gives rates 6, 12, 18; aux_loss=True adds "
              "torchvision's auxiliary head.",
    )


@register(_card("deeplabv3_resnet50", 50, params=39_638_869, gmacs=168.731, canonical=True))
def deeplabv3_resnet50(**kwargs: Any) -> DeepLabV3:
    """DeepLabV3 on an atrous ResNet-50."""
    return DeepLabV3(backbone="resnet50", **kwargs)


@register(_card("deeplabv3_resnet101", 101, params=58_630_997, gmacs=248.752))
def deeplabv3_resnet101(**kwargs: Any) -> DeepLabV3:
    """DeepLabV3 on an atrous ResNet-101."""
    return DeepLabV3(backbone="resnet101", **kwargs)


if __name__ == "__main__":
    from paperzoo.cli import main

    main(["run", "deeplabv3_resnet50"])
