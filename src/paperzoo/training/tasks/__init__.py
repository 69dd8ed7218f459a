"""What differs between tasks in ``paperzoo train``: the data, the objective, the metrics. Everything else
(epochs, checkpoints, resume, torchrun, the progress bar, the log, the plot, the summary) is the one loop in
:mod:`paperzoo.training.loop`.

A task is a :class:`Task` subclass in a module of this package, named in :data:`TASK_MODULES` for each card
``task`` it trains. The loop calls, in order:

1. ``prepare()``: check the task's options and read the data (``self.train_set``, ``self.test_set``: any
   ``torch.utils.data.Dataset``), raising ``ValueError`` before anything is written;
2. ``build_model()``: the registered model, shaped for the data (classes, vocabulary, channels);
3. ``optimizers(model, lr)`` and, every step, ``train_step(...)``: by default one optimizer and
   ``objective(model)(batch) -> (loss, sums, count)``, a module so that DistributedDataParallel wraps the whole
   objective; a task with two players (the GANs) overrides ``train_step``;
4. after each epoch ``evaluate(...) -> {metric: value}`` on the test set, and ``after_epoch(...)`` for any
   picture the task draws (samples, reconstructions).

``sums`` are per-batch totals (e.g. ``{"accuracy": correct}``) that the loop adds up and divides by the summed
``count``: the train metrics of the epoch, averaged over every example on every process.

What a task may change besides: ``schedules`` (a per-step warm-up), ``distribute`` (DDP's
``find_unused_parameters``), ``gradient_clip`` (where the paper clips), ``precise_bn`` with
``statistics_forward`` (BatchNorm statistics recomputed before each evaluation), ``not_shardable`` (why
``--shard`` cannot train it), ``notes`` (where the run departs from the paper), ``settings`` (what a resume
must not change) and ``checkpoint_extra`` (classes, a vocabulary).
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, default_collate

from paperzoo.registry import DEFAULT_RECIPE, ModelCard, TrainingRecipe, create_model
from paperzoo.training.recipes import make_optimizer, make_schedule

if TYPE_CHECKING:
    from paperzoo.training import distributed
    from paperzoo.training.loop import TrainConfig

# card.task -> the module (in this package) whose TASK trains it.
TASK_MODULES: dict[str, str] = {
    "image-classification": "classification",
    "language-model": "language_model",
    "masked-language-model": "masked_language_model",
    "sequence": "sequence",
    "object-detection": "detection",
    "instance-segmentation": "detection",
    "speech": "speech",
    "semantic-segmentation": "segmentation",
    "generative": "generative",
    "translation": "translation",
}


@dataclass(frozen=True)
class Option:
    """A task's own ``paperzoo train`` option (``--name value``), e.g. a language model's context length."""

    type: type
    default: Any
    help: str
    choices: tuple[Any, ...] | None = None
    minimum: float = 0.0  # numbers must exceed it (or equal it where ``inclusive``)
    inclusive: bool = False

    def check(self, name: str, value: Any) -> Any:
        """The value as ``type``; a wrong one is a ``ValueError`` naming the option."""
        flag = "--" + name.replace("_", "-")
        try:
            value = self.type(value)
        except (TypeError, ValueError):
            expected = "an integer" if self.type is int else "a number"  # str options take any text
            raise ValueError(f"{flag} takes {expected}, got {value!r}") from None
        if self.choices is not None and value not in self.choices:
            raise ValueError(f"{flag} must be one of {', '.join(map(str, self.choices))}, got {value!r}")
        if isinstance(value, (int, float)) and not isinstance(value, bool) and (
                value < self.minimum or (value == self.minimum and not self.inclusive)):
            bound = (f"at least {self.minimum:g}" if self.inclusive else
                     "positive" if self.minimum == 0 else f"above {self.minimum:g}")
            raise ValueError(f"{flag} must be {bound}, got {value}")
        return value


class Task:
    """One kind of model's training. Subclasses set the class attributes and implement ``prepare``,
    ``build_model`` (or ``model_kwargs``), ``objective`` and ``evaluate``."""

    # the --data kinds this task reads; the first is the embedded default, those in `takes_path` need a PATH
    data_kinds: ClassVar[tuple[str, ...]] = ()
    takes_path: ClassVar[tuple[str, ...]] = ()
    # the test metric the summary reports (final and best), and which way is better
    metric: ClassVar[str] = "accuracy"
    higher_is_better: ClassVar[bool] = True
    # what the progress bar shows besides the loss: (sum key, label, format), e.g. ("accuracy", "acc", ".2%")
    progress_metric: ClassVar[tuple[str, str, str] | None] = None
    unit: ClassVar[str] = "examples"  # what count counts, for the throughput ("images", "tokens", ...)
    options: ClassVar[Mapping[str, Option]] = {}
    # recompute BatchNorm statistics exactly before each evaluation (see recipes.precise_batchnorm)
    precise_bn: ClassVar[bool] = False
    # why ``--shard`` cannot train this task ("" where it can): every process must run the same forward passes
    not_shardable: ClassVar[str] = ""
    # what the task adds to the run's settings that a resume must not change (besides the loop's own)
    train_set: Dataset
    test_set: Dataset

    def __init__(self, config: TrainConfig, card: ModelCard) -> None:
        self.config, self.card = config, card
        self.recipe: TrainingRecipe = card.recipe or DEFAULT_RECIPE
        self.option_values = {name: option.default for name, option in self.options.items()}
        for name, value in config.options.items():
            if name not in self.options:
                known = ", ".join("--" + n.replace("_", "-") for n in self.options) or "none"
                raise ValueError(f"--{name.replace('_', '-')} does not apply to {card.task} models "
                                 f"(their options: {known})")
            self.option_values[name] = self.options[name].check(name, value)

    # --- what every task defines -----------------------------------------------------------------------------

    def prepare(self) -> None:
        raise NotImplementedError

    def model_kwargs(self) -> dict[str, Any]:
        return {}

    def build_model(self) -> nn.Module:
        return create_model(self.config.model, pretrained=self.config.pretrained, **self.build_kwargs())

    def build_kwargs(self) -> dict[str, Any]:
        """The task's keywords for the data (classes, vocabulary), then the user's ``--model-kwargs``."""
        return {**self.model_kwargs(), **self.config.model_kwargs}

    def objective(self, model: nn.Module) -> nn.Module:
        """A module whose ``forward(batch)`` returns ``(loss, sums, count)``."""
        raise NotImplementedError

    def evaluate(self, model: nn.Module, loader: DataLoader, device: torch.device, context: distributed.Context,
                 amp: bool) -> dict[str, float]:
        raise NotImplementedError

    # --- what a task may change ------------------------------------------------------------------------------

    def collate(self, examples: Sequence[Any]) -> Any:
        return default_collate(examples)

    @property
    def batch_size(self) -> int:
        return self.config.batch_size or self.recipe.batch_size

    @property
    def lr(self) -> float:
        return self.config.lr or self.recipe.lr

    def optimizers(self, model: nn.Module, lr: float) -> list[torch.optim.Optimizer]:
        """The recipe's optimizer (a task with two players returns one per player)."""
        return [make_optimizer(model, self.recipe, lr)]

    def schedules(self, optimizers: list[torch.optim.Optimizer], epochs: int,
                  steps_per_epoch: int) -> list[torch.optim.lr_scheduler.LRScheduler]:
        """One learning-rate schedule per optimizer, stepped after every step: the recipe's (a task whose paper
        schedules by step, like the Transformer's warm-up, returns its own)."""
        return [make_schedule(optimizer, self.recipe, epochs, steps_per_epoch) for optimizer in optimizers]

    def distribute(self, objective: nn.Module) -> nn.Module:
        """The objective wrapped for several processes (a task whose steps leave some parameters unused, such
        as one player's, passes ``find_unused_parameters=True``)."""
        return nn.parallel.DistributedDataParallel(objective)

    def train_step(self, trained: nn.Module, batch: Any, optimizers: list[torch.optim.Optimizer], scaler: Any,
                   device: torch.device, amp: bool) -> tuple[torch.Tensor, dict[str, Any], int]:
        """One step of one optimizer on the objective's loss (a task with two players overrides ``train_step``)."""
        with autocast(device, amp):
            loss, sums, count = trained(batch)
        for optimizer in optimizers:
            optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        clip = self.gradient_clip()
        for optimizer in optimizers:
            if clip is not None:  # on the true gradients: unscaled first under float16's loss scaling
                scaler.unscale_(optimizer)
                nn.utils.clip_grad_norm_([p for group in optimizer.param_groups for p in group["params"]], clip)
            scaler.step(optimizer)
        scaler.update()
        return loss, sums, count

    def gradient_clip(self) -> float | None:
        """The largest gradient norm a step takes (``None``: not clipped), where the paper clips (Seq2Seq at 5,
        RNNsearch at 1) or the user asks."""
        return None

    def statistics_forward(self, model: nn.Module, batch: Any) -> None:
        """The evaluation-time forward of a training batch, for recomputing BatchNorm statistics."""
        raise NotImplementedError

    def notes(self) -> list[str]:
        """Where this run departs from the paper's training (printed before it starts, kept in config.json)."""
        return []

    def settings(self) -> dict[str, Any]:
        """What defines this run beyond the loop's own fields (written to config.json, compared on resume)."""
        return dict(self.option_values)

    def checkpoint_extra(self) -> dict[str, Any]:
        """Plain data the checkpoint keeps for using the model later (class names, a vocabulary)."""
        return {}

    def inference(self) -> dict[str, Any] | None:
        """What ``paperzoo predict`` (``transcribe``, ``sample``) ``--checkpoint RUN`` needs to rebuild the
        trained model and feed it as training did (config.json keeps it as "inference"): ``model_kwargs`` (see
        :meth:`built_kwargs`) and the task's own (the class names, the image size, a vocabulary, the images'
        value range); None for a task whose runs those commands do not take."""
        return None

    def built_kwargs(self) -> dict[str, Any]:
        """The keywords that build the trained model's shapes with no published weights: :meth:`build_kwargs`,
        over the weights' own configuration where the run fine-tuned them (``create_pretrained`` merges them so)."""
        if not self.config.pretrained:
            return self.build_kwargs()
        from paperzoo.weights import get_weights

        return {**get_weights(self.config.model, self.config.pretrained).model_kwargs, **self.build_kwargs()}

    def after_epoch(self, model: nn.Module, out: Path, epoch: int) -> list[str]:
        """Files drawn after an epoch (rank 0 only); returns their names."""
        return []

    def summary(self) -> dict[str, Any]:
        """What the task adds to summary.json beyond the loop's figures (per-class results)."""
        return {}

    def outputs(self) -> list[str]:
        """The files a finished run leaves beside checkpoint.pt, model.safetensors, metrics.* and summary.json."""
        return []


def autocast(device: torch.device, enabled: bool) -> torch.autocast:
    """Mixed precision: bfloat16 on CPUs, float16 on GPUs (the loss scaler guards float16's small range)."""
    dtype = torch.float16 if device.type == "cuda" else torch.bfloat16
    return torch.autocast(device_type=device.type, dtype=dtype, enabled=enabled)


def task_for(config: TrainConfig, card: ModelCard) -> Task:
    """The task that trains ``card``'s model; a model no task trains yet is a ``ValueError`` that says so."""
    module = TASK_MODULES.get(card.task)
    if module is None:
        trained = sorted(TASK_MODULES)
        raise ValueError(f"paperzoo train does not train {card.task} models yet (it trains: {', '.join(trained)}); "
                         f"`paperzoo list --task {trained[0]}` lists those models")
    return importlib.import_module(f"{__name__}.{module}").TASK(config, card)


def all_options() -> dict[str, Option]:
    """Every task's options, for the command line (each applies only to its own task)."""
    options: dict[str, Option] = {}
    for module in sorted(set(TASK_MODULES.values())):
        options.update(importlib.import_module(f"{__name__}.{module}").TASK.options)
    return options
