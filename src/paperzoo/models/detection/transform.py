"""The detection transform: from a list of images of any sizes to one padded, normalised batch, and back.

Detectors take images as they come (torchvision's convention: a list of ``[3, H, W]`` tensors in [0, 1], each
its own size). Fast R-CNN (Girshick 2015, §2.3) and Faster R-CNN (§3.3) rescale every image so that its shorter
side is ``min_size`` pixels (600 in the papers, 800 in Detectron and torchvision) unless that makes the longer
side exceed ``max_size`` (1000; 1333), which keeps the objects at the scale the network learned; training may
draw the shorter side at random from several sizes (multi-scale training). The images are normalised with the
backbone's ImageNet mean and standard deviation and zero-padded at the bottom and right to a common size, a
multiple of ``size_divisible`` (32: the FPN's coarsest stride, so that every level's map aligns with the one
above it), and batched. Ground-truth boxes (and masks) are scaled with the image; detections are scaled back
to the input's pixels by :meth:`DetectionTransform.postprocess`.

::

    [3, H_i, W_i] per image ─ normalise ─ resize (short side → min_size, long side ≤ max_size) ─ pad to ×32
                                                                           └→ ImageBatch(tensors [N, 3, H, W],
                                                                                         image_sizes [(h_i, w_i)])

Deviations: none; the arithmetic (bilinear resize with ``recompute_scale_factor``, nearest for masks, box scaling
by the ratio of the sizes, padding) is torchvision's ``GeneralizedRCNNTransform``'s, so that detectors converted
from torchvision see the same pixels. SSD's fixed 300×300 resize is ``fixed_size=(300, 300)``, given as
``(width, height)`` as torchvision does.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class ImageBatch(NamedTuple):
    """Images of different sizes padded into one batch.

    ``tensors``: ``[N, 3, H, W]``, zero-padded at the bottom and right. ``image_sizes``: each image's ``(h, w)``
    after resizing and before padding, the area in which its detections may lie.
    """

    tensors: Tensor
    image_sizes: list[tuple[int, int]]


def resize_boxes(boxes: Tensor, original_size: Sequence[int], new_size: Sequence[int]) -> Tensor:
    """Scale xyxy ``boxes`` ``[K, 4]`` from an image of ``original_size`` ``(h, w)`` to one of ``new_size``."""
    ratio_h, ratio_w = (torch.tensor(new, dtype=torch.float32, device=boxes.device)
                        / torch.tensor(old, dtype=torch.float32, device=boxes.device)
                        for new, old in zip(new_size, original_size, strict=True))
    x1, y1, x2, y2 = boxes.unbind(1)
    return torch.stack((x1 * ratio_w, y1 * ratio_h, x2 * ratio_w, y2 * ratio_h), dim=1)


class DetectionTransform(nn.Module):
    """Normalise, resize and batch the images (and scale the targets) for a detector; map detections back.

    Args:
        min_size: the shorter side after resizing; a tuple draws one of them at random per image in training
            (multi-scale training) and uses the last in evaluation.
        max_size: the longest the longer side may become; the scale shrinks to respect it.
        image_mean, image_std: per-channel normalisation (the backbone's training statistics).
        size_divisible: the padded height and width are multiples of it (the backbone's total stride).
        fixed_size: resize every image to exactly this ``(width, height)`` instead (SSD), ignoring the aspect
            ratio.
    """

    def __init__(self, min_size: int | tuple[int, ...], max_size: int, image_mean: Sequence[float],
                 image_std: Sequence[float], size_divisible: int = 32,
                 fixed_size: tuple[int, int] | None = None) -> None:
        super().__init__()
        self.min_size = tuple(min_size) if isinstance(min_size, (list, tuple)) else (min_size,)
        self.max_size = max_size
        self.image_mean = list(image_mean)
        self.image_std = list(image_std)
        self.size_divisible = size_divisible
        self.fixed_size = fixed_size

    def forward(self, images: list[Tensor], targets: list[dict[str, Tensor]] | None = None
                ) -> tuple[ImageBatch, list[dict[str, Tensor]] | None]:
        """Images ``[3, H_i, W_i]`` (and their targets: ``boxes`` xyxy in pixels, optional ``masks`` ``[K, H_i, W_i]``)
        → the padded batch and the targets in the resized images' pixels. The inputs are not modified."""
        images = list(images)
        if targets is not None:
            targets = [dict(t) for t in targets]  # shallow copies: the caller's dicts keep their boxes
        for i, image in enumerate(images):
            if image.dim() != 3:
                raise ValueError(f"expected images of shape [C, H, W], got {tuple(image.shape)}")
            image = self.normalize(image)
            image, target = self.resize(image, targets[i] if targets is not None else None)
            images[i] = image
            if targets is not None and target is not None:
                targets[i] = target
        image_sizes = [(int(image.shape[-2]), int(image.shape[-1])) for image in images]
        return ImageBatch(self.batch_images(images), image_sizes), targets

    def normalize(self, image: Tensor) -> Tensor:
        if not image.is_floating_point():
            raise TypeError(f"expected float images in [0, 1], got dtype {image.dtype}")
        mean = torch.as_tensor(self.image_mean, dtype=image.dtype, device=image.device)
        std = torch.as_tensor(self.image_std, dtype=image.dtype, device=image.device)
        return (image - mean[:, None, None]) / std[:, None, None]

    def _choose_min_size(self) -> int:
        if not self.training:
            return self.min_size[-1]
        # One draw from torch's generator (not Python's random), as torchvision does, so seeds agree.
        index = int(torch.empty(1).uniform_(0.0, float(len(self.min_size))).item())
        return self.min_size[index]

    def resize(self, image: Tensor, target: dict[str, Tensor] | None = None
               ) -> tuple[Tensor, dict[str, Tensor] | None]:
        """Resize one normalised image ``[3, H, W]`` and scale its target's boxes and masks with it."""
        original_size = image.shape[-2:]
        if self.fixed_size is not None:
            size, scale, recompute = [self.fixed_size[1], self.fixed_size[0]], None, None
        else:
            # The scale that brings the shorter side to min_size, unless the longer side would pass max_size.
            short_side, long_side = min(original_size), max(original_size)
            size, scale, recompute = None, min(self._choose_min_size() / short_side, self.max_size / long_side), True
        image = F.interpolate(image[None], size=size, scale_factor=scale, mode="bilinear",
                              recompute_scale_factor=recompute, align_corners=False)[0]
        if target is None:
            return image, None
        if "masks" in target:  # nearest: a mask stays binary
            masks = target["masks"][:, None].float()  # [K, 1, H, W]
            target["masks"] = F.interpolate(masks, size=size, scale_factor=scale,
                                            recompute_scale_factor=recompute)[:, 0].byte()
        target["boxes"] = resize_boxes(target["boxes"], original_size, image.shape[-2:])
        return image, target

    def batch_images(self, images: list[Tensor]) -> Tensor:
        """Zero-pad the images at the bottom and right to the largest height and width, rounded up to a multiple of
        ``size_divisible``, and stack them: ``[N, 3, H, W]``."""
        channels = max(image.shape[0] for image in images)
        stride = float(self.size_divisible)
        height = int(math.ceil(max(image.shape[1] for image in images) / stride) * stride)
        width = int(math.ceil(max(image.shape[2] for image in images) / stride) * stride)
        batch = images[0].new_zeros((len(images), channels, height, width))
        for padded, image in zip(batch, images, strict=True):
            padded[: image.shape[0], : image.shape[1], : image.shape[2]].copy_(image)
        return batch

    def postprocess(self, detections: list[dict[str, Tensor]], image_sizes: list[tuple[int, int]],
                    original_image_sizes: list[tuple[int, int]]) -> list[dict[str, Tensor]]:
        """Scale each image's detected ``boxes`` from the resized image (``image_sizes``) back to the input's
        pixels (``original_image_sizes``). Other entries pass through: Mask R-CNN pastes its masks itself, into
        the boxes this returns. In training mode the detections are returned as they are, as torchvision does."""
        if self.training:
            return detections
        for detection, size, original_size in zip(detections, image_sizes, original_image_sizes, strict=True):
            detection["boxes"] = resize_boxes(detection["boxes"], size, original_size)
        return detections

    def extra_repr(self) -> str:
        resize = (f"fixed_size={self.fixed_size}" if self.fixed_size is not None
                  else f"min_size={self.min_size}, max_size={self.max_size}")
        return f"mean={self.image_mean}, std={self.image_std}, {resize}, size_divisible={self.size_divisible}"
