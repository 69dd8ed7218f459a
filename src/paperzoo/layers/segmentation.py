"""Parts every semantic-segmentation model shares: the per-pixel loss and its target check, and the small
fully-convolutional head (torchvision's ``FCNHead``) that FCN-ResNet, DeepLabV3 and PSPNet put on a dilated
backbone, the last two also as their auxiliary head.

A segmentation target is an integer map ``(N, H, W)`` of class indices; the value 255 marks pixels that count
for nothing (PASCAL VOC's object borders and "difficult" regions, ADE20K's unlabelled pixels), the
``ignore_index`` of every paper here.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from paperzoo.layers.conv import ConvNormAct

IGNORE_INDEX = 255


class FCNHead(nn.Sequential):
    """3×3 conv-BN-ReLU to ``in_channels // 4`` channels, dropout, 1×1 convolution to class scores.

    The head of torchvision's FCN-ResNet and its auxiliary head for DeepLabV3; PSPNet's auxiliary head on
    conv4_x (Zhao et al. 2017, §3.4) is the same, 1024 → 256 channels.
    """

    def __init__(self, in_channels: int, num_classes: int, hidden_channels: int | None = None,
                 dropout: float = 0.1) -> None:
        hidden_channels = hidden_channels or in_channels // 4
        super().__init__()
        self.conv = ConvNormAct(in_channels, hidden_channels, kernel_size=3)
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Conv2d(hidden_channels, num_classes, kernel_size=1)


def check_segmentation_target(target: object, logits: torch.Tensor, *, name: str) -> None:
    """Check a target against the logits it is scored with: an integer tensor ``(N, H, W)`` with the logits'
    N, H and W, and every value a class index below ``K`` or :data:`IGNORE_INDEX`."""
    n, k, h, w = logits.shape
    expected = f"{name} expects a target of class indices, an integer tensor of shape (N, H, W) = {(n, h, w)}"
    if not isinstance(target, torch.Tensor):
        raise ValueError(f"{expected}; got {type(target).__name__}: convert it with torch.as_tensor")
    shape = tuple(target.shape)
    problem = None
    if target.ndim == 4 and shape[1] == 1:
        problem = "a channel dimension; remove it with target.squeeze(1)"
    elif target.ndim == 4 and shape[1] == k:
        problem = "one-hot or soft targets; pass the class indices, target.argmax(1)"
    elif target.is_floating_point() or target.dtype == torch.bool:
        problem = f"dtype {str(target.dtype).removeprefix('torch.')}; pass class indices with target.long()"
    elif shape != (n, h, w):
        problem = "a different size; crop or resize the target (nearest neighbour) to the output's size"
    elif target.device.type != "meta":
        bad = target[(target != IGNORE_INDEX) & ((target < 0) | (target >= k))]
        if bad.numel():
            problem = f"the value {int(bad[0])}; classes are 0 … {k - 1}, and {IGNORE_INDEX} marks pixels to ignore"
    if problem is not None:
        raise ValueError(f"{expected}; got {shape}: {problem}")


def pixelwise_cross_entropy(logits: torch.Tensor, target: torch.Tensor, *, name: str,
                            pixel_weights: torch.Tensor | None = None, sum_over_pixels: bool = False) -> torch.Tensor:
    """The per-pixel multinomial logistic loss, -log softmax(logits)[target] at every pixel whose target is not
    :data:`IGNORE_INDEX`: averaged over those pixels (the default), or, with ``sum_over_pixels``, summed over
    each image's pixels and averaged over the images (the FCN and U-Net papers' sums). ``pixel_weights``
    ``(N, H, W)`` scales each pixel's term (U-Net's weight map, eq. 1)."""
    check_segmentation_target(target, logits, name=name)
    per_pixel = F.cross_entropy(logits, target.long(), ignore_index=IGNORE_INDEX, reduction="none")  # (N, H, W)
    if pixel_weights is not None:
        if pixel_weights.shape != per_pixel.shape:
            raise ValueError(f"{name} expects pixel weights of shape {tuple(per_pixel.shape)}, the target's; "
                             f"got {tuple(pixel_weights.shape)}")
        per_pixel = per_pixel * pixel_weights
    if sum_over_pixels:
        return per_pixel.sum() / len(per_pixel)
    counted = (target != IGNORE_INDEX).sum()  # ignored pixels hold a zero term
    return per_pixel.sum() / counted.clamp(min=1)
