"""The synthetic detection data set of the tests, and a tiny detector for the tests of the shared machinery.

``make_shapes_dataset`` (coloured rectangles and ellipses on noise, with boxes and masks) is the package's own
(``paperzoo.training.detection_data``: ``paperzoo train``'s default detection data), re-exported here for the
tests that build their batches by hand.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.ops import batched_nms, box_iou, clip_boxes_to_image

from paperzoo.layers import check_detection_targets, check_image_list
from paperzoo.models.detection.anchors import AnchorGenerator
from paperzoo.models.detection.boxes import BalancedSampler, BoxCoder, Matcher
from paperzoo.models.detection.transform import DetectionTransform
from paperzoo.registry import InputSpec, ModelCard, Paper
from paperzoo.training.detection_data import SHAPES, make_shapes_dataset  # noqa: F401  (the tests import them)

# --- a tiny detector for the tests of the shared machinery (contract tests, measure, CLI) ----------------------
# Not registered in the global registry: tests/test_contract.py registers it for the duration of a test only.
# It obeys the detectors' interface with the shared parts (transform, anchors, matching, sampling, box coding):
# a two-layer ConvNet, one anchor level, a softmax classifier and class-agnostic box regression per anchor, and,
# as an instance segmenter, a per-class mask map cut out by each detected box.


class TinyDetector(nn.Module):
    """A minimal anchor-based detector (and, with ``with_masks``, instance segmenter) on 64-pixel images."""

    min_input_size = 1
    model_name = "tiny_detector"

    def __init__(self, num_classes: int = 3, width: int = 8, with_masks: bool = False, size: int = 64) -> None:
        super().__init__()
        self.num_classes, self.with_masks = num_classes, with_masks
        self.transform = DetectionTransform(size, size, [0.5] * 3, [0.25] * 3, size_divisible=8)
        self.features = nn.Sequential(nn.Conv2d(3, width, 3, stride=2, padding=1), nn.ReLU(),
                                      nn.Conv2d(width, width, 3, stride=2, padding=1), nn.ReLU())  # stride 4
        self.anchors = AnchorGenerator(((8, 16, 32),), ((0.5, 1.0, 2.0),))
        k = self.anchors.num_anchors_per_location()[0]
        self.classifier = nn.Conv2d(width, k * num_classes, 1)
        self.regressor = nn.Conv2d(width, k * 4, 1)
        self.mask_head = nn.Conv2d(width, num_classes, 1) if with_masks else None
        self.box_coder, self.matcher, self.sampler = BoxCoder((1.0, 1.0, 1.0, 1.0)), Matcher(0.5, 0.4, True), \
            BalancedSampler(64, 0.5)

    def forward(self, images, targets=None):
        check_image_list(images, model=self, min_size=self.min_input_size)
        if self.training:
            check_detection_targets(targets, images, name=self.model_name, num_classes=self.num_classes,
                                    needs_masks=self.with_masks)
        original_sizes = [tuple(image.shape[-2:]) for image in images]
        batch, targets = self.transform(images, targets)
        features = self.features(batch.tensors)
        n, _, h, w = features.shape
        logits = self.classifier(features).view(n, -1, self.num_classes, h, w).permute(0, 3, 4, 1, 2)
        logits = logits.reshape(n, -1, self.num_classes)  # [N, h·w·k, classes], the anchors' order
        deltas = self.regressor(features).view(n, -1, 4, h, w).permute(0, 3, 4, 1, 2).reshape(n, -1, 4)
        anchors = self.anchors(batch, [features])
        masks = self.mask_head(features) if self.mask_head is not None else None  # [N, classes, h, w]
        if self.training:
            return self.losses(logits, deltas, anchors, masks, targets, batch.tensors.shape[-2:])
        detections = []
        for i in range(n):
            boxes = clip_boxes_to_image(self.box_coder.decode_single(deltas[i], anchors[i]), batch.image_sizes[i])
            scores = logits[i].softmax(-1)[:, 1:]  # [A, classes - 1]
            labels = torch.arange(1, self.num_classes).expand_as(scores)
            boxes = boxes[:, None].expand(-1, self.num_classes - 1, 4).reshape(-1, 4)
            scores, labels = scores.reshape(-1), labels.reshape(-1)
            keep = scores.topk(min(200, len(scores))).indices
            keep = keep[scores[keep] > 0.05]
            boxes, scores, labels = boxes[keep], scores[keep], labels[keep]
            keep = batched_nms(boxes, scores, labels, 0.5)[:20]
            detection = {"boxes": boxes[keep], "labels": labels[keep], "scores": scores[keep]}
            if masks is not None:
                detection["masks"] = self.paste(masks[i], detection, batch.image_sizes[i], original_sizes[i])
            detections.append(detection)
        return self.transform.postprocess(detections, batch.image_sizes, original_sizes)

    @staticmethod
    def paste(masks, detection, size, original_size):
        """Each detection's class map, resized to the input image and cut to its box: ``[K, 1, H, W]``."""
        h, w = size
        full = F.interpolate(masks[None], scale_factor=4.0, mode="bilinear")[0][:, :h, :w]
        full = F.interpolate(full[None], size=original_size, mode="bilinear")[0].sigmoid()  # [classes, H, W]
        ys = torch.arange(original_size[0])[:, None] + 0.5
        xs = torch.arange(original_size[1])[None, :] + 0.5
        scale_y, scale_x = original_size[0] / h, original_size[1] / w
        out = []
        for box, label in zip(detection["boxes"], detection["labels"], strict=True):
            x1, y1, x2, y2 = box * torch.tensor([scale_x, scale_y, scale_x, scale_y])
            inside = (xs >= x1) & (xs <= x2) & (ys >= y1) & (ys <= y2)
            out.append(full[label] * inside)
        return torch.stack(out)[:, None] if out else full.new_zeros(0, 1, *original_size)

    def losses(self, logits, deltas, anchors, masks, targets, padded_size):
        classification, regression, mask_loss = [], [], []
        for i, target in enumerate(targets):
            if len(target["boxes"]) == 0:  # an image without objects: every anchor is background
                labels = torch.zeros(len(anchors[i]), dtype=torch.int64)
                matched = torch.zeros_like(anchors[i])
            else:
                index = self.matcher(box_iou(target["boxes"], anchors[i]))
                labels = target["labels"][index.clamp(min=0)]
                labels[index == Matcher.BELOW_LOW_THRESHOLD] = 0
                labels[index == Matcher.BETWEEN_THRESHOLDS] = -1
                matched = target["boxes"][index.clamp(min=0)]
            (positive,), (negative,) = self.sampler([labels])
            sampled = (positive | negative).bool()
            classification.append(F.cross_entropy(logits[i][sampled], labels[sampled], reduction="sum"))
            positive = positive.bool()
            codes = self.box_coder.encode_single(matched[positive], anchors[i][positive])
            regression.append(F.smooth_l1_loss(deltas[i][positive], codes, beta=1 / 9, reduction="sum"))
            if masks is not None:
                per_class = torch.zeros(self.num_classes, *padded_size)
                for mask, label in zip(target["masks"], target["labels"], strict=True):
                    per_class[label, : mask.shape[0], : mask.shape[1]] = torch.maximum(
                        per_class[label, : mask.shape[0], : mask.shape[1]], mask.float())
                predicted = F.interpolate(masks[i][None], size=padded_size, mode="bilinear")[0]
                mask_loss.append(F.binary_cross_entropy_with_logits(predicted, per_class))
        count = max(1, len(targets))
        losses = {"loss_classifier": sum(classification) / (64 * count),
                  "loss_box_reg": sum(regression) / (64 * count)}
        if masks is not None:
            losses["loss_mask"] = sum(mask_loss) / count
        return losses


def tiny_detector_macs(num_classes: int = 3, width: int = 8, with_masks: bool = False, size: int = 64) -> int:
    """Multiply-accumulates of TinyDetector's dense network on one ``size``² image, counted by hand: every
    convolution is output pixels × output channels × input channels × kernel area."""
    h1 = size // 2
    h2 = size // 4
    k = 9
    macs = h1 * h1 * width * 3 * 9 + h2 * h2 * width * width * 9
    macs += h2 * h2 * (k * num_classes + k * 4) * width
    if with_masks:
        macs += h2 * h2 * num_classes * width
    return macs


def _tiny_card(name: str, task: str, innovations: tuple[str, ...]) -> ModelCard:
    return ModelCard(name=name, architecture="tiny detector (tests only)", task=task,
                     paper=Paper("none: a test fixture", "paperzoo tests", 2026, "https://example.org/tiny"),
                     innovations=innovations, input=InputSpec(kind="image-list", shape=(3, 64, 64)),
                     params=1, params_source="not checked: a test fixture", reference="paper", gmacs=0.001,
                     canonical=True)


def tiny_detector(**kwargs) -> TinyDetector:
    return TinyDetector(**kwargs)


def tiny_instance_segmenter(**kwargs) -> TinyDetector:
    return TinyDetector(with_masks=True, **kwargs)


# name -> (builder, card): what a test puts into paperzoo.registry._REGISTRY for its duration (monkeypatch).
TINY_DETECTORS = {
    "tiny_detector": (tiny_detector, _tiny_card(
        "tiny_detector", "object-detection", ("anchors on one level", "balanced sampling"))),
    "tiny_instance_segmenter": (tiny_instance_segmenter, _tiny_card(
        "tiny_instance_segmenter", "instance-segmentation", ("anchors on one level", "a mask map per class"))),
}
