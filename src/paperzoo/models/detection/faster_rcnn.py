"""Faster R-CNN: "Faster R-CNN: Towards Real-Time Object Detection with Region Proposal Networks", Shaoqing Ren,
Kaiming He, Ross Girshick, Jian Sun, NeurIPS 2015, https://arxiv.org/abs/1506.01497; here with the ResNet-50
Feature Pyramid Network backbone of "Feature Pyramid Networks for Object Detection", Tsung-Yi Lin, Piotr Dollár,
Ross Girshick, Kaiming He, Bharath Hariharan, Serge Belongie, CVPR 2017, https://arxiv.org/abs/1612.03144.

Fast R-CNN (Girshick 2015) classified and refined region proposals with one network on shared convolutional
features, but the proposals themselves came from Selective Search, a CPU algorithm that took as long as the whole
detector. Faster R-CNN's idea is that the proposals can come from the same features: a Region Proposal Network
(RPN, ``rpn.py``) slides a small network over the feature map and, at every position, scores k reference boxes
("anchors" of several scales and aspect ratios) for objectness and regresses each towards a nearby object. The
RPN and the Fast R-CNN detector (``roi_heads.py``) share the backbone, so proposals become nearly free, and "the
RPN tells the unified network where to look" (§3): one network, two stages::

    images (list of [3, H_i, W_i], values in [0, 1])
      └ DetectionTransform: normalise, resize (short side 800, long ≤ 1333), pad to ×32 → [N, 3, 800, 800]
         └ ResNet-50 C2…C5 + FPN → P2 [N, 256, 200, 200], P3 /8, P4 /16, P5 /32, P6 [N, 256, 13, 13] (pool)
            ├ RPN: 3×3 conv, objectness + deltas for 3 anchors per position on P2…P6 (sizes 32…512)
            │    → top 1000 per level, NMS 0.7, top 1000 → proposals [1000, 4] per image
            └ RoI heads: MultiScaleRoIAlign 7×7 on P2…P5 → [1000, 256, 7, 7] → fc6, fc7 (1024)
                 → class logits [1000, 91], class-specific deltas [1000, 364]
                 → softmax, decode, score > 0.05, per-class NMS 0.5, top 100
      └ boxes mapped back to each input image's pixels: boxes [K, 4] (x1, y1, x2, y2), labels [K], scores [K]

Training minimises the sum of the RPN's loss (eq. 1: objectness log loss + smooth L1 on positive anchors' deltas)
and Fast R-CNN's (log loss over K + 1 classes + smooth L1 on the true class's deltas), end to end ("approximate
joint training", §3.2: the proposals are treated as constants). The model returns the four terms:
``loss_classifier``, ``loss_box_reg`` (Fast R-CNN), ``loss_objectness``, ``loss_rpn_box_reg`` (RPN).

Deviations: the backbone is a ResNet-50 with an FPN (the FPN paper's Faster R-CNN, as torchvision's
``fasterrcnn_resnet50_fpn``), not the paper's VGG-16 or its ResNet "C4" head (RoI pooling on conv4_x, conv5_x as
the head): the RPN runs on five pyramid levels with one anchor size each (32² … 512², FPN §4.1) instead of 3 scales
× 3 ratios on one map, and the box head is two fully connected layers of 1024 on 7×7 RoIAlign features (FPN §4.2)
assigned to a level by the RoI's size. Images are resized to a short side of 800 (max 1333) rather than 600 (max
1000). The other choices of torchvision that differ from the paper are listed in ``rpn.py`` and ``roi_heads.py``
(sigmoid objectness, loss normalisation, β = 1/9, per-level NMS, RoIAlign). The backbone, built as torchvision
builds it without pretrained weights, keeps ordinary ``nn.BatchNorm2d`` layers (batch statistics in training)
and trains every stage; ``frozen_batchnorm=True, trainable_backbone_layers=3`` gives the recipe used with
ImageNet weights (frozen statistics; stem and conv2_x fixed). Initialisation as torchvision: RPN convolutions
N(0, 0.01²), the box head's layers PyTorch's default, the FPN Kaiming-uniform (a = 1); the ResNet as ours.
"""

from __future__ import annotations

from typing import Any

from torch import Tensor

from paperzoo.models.detection.two_stage import TwoStageDetector
from paperzoo.registry import InputSpec, ModelCard, Paper, register


class FasterRCNN(TwoStageDetector):
    """Faster R-CNN: backbone + FPN, Region Proposal Network, Fast R-CNN box head.

    ``model(images, targets=None)``: ``images`` a list of float tensors ``[3, H, W]`` in [0, 1], each of its own
    size. In training mode ``targets`` (one dict per image: ``boxes`` ``[K, 4]`` xyxy in pixels, ``labels``
    ``[K]`` int64 in [1, num_classes)) are required and a dict of the four losses is returned; in eval mode one dict
    per image with ``boxes``, ``labels`` and ``scores``, in the input image's pixels.

    The hyperparameters (backbone, transform, ``rpn_*``, ``box_*``) are :class:`TwoStageDetector`'s.
    """

    model_name = "fasterrcnn_resnet50_fpn"

    def forward(self, images: list[Tensor], targets: list[dict[str, Tensor]] | None = None
                ) -> dict[str, Tensor] | list[dict[str, Tensor]]:
        batch, targets, original_sizes, features, proposals, rpn_losses = self.first_stage(images, targets)
        detections, box_losses, _ = self.roi_heads(features, proposals, batch.image_sizes, targets)  # stage 2
        if self.training:
            return {**box_losses, **rpn_losses}  # L = L_cls + L_box (Fast R-CNN) + L_obj + L_rpn_box (eq. 1)
        return self.transform.postprocess(detections, batch.image_sizes, original_sizes)


_PAPER = Paper(
    title="Faster R-CNN: Towards Real-Time Object Detection with Region Proposal Networks",
    authors="Shaoqing Ren, Kaiming He, Ross Girshick, Jian Sun",
    year=2015,
    url="https://arxiv.org/abs/1506.01497",
)


@register(ModelCard(
    name="fasterrcnn_resnet50_fpn",
    architecture="Faster R-CNN (ResNet-50-FPN)",
    task="object-detection",
    paper=_PAPER,
    innovations=(
        "a Region Proposal Network shares the detector's features, making proposals nearly free",
        "anchors: k reference boxes of several scales and aspect ratios at every feature-map position",
        "objectness and box regression per anchor, trained with IoU-based positives (>= 0.7) and negatives (< 0.3)",
        "two stages, one network: RPN proposals feed Fast R-CNN's RoI classifier and class-specific regressor",
        "FPN backbone: one anchor size per pyramid level, RoIs pooled from the level matching their size",
    ),
    input=InputSpec(kind="image-list", shape=(3, 800, 800), min_size=FasterRCNN.min_input_size),
    params=41_808_406,
    params_source="torchvision.models.detection.fasterrcnn_resnet50_fpn(weights=None, weights_backbone=None), "
                  "counted (BatchNorm2d in the backbone, every layer trainable). torchvision's COCO "
                  "weights meta says 41,755,286: the same network with frozen BatchNorm, whose 53,120 scales and "
                  "shifts are buffers (frozen_batchnorm=True)",
    reference="torchvision.models.detection.fasterrcnn_resnet50_fpn(weights=None, weights_backbone=None)",
    gmacs=120.02,
    canonical=True,
    notes="COCO's 91 category ids (0 is the background); num_classes=K+1 for another data set. GMACs: the dense "
          "network (transform, ResNet-50-FPN, RPN head) at 800x800; the box head adds 14.4 MMACs per proposal "
          "(14.4 GMACs for 1000 proposals).",
))
def fasterrcnn_resnet50_fpn(**kwargs: Any) -> FasterRCNN:
    """Faster R-CNN with a ResNet-50-FPN backbone, as torchvision's ``fasterrcnn_resnet50_fpn``."""
    return FasterRCNN(backbone="resnet50", **kwargs)


if __name__ == "__main__":
    from paperzoo.cli import main

    main(["run", "fasterrcnn_resnet50_fpn"])
