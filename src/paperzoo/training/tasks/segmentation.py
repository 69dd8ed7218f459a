"""Semantic segmentation: generated scenes of shapes (default) or a PASCAL VOC folder, the model's own loss
(its auxiliary head's at the paper's weight: torchvision's 0.5 for FCN and DeepLabV3, PSPNet's 0.4; U-Net's
weight map of eq. 2), and the metrics every segmentation paper reports: mean IoU, per-class IoU and pixel
accuracy, from one confusion matrix over the test pixels (as torchvision's reference scripts compute them).

U-Net with valid convolutions sees each image as the paper's overlap-tile strategy does (Figure 2): the image
mirrored outwards until the network's output, the tile's centre, covers all of it.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader

from paperzoo.layers.segmentation import IGNORE_INDEX
from paperzoo.registry import create_model
from paperzoo.training import distributed
from paperzoo.training import segmentation_data as data
from paperzoo.training.tasks import Task, autocast


def mirror_pad(x: torch.Tensor, top: int, bottom: int, left: int, right: int) -> torch.Tensor:
    """Extend ``(N, C, H, W)`` images by mirroring at their borders (U-Net's Figure 2); a margin wider than the
    image mirrors the mirrored image again, as often as needed."""
    while top or bottom or left or right:
        height, width = x.shape[-2:]
        step = [min(left, width - 1), min(right, width - 1), min(top, height - 1), min(bottom, height - 1)]
        x = F.pad(x, step, mode="reflect")
        left, right, top, bottom = left - step[0], right - step[1], top - step[2], bottom - step[3]
    return x


class Segmenter(nn.Module):
    """The model as the task uses it: images ``(N, 3, S, S)`` → class scores ``(N, K, S, S)``, plus any auxiliary
    output. For a U-Net with valid convolutions the images are mirrored out to the tile whose output covers
    them, and the output is cropped to them."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.tiled = hasattr(model, "output_size") and not getattr(model, "padded", True)

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        if not self.tiled:
            return self.model(images)
        height, width = images.shape[-2:]  # each side its own tile (paperzoo predict keeps a photo's aspect)
        (top, bottom, skip_y), (left, right, skip_x) = self._tile(height), self._tile(width)
        outputs = self.model(mirror_pad(images, top, bottom, left, right))
        return {key: value[..., skip_y:skip_y + height, skip_x:skip_x + width] for key, value in outputs.items()}

    def _tile(self, size: int) -> tuple[int, int, int]:
        """``(before, after, skip)`` for one side of ``size`` pixels: the mirrored margins that make the smallest
        tile whose output covers the image, the same on both sides where a tile allows it, else one pixel more
        after (an odd size: the valid tiles' sizes are even), and where the image starts in the output (the
        valid convolutions take the same number of pixels off each side of the tile)."""
        for symmetric in (True, False):
            for tile in range(size + 1, 4 * size + 1024):
                out = self.model.output_size(tile)
                if out is None or (symmetric and (tile - size) % 2):
                    continue
                before = (tile - size) // 2
                skip = before - (tile - out) // 2
                if skip >= 0 and skip + size <= out:
                    return before, tile - size - before, skip
        raise ValueError(f"no tile of {type(self.model).__name__} covers {size} pixels")


class _Step(nn.Module):
    """A batch in, ``(the model's loss, {"pixel_accuracy": per-image accuracies summed}, images)`` out."""

    def __init__(self, model: nn.Module, weight_maps: bool) -> None:
        super().__init__()
        self.segmenter = Segmenter(model)
        self.weight_maps = weight_maps

    def forward(self, batch: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, dict[str, Any], int]:
        images, masks, weights = batch
        outputs = self.segmenter(images)
        model = self.segmenter.model
        loss = model.loss(outputs, masks, weights) if self.weight_maps else model.loss(outputs, masks)
        labelled = masks != IGNORE_INDEX
        correct = ((outputs["out"].argmax(1) == masks) & labelled).flatten(1).sum(1)
        accuracy = correct / labelled.flatten(1).sum(1).clamp(min=1)
        return loss.float(), {"pixel_accuracy": accuracy.sum()}, len(images)


def confusion_matrix(predicted: torch.Tensor, target: torch.Tensor, num_classes: int) -> torch.Tensor:
    """``(K, K)`` counts of pixels of true class i predicted as j, over the pixels not labelled 255."""
    keep = target != IGNORE_INDEX
    index = target[keep] * num_classes + predicted[keep]
    return torch.bincount(index, minlength=num_classes**2).reshape(num_classes, num_classes)


def iou_from_confusion(confusion: torch.Tensor) -> tuple[torch.Tensor, float, float]:
    """Per-class IoU = TP / (TP + FP + FN) (NaN for a class absent from both the truth and the predictions),
    their mean over the classes that occur, and pixel accuracy = TP summed / labelled pixels."""
    confusion = confusion.double()
    true_positive = confusion.diag()
    union = confusion.sum(0) + confusion.sum(1) - true_positive
    iou = true_positive / union  # 0/0 = NaN: the class is nowhere, in truth or prediction
    return iou, iou.nanmean().item(), (true_positive.sum() / confusion.sum().clamp(min=1)).item()


class SegmentationTask(Task):
    data_kinds = ("shapes", "voc")
    takes_path = ("voc",)
    metric = "miou"
    progress_metric = ("pixel_accuracy", "pixel acc", ".2%")
    unit = "images"

    def prepare(self) -> None:
        config = self.config
        self.per_class_iou: dict[str, float] = {}
        if config.model_kwargs.get("in_chans", 3) != 3:  # before the probe below blames the image size for it
            raise ValueError(f"--model-kwargs in_chans={config.model_kwargs['in_chans']}: the data gives in_chans=3 "
                             "(RGB images); leave in_chans out, the task sets it from the data")
        if config.data == "shapes":
            self.image_size = config.image_size or 64
            self.train_set = data.shapes("train", self.image_size, seed=config.seed)
            self.test_set = data.shapes("test", self.image_size, seed=config.seed)
            self.classes = list(data.SHAPE_CLASSES)
        else:
            self.image_size = config.image_size or self.card.input.shape[-1]
            self.train_set, self.test_set, self.classes = data.voc(config.data_path, self.image_size,
                                                                    seed=config.seed)
        self.weight_maps = "weight_map" in inspect.signature(self._probe().loss).parameters  # U-Net's eq. 2

    def _probe(self) -> nn.Module:
        """The model on the meta device, run once on the input size: its own checks, at no cost."""
        with torch.device("meta"):
            try:
                probe = create_model(self.config.model, **self.build_kwargs()).eval()
            except TypeError as err:  # an argument the constructor does not take
                raise ValueError(f"--model-kwargs {self.config.model_kwargs}: {err}") from None
            try:
                Segmenter(probe)(torch.empty(2, 3, self.image_size, self.image_size))
            except (ValueError, StopIteration) as err:
                raise ValueError(f"--image-size {self.image_size} does not suit {self.config.model}: {err}") from None
        return probe

    def model_kwargs(self) -> dict[str, Any]:
        kwargs: dict[str, Any] = {"num_classes": len(self.classes), "in_chans": 3}
        if self._has_aux_head():
            kwargs["aux_loss"] = True  # trained with the auxiliary loss, as the papers and torchvision's scripts
        return kwargs

    def _has_aux_head(self) -> bool:
        """Whether the model takes ``aux_loss`` (FCN-ResNet, DeepLabV3, PSPNet), tried on the meta device."""
        with torch.device("meta"):
            try:
                create_model(self.config.model, num_classes=2, aux_loss=True)
            except TypeError:
                return False
        return True

    @property
    def batch_size(self) -> int:
        # No card recipe: batches of 8 (the papers use 1 tile for U-Net, 20 images for FCN, 16 for DeepLabV3 and
        # PSPNet), so that the 256 generated scenes make 32 steps an epoch.
        return self.config.batch_size or (self.recipe.batch_size if self.card.recipe is not None else 8)

    @property
    def lr(self) -> float:
        # AdamW at 3e-3 (the loop's default optimizer and schedule at a rate that learns the shapes in 5 epochs).
        return self.config.lr or (self.recipe.lr if self.card.recipe is not None else 3e-3)

    def settings(self) -> dict[str, Any]:
        return {"image_size": self.image_size, **self.option_values}

    def collate(self, examples: Sequence[tuple[torch.Tensor, ...]]) -> tuple[torch.Tensor, ...]:
        images = torch.stack([e[0] for e in examples])
        masks = torch.stack([e[1] for e in examples])
        if not self.weight_maps:
            return images, masks, None
        from paperzoo.models.segmentation.unet import separation_weight_map

        return images, masks, torch.stack([separation_weight_map(e[2]) for e in examples])

    def objective(self, model: nn.Module) -> nn.Module:
        return _Step(model, self.weight_maps)

    def checkpoint_extra(self) -> dict[str, Any]:
        return {"classes": self.classes, "model_kwargs": self.build_kwargs()}

    def inference(self) -> dict[str, Any]:
        # segmentation_data.resized_image(image, image_size) is what the images went through; then Segmenter
        return {"model_kwargs": self.built_kwargs(), "classes": self.classes, "image_size": self.image_size}

    def evaluate(self, model: nn.Module, loader: DataLoader, device: torch.device, context: distributed.Context,
                 amp: bool) -> dict[str, float]:
        """Mean loss, mean IoU and pixel accuracy over the test pixels of every process."""
        model.eval()
        segmenter = Segmenter(model)
        k = len(self.classes)
        confusion = torch.zeros(k, k, dtype=torch.int64, device=device)
        loss_sum = count = 0.0
        with torch.no_grad(), autocast(device, amp):
            for images, masks, weights in loader:
                images, masks = images.to(device), masks.to(device)
                outputs = {key: value.float() for key, value in segmenter(images).items()}
                loss = (model.loss(outputs, masks, weights.to(device)) if self.weight_maps
                        else model.loss(outputs, masks))
                loss_sum += loss.item() * len(images)
                count += len(images)
                confusion += confusion_matrix(outputs["out"].argmax(1), masks, k)
        totals = distributed.all_sum([loss_sum, count, *confusion.flatten().tolist()], context, device)
        confusion = torch.tensor(totals[2:]).reshape(k, k)
        iou, miou, accuracy = iou_from_confusion(confusion)
        self.per_class_iou = {name: round(value, 6) for name, value in zip(self.classes, iou.tolist(), strict=True)
                              if value == value}  # NaN: the class occurs nowhere in this test set
        return {"loss": totals[0] / totals[1], "miou": miou, "pixel_accuracy": accuracy}

    def summary(self) -> dict[str, Any]:
        return {"test_per_class_iou": self.per_class_iou}


TASK = SegmentationTask
