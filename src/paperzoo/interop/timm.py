"""Converters from timm's state_dicts, one per architecture class, in :data:`CONVERTERS`."""

from __future__ import annotations

import torch
from torch import nn

from paperzoo.interop import torchvision
from paperzoo.interop._rename import Rule, rename

StateDict = dict[str, torch.Tensor]


# --- HRNet ---------------------------------------------------------------------------------------------------------

def _hrnet_block(prefix: str) -> list[Rule]:
    """A residual unit under ``prefix`` (a regex): timm's ``conv<k>``/``bn<k>`` are our ``conv<k>.conv``/``.norm``,
    its ``downsample.0``/``.1`` our ``shortcut.conv``/``.norm``."""
    return [
        (rf"({prefix})\.conv(\d)\.weight", r"\1.conv\2.conv.weight"),
        (rf"({prefix})\.bn(\d)\.(\w+)", r"\1.conv\2.norm.\3"),
        (rf"({prefix})\.downsample\.0\.weight", r"\1.shortcut.conv.weight"),
        (rf"({prefix})\.downsample\.1\.(\w+)", r"\1.shortcut.norm.\2"),
    ]


def hrnet(state_dict: StateDict, model: nn.Module) -> StateDict:
    """timm's (the authors' released) HRNet names → ours.

    ``conv1``/``bn1``, ``conv2``/``bn2`` are the stem; ``layer1`` is stage 1; ``transition<t>`` opens stage t + 1
    (``<i>.0``/``.1`` adapts stream i's width, ``<i>.0.0``/``.0.1`` is the strided convolution of a new stream);
    ``stage<s>.<m>.branches.<i>`` are the streams of module m, ``stage<s>.<m>.fuse_layers.<k>.<i>`` is a(X_i, k):
    ``.0``/``.1`` the 1×1 convolution and BatchNorm of an upsampling path, ``.<step>.0``/``.<step>.1`` the strided
    convolutions of a downsampling path. ``incre_modules.<k>.0`` is "increase" bottleneck k, ``downsamp_modules``
    and ``final_layer`` merge them, ``classifier`` is ``fc``. timm's feature extractor (``features_only=True``) has
    the same names without the merging layers and the classifier.
    """
    stage = r"stage(\d)\.(\d+)"
    rules: list[Rule] = [
        (r"conv([12])\.weight", r"stem.conv\1.conv.weight"),
        (r"bn([12])\.(\w+)", r"stem.conv\1.norm.\2"),
        (r"layer1\.(\d+)\.(.+)", r"stage1.\1.\2"),
        (r"transition(\d)\.(\d)\.0\.0\.weight", lambda m: f"stage{int(m[1]) + 1}.transition.{m[2]}.conv.weight"),
        (r"transition(\d)\.(\d)\.0\.1\.(\w+)", lambda m: f"stage{int(m[1]) + 1}.transition.{m[2]}.norm.{m[3]}"),
        (r"transition(\d)\.(\d)\.0\.weight", lambda m: f"stage{int(m[1]) + 1}.transition.{m[2]}.conv.weight"),
        (r"transition(\d)\.(\d)\.1\.(\w+)", lambda m: f"stage{int(m[1]) + 1}.transition.{m[2]}.norm.{m[3]}"),
        (rf"{stage}\.branches\.(.+)", r"stage\1.hr_modules.\2.streams.\3"),
        (rf"{stage}\.fuse_layers\.(\d)\.(\d)\.0\.weight",
         r"stage\1.hr_modules.\2.fusion.resample.\3.\4.align.conv.weight"),
        (rf"{stage}\.fuse_layers\.(\d)\.(\d)\.1\.(\w+)",
         r"stage\1.hr_modules.\2.fusion.resample.\3.\4.align.norm.\5"),
        (rf"{stage}\.fuse_layers\.(\d)\.(\d)\.(\d)\.0\.weight",
         r"stage\1.hr_modules.\2.fusion.resample.\3.\4.\5.conv.weight"),
        (rf"{stage}\.fuse_layers\.(\d)\.(\d)\.(\d)\.1\.(\w+)",
         r"stage\1.hr_modules.\2.fusion.resample.\3.\4.\5.norm.\6"),
        (r"incre_modules\.(\d)\.0\.(.+)", r"increase.\1.\2"),
        (r"downsamp_modules\.(\d)\.0\.(weight|bias)", r"downsample.\1.conv.\2"),
        (r"downsamp_modules\.(\d)\.1\.(\w+)", r"downsample.\1.norm.\2"),
        (r"final_layer\.0\.(weight|bias)", r"final_layer.conv.\1"),
        (r"final_layer\.1\.(\w+)", r"final_layer.norm.\1"),
        (r"classifier\.(weight|bias)", r"fc.\1"),
    ]
    # Blocks are renamed in a second pass, once their prefix is ours.
    renamed = rename(state_dict, rules)
    block = r"stage1\.\d+|stage\d\.hr_modules\.\d+\.streams\.\d\.\d+|increase\.\d"
    return rename(renamed, _hrnet_block(block))


# timm's ResNet (``timm.create_model("resnet50")``, the same v1.5 network) keeps torchvision's names.
CONVERTERS = {
    "ResNet": torchvision.resnet,
    # HRNet (issue 4)
    "HRNet": hrnet,
}
