"""NASNet-A.

Paper: "Learning Transferable Architectures for Scalable Image Recognition", Barret Zoph, Vijay Vasudevan,
Jonathon Shlens, Quoc V. Le, CVPR 2018 (arXiv 2017). https://arxiv.org/abs/1707.07012

Neural Architecture Search (a controller RNN trained with reinforcement learning) can design a whole network,
but searching directly on ImageNet is too expensive. The paper searches for a small building block instead, on
CIFAR-10, and builds the ImageNet network by stacking copies of it:

* The NASNet search space (§3, Figure 2). The network is a fixed stack of two kinds of *cells*: a Normal Cell,
  which keeps the size of its input, and a Reduction Cell, which halves it (its operations on the cell's inputs
  have stride 2). Only the insides of the two cells are searched. The filter count is doubled whenever the
  spatial size is halved, so a cell found on 32×32 images transfers to 331×331 ones by stacking more cells
  (N normal cells between reductions) with more filters. A network is written "N @ F", F being the filter
  count of the penultimate layer: NASNet-A (6 @ 4032) is the large ImageNet model, (4 @ 1056) the mobile one.
* A cell (Figure 3) takes two hidden states, $h_i$ (the previous cell's output) and $h_{i-1}$ (the one before
  it), and builds B = 5 *blocks*. Each block picks two hidden states from those available (the two inputs and
  the earlier blocks' outputs), applies an operation to each (identity, 3×3 average or max pooling, 3×3, 5×5 or
  7×7 depthwise-separable convolution, …) and combines the two results, by element-wise addition or by
  concatenation (NASNet-A adds everywhere). The hidden states that no block consumes are concatenated along
  the channels: that is the cell's output.
* NASNet-A (Figure 4) is the best cell pair found. It is written below as data, :data:`NORMAL_CELL` and
  :data:`REDUCTION_CELL`, one ``(operation, input)`` pair per branch of each block, so the figure can be read
  off the code. Every separable convolution is applied twice, each time as ReLU → separable conv → BN.
* ScheduledDropPath: each path of a cell is dropped (for a whole example) with a probability that grows
  linearly over training; the paper finds that it significantly improves generalisation.

Data flow of NASNet-A (6 @ 4032) at 331×331 (filters per cell operation in parentheses)::

    image 3×331×331
      stem: 3×3 conv /2, unpadded → BN                                    96×165×165
      reduction cell, stem 0 (42)                                         168×83×83
      reduction cell, stem 1 (84)                                         336×42×42
      N = 6 normal cells (168)                                           1008×42×42
      reduction cell (336)                                               1344×21×21
      N = 6 normal cells (336)  ──► auxiliary classifier ─► aux logits    2016×21×21  (training only)
      reduction cell (672)                                               2688×11×11
      N = 6 normal cells (672)                                           4032×11×11
      ReLU → global average pool → dropout → fc                                 1000 logits

    one cell (C filters per operation):
      h_{i-1} ─► ReLU → 1×1 conv → BN (or a factorized reduction if it is twice h_i's size) ─► state 1 (C)
      h_i     ─► ReLU → 1×1 conv → BN ──────────────────────────────────────────────────────► state 0 (C)
      block b = 0 … 4:  state b+2 = op_left(state[left input]) + op_right(state[right input])
      output = concat of the unconsumed states: 6C channels (normal cell), 4C (reduction cell)

NASNet-A (4 @ 1056), the mobile model, is the same network with N = 4, 44 filters in the first stage
(1056 = 6 × 44 × 2²), 11 and 22 in the stem cells and a 32-filter stem convolution, at 224×224.

With ``aux_logits=True`` a model in training mode returns ``(logits, aux_logits)``; :meth:`NASNet.loss` gives
the training objective of the released code's ImageNet notes (cross-entropy with label smoothing 0.1, plus 0.4
times the auxiliary classifier's). In eval mode, and always without ``aux_logits``, it returns the logits alone.
``aux_logits`` is off by default because timm's network, whose weights this one loads, has no auxiliary
classifier (93,320,934 parameters with it, 88,753,150 without).

Deviations from the paper. timm's ``nasnetalarge`` is a port of the TensorFlow-slim network Google released
(``nasnet.py`` and ``nasnet_utils.py`` in tensorflow/models), and keeps that code's details, several of which
the paper does not state; we follow them so that timm's weights load and its outputs match:

* TensorFlow "SAME" padding on every strided operation (separable convolutions and pooling in reduction
  cells): computed from the input size at run time, ceil(size / 2) outputs, and when the total padding is odd
  the extra pixel goes at the bottom and on the right (PyTorch's symmetric padding would shift the sampling
  grid by one pixel). Max pooling pads with −∞.
* Average pooling with stride 2 counts the zero padding in its average (timm pads explicitly, then pools;
  TensorFlow, and the released weights' training, averaged over the pixels inside the image only). Average
  pooling with stride 1 leaves the padding out, as TensorFlow does.
* The stem convolution is unpadded ("VALID"): 331 → 165.
* The factorized reduction (the ``h_{i−1}`` input of the cell after a reduction, and of the second stem cell,
  is twice as large as ``h_i``): two stride-2 1×1 convolutions, each with half the filters, on complementary
  pixel grids, concatenated and batch-normalised. The second grid comes from TensorFlow's "pad then crop"
  trick: drop the first row and column, append a zero row and column, then take every second pixel. At odd
  sizes its last row and column read that zero padding.
* The first stem cell has no previous cell: its ``h_{i−1}`` is the stem convolution's output as it is (no
  ReLU → 1×1 → BN), and the first separable convolution of a branch reading it maps 96 → 42 channels.
* In the large model (``skip_reduction_input=True``, TF-slim's ``skip_reduction_layer_input``) the normal cell
  after a reduction cell takes as ``h_{i−1}`` the reduction cell's own ``h_{i−1}`` (cell 6 reads cell 4, not
  cell 5). The mobile model's configuration turns this off.
* The normal cell's output concatenates ``h_{i−1}`` (after its 1×1 convolution) with the five block outputs,
  as the released cell definition (``used_hiddenstates``) does, although blocks 0 to 3 read it.
* BatchNorm with ε = 0.001 (TensorFlow's) and PyTorch momentum 0.1 (timm's; TF-slim trained with a moving
  average decay of 0.9997, i.e. momentum 0.0003); no convolution biases.
* A ReLU before the global average pooling (the last cell's sum is not rectified); dropout 0.5 before the
  classifier (TF-slim's ``dense_dropout_keep_prob``; timm's default is none; both are the identity in eval).
* The auxiliary classifier (not in timm; built only with ``aux_logits=True``) is TF-slim's: on the rectified
  output of the last normal cell before the second reduction between stages, about 2/3 of the way up, a 5×5/3
  average pooling (unpadded), a 1×1 convolution to 128 channels, BN, ReLU, a convolution to 768 channels as
  large as the pooled map (6×6 at 331×331, 4×4 for the mobile model at 224×224), BN, ReLU, and a
  fully-connected layer. We add a global average pooling after the 768-channel convolution (the identity at
  the size the head is built for) so that larger training images work.
* ScheduledDropPath as TF-slim's code computes it (its "v3"): the drop probability of a cell's paths is
  ``drop_path_rate × (k + 1) / K × progress`` for the network's k-th cell (from 0) of K (stem and reduction
  cells included), so it grows with depth as well as over training; ``progress`` is the fraction of training done,
  which the training loop reports with :meth:`NASNet.set_drop_path_progress` (the network cannot know it;
  until then the cells drop at their final rate). Identity branches are never dropped. The released large
  model trained with ``drop_path_rate=0.3`` (keep probability 0.7), the mobile one without; the default here
  is 0, as in timm.
* Initialisation: PyTorch's defaults, as timm leaves them (TF-slim drew convolution and fully-connected weights
  with fan-out variance scaling).

TorchScript: timm's NASNet-A compiles with ``torch.jit.script``; this one does not (its input check and the shared
classifier plumbing are Python that TorchScript cannot compile, and TorchScript is deprecated upstream).
``torch.export``, ``torch.compile(fullgraph=True)`` and ``torch.fx`` capture it instead (tests/test_export.py,
tests/test_graph_capture.py).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from functools import partial
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from paperzoo.layers import ConvNormAct, FeatureInfo, StochasticDepth, check_image_batch
from paperzoo.layers.checkpoint import checkpoint_module, checkpointing
from paperzoo.layers.classifier import ClassifierPool, ImageClassifier, feature_indices
from paperzoo.registry import InputSpec, ModelCard, Paper, register

__all__ = [
    "NASNet", "NORMAL_CELL", "REDUCTION_CELL", "CellSpec", "BlockSpec", "Cell", "Block", "SeparableConvStack",
    "FactorizedReduction", "ScheduledDropPath", "AuxiliaryClassifier",
]


# --- The searched cells (Figure 4), as data -------------------------------------------------------------
#
# A cell's hidden states, numbered as in TF-slim's released definition: 0 = h_i (the previous cell's output,
# after a ReLU → 1×1 conv → BN), 1 = h_{i−1} (the output of the cell before that, adapted to the same shape),
# and 2 … 6 = the outputs of blocks 0 … 4. Operations: "sep_kxk" (a k×k depthwise-separable convolution,
# applied twice), "avg_3x3" and "max_3x3" (pooling), "identity".

class BlockSpec(NamedTuple):
    """One block: ``(operation, input state)`` for its left and its right branch. Its output is their sum."""

    left: tuple[str, int]
    right: tuple[str, int]


class CellSpec(NamedTuple):
    """A cell: its five blocks, and the hidden states whose concatenation is the cell's output."""

    blocks: tuple[BlockSpec, ...]
    concatenated: tuple[int, ...]


NORMAL_CELL = CellSpec(
    blocks=(
        #         left branch     right branch      → state
        BlockSpec(("sep_5x5", 0), ("sep_3x3", 1)),  # 2
        BlockSpec(("sep_5x5", 1), ("sep_3x3", 1)),  # 3
        BlockSpec(("avg_3x3", 0), ("identity", 1)),  # 4
        BlockSpec(("avg_3x3", 1), ("avg_3x3", 1)),  # 5
        BlockSpec(("sep_3x3", 0), ("identity", 0)),  # 6
    ),
    concatenated=(1, 2, 3, 4, 5, 6),
)

REDUCTION_CELL = CellSpec(
    blocks=(  # every branch reading state 0 or 1 has stride 2; those reading a block's output, stride 1
        #         left branch     right branch      → state
        BlockSpec(("sep_5x5", 0), ("sep_7x7", 1)),  # 2
        BlockSpec(("max_3x3", 0), ("sep_7x7", 1)),  # 3
        BlockSpec(("avg_3x3", 0), ("sep_5x5", 1)),  # 4
        BlockSpec(("identity", 3), ("avg_3x3", 2)),  # 5
        BlockSpec(("sep_3x3", 2), ("max_3x3", 0)),  # 6
    ),
    concatenated=(3, 4, 5, 6),  # state 2 is consumed by blocks 3 and 4
)


# --- Operations ------------------------------------------------------------------------------------------

batch_norm = partial(nn.BatchNorm2d, eps=1e-3, momentum=0.1)  # TensorFlow's ε; timm's momentum


def tf_same_padding(x: torch.Tensor, kernel_size: int, stride: int, value: float = 0.0) -> torch.Tensor:
    """Pad ``x`` as TensorFlow's "SAME" padding does before a strided window: the window then yields
    ceil(size / stride) outputs, and an odd total padding puts its extra pixel at the bottom and on the right."""
    pads = []
    for size in (x.shape[-1], x.shape[-2]):  # F.pad lists the last dimension (width) first
        total = max((-(-size // stride) - 1) * stride + kernel_size - size, 0)
        pads += [total // 2, total - total // 2]
    return F.pad(x, pads, value=value)


# The padding depends on the input's size, which torch.fx's symbolic trace does not know: it records the call
# as one operation instead (torch.export and torch.compile see the sizes and trace through it).
torch.fx.wrap("tf_same_padding")


class SeparableConv(nn.Module):
    """A depthwise-separable convolution: one k×k filter per input channel (``depthwise``), then a 1×1
    convolution that mixes the channels (``pointwise``). With stride 2 it pads the TensorFlow way."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int) -> None:
        super().__init__()
        self.kernel_size, self.stride = kernel_size, stride
        padding = 0 if stride > 1 else kernel_size // 2  # stride 1: "SAME" is the symmetric k // 2
        self.depthwise = nn.Conv2d(in_channels, in_channels, kernel_size, stride=stride, padding=padding,
                                   groups=in_channels, bias=False)
        self.pointwise = nn.Conv2d(in_channels, out_channels, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride > 1:
            x = tf_same_padding(x, self.kernel_size, self.stride)
        return self.pointwise(self.depthwise(x))


class SeparableConvStack(nn.Module):
    """The "sep k×k" operation of Figure 4: ReLU → separable conv → BN, twice (the paper applies every
    separable convolution twice). Only the first may have stride 2, and only it changes the channel count."""

    def __init__(self, in_channels: int, channels: int, kernel_size: int, stride: int) -> None:
        super().__init__()
        self.act1 = nn.ReLU()  # not in place: the cell's hidden state it reads feeds other branches too
        self.sep1 = SeparableConv(in_channels, channels, kernel_size, stride)
        self.norm1 = batch_norm(channels)
        self.act2 = nn.ReLU(inplace=True)
        self.sep2 = SeparableConv(channels, channels, kernel_size, 1)
        self.norm2 = batch_norm(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.norm1(self.sep1(self.act1(x)))
        return self.norm2(self.sep2(self.act2(x)))


class Pool3x3(nn.Module):
    """The "avg 3×3" and "max 3×3" operations, with TensorFlow's padding (see the module's Deviations)."""

    def __init__(self, kind: str, stride: int) -> None:
        super().__init__()
        if kind not in ("avg", "max"):
            raise ValueError(f"unknown pooling {kind!r}")
        self.kind, self.stride = kind, stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.kind == "max":
            return F.max_pool2d(tf_same_padding(x, 3, self.stride, value=float("-inf")), 3, self.stride)
        if self.stride == 1:  # TensorFlow averages over the pixels inside the image
            return F.avg_pool2d(x, 3, 1, padding=1, count_include_pad=False)
        return F.avg_pool2d(tf_same_padding(x, 3, self.stride), 3, self.stride)  # counts the zeros (timm)

    def extra_repr(self) -> str:
        return f"kind={self.kind}, stride={self.stride}"


def make_operation(name: str, in_channels: int, channels: int, stride: int) -> nn.Module:
    """Build one of Figure 4's operations ("sep_5x5", "avg_3x3", "identity", …) producing ``channels``."""
    if name == "identity":
        if stride != 1 or in_channels != channels:
            raise ValueError("NASNet-A uses the identity only where it keeps the shape")
        return nn.Identity()
    kind, window = name.split("_")
    kernel_size = int(window.split("x")[0])
    if kind == "sep":
        return SeparableConvStack(in_channels, channels, kernel_size, stride)
    if in_channels != channels or kernel_size != 3:
        raise ValueError(f"NASNet-A pools only 3x3 windows of states with the cell's width, not {name!r} here")
    return Pool3x3(kind, stride)


# --- Cells -----------------------------------------------------------------------------------------------

class ScheduledDropPath(StochasticDepth):
    """ScheduledDropPath: drop a path for a whole example with a probability that rises linearly from 0 at the
    start of training to ``final_drop_prob`` at its end, scaling the kept ones by 1 / (1 − p) (drop path, i.e.
    stochastic depth per branch). :meth:`set_progress` is told the fraction of training done; until it is first
    called, the rate is the final one."""

    def __init__(self, final_drop_prob: float) -> None:
        super().__init__(final_drop_prob)
        self.final_drop_prob = final_drop_prob

    def set_progress(self, fraction: float) -> None:
        self.p = self.final_drop_prob * min(max(fraction, 0.0), 1.0)

    def extra_repr(self) -> str:
        return f"p={self.p}, final_drop_prob={self.final_drop_prob}"


def relu_conv_bn(in_channels: int, out_channels: int) -> nn.Sequential:
    """ReLU → 1×1 conv → BN: how a cell adapts an input to its own filter count (TF-slim's cell base). The
    ReLU is not in place: the cell's input also feeds the next cell."""
    return nn.Sequential(OrderedDict(act=nn.ReLU(), conv=nn.Conv2d(in_channels, out_channels, 1, bias=False),
                                     norm=batch_norm(out_channels)))


class FactorizedReduction(nn.Module):
    """Halve a hidden state that is twice the cell's size without discarding three quarters of its pixels:
    two stride-2 1×1 convolutions on complementary pixel grids (the even and, shifted by one, the odd pixels),
    each with half the filters, concatenated, then BN."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        if out_channels % 2:
            raise ValueError(f"a factorized reduction needs an even filter count, got {out_channels}")
        self.act = nn.ReLU()
        self.path1 = nn.Conv2d(in_channels, out_channels // 2, 1, bias=False)
        self.path2 = nn.Conv2d(in_channels, out_channels // 2, 1, bias=False)
        self.norm = batch_norm(out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act(x)
        even = x[:, :, ::2, ::2]  # (N, C, ceil(H/2), ceil(W/2)): pixels (0, 0), (0, 2), …
        # "Pad then crop": one pixel down and to the right, a zero row and column appended at the end.
        odd = F.pad(x[:, :, 1:, 1:], (0, 1, 0, 1))[:, :, ::2, ::2]  # pixels (1, 1), (1, 3), …
        return self.norm(torch.cat([self.path1(even), self.path2(odd)], dim=1))


class Block(nn.Module):
    """One of a cell's B = 5 blocks (Figure 3): an operation on each of two hidden states, the results added.

    Args:
        spec: the block's ``(operation, input)`` pairs.
        state_channels: channels of each hidden state the block may read (its inputs come before it).
        channels: the cell's filter count, the block's output width.
        stride: 2 in a reduction cell, applied only to branches that read the cell's inputs (states 0 and 1);
            blocks' outputs are already at the reduced size.
    """

    def __init__(self, spec: BlockSpec, state_channels: list[int], channels: int, stride: int) -> None:
        super().__init__()
        (left_op, self.left_input), (right_op, self.right_input) = spec
        self.left = make_operation(left_op, state_channels[self.left_input], channels,
                                   stride if self.left_input < 2 else 1)
        self.right = make_operation(right_op, state_channels[self.right_input], channels,
                                    stride if self.right_input < 2 else 1)

    def forward(self, states: list[torch.Tensor], drop_path: nn.Module) -> torch.Tensor:
        left = self.left(states[self.left_input])
        right = self.right(states[self.right_input])
        # ScheduledDropPath drops the paths through an operation, never an identity branch (TF-slim's rule).
        if not isinstance(self.left, nn.Identity):
            left = drop_path(left)
        if not isinstance(self.right, nn.Identity):
            right = drop_path(right)
        return left + right  # the combination Figure 4 draws in green: element-wise addition


class Cell(nn.Module):
    """A NASNet-A cell, normal or reduction, built from its :class:`CellSpec`.

    Args:
        spec: :data:`NORMAL_CELL` or :data:`REDUCTION_CELL`.
        current_channels: channels of ``h_i``, the previous cell's output.
        previous_channels: channels of ``h_{i−1}``, the output before it.
        channels: the cell's filter count C: every operation outputs C channels.
        reduction: stride 2 on the operations that read the cell's inputs.
        previous_adapt: how ``h_{i−1}`` is brought to C channels at ``h_i``'s size: ``"1x1"`` (ReLU → 1×1 →
            BN), ``"factorized"`` (it is twice the size: :class:`FactorizedReduction`) or ``"none"`` (used
            as it is: the first stem cell, whose ``h_{i−1}`` and ``h_i`` are both the stem convolution's output).
        drop_prob: the final ScheduledDropPath probability of this cell's paths.
    """

    def __init__(self, spec: CellSpec, current_channels: int, previous_channels: int, channels: int,
                 reduction: bool, previous_adapt: str, drop_prob: float = 0.0) -> None:
        super().__init__()
        self.spec, self.reduction = spec, reduction
        self.adapt_current = relu_conv_bn(current_channels, channels)
        if previous_adapt == "1x1":
            self.adapt_previous, previous_out = relu_conv_bn(previous_channels, channels), channels
        elif previous_adapt == "factorized":
            self.adapt_previous, previous_out = FactorizedReduction(previous_channels, channels), channels
        elif previous_adapt == "none":
            self.adapt_previous, previous_out = nn.Identity(), previous_channels
        else:
            raise ValueError(f"previous_adapt must be '1x1', 'factorized' or 'none', got {previous_adapt!r}")
        state_channels = [channels, previous_out] + [channels] * len(spec.blocks)
        self.blocks = nn.ModuleList(Block(block, state_channels, channels, stride=2 if reduction else 1)
                                    for block in spec.blocks)
        self.drop_path = ScheduledDropPath(drop_prob)
        self.out_channels = channels * len(spec.concatenated)

    def forward(self, h: torch.Tensor, h_prev: torch.Tensor) -> torch.Tensor:
        states = [self.adapt_current(h), self.adapt_previous(h_prev)]  # states 0 and 1, both (N, C, H, W)
        for block in self.blocks:
            states.append(block(states, self.drop_path))  # states 2 … 6, (N, C, H', W')
        return torch.cat([states[i] for i in self.spec.concatenated], dim=1)  # (N, 6C or 4C, H', W')


class AuxiliaryClassifier(nn.Module):
    """TF-slim's auxiliary head, about 2/3 of the way up the network; a regulariser used in training only.

    Args:
        in_channels: channels of the tapped cell output.
        num_classes: outputs of its classifier; 0 leaves it out.
        kernel_size: size of the 768-channel convolution: the size of the pooled map at the input size the
            network is built for, so that it acts as a fully-connected layer over that map.
    """

    def __init__(self, in_channels: int, num_classes: int, kernel_size: int) -> None:
        super().__init__()
        self.act = nn.ReLU()  # the cell output is a sum of BN outputs, not yet rectified
        self.pool = nn.AvgPool2d(kernel_size=5, stride=3)
        self.proj = ConvNormAct(in_channels, 128, 1, norm_layer=batch_norm)
        self.hidden = ConvNormAct(128, 768, kernel_size, padding=0, norm_layer=batch_norm)
        self.global_pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(768, num_classes) if num_classes > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.proj(self.pool(self.act(x)))  # (N, C, 21, 21) → (N, 128, 6, 6) at 331×331
        x = self.global_pool(self.hidden(x))  # (N, 768, 1, 1); averages the map of a larger input
        return self.fc(torch.flatten(x, 1))  # (N, 768) → (N, num_classes)


# --- The network -----------------------------------------------------------------------------------------

def map_sizes(image_size: int) -> list[int]:
    """Side of the feature map at strides 2, 4, 8, 16 and 32 for an ``image_size`` input: the unpadded stem
    convolution, then four halvings with TensorFlow "SAME" padding (ceil)."""
    size = (image_size - 3) // 2 + 1
    sizes = [size]
    for _ in range(4):
        size = -(-size // 2)
        sizes.append(size)
    return sizes


def aux_kernel_size(image_size: int) -> int:
    """The auxiliary head's 5×5/3 pooling applied to the stride-16 map: the side of what it leaves."""
    return (map_sizes(image_size)[3] - 5) // 3 + 1


class NASNet(ImageClassifier):
    """NASNet-A (N @ F) for ImageNet (Figure 2): a stem convolution, two reduction cells as a stem, then three
    stages of N normal cells separated by reduction cells.

    Args:
        cells_per_stage: N, the normal cells between reductions (6 large, 4 mobile).
        penultimate_filters: F, the channels of the last cell's output (4032 large, 1056 mobile). The first
            stage's cells have F / (6 · m²) filters per operation, m being ``filter_multiplier``.
        stem_filters: channels of the stem's 3×3 convolution (96 large, 32 mobile).
        filter_multiplier: factor by which every reduction multiplies the filter count (the paper: 2); the two
            stem cells have 1/m² and 1/m of the first stage's.
        skip_reduction_input: the normal cell after a reduction cell takes the reduction cell's own ``h_{i−1}``
            as its ``h_{i−1}`` (TF-slim's large model) instead of the reduction cell's input (mobile).
        num_classes: outputs of the classifier (and of the auxiliary one); 0 leaves them out and returns the
            pooled features.
        in_chans: channels of the input image.
        aux_logits: build the auxiliary classifier; in training mode ``forward`` then returns
            ``(logits, aux_logits)``.
        image_size: the input size the auxiliary classifier's last convolution is sized for.
        dropout: dropout probability before the classifier (TF-slim's 0.5).
        drop_path_rate: final ScheduledDropPath probability of the last cell (earlier cells scale it by depth);
            0 turns it off (TF-slim: 0.3 for the large model, 0 for the mobile one).
        features_only: build no head; ``forward`` returns the maps in ``out_indices``.
        out_indices: which of the five maps ``features_only`` returns: 0 the stem convolution (stride 2), 1 the
            first stem cell (4), 2, 3, 4 the last cell of each stage (8, 16, 32); cell outputs come rectified.
    """

    # The unpadded 3×3 stem convolution needs 3 pixels; every later layer pads the TensorFlow way, so even a
    # 1×1 map passes through the cells. timm's model takes 3×3 inputs too and refuses 2×2.
    min_input_size = 3
    model_name = "nasnet"
    first_conv = "stem.conv"
    head_dropout_name = "dropout"

    def __init__(
        self,
        cells_per_stage: int = 6,
        penultimate_filters: int = 4032,
        stem_filters: int = 96,
        filter_multiplier: int = 2,
        skip_reduction_input: bool = True,
        num_classes: int = 1000,
        in_chans: int = 3,
        aux_logits: bool = False,
        image_size: int = 331,
        dropout: float = 0.5,
        drop_path_rate: float = 0.0,
    ) -> None:
        super().__init__()
        filters, remainder = divmod(penultimate_filters, 6 * filter_multiplier**2)
        if remainder or filters % filter_multiplier**2:
            raise ValueError(f"penultimate_filters={penultimate_filters} does not give whole filter counts")
        self.num_classes = num_classes
        self.in_chans = in_chans
        self.cells_per_stage = cells_per_stage
        self.skip_reduction_input = skip_reduction_input
        self.aux_logits = aux_logits

        self.stem = ConvNormAct(in_chans, stem_filters, 3, stride=2, padding=0, norm_layer=batch_norm,
                                act_layer=None)

        # The cells in the order they run, as (kind, filters): two stem reduction cells, then N normal cells,
        # a reduction cell, N normal cells, a reduction cell, N normal cells. Filters grow by the multiplier
        # at each reduction.
        n = cells_per_stage
        plan: list[tuple[CellSpec, int]] = [(REDUCTION_CELL, filters // filter_multiplier**2),
                                            (REDUCTION_CELL, filters // filter_multiplier)]
        for stage in range(3):
            if stage > 0:
                plan.append((REDUCTION_CELL, filters * filter_multiplier**stage))
            plan += [(NORMAL_CELL, filters * filter_multiplier**stage)] * n
        stage_reductions = {n + 2, 2 * n + 3}  # indices of the two reduction cells between stages
        # The feature levels: the stem (stride 2), then the first stem cell and each stage's last cell (the
        # index in ``cells`` whose rectified output is the map; strides 4 … 32).
        self._level_cells = (None, 0, n + 1, 2 * n + 2, 3 * n + 3)
        self._aux_after = 2 * n + 2  # the last normal cell before the second reduction between stages

        # What the forward pass hands each cell: h_i = the previous output, h_{i−1} = the one before it, except
        # after a reduction between stages with skip_reduction_input, where h_{i−1} stays the reduction's own.
        # Channels and strides are tracked the same way to size each cell.
        self._keeps_previous = [skip_reduction_input and i in stage_reductions for i in range(len(plan))]
        current, previous = (stem_filters, 2), (stem_filters, 2)  # (channels, stride) of h_i and h_{i−1}
        self.cells = nn.ModuleList()
        levels = [(stem_filters, 2, "stem")]
        for index, (spec, cell_filters) in enumerate(plan):
            reduction = spec is REDUCTION_CELL
            if index == 0:
                adapt = "none"  # no cell before the first stem cell: its h_{i−1} is the stem output itself
            elif previous[1] < current[1]:
                adapt = "factorized"
            else:
                adapt = "1x1"
            # TF-slim numbers the cells 0 … K−1, stem and reduction cells included, to scale the drop rate.
            cell = Cell(spec, current[0], previous[0], cell_filters, reduction, adapt,
                        drop_prob=drop_path_rate * (index + 1) / len(plan))
            self.cells.append(cell)
            output = (cell.out_channels, current[1] * (2 if reduction else 1))
            current, previous = output, (previous if self._keeps_previous[index] else current)
            if index in self._level_cells:
                levels.append((cell.out_channels, output[1], f"cells.{index}"))
        self.feature_info = FeatureInfo(levels)

        self.num_features = penultimate_filters
        self.final_act = nn.ReLU()
        self.global_pool = ClassifierPool("avg")
        self.dropout = nn.Dropout(p=dropout)
        self.fc = nn.Linear(self.num_features, num_classes) if num_classes > 0 else nn.Identity()
        if aux_logits:
            kernel_size = aux_kernel_size(image_size)
            if kernel_size < 1:
                raise ValueError(f"image_size={image_size} is too small for the auxiliary classifier")
            self.aux_classifier = AuxiliaryClassifier(self.cells[self._aux_after].out_channels, num_classes,
                                                      kernel_size)
            # The 5×5/3 pooling must leave at least the convolution's kernel_size on the stride-16 map.
            self.aux_min_input_size = next(size for size in range(self.min_input_size, image_size + 1)
                                           if aux_kernel_size(size) >= kernel_size)

    def set_drop_path_rate(self, drop_path_rate: float) -> None:
        """The final drop probability of the last cell's paths; cell i of K gets ``drop_path_rate · (i + 1) / K``
        (TF-slim's numbering, stem cells included)."""
        for index, cell in enumerate(self.cells):
            cell.drop_path.final_drop_prob = cell.drop_path.p = drop_path_rate * (index + 1) / len(self.cells)

    def set_drop_path_progress(self, fraction: float) -> None:
        """Tell ScheduledDropPath the fraction of training done (step / total steps): every cell's drop
        probability is then its final one times ``fraction``. Call it each step for the paper's linear ramp."""
        for module in self.modules():
            if isinstance(module, ScheduledDropPath):
                module.set_progress(fraction)

    def forward_intermediates(self, x: torch.Tensor, indices: int | Sequence[int] | None = None, norm: bool = False,
                              stop_early: bool = False, output_fmt: str = "NCHW", intermediates_only: bool = False
                              ) -> list[torch.Tensor] | tuple[torch.Tensor, list[torch.Tensor]]:
        """As :meth:`ImageClassifier.forward_intermediates`, for cells that take the two previous outputs."""
        features, intermediates, _ = self._trunk(x, indices, stop_early, output_fmt, intermediates_only)
        return intermediates if intermediates_only else (features, intermediates)

    def _trunk(self, x: torch.Tensor, indices: int | Sequence[int] | None = None, stop_early: bool = False,
               output_fmt: str = "NCHW", intermediates_only: bool = False, with_aux: bool = False) -> tuple:
        """Images → (the rectified last cell output, the maps of the levels ``indices``, the auxiliary logits
        if ``with_aux``); with ``intermediates_only``, the maps first."""
        if output_fmt not in ("NCHW", "NHWC"):
            raise ValueError(f"output_fmt must be 'NCHW' or 'NHWC', got {output_fmt!r}")
        check_image_batch(x, model=self, in_chans=self.in_chans,
                          min_size=self.aux_min_input_size if with_aux else self.min_input_size)
        take = feature_indices(indices, len(self.all_levels))
        taps = {self._level_cells[i]: i for i in take}
        last = len(self.cells) - 1
        if stop_early or intermediates_only:
            last = max((self._level_cells[i] for i in take if i > 0), default=-1)
        h = self.stem(x)  # (N, 96, 165, 165) at 331×331
        maps = {0: h} if 0 in take else {}
        h_prev, aux = h, None
        for index, cell in enumerate(self.cells[:last + 1]):
            out = checkpoint_module(cell, h, h_prev) if checkpointing(self) else cell(h, h_prev)
            h, h_prev = out, (h_prev if self._keeps_previous[index] else h)
            if index in taps:
                maps[taps[index]] = F.relu(h)  # rectified, as every consumer of a cell output reads it
            if with_aux and index == self._aux_after:
                aux = self.aux_classifier(h)
        intermediates = [maps[i].permute(0, 2, 3, 1) if output_fmt == "NHWC" else maps[i] for i in take]
        return (None if intermediates_only else self.final_act(h)), intermediates, aux

    def prune_intermediate_layers(self, indices: int | Sequence[int] = 1, prune_norm: bool = False,
                                  prune_head: bool = True) -> list[int]:
        if prune_head and self.aux_logits:
            raise ValueError("a features_only backbone has no classifiers: aux_logits must be False")
        take = super().prune_intermediate_layers(indices, prune_norm, prune_head)
        last_cell = self._level_cells[max(take)]
        self.cells = self.cells[:0 if last_cell is None else last_cell + 1]  # no cell after the deepest level
        return take

    def forward(self, x: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor] | list[torch.Tensor]:
        """Logits; in training mode with ``aux_logits``, ``(logits, aux_logits)``; with ``features_only``, the
        list of maps in ``out_indices``."""
        if not (self.training and self.aux_logits) or self.features_only:
            return super().forward(x)
        features, _, aux = self._trunk(x, indices=[], with_aux=True)
        return self.forward_head(features), aux

    def reset_classifier(self, num_classes: int, global_pool: str | None = None) -> None:
        """Replace the classifier, and the auxiliary one's if built, with fresh layers of ``num_classes``
        outputs (0: none, so the model returns the pooled features)."""
        super().reset_classifier(num_classes, global_pool)
        if self.aux_logits:
            self.aux_classifier.fc = nn.Linear(768, num_classes) if num_classes > 0 else nn.Identity()

    def loss(self, output: torch.Tensor | tuple[torch.Tensor, torch.Tensor], target: torch.Tensor,
             aux_weight: float = 0.4, label_smoothing: float = 0.1) -> torch.Tensor:
        """The ImageNet training loss of the released code: cross-entropy with label smoothing 0.1, plus
        ``aux_weight`` (0.4) times the auxiliary classifier's when ``output`` carries it."""
        criterion = partial(F.cross_entropy, target=target, label_smoothing=label_smoothing)
        if isinstance(output, torch.Tensor):
            return criterion(output)
        logits, aux = output
        return criterion(logits) + aux_weight * criterion(aux)

# --- Variants --------------------------------------------------------------------------------------------

_PAPER = Paper(
    title="Learning Transferable Architectures for Scalable Image Recognition",
    authors="Barret Zoph, Vijay Vasudevan, Jonathon Shlens, Quoc V. Le",
    year=2018,
    url="https://arxiv.org/abs/1707.07012",
)
_INNOVATIONS = (
    "architecture search for a cell on CIFAR-10, transferred to ImageNet by stacking more copies of it",
    "two searched cells: a Normal cell keeps the size, a Reduction cell halves it and doubles the filters",
    "each cell: 5 blocks, each adds two searched operations on two chosen hidden states",
    "depthwise-separable convolutions (applied twice), pooling and identity as the searched operations",
    "ScheduledDropPath: paths dropped with a probability that rises linearly over training",
)


@register(ModelCard(
    name="nasnet_a_large",
    architecture="NASNet-A (6 @ 4032)",
    task="image-classification",
    paper=_PAPER,
    innovations=_INNOVATIONS,
    input=InputSpec(kind="image", shape=(3, 331, 331), min_size=NASNet.min_input_size),
    params=88_753_150,
    params_source="timm nasnetalarge, counted (the paper's Table 2: 88.9M); 93,320,934 with aux_logits=True",
    reference="timm:nasnetalarge",
    gmacs=23.783,
    canonical=True,
    notes="timm's port of the TF-slim network (TensorFlow 'SAME' padding, factorized reductions); "
          "aux_logits=True adds TF-slim's auxiliary classifier, which timm lacks.",
))
def nasnet_a_large(**kwargs: Any) -> NASNet:
    """NASNet-A (6 @ 4032) at 331×331, as timm's ``nasnetalarge``."""
    return NASNet(**{"cells_per_stage": 6, "penultimate_filters": 4032, "stem_filters": 96,
                     "skip_reduction_input": True, "image_size": 331, **kwargs})


@register(ModelCard(
    name="nasnet_a_mobile",
    architecture="NASNet-A (4 @ 1056)",
    task="image-classification",
    paper=_PAPER,
    innovations=_INNOVATIONS,
    input=InputSpec(kind="image", shape=(3, 224, 224), min_size=NASNet.min_input_size),
    params=5_300_000,
    params_tolerance=50_000,
    params_source="the paper's Table 3 (NASNet-A (4 @ 1056): 5.3M); the same cells with N = 4, 44 filters in "
                  "the first stage, a 32-filter stem (TF-slim's mobile configuration) and 1000 classes count "
                  "5,289,978 (7,701,218 with aux_logits=True), the trainable parameters of Keras's "
                  "NASNetMobile (keras.applications; its summary's 5,326,716 adds 36,738 BatchNorm moving statistics)",
    reference="paper",
    gmacs=0.564,
    notes="no PyTorch reference implementation to load: built from the large model's cells with N = 4, "
          "penultimate filters 1056 and the 32-filter stem; its 0.564 GMACs at 224x224 equal Table 3's 564M "
          "mult-adds. A library reference exists in TensorFlow: Keras's NASNetMobile (keras.applications) has "
          "the same 5,289,978 trainable parameters.",
))
def nasnet_a_mobile(**kwargs: Any) -> NASNet:
    """NASNet-A (4 @ 1056) at 224×224, TF-slim's mobile configuration."""
    return NASNet(**{"cells_per_stage": 4, "penultimate_filters": 1056, "stem_filters": 32,
                     "skip_reduction_input": False, "image_size": 224, **kwargs})


if __name__ == "__main__":
    from paperzoo.cli import main

    main(["run", "nasnet_a_large"])
