r"""YOLOv3.

Paper: "YOLOv3: An Incremental Improvement", Joseph Redmon, Ali Farhadi, 2018 (tech report).
https://arxiv.org/abs/1804.02767

YOLO ("You Only Look Once") detects in one pass of one convolutional network: every cell of a grid laid over the
image predicts a few boxes directly, with no proposals and no region-wise second stage. YOLOv3 is YOLOv2 with a
handful of changes that each helped (§2):

* Bounding box prediction (§2.1, from YOLOv2). A cell at grid offset $(c_x, c_y)$ predicts, for each of its box
  priors (anchors) of size $(p_w, p_h)$, four numbers $t_x, t_y, t_w, t_h$, and the box is

  $$b_x = \sigma(t_x) + c_x, \quad b_y = \sigma(t_y) + c_y, \quad b_w = p_w e^{t_w}, \quad b_h = p_h e^{t_h}.$$

  The sigmoid keeps the predicted centre inside its own cell, which made YOLOv2's training stable. Training uses a
  sum of squared errors on these coordinates.
* Objectness by logistic regression: 1 for the one prior that overlaps a ground-truth object best (each object is
  assigned to exactly one prior), and a prior that is not the best but overlaps an object by more than 0.5 is
  ignored: it gets no objectness loss, neither positive nor negative (following Faster R-CNN's "ignore" band).
  Priors not assigned to an object get no box and no class loss.
* Class prediction (§2.2): independent logistic classifiers with binary cross-entropy instead of a softmax, so that
  overlapping labels ("Woman" and "Person" in Open Images) can both be true. A detection's score is
  Pr(object) · Pr(class | object).
* Predictions across scales (§2.3): boxes at three scales, like a feature pyramid network. On the last map of the
  backbone a few convolutions predict a tensor N × N × [3 · (4 + 1 + 80)] for COCO (3 priors per scale, 4 box
  offsets, objectness, 80 classes). Then the map from two layers earlier is upsampled ×2 and concatenated with an
  earlier, finer backbone map, which brings fine-grained detail to the semantic features; a few more convolutions
  predict at twice the resolution, and the same once more. The nine priors come from k-means on COCO's boxes:
  (10×13), (16×30), (33×23) at the finest scale, (30×61), (62×45), (59×119) in the middle, (116×90), (156×198),
  (373×326) at the coarsest.
* Feature extractor (§2.4): Darknet-53 (``darknet53`` in this package), 52 of whose convolutions are the backbone.

Data flow at 416×416 (COCO: 80 classes, 3 priors per scale, 3 · 85 = 255 outputs per cell)::

    image ─► resize 416×416 ─► Darknet-53 ─┬─ stride 8:  256×52×52 ──────────────────────────────┐
                                           ├─ stride 16: 512×26×26 ────────────────┐             │
                                           └─ stride 32: 1024×13×13                │             │
                                                  │                                │             │
                          detection block (5 convs, 512) ─► 3×3 1024 ─► 1×1 255 ─► 13×13×3 boxes (priors 6-8)
                                                  │ route                          │             │
                                      1×1 256, upsample ×2 ─► concat (768×26×26) ◄─┘             │
                          detection block (5 convs, 256) ─► 3×3 512 ─► 1×1 255 ─► 26×26×3 boxes (priors 3-5)
                                                  │ route                                        │
                                      1×1 128, upsample ×2 ─► concat (384×52×52) ◄───────────────┘
                          detection block (5 convs, 128) ─► 3×3 256 ─► 1×1 255 ─► 52×52×3 boxes (priors 0-2)

    10,647 boxes ─► score = σ(objectness) · σ(class) ─► threshold ─► NMS per class ─► detections

    detection block of width w: 1×1 w ─ 3×3 2w ─ 1×1 w ─ 3×3 2w ─ 1×1 w  (BatchNorm, leaky ReLU 0.1 each)

The network is the authors' ``yolov3.cfg`` (the paper gives no table of the head): its 75 backbone layers, then
per scale the five-convolution block, a 3×3 and a linear 1×1 convolution with bias, the "route" back to the
block's output, a 1×1 convolution, the "upsample" and the "route" concatenating a backbone map. Counting its layers
(every convolution without bias but with a BatchNorm scale and shift, the three output convolutions with bias):
40,584,928 in the backbone and 21,364,221 in the head, 61,949,149 in all, the figure of the ultralytics/yolov3
model summary for this cfg.

Deviations from the paper and from Darknet:

* Input: every image is resized to 416×416 (``DetectionTransform(fixed_size=...)``) ignoring its aspect ratio,
  and the boxes are mapped back by the same per-axis ratios. Darknet's test path "letterboxes" (resizes keeping
  the aspect ratio and pads with grey); its training path, however, resizes with random aspect jitter, so the
  network is trained on stretched images, and the plain resize keeps one shared transform for every detector here.
  The pixels are not normalised (Darknet feeds [0, 1]). Multi-scale training (the paper's "multi-scale training")
  is a data-loading choice left to the training loop; ``image_size`` sets the resolution (a multiple of 32).
* Box loss: the paper states a squared error on t_x, t_y, t_w, t_h against targets obtained "by inverting the
  equations above". For the width and height that is (t_w − log(g_w / p_w))²; for the centre the inverse of the
  sigmoid is infinite at the cell's border, so, as Darknet's ``delta_yolo_box`` does, the squared error is taken
  between σ(t_x) and the centre's offset in its cell. Darknet also weights the box error by (2 − w·h) (w, h
  relative to the image); the paper does not mention it and it is left out.
* The losses are sums over the predictions divided by the number of images (Darknet sums over its batch and
  divides the learning rate by the batch size, which is the same update).
* Ignored predictions: the paper says a *prior* overlapping an object by more than 0.5; Darknet (and this code)
  compares the *predicted* box with every ground truth.
* Ignore threshold: 0.5, the paper's (§2.1, "we use the threshold of .5", after Faster R-CNN), not the 0.7 of the
  released ``yolov3.cfg`` (``ignore_thresh = .7``). The paper is this model's reference, no Darknet weights are
  loaded here that were trained with the release's value, and 0.5 is the threshold the paper's results are
  described with; ``ignore_threshold=0.7`` trains as the release does (fewer predictions are exempt from the
  "no object" loss).
* When two objects fall on the same prior of the same cell, the later one in the target list is the target
  (Darknet overwrites the box target the same way).
* Post-processing keeps the 1,000 best (box, class) candidates above ``score_threshold`` before the per-class NMS
  (torchvision's one-stage detectors do the same; Darknet sorts all 10,647 × 80), clips the boxes to the image,
  and returns at most ``detections_per_image`` (100, COCO's limit). Thresholds: Darknet's evaluation values,
  score 0.005 and NMS IoU 0.45.
* Labels are the class indices 0 … num_classes − 1 (there is no background class: objectness plays its role).
* BatchNorm: PyTorch's defaults (ε = 1e-5, momentum 0.1), as for ``darknet53``. Initialisation as Darknet's
  (He-normal with fan-in) except for the three output convolutions: weights N(0, 0.01²), zero biases but for
  objectness, which starts at −log((1 − π)/π), π = 0.01 (RetinaNet's prior-probability initialisation, Lin et
  al. 2017). Darknet draws them He-normal like every other layer, so its first boxes are the priors scaled by
  $e^{\pm 1.4}$ at random and half of the 10,647 predictions claim an object; Darknet then trains for 500k steps
  from an ImageNet backbone. On the learning test's data (tests/test_yolov3.py, one class, 64×64) the He-normal
  output layer reached mAP@0.5 0.10 after 300 steps, this one 0.42 after 150.
"""

from __future__ import annotations

import math
from functools import partial
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.ops import batched_nms, box_iou, clip_boxes_to_image

from paperzoo.layers import ClassLayersMixin, ConvNormAct, check_detection_targets, check_image_list
from paperzoo.models.detection.transform import DetectionTransform
from paperzoo.registry import InputSpec, ModelCard, Paper, create_model, register

__all__ = ["YOLOv3", "DetectionBlock", "COCO_ANCHORS", "decode_boxes", "shape_iou"]

# The nine box priors of §2.3 (k-means on COCO's boxes), (width, height) in pixels of the 416×416 input, smallest
# first: three per scale, the finest scale (stride 8) taking the smallest.
COCO_ANCHORS: tuple[tuple[int, int], ...] = (
    (10, 13), (16, 30), (33, 23), (30, 61), (62, 45), (59, 119), (116, 90), (156, 198), (373, 326),
)
STRIDES = (8, 16, 32)  # the backbone maps YOLOv3 predicts on, finest first


def shape_iou(sizes: Tensor, priors: Tensor) -> Tensor:
    """IoU of boxes ``sizes`` ``[G, 2]`` (w, h) with ``priors`` ``[A, 2]`` as if they shared their centre: the
    overlap of their shapes alone, which decides the one prior each object is assigned to. → ``[G, A]``."""
    intersection = torch.minimum(sizes[:, None, 0], priors[None, :, 0]) * torch.minimum(sizes[:, None, 1],
                                                                                         priors[None, :, 1])
    union = (sizes[:, 0] * sizes[:, 1])[:, None] + (priors[:, 0] * priors[:, 1])[None, :] - intersection
    return intersection / union


def decode_boxes(prediction: Tensor, priors: Tensor, stride: int) -> Tensor:
    """Raw predictions ``[..., A, H, W, 5 + C]`` of one scale → boxes ``[..., A, H, W, 4]`` (x1, y1, x2, y2 in input
    pixels), from the priors ``[A, 2]`` (p_w, p_h in pixels) and the scale's ``stride`` (pixels per cell)."""
    height, width = prediction.shape[-3:-1]
    cell_y, cell_x = torch.meshgrid(torch.arange(height, device=prediction.device, dtype=prediction.dtype),
                                    torch.arange(width, device=prediction.device, dtype=prediction.dtype),
                                    indexing="ij")  # c_y, c_x: [H, W], the cell's offset from the top-left corner
    center_x = (prediction[..., 0].sigmoid() + cell_x) * stride  # b_x = σ(t_x) + c_x, in cells → pixels
    center_y = (prediction[..., 1].sigmoid() + cell_y) * stride  # b_y = σ(t_y) + c_y
    prior_w = priors[:, 0, None, None]  # [A, 1, 1]: broadcast over the grid
    prior_h = priors[:, 1, None, None]
    box_w = prior_w * prediction[..., 2].exp()  # b_w = p_w e^{t_w}
    box_h = prior_h * prediction[..., 3].exp()  # b_h = p_h e^{t_h}
    return torch.stack((center_x - box_w / 2, center_y - box_h / 2, center_x + box_w / 2, center_y + box_h / 2), -1)


class DetectionBlock(nn.Module):
    """The "several convolutional layers" that YOLOv3 adds on a feature map (§2.3), as yolov3.cfg has them: five
    alternating 1×1 (``width``) and 3×3 (2·``width``) convolutions, whose output is routed on to the next finer
    scale, then a 3×3 convolution and a linear 1×1 that predicts ``num_outputs`` = priors · (4 + 1 + classes)
    numbers per cell."""

    def __init__(self, in_channels: int, width: int, num_outputs: int, act_layer: partial) -> None:
        super().__init__()
        layers, channels = [], in_channels
        for i in range(5):  # 1×1 w, 3×3 2w, 1×1 w, 3×3 2w, 1×1 w: Darknet-19's bottleneck pattern
            out = width if i % 2 == 0 else 2 * width
            layers.append(ConvNormAct(channels, out, kernel_size=1 if i % 2 == 0 else 3, act_layer=act_layer))
            channels = out
        self.body = nn.Sequential(*layers)
        self.head = ConvNormAct(width, 2 * width, kernel_size=3, act_layer=act_layer)
        self.predict = nn.Conv2d(2 * width, num_outputs, kernel_size=1)  # linear, with bias: the raw t's

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        route = self.body(x)
        return route, self.predict(self.head(route))


class Upsample(nn.Module):
    """The path to the next finer scale: a 1×1 convolution halves the channels of the routed map, then a ×2
    nearest-neighbour upsampling (Darknet's "upsample" layer) brings it to the finer map's grid."""

    def __init__(self, in_channels: int, out_channels: int, act_layer: partial) -> None:
        super().__init__()
        self.reduce = ConvNormAct(in_channels, out_channels, kernel_size=1, act_layer=act_layer)

    def forward(self, x: Tensor) -> Tensor:
        return F.interpolate(self.reduce(x), scale_factor=2, mode="nearest")


class YOLOv3(ClassLayersMixin, nn.Module):
    """YOLOv3: Darknet-53, three detection blocks joined by upsampling and concatenation, the paper's loss and
    decoding. torchvision's interface: ``model(images, targets=None)``; in training mode with targets a dict of
    losses (``loss_box``, ``loss_objectness``, ``loss_classifier``), in eval mode one dict per image with ``boxes``
    (x1, y1, x2, y2 in the input's pixels), ``labels`` (0 … num_classes − 1) and ``scores``.

    Args:
        num_classes: object classes (80 for COCO), each its own logistic classifier.
        anchors: the nine box priors (w, h) in pixels at ``image_size``, smallest first; three per scale.
        image_size: the side every image is resized to (416 in the paper's main results; a multiple of 32).
        backbone: the registered classifier whose ``features_only`` maps at strides 8, 16, 32 are used.
        backbone_kwargs: extra arguments for it (a narrower Darknet for tests: ``stage_widths``, ...).
        negative_slope: the leaky ReLU's slope in the backbone and the head (Darknet: 0.1).
        ignore_threshold: unassigned predictions whose box overlaps an object by more than this get no objectness
            loss (0.5, the paper's; the released yolov3.cfg trains with 0.7).
        score_threshold: the least Pr(object) · Pr(class) a detection needs (Darknet's evaluation: 0.005).
        nms_threshold: NMS suppresses a box of the same class overlapping a better one by more than this (0.45).
        detections_per_image: the most detections returned per image (100).
        candidates_per_image: the best (box, class) pairs kept for NMS (1,000).
    """

    min_input_size = 1  # any image: the transform resizes it to image_size × image_size first
    model_name = "yolov3"
    # reset_classifier rebuilds each scale's output convolution, whose A·(5 + C) outputs mix the box, objectness and
    # class terms of every prior
    class_layer_names = ("detect32.predict", "detect16.predict", "detect8.predict")
    first_label = 0  # the first class's label: no background class (the R-CNNs' and SSD's start at 1)

    def __init__(
        self,
        num_classes: int = 80,
        anchors: tuple[tuple[float, float], ...] = COCO_ANCHORS,
        image_size: int = 416,
        backbone: str = "darknet53",
        backbone_kwargs: dict[str, Any] | None = None,
        negative_slope: float = 0.1,
        ignore_threshold: float = 0.5,
        score_threshold: float = 0.005,
        nms_threshold: float = 0.45,
        detections_per_image: int = 100,
        candidates_per_image: int = 1000,
    ) -> None:
        super().__init__()
        if image_size % 32 != 0:
            raise ValueError(f"image_size must be a multiple of 32 (the stride-32 map is upsampled twice to meet the "
                             f"stride-8 map), got {image_size}")
        if len(anchors) % len(STRIDES) != 0:
            raise ValueError(f"anchors: {len(anchors)} priors do not split evenly over {len(STRIDES)} scales")
        self.num_classes = num_classes
        self.image_size = image_size
        self.ignore_threshold = ignore_threshold
        self.score_threshold = score_threshold
        self.nms_threshold = nms_threshold
        self.detections_per_image = detections_per_image
        self.candidates_per_image = candidates_per_image
        self.anchors_per_scale = len(anchors) // len(STRIDES)
        # Not saved: the priors are hyperparameters, not learned.
        self.register_buffer("anchors", torch.tensor(anchors, dtype=torch.float32), persistent=False)

        # Darknet feeds pixels in [0, 1]: mean 0, std 1.
        self.transform = DetectionTransform(min_size=image_size, max_size=image_size, image_mean=(0.0, 0.0, 0.0),
                                            image_std=(1.0, 1.0, 1.0), size_divisible=32,
                                            fixed_size=(image_size, image_size))
        self.backbone = create_model(backbone, features_only=True, out_indices=(2, 3, 4),
                                     negative_slope=negative_slope, **(backbone_kwargs or {}))
        channels = [info.channels for info in self.backbone.feature_info]  # (256, 512, 1024) for Darknet-53
        if tuple(info.stride for info in self.backbone.feature_info) != STRIDES:
            raise ValueError(f"the backbone's maps must have strides {STRIDES}")
        # As in yolov3.cfg, each scale's block is half as wide as the backbone map it starts from (512, 256, 128).
        widths = [c // 2 for c in channels]
        act_layer = partial(nn.LeakyReLU, negative_slope=negative_slope)
        num_outputs = self.anchors_per_scale * (5 + num_classes)  # per prior: t_x, t_y, t_w, t_h, t_o, classes
        self.detect32 = DetectionBlock(channels[2], widths[2], num_outputs, act_layer)
        self.upsample16 = Upsample(widths[2], widths[1], act_layer)
        self.detect16 = DetectionBlock(widths[1] + channels[1], widths[1], num_outputs, act_layer)
        self.upsample8 = Upsample(widths[1], widths[0], act_layer)
        self.detect8 = DetectionBlock(widths[0] + channels[0], widths[0], num_outputs, act_layer)
        for name, module in self.named_modules():  # the backbone initialised itself
            if not name.startswith("backbone") and isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_in", nonlinearity="relu")  # Darknet's
        for block in (self.detect32, self.detect16, self.detect8):
            self._init_predict(block.predict)

    def _init_predict(self, conv: nn.Conv2d) -> None:
        # The output layer starts near zero, so that the first boxes are the priors themselves (t ≈ 0:
        # b_w ≈ p_w), and with objectness Pr(object) = π = 0.01 everywhere, so that the thousands of empty
        # cells do not swamp the first steps (RetinaNet's prior-probability initialisation; see Deviations).
        nn.init.normal_(conv.weight, std=0.01)
        nn.init.zeros_(conv.bias)
        with torch.no_grad():
            conv.bias.view(self.anchors_per_scale, -1)[:, 4] = -math.log((1 - 0.01) / 0.01)  # (A, 5 + C)

    def new_class_layer(self, name: str, layer: nn.Module, num_classes: int) -> nn.Module:
        conv = nn.Conv2d(layer.in_channels, self.anchors_per_scale * (5 + num_classes), kernel_size=1)
        self._init_predict(conv)
        return conv

    def priors(self, scale: int) -> Tensor:
        """The priors ``[A, 2]`` (w, h in pixels) of scale ``scale`` (0: stride 8, 1: 16, 2: 32)."""
        return self.anchors[scale * self.anchors_per_scale:(scale + 1) * self.anchors_per_scale]

    def predict(self, images: Tensor) -> list[Tensor]:
        """The network: a batch ``[N, 3, S, S]`` → raw predictions per scale, finest first, each
        ``[N, A, S/stride, S/stride, 5 + C]`` (t_x, t_y, t_w, t_h, objectness logit, class logits)."""
        c8, c16, c32 = self.backbone(images)
        route, p32 = self.detect32(c32)
        # Concatenate the upsampled coarse features first, then the backbone's ("route -1, 61" in the cfg).
        route, p16 = self.detect16(torch.cat([self.upsample16(route), c16], dim=1))
        _, p8 = self.detect8(torch.cat([self.upsample8(route), c8], dim=1))
        outputs = []
        for p in (p8, p16, p32):
            n, _, h, w = p.shape
            # [N, A·(5 + C), H, W] → [N, A, 5 + C, H, W] (Darknet's layout: prior-major) → [N, A, H, W, 5 + C]
            outputs.append(p.view(n, self.anchors_per_scale, 5 + self.num_classes, h, w).permute(0, 1, 3, 4, 2))
        return outputs

    def forward(self, images: list[Tensor], targets: list[dict[str, Tensor]] | None = None
                ) -> dict[str, Tensor] | list[dict[str, Tensor]]:
        check_image_list(images, model=self, in_chans=3, min_size=self.min_input_size)
        if self.training:  # labels are class indices from 0: objectness, not a class, says "no object"
            check_detection_targets(targets, images, name=self.model_name, num_classes=self.num_classes,
                                    first_label=self.first_label)
        original_sizes = [(int(image.shape[-2]), int(image.shape[-1])) for image in images]
        batch, targets = self.transform(images, targets if self.training else None)
        predictions = self.predict(batch.tensors)
        if self.training:
            return self.loss(predictions, targets)
        detections = self.postprocess(predictions, batch.image_sizes)
        return self.transform.postprocess(detections, batch.image_sizes, original_sizes)

    # --- training -------------------------------------------------------------------------------------------------

    def assign(self, boxes: Tensor) -> tuple[Tensor, Tensor]:
        """Each ground truth ``[G, 4]`` (xyxy pixels) goes to the one prior whose shape overlaps it best (§2.1):
        → (scale index 0…2, prior index within the scale), each ``[G]``."""
        sizes = boxes[:, 2:] - boxes[:, :2]
        best = shape_iou(sizes, self.anchors).argmax(dim=1)  # among all nine: this also picks the scale
        return best // self.anchors_per_scale, best % self.anchors_per_scale

    def loss(self, predictions: list[Tensor], targets: list[dict[str, Tensor]]) -> dict[str, Tensor]:
        """The paper's loss, summed over predictions and averaged over the images:
        squared error on the box coordinates and binary cross-entropy on objectness and on every class, the box and
        class terms only for the predictions assigned to an object, objectness for every prediction except the
        ignored ones (unassigned, but overlapping an object by more than ``ignore_threshold``)."""
        box_loss = predictions[0].new_zeros(())
        objectness_loss = predictions[0].new_zeros(())
        class_loss = predictions[0].new_zeros(())
        for i, target in enumerate(targets):
            boxes, labels = target["boxes"], target["labels"]
            scales, prior_index = self.assign(boxes)
            for scale, (prediction, stride) in enumerate(zip(predictions, STRIDES, strict=True)):
                prediction = prediction[i]  # [A, H, W, 5 + C]
                priors = self.priors(scale)
                num_priors, height, width = prediction.shape[:3]
                objectness_target = torch.zeros(prediction.shape[:3], device=prediction.device)
                # Ignore: the best IoU of each predicted box with any object (a mask: no gradient through it).
                with torch.no_grad():
                    predicted = decode_boxes(prediction, priors, stride).reshape(-1, 4)
                    best_iou = (box_iou(predicted, boxes).amax(dim=1) if len(boxes)
                                else predicted.new_zeros(len(predicted)))
                counts = best_iou.reshape(num_priors, height, width) <= self.ignore_threshold

                mine = scales == scale
                if mine.any():
                    own_boxes, own_labels, a = boxes[mine], labels[mine], prior_index[mine]
                    center = (own_boxes[:, :2] + own_boxes[:, 2:]) / 2 / stride  # in cells
                    size = own_boxes[:, 2:] - own_boxes[:, :2]
                    cx = center[:, 0].floor().long().clamp(0, width - 1)  # the cell the centre falls in
                    cy = center[:, 1].floor().long().clamp(0, height - 1)
                    # Two objects on the same prior of the same cell: the later one is the target.
                    key = (a * height + cy) * width + cx
                    order = torch.arange(len(key), device=key.device)
                    last = torch.full((num_priors * height * width,), -1, device=key.device).scatter_reduce(
                        0, key, order, reduce="amax")
                    keep = last[key] == order
                    own_boxes, own_labels, a, cx, cy = own_boxes[keep], own_labels[keep], a[keep], cx[keep], cy[keep]
                    center, size = center[keep], size[keep]
                    assigned = prediction[a, cy, cx]  # [K, 5 + C]
                    # Targets by inverting b_x = σ(t_x) + c_x (compared after the sigmoid, as Darknet) and
                    # b_w = p_w e^{t_w}: t̂_w = log(b_w / p_w).
                    offset = center - torch.stack((cx, cy), dim=1)
                    log_scale = torch.log(size / priors[a])
                    box_loss = box_loss + (assigned[:, :2].sigmoid() - offset).pow(2).sum()
                    box_loss = box_loss + (assigned[:, 2:4] - log_scale).pow(2).sum()
                    one_hot = F.one_hot(own_labels, self.num_classes).to(assigned.dtype)
                    class_loss = class_loss + F.binary_cross_entropy_with_logits(assigned[:, 5:], one_hot,
                                                                                 reduction="sum")
                    objectness_target[a, cy, cx] = 1.0
                    counts[a, cy, cx] = True  # the assigned prediction always learns its objectness
                objectness_loss = objectness_loss + F.binary_cross_entropy_with_logits(
                    prediction[..., 4][counts], objectness_target[counts], reduction="sum")
        n = len(targets)
        return {"loss_box": box_loss / n, "loss_objectness": objectness_loss / n, "loss_classifier": class_loss / n}

    # --- inference ------------------------------------------------------------------------------------------------

    def postprocess(self, predictions: list[Tensor], image_sizes: list[tuple[int, int]]) -> list[dict[str, Tensor]]:
        """Raw predictions → per image ``boxes`` (in the resized image's pixels), ``labels``, ``scores``: decode,
        score = σ(t_o) · σ(t_class) for every class, keep scores above ``score_threshold``, NMS per class."""
        boxes = torch.cat([decode_boxes(p, self.priors(s), stride).flatten(1, 3)
                           for s, (p, stride) in enumerate(zip(predictions, STRIDES, strict=True))], dim=1)
        logits = torch.cat([p.flatten(1, 3) for p in predictions], dim=1)  # [N, 10647, 5 + C]
        # Pr(object) · Pr(class | object): each class its own logistic classifier, so one box may carry several.
        scores = logits[..., 4:5].sigmoid() * logits[..., 5:].sigmoid()  # [N, 10647, C]
        detections = []
        for image_boxes, image_scores, size in zip(boxes, scores, image_sizes, strict=True):
            flat = image_scores.flatten()  # (box, class) pairs
            candidates = torch.nonzero(flat > self.score_threshold).squeeze(1)
            top = flat[candidates].topk(min(self.candidates_per_image, len(candidates))).indices
            candidates = candidates[top]
            box_index, labels = candidates // self.num_classes, candidates % self.num_classes
            kept_boxes = clip_boxes_to_image(image_boxes[box_index], size)
            kept_scores = flat[candidates]
            keep = batched_nms(kept_boxes, kept_scores, labels, self.nms_threshold)[:self.detections_per_image]
            detections.append({"boxes": kept_boxes[keep], "labels": labels[keep], "scores": kept_scores[keep]})
        return detections


_PAPER = Paper(
    title="YOLOv3: An Incremental Improvement",
    authors="Joseph Redmon, Ali Farhadi",
    year=2018,
    url="https://arxiv.org/abs/1804.02767",
)


# gmacs: the dense network at 416×416 (backbone and the three detection blocks, measured on the meta device up to
# the score threshold): 32.932 GMACs, i.e. 65.86 billion operations at 2 per MAC, the figure Darknet's YOLO page
# (pjreddie.com/darknet/yolo) lists for YOLOv3-416.
@register(ModelCard(
    name="yolov3",
    architecture="YOLOv3",
    task="object-detection",
    paper=_PAPER,
    innovations=(
        "b_x = sigmoid(t_x) + c_x, b_w = p_w exp(t_w): boxes relative to the cell and to k-means box priors",
        "objectness by logistic regression: one prior per object, overlaps above 0.5 ignored",
        "independent logistic classifiers (binary cross-entropy) instead of a softmax",
        "predictions at three scales: upsampled deep features concatenated with finer backbone maps",
        "Darknet-53 backbone: 3x3/1x1 convolutions with residual shortcuts",
    ),
    input=InputSpec(kind="image-list", shape=(3, 416, 416), min_size=YOLOv3.min_input_size),
    params=61_949_149,
    params_source="ultralytics/yolov3 model summary of yolov3.cfg (61,949,149); the cfg's layers counted in the "
                  "module docstring: 40,584,928 (Darknet-53 without its classifier) + 21,364,221 (head)",
    reference="paper",
    gmacs=32.932,
    canonical=True,
    notes="labels are class indices 0 .. num_classes - 1; every image is resized to 416x416. Predictions that "
          "overlap an object by more than 0.5 get no objectness loss, the paper's threshold (§2.1); the released "
          "yolov3.cfg uses ignore_thresh = .7, which ignore_threshold=0.7 reproduces.",
))
def yolov3(**kwargs: Any) -> YOLOv3:
    """YOLOv3 at 416×416: Darknet-53, the nine COCO priors, 80 classes."""
    return YOLOv3(**kwargs)


if __name__ == "__main__":
    from paperzoo.cli import main

    main(["run", "yolov3"])
