"""The paper's training recipe as an optimizer and a learning-rate schedule (the card's ``TrainingRecipe``)."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from paperzoo.registry import TrainingRecipe


class RMSpropTF(torch.optim.Optimizer):
    """RMSProp as TensorFlow 1 computes it, the optimizer MobileNetV2, EfficientNet and Inception v3 were
    trained with (``tf.compat.v1.train.RMSPropOptimizer``)::

        ms  ← ρ · ms + (1 − ρ) · g²                 ms starts at 1
        mom ← μ · mom + lr · g / sqrt(ms + ε)       ε inside the square root, lr inside the momentum
        θ   ← θ − mom

    with the weight decay added to the gradient as the papers' L2 regulariser (g ← g + λ θ).

    torch's ``RMSprop`` differs in all three places, and at these papers' settings that decides whether a run
    learns: its ``ms`` starts at 0, so the first step divides g by sqrt((1 − ρ) g²) and moves every weight by
    about lr / sqrt(0.1) ≈ 3 lr whatever its gradient (MobileNetV2 with lr 0.045 diverged to chance; test loss
    371); its ε (1e-3 for EfficientNet, 1.0 for Inception v3) sits outside the root, damping far less.
    """

    def __init__(self, params: Any, lr: float, rho: float = 0.9, momentum: float = 0.0, eps: float = 1e-10,
                 weight_decay: float = 0.0) -> None:
        super().__init__(params, {"lr": lr, "rho": rho, "momentum": momentum, "eps": eps,
                                  "weight_decay": weight_decay})

    @torch.no_grad()
    def step(self, closure: Any = None) -> Any:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for param in group["params"]:
                if param.grad is None:
                    continue
                grad = param.grad
                if group["weight_decay"]:
                    grad = grad.add(param, alpha=group["weight_decay"])
                state = self.state[param]
                if not state:
                    state["ms"] = torch.ones_like(param)  # TensorFlow's initial mean square
                    state["mom"] = torch.zeros_like(param)
                ms, mom = state["ms"], state["mom"]
                ms.mul_(group["rho"]).addcmul_(grad, grad, value=1 - group["rho"])
                update = grad / (ms + group["eps"]).sqrt()
                mom.mul_(group["momentum"]).add_(update, alpha=group["lr"])
                param.sub_(mom)
        return loss


def make_optimizer(model: nn.Module, recipe: TrainingRecipe, lr: float) -> torch.optim.Optimizer:
    """The recipe's optimiser; RMSProp is TensorFlow's (:class:`RMSpropTF`), as the papers that use it ran it."""
    params = model.parameters()
    if recipe.optimizer == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=recipe.momentum, weight_decay=recipe.weight_decay,
                               nesterov=recipe.nesterov)
    if recipe.optimizer == "rmsprop":
        return RMSpropTF(params, lr=lr, rho=recipe.rmsprop_decay, eps=recipe.eps, momentum=recipe.momentum,
                         weight_decay=recipe.weight_decay)
    return torch.optim.AdamW(params, lr=lr, weight_decay=recipe.weight_decay, eps=recipe.eps)


def make_schedule(optimizer: torch.optim.Optimizer, recipe: TrainingRecipe, epochs: int,
                  steps_per_epoch: int = 1) -> torch.optim.lr_scheduler.LRScheduler:
    """The learning-rate factor, stepped after every optimizer step and constant within an epoch: the recipe's
    warm-up, then its steps at fractions of the run, an exponential decay, a linear decay to 0, or a cosine
    decay to 0."""
    if recipe.schedule == "step":
        # At least epoch 1: a milestone that rounds to 0 in a short run (ODE-Net's 37.5% of one epoch) would run
        # the whole schedule at the decayed rate, which is no step at all.
        milestones = [max(1, round(f * epochs)) for f in recipe.milestones]

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


@torch.no_grad()
def precise_batchnorm(model: nn.Module, batches: Any, forward: Any) -> None:
    """Recompute every BatchNorm layer's running statistics as the exact average over ``batches``, with the
    weights as they are now (Wu & Johnson, "Rethinking 'Batch' in BatchNorm", 2021, §3: "precise BN").

    In a short run the exponential moving average (momentum 0.1) lags behind the weights, which change fast:
    GoogLeNet reached 70.65% accuracy in training and 9.75% in evaluation after one epoch of the digits. Only
    the BatchNorm layers run in training mode here (dropout and stochastic depth stay off); layers that the
    evaluation forward does not reach (auxiliary classifiers) keep their statistics.
    """
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats]
    if not norms:
        return
    was_training = model.training
    saved = [(m.momentum, m.running_mean.clone(), m.running_var.clone(), m.num_batches_tracked.clone())
             for m in norms]
    reached: set[int] = set()
    hooks = [m.register_forward_pre_hook(lambda module, _: reached.add(id(module))) for m in norms]
    model.eval()
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # a cumulative average: every batch counts the same
        m.train()
    try:
        for batch in batches:
            forward(batch)
    finally:
        for hook in hooks:
            hook.remove()
        for m, (momentum, mean, var, count) in zip(norms, saved, strict=True):
            m.momentum = momentum
            if id(m) not in reached:
                m.running_mean.copy_(mean)
                m.running_var.copy_(var)
                m.num_batches_tracked.copy_(count)
        model.train(was_training)
