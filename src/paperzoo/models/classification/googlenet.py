"""GoogLeNet (Inception v1).

Paper: "Going Deeper with Convolutions", Christian Szegedy, Wei Liu, Yangqing Jia, Pierre Sermanet, Scott Reed,
Dragomir Anguelov, Dumitru Erhan, Vincent Vanhoucke, Andrew Rabinovich, CVPR 2015 (arXiv 2014).
https://arxiv.org/abs/1409.4842

GoogLeNet won ILSVRC-2014 with a 22-layer network that has twelve times fewer parameters than AlexNet. Making a
network bigger, deeper and wider, costs computation quadratically and over-fits; the principled fix would be
sparse connections (Arora et al.: cluster units whose activations correlate), but sparse arithmetic is slow on
real hardware. The Inception module approximates such a sparse structure with dense, readily available parts:

* The Inception module (§4, Figure 2). Several filter sizes look at the same input in parallel, a 1×1, a 3×3
  and a 5×5 convolution and a 3×3 max pooling, and their outputs are concatenated along the channels, so the
  next stage sees features of several scales at once.
* 1×1 convolutions as dimension reductions (Figure 2b): the naive module's output width only grows, and 5×5
  convolutions on a wide input are prohibitively expensive. A 1×1 convolution ("#3×3 reduce", "#5×5 reduce")
  shrinks the channels before the 3×3 and 5×5, and one after the pooling ("pool proj") keeps the pooling branch
  narrow; each reduction is followed by a ReLU, so it adds non-linearity as well.
* Auxiliary classifiers (§5): small classifiers on the outputs of inception (4a) and (4d) whose losses are added
  to the total loss with a weight of 0.3 during training, to push gradient into the middle of the deep network
  and to regularise it; they are discarded at inference.
* Global average pooling before the classifier instead of fully-connected layers (after Network in Network;
  +0.6% top-1), with dropout still essential.

Data flow (Table 1, channels × size at 224×224)::

    image 3×224×224
      conv1 7×7/2 → pool1 3×3/2 max                       64×56×56
      conv2_reduce 1×1 → conv2 3×3 → pool2 3×3/2 max     192×28×28
      inception 3a, 3b → pool3 3×3/2 max                 480×14×14
      inception 4a ───────────────► auxiliary classifier (4a) ─► aux logits  (training only)
      inception 4b, 4c, 4d ───────► auxiliary classifier (4d) ─► aux logits  (training only)
      inception 4e → pool4 max                           832×7×7
      inception 5a, 5b                                  1024×7×7
      global average pool → dropout → fc                     1000 logits

    one Inception module (Figure 2b):
              ┌─► 1×1 ─────────────────────────┐
              ├─► 1×1 reduce ─► 3×3 ───────────┤
         x ───┼─► 1×1 reduce ─► 5×5 ───────────┼─► concatenate the channels ─► y
              └─► 3×3 max pool ─► 1×1 pool proj┘

With ``aux_logits=True`` a model in training mode returns ``(logits, (aux_4a, aux_4d))``, the two auxiliary
classifiers' logits in the order of depth; :meth:`GoogLeNet.loss` turns that into the paper's objective,
``CE(logits) + 0.3 · (CE(aux_4a) + CE(aux_4d))``. In eval mode, and always without ``aux_logits``, it returns
the logits alone. ``aux_logits`` is off by default (13,004,888 parameters with it, 6,624,904 without).

Deviations from the paper, all torchvision's, kept so that its weights load and its outputs match:

* The "5×5" branch of every Inception module is a 3×3 convolution. torchvision's implementation has this bug
  (pytorch/vision issue #906), and its ImageNet weights were trained with it, so it stays; the branch keeps the
  paper's name. ``kernel_size_5x5=5`` builds the paper's branch (more parameters, no weights to load).
* Batch normalisation (ε = 0.001) after every convolution, including those of the auxiliary classifiers, and
  no bias in the convolutions; the paper predates batch normalisation and uses biases.
* No local response normalisation after pool1 and after conv2 (Figure 3 has both).
* pool4, before inception (5a), is a 2×2/2 max pooling; Table 1 lists 3×3/2.
* The auxiliary classifiers reduce their input with an adaptive average pooling to 4×4 instead of the paper's
  5×5/3 average pooling (the same 4×4 output at 224×224, but from windows of 4 rather than 5 pixels).
* Dropout 0.2 before the final classifier (the paper: 40%); the auxiliary classifiers keep the paper's 70%.
* A global (adaptive) average pooling instead of the 7×7/1 one, so other input sizes work.
* ``transform_input=True`` (off by default) re-normalises an ImageNet-normalised input to the [-1, 1] range
  that torchvision's ported ImageNet weights expect (torchvision turns it on when it loads those weights).

Initialisation as torchvision's: convolution and linear weights from a normal distribution with σ = 0.01
(truncated at ±2, i.e. at 200σ, which in effect is not truncated), BatchNorm scale 1 and shift 0, and the linear
biases at PyTorch's default.

TorchScript: torchvision's GoogLeNet compiles with ``torch.jit.script``; this one does not (its input check and the
shared classifier plumbing are Python that TorchScript cannot compile, and TorchScript is deprecated upstream).
``torch.export``, ``torch.compile(fullgraph=True)`` and ``torch.fx`` capture it instead (tests/test_export.py,
tests/test_graph_capture.py).
"""

from __future__ import annotations

from functools import partial
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from paperzoo.layers import ConvNormAct, FeatureInfo
from paperzoo.layers.classifier import ClassifierPool, ImageClassifier
from paperzoo.registry import InputSpec, ModelCard, Paper, register

__all__ = ["GoogLeNet", "InceptionModule", "AuxiliaryClassifier"]

# ImageNet's per-channel mean and standard deviation, for transform_input.
_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)


def conv_bn_relu(in_channels: int, out_channels: int, kernel_size: int, stride: int = 1) -> ConvNormAct:
    """A convolution with "same" padding → BatchNorm (ε = 0.001, as torchvision's weights) → ReLU."""
    return ConvNormAct(in_channels, out_channels, kernel_size, stride=stride,
                       norm_layer=partial(nn.BatchNorm2d, eps=1e-3))


class InceptionModule(nn.Module):
    """The Inception module with dimension reductions (Figure 2b): four parallel branches, concatenated.

    The arguments are the columns of Table 1.

    Args:
        in_channels: channels of the input.
        out_1x1: "#1×1", the width of the 1×1 branch.
        reduce_3x3, out_3x3: "#3×3 reduce" and "#3×3": the 1×1 reduction and the 3×3 convolution after it.
        reduce_5x5, out_5x5: "#5×5 reduce" and "#5×5": the 1×1 reduction and the 5×5 convolution after it.
        pool_proj: "pool proj", the 1×1 projection after the 3×3 max pooling.
        kernel_size_5x5: the kernel of the "5×5" branch (3 in torchvision, see the module's Deviations).
    """

    def __init__(self, in_channels: int, out_1x1: int, reduce_3x3: int, out_3x3: int, reduce_5x5: int,
                 out_5x5: int, pool_proj: int, kernel_size_5x5: int = 3) -> None:
        super().__init__()
        self.branch_1x1 = conv_bn_relu(in_channels, out_1x1, 1)
        # The 1×1 reductions make the larger kernels affordable: in (3a) the 5×5 sees 16 channels, not 192.
        self.branch_3x3 = nn.Sequential(conv_bn_relu(in_channels, reduce_3x3, 1),
                                        conv_bn_relu(reduce_3x3, out_3x3, 3))
        self.branch_5x5 = nn.Sequential(conv_bn_relu(in_channels, reduce_5x5, 1),
                                        conv_bn_relu(reduce_5x5, out_5x5, kernel_size_5x5))
        # Pooling helped in the convolutional networks of the time, so a pooling path is added (§4); its 1×1
        # projection keeps it from passing all in_channels on and making the output ever wider.
        self.branch_pool = nn.Sequential(nn.MaxPool2d(kernel_size=3, stride=1, padding=1),
                                         conv_bn_relu(in_channels, pool_proj, 1))
        self.out_channels = out_1x1 + out_3x3 + out_5x5 + pool_proj

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        branches = [self.branch_1x1(x), self.branch_3x3(x), self.branch_5x5(x), self.branch_pool(x)]
        return torch.cat(branches, dim=1)  # every branch keeps H × W: (N, out_channels, H, W)


class AuxiliaryClassifier(nn.Module):
    """The side classifier of §5, on the output of inception (4a) or (4d); used in training only.

    Average pooling to 4×4, a 1×1 convolution of 128 filters (reduction, ReLU), a fully-connected layer of 1024
    units (ReLU), dropout of 70%, and a linear classifier over the same classes as the main one.

    Args:
        in_channels: channels of the tapped feature map (512 at 4a, 528 at 4d).
        num_classes: outputs of the classifier; 0 leaves it out.
        dropout: the dropout probability before the classifier (the paper's 0.7).
    """

    def __init__(self, in_channels: int, num_classes: int, dropout: float = 0.7) -> None:
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d((4, 4))
        self.reduce = conv_bn_relu(in_channels, 128, 1)
        self.hidden = nn.Linear(128 * 4 * 4, 1024)
        self.dropout = nn.Dropout(p=dropout)
        self.fc = nn.Linear(1024, num_classes) if num_classes > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.reduce(self.pool(x))  # (N, C, 14, 14) → (N, 128, 4, 4)
        x = F.relu(self.hidden(torch.flatten(x, 1)), inplace=True)  # (N, 2048) → (N, 1024)
        return self.fc(self.dropout(x))


class GoogLeNet(ImageClassifier):
    """GoogLeNet (Table 1), with torchvision's deviations (see the module docstring).

    Args:
        num_classes: outputs of the final classifier (and of the auxiliary ones); 0 leaves them out and returns
            the pooled features.
        in_chans: channels of the input image.
        aux_logits: build the two auxiliary classifiers; in training mode ``forward`` then returns
            ``(logits, (aux_4a, aux_4d))``.
        transform_input: re-normalise an ImageNet-normalised input to [-1, 1] first, as torchvision's ported
            ImageNet weights expect (off by default; needs ``in_chans=3``).
        dropout: dropout probability before the final classifier (torchvision's 0.2; the paper's 0.4).
        dropout_aux: dropout probability in the auxiliary classifiers (the paper's 0.7).
        kernel_size_5x5: kernel of the Inception modules' "5×5" branch: 3 as torchvision (the default), 5 as the
            paper.
    """

    # At 15×15 pool2 leaves a 2×2 map, which the ceil-mode pool3 and pool4 turn into 1×1; at 14×14 pool2 leaves
    # 1×1, too small for pool3's 3×3 window. Found by trying sizes; torchvision's model has the same limit.
    min_input_size = 15
    model_name = "googlenet"
    first_conv = "stem.conv1.conv"
    head_dropout_name = "dropout"

    def __init__(
        self,
        num_classes: int = 1000,
        in_chans: int = 3,
        aux_logits: bool = False,
        transform_input: bool = False,
        dropout: float = 0.2,
        dropout_aux: float = 0.7,
        kernel_size_5x5: int = 3,
    ) -> None:
        super().__init__()
        if transform_input and in_chans != 3:
            raise ValueError(f"transform_input re-normalises RGB images and needs in_chans=3, got {in_chans}")
        self.num_classes = num_classes
        self.in_chans = in_chans
        self.aux_logits = aux_logits
        self.transform_input = transform_input

        # Rounding the pooled size up gives Table 1's sizes (112 → 56, not 55).
        max_pool = partial(nn.MaxPool2d, stride=2, ceil_mode=True)
        self.stem = nn.Sequential()
        self.stem.add_module("conv1", conv_bn_relu(in_chans, 64, 7, stride=2))  # 224 → 112
        self.stem.add_module("pool1", max_pool(kernel_size=3))  # 112 → 56
        self.stem.add_module("conv2_reduce", conv_bn_relu(64, 64, 1))
        self.stem.add_module("conv2", conv_bn_relu(64, 192, 3))
        self.stem.add_module("pool2", max_pool(kernel_size=3))  # 56 → 28

        # Table 1: in_channels, #1×1, #3×3 reduce, #3×3, #5×5 reduce, #5×5, pool proj.
        inception = partial(InceptionModule, kernel_size_5x5=kernel_size_5x5)
        self.inception3a = inception(192, 64, 96, 128, 16, 32, 32)
        self.inception3b = inception(256, 128, 128, 192, 32, 96, 64)
        self.pool3 = max_pool(kernel_size=3)  # 28 → 14
        self.inception4a = inception(480, 192, 96, 208, 16, 48, 64)
        self.inception4b = inception(512, 160, 112, 224, 24, 64, 64)
        self.inception4c = inception(512, 128, 128, 256, 24, 64, 64)
        self.inception4d = inception(512, 112, 144, 288, 32, 64, 64)
        self.inception4e = inception(528, 256, 160, 320, 32, 128, 128)
        self.pool4 = max_pool(kernel_size=2)  # 14 → 7
        self.inception5a = inception(832, 256, 160, 320, 32, 128, 128)
        self.inception5b = inception(832, 384, 192, 384, 48, 128, 128)

        if aux_logits:
            self.aux_4a = AuxiliaryClassifier(self.inception4a.out_channels, num_classes, dropout_aux)
            self.aux_4d = AuxiliaryClassifier(self.inception4d.out_channels, num_classes, dropout_aux)

        # the feature levels: the last layer at each stride, 2 … 32
        self.feature_info = FeatureInfo([(64, 2, "stem.conv1"), (192, 4, "stem.conv2"), (480, 8, "inception3b"),
                                         (832, 16, "inception4e"), (1024, 32, "inception5b")])
        self.level_modules = (("stem.conv1",), ("stem.pool1", "stem.conv2_reduce", "stem.conv2"),
                              ("stem.pool2", "inception3a", "inception3b"),
                              ("pool3", "inception4a", "inception4b", "inception4c", "inception4d", "inception4e"),
                              ("pool4", "inception5a", "inception5b"))

        self.num_features = self.inception5b.out_channels  # 1024
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

    def init_classifier(self, layer: nn.Module) -> None:
        nn.init.trunc_normal_(layer.weight, mean=0.0, std=0.01, a=-2.0, b=2.0)

    def forward_stem(self, x: torch.Tensor) -> torch.Tensor:
        if self.transform_input:
            mean = x.new_tensor(_IMAGENET_MEAN).view(1, 3, 1, 1)
            std = x.new_tensor(_IMAGENET_STD).view(1, 3, 1, 1)
            x = (x * std + mean - 0.5) / 0.5  # undo ImageNet normalisation, then map [0, 1] to [-1, 1]
        return x

    def _trunk(self, x: torch.Tensor, with_aux: bool) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
        """Images → inception (5b)'s map ``(N, 1024, H/32, W/32)``, and the auxiliary logits if ``with_aux``."""
        aux = []
        x = self.stem(self.forward_stem(x))  # (N, 192, H/8, W/8)
        x = self.pool3(self.inception3b(self.inception3a(x)))  # (N, 480, H/16, W/16)
        x = self.inception4a(x)  # (N, 512, H/16, W/16)
        if with_aux:
            aux.append(self.aux_4a(x))
        x = self.inception4d(self.inception4c(self.inception4b(x)))  # (N, 528, H/16, W/16)
        if with_aux:
            aux.append(self.aux_4d(x))
        x = self.pool4(self.inception4e(x))  # (N, 832, H/32, W/32)
        x = self.inception5b(self.inception5a(x))  # (N, 1024, H/32, W/32)
        return x, tuple(aux)

    def forward(self, x: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        """Logits; in training mode with ``aux_logits``, ``(logits, (aux_4a, aux_4d))``."""
        if not (self.training and self.aux_logits) or self.features_only:
            return super().forward(x)
        self.check_input(x)
        features, aux = self._trunk(x, with_aux=True)
        return self.forward_head(features), aux

    def loss(self, output: torch.Tensor | tuple[torch.Tensor, tuple[torch.Tensor, ...]], target: torch.Tensor,
             aux_weight: float = 0.3) -> torch.Tensor:
        """The paper's training loss (§5): cross-entropy of the main classifier plus ``aux_weight`` (0.3) times
        that of each auxiliary classifier, when ``output`` carries them (training mode with ``aux_logits``)."""
        if isinstance(output, torch.Tensor):
            return F.cross_entropy(output, target)
        logits, aux = output
        return F.cross_entropy(logits, target) + aux_weight * sum(F.cross_entropy(a, target) for a in aux)

    def reset_classifier(self, num_classes: int, global_pool: str | None = None) -> None:
        """Replace the final classifier, and the auxiliary ones' if built, with fresh layers of ``num_classes``
        outputs (0: none, so the model returns the pooled features)."""
        super().reset_classifier(num_classes, global_pool)
        if self.aux_logits:
            for aux in (self.aux_4a, self.aux_4d):  # their fc reads 1024 features too
                aux.fc = self._new_classifier(num_classes, aux.fc)


@register(ModelCard(
    name="googlenet",
    architecture="GoogLeNet (Inception v1)",
    task="image-classification",
    paper=Paper(
        title="Going Deeper with Convolutions",
        authors="Christian Szegedy, Wei Liu, Yangqing Jia, Pierre Sermanet, Scott Reed, Dragomir Anguelov, "
                "Dumitru Erhan, Vincent Vanhoucke, Andrew Rabinovich",
        year=2014,
        url="https://arxiv.org/abs/1409.4842",
    ),
    innovations=(
        "the Inception module: parallel 1x1, 3x3, 5x5 convolutions and 3x3 pooling, concatenated",
        "1x1 convolutions reduce the channels before the expensive 3x3 and 5x5 convolutions",
        "22 layers deep on a budget of 1.5 billion multiply-adds, with 12 times fewer parameters than AlexNet",
        "auxiliary classifiers on intermediate layers add weighted losses in training (0.3 each)",
        "global average pooling instead of fully-connected layers before the classifier",
    ),
    input=InputSpec(kind="image", shape=(3, 224, 224), min_size=GoogLeNet.min_input_size),
    params=6_624_904,
    params_source="torchvision.models.googlenet(aux_logits=False), counted; 13,004,888 with aux_logits=True",
    reference="torchvision.models.googlenet(aux_logits=False, init_weights=True)",
    gmacs=1.498,
    canonical=True,
    notes="torchvision's network: BatchNorm everywhere and a 3x3 kernel in the '5x5' branch (vision#906); "
          "aux_logits=True adds the two auxiliary classifiers.",
))
def googlenet(**kwargs: Any) -> GoogLeNet:
    """GoogLeNet as torchvision builds it, without the auxiliary classifiers unless ``aux_logits=True``."""
    return GoogLeNet(**kwargs)


if __name__ == "__main__":
    from paperzoo.cli import main

    main(["run", "googlenet"])
