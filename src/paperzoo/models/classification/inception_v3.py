r"""Inception v3.

Paper: "Rethinking the Inception Architecture for Computer Vision", Christian Szegedy, Vincent Vanhoucke,
Sergey Ioffe, Jonathon Shlens, Zbigniew Wojna, CVPR 2016 (arXiv 2015). https://arxiv.org/abs/1512.00567

GoogLeNet's Inception module was efficient but hard to change: scaling it up naively loses its efficiency. The
paper states design principles (§2: avoid representational bottlenecks, especially early; higher-dimensional
representations are easier to process locally; spatial aggregation can be done over reduced embeddings; balance
width and depth) and derives cheaper Inception modules from them:

* Factorisation into smaller convolutions (§3.1, Figure 5): a 5×5 convolution is replaced by two stacked 3×3
  convolutions, which see the same 5×5 window with (9 + 9) / 25 of the cost, 28% less, and one more ReLU.
* Spatial factorisation into asymmetric convolutions (§3.2, Figure 6): an n×n convolution becomes a 1×n followed
  by an n×1 convolution (for 3×3: 33% cheaper). It works poorly on early layers but very well on medium grids
  (12 to 20); the network uses n = 7 on its 17×17 grid.
* Expanded filter banks on the coarsest grid (Figure 7): on the 8×8 grid the 1×3 and 3×1 convolutions run in
  parallel and are concatenated, to give the high-dimensional representations principle 2 asks for.
* Efficient grid-size reduction (§5, Figure 10): pooling before a widening convolution is a representational
  bottleneck, convolving before pooling costs three times as much; instead stride-2 convolution branches and a
  stride-2 pooling run in parallel and their outputs are concatenated.
* Auxiliary classifiers as regularisers (§4, Figure 8): one side classifier on the last 17×17 layer, with batch
  normalisation, helps near the end of training (removing GoogLeNet's lower one costs nothing).
* Label-smoothing regularisation (§7): train against $q'(k) = (1 - \varepsilon) \delta_{k,y} + \varepsilon / K$ with
  $\varepsilon = 0.1$ instead of the one-hot label, so the logits cannot grow without bound; and the first 7×7
  convolution is factorised into 3×3 ones (§10). Inception-v3 is the best of the paper's variants: all of the above plus
  RMSProp (§8).

Data flow (channels × size at 299×299)::

    image 3×299×299
      stem: conv1 3×3/2 → conv2 3×3 → conv3 3×3 padded                   64×147×147
            pool1 3×3/2 max → conv4 1×1 → conv5 3×3 → pool2 3×3/2 max    192×35×35
      3 × Inception module of Figure 5 (5×5 → two 3×3)                  288×35×35
      grid reduction 35 → 17 (Figure 10)                                768×17×17
      4 × Inception module of Figure 6 (7×7 → 1×7, 7×1) ──► auxiliary classifier (Figure 8) ─► aux logits
                                                                        768×17×17    (training only)
      grid reduction 17 → 8 (Figure 10)                                1280×8×8
      2 × Inception module of Figure 7 (expanded filter banks)         2048×8×8
      global average pool → dropout → fc                                    1000 logits

    grid reduction (Figure 10):          x ──┬─► 1×1 ─► … ─► 3×3/2 ──┐
                                             ├─► 1×1 ─► … ─► 3×3/2 ──┼─► concatenate ─► y (half the grid)
                                             └─► 3×3/2 max pool ─────┘

With ``aux_logits=True`` a model in training mode returns ``(logits, aux_logits)``; :meth:`InceptionV3.loss` gives
the training objective, label-smoothed cross-entropy of the main classifier plus 0.4 times that of the
auxiliary one. In eval mode, and always without ``aux_logits``, it returns the logits alone. ``aux_logits`` is
off by default (27,161,264 parameters with it, 23,834,568 without).

Deviations from the paper. torchvision's network is a port of the one Google released (TF-slim), which differs
from the paper's Table 1 and figures in places; we follow it so that its weights load and its outputs match:

* The stem after pool1: Table 1 lists three 3×3 convolutions (80 channels; 192 with stride 2; 288); the
  released network has a 1×1 convolution to 80 channels, an unpadded 3×3 convolution to 192 channels and a
  3×3/2 max pooling, so the first 35×35 module takes 192 channels (and widens them to 256, then 288).
* Table 1 lists 5 modules on the 17×17 grid; the released network has 4 (and the grid reductions between the
  grids, which Table 1 does not list separately).
* The 35×35 modules keep a 1×1 → 5×5 branch (48 → 64 channels) beside the two-3×3 branch, where Figure 5 has a
  1×1 → 3×3 branch.
* The auxiliary classifier (Figure 8 draws a 1×1 convolution of 128 filters and a fully-connected layer of 1024
  units) has a 5×5 convolution of 768 channels over its 5×5 map (batch-normalised, like every convolution here),
  followed by an average pooling that is the identity at 299×299 and averages larger maps.
* The 17 → 8 grid reduction's deep branch uses the factorised 1×7, 7×1 pair before its 3×3/2 convolution.
* Batch normalisation with ε = 0.001 (TensorFlow's default) after every convolution, and no convolution biases.
* The Inception modules' pooling branches average (3×3/1, zero padding counted), the grid reductions take the
  maximum (3×3/2).
* Dropout 0.5 before the classifier, torchvision's value (Google's training code keeps 80% of the units).
* A global (adaptive) average pooling instead of the 8×8 one, so other input sizes work.
* The loss weight of the auxiliary classifier, 0.4, is not in the paper; it is the weight in Google's released
  training code (tensorflow/models, research/inception), which smooths both losses' labels with ε = 0.1.
* ``transform_input=True`` (off by default) re-normalises an ImageNet-normalised input to the [-1, 1] range that
  the released weights were trained on (torchvision turns it on when it loads them).

Initialisation as torchvision's: convolution and linear weights from a normal distribution with σ = 0.1
(truncated at ±2, i.e. 20σ, in effect untruncated), the auxiliary classifier's last layer with σ = 0.001,
BatchNorm scale 1 and shift 0, linear biases at PyTorch's default. torchvision also marks the auxiliary 5×5
convolution for σ = 0.01, but on its conv-BN wrapper, which its initialisation loop never reads, so that
convolution gets σ = 0.1; we do the same.

TorchScript: torchvision's Inception v3 compiles with ``torch.jit.script``; this one does not (its input check and
the shared classifier plumbing are Python that TorchScript cannot compile, and TorchScript is deprecated upstream).
``torch.export``, ``torch.compile(fullgraph=True)`` and ``torch.fx`` capture it instead (tests/test_export.py,
tests/test_graph_capture.py).
"""

from __future__ import annotations

from functools import partial
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from paperzoo.layers import ConvNormAct, FeatureInfo, check_image_batch
from paperzoo.layers.classifier import ClassifierPool, ImageClassifier
from paperzoo.registry import InputSpec, ModelCard, Paper, TrainingRecipe, register

__all__ = [
    "InceptionV3", "FactorizedInceptionModule", "AsymmetricInceptionModule", "ExpandedInceptionModule",
    "GridReduction35to17", "GridReduction17to8", "AuxiliaryClassifier",
]

# ImageNet's per-channel mean and standard deviation, for transform_input.
_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)


def conv_bn_relu(in_channels: int, out_channels: int, kernel_size: int | tuple[int, int], stride: int = 1,
                 padded: bool = True) -> ConvNormAct:
    """Convolution → BatchNorm (ε = 0.001) → ReLU. ``padded`` keeps the size at stride 1 ("same" padding, also
    for the asymmetric 1×n and n×1 kernels); unpadded ("valid") convolutions shrink the grid, as in the stem."""
    kh, kw = (kernel_size, kernel_size) if isinstance(kernel_size, int) else kernel_size
    padding = (kh // 2, kw // 2) if padded else (0, 0)
    return ConvNormAct(in_channels, out_channels, kernel_size, stride=stride, padding=padding,
                       norm_layer=partial(nn.BatchNorm2d, eps=1e-3))


def average_pool_branch(in_channels: int, pool_proj: int) -> nn.Sequential:
    """The pooling branch of an Inception module: 3×3/1 average pooling, then a 1×1 projection."""
    return nn.Sequential(nn.AvgPool2d(kernel_size=3, stride=1, padding=1), conv_bn_relu(in_channels, pool_proj, 1))


class FactorizedInceptionModule(nn.Module):
    """The 35×35 module (Figure 5): the 5×5 convolution factorised into two 3×3 convolutions (§3.1).

    Args:
        in_channels: channels of the input (192, 256, 288).
        pool_proj: width of the pooling branch's 1×1 projection (32, 64, 64). Output: 224 + ``pool_proj``.
    """

    def __init__(self, in_channels: int, pool_proj: int) -> None:
        super().__init__()
        self.branch_1x1 = conv_bn_relu(in_channels, 64, 1)
        self.branch_5x5 = nn.Sequential(conv_bn_relu(in_channels, 48, 1), conv_bn_relu(48, 64, 5))
        # Two 3×3 convolutions cover a 5×5 window with 18/25 of the multiply-adds and one more non-linearity.
        self.branch_3x3_double = nn.Sequential(conv_bn_relu(in_channels, 64, 1), conv_bn_relu(64, 96, 3),
                                               conv_bn_relu(96, 96, 3))
        self.branch_pool = average_pool_branch(in_channels, pool_proj)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        branches = [self.branch_1x1(x), self.branch_5x5(x), self.branch_3x3_double(x), self.branch_pool(x)]
        return torch.cat(branches, dim=1)  # (N, 224 + pool_proj, 35, 35)


class AsymmetricInceptionModule(nn.Module):
    """The 17×17 module (Figure 6): n×n convolutions factorised into 1×n and n×1 ones, n = 7 (§3.2).

    Args:
        in_channels: channels of the input (768).
        channels_7x7: width inside the factorised 7×7 branches (128, 160, 160, 192). Output: 768.
    """

    def __init__(self, in_channels: int, channels_7x7: int) -> None:
        super().__init__()
        c = channels_7x7
        self.branch_1x1 = conv_bn_relu(in_channels, 192, 1)
        # A 1×7 then a 7×1 convolution see a 7×7 window with 2·7 instead of 7·7 weights per channel pair.
        self.branch_7x7 = nn.Sequential(conv_bn_relu(in_channels, c, 1), conv_bn_relu(c, c, (1, 7)),
                                        conv_bn_relu(c, 192, (7, 1)))
        # The two-3×3 idea of Figure 5 with both 7×7 convolutions factorised: a 13×13 window.
        self.branch_7x7_double = nn.Sequential(
            conv_bn_relu(in_channels, c, 1), conv_bn_relu(c, c, (7, 1)), conv_bn_relu(c, c, (1, 7)),
            conv_bn_relu(c, c, (7, 1)), conv_bn_relu(c, 192, (1, 7)))
        self.branch_pool = average_pool_branch(in_channels, 192)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        branches = [self.branch_1x1(x), self.branch_7x7(x), self.branch_7x7_double(x), self.branch_pool(x)]
        return torch.cat(branches, dim=1)  # (N, 768, 17, 17)


class ParallelAsymmetricConv(nn.Module):
    """Figure 7's expansion: a 1×3 and a 3×1 convolution side by side on the same input, concatenated, so the
    branch widens (2 × ``out_channels``) instead of deepening."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv_1x3 = conv_bn_relu(in_channels, out_channels, (1, 3))
        self.conv_3x1 = conv_bn_relu(in_channels, out_channels, (3, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.conv_1x3(x), self.conv_3x1(x)], dim=1)


class ExpandedInceptionModule(nn.Module):
    """The 8×8 module with expanded filter bank outputs (Figure 7), for high-dimensional representations on
    the coarsest grid (principle 2 of §2).

    Args:
        in_channels: channels of the input (1280, 2048). Output: 320 + 768 + 768 + 192 = 2048.
    """

    def __init__(self, in_channels: int) -> None:
        super().__init__()
        self.branch_1x1 = conv_bn_relu(in_channels, 320, 1)
        self.branch_3x3 = nn.Sequential(conv_bn_relu(in_channels, 384, 1), ParallelAsymmetricConv(384, 384))
        self.branch_3x3_double = nn.Sequential(conv_bn_relu(in_channels, 448, 1), conv_bn_relu(448, 384, 3),
                                               ParallelAsymmetricConv(384, 384))
        self.branch_pool = average_pool_branch(in_channels, 192)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        branches = [self.branch_1x1(x), self.branch_3x3(x), self.branch_3x3_double(x), self.branch_pool(x)]
        return torch.cat(branches, dim=1)  # (N, 2048, 8, 8)


class GridReduction35to17(nn.Module):
    """The grid reduction 35×35 → 17×17 (Figure 10): two stride-2 convolution branches and a stride-2 max
    pooling in parallel, concatenated, so the grid halves while the channels grow, with no bottleneck (§5).

    Args:
        in_channels: channels of the input (288). Output: 384 + 96 + ``in_channels``.
    """

    def __init__(self, in_channels: int) -> None:
        super().__init__()
        self.branch_3x3 = conv_bn_relu(in_channels, 384, 3, stride=2, padded=False)
        self.branch_3x3_double = nn.Sequential(conv_bn_relu(in_channels, 64, 1), conv_bn_relu(64, 96, 3),
                                               conv_bn_relu(96, 96, 3, stride=2, padded=False))
        self.branch_pool = nn.MaxPool2d(kernel_size=3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        branches = [self.branch_3x3(x), self.branch_3x3_double(x), self.branch_pool(x)]
        return torch.cat(branches, dim=1)  # (N, 288, 35, 35) → (N, 768, 17, 17)


class GridReduction17to8(nn.Module):
    """The grid reduction 17×17 → 8×8 (Figure 10), its deep branch factorised into 1×7 and 7×1 (§3.2).

    Args:
        in_channels: channels of the input (768). Output: 320 + 192 + ``in_channels``.
    """

    def __init__(self, in_channels: int) -> None:
        super().__init__()
        self.branch_3x3 = nn.Sequential(conv_bn_relu(in_channels, 192, 1),
                                        conv_bn_relu(192, 320, 3, stride=2, padded=False))
        self.branch_7x7x3 = nn.Sequential(
            conv_bn_relu(in_channels, 192, 1), conv_bn_relu(192, 192, (1, 7)), conv_bn_relu(192, 192, (7, 1)),
            conv_bn_relu(192, 192, 3, stride=2, padded=False))
        self.branch_pool = nn.MaxPool2d(kernel_size=3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        branches = [self.branch_3x3(x), self.branch_7x7x3(x), self.branch_pool(x)]
        return torch.cat(branches, dim=1)  # (N, 768, 17, 17) → (N, 1280, 8, 8)


class AuxiliaryClassifier(nn.Module):
    """The auxiliary classifier on the last 17×17 layer (Figure 8), batch-normalised ("BN-auxiliary", which
    the paper finds worth 0.4% top-1): it acts as a regulariser. Used in training only.

    Args:
        in_channels: channels of the tapped map (768).
        num_classes: outputs of its classifier; 0 leaves it out.
    """

    def __init__(self, in_channels: int, num_classes: int) -> None:
        super().__init__()
        self.pool = nn.AvgPool2d(kernel_size=5, stride=3)
        self.reduce = conv_bn_relu(in_channels, 128, 1)
        self.hidden = conv_bn_relu(128, 768, 5, padded=False)  # a fully-connected layer over the 5×5 map
        self.global_pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(768, num_classes) if num_classes > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.reduce(self.pool(x))  # (N, 768, 17, 17) → (N, 128, 5, 5)
        x = self.global_pool(self.hidden(x))  # (N, 768, 1, 1); averages the map of a larger input
        return self.fc(torch.flatten(x, 1))  # (N, 768) → (N, num_classes)


class InceptionV3(ImageClassifier):
    """Inception v3 as released by Google and ported by torchvision (see the module docstring).

    Args:
        num_classes: outputs of the classifier (and of the auxiliary one); 0 leaves them out and returns the
            pooled features.
        in_chans: channels of the input image.
        aux_logits: build the auxiliary classifier; in training mode ``forward`` then returns
            ``(logits, aux_logits)``.
        transform_input: re-normalise an ImageNet-normalised input to [-1, 1] first, as the released weights
            expect (off by default; needs ``in_chans=3``).
        dropout: dropout probability before the classifier (torchvision's 0.5).
    """

    # At 75×75 the stem leaves a 7×7 map, the first grid reduction 3×3 and the second 1×1; at 74×74 the first
    # reduction leaves 2×2, too small for the second's 3×3 windows. Found by trying sizes; torchvision's is 75 too.
    min_input_size = 75
    # In training mode with aux_logits: the auxiliary classifier's 5×5/3 pooling must leave a 5×5 map for its
    # 5×5 convolution, so it needs the full 17×17 grid, which only inputs of 299×299 or more give (298 fails in
    # torchvision's model too).
    aux_min_input_size = 299
    model_name = "inception_v3"
    first_conv = "stem.conv1.conv"
    head_dropout_name = "dropout"

    def __init__(
        self,
        num_classes: int = 1000,
        in_chans: int = 3,
        aux_logits: bool = False,
        transform_input: bool = False,
        dropout: float = 0.5,
    ) -> None:
        super().__init__()
        if transform_input and in_chans != 3:
            raise ValueError(f"transform_input re-normalises RGB images and needs in_chans=3, got {in_chans}")
        self.num_classes = num_classes
        self.in_chans = in_chans
        self.aux_logits = aux_logits
        self.transform_input = transform_input

        # The stem: GoogLeNet's 7×7 convolution factorised into 3×3 ones; unpadded except conv3.
        self.stem = nn.Sequential()
        self.stem.add_module("conv1", conv_bn_relu(in_chans, 32, 3, stride=2, padded=False))  # 299 → 149
        self.stem.add_module("conv2", conv_bn_relu(32, 32, 3, padded=False))  # 149 → 147
        self.stem.add_module("conv3", conv_bn_relu(32, 64, 3))
        self.stem.add_module("pool1", nn.MaxPool2d(kernel_size=3, stride=2))  # 147 → 73
        self.stem.add_module("conv4", conv_bn_relu(64, 80, 1))
        self.stem.add_module("conv5", conv_bn_relu(80, 192, 3, padded=False))  # 73 → 71
        self.stem.add_module("pool2", nn.MaxPool2d(kernel_size=3, stride=2))  # 71 → 35

        self.inception_35x35 = nn.Sequential(FactorizedInceptionModule(192, pool_proj=32),
                                             FactorizedInceptionModule(256, pool_proj=64),
                                             FactorizedInceptionModule(288, pool_proj=64))
        self.reduction_35_to_17 = GridReduction35to17(288)
        self.inception_17x17 = nn.Sequential(*(AsymmetricInceptionModule(768, channels_7x7=c)
                                               for c in (128, 160, 160, 192)))
        if aux_logits:
            self.aux_classifier = AuxiliaryClassifier(768, num_classes)
        self.reduction_17_to_8 = GridReduction17to8(768)
        self.inception_8x8 = nn.Sequential(ExpandedInceptionModule(1280), ExpandedInceptionModule(2048))

        # the feature levels at strides 2 … 32 (as timm's: conv3, conv5, the 35×35, 17×17 and 8×8 modules)
        self.feature_info = FeatureInfo([(64, 2, "stem.conv3"), (192, 4, "stem.conv5"), (288, 8, "inception_35x35"),
                                         (768, 16, "inception_17x17"), (2048, 32, "inception_8x8")])
        self.level_modules = (("stem.conv1", "stem.conv2", "stem.conv3"), ("stem.pool1", "stem.conv4", "stem.conv5"),
                              ("stem.pool2", "inception_35x35"), ("reduction_35_to_17", "inception_17x17"),
                              ("reduction_17_to_8", "inception_8x8"))

        self.num_features = 2048
        self.global_pool = ClassifierPool("avg")
        self.dropout = nn.Dropout(p=dropout)
        self.fc = nn.Linear(self.num_features, num_classes) if num_classes > 0 else nn.Identity()
        self._init_weights()

    def _init_weights(self) -> None:
        for module in self.modules():
            if isinstance(module, (nn.Conv2d, nn.Linear)):
                self.init_classifier(module)
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
        if self.aux_logits and isinstance(self.aux_classifier.fc, nn.Linear):
            nn.init.trunc_normal_(self.aux_classifier.fc.weight, mean=0.0, std=0.001, a=-2.0, b=2.0)

    def init_classifier(self, layer: nn.Module) -> None:
        nn.init.trunc_normal_(layer.weight, mean=0.0, std=0.1, a=-2.0, b=2.0)

    def forward_stem(self, x: torch.Tensor) -> torch.Tensor:
        if self.transform_input:
            mean = x.new_tensor(_IMAGENET_MEAN).view(1, 3, 1, 1)
            std = x.new_tensor(_IMAGENET_STD).view(1, 3, 1, 1)
            x = (x * std + mean - 0.5) / 0.5  # undo ImageNet normalisation, then map [0, 1] to [-1, 1]
        return x

    def _trunk(self, x: torch.Tensor, with_aux: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Images → the last 8×8 module's map ``(N, 2048, h, w)``, and the auxiliary logits if ``with_aux``."""
        x = self.stem(self.forward_stem(x))  # (N, 192, 35, 35)
        x = self.inception_35x35(x)  # (N, 288, 35, 35)
        x = self.reduction_35_to_17(x)  # (N, 768, 17, 17)
        x = self.inception_17x17(x)  # (N, 768, 17, 17)
        aux = self.aux_classifier(x) if with_aux else None
        x = self.reduction_17_to_8(x)  # (N, 1280, 8, 8)
        x = self.inception_8x8(x)  # (N, 2048, 8, 8)
        return x, aux

    def forward(self, x: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Logits; in training mode with ``aux_logits``, ``(logits, aux_logits)``."""
        if not (self.training and self.aux_logits) or self.features_only:
            return super().forward(x)
        check_image_batch(x, model=self, in_chans=self.in_chans, min_size=self.aux_min_input_size)
        features, aux = self._trunk(x, with_aux=True)
        return self.forward_head(features), aux

    def loss(self, output: torch.Tensor | tuple[torch.Tensor, torch.Tensor], target: torch.Tensor,
             aux_weight: float = 0.4, label_smoothing: float = 0.1) -> torch.Tensor:
        r"""The training loss: cross-entropy with label smoothing ε = 0.1
        (§7: $q'(k) = (1 - \varepsilon) \delta_{k,y} + \varepsilon / K$), plus ``aux_weight`` (0.4, from Google's
        training code) times the auxiliary classifier's, when ``output`` carries it (training mode with
        ``aux_logits``)."""
        criterion = partial(F.cross_entropy, target=target, label_smoothing=label_smoothing)
        if isinstance(output, torch.Tensor):
            return criterion(output)
        logits, aux = output
        return criterion(logits) + aux_weight * criterion(aux)

    def reset_classifier(self, num_classes: int, global_pool: str | None = None) -> None:
        """Replace the classifier, and the auxiliary one's if built, with fresh layers of ``num_classes``
        outputs (0: none, so the model returns the pooled features)."""
        super().reset_classifier(num_classes, global_pool)
        if self.aux_logits:
            self.aux_classifier.fc = nn.Linear(768, num_classes) if num_classes > 0 else nn.Identity()
            if num_classes > 0:
                nn.init.trunc_normal_(self.aux_classifier.fc.weight, mean=0.0, std=0.001, a=-2.0, b=2.0)


# §8: batch 32; the best models used RMSProp with decay 0.9 and ε = 1.0, lr 0.045 decayed every two epochs by
# an exponential rate of 0.94 (and gradient clipping at 2.0, not applied here).
_RECIPE = TrainingRecipe(optimizer="rmsprop", lr=0.045, momentum=0.9, rmsprop_decay=0.9, eps=1.0,
                         weight_decay=0.0, schedule="exponential", gamma=0.94, decay_every=2, batch_size=32,
                         source="Szegedy et al. 2016, §8")


@register(ModelCard(
    name="inception_v3",
    architecture="Inception v3",
    task="image-classification",
    paper=Paper(
        title="Rethinking the Inception Architecture for Computer Vision",
        authors="Christian Szegedy, Vincent Vanhoucke, Sergey Ioffe, Jonathon Shlens, Zbigniew Wojna",
        year=2015,
        url="https://arxiv.org/abs/1512.00567",
    ),
    innovations=(
        "factorised convolutions: a 5x5 becomes two 3x3, an nxn becomes 1xn then nx1 (n = 7 at 17x17)",
        "expanded filter banks (parallel 1x3 and 3x1) on the coarsest 8x8 grid",
        "grid-size reduction by parallel stride-2 convolution and pooling branches, concatenated",
        "a batch-normalised auxiliary classifier as a regulariser",
        "label-smoothing regularisation (epsilon = 0.1)",
    ),
    input=InputSpec(kind="image", shape=(3, 299, 299), min_size=InceptionV3.min_input_size),
    params=23_834_568,
    params_source="torchvision.models.inception_v3(aux_logits=False), counted; 27,161,264 with aux_logits=True",
    reference="torchvision.models.inception_v3(aux_logits=False, init_weights=True)",
    gmacs=5.713,
    recipe=_RECIPE,
    canonical=True,
    notes="Google's released network as torchvision ports it (stem, module counts and auxiliary head differ "
          "from the paper's Table 1); aux_logits=True adds the auxiliary classifier (training inputs >= 299).",
))
def inception_v3(**kwargs: Any) -> InceptionV3:
    """Inception v3 as torchvision builds it, without the auxiliary classifier unless ``aux_logits=True``."""
    return InceptionV3(**kwargs)


if __name__ == "__main__":
    from paperzoo.cli import main

    main(["run", "inception_v3"])
