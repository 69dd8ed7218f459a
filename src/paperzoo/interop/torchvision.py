"""Converters from torchvision's state_dicts, one per architecture class, in :data:`CONVERTERS`.

Each is a table of renaming rules that doubles as documentation of how the two layouts correspond.
"""

from __future__ import annotations

import re

import torch
from torch import nn

from paperzoo.interop._rename import rename

StateDict = dict[str, torch.Tensor]


def alexnet(state_dict: StateDict, model: nn.Module) -> StateDict:
    """torchvision's flat ``features.<i>`` / ``classifier.<i>`` indices → conv1…conv5, fc6…fc8."""
    layers = {"features.0": "features.conv1.conv", "features.3": "features.conv2.conv",
              "features.6": "features.conv3.conv", "features.8": "features.conv4.conv",
              "features.10": "features.conv5.conv", "classifier.1": "classifier.fc6",
              "classifier.4": "classifier.fc7", "classifier.6": "fc8"}
    return rename(state_dict, [(rf"{re.escape(old)}\.(weight|bias)", rf"{new}.\1") for old, new in layers.items()])


def vgg(state_dict: StateDict, model: nn.Module) -> StateDict:
    """VGG is a plain stack: torchvision's k-th convolution in ``features`` is our k-th (``conv{b}_{i}``),
    and the BatchNorm right after it (``_bn`` variants) is that convolution's ``norm``."""
    theirs = sorted({int(k.split(".")[1]) for k, v in state_dict.items()
                     if k.startswith("features.") and k.endswith(".weight") and v.ndim == 4})
    ours = [k.removesuffix(".conv.weight") for k in model.state_dict()
            if k.startswith("features.") and k.endswith(".conv.weight")]
    if len(theirs) != len(ours):
        raise ValueError(f"torchvision VGG has {len(theirs)} convolutions, the model {len(ours)}: "
                         "build the same configuration")
    rules = []
    for index, name in zip(theirs, ours, strict=True):
        rules.append((rf"features\.{index}\.(weight|bias)", rf"{name}.conv.\1"))
        rules.append((rf"features\.{index + 1}\.(.+)", rf"{name}.norm.\1"))  # its BatchNorm, if any
    rules += [(r"classifier\.0\.(.+)", r"classifier.fc6.\1"), (r"classifier\.3\.(.+)", r"classifier.fc7.\1"),
              (r"classifier\.6\.(.+)", r"fc8.\1")]
    return rename(state_dict, rules)


def resnet(state_dict: StateDict, model: nn.Module) -> StateDict:
    """torchvision's ``layer1``…``layer4`` are the paper's conv2_x…conv5_x; ``bn<k>`` is ``conv<k>``'s norm;
    ``downsample`` is the projection shortcut."""
    def stage(m: re.Match[str]) -> str:
        return f"stages.conv{int(m['layer']) + 1}_x.{m['block']}"

    block = r"layer(?P<layer>\d)\.(?P<block>\d+)"
    return rename(state_dict, [
        (r"conv1\.weight", "conv1.conv.weight"),
        (r"bn1\.(.+)", r"conv1.norm.\1"),
        (rf"{block}\.conv(\d)\.weight", lambda m: f"{stage(m)}.conv{m[3]}.conv.weight"),
        (rf"{block}\.bn(\d)\.(.+)", lambda m: f"{stage(m)}.conv{m[3]}.norm.{m[4]}"),
        (rf"{block}\.downsample\.0\.weight", lambda m: f"{stage(m)}.shortcut.conv.weight"),
        (rf"{block}\.downsample\.1\.(.+)", lambda m: f"{stage(m)}.shortcut.norm.{m[3]}"),
    ])


def _blocks_in_order(model: nn.Module) -> list[tuple[str, list[str]]]:
    """Our blocks in forward order (``stages.<stage>.<j>``), each with its parts that hold weights, in order:
    torchvision numbers the same parts ``0, 1, 2, …`` inside a block."""
    blocks = []
    for stage_name, stage in model.stages.named_children():
        for j, block in enumerate(stage):
            parts = [name for name, part in block.named_children() if next(part.parameters(), None) is not None]
            blocks.append((f"stages.{stage_name}.{j}", parts))
    return blocks


def _conv_norm(part: str, index: str, rest: str) -> str:
    """torchvision's ``Conv2dNormActivation`` numbers its convolution 0 and its BatchNorm 1."""
    return f"{part}.{ {'0': 'conv', '1': 'norm'}[index] }.{rest}"


def mobilenet_v2(state_dict: StateDict, model: nn.Module) -> StateDict:
    """torchvision keeps every layer in one flat ``features`` list: 0 is the stem, 1 … 17 the bottleneck blocks
    (ours, stage by stage, in the same order), the last one the 1×1 head convolution; ``classifier.1`` is fc.
    Inside a block, ``conv.<p>`` counts the expansion (when t > 1) and the depthwise convolution, each a
    conv-BN pair, then the projection as two entries: its bare convolution and its BatchNorm."""
    blocks = _blocks_in_order(model)
    head = max(int(k.split(".")[1]) for k in state_dict if k.startswith("features."))

    def block(m: re.Match[str]) -> str:
        index, part, rest = int(m["block"]) - 1, int(m["part"]), m["rest"]
        if index >= len(blocks):  # a block a truncated (features_only) model does not build: left unmatched
            return m[0]
        name, parts = blocks[index]
        *convs, project = parts  # (expand,) depthwise | project
        if part < len(convs):
            return f"{name}.{_conv_norm(convs[part], *rest.split('.', 1))}"
        if part == len(convs):
            return f"{name}.{project}.conv.{rest}"
        return f"{name}.{project}.norm.{rest}"

    return rename(state_dict, [
        (rf"features\.{head}\.(0|1)\.(.+)", lambda m: _conv_norm("head_conv", m[1], m[2])),
        (r"features\.0\.(0|1)\.(.+)", lambda m: _conv_norm("stem", m[1], m[2])),
        (r"features\.(?P<block>\d+)\.conv\.(?P<part>\d+)\.(?P<rest>.+)", block),
        (r"classifier\.1\.(weight|bias)", r"fc.\1"),
    ])


def efficientnet(state_dict: StateDict, model: nn.Module) -> StateDict:
    """EfficientNet and EfficientNetV2: torchvision's ``features.0`` is the stem, ``features.<s>.<j>`` the j-th
    block of our s-th stage, the last ``features`` entry the 1×1 head convolution, ``classifier.1`` fc.
    Inside a block, ``block.<p>`` counts its parts in order (MBConv: expansion when t > 1, depthwise,
    squeeze-excitation, projection; Fused-MBConv: the fused k×k convolution, projection when t > 1), each a
    conv-BN pair except the squeeze-excitation, whose ``fc1``/``fc2`` keep their names."""
    stages = [name for name, _ in model.stages.named_children()]
    parts_of = dict(_blocks_in_order(model))
    head = max(int(k.split(".")[1]) for k in state_dict if k.startswith("features."))

    def block(m: re.Match[str]) -> str:
        stage, part, rest = int(m["stage"]) - 1, int(m["part"]), m["rest"]
        name = f"stages.{stages[stage]}.{m['block']}" if stage < len(stages) else ""
        if name not in parts_of:  # a block a truncated (features_only) model does not build: left unmatched
            return m[0]
        ours = parts_of[name][part]
        if rest.startswith("fc"):
            return f"{name}.{ours}.{rest}"
        return f"{name}.{_conv_norm(ours, *rest.split('.', 1))}"

    return rename(state_dict, [
        (rf"features\.{head}\.(0|1)\.(.+)", lambda m: _conv_norm("head_conv", m[1], m[2])),
        (r"features\.0\.(0|1)\.(.+)", lambda m: _conv_norm("stem", m[1], m[2])),
        (r"features\.(?P<stage>\d+)\.(?P<block>\d+)\.block\.(?P<part>\d+)\.(?P<rest>.+)", block),
        (r"classifier\.1\.(weight|bias)", r"fc.\1"),
    ])


CONVERTERS = {"AlexNet": alexnet, "VGG": vgg, "ResNet": resnet, "MobileNetV2": mobilenet_v2,
              "EfficientNet": efficientnet, "EfficientNetV2": efficientnet}
