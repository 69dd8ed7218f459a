r"""ResNeSt: Split-Attention Networks.

Paper: "ResNeSt: Split-Attention Networks", Hang Zhang, Chongruo Wu, Zhongyue Zhang, Yi Zhu, Haibin Lin, Zhi Zhang,
Yue Sun, Tong He, Jonas Mueller, R. Manmatha, Mu Li, Alexander Smola, 2020. https://arxiv.org/abs/2004.08955

ResNeSt keeps ResNet's simple stack of bottlenecks, so that it drops into detection and segmentation as a
backbone, and puts into the 3×3 convolution of each bottleneck an attention across *feature-map groups*,
which unifies ResNeXt's multi-path design with SENet's and SKNet's channel attention (§3):

* Feature-map groups. As in ResNeXt the features are divided into K *cardinal groups* (the
  cardinality K); each cardinal group is further divided into R *splits* (the radix R), G = K·R groups in
  all. Each split is its own transformation F_i (a 1×1 and a 3×3 convolution), U_i = F_i(X), i ∈ {1, …, G}.
* Split attention in a cardinal group (Figure 2). Sum the group's R splits (eq. 1),
  $\hat U^k = \sum_{j=R(k-1)+1}^{Rk} U_j \in \mathbb{R}^{H \times W \times C/K}$,
  pool them to a global context (eq. 2), $s^k_c = \frac{1}{H W} \sum_{i,j} \hat U^k_c(i, j)$, and recombine the
  splits with weights computed from it, per channel (eq. 3), $V^k_c = \sum_{i=1}^{R} a^k_i(c)\, U_{R(k-1)+i}$,
  where (eq. 4; the "r-Softmax" over the splits, an SE gate when R = 1)

  $$
  a^k_i(c) = \frac{\exp(G^c_i(s^k))}{\sum_{j=1}^{R} \exp(G^c_j(s^k))} \text{ if } R > 1, \qquad
  a^k_i(c) = \frac{1}{1 + \exp(-G^c_i(s^k))} \text{ if } R = 1.
  $$

  G is two fully-connected layers (with BatchNorm and ReLU between them). The R splits of a channel compete
  for it, as the branches of SKNet do; with R = 1 the unit is an SE block on each cardinal group.
* The ResNeSt block: the cardinal groups are concatenated, $V = \text{Concat}\{V^1, \dots, V^K\}$, and added to the
  shortcut, $Y = V + X$, or V + T(X) with a strided projection T where the shape changes.
* Radix-major implementation. The G transformations are one 1×1 convolution (each split reads its own
  slice of its output, as ResNeXt's paths do) and one 3×3 convolution with G groups; the attention's dense
  layers are 1×1 convolutions with K groups. The groups are laid out *radix-major*: the R splits are R
  consecutive blocks of C channels, and inside each the K cardinal groups sit side by side, so the sum of
  eq. 1 for every k is one sum over the radix axis.
* Network tweaks: average downsampling (a strided block pools its split-attention output with a 3×3
  average instead of striding the convolution, which keeps spatial information for dense prediction), and
  ResNet-D's deep stem (three 3×3 convolutions instead of the 7×7) and 2×2 average pooling before the 1×1
  projection of a strided shortcut.

Data flow of ResNeSt-50 (2s1x64d: radix 2, cardinality 1, width 64) at 224×224::

    image 3×224×224
      stem: 3×3/2, 32 → 3×3, 32 → 3×3, 64 → 3×3 max pool, stride 2      64×56×56
      conv2_x: 3 split-attention bottlenecks (→ 256)                   256×56×56
      conv3_x: 4 blocks (→ 512), first downsamples by average pooling  512×28×28
      conv4_x: 6 blocks (→ 1024)                                      1024×14×14
      conv5_x: 3 blocks (→ 2048)                                      2048×7×7
      global average pool → fc                                            1000 logits

    one block (conv2_x, R = 2, K = 1; C = 64):
      x ─► 1×1, C ─► split attention ─► [3×3 avg pool /2] ─► 1×1, 4C ─(+)─► ReLU ─► y
      └────────── identity, or [2×2 avg pool /2] ─► 1×1, 4C ───────────┘

    split attention:
      X (C) ─► 3×3 conv, R·C, K·R groups ─► U_1 … U_R (C each) ─► Σ ─► Û ─► global avg pool ─► s (C)
             ─► fc C → C' ─► BN ─► ReLU ─► fc C' → R·C ─► r-Softmax over the R splits ─► a_1 … a_R
      V = Σ_i a_i · U_i   (C channels)

Deviations from the paper, all the reference's (timm's ``resnest50d``, ``resnest101e``, ``resnest200e``,
``resnest269e``, which load the authors' weights), kept so that its weights load and its outputs match:

* The width C' of the attention's hidden layer, which the paper does not give, is the authors' code's:
  max(R·C/4, 32), taken over the whole grouped layer.
* The first fully-connected layer of the attention has a bias although a BatchNorm follows it (the authors'
  code); the bias is redundant but is among the weights, and counted.
* The stem is 32, 32, 64 channels wide for ResNeSt-50 and 64, 64, 128 for the deeper networks (timm's "d"
  and "e" stems), as in the authors' models; the paper says only "three 3×3 convolutions".
* The 2×2 average pooling of a strided shortcut rounds up and ignores padding (``ceil_mode=True``,
  ``count_include_pad=False``, the authors' code); the 3×3 average pooling of the block pads by one and
  counts the padding (PyTorch's default, also theirs).
* No dropout by default (the reference's default); the paper trains with dropout 0.2 before the classifier,
  ``drop_rate=0.2`` adds it. DropBlock, used in training on the last two stages, is not built.
* BatchNorm ε = 1e-5. Initialisation as timm: He normal (fan-out) for every convolution, the attention's fully
  connected layers included; BN scale 1 and shift 0; PyTorch's default for biases and the fc layer. timm
  also zeroes the last BN scale of every block by default; here that is ``zero_init_residual=True``, off
  by default, because a zero scale cuts the gradient to the branch's other layers at the first step and this
  project checks that every parameter receives one.

TorchScript: timm's ResNeSt compiles with ``torch.jit.script``; this one does not (its input check and the shared
classifier plumbing are Python that TorchScript cannot compile, and TorchScript is deprecated upstream).
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

__all__ = ["ResNeSt", "ResNeStBottleneck", "SplitAttention"]

STAGE_OUT_CHANNELS = (256, 512, 1024, 2048)  # ResNet's widths: ResNeSt changes the block, not the layout


class SplitAttention(nn.Module):
    """The split-attention unit that replaces a bottleneck's 3×3 convolution (Figure 2, eqs. 1–4).

    Args:
        in_channels: channels of X.
        channels: C, the channels of the output V (and of each split U_i).
        radix: R, the splits per cardinal group.
        cardinality: K, the cardinal groups.
        stride: stride of the 3×3 convolution.
        reduction: the attention's hidden layer has max(R·in_channels / reduction, min_hidden) units.
        min_hidden: the smallest hidden layer (32).
    """

    def __init__(self, in_channels: int, channels: int, radix: int = 2, cardinality: int = 1, stride: int = 1,
                 reduction: int = 4, min_hidden: int = 32) -> None:
        super().__init__()
        self.radix, self.cardinality = radix, cardinality
        hidden = max(in_channels * radix // reduction, min_hidden)
        # The G = K·R transformations F_i: one 3×3 convolution with K·R groups, radix-major.
        self.conv = ConvNormAct(in_channels, channels * radix, 3, stride=stride, groups=cardinality * radix)
        # G: a grouped dense layer per cardinal group, s^k → hidden, then hidden → the R·C/K split logits.
        self.fc1 = ConvNormAct(channels, hidden, 1, groups=cardinality, bias=True)
        self.fc2 = nn.Conv2d(hidden, channels * radix, 1, groups=cardinality)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, r, k = x.shape[0], self.radix, self.cardinality
        u = self.conv(x)  # the splits U_i, radix-major: (N, R·C, H, W)
        u = u.unflatten(1, (r, -1))  # (N, R, C, H, W); C = K cardinal groups of C/K side by side
        u_hat = u.sum(dim=1)  # Û^k = Σ_j U_j for every k at once (eq. 1): (N, C, H, W)
        s = u_hat.mean(dim=(2, 3), keepdim=True)  # s^k_c, global average pooling (eq. 2): (N, C, 1, 1)
        logits = self.fc2(self.fc1(s))  # G^c_i(s^k), grouped by cardinal group: (N, K·R·C/K, 1, 1)
        logits = logits.view(n, k, r, -1)  # (N, K, R, C/K)
        if r > 1:
            a = torch.softmax(logits, dim=2)  # r-Softmax: the R splits of each channel compete (eq. 4)
        else:
            a = torch.sigmoid(logits)  # one split: a gate, as SE (eq. 4, R = 1)
        a = a.transpose(1, 2).reshape(n, r, -1, 1, 1)  # radix-major like U: (N, R, C, 1, 1)
        return (a * u).sum(dim=1)  # V^k_c = Σ_i a^k_i(c) U_{R(k−1)+i} (eq. 3), concatenated over k: (N, C, H, W)


def shortcut(in_channels: int, out_channels: int, stride: int) -> nn.Module:
    """The identity where the shape is kept, else ResNet-D's projection: a 2×2 average pool with the stride
    (so that no input pixel is skipped, as a strided 1×1 would), then a 1×1 convolution and BatchNorm."""
    if stride == 1 and in_channels == out_channels:
        return nn.Identity()
    layers: OrderedDict[str, nn.Module] = OrderedDict()
    if stride > 1:
        layers["pool"] = nn.AvgPool2d(2, stride, ceil_mode=True, count_include_pad=False)
    layers["conv"] = nn.Conv2d(in_channels, out_channels, 1, bias=False)
    layers["norm"] = nn.BatchNorm2d(out_channels)
    return nn.Sequential(layers)


class ResNeStBottleneck(nn.Module):
    """A ResNet bottleneck whose 3×3 convolution is split attention; a strided one downsamples by average
    pooling after it (the paper's "average downsampling").

    Args:
        in_channels: channels of x.
        out_channels: channels of y (256, 512, 1024, 2048 by stage).
        width: C, channels of the split-attention unit (K · bottleneck width · 2^stage).
        radix: R.
        cardinality: K.
        stride: 1, or 2 in the first block of conv3_x … conv5_x.
    """

    def __init__(self, in_channels: int, out_channels: int, width: int, radix: int = 2, cardinality: int = 1,
                 stride: int = 1) -> None:
        super().__init__()
        self.conv1 = ConvNormAct(in_channels, width, 1)
        self.split_attention = SplitAttention(width, width, radix, cardinality)
        # Average downsampling: the attention works at full resolution, a 3×3 average then halves the map.
        self.avg_pool = nn.AvgPool2d(3, stride, padding=1) if stride > 1 else nn.Identity()
        self.conv3 = ConvNormAct(width, out_channels, 1, act_layer=None)  # linear before the sum
        self.shortcut = shortcut(in_channels, out_channels, stride)
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        v = self.conv3(self.avg_pool(self.split_attention(self.conv1(x))))
        return self.act(v + self.shortcut(x))  # Y = V + T(X)


class ResNeSt(ImageClassifier):
    """A ResNeSt: ResNet's layout (Table 1 of He et al.) of split-attention bottlenecks, with a deep stem.

    Args:
        blocks_per_stage: number of blocks in conv2_x … conv5_x, ``(3, 4, 6, 3)`` for ResNeSt-50.
        radix: R, the splits per cardinal group (2).
        cardinality: K, the cardinal groups (1).
        bottleneck_width: channels per cardinal group in conv2_x, doubling with every stage (64).
        stem_width: channels of the stem's first two 3×3 convolutions; the third has twice as many.
        drop_rate: dropout before the classifier (0; the paper trains with 0.2).
        num_classes: outputs of the fc layer; 0 leaves it out and returns pooled features.
        in_chans: channels of the input image.
        zero_init_residual: start every block as the identity by zeroing its last BN scale (timm's default).

    ``set_grad_checkpointing()`` checkpoints each split-attention bottleneck in training (BatchNorm stats kept exact).
    """

    # The network's total stride, as for ResNet: the reference runs on any size (every downsampling pads or
    # rounds up), but below 32 the conv5_x map is one pixel computed mostly from padding.
    min_input_size = 32
    model_name = "resnest"
    first_conv = "stem.conv1.conv"
    head_dropout_name = "dropout"

    def __init__(
        self,
        blocks_per_stage: tuple[int, int, int, int] = (3, 4, 6, 3),
        radix: int = 2,
        cardinality: int = 1,
        bottleneck_width: int = 64,
        stem_width: int = 32,
        drop_rate: float = 0.0,
        num_classes: int = 1000,
        in_chans: int = 3,
        zero_init_residual: bool = False,
    ) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.in_chans = in_chans

        # ResNet-D's deep stem: three 3×3 convolutions see the 7×7 window at a fraction of its cost.
        self.stem = nn.Sequential(OrderedDict(
            conv1=ConvNormAct(in_chans, stem_width, 3, stride=2),
            conv2=ConvNormAct(stem_width, stem_width, 3),
            conv3=ConvNormAct(stem_width, 2 * stem_width, 3),
        ))
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)

        stages: OrderedDict[str, nn.Module] = OrderedDict()
        levels = []
        in_channels, stride_so_far = 2 * stem_width, 4
        for i, (out_channels, num_blocks) in enumerate(zip(STAGE_OUT_CHANNELS, blocks_per_stage, strict=True)):
            stride = 1 if i == 0 else 2
            stride_so_far *= stride
            width = cardinality * bottleneck_width * 2**i
            layers = []
            for j in range(num_blocks):
                layers.append(ResNeStBottleneck(in_channels, out_channels, width, radix, cardinality,
                                                stride=stride if j == 0 else 1))
                in_channels = out_channels
            name = f"conv{i + 2}_x"
            stages[name] = nn.Sequential(*layers)
            levels.append((out_channels, stride_so_far, f"stages.{name}"))
        self.stages = nn.Sequential(stages)
        self.feature_info = FeatureInfo(levels)

        self.num_features = STAGE_OUT_CHANNELS[-1]
        self.global_pool = ClassifierPool("avg")
        self.dropout = nn.Dropout(drop_rate)
        self.fc = nn.Linear(self.num_features, num_classes) if num_classes > 0 else nn.Identity()
        self._init_weights(zero_init_residual)

    def _init_weights(self, zero_init_residual: bool) -> None:
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
        if zero_init_residual:
            for module in self.modules():
                if isinstance(module, ResNeStBottleneck):
                    nn.init.zeros_(module.conv3.norm.weight)

    def forward_stem(self, x: torch.Tensor) -> torch.Tensor:
        return self.maxpool(self.stem(x))


_PAPER = Paper(
    title="ResNeSt: Split-Attention Networks",
    authors="Hang Zhang, Chongruo Wu, Zhongyue Zhang, Yi Zhu, Haibin Lin, Zhi Zhang, Yue Sun, Tong He, "
            "Jonas Mueller, R. Manmatha, Mu Li, Alexander Smola",
    year=2020,
    url="https://arxiv.org/abs/2004.08955",
)
_INNOVATIONS = (
    "feature-map groups: K cardinal groups (as ResNeXt), each split into R radix splits, G = K*R transformations",
    "split attention: the R splits of a cardinal group are summed, pooled, and recombined with per-channel weights",
    "r-softmax: a channel's R split weights come from a softmax across the splits (a sigmoid gate when R = 1)",
    "radix-major layout: all splits are one grouped convolution and the attention grouped 1x1 layers",
    "ResNet-D tweaks: deep 3x3 stem, average-pooled shortcuts, and average downsampling inside strided blocks",
)


def _card(name: str, layers: int, reference: str, resolution: int, params: int, gmacs: float,
          canonical: bool = False) -> ModelCard:
    return ModelCard(
        name=name,
        architecture=f"ResNeSt-{layers} (2s1x64d)",
        task="image-classification",
        paper=_PAPER,
        innovations=_INNOVATIONS,
        input=InputSpec(kind="image", shape=(3, resolution, resolution), min_size=ResNeSt.min_input_size),
        params=params,
        params_source=f"timm {reference}, counted",
        reference=f"timm:{reference}",
        gmacs=gmacs,
        canonical=canonical,
        notes=f"Trained and evaluated on {resolution}x{resolution} crops (the paper's crop size; timm's {reference}).",
    )


@register(_card("resnest50", 50, "resnest50d", 224, params=27_483_240, gmacs=5.371, canonical=True))
def resnest50(**kwargs: Any) -> ResNeSt:
    """ResNeSt-50: blocks [3, 4, 6, 3], R = 2, K = 1, width 64, stem 32-32-64."""
    return ResNeSt(blocks_per_stage=(3, 4, 6, 3), stem_width=32, **kwargs)


@register(_card("resnest101", 101, "resnest101e", 256, params=48_275_016, gmacs=13.321))
def resnest101(**kwargs: Any) -> ResNeSt:
    """ResNeSt-101: blocks [3, 4, 23, 3], R = 2, K = 1, width 64, stem 64-64-128."""
    return ResNeSt(blocks_per_stage=(3, 4, 23, 3), stem_width=64, **kwargs)


@register(_card("resnest200", 200, "resnest200e", 320, params=70_201_544, gmacs=35.520))
def resnest200(**kwargs: Any) -> ResNeSt:
    """ResNeSt-200: blocks [3, 24, 36, 3], R = 2, K = 1, width 64, stem 64-64-128."""
    return ResNeSt(blocks_per_stage=(3, 24, 36, 3), stem_width=64, **kwargs)


@register(_card("resnest269", 269, "resnest269e", 416, params=110_929_480, gmacs=77.349))
def resnest269(**kwargs: Any) -> ResNeSt:
    """ResNeSt-269: blocks [3, 30, 48, 8], R = 2, K = 1, width 64, stem 64-64-128."""
    return ResNeSt(blocks_per_stage=(3, 30, 48, 8), stem_width=64, **kwargs)


if __name__ == "__main__":
    from paperzoo.cli import main

    main(["run", "resnest50"])
