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
    ``downsample`` is the projection shortcut. ResNeXt uses the same rules: torchvision builds it with its
    ResNet class (``groups`` on ``conv2``), and ours keeps ResNet's names."""
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


def regnet(state_dict: StateDict, model: nn.Module) -> StateDict:
    """torchvision's ``trunk_output.block<s>.block<s>-<i>`` is block i of ``stages.stage<s>``; its transform
    ``f.a``, ``f.b``, ``f.c`` (each a conv ``0`` and a BN ``1``) are ``conv1``, ``conv2``, ``conv3``; ``f.se`` is
    the squeeze-excitation gate; ``proj`` is the projection shortcut; ``stem.0``/``stem.1`` the stem."""
    block = r"trunk_output\.block(?P<stage>\d)\.block(?P=stage)-(?P<block>\d+)"

    def ours(m: re.Match[str]) -> str:
        return f"stages.stage{m['stage']}.{m['block']}"

    conv = {"f.a": "conv1", "f.b": "conv2", "f.c": "conv3", "proj": "shortcut"}
    return rename(state_dict, [
        (r"stem\.0\.weight", "stem.conv.weight"),
        (r"stem\.1\.(.+)", r"stem.norm.\1"),
        (rf"{block}\.(?P<conv>f\.[abc]|proj)\.0\.weight", lambda m: f"{ours(m)}.{conv[m['conv']]}.conv.weight"),
        (rf"{block}\.(?P<conv>f\.[abc]|proj)\.1\.(?P<rest>.+)",
         lambda m: f"{ours(m)}.{conv[m['conv']]}.norm.{m['rest']}"),
        (rf"{block}\.f\.se\.(?P<rest>fc[12]\.(?:weight|bias))", lambda m: f"{ours(m)}.se.{m['rest']}"),
    ])


CONVERTERS = {"AlexNet": alexnet, "VGG": vgg, "ResNet": resnet, "ResNeXt": resnet, "RegNet": regnet}
