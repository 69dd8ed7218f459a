"""The ResNet-FPN backbone of Faster/Mask R-CNN and RetinaNet: a ResNet's stages C2…C5 (He et al. 2016) under a
Feature Pyramid Network (Lin et al. 2017, https://arxiv.org/abs/1612.03144, see ``fpn.py``).

The ResNet comes from the registry (``create_model("resnet50", features_only=True, out_indices=...)``), so the
classifier file stays the one place that defines it. Two conventions of detection training are applied to it,
as Detectron and torchvision do: its BatchNorms are frozen (:class:`FrozenBatchNorm2d`: a detector trains on one
or two images per device, too few for batch statistics, so the ImageNet statistics stay as a fixed affine map),
and its first stages do not train (``trainable_layers``: the stem and conv2_x learn generic edges and textures
that fine-tuning would only disturb; Faster R-CNN §4 fixes conv1 and conv2_x of its ResNets too).

::

    images [N, 3, H, W] ─ ResNet stem ─ conv2_x (C2, /4) ─ conv3_x (C3, /8) ─ conv4_x (C4, /16) ─ conv5_x (C5, /32)
                                            └──────────────── FPN (returned stages) ─────────────────┘
                      → OrderedDict "0": P2 [N, 256, H/4, W/4], "1": P3, "2": P4, "3": P5, "pool": P6 (or "p6", "p7")

Deviations: none from torchvision's ``resnet_fpn_backbone``/``_resnet_fpn_extractor``. Note on parameter counts:
torchvision's detection builders freeze BatchNorm only when pretrained weights are requested; built with
``weights=None, weights_backbone=None`` they keep trainable ``nn.BatchNorm2d`` (and train every layer), so their
``parameters()`` count the 53,120 BatchNorm scales and shifts of ResNet-50 that a frozen backbone keeps as buffers.
``frozen_batchnorm=False`` (with ``trainable_layers=5``) builds that variant.
"""

from __future__ import annotations

from collections import OrderedDict

from torch import Tensor, nn

from paperzoo.models.detection.boxes import freeze_batchnorm
from paperzoo.models.detection.fpn import FeaturePyramidNetwork, LastLevelMaxPool
from paperzoo.registry import create_model

# Our ResNet's module names for torchvision's "layer4", …, "layer1", "conv1", in the order trainable_layers counts.
_TRAINABLE_ORDER = ("stages.conv5_x", "stages.conv4_x", "stages.conv3_x", "stages.conv2_x", "conv1")


class ResNetFPNBackbone(nn.Module):
    """A registered ResNet (or ResNeXt) with frozen BatchNorm, under a Feature Pyramid Network.

    Args:
        backbone: the registry name of the ResNet ("resnet50", "resnet101", "resnext50_32x4d", …).
        trainable_layers: how many of conv5_x, conv4_x, conv3_x, conv2_x, conv1 (counted from the top) train;
            the rest are frozen (``requires_grad=False``). 3 in torchvision's and Detectron's recipe.
        returned_layers: which stages feed the FPN, numbered 1…4 for conv2_x…conv5_x as torchvision's
            ``layer1``…``layer4`` (RetinaNet: (2, 3, 4), i.e. C3–C5).
        out_channels: d, the width of every pyramid level.
        extra_blocks: levels above the coarsest (default :class:`LastLevelMaxPool`, Faster R-CNN's P6;
            :class:`LastLevelP6P7` for RetinaNet).
        in_channels_from: where the FPN's input widths come from; "stages" (the only option): the ResNet's
            ``feature_info`` for the returned stages.
        frozen_batchnorm: freeze the BatchNorms (the default, as every detection recipe); ``False`` keeps
            ``nn.BatchNorm2d`` as torchvision's builders do without pretrained weights.

    Attributes:
        body: the ResNet, built with ``features_only=True``.
        fpn: the :class:`FeaturePyramidNetwork`.
        out_channels: d.
    """

    def __init__(self, backbone: str = "resnet50", trainable_layers: int = 3,
                 returned_layers: tuple[int, ...] = (1, 2, 3, 4), out_channels: int = 256,
                 extra_blocks: nn.Module | None = None, in_channels_from: str = "stages",
                 frozen_batchnorm: bool = True) -> None:
        super().__init__()
        if not 0 <= trainable_layers <= 5:
            raise ValueError(f"trainable_layers must be in [0, 5], got {trainable_layers}")
        if not returned_layers or min(returned_layers) < 1 or max(returned_layers) > 4:
            raise ValueError(f"returned_layers must be stages among 1…4 (conv2_x…conv5_x), got {returned_layers}")
        if in_channels_from != "stages":
            raise ValueError(f"in_channels_from must be 'stages', got {in_channels_from!r}")
        self.body = create_model(backbone, features_only=True,
                                 out_indices=tuple(layer - 1 for layer in returned_layers))
        if frozen_batchnorm:
            freeze_batchnorm(self.body)
        trainable = _TRAINABLE_ORDER[:trainable_layers]
        for name, parameter in self.body.named_parameters():
            if not name.startswith(trainable):
                parameter.requires_grad_(False)
        self.fpn = FeaturePyramidNetwork([info.channels for info in self.body.feature_info], out_channels,
                                         extra_blocks=LastLevelMaxPool() if extra_blocks is None else extra_blocks)
        self.out_channels = out_channels

    def forward(self, images: Tensor) -> OrderedDict[str, Tensor]:
        """A padded batch ``[N, 3, H, W]`` → pyramid levels ``"0"``, ``"1"``, … (finest first) and the extra
        blocks' levels, each ``[N, out_channels, h, w]``."""
        stages = self.body(images)
        return self.fpn(OrderedDict((str(i), feature) for i, feature in enumerate(stages)))
