r"""ODE-Net, the MNIST classifier of Neural Ordinary Differential Equations, and its ResNet baseline.

Paper: "Neural Ordinary Differential Equations", Ricky T. Q. Chen, Yulia Rubanova, Jesse Bettencourt, David
Duvenaud, NeurIPS 2018. https://arxiv.org/abs/1806.07366

A residual network updates its hidden state in discrete steps, $h_{t+1} = h_t + f(h_t, \theta_t)$ (eq. 1): an Euler
step of a differential equation. The paper takes the limit of ever more, ever smaller steps and parametrises
the *derivative* of the hidden state with a neural network (eq. 2):

$$
\frac{dh(t)}{dt} = f(h(t), t, \theta), \qquad
h(T) = h(0) + \int_0^T f(h(t), t, \theta)\, dt = \text{ODESolve}(h(0), f, 0, T, \theta).
$$

* The output is whatever a black-box ODE solver returns: an adaptive one (here dopri5, Dormand–Prince 5(4))
  evaluates f as often as the error tolerance asks, so the depth (the number of function evaluations, NFE) is
  chosen per input, and a looser tolerance trades accuracy for speed (§3, Figure 3).
* The parameters are shared over "depth": one f, with the time t as an input (here an extra constant channel
  of f's convolutions, ``ConcatConv2d``), replaces the 6 residual blocks: 0.21M parameters instead of 0.58M.
* Gradients by the adjoint method (§2, eq. 4–5): the adjoint $a(t) = \partial L / \partial h(t)$ obeys
  $da/dt = -a(t)^T \partial f / \partial h$, solved backwards from T to 0 together with $h(t)$ and
  $dL/d\theta = -\int_T^0 a(t)^T \partial f / \partial \theta \, dt$, so training needs O(1) memory in the depth instead
  of storing every solver step (``adjoint=True``). The other way, backpropagating through the solver's operations
  (``adjoint=False``, the authors' default and the paper's "RK-Net" of Table 1), is exact for the computed solution and
  stores every step.

The MNIST network (§3, Table 1; the layers of the authors' ``examples/odenet_mnist.py``): downsample twice,
then the ODE block (or, for the ResNet baseline, 6 standard pre-activation residual blocks), then the head.
GroupNorm(32 groups) everywhere. At the canonical 1×28×28 input::

    image 1×28×28
      conv 3×3, 64, no padding                                 64×26×26
      GroupNorm → ReLU → conv 4×4, 64, stride 2, padding 1     64×13×13
      GroupNorm → ReLU → conv 4×4, 64, stride 2, padding 1     64×6×6
      ODE block: h(1) = h(0) + ∫_0^1 f(h, t) dt                64×6×6
          f(h, t) = GN → ReLU → ConcatConv 3×3 ([t, h]: 65 → 64) → GN → ReLU → ConcatConv 3×3 → GN
      (ResNet: 6 × [x + conv 3×3(ReLU(GN(conv 3×3(ReLU(GN(x))))))]  64×6×6)
      head: GroupNorm → ReLU → global average pool → fc           10 logits

Parameter counts, derived by hand from that configuration: the downsampling has (64·9 + 64) + 128 +
(64·64·16 + 64) + 128 + (64·64·16 + 64) = 132,096; f has two ConcatConv2d of 65·64·9 + 64 = 37,504 and
three GroupNorms of 128, 75,392; the head 128 + 64·10 + 10 = 778. ODE-Net: 208,266. A residual block has two
bias-free 3×3 convolutions and two GroupNorms, 73,984, six of them 443,904, so the ResNet has 576,778.

Table 1 of the paper prints 0.22M and 0.60M. Neither is what the authors' script builds with its default
downsampling (208,266 ≈ 0.21M and 576,778 ≈ 0.58M); its other option, ``--downsampling-method res``
(``downsampling="res"`` here: the 3×3 conv, then two stride-2 residual blocks with 1×1 projection
shortcuts, 156,800 parameters), gives the ResNet 601,482 ≈ 0.60M but the ODE-Net 232,970 ≈ 0.23M. No single
downsampling gives both printed figures (0.22M needs one of 139k–149k parameters, 0.60M one of 150k–160k), so
both variants here use the script's default, the same downsampling as the paper says ("which are replaced by
an ODESolve module"), and the counts above.

The class scores are ordinary logits, and the classifier method set is as usual: ``forward_features`` returns
the ODE's final state h(1) (N, 64, 6, 6) (the residual stack's output for the ResNet), ``forward_head`` the
head's GroupNorm, ReLU, pool and fc, ``num_features`` = 64.

The number of function evaluations of the last forward pass is ``model.ode_block.nfe`` (reset at every
forward); ``model.ode_block.nfe_backward`` counts those of the backward pass after it (the adjoint's; 0 for
direct backpropagation, which re-evaluates nothing).

Deviations from the paper and the authors' script:

* Multiply-accumulates depend on the NFE, known only by running the solver on real numbers. On the meta
  device (no values, hence no step-size control) the block takes a single Euler step, one evaluation of f, so
  the card's GMACs are the network's cost at NFE = 1: the downsampling and head (0.0138 GMACs) plus 0.0027
  GMACs per evaluation of f. A dopri5 solve costs 2 evaluations to choose its first step and 6 per attempted
  step (the 7th stage is the next step's first); at rtol = atol = 1e-3 it takes 14 to 32 on the digits.
* Initialisation: PyTorch's defaults, as the authors' script (the paper does not say).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from paperzoo.layers import ConvNormAct
from paperzoo.layers.classifier import ClassifierPool, ImageClassifier
from paperzoo.registry import InputSpec, ModelCard, Paper, TrainingRecipe, register

__all__ = ["ODENet", "ODEBlock", "ODEDynamics", "ConcatConv2d", "ResidualBlock", "group_norm"]


def group_norm(channels: int) -> nn.GroupNorm:
    """The authors' normalisation: GroupNorm with 32 groups (fewer for narrow layers)."""
    return nn.GroupNorm(min(32, channels), channels)


class ConcatConv2d(nn.Module):
    """A convolution that also sees the time: t is appended to the input as one constant channel, so that one
    set of weights can compute a different f at every t (the dynamics depend on time, eq. 2)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, padding: int = 1) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels + 1, out_channels, kernel_size, padding=padding)

    def forward(self, t: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        time_channel = torch.ones_like(h[:, :1]) * t  # (N, 1, H, W), every entry t
        return self.conv(torch.cat([time_channel, h], dim=1))  # [t, h]: (N, 1 + C, H, W)


class ODEDynamics(nn.Module):
    """The dynamics f(h(t), t, θ) of the ODE block, with torchdiffeq's call signature ``f(t, h)``: a
    pre-activation pair of time-aware 3×3 convolutions and a final GroupNorm. Counts its evaluations."""

    def __init__(self, channels: int = 64) -> None:
        super().__init__()
        self.norm1 = group_norm(channels)
        self.conv1 = ConcatConv2d(channels, channels)
        self.norm2 = group_norm(channels)
        self.conv2 = ConcatConv2d(channels, channels)
        self.norm3 = group_norm(channels)
        self.act = nn.ReLU(inplace=True)
        self.nfe = 0  # function evaluations since the ODE block last reset it

    def forward(self, t: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        self.nfe += 1
        out = self.conv1(t, self.act(self.norm1(h)))
        out = self.conv2(t, self.act(self.norm2(out)))
        return self.norm3(out)  # dh/dt, the shape of h


def ode_solve(dynamics: nn.Module, h0: torch.Tensor, times: torch.Tensor, *, method: str, rtol: float, atol: float,
              adjoint: bool) -> torch.Tensor:
    """h(T) from h(0) = ``h0`` and f = ``dynamics``, ``times`` = [0, T], by torchdiffeq's solver ``method``."""
    if h0.is_meta:  # no values to control the step size with: one Euler step (see the module docstring)
        return h0 + (times[1] - times[0]) * dynamics(times[0], h0)
    from torchdiffeq import odeint, odeint_adjoint  # imported here: building a model does not need it

    solve = odeint_adjoint if adjoint else odeint
    trajectory = solve(dynamics, h0, times, rtol=rtol, atol=atol, method=method)
    return trajectory[1]  # the states at times [0, T]: (2, N, C, H, W) → h(T)


# The number of solver steps depends on the values (the step-size control), which no traced graph can hold: torch.fx
# records the solve as one operation (torch.export cannot: see tests/test_export.py).
torch.fx.wrap("ode_solve")


class ODEBlock(nn.Module):
    """h(T) = ODESolve(h(0), f, 0, T, θ) (eq. 2), by torchdiffeq (the authors' library).

    Args:
        dynamics: the network f(t, h).
        integration_time: T; the paper integrates from 0 to 1.
        method: the solver, ``"dopri5"`` (adaptive Dormand–Prince) as the paper, or any of torchdiffeq's.
        rtol, atol: the solver's relative and absolute error tolerances (1e-3, the authors' script).
        adjoint: compute gradients with the adjoint method (O(1) memory, §2) instead of backpropagating
            through the solver's steps.
    """

    def __init__(self, dynamics: nn.Module, integration_time: float = 1.0, method: str = "dopri5",
                 rtol: float = 1e-3, atol: float = 1e-3, adjoint: bool = False) -> None:
        super().__init__()
        self.dynamics = dynamics
        self.method, self.rtol, self.atol, self.adjoint = method, rtol, atol, adjoint
        # Not in the state_dict: it is configuration, and it follows the model's device and dtype.
        self.register_buffer("integration_times", torch.tensor([0.0, integration_time]), persistent=False)
        self.nfe = 0

    def forward(self, h0: torch.Tensor) -> torch.Tensor:
        self.dynamics.nfe = 0
        h1 = ode_solve(self.dynamics, h0, self.integration_times.to(h0.dtype), method=self.method, rtol=self.rtol,
                       atol=self.atol, adjoint=self.adjoint)
        self.nfe = self.dynamics.nfe
        return h1

    @property
    def nfe_backward(self) -> int:
        """Evaluations of f since the last forward pass ended: those of the adjoint solve in ``backward``."""
        return self.dynamics.nfe - self.nfe

    def extra_repr(self) -> str:
        return (f"method={self.method!r}, rtol={self.rtol}, atol={self.atol}, adjoint={self.adjoint}, "
                f"T={self.integration_times[1].item() if not self.integration_times.is_meta else '?'}")


class ResidualBlock(nn.Module):
    """A standard pre-activation residual block (He et al. 2016b, "Identity Mappings"), as the baseline uses:
    y = x + conv(ReLU(GN(conv(ReLU(GN(x)))))), 3×3 convolutions without bias. With ``stride`` 2 the shortcut
    is a 1×1 projection of the pre-activated input (the ``downsampling="res"`` option)."""

    def __init__(self, channels: int = 64, stride: int = 1) -> None:
        super().__init__()
        self.norm1 = group_norm(channels)
        self.act = nn.ReLU(inplace=True)
        self.projection = nn.Conv2d(channels, channels, 1, stride=stride, bias=False) if stride != 1 else None
        self.conv1 = nn.Conv2d(channels, channels, 3, stride=stride, padding=1, bias=False)
        self.norm2 = group_norm(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pre_activated = self.act(self.norm1(x))
        shortcut = x if self.projection is None else self.projection(pre_activated)
        residual = self.conv2(self.act(self.norm2(self.conv1(pre_activated))))  # f(x)
        return shortcut + residual  # h_{t+1} = h_t + f(h_t) (eq. 1): the step the ODE block makes continuous


class ODENet(ImageClassifier):
    """The MNIST ODE-Net of §3 (``feature_block="ode"``) or its ResNet baseline (``"residual"``).

    Args:
        num_classes: outputs of the fc layer; 0 leaves it out and returns the pooled features.
        in_chans: channels of the input image.
        width: channels after the first convolution, throughout (64).
        downsampling: ``"conv"`` (the authors' default: two 4×4 stride-2 convolutions) or ``"res"`` (two
            stride-2 residual blocks, the script's other option).
        feature_block: ``"ode"``, one ODE block; ``"residual"``, ``num_residual_blocks`` residual blocks.
        num_residual_blocks: the baseline's depth (6).
        integration_time, method, rtol, atol, adjoint: the ODE block's, see :class:`ODEBlock`.
    """

    # The default downsampling maps 6×6 to 1×1 (6 → 4 → 2 → 1); "res" downsampling takes 3×3 (set per instance).
    min_input_size = 6
    model_name = "odenet"
    first_conv = "downsampling.0.conv"
    no_checkpointing_reason = ("the continuous block is one unit: recomputing it in the backward pass holds the same "
                               "memory at the peak; the paper's memory saver is the adjoint method, adjoint=True")
    no_levels_reason = ("its features come from one continuous block, h(1) = h(0) + ∫ f(h(t), t) dt, not from "
                        "stages of maps at growing strides")

    def __init__(
        self,
        num_classes: int = 10,
        in_chans: int = 1,
        width: int = 64,
        downsampling: str = "conv",
        feature_block: str = "ode",
        num_residual_blocks: int = 6,
        integration_time: float = 1.0,
        method: str = "dopri5",
        rtol: float = 1e-3,
        atol: float = 1e-3,
        adjoint: bool = False,
    ) -> None:
        super().__init__()
        if downsampling not in ("conv", "res") or feature_block not in ("ode", "residual"):
            raise ValueError(f"downsampling must be 'conv' or 'res' and feature_block 'ode' or 'residual', got "
                             f"{downsampling!r} and {feature_block!r}")
        self.num_classes = num_classes
        self.in_chans = in_chans
        self.num_features = width

        if downsampling == "conv":
            self.downsampling = nn.Sequential(
                ConvNormAct(in_chans, width, 3, padding=0, norm_layer=group_norm, bias=True),  # 28 → 26
                ConvNormAct(width, width, 4, stride=2, padding=1, norm_layer=group_norm, bias=True),  # 26 → 13
                # 13 → 6; linear: the ODE's f (or the first residual block) starts with GroupNorm → ReLU
                ConvNormAct(width, width, 4, stride=2, padding=1, norm_layer=None, act_layer=None),
            )
        else:
            self.min_input_size = 3  # 3 → 1 → 1 → 1
            self.downsampling = nn.Sequential(
                nn.Conv2d(in_chans, width, 3),  # 28 → 26
                ResidualBlock(width, stride=2),  # 26 → 13
                ResidualBlock(width, stride=2),  # 13 → 7
            )

        self.ode_block: ODEBlock | None = None
        self.residual_blocks: nn.Sequential | None = None
        if feature_block == "ode":
            self.ode_block = ODEBlock(ODEDynamics(width), integration_time, method, rtol, atol, adjoint)
        else:
            self.residual_blocks = nn.Sequential(*[ResidualBlock(width) for _ in range(num_residual_blocks)])

        self.norm = group_norm(width)
        self.act = nn.ReLU(inplace=True)
        self.global_pool = ClassifierPool("avg")
        self.fc = nn.Linear(width, num_classes) if num_classes > 0 else nn.Identity()
        self.final_modules = ("ode_block",) if feature_block == "ode" else ("residual_blocks",)
        self.first_conv = "downsampling.0.conv" if downsampling == "conv" else "downsampling.0"

    def forward_stem(self, x: torch.Tensor) -> torch.Tensor:
        return self.downsampling(x)  # h(0)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """Final state h(1) → logits ``(N, num_classes)``, or the pooled features ``(N, 64)`` if ``pre_logits``."""
        x = self.head_drop(self.global_pool(self.act(self.norm(x))))  # (N, 64, h, w) → (N, 64)
        return x if pre_logits else self.fc(x)

_PAPER = Paper(
    title="Neural Ordinary Differential Equations",
    authors="Ricky T. Q. Chen, Yulia Rubanova, Jesse Bettencourt, David Duvenaud",
    year=2018,
    url="https://arxiv.org/abs/1806.07366",
)
_INNOVATIONS = (
    "continuous depth: the hidden state follows dh/dt = f(h(t), t, theta), solved by a black-box ODE solver",
    "adaptive computation: the solver picks the number of function evaluations for the requested tolerance",
    "the adjoint method gives gradients with O(1) memory in depth by solving a second ODE backwards in time",
    "one set of parameters shared over depth: 0.21M parameters against the ResNet baseline's 0.58M",
)
_SCRIPT = "the authors' examples/odenet_mnist.py (github.com/rtqichen/torchdiffeq)"
# The authors' script: SGD, momentum 0.9, lr 0.1 (× batch/128), batch 128, 160 epochs, ÷10 at epochs 60, 100, 140;
# no weight decay. The paper does not give the recipe.
_RECIPE = TrainingRecipe(optimizer="sgd", lr=0.1, momentum=0.9, weight_decay=0.0, schedule="step",
                         milestones=(60 / 160, 100 / 160, 140 / 160), gamma=0.1, batch_size=128,
                         source=_SCRIPT)


def _card(name: str, architecture: str, params: int, gmacs: float, params_source: str, notes: str,
          canonical: bool = False) -> ModelCard:
    return ModelCard(
        name=name,
        architecture=architecture,
        task="image-classification",
        paper=_PAPER,
        innovations=_INNOVATIONS,
        input=InputSpec(kind="image", shape=(1, 28, 28), min_size=ODENet.min_input_size),
        params=params,
        params_source=params_source,
        reference="paper",
        gmacs=gmacs,
        canonical=canonical,
        recipe=_RECIPE,
        notes=notes,
    )


@register(_card(
    "odenet", "ODE-Net (MNIST)", params=208_266, gmacs=0.017, canonical=True,
    params_source=f"derived by hand from the paper's MNIST network as {_SCRIPT} builds it: downsampling 132,096 "
                  "+ ODE dynamics 75,392 + head 778; Table 1 prints 0.22M, which this count (0.21M) does not "
                  "round to (see the module docstring)",
    notes="dopri5, rtol = atol = 1e-3, t from 0 to 1; adjoint=True for the adjoint method. The GMACs are the "
          "cost at one function evaluation (0.0027 GMACs per further evaluation; dopri5 takes 14 to 32 here); "
          "model.ode_block.nfe counts them."))
def odenet(**kwargs: Any) -> ODENet:
    """ODE-Net: one ODE block of 64 channels, solved from t = 0 to 1 by dopri5."""
    return ODENet(feature_block="ode", **kwargs)


@register(_card(
    "odenet_resnet", "ResNet (ODE-Net baseline)", params=576_778, gmacs=0.030,
    params_source=f"derived by hand from the paper's baseline as {_SCRIPT} builds it (--network resnet): "
                  "downsampling 132,096 + 6 residual blocks of 73,984 + head 778; Table 1 prints 0.60M, which is "
                  "the script's --downsampling-method res build (601,482; downsampling='res')",
    notes="Table 1's ResNet: the ODE-Net with 6 standard pre-activation residual blocks in place of the ODE block."))
def odenet_resnet(**kwargs: Any) -> ODENet:
    """The ResNet baseline of Table 1: 6 residual blocks instead of the ODE block."""
    return ODENet(feature_block="residual", **kwargs)


if __name__ == "__main__":
    from paperzoo.cli import main

    main(["run", "odenet"])
