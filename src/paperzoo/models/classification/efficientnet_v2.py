"""EfficientNetV2.

Paper: "EfficientNetV2: Smaller Models and Faster Training", Mingxing Tan, Quoc V. Le, ICML 2021.
https://arxiv.org/abs/2104.00298

EfficientNet optimised FLOPS and parameters, but FLOPS are not training time. Studying where EfficientNet's
training time goes (§3.2), the paper finds three bottlenecks and answers each:

* Depthwise convolutions are slow in the early layers, where accelerators cannot use them well. Fused-MBConv
  (Figure 2, :class:`FusedMBConv`) replaces MBConv's 1×1 expansion and k×k depthwise convolution by one
  regular k×k convolution: more FLOPS, but faster. Fusing stages 1 to 3 speeds up training with little cost;
  fusing all stages slows it down (Table 3), so a search decides where each kind goes.
* A training-aware neural architecture search (§3.3) over {MBConv, Fused-MBConv}, the number of layers, 3×3 or
  5×5 kernels and expansion ratios 1, 4 or 6, rewarding accuracy, training step time and parameter size
  (A · S^w · P^v), gives EfficientNetV2-S (Table 4). It uses Fused-MBConv early, small expansion ratios (less
  memory access), only 3×3 kernels with more layers to make up the receptive field, and drops EfficientNet's
  last stride-1 stage.
* Training with very large images is slow, and scaling every stage equally is not optimal. V2-M and V2-L
  scale V2-S up (§3.4) with the inference size capped at 480 and more layers added to the later stages.
  Progressive learning (§4) trains on small images first and grows them, raising the regularisation (dropout,
  RandAugment, mixup) with the size: a training schedule, not part of the network built here.

Data flow of EfficientNetV2-S (Table 4, with its stage numbers) at 384×384::

    image 3×384×384
      stage0 (stem): conv 3×3, 24, stride 2 → BN → SiLU                      24×192×192
      stage1: Fused-MBConv1, k3×3, 24, 2 layers                              24×192×192
      stage2: Fused-MBConv4, k3×3, 48, 4 layers, stride 2                    48×96×96
      stage3: Fused-MBConv4, k3×3, 64, 4 layers, stride 2                    64×48×48
      stage4: MBConv4, k3×3, SE 0.25, 128, 6 layers, stride 2               128×24×24
      stage5: MBConv6, k3×3, SE 0.25, 160, 9 layers                         160×24×24
      stage6: MBConv6, k3×3, SE 0.25, 256, 15 layers, stride 2              256×12×12
      stage7: head_conv 1×1, 1280 → BN → SiLU                              1280×12×12
              global average pool → dropout → fc                             1000 logits

    Fused-MBConv:  x ─► k×k conv expanding ×t, SiLU ─► 1×1 project, linear ─► drop ─(+)─► y
                   └────────── identity, only when the stride is 1 and the width is kept ──┘
    MBConv:        the inverted residual of MobileNetV2 with squeeze-and-excitation
                   (:class:`paperzoo.layers.InvertedResidual`), as in EfficientNet.

Deviations from the paper, all torchvision's (kept so that its weights load and its outputs match):

* V2-M and V2-L are the released code's configurations (:data:`V2_M_STAGES`, :data:`V2_L_STAGES`): the paper
  says how they were scaled (§3.4) but tabulates only V2-S. Both end with a seventh block stage (MBConv6,
  512 or 640 channels, stride 1), the kind of stage V2-S dropped.
* Fused-MBConv1 (t = 1) is one k×k convolution with its activation and no 1×1 projection, as in the released
  code; Figure 2 draws conv k×k → SE → conv 1×1. No Fused-MBConv stage of Table 4 uses squeeze-excitation,
  so the block has none. MBConv's squeeze-excitation has max(1, ⌊input channels / 4⌋) units (released code).
* Padding is symmetric, (k − 1) / 2 on each side; the TensorFlow original pads "SAME", which for a stride-2
  layer on an even size puts the extra pixel on the bottom and right only.
* BatchNorm eps 1e-3 (the released code's) and PyTorch's default momentum 0.1, as torchvision, which trained
  its V2-S and V2-M weights itself (momentum only changes how training updates the running statistics).
* Stochastic depth: block i of N drops its residual branch with 0.2 · i / N in training (torchvision's rate
  for all three sizes; the paper does not list it); dropout before the classifier is fixed at 0.2, 0.3, 0.4
  for S, M, L, where progressive learning would raise it during training (§4).
* Initialisation as torchvision: Kaiming normal (fan-out) convolutions, classifier weights uniform in
  ±1/√(num_classes), zero biases.
* ``features_only`` returns, at each stride 2, 4, 8, 16 and 32, the output of the last stage at that stride
  (V2-S: stages 1, 2, 3, 5, 6, as timm's backbones do); the head convolution belongs to the classifier and is
  not built.

TorchScript: torchvision's EfficientNetV2 compiles with ``torch.jit.script``; this one does not (its input check and
the shared classifier plumbing are Python that TorchScript cannot compile, and TorchScript is deprecated upstream).
``torch.export``, ``torch.compile(fullgraph=True)`` and ``torch.fx`` capture it instead (tests/test_export.py,
tests/test_graph_capture.py).
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any, NamedTuple

import torch
from torch import nn

from paperzoo.layers import ConvNormAct, FeatureInfo, InvertedResidual, StochasticDepth
from paperzoo.layers.classifier import ClassifierPool, ImageClassifier
from paperzoo.registry import InputSpec, ModelCard, Paper, TrainingRecipe, register

__all__ = ["EfficientNetV2", "FusedMBConv", "StageSpec", "V2_S_STAGES", "V2_M_STAGES", "V2_L_STAGES"]


class FusedMBConv(nn.Module):
    """Fused-MBConv (Figure 2): one regular k×k convolution does the work of MBConv's 1×1 expansion and k×k
    depthwise convolution, then a linear 1×1 projection; an identity shortcut where the shapes agree.

    Args:
        in_channels, out_channels: widths of the incoming and outgoing bottlenecks.
        expand_ratio: t; the k×k convolution produces t · in_channels channels. With t = 1 it produces
            ``out_channels`` directly, with its activation, and there is no projection.
        kernel_size, stride: of the fused k×k convolution.
        norm_layer: a constructor taking the channel count.
        stochastic_depth_prob: probability of dropping the residual branch of an example in training.
    """

    def __init__(self, in_channels: int, out_channels: int, *, expand_ratio: float, kernel_size: int = 3,
                 stride: int = 1, norm_layer: Callable[[int], nn.Module] = nn.BatchNorm2d,
                 stochastic_depth_prob: float = 0.0) -> None:
        super().__init__()
        expanded = round(in_channels * expand_ratio)
        if expanded == in_channels:  # Fused-MBConv1: nothing to expand, so nothing to project back
            self.fused_conv = ConvNormAct(in_channels, out_channels, kernel_size, stride=stride,
                                          norm_layer=norm_layer, act_layer=nn.SiLU)
            self.project = nn.Identity()
        else:
            self.fused_conv = ConvNormAct(in_channels, expanded, kernel_size, stride=stride,
                                          norm_layer=norm_layer, act_layer=nn.SiLU)
            # Linear, as MBConv's projection: the bottleneck keeps no non-linearity.
            self.project = ConvNormAct(expanded, out_channels, 1, norm_layer=norm_layer, act_layer=None)
        self.use_residual = stride == 1 and in_channels == out_channels
        self.stochastic_depth = StochasticDepth(stochastic_depth_prob) if self.use_residual else nn.Identity()
        self.out_channels = out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        branch = self.project(self.fused_conv(x))
        if self.use_residual:
            # The shortcut joins the two bottlenecks, added in place into the branch's fresh output (no autograd
            # node needs it): one allocation fewer per block, as torchvision's `result += input`.
            return self.stochastic_depth(branch).add_(x)
        return branch


class StageSpec(NamedTuple):
    """One row of Table 4: the operator (``"fused"``: Fused-MBConv, ``"mbconv"``: MBConv), its expansion
    ratio t, kernel size, the stride of its first layer, output channels, number of layers, and the
    squeeze-excitation ratio (``None``: none)."""

    operator: str
    expand_ratio: int
    kernel_size: int
    stride: int
    channels: int
    layers: int
    se_ratio: float | None = None


# Table 4 (stage 0, the stem, has 24 channels).
V2_S_STAGES = (
    StageSpec("fused", 1, 3, 1, 24, 2),
    StageSpec("fused", 4, 3, 2, 48, 4),
    StageSpec("fused", 4, 3, 2, 64, 4),
    StageSpec("mbconv", 4, 3, 2, 128, 6, 0.25),
    StageSpec("mbconv", 6, 3, 1, 160, 9, 0.25),
    StageSpec("mbconv", 6, 3, 2, 256, 15, 0.25),
)
# The released code's V2-M (stem 24) and V2-L (stem 32), scaled up from V2-S as §3.4 describes.
V2_M_STAGES = (
    StageSpec("fused", 1, 3, 1, 24, 3),
    StageSpec("fused", 4, 3, 2, 48, 5),
    StageSpec("fused", 4, 3, 2, 80, 5),
    StageSpec("mbconv", 4, 3, 2, 160, 7, 0.25),
    StageSpec("mbconv", 6, 3, 1, 176, 14, 0.25),
    StageSpec("mbconv", 6, 3, 2, 304, 18, 0.25),
    StageSpec("mbconv", 6, 3, 1, 512, 5, 0.25),
)
V2_L_STAGES = (
    StageSpec("fused", 1, 3, 1, 32, 4),
    StageSpec("fused", 4, 3, 2, 64, 7),
    StageSpec("fused", 4, 3, 2, 96, 7),
    StageSpec("mbconv", 4, 3, 2, 192, 10, 0.25),
    StageSpec("mbconv", 6, 3, 1, 224, 19, 0.25),
    StageSpec("mbconv", 6, 3, 2, 384, 25, 0.25),
    StageSpec("mbconv", 6, 3, 1, 640, 7, 0.25),
)
FEATURE_STRIDES = (2, 4, 8, 16, 32)


class EfficientNetV2(ImageClassifier):
    """EfficientNetV2: a stem, stages of Fused-MBConv and MBConv blocks, and a 1×1 head convolution.

    Args:
        stages: the block stages, one :class:`StageSpec` each (:data:`V2_S_STAGES` is Table 4).
        stem_channels: output channels of the stride-2 3×3 stem (stage 0).
        head_channels: output channels of the final 1×1 convolution, the pooled features' width.
        dropout: probability of dropping a pooled feature before the classifier.
        stochastic_depth_prob: drop probability of the residual branch of the last block; block i of N drops
            with ``stochastic_depth_prob · i / N`` in training.
        norm_eps, norm_momentum: of every BatchNorm.
        num_classes: outputs of the classifier; 0 leaves it out and returns the pooled features.
        in_chans: channels of the input image.

    Initialisation as torchvision: Kaiming normal (fan-out) convolutions, BatchNorm scale 1 and shift 0,
    classifier weights uniform in ±1/√(num_classes) with zero bias.

    ``set_grad_checkpointing()`` checkpoints each (Fused-)MBConv block in training (BatchNorm stats kept exact).
    """

    # Every convolution pads by (k - 1) / 2, so a stride-2 layer maps 1 pixel to 1: a 1×1 image passes the
    # whole network, as it passes torchvision's (checked). torchvision's weights' metadata says min_size
    # (33, 33), which neither network enforces.
    min_input_size = 1
    first_conv = "stem.conv"
    final_modules = ("head_conv",)  # the 1×1 convolution to 1280 channels, part of the features as in timm
    head_dropout_name = "dropout"
    drop_path_schedule = "torchvision"
    model_name = "efficientnet_v2"

    def __init__(
        self,
        stages: Sequence[StageSpec] = V2_S_STAGES,
        stem_channels: int = 24,
        head_channels: int = 1280,
        dropout: float = 0.2,
        stochastic_depth_prob: float = 0.2,
        norm_eps: float = 1e-3,
        norm_momentum: float = 0.1,
        num_classes: int = 1000,
        in_chans: int = 3,
    ) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.in_chans = in_chans
        norm_layer = partial(nn.BatchNorm2d, eps=norm_eps, momentum=norm_momentum)

        self.stem = ConvNormAct(in_chans, stem_channels, 3, stride=2, norm_layer=norm_layer, act_layer=nn.SiLU)

        # A feature level for each stride: the output of the last stage that still has it.
        strides, stride = [], 2
        for spec in stages:
            stride *= spec.stride
            strides.append(stride)
        feature_stages = [max(i for i, s in enumerate(strides) if s == stride)
                          for stride in FEATURE_STRIDES if stride in strides]

        total_blocks, block_index = sum(spec.layers for spec in stages), 0
        in_channels = stem_channels
        built: OrderedDict[str, nn.Module] = OrderedDict()
        levels, level_modules, level = [], [], []
        for i, spec in enumerate(stages):
            blocks: list[nn.Module] = []
            for j in range(spec.layers):
                common = dict(expand_ratio=spec.expand_ratio, kernel_size=spec.kernel_size,
                              stride=spec.stride if j == 0 else 1, norm_layer=norm_layer,
                              stochastic_depth_prob=stochastic_depth_prob * block_index / total_blocks)
                if spec.operator == "fused":
                    blocks.append(FusedMBConv(in_channels, spec.channels, **common))
                elif spec.operator == "mbconv":
                    blocks.append(InvertedResidual(in_channels, spec.channels, act_layer=nn.SiLU,
                                                   se_ratio=spec.se_ratio, **common))
                else:
                    raise ValueError(f"unknown operator {spec.operator!r}; expected 'fused' or 'mbconv'")
                in_channels, block_index = spec.channels, block_index + 1
            name = f"stage{i + 1}"  # Table 4 numbers the stem as stage 0
            built[name] = nn.Sequential(*blocks)
            level.append(f"stages.{name}")
            if i in feature_stages:
                levels.append((spec.channels, strides[i], f"stages.{name}"))
                level_modules.append(tuple(level))
                level = []
        self.stages = nn.Sequential(built)
        self.feature_info = FeatureInfo(levels)
        self.level_modules = tuple(level_modules)

        self.num_features = head_channels
        self.head_conv = ConvNormAct(in_channels, head_channels, 1, norm_layer=norm_layer, act_layer=nn.SiLU)
        self.global_pool = ClassifierPool("avg")
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(head_channels, num_classes) if num_classes > 0 else nn.Identity()
        self._init_weights()

    def _init_weights(self) -> None:
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out")
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
            elif isinstance(module, nn.Linear):
                self.init_classifier(module)

    def init_classifier(self, fc: nn.Module) -> None:
        bound = 1.0 / math.sqrt(fc.out_features)
        nn.init.uniform_(fc.weight, -bound, bound)
        nn.init.zeros_(fc.bias)


_PAPER = Paper(
    title="EfficientNetV2: Smaller Models and Faster Training",
    authors="Mingxing Tan, Quoc V. Le",
    year=2021,
    url="https://arxiv.org/abs/2104.00298",
)
_INNOVATIONS = (
    "Fused-MBConv: one regular 3x3 convolution replaces expansion 1x1 + depthwise 3x3 in the early stages",
    "training-aware architecture search rewarding accuracy, training step time and parameter size",
    "small expansion ratios and 3x3 kernels with more layers; no last stride-1 stage in V2-S",
    "non-uniform scaling: inference size capped at 480, extra layers added to the later stages",
    "progressive learning: image size and regularisation grow together during training",
)


# §5.1: RMSProp with decay 0.9 and momentum 0.9, weight decay 1e-5, lr warmed up to 0.256 then decayed by 0.97
# every 2.4 epochs, batch 4096. Here at batch 128: lr 0.008, scaled linearly; the warm-up is one epoch at 10%.
_RECIPE = TrainingRecipe(optimizer="rmsprop", lr=0.008, momentum=0.9, rmsprop_decay=0.9, eps=1e-3,
                         weight_decay=1e-5, schedule="exponential", gamma=0.97, decay_every=2.4, batch_size=128,
                         warmup_epochs=1, source="Tan & Le 2021, §5.1 (lr scaled from batch 4096 to 128)")


def _card(name: str, resolution: int, params: int, gmacs: float, canonical: bool = False) -> ModelCard:
    return ModelCard(
        name=name,
        architecture=f"EfficientNetV2-{name.removeprefix('efficientnet_v2_').upper()}",
        task="image-classification",
        paper=_PAPER,
        innovations=_INNOVATIONS,
        input=InputSpec(kind="image", shape=(3, resolution, resolution), min_size=EfficientNetV2.min_input_size),
        params=params,
        params_source=f"torchvision.models.{name}, counted",
        reference=f"torchvision.models.{name}",
        gmacs=gmacs,
        recipe=_RECIPE,
        canonical=canonical,
        notes="" if name.endswith("_s") else "configuration of the released code (the paper tabulates only V2-S)",
    )


# Input sizes: the evaluation sizes of the paper (384 for S, 480 for M and L), torchvision's crop sizes too.
@register(_card("efficientnet_v2_s", 384, params=21_458_488, gmacs=8.366, canonical=True))
def efficientnet_v2_s(**kwargs: Any) -> EfficientNetV2:
    """EfficientNetV2-S (Table 4), evaluated at 384×384."""
    return EfficientNetV2(stages=V2_S_STAGES, stem_channels=24, **{"dropout": 0.2, **kwargs})


@register(_card("efficientnet_v2_m", 480, params=54_139_356, gmacs=24.582))
def efficientnet_v2_m(**kwargs: Any) -> EfficientNetV2:
    """EfficientNetV2-M, evaluated at 480×480."""
    return EfficientNetV2(stages=V2_M_STAGES, stem_channels=24, **{"dropout": 0.3, **kwargs})


@register(_card("efficientnet_v2_l", 480, params=118_515_272, gmacs=56.08))
def efficientnet_v2_l(**kwargs: Any) -> EfficientNetV2:
    """EfficientNetV2-L, evaluated at 480×480."""
    return EfficientNetV2(stages=V2_L_STAGES, stem_channels=32, **{"dropout": 0.4, **kwargs})


if __name__ == "__main__":
    from paperzoo.cli import main

    main(["run", "efficientnet_v2_s"])
