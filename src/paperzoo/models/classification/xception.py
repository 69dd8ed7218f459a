"""Xception.

Paper: "Xception: Deep Learning with Depthwise Separable Convolutions", François Chollet, CVPR 2017 (arXiv 2016).
https://arxiv.org/abs/1610.02357

An Inception module factors a convolution in two: 1×1 convolutions first map the cross-channel correlations
into a few smaller spaces, then 3×3 convolutions map the spatial correlations inside each of them. Behind it
stands a hypothesis (§1.1): cross-channel and spatial correlations are decoupled enough that it is better not
to map them jointly. Xception takes the hypothesis to its end:

* A continuum of modules (§1.2, Figures 2–4). A simplified Inception module (one 1×1 → 3×3 tower per
  segment) is the same as one large 1×1 convolution followed by 3×3 convolutions on non-overlapping segments
  of its output channels. With as many segments as channels, each 3×3 convolution sees one channel: an
  "extreme" Inception module, almost a *depthwise separable convolution*: a depthwise convolution (one k×k
  filter per channel, spatial correlations only) followed by a pointwise 1×1 convolution (cross-channel
  correlations only). It costs k²·C_in + C_in·C_out weights instead of k²·C_in·C_out.
* Between the two there is no non-linearity (§4.7, Figure 10: no activation beats ELU and ReLU there); the
  order (depthwise first) does not matter in a stack.
* The architecture (§3, Figure 5): "a linear stack of depthwise separable convolution layers with residual
  connections". 36 convolutional layers in 14 modules, each module except the first and the last wrapped by
  a linear residual connection (an identity, or a strided 1×1 convolution where the shape changes); every
  convolution is followed by batch normalisation; separable convolutions have depth multiplier 1.
* At nearly Inception V3's parameter count (22,855,952 against 23,626,728, Table 3) it is more accurate on
  ImageNet and much more so on JFT: the gain comes from using the parameters better, not from more of them.

Data flow (Figure 5) at 299×299; every convolution is followed by BatchNorm::

    image 3×299×299
    entry flow:
      conv1 3×3/2, 32, unpadded → ReLU; conv2 3×3, 64, unpadded → ReLU                 64×147×147
      module1: SepConv 128 → ReLU → SepConv 128 → 3×3 max pool /2   (+ 1×1/2 conv)    128×74×74
      module2: ReLU → SepConv 256 → ReLU → SepConv 256 → max pool /2 (+ 1×1/2 conv)    256×37×37
      module3: ReLU → SepConv 728 → ReLU → SepConv 728 → max pool /2 (+ 1×1/2 conv)    728×19×19
    middle flow, 8 times:
      ReLU → SepConv 728 → ReLU → SepConv 728 → ReLU → SepConv 728     (+ identity)   728×19×19
    exit flow:
      module: ReLU → SepConv 728 → ReLU → SepConv 1024 → max pool /2   (+ 1×1/2 conv) 1024×10×10
      SepConv 1536 → ReLU → SepConv 2048 → ReLU                                      2048×10×10
      global average pool → fc (logistic regression)                                     1000 logits

    one module:   x ──► [ReLU ─► SepConv ─► BN] × 2 or 3 ─► [max pool /2] ──(+)──► y
                  └──────────── identity, or 1×1 conv /2 ─► BN ──────────────┘

Deviations from the paper, all the reference's (timm's ``legacy_xception``, the Keras model's weights ported to
PyTorch by Cadene), kept so that its weights load and its outputs match:

* The max poolings pad one pixel on every side (PyTorch's symmetric padding); the Keras original pads "same",
  which on an even-sized map (74 → 37) adds the extra pixel only on the bottom and right, so the pooling
  windows sit one pixel apart. The two stem convolutions are unpadded in both, as in the Keras model.
* BatchNorm ε = 1e-5, PyTorch's default (Keras uses 1e-3).
* No dropout by default (the reference's default); the paper trains on ImageNet with dropout 0.5 before the
  logistic regression layer (its regularization configuration, §4), ``drop_rate=0.5`` adds it.
* Initialisation as timm: He normal (fan-out) for every convolution, BN scale 1 and shift 0, PyTorch's default
  for the fc layer (the paper does not say).
* ``features_only`` returns the outputs of the stem, of entry modules 1 and 2, of the middle flow and of the
  exit flow (strides 2, 4, 8, 16, 32), each as its module computes it; timm's feature extractor takes the
  module outputs after the ReLU that starts the next module.

TorchScript: timm's (legacy) Xception compiles with ``torch.jit.script``; this one does not (its input check and the
shared classifier plumbing are Python that TorchScript cannot compile, and TorchScript is deprecated upstream).
``torch.export``, ``torch.compile(fullgraph=True)`` and ``torch.fx`` capture it instead (tests/test_export.py,
tests/test_graph_capture.py).
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

import torch
from torch import nn

from paperzoo.layers import ConvNormAct, FeatureInfo
from paperzoo.layers.classifier import ClassifierPool, ImageClassifier
from paperzoo.registry import InputSpec, ModelCard, Paper, register

__all__ = ["Xception", "XceptionModule", "SeparableConv2d"]

MIDDLE_FLOW_MODULES = 8  # Figure 5: "repeated 8 times"
MIDDLE_WIDTH = 728


class SeparableConv2d(nn.Module):
    """A depthwise separable convolution: a k×k convolution of each channel on its own (spatial correlations),
    then a 1×1 convolution across channels (cross-channel correlations), with no non-linearity between.

    Args:
        in_channels, out_channels: as ``nn.Conv2d``.
        kernel_size: k of the depthwise convolution (3); padded to keep the size.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3) -> None:
        super().__init__()
        # groups = in_channels: one k×k filter per channel, k²·C_in weights (depth multiplier 1).
        self.depthwise = nn.Conv2d(in_channels, in_channels, kernel_size, padding=kernel_size // 2,
                                   groups=in_channels, bias=False)
        self.pointwise = nn.Conv2d(in_channels, out_channels, 1, bias=False)  # C_in·C_out weights

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pointwise(self.depthwise(x))


class XceptionModule(nn.Module):
    """One module of Figure 5 with its linear residual connection: [ReLU → SepConv → BN] per width, then a
    3×3 max pooling with stride 2 where the module downsamples.

    Args:
        in_channels: channels of x.
        widths: output channels of the module's separable convolutions, in order (the last is the module's).
        stride: 2 ends the module with a 3×3/2 max pooling and gives the shortcut a 1×1/2 convolution.
        start_with_relu: the first module of the entry flow has no leading ReLU (the stem's ReLU precedes it).
    """

    def __init__(self, in_channels: int, widths: tuple[int, ...], stride: int = 1,
                 start_with_relu: bool = True) -> None:
        super().__init__()
        layers: OrderedDict[str, nn.Module] = OrderedDict()
        channels = in_channels
        for i, width in enumerate(widths, start=1):
            if i > 1 or start_with_relu:
                # Not in place on the module's input: the shortcut still reads it.
                layers[f"act{i}"] = nn.ReLU(inplace=i > 1)
            layers[f"sepconv{i}"] = SeparableConv2d(channels, width)
            layers[f"norm{i}"] = nn.BatchNorm2d(width)
            channels = width
        if stride > 1:
            layers["pool"] = nn.MaxPool2d(3, stride, padding=1)
        self.residual = nn.Sequential(layers)
        if stride == 1 and in_channels == channels:
            self.shortcut: nn.Module = nn.Identity()
        else:
            self.shortcut = ConvNormAct(in_channels, channels, 1, stride=stride, act_layer=None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.residual(x) + self.shortcut(x)  # linear residual connection: no ReLU after the sum


def separable_conv_norm_act(in_channels: int, out_channels: int) -> nn.Sequential:
    """The exit flow's last layers, outside any residual connection: SepConv → BN → ReLU."""
    return nn.Sequential(OrderedDict(conv=SeparableConv2d(in_channels, out_channels),
                                     norm=nn.BatchNorm2d(out_channels), act=nn.ReLU(inplace=True)))


class Xception(ImageClassifier):
    """Xception (Figure 5): entry flow, middle flow (8 identical modules), exit flow.

    Args:
        drop_rate: dropout before the classifier (0; the paper trains on ImageNet with 0.5).
        num_classes: outputs of the fc layer; 0 leaves it out and returns pooled features.
        in_chans: channels of the input image.
    """

    # The network's total stride, as for the ResNets. The unpadded stem alone needs 7 pixels (the reference
    # fails below: 6 → 2 → 0); below 32 the exit flow's map is one pixel computed mostly from padding.
    min_input_size = 32
    model_name = "xception"
    first_conv = "entry_flow.conv1.conv"
    head_dropout_name = "dropout"

    def __init__(
        self,
        drop_rate: float = 0.0,
        num_classes: int = 1000,
        in_chans: int = 3,
    ) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.in_chans = in_chans

        entry: OrderedDict[str, nn.Module] = OrderedDict(
            conv1=ConvNormAct(in_chans, 32, 3, stride=2, padding=0),
            conv2=ConvNormAct(32, 64, 3, padding=0),
        )
        entry_modules = [("module1", 64, 128, False), ("module2", 128, 256, True), ("module3", 256, 728, True)]
        for name, in_channels, width, start_with_relu in entry_modules:
            entry[name] = XceptionModule(in_channels, (width, width), stride=2, start_with_relu=start_with_relu)
        self.entry_flow = nn.Sequential(entry)
        self.middle_flow = nn.Sequential(OrderedDict(
            (f"module{i}", XceptionModule(MIDDLE_WIDTH, (MIDDLE_WIDTH,) * 3))
            for i in range(1, MIDDLE_FLOW_MODULES + 1)))
        self.exit_flow = nn.Sequential(OrderedDict(
            module=XceptionModule(MIDDLE_WIDTH, (728, 1024), stride=2),
            sepconv1=separable_conv_norm_act(1024, 1536),
            sepconv2=separable_conv_norm_act(1536, 2048),
        ))

        # The maps at strides 2 … 32, as timm's: entry module3 opens stride 16, so it goes with the middle flow.
        self.feature_info = FeatureInfo([(64, 2, "entry_flow.conv2"), (128, 4, "entry_flow.module1"),
                                         (256, 8, "entry_flow.module2"), (728, 16, "middle_flow"),
                                         (2048, 32, "exit_flow")])
        self.level_modules = (("entry_flow.conv1", "entry_flow.conv2"), ("entry_flow.module1",),
                              ("entry_flow.module2",), ("entry_flow.module3", "middle_flow"), ("exit_flow",))

        self.num_features = 2048
        self.global_pool = ClassifierPool("avg")
        self.dropout = nn.Dropout(drop_rate)
        self.fc = nn.Linear(self.num_features, num_classes) if num_classes > 0 else nn.Identity()
        self._init_weights()

    def _init_weights(self) -> None:
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

    def forward_stem(self, x: torch.Tensor) -> torch.Tensor:
        return x  # the stem's two convolutions are the first feature level (stride 2)


_PAPER = Paper(
    title="Xception: Deep Learning with Depthwise Separable Convolutions",
    authors="François Chollet",
    year=2017,
    url="https://arxiv.org/abs/1610.02357",
)
_INNOVATIONS = (
    "the Inception hypothesis taken to its end: map cross-channel and spatial correlations entirely separately",
    "depthwise separable convolutions (per-channel kxk, then 1x1) with no non-linearity between the two",
    "a linear stack of 36 such layers in 14 modules, each but the first and last with a linear residual connection",
    "Inception V3's parameter count used better: more accurate on ImageNet, much more on JFT",
)


@register(ModelCard(
    name="xception",
    architecture="Xception",
    task="image-classification",
    paper=_PAPER,
    innovations=_INNOVATIONS,
    input=InputSpec(kind="image", shape=(3, 299, 299), min_size=Xception.min_input_size),
    params=22_855_952,
    params_source="timm legacy_xception, counted (the paper's Table 3 gives the same 22,855,952)",
    reference="timm:legacy_xception",
    gmacs=8.357,
    canonical=True,
    notes="The Keras model's weights as ported by Cadene and timm; 299x299 inputs normalised to [-1, 1].",
))
def xception(**kwargs: Any) -> Xception:
    """Xception: entry flow, 8 middle-flow modules, exit flow (Figure 5)."""
    return Xception(**kwargs)


if __name__ == "__main__":
    from paperzoo.cli import main

    main(["run", "xception"])
