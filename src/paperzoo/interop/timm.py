"""Converters from timm's state_dicts, one per architecture class, in :data:`CONVERTERS`."""

from __future__ import annotations

import re

import torch
from torch import nn

from paperzoo.interop import torchvision
from paperzoo.interop._rename import rename

StateDict = dict[str, torch.Tensor]


# --- SENet, ResNeSt, Xception ---------------------------------------------------------------------------------

def senet(state_dict: StateDict, model: nn.Module) -> StateDict:
    """timm's ``seresnet50`` (its ResNet class) and ``legacy_senet154`` (Cadene's SENet class) → our SENet.

    ``layer1``…``layer4`` are the paper's conv2_x…conv5_x, ``bn<k>`` is ``conv<k>``'s norm, ``downsample`` the
    projection shortcut, ``se`` (``se_module`` in the legacy class) the SE block with the same ``fc1``/``fc2``.
    The stem is ``conv1``/``bn1`` in the ResNet class, ``layer0.conv<k>``/``layer0.bn<k>`` in the legacy one;
    the classifier is ``fc`` or ``last_linear``."""
    def stage(m: re.Match[str]) -> str:
        return f"stages.conv{int(m['layer']) + 1}_x.{m['block']}"

    block = r"layer(?P<layer>[1-4])\.(?P<block>\d+)"
    return rename(state_dict, [
        (r"(?:layer0\.)?conv(\d)\.weight", r"stem.conv\1.conv.weight"),
        (r"(?:layer0\.)?bn(\d)\.(.+)", r"stem.conv\1.norm.\2"),
        (rf"{block}\.conv(\d)\.weight", lambda m: f"{stage(m)}.conv{m[3]}.conv.weight"),
        (rf"{block}\.bn(\d)\.(.+)", lambda m: f"{stage(m)}.conv{m[3]}.norm.{m[4]}"),
        (rf"{block}\.(?:se|se_module)\.(fc[12]\..+)", lambda m: f"{stage(m)}.se.{m[3]}"),
        (rf"{block}\.downsample\.0\.weight", lambda m: f"{stage(m)}.shortcut.conv.weight"),
        (rf"{block}\.downsample\.1\.(.+)", lambda m: f"{stage(m)}.shortcut.norm.{m[3]}"),
        (r"last_linear\.(weight|bias)", r"fc.\1"),
    ])

def resnest(state_dict: StateDict, model: nn.Module) -> StateDict:
    """timm's ResNeSt (its ResNet class with ``ResNestBottleneck``) → ours. The deep stem is timm's ``conv1``
    Sequential (convolutions at 0, 3, 6, BatchNorms at 1, 4 and, as ``bn1``, after it); ``layer1``…``layer4`` are
    conv2_x…conv5_x. In a block, ``conv1``/``bn1`` and ``conv3``/``bn3`` are ours; ``conv2`` is the split attention
    (its ``conv``/``bn0`` the grouped 3×3, ``fc1``/``bn1`` and ``fc2`` the attention); ``downsample`` is
    [average pool (no weights), 1×1 convolution, BatchNorm]."""
    def stage(m: re.Match[str]) -> str:
        return f"stages.conv{int(m['layer']) + 1}_x.{m['block']}"

    block = r"layer(?P<layer>[1-4])\.(?P<block>\d+)"
    stem = {"0": "conv1.conv", "1": "conv1.norm", "3": "conv2.conv", "4": "conv2.norm", "6": "conv3.conv"}
    attention = {"conv": "conv.conv", "bn0": "conv.norm", "fc1": "fc1.conv", "bn1": "fc1.norm", "fc2": "fc2"}
    return rename(state_dict, [
        (r"conv1\.([0-9])\.(.+)", lambda m: f"stem.{stem[m[1]]}.{m[2]}"),
        (r"bn1\.(.+)", r"stem.conv3.norm.\1"),
        (rf"{block}\.conv([13])\.weight", lambda m: f"{stage(m)}.conv{m[3]}.conv.weight"),
        (rf"{block}\.bn([13])\.(.+)", lambda m: f"{stage(m)}.conv{m[3]}.norm.{m[4]}"),
        (rf"{block}\.conv2\.(conv|bn0|fc1|bn1|fc2)\.(.+)",
         lambda m: f"{stage(m)}.split_attention.{attention[m[3]]}.{m[4]}"),
        (rf"{block}\.downsample\.1\.weight", lambda m: f"{stage(m)}.shortcut.conv.weight"),
        (rf"{block}\.downsample\.2\.(.+)", lambda m: f"{stage(m)}.shortcut.norm.{m[3]}"),
    ])

def xception(state_dict: StateDict, model: nn.Module) -> StateDict:
    """timm's ``legacy_xception`` numbers its 12 residual modules ``block1``…``block12``: 1–3 are our entry flow's
    ``module1``…``module3``, 4–11 the middle flow's ``module1``…``module8``, 12 the exit flow's ``module``.
    ``conv1``/``bn1`` and ``conv2``/``bn2`` are the stem, ``conv3``/``bn3`` and ``conv4``/``bn4`` the exit flow's
    last two separable convolutions. A module's ``rep`` is [ReLU, separable conv, BN] repeated (block1 without
    its first ReLU), so the u-th separable convolution sits at index 3(u − 1) + 1 (3(u − 1) in block1) with its
    BN right after; ``skip``/``skipbn`` is the shortcut. A separable conv's ``conv1`` is our ``depthwise``."""
    def module(index: str) -> str:
        b = int(index)
        return (f"entry_flow.module{b}" if b <= 3 else f"middle_flow.module{b - 3}" if b <= 11
                else "exit_flow.module")

    def unit(block: str, index: str) -> int:  # which separable convolution of the module rep[index] belongs to
        return (int(index) - (0 if block == "1" else 1)) // 3 + 1

    sepconv = {"conv1": "depthwise", "pointwise": "pointwise"}
    return rename(state_dict, [
        (r"conv([12])\.weight", r"entry_flow.conv\1.conv.weight"),
        (r"bn([12])\.(.+)", r"entry_flow.conv\1.norm.\2"),
        (r"block(\d+)\.rep\.(\d+)\.(conv1|pointwise)\.weight",
         lambda m: f"{module(m[1])}.residual.sepconv{unit(m[1], m[2])}.{sepconv[m[3]]}.weight"),
        (r"block(\d+)\.rep\.(\d+)\.(.+)", lambda m: f"{module(m[1])}.residual.norm{unit(m[1], m[2])}.{m[3]}"),
        (r"block(\d+)\.skip\.weight", lambda m: f"{module(m[1])}.shortcut.conv.weight"),
        (r"block(\d+)\.skipbn\.(.+)", lambda m: f"{module(m[1])}.shortcut.norm.{m[2]}"),
        (r"conv([34])\.(conv1|pointwise)\.weight",
         lambda m: f"exit_flow.sepconv{int(m[1]) - 2}.conv.{sepconv[m[2]]}.weight"),
        (r"bn([34])\.(.+)", lambda m: f"exit_flow.sepconv{int(m[1]) - 2}.norm.{m[2]}"),
    ])


CONVERTERS = {
    # timm's ResNet (``timm.create_model("resnet50")``, the same v1.5 network) keeps torchvision's names.
    "ResNet": torchvision.resnet,
    # SENet, ResNeSt, Xception (issue 4)
    "SENet": senet,
    "ResNeSt": resnest,
    "Xception": xception,
}
