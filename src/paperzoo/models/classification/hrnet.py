r"""HRNet: the High-Resolution Network.

Papers: "Deep High-Resolution Representation Learning for Visual Recognition", Jingdong Wang, Ke Sun, Tianheng
Cheng, Borui Jiang, Chaorui Deng, Yang Zhao, Dong Liu, Yadong Mu, Mingkui Tan, Xinggang Wang, Wenyu Liu, Bin Xiao,
TPAMI 2020 (arXiv 2019), https://arxiv.org/abs/1908.07919 (the classification network HRNet-W{C}-C); and
"Deep High-Resolution Representation Learning for Human Pose Estimation", Ke Sun, Bin Xiao, Dong Liu, Jingdong
Wang, CVPR 2019, https://arxiv.org/abs/1902.09212 (the network itself, and the keypoint heatmap head).

Classification networks shrink the image to a coarse map (ResNet: 1/32) and dense tasks then try to *recover* the
high resolution from it (upsampling, skip connections). HRNet instead *maintains* a high-resolution representation
through the whole network:

* Parallel multi-resolution convolutions. The network starts with one high-resolution stream (1/4 of the input)
  and each new stage adds a stream of half the resolution and twice the width, so stage s runs s streams in
  parallel, at 1/4, 1/8, 1/16, 1/32 of the input with C, 2C, 4C, 8C channels ("HRNet-W32": C = 32).
* Repeated multi-resolution fusion (the pose paper's *exchange unit*). After every few residual units each output
  stream k receives the sum of all input streams, each resampled to resolution k (pose paper, eq. 3):
  $Y_k = \sum_i a(X_i, k)$, where $a(X_i, k)$ is the identity for i = k, (k − i) strided 3×3 convolutions for a
  higher-resolution input (i < k), and a 1×1 convolution (to k's width) then nearest-neighbour upsampling by
  $2^{i-k}$ for a lower-resolution input (i > k). Every stream sees every other, again and again.
* Modules and stages. A *module* (the pose paper's exchange block) is a few residual units on every stream followed
  by one fusion. Stages 2, 3, 4 repeat 1, 4, 3 modules; the transition into a stage opens the new stream with a
  strided 3×3 convolution of the lowest-resolution stream.
* Heads. For pose (HRNetV1), a 1×1 convolution regresses one heatmap per keypoint from the high-resolution stream
  alone. For ImageNet (HRNet-W{C}-C), each stream is widened by one bottleneck ("increase": C, 2C, 4C, 8C → 128,
  256, 512, 1024 channels), the streams are merged from high to low resolution by strided 3×3 convolutions and
  additions, and a 1×1 convolution to 2048 channels precedes global average pooling and the classifier.

Data flow of HRNet-W32-C at 224×224 (C = 32; a module's four streams fuse after 4 basic blocks each)::

    image 3×224×224
      stem: 3×3 conv, stride 2 → 3×3 conv, stride 2                    64×56×56
      stage 1: 4 bottlenecks (width 64)                                256×56×56
      stage 2: 1 module    streams  32×56×56   64×28×28
      stage 3: 4 modules   streams  32×56×56   64×28×28  128×14×14
      stage 4: 3 modules   streams  32×56×56   64×28×28  128×14×14  256×7×7
      increase (1 bottleneck per stream):     128×56×56  256×28×28  512×14×14  1024×7×7
      merge down: y ← increase_k + strided 3×3 conv(y), k = 1..3                   1024×7×7
      1×1 conv → 2048×7×7 → global average pool → fc                               1000 logits

    one fusion (3 streams, output k = 2):  X_1 ─ 3×3 s2 ─ 3×3 s2 ─┐
                                           X_2 ─ 3×3 s2 ──────────(+)─ ReLU ─ Y_2
                                           X_3 ─ 1×1 ─ upsample ×2 ┘      (and likewise Y_1, Y_3)

The pose network HRNet-W32 at 256×192 keeps only Y_1 of the very last fusion and maps it by a 1×1 convolution to 17
heatmaps of 64×48; its targets are 2-D Gaussians at the keypoints and its loss the mean squared error.

Deviations. The classification variants are timm's (``timm.models.hrnet``, itself the authors' released
HRNet-Image-Classification code), kept so that its weights load and its outputs match:

* The upsampling path is a 1×1 convolution (with BatchNorm) then *nearest-neighbour* upsampling, as the pose paper
  and the released code do; the TPAMI paper's §3 describes bilinear upsampling followed by the 1×1 convolution.
  The order of the 1×1 convolution and the upsampling does not matter (both are linear and commute, BatchNorm in
  eval mode too); convolving first is cheaper.
* The fusion's downsampling path has a ReLU after each strided convolution except the last, and the summed output
  of a fusion passes through a ReLU; the papers leave these details to the code.
* ``hrnet_w18_small`` is timm's name for the authors' "HRNet-W18-Small-v1": its streams are 16, 32, 64, 128 wide
  (so C = 16), with one bottleneck of width 32 in stage 1, one module per stage and 2 basic blocks per stream.
* The classifier's merging convolutions (strided 3×3 and the final 1×1) have a bias although a BatchNorm follows,
  as in the released code; initialisation is timm's: He normal (fan-out) for convolutions, BatchNorm scale 1 and
  shift 0, PyTorch's default for biases and the classifier.
* ``features_only=True`` follows timm's HRNet feature extractor: five maps, the stem's first convolution (stride 2)
  and the four "increase" outputs (128, 256, 512, 1024 channels at strides 4 to 32), not the raw streams.
* The pose network (``hrnet_w32_pose``) follows the authors' pose code: the same streams, the last module of stage 4
  fusing into the highest resolution only, a 1×1 heatmap convolution with a bias, weights drawn from N(0, 0.001²)
  with zero biases. The pose paper's text generates targets with a Gaussian of "standard deviation of 1 pixel"; the
  authors' released COCO configurations use σ = 2 (heatmap pixels), which is ``gaussian_heatmaps``'s default.
  :meth:`PoseHRNet.loss` is the plain mean squared error the paper names; the authors' code halves it (a constant
  factor). Input sizes: every stream must be exactly half the previous one for the fusion to line up, so H and W
  must satisfy ceil(H/4) ≡ 0 (mod 8) (any multiple of 32 does); timm fails inside the network otherwise, this file
  raises a ``ValueError`` that says so.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from paperzoo.layers import ConvNormAct, FeatureInfo, check_image_batch, skip_on_fx_proxies
from paperzoo.layers.checkpoint import checkpoint_module, checkpointing
from paperzoo.layers.classifier import ClassifierPool, ImageClassifier, feature_indices
from paperzoo.registry import InputSpec, ModelCard, Paper, TrainingRecipe, register

__all__ = ["HRNet", "PoseHRNet", "HighResolutionModule", "ExchangeUnit", "gaussian_heatmaps",
           "keypoints_from_heatmaps"]


# --- residual units (HRNet uses ResNet's two blocks) ------------------------------------------------------------

def _projection(in_channels: int, out_channels: int, stride: int) -> nn.Module:
    """ResNet's shortcut: the identity where the shape is kept, else a 1×1 convolution with BatchNorm."""
    if stride == 1 and in_channels == out_channels:
        return nn.Identity()
    return ConvNormAct(in_channels, out_channels, kernel_size=1, stride=stride, act_layer=None)


class BasicBlock(nn.Module):
    """The residual unit of every stream in stages 2–4: two 3×3 convolutions, y = ReLU(F(x) + x)."""

    expansion = 1

    def __init__(self, in_channels: int, width: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = ConvNormAct(in_channels, width, 3, stride=stride)
        self.conv2 = ConvNormAct(width, width, 3, act_layer=None)
        self.shortcut = _projection(in_channels, width, stride)
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.conv2(self.conv1(x)) + self.shortcut(x))


class Bottleneck(nn.Module):
    """The residual unit of stage 1 and of the classifier's "increase" layers: 1×1 reduce, 3×3, 1×1 expand (×4)."""

    expansion = 4

    def __init__(self, in_channels: int, width: int, stride: int = 1) -> None:
        super().__init__()
        out_channels = width * self.expansion
        self.conv1 = ConvNormAct(in_channels, width, 1)
        self.conv2 = ConvNormAct(width, width, 3, stride=stride)
        self.conv3 = ConvNormAct(width, out_channels, 1, act_layer=None)
        self.shortcut = _projection(in_channels, out_channels, stride)
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.conv3(self.conv2(self.conv1(x))) + self.shortcut(x))


# --- the paper's mechanism: parallel streams and their repeated fusion --------------------------------------------

def _resample(widths: Sequence[int], source: int, target: int) -> nn.Module:
    """a(X_source, target): bring stream ``source`` to the resolution and width of stream ``target``.

    Stream k has resolution 1/2^k of stream 0. Downsampling by 2^(target − source) takes that many strided 3×3
    convolutions (the last one changes the width and has no ReLU, so the sum below is taken before the
    non-linearity); upsampling aligns the width by a 1×1 convolution and repeats pixels (nearest neighbour).
    """
    if source == target:
        return nn.Identity()
    if source > target:
        return nn.Sequential(OrderedDict(
            align=ConvNormAct(widths[source], widths[target], kernel_size=1, act_layer=None),
            upsample=nn.Upsample(scale_factor=2 ** (source - target), mode="nearest"),
        ))
    steps = target - source
    return nn.Sequential(*[
        ConvNormAct(widths[source], widths[target] if step == steps - 1 else widths[source], 3, stride=2,
                    act_layer=None if step == steps - 1 else nn.ReLU)
        for step in range(steps)
    ])


class ExchangeUnit(nn.Module):
    """Multi-resolution fusion: output stream k is Y_k = ReLU(Σ_i a(X_i, k)) (pose paper, eq. 3).

    Args:
        widths: channels of the input streams, highest resolution first.
        num_outputs: how many output streams to build, highest resolution first (all of them, except for the last
            fusion of the pose network, which keeps only the highest resolution).
    """

    def __init__(self, widths: Sequence[int], num_outputs: int | None = None) -> None:
        super().__init__()
        num_outputs = len(widths) if num_outputs is None else num_outputs
        # resample[k][i] is a(X_i, k): one row per output stream, one entry per input stream.
        self.resample = nn.ModuleList([
            nn.ModuleList([_resample(widths, i, k) for i in range(len(widths))]) for k in range(num_outputs)
        ])
        self.act = nn.ReLU()

    def forward(self, streams: list[torch.Tensor]) -> list[torch.Tensor]:
        return [self.act(sum(a(x) for a, x in zip(row, streams, strict=True))) for row in self.resample]


class HighResolutionModule(nn.Module):
    """A few residual units on every stream, independently, then one :class:`ExchangeUnit` across them
    (the pose paper's "exchange block")."""

    def __init__(self, widths: Sequence[int], blocks_per_stream: int, num_outputs: int | None = None) -> None:
        super().__init__()
        self.streams = nn.ModuleList([
            nn.Sequential(*[BasicBlock(width, width) for _ in range(blocks_per_stream)]) for width in widths
        ])
        self.fusion = ExchangeUnit(widths, num_outputs)

    def forward(self, streams: list[torch.Tensor]) -> list[torch.Tensor]:
        return self.fusion([blocks(x) for blocks, x in zip(self.streams, streams, strict=True)])


class HighResolutionStage(nn.Module):
    """One more stream than the stage before: the transition opens it, then ``num_modules`` modules run.

    The transition leaves each existing stream as it is (or adapts its width by a 3×3 convolution, which happens
    only between stage 1's 256 channels, 128 in W18-Small, and the first stream of stage 2) and opens the new,
    half-resolution stream by a strided 3×3 convolution of the previous stage's lowest-resolution stream.

    Args:
        in_widths: channels of the previous stage's streams.
        widths: channels of this stage's streams; one more than ``in_widths``.
        num_modules: how many :class:`HighResolutionModule` run in sequence.
        blocks_per_stream: basic blocks per stream inside each module.
        last_num_outputs: output streams of the stage's last fusion (``None``: all).
    """

    def __init__(self, in_widths: Sequence[int], widths: Sequence[int], num_modules: int, blocks_per_stream: int,
                 last_num_outputs: int | None = None) -> None:
        super().__init__()
        if len(widths) != len(in_widths) + 1:
            raise ValueError(f"a stage adds exactly one stream: {len(in_widths)} in, {len(widths)} asked for")
        self.transition = nn.ModuleList([
            nn.Identity() if c_in == c_out else ConvNormAct(c_in, c_out, 3)
            for c_in, c_out in zip(in_widths, widths, strict=False)
        ])
        self.transition.append(ConvNormAct(in_widths[-1], widths[-1], 3, stride=2))  # the new stream
        self.hr_modules = nn.Sequential(*[
            HighResolutionModule(widths, blocks_per_stream, last_num_outputs if m == num_modules - 1 else None)
            for m in range(num_modules)
        ])

    def forward(self, streams: list[torch.Tensor]) -> list[torch.Tensor]:
        *keep, new = self.transition
        streams = [adapt(x) for adapt, x in zip(keep, streams, strict=True)] + [new(streams[-1])]
        return self.hr_modules(streams)


# --- the body both networks share -------------------------------------------------------------------------------

@skip_on_fx_proxies  # as every input check: nothing to check on torch.fx's symbolic input
def check_stream_sizes(x: torch.Tensor, *, name: str, in_chans: int) -> None:
    """The fusion adds a stream upsampled by 2^j to one 2^j times larger: every stream must be exactly half the
    previous one. The first stream is ceil(H/4) × ceil(W/4), the fourth is 1/8 of it, so ceil(H/4) and ceil(W/4)
    must be multiples of 8. (The smallest such size is 29: ceil(29/4) = 8.)"""
    h, w = x.shape[-2:]
    if -(-h // 4) % 8 or -(-w // 4) % 8:
        fit = [s if -(-s // 4) % 8 == 0 else 32 * -(-s // 32) for s in (h, w)]
        raise ValueError(f"{name} expects a float tensor of shape (N, {in_chans}, H, W) with ceil(H/4) and "
                         f"ceil(W/4) multiples of 8 (any multiple of 32 will do); got {tuple(x.shape)}: the four "
                         f"streams must halve exactly for the fusion to add them; resize or pad it to "
                         f"{fit[0]}x{fit[1]}")


class HighResolutionNetwork(nn.Module):
    """The stem and the four stages that HRNet's classifier and pose network share.

    Args:
        width: C, the width of the highest-resolution stream ("HRNet-W32": 32); stream k is C·2^k wide.
        stage1_width: width of stage 1's bottlenecks (their output is 4× wider).
        stage1_blocks: number of bottlenecks in stage 1.
        modules_per_stage: number of modules in stages 2, 3, 4.
        blocks_per_stream: basic blocks per stream in every module.
        in_chans: channels of the input image.
        stem_width: channels of the stem's two strided 3×3 convolutions.
        last_num_outputs: output streams of the very last fusion (``None``: all four).
        stem_only: build only the stem's first convolution (a feature extractor that asks for nothing deeper).
    """

    min_input_size = 29  # see check_stream_sizes: the smallest H with ceil(H/4) a multiple of 8, found against timm
    model_name = "hrnet"

    def __init__(self, width: int = 32, stage1_width: int = 64, stage1_blocks: int = 4,
                 modules_per_stage: tuple[int, int, int] = (1, 4, 3), blocks_per_stream: int = 4, in_chans: int = 3,
                 stem_width: int = 64, last_num_outputs: int | None = None, stem_only: bool = False) -> None:
        super().__init__()
        self.in_chans = in_chans
        self.width = width
        self.stream_widths = tuple(width * 2**k for k in range(4))  # C, 2C, 4C, 8C
        # Two strided 3×3 convolutions: the highest-resolution stream works at 1/4 of the input.
        self.stem = nn.Sequential(OrderedDict(conv1=ConvNormAct(in_chans, stem_width, 3, stride=2)))
        if stem_only:
            return
        self.stem.add_module("conv2", ConvNormAct(stem_width, 64, 3, stride=2))
        # Stage 1: a single high-resolution stream of bottlenecks, as in ResNet's conv2_x.
        stage1 = [Bottleneck(64 if b == 0 else stage1_width * 4, stage1_width) for b in range(stage1_blocks)]
        self.stage1 = nn.Sequential(*stage1)
        in_widths: tuple[int, ...] = (stage1_width * Bottleneck.expansion,)
        for s, num_modules in enumerate(modules_per_stage, start=2):
            widths = self.stream_widths[:s]
            stage = HighResolutionStage(in_widths, widths, num_modules, blocks_per_stream,
                                        last_num_outputs if s == 4 else None)
            self.add_module(f"stage{s}", stage)
            in_widths = widths

    def forward_streams(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Stem output ``(N, 64, H/4, W/4)`` → stage 4's streams ``(N, C·2^k, H/2^(k+2), W/2^(k+2))``."""
        streams = [self.stage1(x)]
        for stage in (self.stage2, self.stage3, self.stage4):
            streams = stage(streams)
        return streams

    def _check(self, x: torch.Tensor) -> None:
        check_image_batch(x, model=self, in_chans=self.in_chans, min_size=self.min_input_size)
        check_stream_sizes(x, name=self.model_name, in_chans=self.in_chans)


# --- the classifier (HRNet-W{C}-C) --------------------------------------------------------------------------------

class HRNet(HighResolutionNetwork, ImageClassifier):
    """HRNet-W{C}-C, the ImageNet classifier (TPAMI, §4 "ImageNet classification").

    Args:
        width, stage1_width, stage1_blocks, modules_per_stage, blocks_per_stream, in_chans: see
            :class:`HighResolutionNetwork`.
        num_classes: outputs of the classifier; 0 leaves it out and returns the pooled 2048 features.
        head_widths: bottleneck widths of the four "increase" layers (outputs 4× wider: 128 … 1024).
        num_features: channels of the final 1×1 convolution, the pooled representation.

    The feature levels, as timm's: the stem's first convolution (stride 2), then the four streams that leave
    stage 4 together, each widened by its "increase" bottleneck (strides 4 … 32). They are not a chain, so
    ``forward_intermediates`` and pruning are this class's own.
    """

    first_conv = "stem.conv1.conv"
    final_modules = ("downsample", "final_layer")  # the high-to-low merge of the widened streams

    def __init__(self, width: int = 32, stage1_width: int = 64, stage1_blocks: int = 4,
                 modules_per_stage: tuple[int, int, int] = (1, 4, 3), blocks_per_stream: int = 4,
                 num_classes: int = 1000, in_chans: int = 3,
                 head_widths: tuple[int, int, int, int] = (32, 64, 128, 256), num_features: int = 2048) -> None:
        super().__init__(width, stage1_width, stage1_blocks, modules_per_stage, blocks_per_stream, in_chans)
        self.num_classes = num_classes
        self.num_features = num_features
        head_out = [w * Bottleneck.expansion for w in head_widths]  # 128, 256, 512, 1024
        # One bottleneck per stream widens it (C·2^k → 128·2^k).
        self.increase = nn.ModuleList([Bottleneck(self.stream_widths[k], head_widths[k]) for k in range(4)])
        self.feature_info = FeatureInfo([(self.stem.conv1.out_channels, 2, "stem.conv1")]
                                        + [(c, 2 ** (k + 2), f"increase.{k}") for k, c in enumerate(head_out)])
        # Merge high → low: a strided 3×3 convolution takes the running sum to the next resolution and width.
        self.downsample = nn.ModuleList([ConvNormAct(c_in, c_out, 3, stride=2, bias=True)
                                         for c_in, c_out in zip(head_out[:-1], head_out[1:], strict=True)])
        self.final_layer = ConvNormAct(head_out[-1], num_features, 1, bias=True)
        self.global_pool = ClassifierPool("avg")
        self.fc = nn.Linear(num_features, num_classes) if num_classes > 0 else nn.Identity()
        self._init_weights()

    def _init_weights(self) -> None:
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

    def check_input(self, x: torch.Tensor) -> None:
        self._check(x)

    def forward_intermediates(self, x: torch.Tensor, indices: int | Sequence[int] | None = None, norm: bool = False,
                              stop_early: bool = False, output_fmt: str = "NCHW", intermediates_only: bool = False
                              ) -> list[torch.Tensor] | tuple[torch.Tensor, list[torch.Tensor]]:
        """As :meth:`ImageClassifier.forward_intermediates`; the four widened streams come out of stage 4
        together, so ``stop_early`` saves only the widenings and the merge after the deepest level asked for."""
        if output_fmt not in ("NCHW", "NHWC"):
            raise ValueError(f"output_fmt must be 'NCHW' or 'NHWC', got {output_fmt!r}")
        self._check(x)
        take = feature_indices(indices, len(self.all_levels))
        deepest = max(take, default=-1) if (stop_early or intermediates_only) else len(self.all_levels) - 1
        maps = [self.stem.conv1(x)]
        if deepest > 0:
            streams = self.forward_streams(self.stem.conv2(maps[0]))
            maps += [self.increase[k](streams[k]) for k in range(deepest)]  # (N, 128·2^k, H/2^(k+2), …)
        intermediates = [maps[i].permute(0, 2, 3, 1) if output_fmt == "NHWC" else maps[i] for i in take]
        if intermediates_only:
            return intermediates
        if not self.final_modules:  # pruned: the deepest level kept is the output
            return maps[-1], intermediates
        merged = maps[1]
        for downsample, widened in zip(self.downsample, maps[2:], strict=True):
            merged = widened + downsample(merged)  # same resolution, same width (256, 512, 1024)
        return self.final_layer(merged), intermediates

    def prune_intermediate_layers(self, indices: int | Sequence[int] = 1, prune_norm: bool = False,
                                  prune_head: bool = True) -> list[int]:
        take = super().prune_intermediate_layers(indices, prune_norm, prune_head)
        if max(take) == 0:  # only the stem's first convolution is asked for: nothing after it is needed
            for name in ("stem.conv2", "stage1", "stage2", "stage3", "stage4"):
                self.set_submodule(name, nn.Identity())
        return take

    def forward_streams(self, x: torch.Tensor) -> list[torch.Tensor]:
        """As :meth:`HighResolutionNetwork.forward_streams`, each stage checkpointed with
        ``set_grad_checkpointing``."""
        streams = [checkpoint_module(self.stage1, x) if checkpointing(self) else self.stage1(x)]
        for stage in (self.stage2, self.stage3, self.stage4):
            streams = checkpoint_module(stage, streams) if checkpointing(self) else stage(streams)
        return streams


# --- the pose network (HRNetV1, CVPR 2019) ----------------------------------------------------------------------

class PoseHRNet(HighResolutionNetwork):
    """HRNet for top-down human pose estimation: heatmaps regressed from the high-resolution stream.

    ``forward`` maps a person crop ``(N, 3, H, W)`` to ``num_keypoints`` heatmaps ``(N, K, H/4, W/4)``; a
    keypoint's location is the peak of its heatmap (:func:`keypoints_from_heatmaps`). Training regresses
    :func:`gaussian_heatmaps` targets with :meth:`loss`.

    Args:
        width, stage1_width, stage1_blocks, modules_per_stage, blocks_per_stream, in_chans: see
            :class:`HighResolutionNetwork`.
        num_keypoints: heatmaps to predict (COCO: 17).
    """

    def __init__(self, width: int = 32, stage1_width: int = 64, stage1_blocks: int = 4,
                 modules_per_stage: tuple[int, int, int] = (1, 4, 3), blocks_per_stream: int = 4,
                 num_keypoints: int = 17, in_chans: int = 3) -> None:
        # The last fusion feeds only the highest resolution: nothing else reaches the heatmaps.
        super().__init__(width, stage1_width, stage1_blocks, modules_per_stage, blocks_per_stream, in_chans,
                         last_num_outputs=1)
        self.num_keypoints = num_keypoints
        self.heatmap_head = nn.Conv2d(width, num_keypoints, kernel_size=1)
        for module in self.modules():  # the authors' pose code: N(0, 0.001²) weights, zero biases
            if isinstance(module, nn.Conv2d):
                nn.init.normal_(module.weight, std=0.001)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Images ``(N, C, H, W)`` → heatmaps ``(N, num_keypoints, H/4, W/4)``."""
        self._check(x)
        (high_resolution,) = self.forward_streams(self.stem(x))
        return self.heatmap_head(high_resolution)

    @staticmethod
    def loss(heatmaps: torch.Tensor, target_heatmaps: torch.Tensor,
             target_weight: torch.Tensor | None = None) -> torch.Tensor:
        """The pose paper's loss: mean squared error between predicted and target heatmaps ``(N, K, h, w)``.

        ``target_weight`` ``(N, K)`` (or ``(N, K, 1)``, the authors' layout) multiplies both heatmaps of each
        keypoint first, so unlabelled keypoints (weight 0) contribute nothing (but still count in the mean).
        """
        if target_weight is not None:
            weight = target_weight.reshape(*target_weight.shape[:2], 1, 1).to(heatmaps.dtype)  # (N, K, 1, 1)
            heatmaps, target_heatmaps = heatmaps * weight, target_heatmaps * weight
        return F.mse_loss(heatmaps, target_heatmaps)


def gaussian_heatmaps(keypoints: torch.Tensor, heatmap_size: tuple[int, int], stride: int = 4, sigma: float = 2.0,
                      visible: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Target heatmaps: an unnormalised 2-D Gaussian (peak 1) at each keypoint, as the authors' code draws them.

    Args:
        keypoints: ``(N, K, 2)`` (x, y) in input-image pixels.
        heatmap_size: ``(h, w)`` of the heatmaps, the input's size / ``stride``.
        stride: input pixels per heatmap pixel (4 for HRNet).
        sigma: standard deviation in heatmap pixels (2, the authors' COCO setting).
        visible: ``(N, K)``, nonzero where the keypoint is labelled; all labelled if ``None``.

    Returns:
        ``(heatmaps (N, K, h, w), target_weight (N, K))``. The centre is the keypoint rounded to the nearest heatmap
        pixel, exp(−((x − μx)² + (y − μy)²) / 2σ²) is drawn within 3σ of it in x and in y and is zero beyond, and
        a keypoint gets weight 0 and an empty map if unlabelled or if that window misses the heatmap entirely.
    """
    h, w = heatmap_size
    centre = torch.floor(keypoints.float() / stride + 0.5)  # (N, K, 2): the nearest heatmap pixel
    mu_x, mu_y = centre[..., 0, None, None], centre[..., 1, None, None]  # (N, K, 1, 1)
    xs = torch.arange(w, dtype=torch.float32, device=keypoints.device)  # (w,)
    ys = torch.arange(h, dtype=torch.float32, device=keypoints.device)[:, None]  # (h, 1)
    dx, dy = xs - mu_x, ys - mu_y  # (N, K, 1, w) and (N, K, h, 1)
    reach = 3 * sigma  # the authors' window: 6σ + 1 pixels wide, centred on μ
    heatmaps = torch.exp(-(dx**2 + dy**2) / (2 * sigma**2)) * ((dx.abs() <= reach) & (dy.abs() <= reach))
    last = torch.tensor([w - 1, h - 1], dtype=torch.float32, device=keypoints.device)
    on_map = ((centre + reach >= 0) & (centre - reach <= last)).all(dim=-1)  # (N, K): the window touches the map
    weight = on_map if visible is None else on_map & (visible != 0)
    weight = weight.float()
    return heatmaps * weight[..., None, None], weight


def keypoints_from_heatmaps(heatmaps: torch.Tensor, stride: int = 4) -> tuple[torch.Tensor, torch.Tensor]:
    """Keypoint coordinates from heatmaps ``(N, K, h, w)``, as the pose paper reads them (§4, "Testing"):
    the highest-scoring pixel, moved a quarter pixel towards the higher of its two neighbours in x and in y.

    Returns ``(keypoints (N, K, 2) as (x, y) in input pixels, scores (N, K) the peak values)``.
    """
    n, k, h, w = heatmaps.shape
    scores, index = heatmaps.flatten(2).max(dim=2)  # (N, K): the peak and where it is
    x, y = index % w, index // w
    # Neighbour differences, zero at the border (where one neighbour is missing), as the authors' code.
    padded = F.pad(heatmaps, (1, 1, 1, 1))  # (N, K, h + 2, w + 2)
    flat = padded.flatten(2)

    def at(dy: int, dx: int) -> torch.Tensor:
        return flat.gather(2, ((y + 1 + dy) * (w + 2) + (x + 1 + dx)).unsqueeze(2)).squeeze(2)  # (N, K)

    inside_x = (x > 0) & (x < w - 1)
    inside_y = (y > 0) & (y < h - 1)
    shift_x = torch.sign(at(0, 1) - at(0, -1)) * inside_x
    shift_y = torch.sign(at(1, 0) - at(-1, 0)) * inside_y
    coords = torch.stack([x + 0.25 * shift_x, y + 0.25 * shift_y], dim=-1)  # (N, K, 2) in heatmap pixels
    return coords * stride, scores


# --- variants -----------------------------------------------------------------------------------------------------

_PAPER = Paper(
    title="Deep High-Resolution Representation Learning for Visual Recognition",
    authors="Jingdong Wang, Ke Sun, Tianheng Cheng, Borui Jiang, Chaorui Deng, Yang Zhao, Dong Liu, Yadong Mu, "
            "Mingkui Tan, Xinggang Wang, Wenyu Liu, Bin Xiao",
    year=2019,
    url="https://arxiv.org/abs/1908.07919",
)
_POSE_PAPER = Paper(
    title="Deep High-Resolution Representation Learning for Human Pose Estimation",
    authors="Ke Sun, Bin Xiao, Dong Liu, Jingdong Wang",
    year=2019,
    url="https://arxiv.org/abs/1902.09212",
)
_INNOVATIONS = (
    "maintain a high-resolution stream through the whole network instead of recovering it from a low-resolution one",
    "parallel streams at 1/4, 1/8, 1/16, 1/32 resolution with C, 2C, 4C, 8C channels, one added per stage",
    "repeated multi-resolution fusion: every stream receives the sum of all others, resampled to its resolution",
    "classification head: widen each stream by a bottleneck, merge high to low by strided convs, 1x1 to 2048",
)
_POSE_INNOVATIONS = (
    "maintain a high-resolution stream through the whole network instead of recovering it from a low-resolution one",
    "exchange units: repeated fusion of parallel high-to-low resolution streams",
    "keypoint heatmaps regressed by a 1x1 convolution from the 1/4-resolution stream alone, MSE to Gaussian targets",
)

# The authors' released ImageNet configuration (HRNet-Image-Classification, cls_hrnet_w32_sgd_lr5e-2_wd1e-4_bs32_x100):
# SGD with Nesterov momentum 0.9, lr 0.05, weight decay 1e-4, 4 GPUs × 32 images,
# 100 epochs, lr ÷ 10 at epochs 30, 60 and 90.
_RECIPE = TrainingRecipe(optimizer="sgd", lr=0.05, momentum=0.9, nesterov=True, weight_decay=1e-4, schedule="step",
                         milestones=(0.3, 0.6, 0.9), batch_size=128,
                         source="HRNet-Image-Classification, cls_hrnet_w32_sgd_lr5e-2_wd1e-4_bs32_x100.yaml")


def _card(name: str, architecture: str, params: int, gmacs: float, canonical: bool = False,
          notes: str = "") -> ModelCard:
    return ModelCard(
        name=name,
        architecture=architecture,
        task="image-classification",
        paper=_PAPER,
        innovations=_INNOVATIONS,
        input=InputSpec(kind="image", shape=(3, 224, 224), min_size=HRNet.min_input_size),
        params=params,
        params_source=f"timm {name}, counted",
        reference=f"timm:{name}",
        gmacs=gmacs,
        canonical=canonical,
        recipe=_RECIPE,
        notes=notes or "H and W need ceil(H/4) divisible by 8 (any multiple of 32) so that the streams halve exactly.",
    )


@register(_card("hrnet_w18_small", "HRNet-W18-Small-v1", params=13_187_464, gmacs=1.602,
                notes="the authors' W18-Small-v1: streams 16, 32, 64, 128 wide, one module per stage, "
                      "2 blocks per stream, one bottleneck (width 32) in stage 1"))
def hrnet_w18_small(**kwargs: Any) -> HRNet:
    """HRNet-W18-Small-v1: C = 16, stage 1 one bottleneck of width 32, modules (1, 1, 1), 2 blocks per stream."""
    return HRNet(width=16, stage1_width=32, stage1_blocks=1, modules_per_stage=(1, 1, 1), blocks_per_stream=2,
                 **kwargs)


@register(_card("hrnet_w18", "HRNet-W18-C", params=21_299_004, gmacs=4.284))
def hrnet_w18(**kwargs: Any) -> HRNet:
    """HRNet-W18-C: C = 18."""
    return HRNet(width=18, **kwargs)


@register(_card("hrnet_w32", "HRNet-W32-C", params=41_232_680, gmacs=8.921, canonical=True))
def hrnet_w32(**kwargs: Any) -> HRNet:
    """HRNet-W32-C: C = 32."""
    return HRNet(width=32, **kwargs)


@register(_card("hrnet_w48", "HRNet-W48-C", params=77_469_864, gmacs=17.278))
def hrnet_w48(**kwargs: Any) -> HRNet:
    """HRNet-W48-C: C = 48."""
    return HRNet(width=48, **kwargs)


@register(_card("hrnet_w64", "HRNet-W64-C", params=128_059_944, gmacs=28.895))
def hrnet_w64(**kwargs: Any) -> HRNet:
    """HRNet-W64-C: C = 64."""
    return HRNet(width=64, **kwargs)


@register(ModelCard(
    name="hrnet_w32_pose",
    architecture="HRNet-W32 (pose)",
    task="keypoint-detection",
    paper=_POSE_PAPER,
    innovations=_POSE_INNOVATIONS,
    input=InputSpec(kind="image", shape=(3, 256, 192), min_size=PoseHRNet.min_input_size),
    params=28_500_000,
    params_tolerance=50_000,
    params_source="Sun et al. 2019, Table 1 (HRNet-W32, 256x192): 28.5M; this build of the authors' "
                  "configuration (pose_hrnet, w32_256x192) counts 28,536,113",
    reference="paper",
    gmacs=7.645,
    notes="17 COCO keypoints; heatmaps at 1/4 resolution (64x48); targets from gaussian_heatmaps (sigma 2), "
          "loss = PoseHRNet.loss (MSE). The paper lists 7.1 GFLOPs; torch's counter measures 7.645 GMACs.",
))
def hrnet_w32_pose(**kwargs: Any) -> PoseHRNet:
    """HRNet-W32 with the pose paper's heatmap head: C = 32, 17 keypoints."""
    return PoseHRNet(width=32, **kwargs)


if __name__ == "__main__":
    from paperzoo.cli import main

    main(["run", "hrnet_w32"])
