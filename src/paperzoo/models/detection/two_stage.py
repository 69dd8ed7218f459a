"""The two-stage R-CNN skeleton that Faster R-CNN and Mask R-CNN share: the transform, the ResNet-FPN backbone, the
Region Proposal Network (``rpn.py``) and the Fast R-CNN box head (``roi_heads.py``), built from one set of
hyperparameters, and the first stage of their forward pass (check, resize, features, proposals).

Each model file keeps its own forward pass: ``faster_rcnn.py`` runs the box head on the proposals, and
``mask_rcnn.py`` adds its mask branch (a model file never imports another model file, so what both build lives
here).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

from torch import Tensor, nn

from paperzoo.layers import ClassLayersMixin, check_detection_targets, check_image_list
from paperzoo.models.detection.backbone import ResNetFPNBackbone
from paperzoo.models.detection.roi_heads import BoxPredictor, RoIBoxHeads
from paperzoo.models.detection.rpn import RegionProposalNetwork
from paperzoo.models.detection.transform import DetectionTransform, ImageBatch

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class TwoStageDetector(ClassLayersMixin, nn.Module):
    """Backbone + FPN, Region Proposal Network and Fast R-CNN box head: the parts of Faster and Mask R-CNN.

    Args:
        num_classes: K + 1, the object classes plus the background (91 for COCO's category ids).
        backbone: a registered ResNet's name, built under an FPN (:class:`ResNetFPNBackbone`), or a ready module
            that maps ``[N, 3, H, W]`` to an ordered dict of levels (``"0"``…``"3"`` and a coarser one for the RPN)
            and has an ``out_channels`` attribute.
        trainable_backbone_layers: how many ResNet stages, counted from conv5_x, train (5: all, torchvision's
            choice without pretrained weights; 3 with them).
        frozen_batchnorm: freeze the backbone's BatchNorms (the recipe with pretrained weights).
        fpn_channels: d, the width of the pyramid (256).
        min_size, max_size: the resize: shorter side to ``min_size`` (a tuple: one at random per image in
            training), longer side at most ``max_size``.
        image_mean, image_std: the normalisation (ImageNet's).
        anchor_sizes, aspect_ratios: per pyramid level, the anchors' sizes and height/width ratios.
        rpn_*: the RPN's matching thresholds, sampling, and proposal counts before/after NMS (see
            :class:`RegionProposalNetwork`).
        box_*: the RoI heads' representation size, matching, sampling and post-processing (see
            :class:`RoIBoxHeads`).
    """

    min_input_size = 1  # the transform resizes every image to min_size first, so any size works (torchvision: 1)
    model_name = "two-stage detector"
    # reset_classifier replaces the box predictor (class logits and class-specific box deltas), as torchvision's
    # fine-tuning tutorial replaces its FastRCNNPredictor; the RPN is class-agnostic and stays.
    class_layer_names = ("roi_heads.box_predictor",)
    min_num_classes = 2  # the background and at least one object class

    def __init__(
        self,
        num_classes: int = 91,
        backbone: str | nn.Module = "resnet50",
        trainable_backbone_layers: int = 5,
        frozen_batchnorm: bool = False,
        fpn_channels: int = 256,
        min_size: int | tuple[int, ...] = 800,
        max_size: int = 1333,
        image_mean: Sequence[float] = IMAGENET_MEAN,
        image_std: Sequence[float] = IMAGENET_STD,
        anchor_sizes: tuple[tuple[int, ...], ...] = ((32,), (64,), (128,), (256,), (512,)),
        aspect_ratios: tuple[float, ...] = (0.5, 1.0, 2.0),
        rpn_pre_nms_top_n_train: int = 2000,
        rpn_pre_nms_top_n_test: int = 1000,
        rpn_post_nms_top_n_train: int = 2000,
        rpn_post_nms_top_n_test: int = 1000,
        rpn_nms_thresh: float = 0.7,
        rpn_fg_iou_thresh: float = 0.7,
        rpn_bg_iou_thresh: float = 0.3,
        rpn_batch_size_per_image: int = 256,
        rpn_positive_fraction: float = 0.5,
        rpn_score_thresh: float = 0.0,
        box_representation_size: int = 1024,
        box_score_thresh: float = 0.05,
        box_nms_thresh: float = 0.5,
        box_detections_per_img: int = 100,
        box_fg_iou_thresh: float = 0.5,
        box_bg_iou_thresh: float = 0.5,
        box_batch_size_per_image: int = 512,
        box_positive_fraction: float = 0.25,
    ) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.transform = DetectionTransform(min_size, max_size, image_mean, image_std, size_divisible=32)
        self.backbone = backbone if isinstance(backbone, nn.Module) else ResNetFPNBackbone(
            backbone, trainable_layers=trainable_backbone_layers, out_channels=fpn_channels,
            frozen_batchnorm=frozen_batchnorm)
        channels = self.backbone.out_channels
        self.rpn = RegionProposalNetwork(
            channels, anchor_sizes, (tuple(aspect_ratios),) * len(anchor_sizes),
            fg_iou_thresh=rpn_fg_iou_thresh, bg_iou_thresh=rpn_bg_iou_thresh,
            batch_size_per_image=rpn_batch_size_per_image, positive_fraction=rpn_positive_fraction,
            pre_nms_top_n_train=rpn_pre_nms_top_n_train, pre_nms_top_n_test=rpn_pre_nms_top_n_test,
            post_nms_top_n_train=rpn_post_nms_top_n_train, post_nms_top_n_test=rpn_post_nms_top_n_test,
            nms_thresh=rpn_nms_thresh, score_thresh=rpn_score_thresh)
        self.roi_heads = RoIBoxHeads(
            channels, num_classes, representation_size=box_representation_size,
            fg_iou_thresh=box_fg_iou_thresh, bg_iou_thresh=box_bg_iou_thresh,
            batch_size_per_image=box_batch_size_per_image, positive_fraction=box_positive_fraction,
            score_thresh=box_score_thresh, nms_thresh=box_nms_thresh, detections_per_img=box_detections_per_img)

    def new_class_layer(self, name: str, layer: nn.Module, num_classes: int) -> nn.Module:
        if isinstance(layer, BoxPredictor):
            return BoxPredictor(layer.class_logits.in_features, num_classes)
        return super().new_class_layer(name, layer, num_classes)

    def first_stage(self, images: list[Tensor], targets: list[dict[str, Tensor]] | None, needs_masks: bool = False
                    ) -> tuple[ImageBatch, list[dict[str, Tensor]] | None, list[tuple[int, int]],
                               OrderedDict[str, Tensor], list[Tensor], dict[str, Tensor]]:
        """Check the input, resize and batch it, compute the pyramid and the RPN's proposals.

        Returns the batch, the resized targets (``None`` in eval mode), the input images' sizes, the features,
        the proposals per image and the RPN's losses (empty in eval mode)."""
        check_image_list(images, model=self, min_size=self.min_input_size)
        if self.training:
            check_detection_targets(targets, images, name=self.model_name, num_classes=self.num_classes,
                                    needs_masks=needs_masks)
        else:
            targets = None  # evaluation detects; targets play no part
        original_sizes = [(int(image.shape[-2]), int(image.shape[-1])) for image in images]
        batch, targets = self.transform(images, targets)  # masks, if any, resized with their images (nearest)
        features = self.backbone(batch.tensors)  # "0"…"3": P2…P5, "pool": P6
        proposals, rpn_losses = self.rpn(batch, features, targets)  # stage 1: where to look
        return batch, targets, original_sizes, features, proposals, rpn_losses
