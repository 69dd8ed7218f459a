r"""EfficientNet.

Paper: "EfficientNet: Rethinking Model Scaling for Convolutional Neural Networks", Mingxing Tan, Quoc V. Le,
ICML 2019. https://arxiv.org/abs/1905.11946

Networks were scaled up along one dimension at a time: deeper (ResNet-18 → 200), wider (WideResNet) or at a
higher resolution, and each alone saturates quickly (Figure 3). The paper's point is that the three are
coupled (a larger image needs more layers for the larger receptive field and more channels for the finer
patterns), so they should grow together, by fixed ratios:

* Compound scaling (§3.3, eq. 3). One coefficient φ sets all three,

  $$
  \text{depth } d = \alpha^\phi, \quad \text{width } w = \beta^\phi, \quad \text{resolution } r = \gamma^\phi, \qquad
  \text{subject to } \alpha \cdot \beta^2 \cdot \gamma^2 \approx 2,\ \alpha, \beta, \gamma \ge 1,
  $$

  so that the FLOPS ($\propto d \cdot w^2 \cdot r^2$) grow by about $2^\phi$. A small grid search at φ = 1 found
  α = 1.2, β = 1.1, γ = 1.15 (step 1); fixing them and raising φ gives EfficientNet-B1 … B7 (step 2). Channel counts are
  rounded to multiples of 8 and numbers of layers rounded up (:func:`round_channels`, :func:`round_layers`).
* The baseline EfficientNet-B0 (Table 1) was found by a neural architecture search (as MnasNet, optimising
  accuracy and FLOPS). Its block is MobileNetV2's inverted residual, "MBConv", with squeeze-and-excitation
  (:class:`paperzoo.layers.InvertedResidual`), using 3×3 and 5×5 depthwise kernels.
* Training: SiLU ("swish") activations, dropout before the classifier rising from 0.2 (B0) to 0.5 (B7), and
  stochastic depth on the residual branches (survival probability 0.8), which this file builds as the
  released code does: the drop probability of block i of N grows linearly, 0.2 · i / N.

Data flow of EfficientNet-B0 (Table 1, with the paper's stage numbers) at 224×224; MBConv<t> expands by t::

    image 3×224×224
      stage1 (stem): conv 3×3, 32, stride 2 → BN → SiLU             32×112×112
      stage2: MBConv1, k3×3, 16, 1 layer                            16×112×112
      stage3: MBConv6, k3×3, 24, 2 layers, stride 2                 24×56×56
      stage4: MBConv6, k5×5, 40, 2 layers, stride 2                 40×28×28
      stage5: MBConv6, k3×3, 80, 3 layers, stride 2                 80×14×14
      stage6: MBConv6, k5×5, 112, 3 layers                         112×14×14
      stage7: MBConv6, k5×5, 192, 4 layers, stride 2               192×7×7
      stage8: MBConv6, k3×3, 320, 1 layer                          320×7×7
      stage9: head_conv 1×1, 1280 → BN → SiLU                     1280×7×7
              global average pool → dropout → fc                    1000 logits

    one MBConv:  x ─► 1×1 expand ×t, SiLU ─► k×k depthwise, SiLU ─► SE ─► 1×1 project, linear ─► drop ─(+)─► y
                 └──────────────────── identity, only when the stride is 1 and the width is kept ──────┘

B1 … B7 scale every stage's width and number of layers, the stem and the head, and the input size.

Deviations from the paper, all torchvision's (kept so that its weights load and its outputs match):

* B1 … B7 do not use $\alpha^\phi, \beta^\phi, \gamma^\phi$: the released code (and torchvision, and timm) scale by a
  table of rounded coefficients, :data:`RELEASED_SCALING`, and so does this file. Bk is not eq. 3 at φ = k. B1 sits
  between φ = 0 and 1 (d = 1.1, 240 px, but w = 1.0); B2 and B3 are eq. 3 at φ = 1 and 2 to one decimal (w = 1.1, 1.2; d
  = 1.2, 1.4; 260 and 300 px against 258 and 296); from B4 on, the three coefficients imply three different φ, depth
  lagging most: B7 has w = 2.0 and 600 px, about φ = 7 ($\beta^7 = 1.95$, $224 \cdot \gamma^7 = 596$), but d = 3.1,
  $\alpha^{6.2}$ rather than $\alpha^7 = 3.58$. The table's FLOPS factor $d \cdot w^2 \cdot r^2$ is 1.3, 2.0, 3.6, 10,
  23, 47, 89 for B1 … B7, where eq. 3 would give $1.92^\phi$. :func:`compound_scaling` gives the pure eq. 3
  coefficients, which the constructor takes as well (φ = 1 builds B2's network exactly); ``tests/test_efficientnet.py``
  compares the two.
* BatchNorm: B0 … B4 use PyTorch's defaults (eps 1e-5, momentum 0.1) because torchvision's weights for them
  were trained in PyTorch (timm, torchvision); B5 … B7, whose weights are ports of the TensorFlow originals,
  use the released code's eps 1e-3 and the paper's momentum 0.99 (§5.2), which is 0.01 in PyTorch's
  convention.
* Padding is symmetric, (k − 1) / 2 on each side; the TensorFlow original pads "SAME", which for a stride-2
  layer on an even size puts the extra pixel on the bottom and right only.
* Stochastic depth follows the released code's linear schedule (block i of N drops with 0.2 · i / N, the
  first block never), not one survival probability of 0.8 for every block as §5.2 reads. Only in training.
* The first MBConv1 block has no expansion convolution and its squeeze-excitation, like every block's, has
  max(1, ⌊input channels / 4⌋) units: both from the released code, which the paper does not detail.
* Dropout before the classifier takes the table's value (0.2, 0.2, 0.3, 0.3, 0.4, 0.4, 0.5, 0.5), the
  released code's steps for the paper's "linearly from 0.2 to 0.5".
* Initialisation as torchvision and the released code: Kaiming normal (fan-out) convolutions, classifier
  weights uniform in ±1/√(num_classes), zero biases.
* ``features_only`` returns, at each stride 2, 4, 8, 16 and 32, the output of the last stage at that stride
  (stages 2, 3, 4, 6 and 8, as timm's backbones do); the head convolution belongs to the classifier and is not
  built.

TorchScript: torchvision's EfficientNet compiles with ``torch.jit.script``; this one does not (its input check and
the shared classifier plumbing are Python that TorchScript cannot compile, and TorchScript is deprecated upstream).
``torch.export``, ``torch.compile(fullgraph=True)`` and ``torch.fx`` capture it instead (tests/test_export.py,
tests/test_graph_capture.py).
"""

from __future__ import annotations

import math
from collections import OrderedDict
from functools import partial
from typing import Any, NamedTuple

from torch import nn

from paperzoo.layers import ConvNormAct, FeatureInfo, InvertedResidual
from paperzoo.layers.classifier import ClassifierPool, ImageClassifier
from paperzoo.registry import InputSpec, ModelCard, Paper, TrainingRecipe, register

__all__ = ["EfficientNet", "CompoundScaling", "compound_scaling", "round_channels", "round_layers",
           "RELEASED_SCALING", "B0_STAGES"]

# Table 1, stages 2 … 8: t (MBConv<t>), kernel, stride of the first layer, output channels, layers.
B0_STAGES: tuple[tuple[int, int, int, int, int], ...] = (
    (1, 3, 1, 16, 1),
    (6, 3, 2, 24, 2),
    (6, 5, 2, 40, 2),
    (6, 3, 2, 80, 3),
    (6, 5, 1, 112, 3),
    (6, 5, 2, 192, 4),
    (6, 3, 1, 320, 1),
)
STEM_CHANNELS, HEAD_CHANNELS, BASE_RESOLUTION = 32, 1280, 224
SE_RATIO = 0.25
FEATURE_STRIDES = (2, 4, 8, 16, 32)

# --- compound scaling: the paper's rule, and the table the released models use -----------------------------

ALPHA, BETA, GAMMA = 1.2, 1.1, 1.15  # depth, width, resolution bases: α · β² · γ² = 1.92 ≈ 2 (§3.3, step 1)


class CompoundScaling(NamedTuple):
    """How much to scale B0: ``width`` multiplies every channel count, ``depth`` every stage's number of
    layers, and ``resolution`` is the input size in pixels."""

    width: float
    depth: float
    resolution: int


def compound_scaling(phi: float, alpha: float = ALPHA, beta: float = BETA, gamma: float = GAMMA) -> CompoundScaling:
    """Eq. 3: d = α^φ, w = β^φ, r = γ^φ; the FLOPS grow by (α · β² · γ²)^φ ≈ 2^φ. The resolution is 224 · r
    rounded to a whole pixel (the paper gives no rounding rule for it)."""
    return CompoundScaling(width=beta**phi, depth=alpha**phi, resolution=round(BASE_RESOLUTION * gamma**phi))


def round_channels(channels: int, width: float, divisor: int = 8) -> int:
    """Scale a channel count by ``width`` and round it to the nearest multiple of ``divisor``, at least
    ``divisor`` and never more than 10% below the scaled value (the released code's rule)."""
    scaled = channels * width
    rounded = max(divisor, int(scaled + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * scaled else rounded


def round_layers(layers: int, depth: float) -> int:
    """Scale a stage's number of layers by ``depth``, rounding up (a stage never loses its last layer)."""
    return math.ceil(layers * depth)


# The released code's coefficients (width w, depth d, resolution, dropout), which B1 … B7 are trained with:
# rounded, and not α^φ, β^φ, γ^φ for any one φ (see Deviations).
RELEASED_SCALING: dict[str, tuple[float, float, int, float]] = {
    "efficientnet_b0": (1.0, 1.0, 224, 0.2),
    "efficientnet_b1": (1.0, 1.1, 240, 0.2),
    "efficientnet_b2": (1.1, 1.2, 260, 0.3),
    "efficientnet_b3": (1.2, 1.4, 300, 0.3),
    "efficientnet_b4": (1.4, 1.8, 380, 0.4),
    "efficientnet_b5": (1.6, 2.2, 456, 0.4),
    "efficientnet_b6": (1.8, 2.6, 528, 0.5),
    "efficientnet_b7": (2.0, 3.1, 600, 0.5),
}
# BatchNorm (eps, momentum): PyTorch's defaults for the PyTorch-trained B0 … B4, the original's for the B5 … B7
# ports (the paper's momentum 0.99 weighs the old running statistics: PyTorch's momentum 0.01).
PYTORCH_BATCHNORM, TENSORFLOW_BATCHNORM = (1e-5, 0.1), (1e-3, 0.01)


# --- the network ----------------------------------------------------------------------------------------------

class EfficientNet(ImageClassifier):
    """EfficientNet-B0 (Table 1) scaled in width and depth.

    Args:
        width_coefficient: w, multiplies the channels of every layer (then :func:`round_channels`).
        depth_coefficient: d, multiplies the number of layers of every stage (then :func:`round_layers`).
        dropout: probability of dropping a pooled feature before the classifier.
        stochastic_depth_prob: drop probability of the residual branch of the last block; block i of N drops
            with ``stochastic_depth_prob · i / N`` in training (0.2, as torchvision and the released code).
        norm_eps, norm_momentum: of every BatchNorm (see Deviations).
        num_classes: outputs of the classifier; 0 leaves it out and returns the pooled features.
        in_chans: channels of the input image.

    The input resolution is not a constructor argument: the network takes any size, and each variant's card
    gives the one it was scaled for.

    Initialisation as torchvision: Kaiming normal (fan-out) convolutions, BatchNorm scale 1 and shift 0,
    classifier weights uniform in ±1/√(num_classes) with zero bias.

    ``set_grad_checkpointing()`` checkpoints each MBConv block in training (BatchNorm stats kept exact).
    """

    # Every convolution pads by (k - 1) / 2, so a stride-2 layer maps 1 pixel to 1: a 1×1 image passes the
    # whole network, as it passes torchvision's (checked; its metadata says min_size (1, 1)).
    min_input_size = 1
    model_name = "efficientnet"
    first_conv = "stem.conv"
    final_modules = ("head_conv",)  # the 1×1 convolution to 1280 channels, part of the features as in timm
    head_dropout_name = "dropout"
    drop_path_schedule = "torchvision"

    def __init__(
        self,
        width_coefficient: float = 1.0,
        depth_coefficient: float = 1.0,
        dropout: float = 0.2,
        stochastic_depth_prob: float = 0.2,
        norm_eps: float = 1e-5,
        norm_momentum: float = 0.1,
        num_classes: int = 1000,
        in_chans: int = 3,
    ) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.in_chans = in_chans
        norm_layer = partial(nn.BatchNorm2d, eps=norm_eps, momentum=norm_momentum)

        in_channels = round_channels(STEM_CHANNELS, width_coefficient)
        self.stem = ConvNormAct(in_chans, in_channels, 3, stride=2, norm_layer=norm_layer, act_layer=nn.SiLU)

        # A feature level for each stride: the output of the last stage that still has it.
        strides, stride = [], 2
        for _, _, first_stride, _, _ in B0_STAGES:
            stride *= first_stride
            strides.append(stride)
        feature_stages = [max(i for i, s in enumerate(strides) if s == stride) for stride in FEATURE_STRIDES]

        layers_per_stage = [round_layers(layers, depth_coefficient) for *_, layers in B0_STAGES]
        total_blocks, block_index = sum(layers_per_stage), 0
        stages: OrderedDict[str, nn.Module] = OrderedDict()
        levels, level_modules, level = [], [], []
        for i, (expansion, kernel, first_stride, channels, _) in enumerate(B0_STAGES):
            out_channels = round_channels(channels, width_coefficient)
            blocks = []
            for j in range(layers_per_stage[i]):
                blocks.append(InvertedResidual(
                    in_channels, out_channels, expand_ratio=expansion, kernel_size=kernel,
                    stride=first_stride if j == 0 else 1, act_layer=nn.SiLU, norm_layer=norm_layer,
                    se_ratio=SE_RATIO,
                    # The released schedule: deeper blocks are dropped more often, the first never.
                    stochastic_depth_prob=stochastic_depth_prob * block_index / total_blocks))
                in_channels, block_index = out_channels, block_index + 1
            name = f"stage{i + 2}"  # Table 1 numbers the stem as stage 1
            stages[name] = nn.Sequential(*blocks)
            level.append(f"stages.{name}")
            if i in feature_stages:
                levels.append((out_channels, strides[i], f"stages.{name}"))
                level_modules.append(tuple(level))
                level = []
        self.stages = nn.Sequential(stages)
        self.feature_info = FeatureInfo(levels)
        self.level_modules = tuple(level_modules)

        self.num_features = round_channels(HEAD_CHANNELS, width_coefficient)
        self.head_conv = ConvNormAct(in_channels, self.num_features, 1, norm_layer=norm_layer,
                                     act_layer=nn.SiLU)
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
        bound = 1.0 / math.sqrt(fc.out_features)
        nn.init.uniform_(fc.weight, -bound, bound)
        nn.init.zeros_(fc.bias)

# --- the registered variants ----------------------------------------------------------------------------------

_PAPER = Paper(
    title="EfficientNet: Rethinking Model Scaling for Convolutional Neural Networks",
    authors="Mingxing Tan, Quoc V. Le",
    year=2019,
    url="https://arxiv.org/abs/1905.11946",
)
_INNOVATIONS = (
    "compound scaling: depth, width and resolution grow together, d = 1.2^phi, w = 1.1^phi, r = 1.15^phi",
    "the constraint alpha * beta^2 * gamma^2 ~ 2 makes each step of phi about double the FLOPS",
    "a searched baseline, B0, of MBConv blocks (inverted residuals with squeeze-and-excitation, 3x3 and 5x5)",
    "SiLU (swish) activations, stochastic depth, dropout growing with the model",
)


# §5.2: RMSProp with decay 0.9 and momentum 0.9, weight decay 1e-5, lr 0.256 decayed by 0.97 every 2.4 epochs,
# at the batch of 4096 of the authors' TPU code (ε = 0.001 there). Here at batch 128: lr 0.008, scaled linearly.
_RECIPE = TrainingRecipe(optimizer="rmsprop", lr=0.008, momentum=0.9, rmsprop_decay=0.9, eps=1e-3,
                         weight_decay=1e-5, schedule="exponential", gamma=0.97, decay_every=2.4, batch_size=128,
                         source="Tan & Le 2019, §5.2 (lr scaled from batch 4096 to 128)")


def _card(name: str, params: int, gmacs: float, canonical: bool = False, notes: str = "") -> ModelCard:
    resolution = RELEASED_SCALING[name][2]
    return ModelCard(
        name=name,
        architecture=f"EfficientNet-{name.removeprefix('efficientnet_').upper()}",
        task="image-classification",
        paper=_PAPER,
        innovations=_INNOVATIONS,
        input=InputSpec(kind="image", shape=(3, resolution, resolution), min_size=EfficientNet.min_input_size),
        params=params,
        params_source=f"torchvision.models.{name}, counted",
        reference=f"torchvision.models.{name}",
        gmacs=gmacs,
        recipe=_RECIPE,
        canonical=canonical,
        notes=notes,
    )


def _efficientnet(name: str, batchnorm: tuple[float, float], **kwargs: Any) -> EfficientNet:
    width, depth, _, dropout = RELEASED_SCALING[name]
    kwargs.setdefault("dropout", dropout)
    return EfficientNet(width_coefficient=width, depth_coefficient=depth, norm_eps=batchnorm[0],
                        norm_momentum=batchnorm[1], **kwargs)


@register(_card("efficientnet_b0", params=5_288_548, gmacs=0.386, canonical=True))
def efficientnet_b0(**kwargs: Any) -> EfficientNet:
    """EfficientNet-B0, the searched baseline (Table 1), at 224×224."""
    return _efficientnet("efficientnet_b0", PYTORCH_BATCHNORM, **kwargs)


@register(_card("efficientnet_b1", params=7_794_184, gmacs=0.687))
def efficientnet_b1(**kwargs: Any) -> EfficientNet:
    """EfficientNet-B1: w 1.0, d 1.1, 240×240."""
    return _efficientnet("efficientnet_b1", PYTORCH_BATCHNORM, **kwargs)


@register(_card("efficientnet_b2", params=9_109_994, gmacs=0.994,
                notes="260x260 as the released table; torchvision's ported weights are evaluated at 288x288"))
def efficientnet_b2(**kwargs: Any) -> EfficientNet:
    """EfficientNet-B2: w 1.1, d 1.2, 260×260."""
    return _efficientnet("efficientnet_b2", PYTORCH_BATCHNORM, **kwargs)


@register(_card("efficientnet_b3", params=12_233_232, gmacs=1.827))
def efficientnet_b3(**kwargs: Any) -> EfficientNet:
    """EfficientNet-B3: w 1.2, d 1.4, 300×300."""
    return _efficientnet("efficientnet_b3", PYTORCH_BATCHNORM, **kwargs)


@register(_card("efficientnet_b4", params=19_341_616, gmacs=4.394))
def efficientnet_b4(**kwargs: Any) -> EfficientNet:
    """EfficientNet-B4: w 1.4, d 1.8, 380×380."""
    return _efficientnet("efficientnet_b4", PYTORCH_BATCHNORM, **kwargs)


@register(_card("efficientnet_b5", params=30_389_784, gmacs=10.266))
def efficientnet_b5(**kwargs: Any) -> EfficientNet:
    """EfficientNet-B5: w 1.6, d 2.2, 456×456; TensorFlow's BatchNorm."""
    return _efficientnet("efficientnet_b5", TENSORFLOW_BATCHNORM, **kwargs)


@register(_card("efficientnet_b6", params=43_040_704, gmacs=19.068))
def efficientnet_b6(**kwargs: Any) -> EfficientNet:
    """EfficientNet-B6: w 1.8, d 2.6, 528×528; TensorFlow's BatchNorm."""
    return _efficientnet("efficientnet_b6", TENSORFLOW_BATCHNORM, **kwargs)


@register(_card("efficientnet_b7", params=66_347_960, gmacs=37.746))
def efficientnet_b7(**kwargs: Any) -> EfficientNet:
    """EfficientNet-B7: w 2.0, d 3.1, 600×600; TensorFlow's BatchNorm."""
    return _efficientnet("efficientnet_b7", TENSORFLOW_BATCHNORM, **kwargs)


if __name__ == "__main__":
    from paperzoo.cli import main

    main(["run", "efficientnet_b0"])
