"""Image classification: scikit-learn's bundled digits or an ImageFolder tree, cross-entropy (or the paper's own
loss), top-1 accuracy."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader

from paperzoo.registry import create_model
from paperzoo.training import data as datasets
from paperzoo.training import distributed
from paperzoo.training.tasks import Task, autocast


class Objective(nn.Module):
    """The training objective around a classifier, as one module so that DistributedDataParallel wraps the
    whole of it (a loss computed outside the wrapped forward would skip DDP's gradient synchronisation hooks).

    ``forward(images, labels) -> (loss, logits)``, with the paper's loss where the model has one:

    - ``model.training_loss(images, labels) -> (loss, output)`` when the objective needs the labels inside the
      network (CapsNet's decoder reconstructs from the true class's capsule);
    - else ``model.loss(output, labels)`` on the training-mode output (GoogLeNet and Inception v3 add their
      auxiliary classifiers' weighted losses, Inception v3 smooths the labels);
    - else cross-entropy on the logits.

    A training-mode output that is a tuple carries the logits first (``(logits, aux_logits)``).
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, images: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if hasattr(self.model, "training_loss"):
            loss, output = self.model.training_loss(images, labels)
        else:
            output = self.model(images)
            if hasattr(self.model, "loss"):
                loss = self.model.loss(output, labels)
            else:
                loss = F.cross_entropy((output[0] if isinstance(output, tuple) else output).float(), labels)
        logits = output[0] if isinstance(output, tuple) else output
        return loss.float(), logits


class _Step(nn.Module):
    """``Objective`` in the loop's terms: a batch in, ``(loss, {"accuracy": correct}, count)`` out."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.objective = Objective(model)

    def forward(self, batch: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, dict[str, Any], int]:
        images, labels = batch
        loss, logits = self.objective(images, labels)
        return loss, {"accuracy": (logits.argmax(1) == labels).sum()}, len(labels)


class ClassificationTask(Task):
    data_kinds = ("digits", "folder")
    takes_path = ("folder",)
    metric = "accuracy"
    progress_metric = ("accuracy", "acc", ".2%")
    unit = "images"
    precise_bn = True  # a few dozen steps an epoch: the running averages would lag far behind the weights

    def prepare(self) -> None:
        config, card = self.config, self.card
        # Fine-tuning: the weights' input size and normalisation, RGB (the digits repeated to three channels).
        normalize, pretrained_size, self.lr_scale = None, None, 1.0
        if config.pretrained:
            from paperzoo.weights import get_weights

            preprocessing = get_weights(config.model, config.pretrained).preprocessing  # an unknown tag fails here
            if preprocessing is not None and preprocessing.mean:
                normalize = (preprocessing.mean, preprocessing.std)
            pretrained_size = preprocessing.crop if preprocessing is not None else None
            self.lr_scale = 0.1  # only the new head starts from scratch: a tenth of the recipe's rate, as transfer
        self.normalize = normalize
        self.image_size = config.image_size or pretrained_size or card.input.shape[-1]
        if self.image_size < card.input.min_size:
            raise ValueError(f"{config.model} takes images of at least {card.input.min_size}x{card.input.min_size}; "
                             f"--image-size {self.image_size} is too small")
        # --model-kwargs in_chans=N reads the data with N channels (greyscale folders: in_chans=1); it was passed
        # to the model alone, and the run stopped on "--image-size 32 does not suit resnet18: ... 3 channels"
        in_chans = config.model_kwargs.get("in_chans")
        if config.data == "digits":
            self.channels = in_chans or (3 if config.pretrained else 1)
            self.train_set = datasets.digits("train", self.image_size, self.channels, seed=config.seed,
                                             normalize=normalize)
            self.test_set = datasets.digits("test", self.image_size, self.channels, seed=config.seed,
                                            normalize=normalize)
            self.classes = [str(d) for d in range(10)]
        else:
            if in_chans not in (None, 1, 3):
                raise ValueError(f"--model-kwargs in_chans={in_chans}: a folder's images are read as RGB (3, the "
                                 "default) or greyscale (in_chans=1)")
            self.channels = in_chans or 3
            self.train_set, self.test_set, self.classes = datasets.image_folder(
                config.data_path, self.image_size, self.channels, seed=config.seed, normalize=normalize)
        with torch.device("meta"):  # the model's own input check, at no cost: some networks take only some sizes
            probe = create_model(config.model, **self.build_kwargs()).eval()
            try:
                probe(torch.empty(2, self.channels, self.image_size, self.image_size))
            except ValueError as err:
                raise ValueError(f"--image-size {self.image_size} does not suit {config.model}: {err}") from None

    @property
    def lr(self) -> float:
        return self.config.lr or self.recipe.lr * self.lr_scale

    def model_kwargs(self) -> dict[str, Any]:
        # With pretrained weights, everything but the classifier (reshaped for these classes) starts from them.
        return {"num_classes": len(self.classes), "in_chans": self.channels}

    def settings(self) -> dict[str, Any]:
        return {"image_size": self.image_size}

    def objective(self, model: nn.Module) -> nn.Module:
        return _Step(model)

    def statistics_forward(self, model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor]) -> None:
        model(batch[0])

    def notes(self) -> list[str]:
        paper_size = self.card.input.shape[-1]
        if self.image_size != paper_size:
            return [f"images of {self.image_size}×{self.image_size} pixels, not the card's {paper_size}×{paper_size}"]
        return []

    def checkpoint_extra(self) -> dict[str, Any]:
        return {"classes": self.classes}

    def inference(self) -> dict[str, Any]:
        # data.image_transform(image_size, channels, normalize) is what the folder's images went through
        mean, std = self.normalize if self.normalize is not None else (None, None)
        return {"model_kwargs": self.built_kwargs(), "classes": self.classes, "image_size": self.image_size,
                "channels": self.channels, "mean": mean, "std": std}

    def evaluate(self, model: nn.Module, loader: DataLoader, device: torch.device, context: distributed.Context,
                 amp: bool) -> dict[str, float]:
        """Mean loss and accuracy over this process's part of the test set, summed over all processes."""
        model.eval()
        loss_sum = correct = count = 0.0
        with torch.no_grad(), autocast(device, amp):
            for images, labels in loader:
                images, labels = images.to(device), labels.to(device)
                logits = model(images).float()
                loss_sum += F.cross_entropy(logits, labels, reduction="sum").item()
                correct += (logits.argmax(1) == labels).sum().item()
                count += len(labels)
        loss_sum, correct, count = distributed.all_sum([loss_sum, correct, count], context, device)
        return {"loss": loss_sum / count, "accuracy": correct / count}


TASK = ClassificationTask
