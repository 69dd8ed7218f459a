"""Training an image classifier from the registry: the loop behind ``paperzoo train``.

One run: check everything that can be checked before anything is written (the model exists and classifies
images, the data is there, the input size suits the network); build the model for the data (``num_classes``,
``in_chans``); take the optimizer and schedule from the card's paper recipe (AdamW with cosine decay where the
card has none); then, per epoch, train on a shuffled order fixed by ``(seed, epoch)``, evaluate, and write a
checkpoint, the metrics log (JSONL) and a plot into the output folder.

Resuming is exact: the data order depends only on ``(seed, epoch)`` and the checkpoint restores the model,
the optimizer, the scheduler and the random generators, so a run interrupted after epoch k and resumed ends
with the same weights as one that never stopped.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset

from paperzoo.registry import DEFAULT_RECIPE, TrainingRecipe, create_model, model_card
from paperzoo.training import checkpoints, distributed
from paperzoo.training import data as datasets


@dataclass
class TrainConfig:
    """Everything ``paperzoo train`` takes. ``None`` means "from the card": its recipe's batch size and
    learning rate, its input size."""

    model: str
    data: str = "digits"  # "digits" or "folder"
    data_path: str | None = None
    epochs: int = 10
    batch_size: int | None = None
    lr: float | None = None
    image_size: int | None = None
    device: str = "cpu"
    amp: bool = False
    out: str | None = None
    resume: str | None = None
    seed: int = 0
    workers: int = 0
    pretrained: bool | str = False  # fine-tune from published weights: True (the default ones) or a tag


@dataclass
class Plan:
    """A checked configuration: what will be trained on what, decided before anything is written."""

    config: TrainConfig
    recipe: TrainingRecipe
    batch_size: int
    lr: float
    image_size: int
    channels: int
    out: Path
    train_set: Dataset
    test_set: Dataset
    classes: list[str]


def plan(config: TrainConfig) -> Plan:
    """Check the configuration and load the data; raises ``ValueError`` (or the registry's ``KeyError``)."""
    card = model_card(config.model)
    if card.task != "image-classification":
        article = "an" if card.task[0] in "aeiou" else "a"
        raise ValueError(f"{config.model} is {article} {card.task} model; paperzoo train trains image classifiers "
                         "(`paperzoo list --task image-classification` lists them)")
    if config.epochs < 1:
        raise ValueError(f"--epochs must be at least 1, got {config.epochs}")
    # Fine-tuning: the weights' input size and normalisation, RGB (the digits repeated to three channels).
    normalize, pretrained_size, lr_scale = None, None, 1.0
    if config.pretrained:
        from paperzoo.weights import get_weights

        preprocessing = get_weights(config.model, config.pretrained).preprocessing  # an unknown tag fails here
        if preprocessing is not None and preprocessing.mean:
            normalize = (preprocessing.mean, preprocessing.std)
        pretrained_size = preprocessing.crop if preprocessing is not None else None
        lr_scale = 0.1  # only the new head starts from scratch: a tenth of the recipe's rate, as transfer recipes do
    image_size = config.image_size or pretrained_size or card.input.shape[-1]
    if image_size < card.input.min_size:
        raise ValueError(f"{config.model} takes images of at least {card.input.min_size}x{card.input.min_size}; "
                         f"--image-size {image_size} is too small")
    if config.data == "digits":
        if config.data_path is not None:
            raise ValueError("the digits data ships with scikit-learn and takes no path; use --data folder PATH")
        channels = 3 if config.pretrained else 1
        train_set = datasets.digits("train", image_size, channels, seed=config.seed, normalize=normalize)
        test_set = datasets.digits("test", image_size, channels, seed=config.seed, normalize=normalize)
        classes = [str(d) for d in range(10)]
    elif config.data == "folder":
        if config.data_path is None:
            raise ValueError("--data folder needs the path of an ImageFolder tree: --data folder PATH")
        channels = 3
        train_set, test_set, classes = datasets.image_folder(config.data_path, image_size, channels, seed=config.seed,
                                                             normalize=normalize)
    else:
        raise ValueError(f"unknown data {config.data!r}: use digits or folder PATH")
    with torch.device("meta"):  # the model's own input check, at no cost: some networks take only some sizes
        probe = create_model(config.model, num_classes=len(classes), in_chans=channels).eval()
        try:
            probe(torch.empty(2, channels, image_size, image_size))
        except ValueError as err:
            raise ValueError(f"--image-size {image_size} does not suit {config.model}: {err}") from None
    if config.resume is not None:
        checkpoints.load_checkpoint(config.resume, config.model)  # a bad checkpoint fails here, before writing
    recipe = card.recipe or DEFAULT_RECIPE
    return Plan(config, recipe, config.batch_size or recipe.batch_size, config.lr or recipe.lr * lr_scale,
                image_size, channels, Path(config.out or f"runs/{config.model}"), train_set, test_set, classes)


def make_optimizer(model: nn.Module, recipe: TrainingRecipe, lr: float) -> torch.optim.Optimizer:
    """The recipe's optimiser. RMSProp is torch's, whose ε sits outside the square root where TensorFlow's (the
    one MobileNetV2, EfficientNet and Inception v3 were trained with) puts it inside; with Inception v3's ε = 1.0
    the two differ in scale early in training, a difference a short run can absorb."""
    params = model.parameters()
    if recipe.optimizer == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=recipe.momentum, weight_decay=recipe.weight_decay,
                               nesterov=recipe.nesterov)
    if recipe.optimizer == "rmsprop":
        return torch.optim.RMSprop(params, lr=lr, alpha=recipe.rmsprop_decay, eps=recipe.eps,
                                   momentum=recipe.momentum, weight_decay=recipe.weight_decay)
    return torch.optim.AdamW(params, lr=lr, weight_decay=recipe.weight_decay, eps=recipe.eps)


def make_schedule(optimizer: torch.optim.Optimizer, recipe: TrainingRecipe,
                  epochs: int) -> torch.optim.lr_scheduler.LRScheduler:
    """Per-epoch learning-rate factor: the recipe's warm-up, then its steps at fractions of the run, an
    exponential decay, a linear decay to 0, or a cosine decay to 0."""
    if recipe.schedule == "step":
        milestones = [round(f * epochs) for f in recipe.milestones]

        def decay(epoch: int) -> float:
            return recipe.gamma ** sum(epoch >= m for m in milestones)
    elif recipe.schedule == "exponential":
        def decay(epoch: int) -> float:
            return recipe.gamma ** math.floor(epoch / recipe.decay_every)  # lr_e = lr · γ^⌊e / every⌋
    elif recipe.schedule == "linear":
        def decay(epoch: int) -> float:
            return 1.0 - epoch / epochs  # lr_e = lr · (1 − e / E)
    else:
        def decay(epoch: int) -> float:
            return 0.5 * (1.0 + math.cos(math.pi * epoch / epochs))  # lr_e = lr · ½(1 + cos(π e / E))

    def factor(epoch: int) -> float:
        return recipe.warmup_factor if epoch < recipe.warmup_epochs else decay(epoch)

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def epoch_batches(num_examples: int, batch_size: int, seed: int, epoch: int,
                  context: distributed.Context) -> list[list[int]]:
    """This process's batches for one epoch: a permutation fixed by (seed, epoch), cut into equal shards so
    that every process takes the same number of steps (DDP steps in lockstep), then into batches. A last
    batch of one example is dropped: BatchNorm cannot normalise a single value per channel."""
    order = torch.randperm(num_examples, generator=torch.Generator().manual_seed(seed * 100_003 + epoch))
    per_process = num_examples // context.world_size
    shard = order[context.rank * per_process: (context.rank + 1) * per_process].tolist()
    batches = [shard[i: i + batch_size] for i in range(0, len(shard), batch_size)]
    return [b for b in batches if len(b) > 1]


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


def evaluate(model: nn.Module, loader: DataLoader, device: torch.device, context: distributed.Context,
             amp: bool) -> tuple[float, float]:
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
    return loss_sum / count, correct / count


def autocast(device: torch.device, enabled: bool) -> torch.autocast:
    """Mixed precision: bfloat16 on CPUs, float16 on GPUs (the loss scaler guards float16's small range)."""
    dtype = torch.float16 if device.type == "cuda" else torch.bfloat16
    return torch.autocast(device_type=device.type, dtype=dtype, enabled=enabled)


def train(config: TrainConfig, on_epoch: Callable[[dict[str, Any]], None] | None = None,
          progress: Any = None) -> dict[str, Any]:
    """Run one training; returns the summary (also written to ``summary.json``)."""
    context = distributed.start(config.device)
    try:
        return _train(plan(config), context, on_epoch, progress)
    finally:
        distributed.stop(context)


def _train(p: Plan, context: distributed.Context, on_epoch: Callable[[dict[str, Any]], None] | None,
           progress: Any) -> dict[str, Any]:
    config = p.config
    device = torch.device(f"cuda:{context.local_rank}" if config.device == "cuda" and context.distributed
                          else config.device)
    torch.manual_seed(config.seed)  # the same initial weights on every process
    # With pretrained weights, everything but the classifier (reshaped for these classes) starts from them.
    model = create_model(config.model, pretrained=config.pretrained, num_classes=len(p.classes),
                         in_chans=p.channels).to(device)
    optimizer = make_optimizer(model, p.recipe, p.lr)
    schedule = make_schedule(optimizer, p.recipe, config.epochs)
    scaler = torch.amp.GradScaler(device.type, enabled=config.amp and device.type == "cuda")
    history: list[dict[str, Any]] = []
    start_epoch = 0
    if config.resume is not None:
        state = checkpoints.load_checkpoint(config.resume, config.model)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        schedule.load_state_dict(state["schedule"])
        checkpoints.set_rng_state(state["rng"])
        start_epoch, history = state["epoch"], list(state["history"])
    objective = Objective(model)
    trained = nn.parallel.DistributedDataParallel(objective) if context.distributed else objective
    test_loader = DataLoader(p.test_set, batch_size=256, num_workers=config.workers,
                             sampler=list(range(context.rank, len(p.test_set), context.world_size)))
    if context.is_main:
        p.out.mkdir(parents=True, exist_ok=True)
        (p.out / "config.json").write_text(json.dumps({**asdict(config), "recipe": asdict(p.recipe),
                                                        "batch_size": p.batch_size, "lr": p.lr,
                                                        "image_size": p.image_size}, indent=2))
    started = time.perf_counter()
    for epoch in range(start_epoch, config.epochs):
        batches = epoch_batches(len(p.train_set), p.batch_size, config.seed, epoch, context)
        loader = DataLoader(p.train_set, batch_sampler=batches, num_workers=config.workers)
        trained.train()
        loss_sum = correct = count = 0.0
        epoch_start = time.perf_counter()
        task = progress.add_task(f"epoch {epoch + 1}/{config.epochs}", total=len(batches)) if progress else None
        for step, (images, labels) in enumerate(loader):
            images, labels = images.to(device), labels.to(device)
            if hasattr(model, "set_drop_path_progress"):  # NASNet's ScheduledDropPath ramps with training done
                model.set_drop_path_progress((epoch + step / len(batches)) / config.epochs)
            with autocast(device, config.amp):
                loss, logits = trained(images, labels)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            loss_sum += loss.item() * len(labels)
            correct += (logits.argmax(1) == labels).sum().item()
            count += len(labels)
            if task is not None:
                rate = count / (time.perf_counter() - epoch_start)
                progress.update(task, advance=1, loss=loss_sum / count, accuracy=correct / count, rate=rate)
        loss_sum, correct, count = distributed.all_sum([loss_sum, correct, count], context, device)
        seconds = time.perf_counter() - epoch_start
        lr = optimizer.param_groups[0]["lr"]
        schedule.step()
        distributed.sync_buffers(model, context)
        test_loss, test_accuracy = evaluate(model, test_loader, device, context, config.amp)
        row = {"epoch": epoch + 1, "train_loss": loss_sum / count, "train_accuracy": correct / count,
               "test_loss": test_loss, "test_accuracy": test_accuracy, "lr": lr, "seconds": seconds,
               "images_per_second": count / seconds}
        history.append(row)
        if context.is_main:
            checkpoints.save_checkpoint(p.out / "checkpoint.pt", {
                "model_name": config.model, "epoch": epoch + 1, "model": model.state_dict(),
                "optimizer": optimizer.state_dict(), "schedule": schedule.state_dict(),
                "rng": checkpoints.rng_state(), "history": history, "classes": p.classes})
            write_log(p.out, history)
            write_plot(p.out / "metrics.png", history, config.model)
        if on_epoch is not None and context.is_main:
            on_epoch(row)
    identical = distributed.replicas_identical(model, context)
    summary = {"model": config.model, "epochs": config.epochs, "world_size": context.world_size,
               "final_test_accuracy": history[-1]["test_accuracy"],
               "best_test_accuracy": max(r["test_accuracy"] for r in history),
               "final_train_loss": history[-1]["train_loss"], "first_train_loss": history[0]["train_loss"],
               "seconds_this_run": time.perf_counter() - started, "replicas_identical": identical,
               "parameter_digest": distributed.parameter_digest(model), "out": str(p.out)}
    if context.is_main:
        from safetensors.torch import save_file

        weights = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
        checkpoints.atomic_write(p.out / "model.safetensors", lambda tmp: save_file(weights, str(tmp)))
        checkpoints.atomic_write(p.out / "summary.json", lambda tmp: tmp.write_text(json.dumps(summary, indent=2)))
    return summary


def write_log(out: Path, history: list[dict[str, Any]]) -> None:
    """metrics.jsonl, one line per finished epoch, rewritten whole from the checkpoint's history so that the
    log always agrees with the checkpoint, also after a resume."""
    text = "".join(json.dumps(row) + "\n" for row in history)
    checkpoints.atomic_write(out / "metrics.jsonl", lambda tmp: tmp.write_text(text))


def write_plot(path: Path, history: list[dict[str, Any]], title: str) -> None:
    """Loss and accuracy per epoch, train and test, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")  # no display: render to a file
    import matplotlib.pyplot as plt

    epochs = [row["epoch"] for row in history]
    figure, (loss_axes, accuracy_axes) = plt.subplots(1, 2, figsize=(10, 4))
    for split in ("train", "test"):
        loss_axes.plot(epochs, [row[f"{split}_loss"] for row in history], marker="o", label=split)
        accuracy_axes.plot(epochs, [row[f"{split}_accuracy"] for row in history], marker="o", label=split)
    loss_axes.set(xlabel="epoch", ylabel="cross-entropy loss", title=f"{title}: loss")
    accuracy_axes.set(xlabel="epoch", ylabel="accuracy", title=f"{title}: accuracy", ylim=(0, 1))
    for axes in (loss_axes, accuracy_axes):
        axes.grid(alpha=0.3)
        axes.legend()
    figure.tight_layout()
    checkpoints.atomic_write(path, lambda tmp: figure.savefig(tmp, format="png", dpi=100))
    plt.close(figure)
