"""The Fast R-CNN box head on region proposals, shared by Faster R-CNN and Mask R-CNN.

"Fast R-CNN", Ross Girshick, 2015, https://arxiv.org/abs/1504.08083 (§2); as the second stage of "Faster R-CNN",
Ren et al. 2015, https://arxiv.org/abs/1506.01497; on a Feature Pyramid Network, Lin et al. 2017,
https://arxiv.org/abs/1612.03144 (§4.2).

Each proposal (a "region of interest", RoI) is cut out of the shared feature maps as a fixed 7×7 grid of features
("RoI pooling", §2.1; here RoIAlign from Mask R-CNN, bilinear sampling without quantising the RoI's
coordinates), from the pyramid level that suits its size: FPN's eq. 1 ``k = ⌊k0 + log2(√(wh) / 224)⌋`` with
k0 = 4, clamped to P2…P5. Two fully connected layers of 1024 (``fc6``, ``fc7``, the "2fc MLP head" of FPN §4.2)
turn the grid into a feature vector, and two sibling layers give "softmax probability estimates over K object
classes plus a catch-all background class" and "four real-valued numbers for each of the K object classes",
the class-specific box refinement (§2)::

    features P2…P5 ─┐
    proposals [R, 4] ┴ MultiScaleRoIAlign 7×7 → [R, d, 7, 7] ─ flatten ─ fc6 1024, ReLU ─ fc7 1024, ReLU
                                                                    ├─ cls [R, K+1]
                                                                    └─ box [R, 4(K+1)]

Training (§2.3): the ground-truth boxes join the proposals; a proposal whose IoU with a ground truth is ≥ 0.5 takes
its class, below 0.5 it is background; 512 RoIs per image are sampled with up to 25% foreground. The multi-task
loss (Fast R-CNN eq. 1) is ``L(p, u, t^u, v) = L_cls(p, u) + λ [u ≥ 1] L_loc(t^u, v)``: the log loss of the true
class u, plus, for foreground RoIs only, the smooth L1 loss between the predicted deltas t^u *of the true class*
and the targets v (eq. 2 of Faster R-CNN, scaled by (10, 10, 5, 5) so that the targets have about unit variance).

Inference: decode each class's deltas into a box, clip it to the image, take the softmax scores, drop scores
≤ 0.05 and tiny boxes, run NMS (IoU 0.5) independently for each class, keep the best 100 detections.

Deviations: RoIAlign (Mask R-CNN §3) instead of Fast R-CNN's RoI max pooling, on four FPN levels with FPN's
level assignment, as torchvision and Detectron's FPN models do; sampling ratio 2 (torchvision's). The box loss is
divided by the number of sampled RoIs (not the number of positives), with λ = 1 and β = 1/9 in the smooth L1, as
torchvision. The order of operations and of random draws follows torchvision's ``RoIHeads``, so that converted
weights give the same detections and the same seed the same losses.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.ops import MultiScaleRoIAlign, batched_nms, box_iou, clip_boxes_to_image, remove_small_boxes

from paperzoo.models.detection.boxes import BalancedSampler, BoxCoder, Matcher


class TwoFCHead(nn.Module):
    """The "2fc MLP head" (FPN §4.2): flatten the RoI's grid, ``fc6`` and ``fc7``, each with ReLU.

    Args:
        in_features: d·7·7, the flattened RoI features.
        representation_size: the width of fc6 and fc7 (1024).
    """

    def __init__(self, in_features: int, representation_size: int) -> None:
        super().__init__()
        self.fc6 = nn.Linear(in_features, representation_size)
        self.fc7 = nn.Linear(representation_size, representation_size)

    def forward(self, roi_features: Tensor) -> Tensor:
        """``[R, d, 7, 7]`` → ``[R, representation_size]``."""
        return F.relu(self.fc7(F.relu(self.fc6(roi_features.flatten(start_dim=1)))))


class BoxPredictor(nn.Module):
    """Fast R-CNN's two sibling output layers: class logits over K + 1 classes (0 is background) and, for every
    class, four box deltas (class-specific regression)."""

    def __init__(self, in_features: int, num_classes: int) -> None:
        super().__init__()
        self.class_logits = nn.Linear(in_features, num_classes)
        self.box_deltas = nn.Linear(in_features, num_classes * 4)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """``[R, F]`` → logits ``[R, K+1]`` and deltas ``[R, 4(K+1)]``."""
        return self.class_logits(x), self.box_deltas(x)


def fast_rcnn_loss(class_logits: Tensor, box_deltas: Tensor, labels: list[Tensor],
                   regression_targets: list[Tensor]) -> dict[str, Tensor]:
    """Fast R-CNN eq. 1 over the sampled RoIs: ``L_cls`` = cross-entropy of the true class u; ``[u ≥ 1] L_loc`` =
    smooth L1 of the true class's deltas t^u against the targets v, summed over foreground RoIs and divided by the
    number of sampled RoIs."""
    labels = torch.cat(labels)  # [R]
    regression_targets = torch.cat(regression_targets)  # [R, 4]
    classification_loss = F.cross_entropy(class_logits, labels)
    foreground = torch.where(labels > 0)[0]  # the Iverson bracket [u ≥ 1]
    box_deltas = box_deltas.reshape(class_logits.shape[0], -1, 4)  # [R, K+1, 4]
    # t^u: only the deltas predicted for the RoI's own class are trained
    box_loss = F.smooth_l1_loss(box_deltas[foreground, labels[foreground]], regression_targets[foreground],
                                beta=1 / 9, reduction="sum") / labels.numel()
    return {"loss_classifier": classification_loss, "loss_box_reg": box_loss}


class SampledRoIs(NamedTuple):
    """The RoIs one training step uses, per image: ``proposals`` ``[R_i, 4]``, their ``labels`` ``[R_i]`` (the
    matched object's class, 0 for background) and ``matched_gt`` ``[R_i]`` (index of the matched ground truth; 0
    for background RoIs, whose match is not used)."""

    proposals: list[Tensor]
    labels: list[Tensor]
    matched_gt: list[Tensor]


class RoIBoxHeads(nn.Module):
    """RoIAlign over the pyramid, the two-FC head, the box predictor; sampling and loss in training,
    post-processing in evaluation.

    Args:
        in_channels: d, the width of the pyramid levels.
        num_classes: K + 1, the object classes and the background (class 0).
        featmap_names: the pyramid levels RoIs are pooled from (P2…P5: "0"…"3").
        roi_size: the side of the pooled grid (7).
        sampling_ratio: RoIAlign's bilinear samples per bin side (2).
        representation_size: width of fc6 and fc7 (1024).
        fg_iou_thresh, bg_iou_thresh: IoU at or above which a proposal is foreground (0.5), below which background
            (0.5: no proposal is ignored).
        batch_size_per_image, positive_fraction: RoIs sampled per image (512) and the largest foreground share (0.25).
        bbox_reg_weights: the weights of the box coding (10, 10, 5, 5).
        score_thresh: detections with a lower class probability are dropped (0.05).
        nms_thresh: the IoU of per-class NMS (0.5).
        detections_per_img: at most this many detections per image (100).
    """

    def __init__(self, in_channels: int, num_classes: int, featmap_names: Sequence[str] = ("0", "1", "2", "3"),
                 roi_size: int = 7, sampling_ratio: int = 2, representation_size: int = 1024,
                 fg_iou_thresh: float = 0.5, bg_iou_thresh: float = 0.5, batch_size_per_image: int = 512,
                 positive_fraction: float = 0.25,
                 bbox_reg_weights: tuple[float, float, float, float] = (10.0, 10.0, 5.0, 5.0),
                 score_thresh: float = 0.05, nms_thresh: float = 0.5, detections_per_img: int = 100) -> None:
        super().__init__()
        self.box_roi_pool = MultiScaleRoIAlign(featmap_names=list(featmap_names), output_size=roi_size,
                                               sampling_ratio=sampling_ratio)
        self.box_head = TwoFCHead(in_channels * roi_size**2, representation_size)
        self.box_predictor = BoxPredictor(representation_size, num_classes)
        self.matcher = Matcher(fg_iou_thresh, bg_iou_thresh, allow_low_quality_matches=False)
        self.sampler = BalancedSampler(batch_size_per_image, positive_fraction)
        self.box_coder = BoxCoder(bbox_reg_weights)
        self.score_thresh = score_thresh
        self.nms_thresh = nms_thresh
        self.detections_per_img = detections_per_img

    def sample_rois(self, proposals: list[Tensor], targets: list[dict[str, Tensor]]
                    ) -> tuple[SampledRoIs, list[Tensor]]:
        """Add the ground truths to the proposals, label each by its best-overlapping object, sample 512 per image
        (≤ 25% foreground); return them with their regression targets v."""
        dtype, device = proposals[0].dtype, proposals[0].device
        gt_boxes = [t["boxes"].to(dtype) for t in targets]
        # The ground truths are proposals too: from the first step on, every object has a perfect RoI.
        proposals = [torch.cat((p, gt)) for p, gt in zip(proposals, gt_boxes, strict=True)]
        matched_gt, labels = [], []
        for rois, boxes, gt_labels in zip(proposals, gt_boxes, [t["labels"] for t in targets], strict=True):
            if boxes.numel() == 0:  # no objects: every RoI is background
                matched_gt.append(torch.zeros(rois.shape[0], dtype=torch.int64, device=device))
                labels.append(torch.zeros(rois.shape[0], dtype=torch.int64, device=device))
                continue
            matches = self.matcher(box_iou(boxes, rois))
            label = gt_labels[matches.clamp(min=0)].to(torch.int64)
            label[matches == Matcher.BELOW_LOW_THRESHOLD] = 0
            label[matches == Matcher.BETWEEN_THRESHOLDS] = -1  # ignored by the sampler
            matched_gt.append(matches.clamp(min=0))
            labels.append(label)
        positive, negative = self.sampler(labels)
        matched_boxes = []
        for i in range(len(proposals)):
            sampled = torch.where(positive[i] | negative[i])[0]
            proposals[i], labels[i], matched_gt[i] = proposals[i][sampled], labels[i][sampled], matched_gt[i][sampled]
            boxes = gt_boxes[i] if gt_boxes[i].numel() else torch.zeros((1, 4), dtype=dtype, device=device)
            matched_boxes.append(boxes[matched_gt[i]])
        regression_targets = self.box_coder.encode(matched_boxes, proposals)
        return SampledRoIs(proposals, labels, matched_gt), list(regression_targets)

    def detect(self, class_logits: Tensor, box_deltas: Tensor, proposals: list[Tensor],
               image_sizes: list[tuple[int, int]]) -> list[dict[str, Tensor]]:
        """Per image: a box for every (RoI, class), scored by its softmax probability; score threshold, tiny boxes
        out, NMS per class, the best ``detections_per_img``."""
        num_classes = class_logits.shape[-1]
        per_image = [len(p) for p in proposals]
        boxes_all = self.box_coder.decode(box_deltas, proposals).split(per_image)  # [R_i, K+1, 4]
        scores_all = F.softmax(class_logits, -1).split(per_image)  # [R_i, K+1]
        detections = []
        for boxes, scores, image_size in zip(boxes_all, scores_all, image_sizes, strict=True):
            boxes = clip_boxes_to_image(boxes, image_size)
            labels = torch.arange(num_classes, device=boxes.device).view(1, -1).expand_as(scores)
            # Class 0 is the background: it has no box. Every other class's box is a candidate detection.
            boxes, scores, labels = boxes[:, 1:].reshape(-1, 4), scores[:, 1:].reshape(-1), labels[:, 1:].reshape(-1)
            keep = torch.where(scores > self.score_thresh)[0]
            boxes, scores, labels = boxes[keep], scores[keep], labels[keep]
            keep = remove_small_boxes(boxes, min_size=1e-2)
            boxes, scores, labels = boxes[keep], scores[keep], labels[keep]
            keep = batched_nms(boxes, scores, labels, self.nms_thresh)[: self.detections_per_img]
            detections.append({"boxes": boxes[keep], "labels": labels[keep], "scores": scores[keep]})
        return detections

    def forward(self, features: dict[str, Tensor], proposals: list[Tensor], image_sizes: list[tuple[int, int]],
                targets: list[dict[str, Tensor]] | None = None
                ) -> tuple[list[dict[str, Tensor]], dict[str, Tensor], SampledRoIs | None]:
        """Training (``targets`` given): no detections, the Fast R-CNN losses, and the sampled RoIs (Mask R-CNN's
        mask branch trains on their foreground). Evaluation: one dict of ``boxes``, ``labels``, ``scores`` per image
        (in the resized image's pixels), no losses, no sample."""
        sampled, regression_targets = None, None
        if self.training:
            if targets is None:
                raise ValueError("the RoI heads need targets in training mode")
            sampled, regression_targets = self.sample_rois(proposals, targets)
            proposals = sampled.proposals
        roi_features = self.box_roi_pool(features, proposals, image_sizes)  # [R, d, 7, 7]
        class_logits, box_deltas = self.box_predictor(self.box_head(roi_features))
        if sampled is not None:
            return [], fast_rcnn_loss(class_logits, box_deltas, sampled.labels, regression_targets), sampled
        return self.detect(class_logits, box_deltas, proposals, image_sizes), {}, None
