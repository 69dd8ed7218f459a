r"""RetinaNet.

Paper: "Focal Loss for Dense Object Detection", Tsung-Yi Lin, Priya Goyal, Ross Girshick, Kaiming He, Piotr
Dollár, ICCV 2017. https://arxiv.org/abs/1708.02002

Why were one-stage detectors, which classify a dense grid of ~100k anchors in one pass, less accurate than
two-stage ones (Faster R-CNN), which first cut the candidates down to ~2k proposals? The paper's answer is the
extreme imbalance between foreground and background during training: almost every anchor is an easy negative,
and although each contributes a small cross-entropy, together they dominate the loss and the gradient. Two-stage
detectors escape it through the proposal stage and 1:3 sampling; RetinaNet keeps every anchor and reshapes the
loss instead:

* Focal loss (§3, eq. 5): with $p_t$ the probability the model gives the true class of an anchor (p for a
  positive, 1 − p for a negative),

  $$\text{FL}(p_t) = -\alpha_t (1 - p_t)^\gamma \log(p_t).$$

  The modulating factor $(1 - p_t)^\gamma$ shrinks the loss of well-classified anchors ($\gamma = 2$: an anchor
  at $p_t = 0.9$ weighs 100× less than in cross-entropy, at 0.968 ~1000× less), so training concentrates on the
  hard ones; $\alpha_t$ (α = 0.25 for positives, 0.75 for negatives)
  balances the two. The loss of an image is the sum over all anchors (except those ignored by the matching),
  normalised by the number of anchors assigned to a ground-truth box (not by the number of anchors: most
  contribute nearly nothing).
* Prior-probability initialisation (§3.3): the final classification layer starts with bias
  $b = -\log((1 - \pi)/\pi)$, $\pi = 0.01$, so that every anchor is first predicted as foreground with confidence ~0.01.
  With the usual b = 0 (p = 0.5), the loss of the many background anchors would be huge in the first iterations
  and destabilise training.
* The network (§4, Fig. 3) is deliberately plain: a ResNet with a Feature Pyramid Network giving levels P3–P7
  (P6, P7 by stride-2 3×3 convolutions, so that large objects have a coarse level), A = 9 anchors per position
  (areas 32²…512² on P3…P7, each at 3 scales $\{2^0, 2^{1/3}, 2^{2/3}\}$ and 3 aspect ratios {1:2, 1:1, 2:1}), and
  two small fully convolutional subnets shared by all levels: a classification subnet (four 3×3 convolutions of
  256 channels with ReLU, then a 3×3 convolution to K·A sigmoid outputs, one binary classifier per class and
  anchor) and a box subnet (the same, with separate weights, ending in 4·A class-agnostic box offsets).
* Matching (§4): an anchor is positive for the ground truth it overlaps with IoU ≥ 0.5, negative below 0.4,
  ignored in between.
* Inference (§4): per level, the at most 1000 top-scoring predictions above confidence 0.05 are decoded; the
  detections of all levels are merged and non-maximum suppression (IoU 0.5) runs per class.

Data flow of ``retinanet_resnet50_fpn`` on one 800×800 image (the canonical input)::

    images: list of [3, H_i, W_i] in [0, 1]
      DetectionTransform: normalise, resize (shorter side 800, longer ≤ 1333), pad to ×32   → [N, 3, 800, 800]
      ResNet-50 (create_model("resnet50", features_only=True)):
          C3 [N, 512, 100, 100]   C4 [N, 1024, 50, 50]   C5 [N, 2048, 25, 25]
      FPN (top-down + lateral 1×1, 3×3 outputs; P6 = 3×3/2 conv, P7 = 3×3/2 conv of ReLU(P6)):
          P3 [N, 256, 100, 100]  P4 [N, 256, 50, 50]  P5 [N, 256, 25, 25]  P6 [N, 256, 13, 13]  P7 [N, 256, 7, 7]
      on each level, the same weights:
          classification subnet: 4 × (3×3 conv 256 → ReLU) → 3×3 conv K·A  [N, K·A, h, w] → [N, h·w·A, K]
          box subnet:            4 × (3×3 conv 256 → ReLU) → 3×3 conv 4·A  [N, 4·A, h, w] → [N, h·w·A, 4]
      all levels concatenated: class logits [N, 120087, K] and box offsets [N, 120087, 4], one row per anchor
          (13,343 positions × A = 9 anchors)
      training:  match anchors to ground truth (IoU ≥ 0.5 / < 0.4) → focal loss / #positives,
                 L1 on (t_x, t_y, t_w, t_h) / #positives          → {"classification", "bbox_regression"}
      inference: per level sigmoid > 0.05, top 1000 → decode, clip → all levels → NMS 0.5 per class → top 300
                 → boxes mapped back to each input image's pixels → [{"boxes", "labels", "scores"}] per image

Deviations from the paper, all torchvision's (``retinanet_resnet50_fpn``), kept so that its weights load and its
outputs and losses match:

* P6 is computed from P5, not from C5 as the paper says (§4, "P6 is obtained via a 3×3 stride-2 conv on C5"):
  torchvision's v1 builds ``LastLevelP6P7(256, 256)``, which takes P5 when the input and output widths agree
  (its v2, ``retinanet_resnet50_fpn_v2``, takes C5). ``p6_input="c5"`` builds the paper's version (P6's
  convolution then has 2048 input channels: 4,129,024 more parameters).
* The box regression loss is the L1 loss, torchvision's choice, where the paper uses the smooth L1 loss of Fast
  R-CNN (Detectron: β = 0.11); ``box_loss="smooth_l1"`` uses it with β = 1/9.
* The classification loss is normalised per image by that image's positives (at least 1) and the images are
  averaged, as the paper's per-image description; Detectron divides the batch's sum by the batch's positives.
* Matching keeps low-quality matches (``allow_low_quality_matches``): each ground truth also claims the anchors
  of highest IoU with it, even below 0.5, so that no object goes without a positive anchor; the paper does not.
* ``num_classes`` counts torchvision's 91 COCO category ids, 0 included, which is never a label ("background" in
  torchvision's convention): the classification subnet has 91·9 outputs, where the paper's K = 80 gives 80·9.
  Labels are in [1, num_classes).
* The anchor sizes are truncated to whole pixels before use ($32 \cdot 2^{1/3} \to 40$, $32 \cdot 2^{2/3} \to 50$), and
  each anchor is rounded and placed at the top-left corner of its stride cell (see ``anchors.py``).
* Up to 300 detections per image are returned (torchvision); the paper does not say how many (COCO evaluates
  100).
* Without pretrained weights (none can be loaded here), torchvision builds the backbone with ordinary, trainable
  BatchNorm and trains all of it (``trainable_backbone_layers=5``), and so does the default here: its parameter
  count, 34,068,119, is torchvision's ``retinanet_resnet50_fpn(weights=None, weights_backbone=None)``. The paper
  fine-tunes an ImageNet-pretrained ResNet with frozen BatchNorm statistics, as torchvision does with pretrained
  weights: ``frozen_batchnorm=True, trainable_backbone_layers=3`` builds that configuration (34,014,999
  parameters: the 53,120 BatchNorm scales and shifts become constants).

Initialisation is the paper's and torchvision's: the subnets' convolutions N(0, 0.01²) with zero bias, except
the classification output's bias, the prior $-\log((1 - \pi)/\pi)$; the FPN Kaiming-uniform (a = 1); the ResNet as its
classifier file.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.ops import batched_nms, box_iou, clip_boxes_to_image

from paperzoo.layers import ClassLayersMixin, ConvNormAct, check_detection_targets, check_image_list
from paperzoo.models.detection.anchors import AnchorGenerator
from paperzoo.models.detection.backbone import ResNetFPNBackbone
from paperzoo.models.detection.boxes import BoxCoder, Matcher
from paperzoo.models.detection.fpn import LastLevelP6P7
from paperzoo.models.detection.transform import DetectionTransform
from paperzoo.registry import InputSpec, ModelCard, Paper, register


def focal_loss(logits: Tensor, targets: Tensor, alpha: float = 0.25, gamma: float = 2.0,
               reduction: str = "sum") -> Tensor:
    """The focal loss (eq. 5) of independent binary classifiers: ``logits`` and 0/1 ``targets`` of the same shape.

    ``alpha`` < 0 leaves out the α_t weighting; ``reduction`` is "none", "mean" or "sum".
    """
    p = torch.sigmoid(logits)
    # log(p_t), computed from the logits for stability: the cross-entropy CE(p_t) = −log(p_t).
    cross_entropy = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    p_t = p * targets + (1 - p) * (1 - targets)  # p for a positive, 1 − p for a negative (eq. 2)
    loss = cross_entropy * (1 - p_t) ** gamma  # FL(p_t) = −(1 − p_t)^γ log(p_t)
    if alpha >= 0:
        alpha_t = alpha * targets + (1 - alpha) * (1 - targets)  # α for a positive, 1 − α for a negative
        loss = alpha_t * loss  # FL(p_t) = −α_t (1 − p_t)^γ log(p_t)
    if reduction == "sum":
        return loss.sum()
    if reduction == "mean":
        return loss.mean()
    if reduction != "none":
        raise ValueError(f"reduction must be 'none', 'mean' or 'sum', got {reduction!r}")
    return loss


def prior_bias(prior_probability: float) -> float:
    """The bias b with sigmoid(b) = π: b = −log((1 − π)/π) (§3.3); −4.595 for π = 0.01."""
    return -math.log((1 - prior_probability) / prior_probability)


def _flatten_per_anchor(output: Tensor, values_per_anchor: int) -> Tensor:
    """A subnet's map ``[N, A·V, h, w]`` → ``[N, h·w·A, V]``: one row per anchor, in the anchor generator's order
    (position-major, then the A anchors of the position)."""
    n, _, h, w = output.shape
    output = output.view(n, -1, values_per_anchor, h, w)  # [N, A, V, h, w]
    return output.permute(0, 3, 4, 1, 2).reshape(n, -1, values_per_anchor)  # [N, h, w, A, V] → [N, h·w·A, V]


class ClassificationSubnet(nn.Module):
    """The classification subnet (§4, Fig. 3c): four 3×3 convolutions with ReLU, then a 3×3 convolution to K·A
    logits, one sigmoid classifier per class and anchor. Its weights are shared by every pyramid level.

    Args:
        in_channels: C, the pyramid's width (256); every convolution of the tower keeps it.
        num_anchors: A, anchors per position (9).
        num_classes: K.
        num_convs: the depth of the tower (4).
        prior_probability: π, the foreground confidence every anchor starts with (0.01).
    """

    def __init__(self, in_channels: int, num_anchors: int, num_classes: int, num_convs: int = 4,
                 prior_probability: float = 0.01) -> None:
        super().__init__()
        self.num_anchors, self.prior_probability = num_anchors, prior_probability
        self.tower = nn.Sequential(*(ConvNormAct(in_channels, in_channels, 3, norm_layer=None)
                                     for _ in range(num_convs)))
        self.class_logits = nn.Conv2d(in_channels, num_anchors * num_classes, kernel_size=3, padding=1)
        for conv in (block.conv for block in self.tower):
            nn.init.normal_(conv.weight, std=0.01)
            nn.init.zeros_(conv.bias)
        self._init_class_logits(self.class_logits)

    @property
    def num_classes(self) -> int:
        return self.class_logits.out_channels // self.num_anchors

    def _init_class_logits(self, conv: nn.Conv2d) -> None:
        nn.init.normal_(conv.weight, std=0.01)
        # The prior (§3.3): sigmoid(b) = π at the start, so the flood of background anchors begins with a small loss.
        nn.init.constant_(conv.bias, prior_bias(self.prior_probability))

    def new_class_logits(self, num_classes: int) -> nn.Conv2d:
        """The class predictor for ``num_classes`` classes, initialised as at construction (``reset_classifier``)."""
        conv = nn.Conv2d(self.class_logits.in_channels, self.num_anchors * num_classes, kernel_size=3, padding=1)
        self._init_class_logits(conv)
        return conv

    def forward(self, levels: list[Tensor]) -> Tensor:
        """Pyramid levels ``[N, C, h_l, w_l]`` → logits ``[N, Σ h_l·w_l·A, K]``, the levels concatenated."""
        return torch.cat([_flatten_per_anchor(self.class_logits(self.tower(level)), self.num_classes)
                          for level in levels], dim=1)


class BoxSubnet(nn.Module):
    """The box regression subnet (§4, Fig. 3d): the classification subnet's structure with its own weights, ending
    in 4·A outputs, the class-agnostic offsets (t_x, t_y, t_w, t_h) of each anchor to the nearby object.

    Args:
        in_channels: C, the pyramid's width.
        num_anchors: A.
        num_convs: the depth of the tower (4).
    """

    def __init__(self, in_channels: int, num_anchors: int, num_convs: int = 4) -> None:
        super().__init__()
        self.tower = nn.Sequential(*(ConvNormAct(in_channels, in_channels, 3, norm_layer=None)
                                     for _ in range(num_convs)))
        self.box_deltas = nn.Conv2d(in_channels, num_anchors * 4, kernel_size=3, padding=1)
        for conv in [*(block.conv for block in self.tower), self.box_deltas]:
            nn.init.normal_(conv.weight, std=0.01)
            nn.init.zeros_(conv.bias)

    def forward(self, levels: list[Tensor]) -> Tensor:
        """Pyramid levels → box offsets ``[N, Σ h_l·w_l·A, 4]``."""
        return torch.cat([_flatten_per_anchor(self.box_deltas(self.tower(level)), 4) for level in levels], dim=1)


def anchor_sizes_per_level(base_sizes: Sequence[int], scales_per_octave: int = 3) -> tuple[tuple[int, ...], ...]:
    """Per level, the anchor sizes ``base · 2^(i / scales_per_octave)``, i = 0…scales − 1 (§4: 32·{2^0, 2^(1/3),
    2^(2/3)} on P3), truncated to whole pixels as torchvision does."""
    return tuple(tuple(int(base * 2 ** (i / scales_per_octave)) for i in range(scales_per_octave))
                 for base in base_sizes)


class RetinaNet(ClassLayersMixin, nn.Module):
    """RetinaNet: a ResNet-FPN backbone (P3–P7), a classification and a box subnet shared across levels, the focal
    loss, and the one-stage inference of the paper. torchvision's detection interface: ``model(images, targets)``
    returns ``{"classification", "bbox_regression"}`` losses in training mode, and one dict of ``boxes`` (xyxy, in
    the input image's pixels), ``labels`` and ``scores`` per image in eval mode.

    Args:
        num_classes: K, the sigmoid classifiers per anchor (91: torchvision's COCO ids, 0 unused); labels are in
            [1, num_classes).
        backbone: the registry name of the ResNet ("resnet50"), put under a :class:`ResNetFPNBackbone` with P6 and
            P7; or a module that maps the padded batch to the five levels P3…P7 (an ``OrderedDict`` of
            ``[N, fpn_channels, h_l, w_l]``) and has ``out_channels`` (torchvision's interface; the arguments
            ``trainable_backbone_layers``, ``frozen_batchnorm`` and ``p6_input`` then do not apply).
        fpn_channels: C, the width of the pyramid and of both subnets (256).
        trainable_backbone_layers: how many of conv5_x, conv4_x, conv3_x, conv2_x, conv1 train (5: all, as
            torchvision without pretrained weights; 3 with pretrained weights).
        frozen_batchnorm: freeze the backbone's BatchNorm (the paper's fine-tuning recipe); ``False`` keeps
            trainable BatchNorm as torchvision without pretrained weights.
        p6_input: "p5" (torchvision's v1) or "c5" (the paper): what P6's stride-2 convolution reads.
        anchor_base_sizes: the anchor size on P3…P7 (32…512: areas 32²…512²).
        anchor_scales_per_octave: sizes per level, 2^(i/n) apart (3).
        anchor_aspect_ratios: height / width of the anchors (1:2, 1:1, 2:1).
        num_subnet_convs: the depth of both subnets' towers (4).
        prior_probability: π of the classification bias initialisation (0.01).
        focal_alpha, focal_gamma: α and γ of the focal loss (0.25, 2).
        box_loss: "l1" (torchvision) or "smooth_l1" (the paper; β = 1/9).
        fg_iou_thresh, bg_iou_thresh: anchors with IoU ≥ 0.5 are positives, < 0.4 negatives, the rest ignored.
        min_size, max_size: the shorter side after resizing (800), and the longest the longer side may become
            (1333).
        image_mean, image_std: the normalisation (ImageNet's).
        score_thresh: the least confidence a detection needs (0.05).
        topk_candidates: the most predictions decoded per level (1000).
        nms_thresh: the IoU above which NMS suppresses the lower-scored box of the same class (0.5).
        detections_per_img: the most detections returned per image (300).
    """

    # The transform resizes every image to min_size before the network sees it, so any size works (torchvision's
    # meta lists (1, 1)); a 1×1 image becomes 800×800.
    min_input_size = 1
    model_name = "retinanet_resnet50_fpn"
    class_layer_names = ("classification_subnet.class_logits",)  # reset_classifier rebuilds it; the towers stay
    min_num_classes = 2  # class 0 is never a label (torchvision's COCO ids): at least one object class besides

    def __init__(self, num_classes: int = 91, backbone: str | nn.Module = "resnet50", fpn_channels: int = 256,
                 trainable_backbone_layers: int = 5, frozen_batchnorm: bool = False, p6_input: str = "p5",
                 anchor_base_sizes: Sequence[int] = (32, 64, 128, 256, 512), anchor_scales_per_octave: int = 3,
                 anchor_aspect_ratios: Sequence[float] = (0.5, 1.0, 2.0), num_subnet_convs: int = 4,
                 prior_probability: float = 0.01, focal_alpha: float = 0.25, focal_gamma: float = 2.0,
                 box_loss: str = "l1", fg_iou_thresh: float = 0.5, bg_iou_thresh: float = 0.4,
                 min_size: int | tuple[int, ...] = 800, max_size: int = 1333,
                 image_mean: Sequence[float] = (0.485, 0.456, 0.406),
                 image_std: Sequence[float] = (0.229, 0.224, 0.225), score_thresh: float = 0.05,
                 topk_candidates: int = 1000, nms_thresh: float = 0.5, detections_per_img: int = 300) -> None:
        super().__init__()
        if p6_input not in ("p5", "c5"):
            raise ValueError(f"p6_input must be 'p5' (torchvision) or 'c5' (the paper), got {p6_input!r}")
        if box_loss not in ("l1", "smooth_l1"):
            raise ValueError(f"box_loss must be 'l1' or 'smooth_l1', got {box_loss!r}")
        if len(anchor_base_sizes) != 5:
            raise ValueError(f"anchor_base_sizes needs one size per level P3…P7, got {len(anchor_base_sizes)}")
        self.num_classes = num_classes
        self.transform = DetectionTransform(min_size, max_size, image_mean, image_std, size_divisible=32)
        # C3–C5 (torchvision's layers 2–4; C2 is left out: it would add many anchors for little gain, §4).
        if isinstance(backbone, str):
            self.backbone = ResNetFPNBackbone(backbone, trainable_layers=trainable_backbone_layers,
                                              returned_layers=(2, 3, 4), out_channels=fpn_channels,
                                              extra_blocks=nn.Identity(), frozen_batchnorm=frozen_batchnorm)
            c5_channels = self.backbone.body.feature_info[-1].channels
            extra = LastLevelP6P7(fpn_channels if p6_input == "p5" else c5_channels, fpn_channels)
            extra.use_p5 = p6_input == "p5"  # said explicitly: a C5 as wide as the pyramid would read as P5
            self.backbone.fpn.extra_blocks = extra
        else:  # a ready pyramid (torchvision's interface): it must return P3…P7, fpn_channels wide
            if getattr(backbone, "out_channels", None) != fpn_channels:
                raise ValueError(f"a backbone module needs out_channels == fpn_channels ({fpn_channels}), got "
                                 f"{getattr(backbone, 'out_channels', None)}")
            self.backbone = backbone
        self.anchor_generator = AnchorGenerator(
            anchor_sizes_per_level(anchor_base_sizes, anchor_scales_per_octave),
            (tuple(anchor_aspect_ratios),) * len(anchor_base_sizes))
        num_anchors = self.anchor_generator.num_anchors_per_location()[0]  # A = 3 scales × 3 ratios = 9
        self.classification_subnet = ClassificationSubnet(fpn_channels, num_anchors, num_classes, num_subnet_convs,
                                                          prior_probability)
        self.box_subnet = BoxSubnet(fpn_channels, num_anchors, num_subnet_convs)
        self.box_coder = BoxCoder((1.0, 1.0, 1.0, 1.0))
        self.matcher = Matcher(fg_iou_thresh, bg_iou_thresh, allow_low_quality_matches=True)
        self.focal_alpha, self.focal_gamma, self.box_loss = focal_alpha, focal_gamma, box_loss
        self.score_thresh, self.topk_candidates = score_thresh, topk_candidates
        self.nms_thresh, self.detections_per_img = nms_thresh, detections_per_img

    def new_class_layer(self, name: str, layer: nn.Module, num_classes: int) -> nn.Module:
        return self.classification_subnet.new_class_logits(num_classes)

    def forward(self, images: list[Tensor], targets: list[dict[str, Tensor]] | None = None
                ) -> dict[str, Tensor] | list[dict[str, Tensor]]:
        """``images``: a list of ``[3, H_i, W_i]`` float tensors in [0, 1]; ``targets`` (training): per image
        ``boxes`` ``[K_i, 4]`` (xyxy, pixels) and ``labels`` ``[K_i]``. Returns the losses in training mode, the
        detections per image in eval mode."""
        check_image_list(images, model=self, min_size=self.min_input_size)
        if self.training:
            check_detection_targets(targets, images, name=self.model_name, num_classes=self.num_classes)
        original_sizes = [(int(image.shape[-2]), int(image.shape[-1])) for image in images]
        batch, targets = self.transform(images, targets)
        levels = list(self.backbone(batch.tensors).values())  # P3 … P7, each [N, C, h_l, w_l]
        class_logits = self.classification_subnet(levels)  # [N, A_total, K]
        box_deltas = self.box_subnet(levels)  # [N, A_total, 4]
        anchors = self.anchor_generator(batch, levels)  # per image [A_total, 4], the same rows
        if self.training:
            return self.loss(class_logits, box_deltas, anchors, targets)
        anchors_per_level = [level.shape[-2] * level.shape[-1] * self.anchor_generator.num_anchors_per_location()[0]
                             for level in levels]
        detections = self.detect(class_logits, box_deltas, anchors, anchors_per_level, batch.image_sizes)
        return self.transform.postprocess(detections, batch.image_sizes, original_sizes)

    def match(self, anchors: Tensor, target: dict[str, Tensor]) -> Tensor:
        """Each anchor's ground truth (its index) or -1 (negative, IoU < 0.4) or -2 (ignored, 0.4 ≤ IoU < 0.5)."""
        if len(target["boxes"]) == 0:  # an image without objects: every anchor is a negative
            return torch.full((len(anchors),), Matcher.BELOW_LOW_THRESHOLD, dtype=torch.int64, device=anchors.device)
        return self.matcher(box_iou(target["boxes"], anchors))

    def loss(self, class_logits: Tensor, box_deltas: Tensor, anchors: list[Tensor],
             targets: list[dict[str, Tensor]]) -> dict[str, Tensor]:
        """The focal loss of every anchor that is not ignored and the box loss of the positives, each normalised
        by the image's number of positives and averaged over the images."""
        classification, regression = [], []
        for logits, deltas, anchors_i, target in zip(class_logits, box_deltas, anchors, targets, strict=True):
            matched = self.match(anchors_i, target)  # [A_total]
            positive = matched >= 0
            num_positive = max(1, int(positive.sum()))
            # One-hot targets [A_total, K]: a positive anchor is 1 for its object's class, everything else 0.
            one_hot = torch.zeros_like(logits)
            one_hot[positive, target["labels"][matched[positive]]] = 1.0
            counted = matched != Matcher.BETWEEN_THRESHOLDS
            classification.append(focal_loss(logits[counted], one_hot[counted], self.focal_alpha, self.focal_gamma)
                                  / num_positive)
            # Box offsets only where there is an object: (t_x, t_y, t_w, t_h) of its box relative to the anchor.
            positive_idx = torch.where(positive)[0]
            codes = self.box_coder.encode_single(target["boxes"][matched[positive_idx]], anchors_i[positive_idx])
            if self.box_loss == "l1":
                box_loss = F.l1_loss(deltas[positive_idx], codes, reduction="sum")
            else:
                box_loss = F.smooth_l1_loss(deltas[positive_idx], codes, beta=1 / 9, reduction="sum")
            regression.append(box_loss / num_positive)
        return {"classification": torch.stack(classification).sum() / len(targets),
                "bbox_regression": torch.stack(regression).sum() / len(targets)}

    def detect(self, class_logits: Tensor, box_deltas: Tensor, anchors: list[Tensor], anchors_per_level: list[int],
               image_sizes: list[tuple[int, int]]) -> list[dict[str, Tensor]]:
        """Per image: per level the top-scoring (anchor, class) pairs above the threshold, decoded and clipped;
        then NMS per class over all levels."""
        detections = []
        for logits, deltas, anchors_i, size in zip(class_logits, box_deltas, anchors, image_sizes, strict=True):
            boxes, scores, labels = [], [], []
            for level_logits, level_deltas, level_anchors in zip(logits.split(anchors_per_level),
                                                                 deltas.split(anchors_per_level),
                                                                 anchors_i.split(anchors_per_level), strict=True):
                level_scores = torch.sigmoid(level_logits).flatten()  # [A_l·K]: every (anchor, class) pair
                candidates = torch.where(level_scores > self.score_thresh)[0]
                level_scores = level_scores[candidates]
                level_scores, order = level_scores.topk(min(self.topk_candidates, len(candidates)))
                candidates = candidates[order]
                anchor_idx = torch.div(candidates, self.num_classes, rounding_mode="floor")
                level_boxes = self.box_coder.decode_single(level_deltas[anchor_idx], level_anchors[anchor_idx])
                boxes.append(clip_boxes_to_image(level_boxes, size))
                scores.append(level_scores)
                labels.append(candidates % self.num_classes)
            boxes, scores, labels = torch.cat(boxes), torch.cat(scores), torch.cat(labels)
            keep = batched_nms(boxes, scores, labels, self.nms_thresh)[: self.detections_per_img]
            detections.append({"boxes": boxes[keep], "scores": scores[keep], "labels": labels[keep]})
        return detections


_PAPER = Paper(title="Focal Loss for Dense Object Detection",
               authors="Tsung-Yi Lin, Priya Goyal, Ross Girshick, Kaiming He, Piotr Dollár", year=2017,
               url="https://arxiv.org/abs/1708.02002")

_INNOVATIONS = (
    "focal loss FL(p_t) = -α_t (1 - p_t)^γ log p_t (α = 0.25, γ = 2): easy negatives stop dominating a dense detector",
    "one stage over ~100k anchors: FPN levels P3-P7, 9 anchors per position (3 scales × 3 aspect ratios)",
    "classification and box subnets (four 3×3 convs each) shared across pyramid levels, sigmoid per class",
    "prior-probability bias init b = -log((1 - π)/π), π = 0.01, for a stable start",
    "loss normalised by the number of positive anchors; IoU ≥ 0.5 positive, < 0.4 negative, in between ignored",
)


@register(ModelCard(
    name="retinanet_resnet50_fpn",
    architecture="RetinaNet (ResNet-50-FPN)",
    task="object-detection",
    paper=_PAPER,
    innovations=_INNOVATIONS,
    input=InputSpec(kind="image-list", shape=(3, 800, 800), min_size=RetinaNet.min_input_size),
    params=34_068_119,
    params_source="torchvision.models.detection.retinanet_resnet50_fpn(weights=None, weights_backbone=None), "
                  "counted: trainable BatchNorm, as torchvision builds it without pretrained weights; "
                  "frozen_batchnorm=True gives torchvision's pretrained configuration, 34,014,999 "
                  "(-53,120 BatchNorm scales and shifts)",
    reference="torchvision.models.detection.retinanet_resnet50_fpn(weights_backbone=None)",
    gmacs=151.540,
    canonical=True,
    notes="P6 from P5 as torchvision's v1 (p6_input='c5': the paper's C5); L1 box loss as torchvision.",
))
def retinanet_resnet50_fpn(**kwargs: Any) -> RetinaNet:
    """RetinaNet with a ResNet-50-FPN backbone, torchvision's ``retinanet_resnet50_fpn``."""
    return RetinaNet(backbone="resnet50", **kwargs)


if __name__ == "__main__":
    from paperzoo.cli import main

    main(["run", "retinanet_resnet50_fpn"])
