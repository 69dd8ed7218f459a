"""Mean average precision (mAP): how detections are scored (PASCAL VOC, Everingham et al. 2010, §4.2).

For each class, the detections of every image are ranked by score. Walking down the ranking, a detection is a
true positive if the ground-truth box of its class in its image that it overlaps most has IoU >= ``iou_threshold``
(0.5) with it and has not been claimed by a higher-scored detection; otherwise (a duplicate, or a miss) it is a
false positive, as in the VOC development kit. This traces precision against recall; the average precision (AP)
is the area under that curve after making precision monotone (each recall level takes the best precision at that
recall or beyond: "all-point interpolation", VOC 2010 onwards). mAP is the mean AP over the classes that occur
in the ground truth.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torchvision.ops import box_iou


def average_precision(recall: Tensor, precision: Tensor) -> float:
    """Area under the precision–recall curve with all-point interpolation (VOC 2010+)."""
    recall = torch.cat([torch.zeros(1, dtype=torch.float64), recall.double(), torch.ones(1, dtype=torch.float64)])
    precision = torch.cat([torch.zeros(1, dtype=torch.float64), precision.double(),
                           torch.zeros(1, dtype=torch.float64)])
    # Monotone envelope: precision at recall r is the best precision at any recall >= r.
    precision = precision.flip(0).cummax(0).values.flip(0)
    steps = torch.nonzero(recall[1:] != recall[:-1]).flatten()  # where recall changes
    return float(((recall[steps + 1] - recall[steps]) * precision[steps + 1]).sum())


def mean_average_precision(predictions: list[dict[str, Tensor]], targets: list[dict[str, Tensor]],
                           iou_threshold: float = 0.5, num_classes: int | None = None) -> float:
    """mAP@``iou_threshold`` of ``predictions`` (per image: ``boxes`` ``[K, 4]`` xyxy, ``scores`` ``[K]``,
    ``labels`` ``[K]``) against ``targets`` (per image: ``boxes``, ``labels``), averaged over the classes present
    in the targets (``num_classes``, if given, restricts them to ``[0, num_classes)``). 0.0 if no class is
    present."""
    if len(predictions) != len(targets):
        raise ValueError(f"{len(predictions)} predictions for {len(targets)} images: pass one dict per image")
    classes = sorted({int(c) for t in targets for c in t["labels"].tolist()})
    if num_classes is not None:
        classes = [c for c in classes if 0 <= c < num_classes]
    if not classes:
        return 0.0
    aps = []
    for cls in classes:
        records = []  # (score, image index, detection index) of every detection of this class
        num_ground_truth = 0
        ious = []
        for i, (prediction, target) in enumerate(zip(predictions, targets, strict=True)):
            gt = target["boxes"][target["labels"] == cls].float()
            keep = prediction["labels"] == cls
            boxes, scores = prediction["boxes"][keep].float(), prediction["scores"][keep].float()
            num_ground_truth += len(gt)
            ious.append(box_iou(boxes, gt) if len(boxes) and len(gt) else torch.zeros(len(boxes), len(gt)))
            records += [(float(s), i, k) for k, s in enumerate(scores.tolist())]
        # Highest score first; a stable order for equal scores (image, then detection index).
        records.sort(key=lambda r: (-r[0], r[1], r[2]))
        claimed = [torch.zeros(iou.shape[1], dtype=torch.bool) for iou in ious]
        true_positive = torch.zeros(len(records), dtype=torch.float64)
        for rank, (_, i, k) in enumerate(records):
            if ious[i].shape[1] == 0:
                continue
            best_iou, best = ious[i][k].max(0)
            if best_iou >= iou_threshold and not claimed[i][best]:
                claimed[i][best] = True
                true_positive[rank] = 1
        tp = true_positive.cumsum(0)
        fp = (1 - true_positive).cumsum(0)
        recall = tp / num_ground_truth
        precision = tp / (tp + fp).clamp(min=1e-12)
        aps.append(average_precision(recall, precision))
    return float(sum(aps) / len(aps))
