"""The paper's training recipe as an optimizer and a learning-rate schedule (the card's ``TrainingRecipe``)."""

from __future__ import annotations

import math

import torch
from torch import nn

from paperzoo.registry import TrainingRecipe


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


def make_schedule(optimizer: torch.optim.Optimizer, recipe: TrainingRecipe, epochs: int,
                  steps_per_epoch: int = 1) -> torch.optim.lr_scheduler.LRScheduler:
    """The learning-rate factor, stepped after every optimizer step and constant within an epoch: the recipe's
    warm-up, then its steps at fractions of the run, an exponential decay, a linear decay to 0, or a cosine
    decay to 0."""
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

    def factor(step: int) -> float:
        epoch = step // steps_per_epoch
        return recipe.warmup_factor if epoch < recipe.warmup_epochs else decay(epoch)

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
