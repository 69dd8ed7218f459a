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


def _conv_bn(m: re.Match[str], prefix: str) -> str:
    """torchvision's ``BasicConv2d`` (``conv``, ``bn``) is our ``ConvNormAct`` (``conv``, ``norm``)."""
    return f"{prefix}.{'norm' if m['layer'] == 'bn' else 'conv'}.{m['param']}"


_CONV_BN = r"(?P<layer>conv|bn)\.(?P<param>.+)"


def googlenet(state_dict: StateDict, model: nn.Module) -> StateDict:
    """torchvision's ``conv1``, ``conv2``, ``conv3`` are the paper's conv1, the 3×3 reduce and conv2 (Table 1);
    an Inception module's ``branch1``…``branch4`` are its 1×1, 3×3, "5×5" and pooling branches; ``aux1`` and
    ``aux2`` sit on inception (4a) and (4d), their ``conv``, ``fc1``, ``fc2`` our ``reduce``, ``hidden``, ``fc``."""
    stem = {"conv1": "conv1", "conv2": "conv2_reduce", "conv3": "conv2"}
    branches = {"1": "branch_1x1", "2": "branch_3x3", "3": "branch_5x5", "4": "branch_pool"}
    aux = {"aux1": "aux_4a", "aux2": "aux_4d"}
    return rename(state_dict, [
        (rf"(?P<name>conv[123])\.{_CONV_BN}", lambda m: _conv_bn(m, f"stem.{stem[m['name']]}")),
        (rf"(?P<module>inception\d[a-e])\.branch1\.{_CONV_BN}",
         lambda m: _conv_bn(m, f"{m['module']}.branch_1x1")),
        (rf"(?P<module>inception\d[a-e])\.branch(?P<branch>[234])\.(?P<index>\d)\.{_CONV_BN}",
         lambda m: _conv_bn(m, f"{m['module']}.{branches[m['branch']]}.{m['index']}")),
        (rf"(?P<aux>aux[12])\.conv\.{_CONV_BN}", lambda m: _conv_bn(m, f"{aux[m['aux']]}.reduce")),
        (r"(aux[12])\.fc1\.(.+)", lambda m: f"{aux[m[1]]}.hidden.{m[2]}"),
        (r"(aux[12])\.fc2\.(.+)", lambda m: f"{aux[m[1]]}.fc.{m[2]}"),
    ])


def inception_v3(state_dict: StateDict, model: nn.Module) -> StateDict:
    """torchvision keeps the TF-slim names of Google's release: ``Conv2d_1a_3x3`` … ``Conv2d_4a_3x3`` are the
    stem's conv1 … conv5; ``Mixed_5b``–``5d`` the 35×35 modules (Figure 5), ``Mixed_6a`` the first grid reduction,
    ``Mixed_6b``–``6e`` the 17×17 modules (Figure 6), ``Mixed_7a`` the second reduction and ``Mixed_7b``, ``7c``
    the 8×8 modules (Figure 7). A branch's ``_<k>`` suffix is its k-th convolution, and ``a``/``b`` the 1×3 and
    3×1 halves of an expanded filter bank. ``AuxLogits`` is the auxiliary classifier."""
    stem = {"1a_3x3": "conv1", "2a_3x3": "conv2", "2b_3x3": "conv3", "3b_1x1": "conv4", "4a_3x3": "conv5"}
    mixed = {"5b": "inception_35x35.0", "5c": "inception_35x35.1", "5d": "inception_35x35.2",
             "6a": "reduction_35_to_17", "6b": "inception_17x17.0", "6c": "inception_17x17.1",
             "6d": "inception_17x17.2", "6e": "inception_17x17.3", "7a": "reduction_17_to_8",
             "7b": "inception_8x8.0", "7c": "inception_8x8.1"}
    branches = {"branch1x1": "branch_1x1", "branch5x5": "branch_5x5", "branch3x3": "branch_3x3",
                "branch3x3dbl": "branch_3x3_double", "branch7x7": "branch_7x7", "branch7x7dbl": "branch_7x7_double",
                "branch7x7x3": "branch_7x7x3", "branch_pool": "branch_pool.1"}  # .0 is the pooling itself
    aux = {"conv0": "reduce", "conv1": "hidden"}

    def branch(m: re.Match[str]) -> str:
        name = f"{mixed[m['mixed']]}.{branches[m['branch']]}"
        if m["step"]:
            name += f".{int(m['step']) - 1}"
        if m["half"]:
            name += ".conv_1x3" if m["half"] == "a" else ".conv_3x1"
        return _conv_bn(m, name)

    return rename(state_dict, [
        (rf"Conv2d_(?P<name>\d[ab]_\dx\d)\.{_CONV_BN}", lambda m: _conv_bn(m, f"stem.{stem[m['name']]}")),
        (rf"Mixed_(?P<mixed>\d[a-e])\.(?P<branch>branch_pool|branch[0-9x]+(?:dbl)?)"
         rf"(?:_(?P<step>\d)(?P<half>[ab])?)?\.{_CONV_BN}", branch),
        (rf"AuxLogits\.(?P<name>conv[01])\.{_CONV_BN}", lambda m: _conv_bn(m, f"aux_classifier.{aux[m['name']]}")),
        (r"AuxLogits\.fc\.(.+)", r"aux_classifier.fc.\1"),
    ])


CONVERTERS = {"AlexNet": alexnet, "VGG": vgg, "ResNet": resnet, "GoogLeNet": googlenet, "InceptionV3": inception_v3}
