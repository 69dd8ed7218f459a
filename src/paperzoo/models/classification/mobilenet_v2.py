"""MobileNetV2.

Paper: "MobileNetV2: Inverted Residuals and Linear Bottlenecks", Mark Sandler, Andrew Howard, Menglong Zhu,
Andrey Zhmoginov, Liang-Chieh Chen, CVPR 2018. https://arxiv.org/abs/1801.04381

A network for phones: as accurate as possible for a budget of multiply-adds and memory. MobileNetV1 had
already replaced full convolutions by depthwise separable ones (a k×k depthwise filter per channel, then a
1×1 convolution mixing the channels, about k² times cheaper). MobileNetV2 adds two ideas, both in its one
building block, the bottleneck residual block (Table 1, :class:`paperzoo.layers.InvertedResidual`):

* Linear bottlenecks (§3.2). The "manifold of interest" of a layer's activations lies in a low-dimensional
  subspace. A ReLU keeps information only where it stays in its linear region, so a ReLU applied to the
  narrow tensor destroys information (Figure 1). The narrow layers (the bottlenecks) are therefore linear:
  the 1×1 projection into them has no activation. Table 1:  h×w×k → 1×1 conv, ReLU6 → h×w×(t·k)
  → 3×3 depthwise, stride s, ReLU6 → (h/s)×(w/s)×(t·k) → linear 1×1 conv → (h/s)×(w/s)×k'.
* Inverted residuals (§3.3). The bottlenecks hold all the necessary information and the expansion by t = 6 is
  only a workspace for the non-linearity, so the shortcuts join the *thin* bottlenecks, not the wide
  layers as in ResNet. Only thin tensors travel between blocks, which is what makes the memory small (§5.1).
* ReLU6, min(max(x, 0), 6), for its robustness in low-precision arithmetic; 3×3 kernels throughout.
* A width multiplier (§4) trades accuracy for cost: every layer's channels are multiplied by it, except that
  for multipliers below one the last convolution keeps its 1280 channels.

Data flow (Table 2) at 224×224, width 1.0 (t: expansion, c: channels, n: blocks, s: stride of the first)::

    image 3×224×224
      stem: conv 3×3, 32, stride 2 → BN → ReLU6                 32×112×112
      stage1: bottleneck  t=1  c=16   n=1  s=1                   16×112×112
      stage2: bottleneck  t=6  c=24   n=2  s=2                   24×56×56
      stage3: bottleneck  t=6  c=32   n=3  s=2                   32×28×28
      stage4: bottleneck  t=6  c=64   n=4  s=2                   64×14×14
      stage5: bottleneck  t=6  c=96   n=3  s=1                   96×14×14
      stage6: bottleneck  t=6  c=160  n=3  s=2                  160×7×7
      stage7: bottleneck  t=6  c=320  n=1  s=1                  320×7×7
      head_conv: conv 1×1, 1280 → BN → ReLU6                   1280×7×7
      global average pool → dropout → fc                          1000 logits

    one bottleneck:  x ─► 1×1 expand ×t, ReLU6 ─► 3×3 depthwise, ReLU6 ─► 1×1 project, linear ─(+)─► y
                     └──────────────── identity, only when s = 1 and the width is kept ─────────┘

Deviations from the paper, all torchvision's (kept so that its weights load and its outputs match):

* The block with t = 1 (stage1) has no expansion convolution, as in the released TensorFlow code; Table 1
  draws a 1×1 expansion in every block, which at t = 1 would map 32 channels to 32.
* Scaled channel counts are rounded to the nearest multiple of 8 (never more than 10% down), the released
  code's rule, which the paper does not state: at width 0.5, stage2's 12 channels become 16.
* The classifier is a fully-connected layer where Table 2 writes a 1×1 convolution on the pooled 1×1 map:
  the same function with the same parameters, stored as torchvision stores them.
* Dropout 0.2 before the classifier (the paper uses dropout without stating the rate), PyTorch's default
  BatchNorm (eps 1e-5, momentum 0.1), and torchvision's initialisation: Kaiming normal with fan-out for the
  convolutions, N(0, 0.01) for the classifier (the paper states neither).
* ``in_chans`` and ``num_classes`` change the first convolution and the classifier; ``features_only`` returns,
  at each stride 2, 4, 8, 16 and 32, the output of the last stage at that stride (stage1, 2, 3, 5 and 7, as
  timm's backbones do); the 1280-channel head convolution belongs to the classifier and is not built.

TorchScript: torchvision's MobileNetV2 compiles with ``torch.jit.script``; this one does not (its input check and
the shared classifier plumbing are Python that TorchScript cannot compile, and TorchScript is deprecated upstream).
``torch.export``, ``torch.compile(fullgraph=True)`` and ``torch.fx`` capture it instead (tests/test_export.py,
tests/test_graph_capture.py).
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

from torch import nn

from paperzoo.layers import ConvNormAct, FeatureInfo, InvertedResidual
from paperzoo.layers.classifier import ClassifierPool, ImageClassifier
from paperzoo.registry import InputSpec, ModelCard, Paper, TrainingRecipe, register

__all__ = ["MobileNetV2", "BOTTLENECK_STAGES", "make_divisible"]

# Table 2, one row per stage: t (expansion factor), c (output channels), n (blocks), s (stride of the first).
BOTTLENECK_STAGES: tuple[tuple[int, int, int, int], ...] = (
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)
STEM_CHANNELS, HEAD_CHANNELS = 32, 1280
FEATURE_STRIDES = (2, 4, 8, 16, 32)


def make_divisible(value: float, divisor: int = 8) -> int:
    """Round a scaled channel count to the nearest multiple of ``divisor``, at least ``divisor`` and never more
    than 10% below ``value`` (the released code's rule: multiples of 8 suit the hardware)."""
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * value else rounded


class MobileNetV2(ImageClassifier):
    """MobileNetV2 (Table 2).

    Args:
        width_mult: the width multiplier of §4 (1.0 is the network of Table 2; 0.35 … 1.4 in the paper).
        round_to: scaled channel counts are rounded to multiples of this (8, the released code's choice).
        dropout: probability of dropping a pooled feature before the classifier.
        num_classes: outputs of the classifier; 0 leaves it out and returns the pooled features.
        in_chans: channels of the input image.

    Initialisation as torchvision: Kaiming normal (fan-out) convolutions, BatchNorm scale 1 and shift 0,
    classifier weights N(0, 0.01) with zero bias.

    ``set_grad_checkpointing()`` checkpoints each inverted residual block in training (BatchNorm stats kept exact).
    """

    # Every convolution pads by (k - 1) / 2 and a stride-2 one maps 1 pixel to 1, so even a 1×1 image passes;
    # torchvision's MobileNetV2 takes 1×1 as well (checked), and its weights' metadata says min_size (1, 1).
    min_input_size = 1
    model_name = "mobilenet_v2"
    first_conv = "stem.conv"
    final_modules = ("head_conv",)  # the 1×1 convolution before the pool, part of the features as in timm
    head_dropout_name = "dropout"

    def __init__(
        self,
        width_mult: float = 1.0,
        round_to: int = 8,
        dropout: float = 0.2,
        num_classes: int = 1000,
        in_chans: int = 3,
    ) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.in_chans = in_chans

        in_channels = make_divisible(STEM_CHANNELS * width_mult, round_to)
        self.stem = ConvNormAct(in_chans, in_channels, 3, stride=2, act_layer=nn.ReLU6)

        # A feature level for each stride: the output of the last stage that still has it.
        strides, stride = [], 2
        for *_, first_stride in BOTTLENECK_STAGES:
            stride *= first_stride
            strides.append(stride)
        feature_stages = [max(i for i, s in enumerate(strides) if s == stride) for stride in FEATURE_STRIDES]

        stages: OrderedDict[str, nn.Module] = OrderedDict()
        levels, level_modules, level = [], [], []
        for i, (expansion, channels, blocks, first_stride) in enumerate(BOTTLENECK_STAGES):
            out_channels = make_divisible(channels * width_mult, round_to)
            layers = []
            for j in range(blocks):
                layers.append(InvertedResidual(in_channels, out_channels, expand_ratio=expansion,
                                               stride=first_stride if j == 0 else 1, act_layer=nn.ReLU6))
                in_channels = out_channels
            stages[f"stage{i + 1}"] = nn.Sequential(*layers)
            level.append(f"stages.stage{i + 1}")
            if i in feature_stages:
                levels.append((out_channels, strides[i], f"stages.stage{i + 1}"))
                level_modules.append(tuple(level))
                level = []
        self.stages = nn.Sequential(stages)
        self.feature_info = FeatureInfo(levels)
        self.level_modules = tuple(level_modules)

        # §4: below width 1 the last convolution keeps its 1280 channels (it is what the classifier sees).
        self.num_features = make_divisible(HEAD_CHANNELS * max(1.0, width_mult), round_to)
        self.head_conv = ConvNormAct(in_channels, self.num_features, 1, act_layer=nn.ReLU6)
        self.global_pool = ClassifierPool("avg")
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(self.num_features, num_classes) if num_classes > 0 else nn.Identity()
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
        nn.init.normal_(fc.weight, 0.0, 0.01)
        nn.init.zeros_(fc.bias)


_PAPER = Paper(
    title="MobileNetV2: Inverted Residuals and Linear Bottlenecks",
    authors="Mark Sandler, Andrew Howard, Menglong Zhu, Andrey Zhmoginov, Liang-Chieh Chen",
    year=2018,
    url="https://arxiv.org/abs/1801.04381",
)
_INNOVATIONS = (
    "inverted residuals: shortcuts join the thin bottlenecks, the block expands by t = 6 in between",
    "linear bottlenecks: no non-linearity after the projection, since ReLU on a thin tensor loses information",
    "depthwise separable 3x3 convolutions do the spatial work at a fraction of the cost",
    "ReLU6 for low-precision robustness; a width multiplier trades accuracy for multiply-adds",
)


# §6.1: RMSProp with decay and momentum 0.9, weight decay 4e-5, lr 0.045 decayed by 0.98 per epoch, batch 96.
_RECIPE = TrainingRecipe(optimizer="rmsprop", lr=0.045, momentum=0.9, rmsprop_decay=0.9, weight_decay=4e-5,
                         schedule="exponential", gamma=0.98, batch_size=96, source="Sandler et al. 2018, §6.1")


def _card(name: str, width: float, params: int, gmacs: float, canonical: bool = False) -> ModelCard:
    reference = "torchvision.models.mobilenet_v2" + ("" if width == 1.0 else f"(width_mult={width})")
    return ModelCard(
        name=name,
        architecture="MobileNetV2" if width == 1.0 else f"MobileNetV2 (width {width})",
        task="image-classification",
        paper=_PAPER,
        innovations=_INNOVATIONS,
        input=InputSpec(kind="image", shape=(3, 224, 224), min_size=MobileNetV2.min_input_size),
        params=params,
        params_source=f"{reference}, counted",
        reference=reference,
        gmacs=gmacs,
        recipe=_RECIPE,
        canonical=canonical,
        notes="" if width == 1.0 else "channels rounded to multiples of 8 as in the released code",
    )


@register(_card("mobilenet_v2", 1.0, params=3_504_872, gmacs=0.301, canonical=True))
def mobilenet_v2(**kwargs: Any) -> MobileNetV2:
    """MobileNetV2, width 1.0 (Table 2)."""
    return MobileNetV2(width_mult=1.0, **kwargs)


@register(_card("mobilenet_v2_050", 0.5, params=1_968_680, gmacs=0.097))
def mobilenet_v2_050(**kwargs: Any) -> MobileNetV2:
    """MobileNetV2, width multiplier 0.5."""
    return MobileNetV2(width_mult=0.5, **kwargs)


@register(_card("mobilenet_v2_075", 0.75, params=2_636_424, gmacs=0.209))
def mobilenet_v2_075(**kwargs: Any) -> MobileNetV2:
    """MobileNetV2, width multiplier 0.75."""
    return MobileNetV2(width_mult=0.75, **kwargs)


@register(_card("mobilenet_v2_140", 1.4, params=6_108_776, gmacs=0.582))
def mobilenet_v2_140(**kwargs: Any) -> MobileNetV2:
    """MobileNetV2, width multiplier 1.4."""
    return MobileNetV2(width_mult=1.4, **kwargs)


if __name__ == "__main__":
    from paperzoo.cli import main

    main(["run", "mobilenet_v2"])
