r"""SENet: Squeeze-and-Excitation Networks (SE-ResNet-50 and SENet-154).

Paper: "Squeeze-and-Excitation Networks", Jie Hu, Li Shen, Samuel Albanie, Gang Sun, Enhua Wu, CVPR 2018
(arXiv 2017). https://arxiv.org/abs/1709.01507

A convolution mixes channels only inside its local receptive field, and every channel of its output counts
the same. The SE block lets the network recalibrate its channels from *global* information, cheaply, in
three steps on the output U = [u_1, …, u_C] of any transformation F_tr (§3):

* Squeeze (§3.1): global average pooling turns each channel into one descriptor of its whole map,
  $z_c = F_{sq}(u_c) = \frac{1}{H W} \sum_i \sum_j u_c(i, j)$ (eq. 2).
* Excitation (§3.2): a gating mechanism learns non-mutually-exclusive channel dependencies,
  $s = F_{ex}(z, W) = \sigma(W_2\, \delta(W_1 z))$ (eq. 3),
  a bottleneck of two fully-connected layers, $W_1 \in \mathbb{R}^{C/r \times C}$ with ReLU $\delta$ and
  $W_2 \in \mathbb{R}^{C \times C/r}$ with a sigmoid $\sigma$, so that several channels can be emphasised at once (a
  softmax would pick one). The reduction ratio r = 16 balances accuracy and cost (the paper's ablation over r).
* Scale: each channel is multiplied by its gate, $\tilde x_c = F_{scale}(u_c, s_c) = s_c \cdot u_c$ (eq. 4).

The block drops into existing architectures: in a ResNet (Figure 3) it recalibrates the residual branch,
after its last BatchNorm and before the sum with the identity. It adds $\frac{2}{r} \sum_s N_s C_s^2$ weights (eq. 5:
$N_s$ blocks of $C_s$ output channels in stage $s$), about 10% for ResNet-50 (2.5M on top of 25.6M), and under 1% of
the computation (0.26% for ResNet-50). SE-ResNet-50 approaches the accuracy of ResNet-101 at half its cost
(Table 2).

SENet-154 (Appendix), the single model behind the winning ILSVRC 2017 entry, is a 64×4d ResNeXt-152 with SE
blocks and these changes: (a) the first 1×1 convolution of each bottleneck has half the channels, (b) the 7×7
stem is three 3×3 convolutions, (c) the 1×1 stride-2 projection shortcuts are 3×3 stride-2 convolutions, "to
preserve information", (d) dropout 0.2 before the classifier; the rest is training (label smoothing, frozen
BN at the end, batch 2048).

Data flow of SE-ResNet-50 at 224×224 (Table 1; SENet-154 in brackets)::

    image 3×224×224
      stem: 7×7, 64, stride 2 [3×3/2 64, 3×3 64, 3×3 128] → 3×3 max pool, stride 2    64 [128]×56×56
      conv2_x: 3 SE bottlenecks (→ 256)                                              256×56×56
      conv3_x: 4 [8] SE bottlenecks (→ 512), first has stride 2                      512×28×28
      conv4_x: 6 [36] SE bottlenecks (→ 1024), first has stride 2                   1024×14×14
      conv5_x: 3 SE bottlenecks (→ 2048), first has stride 2                        2048×7×7
      global average pool → [dropout 0.2] → fc                                          1000 logits

    one SE bottleneck (conv2_x of SE-ResNet-50; SENet-154's widths in brackets):

      x ─┬─► 1×1, 64 [128] ─► 3×3, 64 [256, 64 groups] ─► 1×1, 256 ─► U ─┬──────────────────► (×) ─► (+) ─► ReLU ─► y
         │                                                               └─► squeeze ─► excite ┘      │
         └───────────────── identity, or projection 1×1 [3×3] with stride ────────────────────────────┘

      squeeze: global average pool, U (N, 256, H, W) → z (N, 256, 1, 1)
      excite:  fc 256 → 16 ─► ReLU ─► fc 16 → 256 ─► sigmoid: the gates s (N, 256, 1, 1)

Deviations from the paper, kept so that the reference's weights load and its outputs match:

* ``seresnet50`` is timm's ``seresnet50``, trained by timm in PyTorch: a downsampling block puts its stride
  on the 3×3 convolution ("ResNet v1.5"); the authors' Caffe SE-ResNet-50 put it on the first 1×1, as the
  original ResNet. The parameter count (28,088,024, the paper's 28.1M) is the same either way.
* ``senet154`` is timm's ``legacy_senet154``, a port of the authors' Caffe model: its stem max pooling pads
  nothing and rounds its output size up (Caffe's pooling, ``ceil_mode=True``), where seresnet50's pads by one
  and rounds down; on even sizes both give the same map size but not the same border values. The widths of
  its three stem convolutions (64, 64, 128) are the released model's; the paper does not give them.
* The excitation's fully-connected layers have biases (eq. 3 writes none), as in the authors' code; they are
  1×1 convolutions on the pooled (N, C, 1, 1) map, which is the same thing.
* BatchNorm ε = 1e-5, PyTorch's default, as in both references (the paper gives no value).
* Initialisation as timm: He normal (fan-out) for every convolution, BN scale 1 and shift 0, PyTorch's default
  for the fc layer. timm's ``seresnet50`` also zeroes the last BN scale of every block by default; here that
  is ``zero_init_residual=True``, off by default: a zero scale cuts the gradient to the branch's other layers
  at the first step, and this project checks that every parameter receives a gradient.

TorchScript: timm's SENet compiles with ``torch.jit.script``; this one does not (its input check and the shared
classifier plumbing are Python that TorchScript cannot compile, and TorchScript is deprecated upstream).
``torch.export``, ``torch.compile(fullgraph=True)`` and ``torch.fx`` capture it instead (tests/test_export.py,
tests/test_graph_capture.py).
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

import torch
from torch import nn

from paperzoo.layers import ConvNormAct, FeatureInfo, SqueezeExcite
from paperzoo.layers.classifier import ClassifierPool, ImageClassifier
from paperzoo.registry import InputSpec, ModelCard, Paper, register

__all__ = ["SENet", "SEBottleneck"]

STAGE_OUT_CHANNELS = (256, 512, 1024, 2048)  # Table 1: the ResNet-50 widths, doubling as the map halves


def shortcut(in_channels: int, out_channels: int, stride: int, kernel_size: int) -> nn.Module:
    """The identity where the shape is kept, else a projection with stride: ResNet's 1×1 (option B), or
    SENet-154's 3×3 (Appendix, change c), which sees every input pixel instead of one in four."""
    if stride == 1 and in_channels == out_channels:
        return nn.Identity()
    kernel_size = kernel_size if stride > 1 else 1  # a projection that keeps the size only widens: 1×1
    return ConvNormAct(in_channels, out_channels, kernel_size, stride=stride, act_layer=None)


class SEBottleneck(nn.Module):
    """A bottleneck residual block whose branch is recalibrated by an SE block before the sum (Figure 3).

    Args:
        in_channels: channels of x.
        out_channels: channels of y (256, 512, 1024, 2048 by stage).
        reduced_channels: output of the first 1×1 convolution (SENet-154 halves it, change a).
        width: channels of the 3×3 convolution (C·d: 64·2^i for SE-ResNet-50, 64×4·2^i for SENet-154).
        cardinality: groups of the 3×3 convolution (1 in SE-ResNet, 64 in SENet-154).
        stride: stride of the 3×3 convolution and of the projection shortcut.
        reduction: r, the SE bottleneck has out_channels / r units (16).
        shortcut_kernel_size: kernel of a strided projection shortcut (1, or 3 in SENet-154).
    """

    def __init__(self, in_channels: int, out_channels: int, reduced_channels: int, width: int,
                 cardinality: int = 1, stride: int = 1, reduction: int = 16, shortcut_kernel_size: int = 1) -> None:
        super().__init__()
        self.conv1 = ConvNormAct(in_channels, reduced_channels, 1)
        self.conv2 = ConvNormAct(reduced_channels, width, 3, stride=stride, groups=cardinality)
        self.conv3 = ConvNormAct(width, out_channels, 1, act_layer=None)  # U, linear before the SE block
        self.se = SqueezeExcite(out_channels, out_channels // reduction)  # W_1: C → C/r, W_2: C/r → C
        self.shortcut = shortcut(in_channels, out_channels, stride, shortcut_kernel_size)
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        u = self.conv3(self.conv2(self.conv1(x)))  # U = F_tr(x), the residual branch
        recalibrated = self.se(u)  # x̃_c = s_c · u_c with s = σ(W_2 δ(W_1 z)), z = GAP(U)  (eqs. 2–4)
        return self.act(recalibrated + self.shortcut(x))  # the identity is not rescaled


class SENet(ImageClassifier):
    """A ResNet or ResNeXt of SE bottlenecks (Table 1), with SENet-154's changes as options (Appendix).

    Args:
        blocks_per_stage: number of blocks in conv2_x … conv5_x, ``(3, 4, 6, 3)`` for SE-ResNet-50.
        cardinality: groups of every 3×3 convolution (1: SE-ResNet; 64: SENet-154).
        bottleneck_width: channels per group of the 3×3 convolutions in conv2_x, doubling with every stage
            (64 for SE-ResNet-50, 4 for the 64×4d SENet-154).
        halve_first_conv: give the first 1×1 convolution of every block half the 3×3's width (change a).
        deep_stem: three 3×3 convolutions (64, 64, 128 channels) instead of the 7×7 one (change b).
        caffe_pooling: the stem's max pooling pads nothing and rounds up, as the Caffe model's (SENet-154).
        shortcut_kernel_size: kernel of the strided projection shortcuts (1; 3 is change c).
        reduction: r, the SE reduction ratio (16).
        drop_rate: dropout before the classifier (0; 0.2 is change d).
        num_classes: outputs of the fc layer; 0 leaves it out and returns pooled features.
        in_chans: channels of the input image.
        zero_init_residual: start every block as the identity by zeroing its last BN scale (timm's default).

    ``set_grad_checkpointing()`` checkpoints each SE bottleneck in training (BatchNorm stats kept exact).
    """

    # The network's total stride, as for ResNet: the references run on smaller images (SE-ResNet-50 on any size,
    # SENet-154's unpadded stem pooling from 5 pixels) but below 32 the conv5_x map is one pixel computed
    # mostly from padding.
    min_input_size = 32
    model_name = "senet"
    first_conv = "stem.conv1.conv"
    head_dropout_name = "dropout"

    def __init__(
        self,
        blocks_per_stage: tuple[int, int, int, int] = (3, 4, 6, 3),
        cardinality: int = 1,
        bottleneck_width: int = 64,
        halve_first_conv: bool = False,
        deep_stem: bool = False,
        caffe_pooling: bool = False,
        shortcut_kernel_size: int = 1,
        reduction: int = 16,
        drop_rate: float = 0.0,
        num_classes: int = 1000,
        in_chans: int = 3,
        zero_init_residual: bool = False,
    ) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.in_chans = in_chans

        if deep_stem:  # change b: three 3×3 convolutions see the 7×7 window with more non-linearity
            stem_channels = 128
            self.stem = nn.Sequential(OrderedDict(
                conv1=ConvNormAct(in_chans, 64, 3, stride=2),
                conv2=ConvNormAct(64, 64, 3),
                conv3=ConvNormAct(64, stem_channels, 3),
            ))
        else:
            stem_channels = 64
            self.stem = nn.Sequential(OrderedDict(conv1=ConvNormAct(in_chans, stem_channels, 7, stride=2)))
        self.maxpool = (nn.MaxPool2d(3, stride=2, ceil_mode=True) if caffe_pooling
                        else nn.MaxPool2d(3, stride=2, padding=1))

        stages: OrderedDict[str, nn.Module] = OrderedDict()
        levels = []
        in_channels, stride_so_far = stem_channels, 4
        for i, (out_channels, num_blocks) in enumerate(zip(STAGE_OUT_CHANNELS, blocks_per_stage, strict=True)):
            stride = 1 if i == 0 else 2
            stride_so_far *= stride
            width = cardinality * bottleneck_width * 2**i
            reduced = width // 2 if halve_first_conv else width
            layers = []
            for j in range(num_blocks):
                layers.append(SEBottleneck(in_channels, out_channels, reduced, width, cardinality,
                                           stride=stride if j == 0 else 1, reduction=reduction,
                                           shortcut_kernel_size=shortcut_kernel_size))
                in_channels = out_channels
            name = f"conv{i + 2}_x"
            stages[name] = nn.Sequential(*layers)
            levels.append((out_channels, stride_so_far, f"stages.{name}"))
        self.stages = nn.Sequential(stages)
        self.feature_info = FeatureInfo(levels)

        self.num_features = STAGE_OUT_CHANNELS[-1]
        self.global_pool = ClassifierPool("avg")
        self.dropout = nn.Dropout(drop_rate)  # change d: 0.2 in SENet-154, "to reduce overfitting"
        self.fc = nn.Linear(self.num_features, num_classes) if num_classes > 0 else nn.Identity()
        self._init_weights(zero_init_residual)

    def _init_weights(self, zero_init_residual: bool) -> None:
        for module in self.modules():
            if isinstance(module, nn.Conv2d):  # the SE block's fully-connected layers too, as timm
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
        if zero_init_residual:
            for module in self.modules():
                if isinstance(module, SEBottleneck):
                    nn.init.zeros_(module.conv3.norm.weight)

    def forward_stem(self, x: torch.Tensor) -> torch.Tensor:
        return self.maxpool(self.stem(x))


_PAPER = Paper(
    title="Squeeze-and-Excitation Networks",
    authors="Jie Hu, Li Shen, Samuel Albanie, Gang Sun, Enhua Wu",
    year=2018,
    url="https://arxiv.org/abs/1709.01507",
)
_INNOVATIONS = (
    "squeeze: global average pooling gives every channel a descriptor of its whole map, z = GAP(U)",
    "excitation: a C -> C/16 -> C bottleneck with a sigmoid gates each channel, s = sigmoid(W2 relu(W1 z))",
    "scale: the residual branch's channels are multiplied by their gates before the sum with the identity",
    "a drop-in block: about 10% more parameters and under 1% more computation for ResNet-50's accuracy gain",
)


def _card(name: str, architecture: str, reference: str, params: int, gmacs: float, canonical: bool = False,
          notes: str = "") -> ModelCard:
    return ModelCard(
        name=name,
        architecture=architecture,
        task="image-classification",
        paper=_PAPER,
        innovations=_INNOVATIONS,
        input=InputSpec(kind="image", shape=(3, 224, 224), min_size=SENet.min_input_size),
        params=params,
        params_source=f"timm {reference}, counted",
        reference=f"timm:{reference}",
        gmacs=gmacs,
        canonical=canonical,
        notes=notes,
    )


@register(_card("seresnet50", "SE-ResNet-50", "seresnet50", params=28_088_024, gmacs=4.092, canonical=True,
                notes="timm's v1.5 (stride on the 3x3 convolution); the authors' Caffe model strides the first 1x1."))
def seresnet50(**kwargs: Any) -> SENet:
    """SE-ResNet-50: ResNet-50's bottlenecks [3, 4, 6, 3] with an SE block (r = 16) in each (Table 1)."""
    return SENet(blocks_per_stage=(3, 4, 6, 3), cardinality=1, bottleneck_width=64, **kwargs)


@register(_card("senet154", "SENet-154", "legacy_senet154", params=115_088_984, gmacs=20.688,
                notes="The authors' ILSVRC 2017 model (Caffe), as ported to PyTorch by Cadene and timm."))
def senet154(**kwargs: Any) -> SENet:
    """SENet-154: 64×4d SE-ResNeXt-152 [3, 8, 36, 3] with the Appendix's changes (a) to (d)."""
    kwargs.setdefault("drop_rate", 0.2)
    return SENet(blocks_per_stage=(3, 8, 36, 3), cardinality=64, bottleneck_width=4, halve_first_conv=True,
                 deep_stem=True, caffe_pooling=True, shortcut_kernel_size=3, **kwargs)


if __name__ == "__main__":
    from paperzoo.cli import main

    main(["run", "seresnet50"])
