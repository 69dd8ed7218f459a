"""Box coding, IoU matching, balanced sampling and frozen BatchNorm: the bookkeeping every anchor-based detector
shares (Faster R-CNN's RPN and RoI heads, RetinaNet, SSD).

- :class:`BoxCoder`: the R-CNN box parametrisation (Girshick et al., "Rich feature hierarchies", 2014, appendix C;
  eq. 2 of Faster R-CNN, Ren et al. 2015, https://arxiv.org/abs/1506.01497). A detector does not regress box
  corners: it regresses the offset of a box's centre in units of the anchor's size and the log of the ratio of
  their sizes, which are invariant to translation and scale::

      t_x = (x - x_a) / w_a     t_y = (y - y_a) / h_a     t_w = log(w / w_a)     t_h = log(h / h_a)

  each multiplied by a weight (Fast R-CNN's (10, 10, 5, 5) for the RoI head: the regression targets are
  normalised to roughly unit variance).
- :class:`Matcher`: assigns every anchor (or proposal) the ground-truth box it overlaps most, if that IoU reaches
  the positive threshold (Faster R-CNN §3.1.2: IoU ≥ 0.7 positive, < 0.3 negative, the rest ignored), and, where
  asked, also the anchor of highest IoU for each ground truth ("low-quality matches", so that no object is left
  without an anchor).
- :class:`BalancedSampler`: draws at most ``positive_fraction`` of a mini-batch of anchors from the positives and
  fills the rest with negatives (Faster R-CNN §3.1.3: 256 anchors per image at up to 1:1; Fast R-CNN: 512 RoIs
  at 25% foreground), because negatives outnumber positives by orders of magnitude.
- :class:`FrozenBatchNorm2d`: a BatchNorm whose statistics and affine transform are constants. Detection trains
  with one or two images per GPU, too few to estimate batch statistics, so the backbone's BatchNorms keep the
  ImageNet values as a fixed per-channel affine map.

Deviations: none in the arithmetic. Semantics, operation order and random draws follow torchvision's
``models/detection/_utils.py`` so that converted detectors give the same outputs and, for the same
``torch.manual_seed``, sample the same anchors (parity tests in tests/test_detection_core.py).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn


class BoxCoder:
    """Encode boxes as offsets from reference boxes (anchors, proposals) and decode them back.

    Args:
        weights: ``(w_x, w_y, w_w, w_h)`` multiplying ``(t_x, t_y, t_w, t_h)``: (1, 1, 1, 1) for the RPN and
            RetinaNet, (10, 10, 5, 5) for the Fast R-CNN head, SSD's (10, 10, 5, 5) "variances" 0.1 and 0.2.
        bbox_xform_clip: the largest ``t_w``, ``t_h`` decoded, so that ``exp`` cannot overflow early in training
            (log(1000 / 16): no box grows more than 62.5× its anchor).
    """

    def __init__(self, weights: tuple[float, float, float, float],
                 bbox_xform_clip: float = math.log(1000.0 / 16)) -> None:
        self.weights = weights
        self.bbox_xform_clip = bbox_xform_clip

    def encode(self, reference_boxes: list[Tensor], proposals: list[Tensor]) -> tuple[Tensor, ...]:
        """Per image: the codes of the ground-truth ``reference_boxes[i]`` relative to ``proposals[i]``."""
        boxes_per_image = [len(b) for b in reference_boxes]
        codes = self.encode_single(torch.cat(reference_boxes, dim=0), torch.cat(proposals, dim=0))
        return codes.split(boxes_per_image, 0)

    def encode_single(self, reference_boxes: Tensor, proposals: Tensor) -> Tensor:
        """``reference_boxes`` ``[K, 4]`` (targets, xyxy) relative to ``proposals`` ``[K, 4]`` → codes ``[K, 4]``."""
        weights = torch.as_tensor(self.weights, dtype=reference_boxes.dtype, device=reference_boxes.device)
        wx, wy, ww, wh = weights
        # Both boxes as centre and size (x_a, y_a, w_a, h_a) and (x, y, w, h); each [K, 1].
        anchor_w = proposals[:, 2:3] - proposals[:, 0:1]
        anchor_h = proposals[:, 3:4] - proposals[:, 1:2]
        anchor_x = proposals[:, 0:1] + 0.5 * anchor_w
        anchor_y = proposals[:, 1:2] + 0.5 * anchor_h
        target_w = reference_boxes[:, 2:3] - reference_boxes[:, 0:1]
        target_h = reference_boxes[:, 3:4] - reference_boxes[:, 1:2]
        target_x = reference_boxes[:, 0:1] + 0.5 * target_w
        target_y = reference_boxes[:, 1:2] + 0.5 * target_h
        # Eq. 2: t_x = (x - x_a) / w_a, t_y = (y - y_a) / h_a, t_w = log(w / w_a), t_h = log(h / h_a).
        t_x = wx * (target_x - anchor_x) / anchor_w
        t_y = wy * (target_y - anchor_y) / anchor_h
        t_w = ww * torch.log(target_w / anchor_w)
        t_h = wh * torch.log(target_h / anchor_h)
        return torch.cat((t_x, t_y, t_w, t_h), dim=1)

    def decode(self, rel_codes: Tensor, boxes: list[Tensor]) -> Tensor:
        """Codes ``[sum K_i, C·4]`` relative to the per-image ``boxes`` ``[K_i, 4]`` → boxes ``[sum K_i, C, 4]``
        (C = 1 for class-agnostic codes, the number of classes for Fast R-CNN's class-specific regression)."""
        total = sum(b.size(0) for b in boxes)
        if total > 0:
            rel_codes = rel_codes.reshape(total, -1)
        decoded = self.decode_single(rel_codes, torch.cat(boxes, dim=0))
        return decoded.reshape(total, -1, 4) if total > 0 else decoded

    def decode_single(self, rel_codes: Tensor, boxes: Tensor) -> Tensor:
        """Codes ``[K, C·4]`` relative to ``boxes`` ``[K, 4]`` → boxes ``[K, C·4]`` (xyxy): eq. 2 inverted."""
        boxes = boxes.to(rel_codes.dtype)
        anchor_w = boxes[:, 2] - boxes[:, 0]
        anchor_h = boxes[:, 3] - boxes[:, 1]
        anchor_x = boxes[:, 0] + 0.5 * anchor_w
        anchor_y = boxes[:, 1] + 0.5 * anchor_h
        wx, wy, ww, wh = self.weights
        t_x = rel_codes[:, 0::4] / wx  # [K, C]: every class's code for the same anchor
        t_y = rel_codes[:, 1::4] / wy
        t_w = torch.clamp(rel_codes[:, 2::4] / ww, max=self.bbox_xform_clip)
        t_h = torch.clamp(rel_codes[:, 3::4] / wh, max=self.bbox_xform_clip)
        # x = t_x · w_a + x_a, w = w_a · exp(t_w)
        x = t_x * anchor_w[:, None] + anchor_x[:, None]
        y = t_y * anchor_h[:, None] + anchor_y[:, None]
        half_w = 0.5 * (torch.exp(t_w) * anchor_w[:, None])
        half_h = 0.5 * (torch.exp(t_h) * anchor_h[:, None])
        return torch.stack((x - half_w, y - half_h, x + half_w, y + half_h), dim=2).flatten(1)  # [K, C·4]


class Matcher:
    """Match each prediction (anchor, proposal) to the ground truth it overlaps most.

    Args:
        high_threshold: IoU at or above which a match is a positive.
        low_threshold: IoU below which an anchor is a negative (``BELOW_LOW_THRESHOLD``); in between, it is
            ignored (``BETWEEN_THRESHOLDS``) in the loss.
        allow_low_quality_matches: also keep, for every ground truth, the predictions of highest IoU with it
            (ties included) even below ``high_threshold`` (Faster R-CNN §3.1.2's first condition).
    """

    BELOW_LOW_THRESHOLD = -1
    BETWEEN_THRESHOLDS = -2

    def __init__(self, high_threshold: float, low_threshold: float, allow_low_quality_matches: bool = False) -> None:
        if low_threshold > high_threshold:
            raise ValueError(f"low_threshold {low_threshold} must not exceed high_threshold {high_threshold}")
        self.high_threshold = high_threshold
        self.low_threshold = low_threshold
        self.allow_low_quality_matches = allow_low_quality_matches

    def __call__(self, match_quality_matrix: Tensor) -> Tensor:
        """IoU ``[G, A]`` (ground truths × predictions) → ``[A]``: the matched ground truth's index, or -1 / -2."""
        if match_quality_matrix.numel() == 0:
            what = "ground-truth boxes" if match_quality_matrix.shape[0] == 0 else "proposals"
            raise ValueError(f"no {what} to match in one of the images")
        best_iou, matches = match_quality_matrix.max(dim=0)  # [A]: each prediction's best ground truth
        best_unthresholded = matches.clone() if self.allow_low_quality_matches else None
        matches[best_iou < self.low_threshold] = self.BELOW_LOW_THRESHOLD
        matches[(best_iou >= self.low_threshold) & (best_iou < self.high_threshold)] = self.BETWEEN_THRESHOLDS
        if best_unthresholded is not None:
            # For every ground truth, its best predictions (all of them, if several tie) become positives,
            # matched to the ground truth they overlap most (which is this one, unless another ties).
            best_for_each_gt, _ = match_quality_matrix.max(dim=1)  # [G]
            _, best_predictions = torch.where(match_quality_matrix == best_for_each_gt[:, None])
            matches[best_predictions] = best_unthresholded[best_predictions]
        return matches


class BalancedSampler:
    """Sample a fixed-size mini-batch of predictions per image with at most ``positive_fraction`` positives.

    Args:
        batch_size_per_image: predictions sampled per image (RPN: 256 anchors; RoI head: 512 proposals).
        positive_fraction: the largest share of positives; negatives fill the rest of the batch.
    """

    def __init__(self, batch_size_per_image: int, positive_fraction: float) -> None:
        self.batch_size_per_image = batch_size_per_image
        self.positive_fraction = positive_fraction

    def __call__(self, matched_idxs: list[Tensor]) -> tuple[list[Tensor], list[Tensor]]:
        """Per image, labels ``[A]`` (≥ 1 positive, 0 negative, -1 ignored) → masks (uint8 ``[A]``) of the sampled
        positives and of the sampled negatives."""
        positive_masks, negative_masks = [], []
        for labels in matched_idxs:
            positive = torch.where(labels >= 1)[0]
            negative = torch.where(labels == 0)[0]
            num_positive = min(positive.numel(), int(self.batch_size_per_image * self.positive_fraction))
            num_negative = min(negative.numel(), self.batch_size_per_image - num_positive)
            # Two permutations, positives first: the same order of draws as torchvision, so the same seed
            # picks the same anchors.
            chosen_positive = positive[torch.randperm(positive.numel(), device=positive.device)[:num_positive]]
            chosen_negative = negative[torch.randperm(negative.numel(), device=negative.device)[:num_negative]]
            positive_mask = torch.zeros_like(labels, dtype=torch.uint8)
            negative_mask = torch.zeros_like(labels, dtype=torch.uint8)
            positive_mask[chosen_positive] = 1
            negative_mask[chosen_negative] = 1
            positive_masks.append(positive_mask)
            negative_masks.append(negative_mask)
        return positive_masks, negative_masks


class FrozenBatchNorm2d(nn.Module):
    """BatchNorm with fixed statistics and affine parameters, all buffers: ``y = (x - mean) / sqrt(var + eps) ·
    weight + bias``, folded into one scale and shift. Not trained, and not counted by ``parameters()``.

    A state_dict of an ``nn.BatchNorm2d`` loads into it: its ``num_batches_tracked`` is dropped.
    """

    def __init__(self, num_features: int, eps: float = 1e-5, device: torch.device | str | None = None) -> None:
        super().__init__()
        self.num_features = num_features
        self.eps = eps
        self.register_buffer("weight", torch.ones(num_features, device=device))
        self.register_buffer("bias", torch.zeros(num_features, device=device))
        self.register_buffer("running_mean", torch.zeros(num_features, device=device))
        self.register_buffer("running_var", torch.ones(num_features, device=device))

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                              error_msgs) -> None:
        state_dict.pop(prefix + "num_batches_tracked", None)
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                                      error_msgs)

    def forward(self, x: Tensor) -> Tensor:
        scale = self.weight * (self.running_var + self.eps).rsqrt()  # [C]
        shift = self.bias - self.running_mean * scale
        return x * scale.reshape(1, -1, 1, 1) + shift.reshape(1, -1, 1, 1)

    def extra_repr(self) -> str:
        return f"{self.num_features}, eps={self.eps}"


def freeze_batchnorm(module: nn.Module) -> nn.Module:
    """Replace every ``nn.BatchNorm2d`` in ``module`` (or ``module`` itself) by a :class:`FrozenBatchNorm2d` holding
    its current statistics and affine parameters. Returns the module (a new one if ``module`` is a BatchNorm)."""
    if isinstance(module, nn.BatchNorm2d):
        device = module.running_mean.device if module.running_mean is not None else None
        frozen = FrozenBatchNorm2d(module.num_features, eps=module.eps, device=device)
        with torch.no_grad():
            if module.affine:
                frozen.weight.copy_(module.weight)
                frozen.bias.copy_(module.bias)
            if module.track_running_stats:
                frozen.running_mean.copy_(module.running_mean)
                frozen.running_var.copy_(module.running_var)
        return frozen
    for name, child in module.named_children():
        replaced = freeze_batchnorm(child)
        if replaced is not child:
            setattr(module, name, replaced)
    return module
