"""Mask R-CNN: "Mask R-CNN", Kaiming He, Georgia Gkioxari, Piotr Dollár, Ross Girshick, ICCV 2017,
https://arxiv.org/abs/1703.06870; on the ResNet-50 Feature Pyramid Network backbone of Lin et al. 2017,
https://arxiv.org/abs/1612.03144.

Mask R-CNN extends Faster R-CNN (Ren et al. 2015; its RPN in ``rpn.py``, its box head in ``roi_heads.py``) with "a
branch for predicting an object mask in parallel with the existing branch for bounding box recognition" (§1). The
mask branch is a small fully convolutional network on each RoI: four 3×3 convolutions on a 14×14 grid of
features, a 2×2 deconvolution to 28×28, and a 1×1 convolution that gives one 28×28 mask *per class* (§3, Fig. 4,
right). Two ideas make it work:

- **Decoupled masks and classes.** The mask branch predicts K binary masks with a per-pixel sigmoid, and only the
  mask of the RoI's class contributes to the loss (in inference, the mask of the predicted class is used): "this
  allows the network to generate masks for every class without competition among classes", which the paper finds
  far better than a per-pixel softmax over classes (Table 2b: +5.5 AP). The loss is the average binary
  cross-entropy over the m×m pixels of the class's mask, ``L_mask``, and the multi-task loss of each sampled
  RoI is ``L = L_cls + L_box + L_mask`` (§3), with ``L_mask`` defined on positive RoIs only.
- **RoIAlign.** RoI pooling quantises the RoI's borders and bins to the feature grid, misaligning the extracted
  features by up to a stride: harmless for classification, harmful for pixel-accurate masks. RoIAlign samples the
  features at exact (bilinear) positions instead (§3, Fig. 3), for both the box head and the mask head.

The mask target of a positive RoI is its object's mask, cut out by the RoI and resampled to 28×28 (the
"intersection between an RoI and its associated ground-truth mask"); at inference the 28×28 probability map of
the detected class is resized to the detected box and pasted into the image::

    images → DetectionTransform → ResNet-50-FPN (P2…P6) → RPN → proposals → RoI box head (as Faster R-CNN)
                                                                       └ detections [K, 4], labels, scores
    mask branch, on the detections (inference) or the positive sampled RoIs (training):
      MultiScaleRoIAlign 14×14 on P2…P5 → [R, 256, 14, 14] ─ 4 × (3×3 conv 256, ReLU) → [R, 256, 14, 14]
        ─ 2×2 deconv stride 2, ReLU → [R, 256, 28, 28] ─ 1×1 conv → [R, K+1, 28, 28] (a mask per class)
        → sigmoid of the RoI's class's mask [R, 1, 28, 28] ─ pasted into the image → masks [K, 1, H, W]

In eval mode the model returns, per image, ``boxes``, ``labels``, ``scores`` and ``masks`` ``[K, 1, H, W]``
(probabilities in [0, 1], not thresholded; the paper binarises at 0.5); in training the five losses
``loss_classifier``, ``loss_box_reg``, ``loss_mask``, ``loss_objectness``, ``loss_rpn_box_reg``.

Deviations: the backbone is ResNet-50-FPN (the paper's best-performing FPN variant, Fig. 4 right, rather than the
C4 head), as torchvision's ``maskrcnn_resnet50_fpn``; images are resized to 800 (max 1333) as the paper. The box
branch has torchvision's details (``roi_heads.py``): RoIAlign with sampling ratio 2 on four levels, 512 RoIs per
image (the paper also uses 512 with FPN, §3.1). The mask targets are computed with RoIAlign of the ground-truth
mask over the RoI (torchvision's and Detectron's way), and the masks are pasted with a one-pixel zero border and
bilinear resizing to the integer box (torchvision's ``paste_masks_in_image`` arithmetic, written out here), so
that converted weights give the same masks. The mask head's convolutions are initialised Kaiming-normal (fan
out), their biases zero (the deconvolution's and the mask logits' biases PyTorch's default), as torchvision.
Backbone BatchNorm and trainable layers as in ``faster_rcnn.py``: ``nn.BatchNorm2d``, every stage trains (the
build without pretrained weights).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.ops import MultiScaleRoIAlign, roi_align

from paperzoo.models.detection.two_stage import TwoStageDetector
from paperzoo.registry import InputSpec, ModelCard, Paper, register


class MaskHead(nn.Module):
    """The mask branch (Fig. 4, right): RoIAlign 14×14, four 3×3 convolutions with ReLU, a 2×2 deconvolution
    (stride 2) with ReLU, and a 1×1 convolution giving one mask logit map per class.

    Args:
        in_channels: d, the width of the pyramid.
        num_classes: K + 1 (a mask per class, the background's unused).
        featmap_names: the levels RoIs are pooled from (P2…P5).
        roi_size: the side of the pooled grid (14); the masks are twice that (28).
        sampling_ratio: RoIAlign's bilinear samples per bin side (2).
        conv_channels: widths of the 3×3 convolutions (four of 256).
        deconv_channels: width of the deconvolution (256).
    """

    def __init__(self, in_channels: int, num_classes: int, featmap_names: Sequence[str] = ("0", "1", "2", "3"),
                 roi_size: int = 14, sampling_ratio: int = 2,
                 conv_channels: Sequence[int] = (256, 256, 256, 256), deconv_channels: int = 256) -> None:
        super().__init__()
        self.roi_align = MultiScaleRoIAlign(featmap_names=list(featmap_names), output_size=roi_size,
                                            sampling_ratio=sampling_ratio)
        widths = [in_channels, *conv_channels]
        self.convs = nn.ModuleList(nn.Conv2d(widths[i], widths[i + 1], kernel_size=3, padding=1)
                                   for i in range(len(conv_channels)))
        self.deconv = nn.ConvTranspose2d(widths[-1], deconv_channels, kernel_size=2, stride=2)
        self.mask_logits = nn.Conv2d(deconv_channels, num_classes, kernel_size=1)
        for conv in self.convs:
            nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")
            nn.init.zeros_(conv.bias)
        for layer in (self.deconv, self.mask_logits):
            nn.init.kaiming_normal_(layer.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, features: dict[str, Tensor], boxes: list[Tensor], image_sizes: list[tuple[int, int]]
                ) -> Tensor:
        """Pyramid levels and per-image boxes ``[R_i, 4]`` → mask logits ``[Σ R_i, K+1, 28, 28]``."""
        x = self.roi_align(features, boxes, image_sizes)  # [R, d, 14, 14]
        for conv in self.convs:
            x = F.relu(conv(x))
        x = F.relu(self.deconv(x))  # [R, 256, 28, 28]
        return self.mask_logits(x)  # [R, K+1, 28, 28]: one binary mask per class


def mask_targets(gt_masks: Tensor, rois: Tensor, matched_gt: Tensor, size: int) -> Tensor:
    """Each RoI's target: its object's mask ``gt_masks[matched_gt]`` (``[G, H, W]``) cut out by the RoI ``[R, 4]``
    and resampled to ``size``×``size`` with RoIAlign → ``[R, size, size]`` in [0, 1]."""
    indexed_rois = torch.cat([matched_gt.to(rois)[:, None], rois], dim=1)  # [R, 5]: (mask index, x1, y1, x2, y2)
    return roi_align(gt_masks[:, None].to(rois), indexed_rois, (size, size), 1.0)[:, 0]


def mask_loss(mask_logits: Tensor, rois: list[Tensor], gt_masks: list[Tensor], gt_labels: list[Tensor],
              matched_gt: list[Tensor]) -> Tensor:
    """L_mask: the average binary cross-entropy over the m×m pixels of each positive RoI's mask *for its ground-truth
    class* (the other K − 1 masks receive no loss, so classes do not compete)."""
    size = mask_logits.shape[-1]
    labels = torch.cat([g[m] for g, m in zip(gt_labels, matched_gt, strict=True)])  # [R]
    targets = torch.cat([mask_targets(masks, r, m, size)
                         for masks, r, m in zip(gt_masks, rois, matched_gt, strict=True)])  # [R, 28, 28]
    if targets.numel() == 0:  # no positive RoI in the batch: a zero that keeps the graph
        return mask_logits.sum() * 0
    own_class = mask_logits[torch.arange(labels.shape[0], device=labels.device), labels]  # [R, 28, 28]
    return F.binary_cross_entropy_with_logits(own_class, targets)


def paste_masks_in_image(masks: Tensor, boxes: Tensor, image_size: tuple[int, int], padding: int = 1) -> Tensor:
    """Masks ``[K, 1, M, M]`` (probabilities) and their boxes ``[K, 4]`` (in the image's pixels) → ``[K, 1, H, W]``:
    each mask bilinearly resized to its box and placed there, zero elsewhere.

    The mask gets a ``padding``-pixel zero border and its box grows by the same proportion, (M + 2p) / M, so that
    the resized mask fades to zero across the box's border instead of stopping sharply at it."""
    height, width = image_size
    side = masks.shape[-1]
    scale = float(side + 2 * padding) / side
    masks = F.pad(masks, (padding,) * 4)  # [K, 1, M + 2p, M + 2p]
    half_w = (boxes[:, 2] - boxes[:, 0]) * 0.5 * scale
    half_h = (boxes[:, 3] - boxes[:, 1]) * 0.5 * scale
    centre_x = (boxes[:, 2] + boxes[:, 0]) * 0.5
    centre_y = (boxes[:, 3] + boxes[:, 1]) * 0.5
    grown = torch.stack([centre_x - half_w, centre_y - half_h, centre_x + half_w, centre_y + half_h], dim=1)
    grown = grown.to(torch.int64)  # whole pixels; x2, y2 inclusive below
    pasted = masks.new_zeros((len(masks), 1, height, width))
    for index, (mask, box) in enumerate(zip(masks, grown, strict=True)):
        x1, y1, x2, y2 = box.tolist()
        box_h, box_w = max(y2 - y1 + 1, 1), max(x2 - x1 + 1, 1)
        resized = F.interpolate(mask[None], size=(box_h, box_w), mode="bilinear", align_corners=False)[0, 0]
        top, bottom = max(y1, 0), min(y2 + 1, height)  # the part of the box inside the image
        left, right = max(x1, 0), min(x2 + 1, width)
        pasted[index, 0, top:bottom, left:right] = resized[top - y1: bottom - y1, left - x1: right - x1]
    return pasted


class MaskRCNN(TwoStageDetector):
    """Mask R-CNN: Faster R-CNN (backbone + FPN, RPN, box head) with a parallel mask branch.

    ``model(images, targets=None)``: as :class:`FasterRCNN`, with ``masks`` ``[K, H, W]`` (uint8 or bool, one per
    object) in each training target, and ``masks`` ``[K, 1, H, W]`` (probabilities) in each eval output.

    Args:
        mask_conv_channels, mask_deconv_channels: the widths of the mask branch's four convolutions and of its
            deconvolution (256 each).
        **kwargs: every keyword but the mask branch's (backbone, transform, ``rpn_*``, ``box_*``):
            :class:`TwoStageDetector`'s, as for Faster R-CNN.
    """

    min_input_size = 1  # the transform resizes every image to min_size first, so any size works (torchvision: 1)
    model_name = "maskrcnn_resnet50_fpn"
    # reset_classifier: the box predictor and the mask logits, one map per class (torchvision's fine-tuning tutorial
    # replaces its MaskRCNNPredictor, the deconvolution included; here the deconvolution, whose shape does not
    # depend on the classes, keeps its weights)
    class_layer_names = ("roi_heads.box_predictor", "mask_head.mask_logits")

    def __init__(self, *, mask_conv_channels: Sequence[int] = (256, 256, 256, 256), mask_deconv_channels: int = 256,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)  # transform, backbone + FPN, RPN, box head: as Faster R-CNN
        channels = self.backbone.out_channels
        self.mask_head = MaskHead(channels, self.num_classes, conv_channels=mask_conv_channels,
                                  deconv_channels=mask_deconv_channels)

    def new_class_layer(self, name: str, layer: nn.Module, num_classes: int) -> nn.Module:
        new = super().new_class_layer(name, layer, num_classes)
        if name == "mask_head.mask_logits":
            nn.init.kaiming_normal_(new.weight, mode="fan_out", nonlinearity="relu")  # as MaskHead's
        return new

    def forward(self, images: list[Tensor], targets: list[dict[str, Tensor]] | None = None
                ) -> dict[str, Tensor] | list[dict[str, Tensor]]:
        batch, targets, original_sizes, features, proposals, rpn_losses = self.first_stage(images, targets,
                                                                                           needs_masks=True)
        detections, box_losses, sampled = self.roi_heads(features, proposals, batch.image_sizes, targets)

        if self.training:
            # L_mask is defined on positive RoIs only, each against its matched object's mask.
            positives = [torch.where(labels > 0)[0] for labels in sampled.labels]
            rois = [p[keep] for p, keep in zip(sampled.proposals, positives, strict=True)]
            matched = [m[keep] for m, keep in zip(sampled.matched_gt, positives, strict=True)]
            mask_logits = self.mask_head(features, rois, batch.image_sizes)
            loss_mask = mask_loss(mask_logits, rois, [t["masks"] for t in targets], [t["labels"] for t in targets],
                                  matched)
            return {**box_losses, "loss_mask": loss_mask, **rpn_losses}  # L = L_cls + L_box + L_mask (+ RPN)

        # Inference: the mask branch runs on the final detections (faster and more accurate, §3.1), and each
        # detection keeps the mask of its predicted class.
        mask_logits = self.mask_head(features, [d["boxes"] for d in detections], batch.image_sizes)
        labels = torch.cat([d["labels"] for d in detections])
        probabilities = mask_logits.sigmoid()[torch.arange(len(labels), device=labels.device), labels][:, None]
        for detection, masks in zip(detections, probabilities.split([len(d["labels"]) for d in detections]),
                                    strict=True):
            detection["masks"] = masks  # [K, 1, 28, 28]
        detections = self.transform.postprocess(detections, batch.image_sizes, original_sizes)
        for detection, size in zip(detections, original_sizes, strict=True):
            detection["masks"] = paste_masks_in_image(detection["masks"], detection["boxes"], size)
        return detections


_PAPER = Paper(
    title="Mask R-CNN",
    authors="Kaiming He, Georgia Gkioxari, Piotr Dollár, Ross Girshick",
    year=2017,
    url="https://arxiv.org/abs/1703.06870",
)


@register(ModelCard(
    name="maskrcnn_resnet50_fpn",
    architecture="Mask R-CNN (ResNet-50-FPN)",
    task="instance-segmentation",
    paper=_PAPER,
    innovations=(
        "a mask branch in parallel with Faster R-CNN's box branch: a small FCN on each RoI",
        "one binary mask per class with a per-pixel sigmoid; only the true class's mask is trained (no competition)",
        "RoIAlign: bilinear sampling at exact positions instead of RoI pooling's quantisation",
        "multi-task loss L = L_cls + L_box + L_mask on each sampled RoI, L_mask on positives only",
        "masks predicted at 28x28 in the RoI's frame and pasted into the image at the detected box",
    ),
    input=InputSpec(kind="image-list", shape=(3, 800, 800), min_size=MaskRCNN.min_input_size),
    params=44_454_513,
    params_source="torchvision.models.detection.maskrcnn_resnet50_fpn(weights=None, weights_backbone=None), "
                  "counted (BatchNorm2d in the backbone, every layer trainable). torchvision's COCO "
                  "weights meta says 44,401,393: the same network with frozen BatchNorm, whose 53,120 scales and "
                  "shifts are buffers (frozen_batchnorm=True)",
    reference="torchvision.models.detection.maskrcnn_resnet50_fpn(weights=None, weights_backbone=None)",
    gmacs=120.02,
    canonical=True,
    notes="COCO's 91 category ids (0 is the background). Masks are probabilities; threshold at 0.5 for binary "
          "masks. GMACs: the dense network (transform, ResNet-50-FPN, RPN head) at 800x800; the box head and the "
          "mask branch depend on the number of proposals and detections.",
))
def maskrcnn_resnet50_fpn(**kwargs: Any) -> MaskRCNN:
    """Mask R-CNN with a ResNet-50-FPN backbone, as torchvision's ``maskrcnn_resnet50_fpn``."""
    return MaskRCNN(backbone="resnet50", **kwargs)


if __name__ == "__main__":
    from paperzoo.cli import main

    main(["run", "maskrcnn_resnet50_fpn"])
