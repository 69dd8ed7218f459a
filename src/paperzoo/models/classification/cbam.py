r"""CBAM: the Convolutional Block Attention Module, and the ResNet-50 built with it.

Paper: "CBAM: Convolutional Block Attention Module", Sanghyun Woo, Jongchan Park, Joon-Young Lee, In So Kweon,
ECCV 2018. https://arxiv.org/abs/1807.06521

A convolution mixes channels and neighbouring positions in one step. CBAM adds, inside every block, two
cheap attention maps that re-weight the block's output: first *what* to look at (a weight per channel), then
*where* (a weight per position). For an intermediate feature map $F \in \mathbb{R}^{C \times H \times W}$ (§3, eq. 1)::

    F'  = M_c(F)  ⊗ F       channel attention  M_c ∈ R^{C×1×1}
    F'' = M_s(F') ⊗ F'      spatial attention  M_s ∈ R^{1×H×W}

(⊗ is element-wise multiplication, the maps broadcast over the missing axes).

* Channel attention (eq. 2). Squeeze the spatial axes two ways, average pooling and max pooling, and send
  both C-vectors through one shared MLP with a hidden layer of C/r units (reduction ratio r = 16, ReLU after
  the first layer W0); add the two outputs and squash:

  $$
  M_c(F) = \sigma(\text{MLP}(\text{AvgPool}(F)) + \text{MLP}(\text{MaxPool}(F)))
         = \sigma(W_1(W_0(F^c_{avg})) + W_1(W_0(F^c_{max}))).
  $$

  Squeeze-and-Excitation uses the average alone; the paper shows (Table 1) that the max-pooled descriptor,
  the most salient response of each channel, adds accuracy at no extra parameters.
* Spatial attention (eq. 3). Squeeze the channel axis the same two ways, average and max over channels, stack
  the two H×W maps and convolve them with one 7×7 filter:
  $M_s(F) = \sigma(f^{7 \times 7}([\text{AvgPool}(F); \text{MaxPool}(F)]))$.
  The 7×7 kernel beats 3×3 (Table 2): deciding where to look needs a wide receptive field.
* Sequential, channel first (Table 3: better than spatial first or both in parallel).
* In a ResNet (Figure 3) CBAM refines the output of each block's residual branch, after its last BN and
  before the addition with the shortcut. ResNet-50 grows from 25.56M to 28.09M parameters (Table 4); almost
  all of it is the MLPs, the spatial attention costs 99 parameters per block.

Data flow of CBAM-ResNet-50 at 224×224::

    image 3×224×224
      conv1: 7×7, 64, stride 2 → BN → ReLU; 3×3 max pool, stride 2   64×56×56
      conv2_x: 3 bottlenecks with CBAM (64→256)                     256×56×56
      conv3_x: 4 bottlenecks with CBAM (128→512), stride 2          512×28×28
      conv4_x: 6 bottlenecks with CBAM (256→1024), stride 2        1024×14×14
      conv5_x: 3 bottlenecks with CBAM (512→2048), stride 2        2048×7×7
      global average pool → fc                                        1000 logits

    one block:  x ──► 1×1 ─► 3×3 ─► 1×1 ─► [channel attention ─► spatial attention] ──(+)──► ReLU ─► y
                └──────────────────── identity, or 1×1 projection ────────────────────┘

    channel attention:  F ─► avg pool ─┐                     spatial attention:  F' ─► mean over C ─┐
                        F ─► max pool ─┴► shared MLP ─► + ─► σ ─► ⊗ F              F' ─► max over C ─┴► 7×7 ─► σ ─► ⊗ F'
                        (N, C) each      C → C/16 → C        (N, C, 1, 1)           (N, 2, H, W)         (N, 1, H, W)

Deviations from the paper:

* The ResNet-50 is the one the authors trained (their released code starts from torchvision's): the stride
  of a downsampling bottleneck sits on its 3×3 convolution ("ResNet v1.5"), not on the first 1×1 as in He
  et al. The parameter count is the same either way.
* The MLP's two layers have biases, as in the authors' code; eq. 2 writes them without. The 28.09M of Table 4
  counts them (without them the network has 28.07M).
* The authors' code puts a BatchNorm after the 7×7 convolution (and drops its bias) and stacks the pooled
  maps as [max; avg]. We follow eq. 3: [avg; max] and a convolution with a bias. In eval mode a BatchNorm
  folds into the convolution's weights and bias, so both compute the same family of maps; theirs has one
  parameter more per block (28,089,624 against our 28,089,608; both 28.09M).
* Initialisation as in the authors' code: He normal (fan-out) convolutions, unit BN scales, zero biases, He
  normal fc. Their code zeroes the scale of the spatial attention's BatchNorm so that every spatial map
  starts as a uniform 0.5; without that BatchNorm we zero the 7×7 convolution instead, which starts the same.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

import torch
from torch import nn

from paperzoo.layers import ConvNormAct, FeatureInfo
from paperzoo.layers.classifier import ClassifierPool, ImageClassifier
from paperzoo.registry import InputSpec, ModelCard, Paper, TrainingRecipe, register

__all__ = ["CBAM", "ChannelAttention", "SpatialAttention", "CBAMBottleneck", "CBAMResNet"]


class ChannelAttention(nn.Module):
    """The channel attention map M_c(F) = σ(MLP(AvgPool(F)) + MLP(MaxPool(F))) (eq. 2), shape (N, C, 1, 1).

    Args:
        channels: C, the channels of F.
        reduction: r, the MLP's hidden layer has C/r units (16 in the paper).
    """

    def __init__(self, channels: int, reduction: int = 16) -> None:
        super().__init__()
        hidden = channels // reduction
        # One MLP shared by both descriptors: the max-pooled one costs no extra parameters.
        self.mlp = nn.Sequential(OrderedDict([
            ("fc1", nn.Linear(channels, hidden)),  # W0 ∈ R^{C/r × C}
            ("act", nn.ReLU(inplace=True)),
            ("fc2", nn.Linear(hidden, channels)),  # W1 ∈ R^{C × C/r}
        ]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        avg = x.mean(dim=(2, 3))  # F^c_avg: (N, C, H, W) → (N, C)
        peak = x.amax(dim=(2, 3))  # F^c_max: (N, C)
        attention = torch.sigmoid(self.mlp(avg) + self.mlp(peak))  # σ(W1(W0(F^c_avg)) + W1(W0(F^c_max)))
        return attention[:, :, None, None]  # (N, C) → (N, C, 1, 1), to broadcast over H, W


class SpatialAttention(nn.Module):
    r"""The spatial attention map $M_s(F) = \sigma(f^{k \times k}([\text{AvgPool}(F); \text{MaxPool}(F)]))$ (eq. 3),
    shape (N, 1, H, W).

    Args:
        kernel_size: k, the size of the convolution over the pooled maps (7 in the paper).
    """

    def __init__(self, kernel_size: int = 7) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 1, kernel_size, padding=kernel_size // 2)  # f^{7×7}, "same" padding

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        avg = x.mean(dim=1, keepdim=True)  # F^s_avg: (N, C, H, W) → (N, 1, H, W)
        peak = x.amax(dim=1, keepdim=True)  # F^s_max: (N, 1, H, W)
        return torch.sigmoid(self.conv(torch.cat([avg, peak], dim=1)))  # [F^s_avg; F^s_max]: (N, 2, H, W)


class CBAM(nn.Module):
    """The Convolutional Block Attention Module: channel attention, then spatial attention (eq. 1).

    Takes and returns a feature map of the same shape (N, C, H, W), so it can refine the output of any
    convolutional block. For example, after a block of another network::

        >>> import torch
        >>> from paperzoo.models.classification.cbam import CBAM
        >>> attention = CBAM(256)                  # C = 256, r = 16: an MLP 256 → 16 → 256, and a 7×7 conv
        >>> features = torch.randn(2, 256, 14, 14)
        >>> attention(features).shape
        torch.Size([2, 256, 14, 14])
        >>> sum(p.numel() for p in attention.parameters())  # MLP: 2·256·16 + 16 + 256; conv: 2·7·7 + 1
        8563

    Args:
        channels: C, the channels of the feature map.
        reduction: r, the channel MLP's reduction ratio (16).
        kernel_size: the spatial attention's convolution size (7).
    """

    def __init__(self, channels: int, reduction: int = 16, kernel_size: int = 7) -> None:
        super().__init__()
        self.channel_attention = ChannelAttention(channels, reduction)
        self.spatial_attention = SpatialAttention(kernel_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.channel_attention(x) * x  # F' = M_c(F) ⊗ F: what to look at
        return self.spatial_attention(x) * x  # F'' = M_s(F') ⊗ F': where to look


def shortcut(in_channels: int, out_channels: int, stride: int) -> nn.Module:
    """ResNet's identity shortcut where the shape is kept, else a 1×1 projection with BN (option B)."""
    if stride == 1 and in_channels == out_channels:
        return nn.Identity()
    return ConvNormAct(in_channels, out_channels, kernel_size=1, stride=stride, act_layer=None)


class CBAMBottleneck(nn.Module):
    """ResNet's bottleneck (1×1 reduce, 3×3, 1×1 restore) with CBAM on the residual branch (Figure 3)."""

    expansion = 4

    def __init__(self, in_channels: int, width: int, stride: int = 1, reduction: int = 16) -> None:
        super().__init__()
        out_channels = width * self.expansion
        self.conv1 = ConvNormAct(in_channels, width, 1)
        self.conv2 = ConvNormAct(width, width, 3, stride=stride)  # stride on the 3×3, as the authors' code
        self.conv3 = ConvNormAct(width, out_channels, 1, act_layer=None)
        self.attention = CBAM(out_channels, reduction)
        self.shortcut = shortcut(in_channels, out_channels, stride)
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        residual = self.attention(self.conv3(self.conv2(self.conv1(x))))  # refine F(x) before the sum
        return self.act(residual + self.shortcut(x))


class CBAMResNet(ImageClassifier):
    """A ResNet with CBAM in every bottleneck (§4.1, Table 4).

    Args:
        blocks_per_stage: bottlenecks in conv2_x … conv5_x, ``(3, 4, 6, 3)`` for ResNet-50.
        reduction: the channel attention's reduction ratio r (16).
        num_classes: outputs of the final fc layer; 0 leaves it out and returns pooled features.
        in_chans: channels of the input image.

    ``set_grad_checkpointing()`` checkpoints each CBAM bottleneck in training (BatchNorm stats kept exact).
    """

    min_input_size = 32  # the network's total stride, as ResNet: smaller images leave conv5_x under a pixel
    model_name = "cbam_resnet"
    grad_checkpointing = False  # set_grad_checkpointing

    def __init__(
        self,
        blocks_per_stage: tuple[int, int, int, int] = (3, 4, 6, 3),
        reduction: int = 16,
        num_classes: int = 1000,
        in_chans: int = 3,
    ) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.in_chans = in_chans

        self.conv1 = ConvNormAct(in_chans, 64, kernel_size=7, stride=2, padding=3)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)

        stages: OrderedDict[str, nn.Module] = OrderedDict()
        levels = []
        in_channels, stride_so_far = 64, 4
        for i, (width, num_blocks) in enumerate(zip((64, 128, 256, 512), blocks_per_stage, strict=True)):
            stride = 1 if i == 0 else 2
            stride_so_far *= stride
            layers = []
            for j in range(num_blocks):
                layers.append(CBAMBottleneck(in_channels, width, stride=stride if j == 0 else 1,
                                             reduction=reduction))
                in_channels = width * CBAMBottleneck.expansion
            name = f"conv{i + 2}_x"
            stages[name] = nn.Sequential(*layers)
            levels.append((in_channels, stride_so_far, f"stages.{name}"))
        self.stages = nn.Sequential(stages)
        self.feature_info = FeatureInfo(levels)

        self.num_features = 512 * CBAMBottleneck.expansion
        self.global_pool = ClassifierPool("avg")
        self.fc = nn.Linear(self.num_features, num_classes) if num_classes > 0 else nn.Identity()
        self._init_weights()

    def _init_weights(self) -> None:
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
            elif isinstance(module, nn.Linear):
                nn.init.zeros_(module.bias)
        for module in self.modules():
            if isinstance(module, SpatialAttention):  # every spatial map starts as a uniform σ(0) = 0.5
                nn.init.zeros_(module.conv.weight)
                nn.init.zeros_(module.conv.bias)
        if isinstance(self.fc, nn.Linear):
            nn.init.kaiming_normal_(self.fc.weight)

    def forward_stem(self, x: torch.Tensor) -> torch.Tensor:
        return self.maxpool(self.conv1(x))


# §4: "we follow [ResNet]": SGD, momentum 0.9, weight decay 1e-4, lr 0.1 divided by 10 at epochs 30 and 60 of
# 90 on ImageNet, i.e. at 1/3 and 2/3 of the run.
_RECIPE = TrainingRecipe(optimizer="sgd", lr=0.1, momentum=0.9, weight_decay=1e-4, schedule="step",
                         milestones=(1 / 3, 2 / 3), batch_size=128,
                         source="Woo et al. 2018, §4 (ResNet's ImageNet recipe: ÷10 at epochs 30 and 60 of 90)")


@register(ModelCard(
    name="cbam_resnet50",
    architecture="CBAM-ResNet-50",
    task="image-classification",
    paper=Paper(
        title="CBAM: Convolutional Block Attention Module",
        authors="Sanghyun Woo, Jongchan Park, Joon-Young Lee, In So Kweon",
        year=2018,
        url="https://arxiv.org/abs/1807.06521",
    ),
    innovations=(
        "channel attention: a shared MLP over average- and max-pooled descriptors, M_c = sigma(MLP(avg) + MLP(max))",
        "spatial attention: a 7x7 convolution over the channel-wise average and max maps, M_s = sigma(f([avg; max]))",
        "channel then spatial, applied in sequence: F' = M_c(F) * F, F'' = M_s(F') * F'",
        "a drop-in module on the residual branch of every block, before the addition",
    ),
    input=InputSpec(kind="image", shape=(3, 224, 224), min_size=CBAMResNet.min_input_size),
    params=28_090_000,
    params_tolerance=5_000,
    params_source="paper, Table 4 (ResNet50 + CBAM: 28.09M); built: 28,089,608",
    reference="paper",
    gmacs=4.096,
    recipe=_RECIPE,
    canonical=True,
    notes="The authors' code adds a BatchNorm after the 7x7 convolution (28,089,624 parameters); "
          "eq. 3 has none (28,089,608).",
))
def cbam_resnet50(**kwargs: Any) -> CBAMResNet:
    """CBAM-ResNet-50: bottlenecks [3, 4, 6, 3], each with CBAM (r = 16, 7×7)."""
    return CBAMResNet(blocks_per_stage=(3, 4, 6, 3), **kwargs)


if __name__ == "__main__":
    from paperzoo.cli import main

    main(["run", "cbam_resnet50"])
