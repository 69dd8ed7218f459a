"""The Region Proposal Network of Faster R-CNN, shared by Faster R-CNN and Mask R-CNN.

"Faster R-CNN: Towards Real-Time Object Detection with Region Proposal Networks", Shaoqing Ren, Kaiming He,
Ross Girshick, Jian Sun, 2015, https://arxiv.org/abs/1506.01497, §3.1; with a Feature Pyramid Network, "Feature
Pyramid Networks for Object Detection", Tsung-Yi Lin et al., 2017, https://arxiv.org/abs/1612.03144, §4.1.

A Region Proposal Network (RPN) "takes an image (of any size) as input and outputs a set of rectangular object
proposals, each with an objectness score" (§3.1). It is a small fully convolutional network slid over the
backbone's feature map: a 3×3 convolution (the "intermediate layer") followed by two sibling 1×1 convolutions,
``cls`` (here: one objectness logit per anchor, a sigmoid instead of the paper's two-way softmax) and ``reg``
(four box deltas per anchor, the parametrisation of eq. 2 in ``boxes.py``). At each position k anchors of
several scales and aspect ratios (``anchors.py``) are the references the deltas move. Because the RPN shares the
backbone's features with the detector (§3.2), proposals cost almost nothing. With an FPN the same head runs on
every pyramid level, each level with anchors of one size (32² on P2 … 512² on P6) and three aspect ratios.

Training (§3.1.2): an anchor is positive if its IoU with some ground-truth box is ≥ 0.7, or if it is the anchor
of highest IoU with a ground truth (so that no object goes unmatched); negative below 0.3; the rest do not count.
Each image contributes a mini-batch of 256 anchors with up to half positives (``BalancedSampler``). The loss is
eq. 1::

    L({p_i}, {t_i}) = 1/N_cls Σ_i L_cls(p_i, p_i*) + λ 1/N_reg Σ_i p_i* L_reg(t_i, t_i*)

with L_cls the binary log loss on objectness, L_reg the smooth L1 loss of Fast R-CNN on the deltas of positive
anchors only (p_i* = 1), N_cls the mini-batch size and (here) N_reg = N_cls with λ = 1.

Inference (§3.3): decode every anchor's deltas into a box, keep the top ``pre_nms_top_n`` by objectness on each
pyramid level, clip to the image, drop tiny boxes, suppress overlaps with NMS at IoU 0.7 (per level: a level's
boxes compete only among themselves), and keep the ``post_nms_top_n`` best as the proposals::

    P2…P6 [N, d, h_l, w_l] ─ 3×3 conv, ReLU ─┬─ 1×1 → objectness [N, k, h_l, w_l]     (k = 3 anchors per place)
                                              └─ 1×1 → deltas     [N, 4k, h_l, w_l]
       anchors [Σ h_l·w_l·k, 4] + deltas → boxes ─ top-k per level ─ clip, NMS 0.7 ─ top-n → proposals [≤ n, 4]

Deviations: the paper's ``cls`` layer has two outputs per anchor (object, not object) under a softmax; this one has
one logit under a sigmoid (equivalent, half the weights), as Detectron and torchvision do. The paper normalises
the box term by the number of anchor locations (~2400) with λ = 10; here it is divided by the mini-batch size
(λ = 1), as Detectron and torchvision do. The smooth L1 has β = 1/9 (Detectron's), not 1. NMS runs per pyramid
level (torchvision's choice), and the top-k before NMS is per level (FPN §4.1's choice). The order of operations
and of random draws is torchvision's ``RegionProposalNetwork``'s, so that converted weights give the same
proposals and the same seed the same losses.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.ops import batched_nms, box_iou, clip_boxes_to_image, remove_small_boxes

from paperzoo.models.detection.anchors import AnchorGenerator
from paperzoo.models.detection.boxes import BalancedSampler, BoxCoder, Matcher
from paperzoo.models.detection.transform import ImageBatch


class RPNHead(nn.Module):
    """The small network slid over every pyramid level: a 3×3 "intermediate layer" with ReLU, then the sibling
    1×1 ``objectness`` (cls) and ``anchor_deltas`` (reg) layers. Weights N(0, 0.01²), zero biases (§3.1.3).

    Args:
        in_channels: d, the width of the feature maps (256 with an FPN).
        num_anchors: k, anchors per position.
    """

    def __init__(self, in_channels: int, num_anchors: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, in_channels, kernel_size=3, padding=1)
        self.objectness = nn.Conv2d(in_channels, num_anchors, kernel_size=1)
        self.anchor_deltas = nn.Conv2d(in_channels, num_anchors * 4, kernel_size=1)
        for conv in (self.conv, self.objectness, self.anchor_deltas):
            nn.init.normal_(conv.weight, std=0.01)
            nn.init.zeros_(conv.bias)

    def forward(self, features: list[Tensor]) -> tuple[list[Tensor], list[Tensor]]:
        """Per level ``[N, d, h, w]`` → objectness logits ``[N, k, h, w]`` and deltas ``[N, 4k, h, w]``."""
        objectness, deltas = [], []
        for feature in features:
            hidden = F.relu(self.conv(feature))
            objectness.append(self.objectness(hidden))
            deltas.append(self.anchor_deltas(hidden))
        return objectness, deltas


def flatten_per_anchor(maps: list[Tensor], values_per_anchor: int) -> Tensor:
    """Per level ``[N, k·C, h, w]`` → ``[N, Σ h·w·k, C]``, ordered level, row, column, anchor: the order in which
    :class:`AnchorGenerator` lists the anchors, so that row i of the result belongs to anchor i."""
    flat = []
    for layer in maps:
        n, _, h, w = layer.shape
        layer = layer.view(n, -1, values_per_anchor, h, w)  # [N, k, C, h, w]
        flat.append(layer.permute(0, 3, 4, 1, 2).reshape(n, -1, values_per_anchor))  # [N, h·w·k, C]
    return torch.cat(flat, dim=1)


class RegionProposalNetwork(nn.Module):
    """Anchors, the RPN head, proposal selection and the RPN loss (eq. 1).

    Args:
        in_channels: d, the width of the pyramid levels.
        anchor_sizes: per level, the anchor sizes (square roots of the areas) in pixels.
        aspect_ratios: per level, the anchors' height / width ratios.
        fg_iou_thresh, bg_iou_thresh: IoU at or above which an anchor is positive (0.7), below which negative (0.3).
        batch_size_per_image, positive_fraction: anchors sampled per image for the loss (256) and the largest share
            of positives among them (0.5).
        pre_nms_top_n_train, pre_nms_top_n_test: anchors kept per level, by objectness, before NMS (2000, 1000).
        post_nms_top_n_train, post_nms_top_n_test: proposals kept per image after NMS (2000, 1000).
        nms_thresh: the IoU above which NMS suppresses the lower-scored of two proposals (0.7).
        score_thresh: the smallest objectness probability a proposal may have (0: none dropped).
    """

    min_box_size = 1e-3  # proposals narrower or lower than this (in pixels) are dropped

    def __init__(self, in_channels: int,
                 anchor_sizes: tuple[tuple[int, ...], ...] = ((32,), (64,), (128,), (256,), (512,)),
                 aspect_ratios: tuple[tuple[float, ...], ...] = ((0.5, 1.0, 2.0),) * 5,
                 fg_iou_thresh: float = 0.7, bg_iou_thresh: float = 0.3, batch_size_per_image: int = 256,
                 positive_fraction: float = 0.5, pre_nms_top_n_train: int = 2000, pre_nms_top_n_test: int = 1000,
                 post_nms_top_n_train: int = 2000, post_nms_top_n_test: int = 1000, nms_thresh: float = 0.7,
                 score_thresh: float = 0.0) -> None:
        super().__init__()
        self.anchor_generator = AnchorGenerator(anchor_sizes, aspect_ratios)
        num_anchors = set(self.anchor_generator.num_anchors_per_location())
        if len(num_anchors) != 1:
            raise ValueError(f"one RPN head serves every level, so every level needs as many anchors; got "
                             f"{self.anchor_generator.num_anchors_per_location()}")
        self.head = RPNHead(in_channels, num_anchors.pop())
        self.box_coder = BoxCoder(weights=(1.0, 1.0, 1.0, 1.0))
        # allow_low_quality_matches: §3.1.2's first condition, the anchor(s) of highest IoU with each object.
        self.matcher = Matcher(fg_iou_thresh, bg_iou_thresh, allow_low_quality_matches=True)
        self.sampler = BalancedSampler(batch_size_per_image, positive_fraction)
        self.pre_nms_top_n = {"training": pre_nms_top_n_train, "testing": pre_nms_top_n_test}
        self.post_nms_top_n = {"training": post_nms_top_n_train, "testing": post_nms_top_n_test}
        self.nms_thresh = nms_thresh
        self.score_thresh = score_thresh

    def _mode(self) -> str:
        return "training" if self.training else "testing"

    def select_proposals(self, proposals: Tensor, objectness: Tensor, image_sizes: list[tuple[int, int]],
                         anchors_per_level: list[int]) -> list[Tensor]:
        """Decoded boxes ``[N, A, 4]`` and objectness logits ``[N, A]`` → per image the proposals ``[≤ n, 4]``,
        best first: top-k per level, clip, drop tiny boxes, per-level NMS, top-n."""
        num_images = proposals.shape[0]
        objectness = objectness.detach()  # proposals are not differentiated through (approximate joint training)
        levels = torch.cat([torch.full((n,), level, dtype=torch.int64, device=proposals.device)
                            for level, n in enumerate(anchors_per_level)]).expand_as(objectness)  # [N, A]
        # The k best anchors of each level (FPN §4.1: per level, so that the fine levels' many anchors do not
        # crowd out the coarse levels' few).
        top_indices, offset = [], 0
        for level_objectness in objectness.split(anchors_per_level, dim=1):
            k = min(self.pre_nms_top_n[self._mode()], level_objectness.shape[1])
            top_indices.append(level_objectness.topk(k, dim=1).indices + offset)
            offset += level_objectness.shape[1]
        top = torch.cat(top_indices, dim=1)  # [N, Σ k_l]
        rows = torch.arange(num_images, device=proposals.device)[:, None]
        objectness, levels, proposals = objectness[rows, top], levels[rows, top], proposals[rows, top]
        probabilities = torch.sigmoid(objectness)

        selected = []
        for boxes, scores, level, image_size in zip(proposals, probabilities, levels, image_sizes, strict=True):
            boxes = clip_boxes_to_image(boxes, image_size)
            keep = remove_small_boxes(boxes, self.min_box_size)
            boxes, scores, level = boxes[keep], scores[keep], level[keep]
            keep = torch.where(scores >= self.score_thresh)[0]
            boxes, scores, level = boxes[keep], scores[keep], level[keep]
            keep = batched_nms(boxes, scores, level, self.nms_thresh)  # NMS within each level, best first
            selected.append(boxes[keep[: self.post_nms_top_n[self._mode()]]])
        return selected

    def label_anchors(self, anchors: list[Tensor], targets: list[dict[str, Tensor]]
                      ) -> tuple[list[Tensor], list[Tensor]]:
        """Per image: each anchor's label p* (1 object, 0 background, -1 ignored; float) and the ground-truth box it
        regresses to (any box for non-positives: their regression is not counted)."""
        labels, matched_boxes = [], []
        for anchors_per_image, target in zip(anchors, targets, strict=True):
            gt_boxes = target["boxes"]
            if gt_boxes.numel() == 0:  # an image without objects: every anchor is background
                labels.append(torch.zeros(anchors_per_image.shape[0], dtype=torch.float32,
                                          device=anchors_per_image.device))
                matched_boxes.append(torch.zeros_like(anchors_per_image, dtype=torch.float32))
                continue
            matches = self.matcher(box_iou(gt_boxes, anchors_per_image))  # [A]: gt index, -1 or -2
            matched_boxes.append(gt_boxes[matches.clamp(min=0)])
            label = (matches >= 0).to(torch.float32)
            label[matches == Matcher.BELOW_LOW_THRESHOLD] = 0.0
            label[matches == Matcher.BETWEEN_THRESHOLDS] = -1.0
            labels.append(label)
        return labels, matched_boxes

    def loss(self, objectness: Tensor, deltas: Tensor, labels: list[Tensor], regression_targets: list[Tensor]
             ) -> dict[str, Tensor]:
        """Eq. 1 on a sampled mini-batch of anchors: binary cross-entropy on objectness over the sampled anchors,
        smooth L1 on the positives' deltas, both divided by the number sampled (N_cls = N_reg, λ = 1)."""
        positive, negative = self.sampler(labels)
        positive = torch.where(torch.cat(positive))[0]
        negative = torch.where(torch.cat(negative))[0]
        sampled = torch.cat([positive, negative])
        labels, regression_targets = torch.cat(labels), torch.cat(regression_targets)
        # L_reg = smooth_L1(t_i - t_i*), counted for positive anchors only (the p_i* factor of eq. 1)
        box_loss = F.smooth_l1_loss(deltas[positive], regression_targets[positive], beta=1 / 9,
                                    reduction="sum") / sampled.numel()
        # L_cls: the log loss of object vs. not object
        objectness_loss = F.binary_cross_entropy_with_logits(objectness.flatten()[sampled], labels[sampled])
        return {"loss_objectness": objectness_loss, "loss_rpn_box_reg": box_loss}

    def forward(self, image_batch: ImageBatch, features: dict[str, Tensor],
                targets: list[dict[str, Tensor]] | None = None) -> tuple[list[Tensor], dict[str, Tensor]]:
        """Pyramid levels (in order, the extra "pool" level included) → proposals ``[≤ n, 4]`` per image (in the
        resized image's pixels) and, in training (``targets`` given), the RPN losses."""
        maps = list(features.values())
        objectness_maps, delta_maps = self.head(maps)
        anchors = self.anchor_generator(image_batch, maps)  # per image [A, 4]
        num_images = len(anchors)
        anchors_per_level = [o.shape[1] * o.shape[2] * o.shape[3] for o in objectness_maps]  # k·h·w
        objectness = flatten_per_anchor(objectness_maps, 1).flatten(0, -2)  # [N·A, 1]
        deltas = flatten_per_anchor(delta_maps, 4).reshape(-1, 4)  # [N·A, 4]
        # Eq. 2 inverted: x = t_x·w_a + x_a, …, w = w_a·exp(t_w); the proposals do not pass gradients back.
        proposals = self.box_coder.decode(deltas.detach(), anchors).view(num_images, -1, 4)  # [N, A, 4]
        boxes = self.select_proposals(proposals, objectness.view(num_images, -1), image_batch.image_sizes,
                                      anchors_per_level)
        losses: dict[str, Tensor] = {}
        if self.training:
            if targets is None:
                raise ValueError("the region proposal network needs targets in training mode")
            labels, matched_boxes = self.label_anchors(anchors, targets)
            regression_targets = self.box_coder.encode(matched_boxes, anchors)  # t* of eq. 2
            losses = self.loss(objectness, deltas, labels, list(regression_targets))
        return boxes, losses
