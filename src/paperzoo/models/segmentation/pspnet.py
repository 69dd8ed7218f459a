"""PSPNet: the pyramid scene parsing network.

Paper: "Pyramid Scene Parsing Network", Hengshuang Zhao, Jianping Shi, Xiaojuan Qi, Xiaogang Wang, Jiaya Jia,
CVPR 2017 (arXiv 2016). https://arxiv.org/abs/1612.01105

Scene parsing fails where a pixel's label needs the whole scene: a boat on a lake mistaken for a car
(mismatched relationship), a skyscraper split into "building" and "skyscraper" (confusing categories), a small
pillow on a bed of the same pattern (inconspicuous classes) (§3.1). A deep network's *theoretical* receptive
field covers the image, but its *empirical* one is much smaller. PSPNet adds global context by construction:

* A dilated ResNet (§3.2) computes features at 1/8 of the image: the last two stages trade their stride for
  dilation 2 and 4, so 473×473 crops give 60×60 maps.
* The pyramid pooling module (§3.2, Figure 3): the feature map is average-pooled to bins of 1×1, 2×2, 3×3 and
  6×6 (the whole image, then ever finer sub-regions), each pooled map reduced by a 1×1 convolution to 1/N of
  the channels (N = 4 levels: 2048 → 512), upsampled bilinearly to the map's size, and concatenated with the
  map itself: a hierarchical global prior next to the local features. A 3×3 convolution then predicts the
  scores.
* Deep supervision (§3.4, Figure 4): an auxiliary loss on conv4_x's output (res4b22 in ResNet-101) helps the
  optimisation; the two losses are summed with the auxiliary one weighted α = 0.4. At test time the
  auxiliary branch is dropped.

Data flow at the paper's 473×473 crops, 150 classes (ADE20K, the paper's main benchmark)::

    image 3×473×473
      deep stem: 3×3/2 (64), 3×3 (64), 3×3 (128); max pool     128×119×119
      conv2_x, conv3_x (stride 2)                              512×60×60
      conv4_x (dilation 2) ─────────────────────────────────── 1024×60×60 ─→ [aux: 3×3 (256), 1×1 → 150×60×60]
      conv5_x (dilation 4)                                    2048×60×60
      pyramid pooling: bins 1, 2, 3, 6 → 1×1 (512) → upsample  4 × 512×60×60, concat with the map: 4096×60×60
      3×3 conv (512) → BN → ReLU → dropout 0.1 → 1×1           150×60×60
      bilinear upsampling (corners aligned)                    150×473×473 scores

473 = 8·59 + 1: with aligned corners the 60×60 score grid lands exactly on every 8th pixel.

Parameters (the paper states none; derived here from the configuration and the authors' code): the ResNet-50
backbone with the deep stem 23,631,808 (the standard 23,508,032 without fc, with the 7×7 stem's 9,536 replaced
by 112,832 and the first stage's input widened from 64 to 128 channels, +20,480 in its first block's 1×1
convolution and projection), the pyramid 4,198,400, the 3×3 convolution 18,875,392, the classifier 76,950, the
auxiliary head 2,398,358: 49,180,908 with the auxiliary head for 150 classes, 46,782,550 without.
ResNet-101: 68,173,036 with the head.

The authors' own code (Caffe, and their PyTorch "semseg") is the source of what the paper leaves open: the
deep stem of three 3×3 convolutions, BatchNorm in every head convolution, convolutions without biases except the
classifiers, dropout 0.1 before each classifier, bilinear interpolation with aligned corners, and the
auxiliary head's 256 channels.

Deviations:

* In a dilated stage the authors dilate every block; here the first block of each keeps the previous rate
  (torchvision's convention, which the shared ResNet backbone follows); the parameters are the same.
* The stride of a downsampling bottleneck is on its 3×3 convolution ("ResNet v1.5"), as in the shared backbone
  and in the authors' PyTorch code (their Caffe ResNet puts it on the first 1×1).
* The head's convolutions keep PyTorch's default initialisation, as the authors' code does; the backbone is
  He-initialised (the paper starts from ImageNet weights).
* ``loss`` averages the cross entropy over the pixels not labelled 255, as the authors' code does.
* Dropout before each classifier drops single activations (``nn.Dropout``), as the Caffe layer ``conv5_4/dropout``
  of the authors' released prototxt does (Caffe's ``Dropout`` is element-wise); that Caffe code produced the
  paper's results, which are this card's reference. The authors' later PyTorch code ("semseg") uses
  ``nn.Dropout2d`` there, dropping whole channels. Either is the identity in eval mode, so only training differs.
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

__all__ = ["PSPNet", "PyramidPoolingModule", "PSPHead"]

AUX_WEIGHT = 0.4  # α of §3.4


class PyramidPoolingModule(nn.Module):
    """Pool to ``bins``×``bins`` regions for each of the ``bins``, reduce each pooled map by a 1×1 conv-BN-ReLU to
    ``reduced_channels``, upsample it to the map's size and concatenate all with the map (§3.2, Figure 3)."""

    def __init__(self, in_channels: int, bins: tuple[int, ...] = (1, 2, 3, 6),
                 reduced_channels: int | None = None) -> None:
        super().__init__()
        reduced_channels = reduced_channels or in_channels // len(bins)  # "1/N of the original dimension"
        self.levels = nn.ModuleList(nn.Sequential(OrderedDict(
            pool=nn.AdaptiveAvgPool2d(size),  # average over each of size×size sub-regions
            reduce=ConvNormAct(in_channels, reduced_channels, kernel_size=1),
        )) for size in bins)
        self.out_channels = in_channels + len(bins) * reduced_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = x.shape[-2:]
        priors = [F.interpolate(level(x), size=size, mode="bilinear", align_corners=True)  # (N, C/4, H, W) each
                  for level in self.levels]
        return torch.cat([x, *priors], dim=1)  # (N, 2C, H, W): local features and the global prior


class PSPHead(nn.Sequential):
    """The pyramid pooling module, then a 3×3 conv-BN-ReLU, dropout and the 1×1 classifier."""

    def __init__(self, in_channels: int, num_classes: int, bins: tuple[int, ...] = (1, 2, 3, 6),
                 channels: int = 512, dropout: float = 0.1) -> None:
        pyramid = PyramidPoolingModule(in_channels, bins)
        super().__init__(OrderedDict(
            pyramid=pyramid,
            conv=ConvNormAct(pyramid.out_channels, channels, kernel_size=3),
            dropout=nn.Dropout(dropout),
            classifier=nn.Conv2d(channels, num_classes, kernel_size=1),
        ))


class PSPNet(ClassLayersMixin, nn.Module):
    """PSPNet (Figure 3): a dilated ResNet with the deep stem, the pyramid pooling head, the auxiliary head.

    Args:
        num_classes: score channels (150: ADE20K).
        in_chans: channels of the input image.
        backbone: the registered ResNet (``resnet50``, ``resnet101``), built with the deep stem.
        backbone_kwargs: extra keyword arguments for the backbone.
        bins: the pyramid's levels (1, 2, 3, 6).
        head_channels: channels of the 3×3 convolution after the pyramid (512).
        aux_loss: the auxiliary head on conv4_x (deep supervision, §3.4); ``forward`` then also returns
            ``"aux"``. On by default: the paper's network as trained.
    """

    min_input_size = 32  # the shared ResNet backbone refuses less (its total stride)
    model_name = "pspnet"
    class_layer_names = ("head.classifier", "aux_head.classifier")  # reset_classifier rebuilds these

    def __init__(self, num_classes: int = 150, in_chans: int = 3, backbone: str = "resnet50",
                 backbone_kwargs: dict[str, Any] | None = None, bins: tuple[int, ...] = (1, 2, 3, 6),
                 head_channels: int = 512, aux_loss: bool = True) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.in_chans = in_chans
        self.backbone = paperzoo.create_model(backbone, features_only=True, output_stride=8, deep_stem=True,
                                              out_indices=(2, 3) if aux_loss else (3,), in_chans=in_chans,
                                              **(backbone_kwargs or {}))
        channels = [info.channels for info in self.backbone.feature_info]
        self.head = PSPHead(channels[-1], num_classes, bins, head_channels)
        self.aux_head = FCNHead(channels[0], num_classes, hidden_channels=channels[0] // 4) if aux_loss else None

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Images ``(N, C, H, W)`` → ``{"out": scores (N, K, H, W)}`` (and ``"aux"``, from conv4_x)."""
        check_image_batch(x, model=self, in_chans=self.in_chans, min_size=self.min_input_size)
        size = x.shape[-2:]
        features = self.backbone(x)  # [conv4_x,] conv5_x, both at stride 8
        outputs = {"out": F.interpolate(self.head(features[-1]), size=size, mode="bilinear", align_corners=True)}
        if self.aux_head is not None:
            outputs["aux"] = F.interpolate(self.aux_head(features[0]), size=size, mode="bilinear",
                                           align_corners=True)
        return outputs

    def loss(self, outputs: dict[str, torch.Tensor], target: torch.Tensor) -> torch.Tensor:
        """Cross entropy over the pixels not labelled 255, plus α = 0.4 times the auxiliary head's (§3.4)."""
        loss = pixelwise_cross_entropy(outputs["out"], target, name=self.model_name)
        if "aux" in outputs:
            loss = loss + AUX_WEIGHT * pixelwise_cross_entropy(outputs["aux"], target, name=self.model_name)
        return loss


_PAPER = Paper(
    title="Pyramid Scene Parsing Network",
    authors="Hengshuang Zhao, Jianping Shi, Xiaojuan Qi, Xiaogang Wang, Jiaya Jia",
    year=2017,
    url="https://arxiv.org/abs/1612.01105",
)
_INNOVATIONS = (
    "the pyramid pooling module: context pooled over 1x1, 2x2, 3x3 and 6x6 sub-regions, a global scene prior",
    "pooled priors reduced by 1x1 convolutions, upsampled and concatenated with the local features",
    "a dilated ResNet keeps the features at 1/8 of the image",
    "deep supervision: an auxiliary loss on conv4_x, weighted 0.4",
)


def _card(name: str, depth: int, backbone: int, params: int, gmacs: float, canonical: bool = False) -> ModelCard:
    return ModelCard(
        name=name,
        architecture=f"PSPNet (ResNet-{depth}, dilated)",
        task="semantic-segmentation",
        paper=_PAPER,
        innovations=_INNOVATIONS,
        input=InputSpec(kind="image", shape=(3, 473, 473), min_size=PSPNet.min_input_size),
        params=params,
        params_source="derived by hand from the paper's configuration and the authors' code (the paper states none), "
                      f"150 classes, with the auxiliary head: {backbone:,} (dilated ResNet-{depth}, deep stem) + "
                      "4,198,400 (pyramid pooling) + 18,875,392 (3x3 conv 4096→512) + 76,950 (classifier) + 2,398,358 "
                      f"(auxiliary head) = {params:,}",
        reference="paper",
        gmacs=gmacs,
        canonical=canonical,
        notes="the deep-stem dilated ResNet of the authors' code; aux_loss=False drops the auxiliary head. "
              "Dropout 0.1 before each classifier is element-wise (nn.Dropout), as the authors' Caffe release "
              "that the paper's results come from; their later PyTorch code (semseg) uses nn.Dropout2d.",
    )


@register(_card("pspnet_resnet50", 50, backbone=23_631_808, params=49_180_908, gmacs=170.507, canonical=True))
def pspnet_resnet50(**kwargs: Any) -> PSPNet:
    """PSPNet on a dilated ResNet-50 with the deep stem."""
    return PSPNet(backbone="resnet50", **kwargs)


@register(_card("pspnet_resnet101", 101, backbone=42_623_936, params=68_173_036, gmacs=238.690))
def pspnet_resnet101(**kwargs: Any) -> PSPNet:
    """PSPNet on a dilated ResNet-101 with the deep stem (the paper's best single model)."""
    return PSPNet(backbone="resnet101", **kwargs)


if __name__ == "__main__":
    from paperzoo.cli import main

    main(["run", "pspnet_resnet50"])
