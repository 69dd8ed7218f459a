"""Object detection and instance segmentation (Faster R-CNN, Mask R-CNN, RetinaNet, SSD, YOLOv3): generated
shapes or a COCO-format folder, each detector's own training losses, COCO mAP from pycocotools' COCOeval.

Every detector follows torchvision's convention: in training mode ``model(images, targets)`` returns a dict of
losses (RPN and box-head losses, focal and box losses, ...), which the objective sums, as torchvision's
reference scripts do, and logs one by one as train metrics; in eval mode it returns detections per image, which
COCOeval scores against the ground truth (box AP@[.5:.95] and AP@.5, and the same for the masks of an instance
segmenter: COCO's reported numbers).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader

from paperzoo.registry import create_model
from paperzoo.training import detection_data, distributed
from paperzoo.training.tasks import Option, Task, autocast

EVAL_CHUNK = 8  # images per evaluation forward: the loop's test batch of 256 full-size images would not fit


class _Step(nn.Module):
    """A detector in the loop's terms: ``(images, targets)`` in, ``(summed loss, each loss × count, count)`` out
    (the loop divides the sums by the count, so each component is logged as its mean over the epoch)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, batch: tuple[list[torch.Tensor], list[dict[str, Any]]]
                ) -> tuple[torch.Tensor, dict[str, Any], int]:
        images, targets = batch
        losses = self.model(images, targets)
        count = len(images)
        loss = sum(value.float() for value in losses.values())
        return loss, {name: value.detach().float() * count for name, value in losses.items()}, count


class DetectionTask(Task):
    data_kinds = ("shapes", "coco")
    takes_path = ("coco",)
    metric = "map"
    unit = "images"
    options = {
        "shapes_images": Option(int, 512, "detection: training images of the generated shapes (64 held out)"),
        "shapes_classes": Option(int, 2, "detection: kinds of shapes (1-8: rectangle, ellipse, triangle, cross, "
                                         "then each smaller)"),
        "clip_grad": Option(float, None, "detection: clip the gradients' global norm to this value (RetinaNet's "
                                         "focal loss spikes early in a run from scratch)"),
    }
    SHAPES_TEST_IMAGES = 64
    SHAPES_DEFAULT_SIZE = 128  # the 64-pixel shapes images at twice their size: small objects stay detectable

    def prepare(self) -> None:
        config, card = self.config, self.card
        self.with_masks = card.task == "instance-segmentation"
        if self.with_masks:
            self.metric = "mask_map"  # the instance segmenter's own number; its box mAP is logged beside it
        if config.pretrained:
            raise ValueError("paperzoo train trains detectors from scratch (--pretrained is for classifiers): the "
                             "published detectors' heads are shaped for COCO's classes, not the data's")
        if config.data == "shapes" and not 1 <= self.option_values["shapes_classes"] <= 2 * len(
                detection_data.SHAPES):
            raise ValueError(f"--shapes-classes must be 1 to {2 * len(detection_data.SHAPES)}, "
                             f"got {self.option_values['shapes_classes']}")
        # The model's label convention: 0 is the background for the R-CNNs, RetinaNet and SSD; YOLOv3's classes
        # start at 0 (objectness plays the background's part). Read from a model built on the meta device.
        with torch.device("meta"):
            probe = create_model(config.model, **config.model_kwargs)
        self.first_label = getattr(probe, "first_label", 1)
        self.size_keyword = "image_size" if hasattr(probe, "image_size") else "min_size"
        if config.data == "shapes":
            classes = self.option_values["shapes_classes"]
            self.train_set = detection_data.shapes("train", self.option_values["shapes_images"], classes,
                                                   config.seed, self.with_masks, self.first_label)
            self.test_set = detection_data.shapes("test", self.SHAPES_TEST_IMAGES, classes, config.seed,
                                                  self.with_masks, self.first_label)
            # The 64-pixel images at twice their size where the architecture allows it; SSD's fixed layer
            # stack only fits its own size (300 or 512).
            self.image_size = config.image_size or (
                self.SHAPES_DEFAULT_SIZE if self._size_problem(self.SHAPES_DEFAULT_SIZE) is None else None)
        else:
            self.train_set, self.test_set = detection_data.coco(config.data_path, self.with_masks, self.first_label)
            self.image_size = config.image_size  # None: the model's own (the card's) size
        if config.image_size is not None:
            problem = self._size_problem(config.image_size)
            if problem is not None:
                raise ValueError(f"--image-size {config.image_size} does not suit {config.model}: {problem}")
        self.classes = self.train_set.categories

    def _size_problem(self, size: int) -> str | None:
        """Why the model cannot take images resized to ``size`` (None if it can), found at no cost by a forward
        pass on the meta device: a layer stack too deep for the size fails on shapes, a model that takes the size
        gets as far as its post-processing (whose data-dependent ops the meta device cannot run)."""
        kwargs = {**self.model_kwargs_for(size, num_classes=2 + self.first_label), **self.config.model_kwargs}
        with torch.device("meta"):
            try:
                create_model(self.config.model, **kwargs).eval()([torch.empty(3, 64, 64)])
            except NotImplementedError:  # (a RuntimeError: caught first) the post-processing: the size fits
                pass
            except (ValueError, RuntimeError) as err:
                return str(err).split("\n")[0]
        return None

    @property
    def batch_size(self) -> int:
        # No detector card carries a recipe; the loop's default batch of 64 full-size images does not fit a CPU or
        # one GPU: 8, the order of torchvision's reference recipe (2 images on each of 8 GPUs).
        return self.config.batch_size or (self.recipe.batch_size if self.card.recipe else 8)

    def model_kwargs(self) -> dict[str, Any]:
        return self.model_kwargs_for(self.image_size, len(self.classes) + self.first_label)

    def model_kwargs_for(self, size: int | None, num_classes: int) -> dict[str, Any]:
        kwargs: dict[str, Any] = {"num_classes": num_classes}
        if size is not None:
            if self.size_keyword == "image_size":  # SSD, YOLOv3: every image resized to a fixed square
                kwargs["image_size"] = size
            else:  # the R-CNNs, RetinaNet: the shorter side resized to min_size, the longer kept under max_size
                kwargs.update(min_size=size, max_size=size)
        return kwargs

    def settings(self) -> dict[str, Any]:
        return {"image_size": self.image_size, **self.option_values}

    def checkpoint_extra(self) -> dict[str, Any]:
        return {"classes": self.classes, "first_label": self.first_label}

    def inference(self) -> dict[str, Any]:
        # images in [0, 1] at their own size: the model resizes them (its image_size or min_size in model_kwargs)
        return {"model_kwargs": self.built_kwargs(), "classes": self.classes, "first_label": self.first_label}

    def collate(self, examples: Sequence[tuple[torch.Tensor, dict[str, Any]]]
                ) -> tuple[list[torch.Tensor], list[dict[str, Any]]]:
        return [image for image, _ in examples], [target for _, target in examples]

    def objective(self, model: nn.Module) -> nn.Module:
        return _Step(model)

    def gradient_clip(self) -> float | None:
        return self.option_values["clip_grad"]  # --clip-grad (RetinaNet from scratch needs it)

    def evaluate(self, model: nn.Module, loader: DataLoader, device: torch.device, context: distributed.Context,
                 amp: bool) -> dict[str, float]:
        """COCO box AP@[.5:.95] and AP@.5 (and the masks' for an instance segmenter) over the whole test set:
        each process detects on its part, rank 0's COCOeval scores them all, and every process gets the numbers."""
        model.eval()
        detections: dict[int, dict[str, torch.Tensor]] = {}
        with torch.no_grad(), autocast(device, amp):
            for images, targets in loader:
                for start in range(0, len(images), EVAL_CHUNK):
                    chunk = [image.to(device) for image in images[start: start + EVAL_CHUNK]]
                    outputs = model(chunk)
                    for target, output in zip(targets[start: start + EVAL_CHUNK], outputs, strict=True):
                        detections[target["image_id"]] = {k: v.detach().float().cpu() for k, v in output.items()}
        if context.distributed:
            gathered: list[Any] = [None] * context.world_size
            torch.distributed.all_gather_object(gathered, detections)
            detections = {k: v for part in gathered for k, v in part.items()}
        dataset = self.test_set
        results = detection_data.coco_results(detections, dataset, self.with_masks)
        metrics = detection_data.coco_evaluate(dataset.coco, results, "bbox")
        if self.with_masks:
            masks = detection_data.coco_evaluate(dataset.coco, results, "segm")
            metrics.update(mask_map=masks["map"], mask_map50=masks["map50"])
        return metrics


TASK = DetectionTask
