"""Converters from timm's state_dicts, one per architecture class, in :data:`CONVERTERS`."""

from __future__ import annotations

import re

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
def nasnet(state_dict: StateDict, model: nn.Module) -> StateDict:
    """timm's ``nasnetalarge`` (Cadene's port of TF-slim) names its cells ``cell_stem_0/1``, ``cell_<k>`` (the
    k-th normal cell) and ``reduction_cell_<j>``; ours are one list ``cells`` in running order, so normal cell k
    of stage k // N sits at k + 2 + k // N and reduction cell j at 2 + (j + 1)·N + j. In a cell, ``conv_1x1``
    adapts h_i (our ``adapt_current``); ``conv_prev_1x1``, or the factorized reduction's ``path_1``, ``path_2``
    and ``final_path_bn``, adapt h_{i−1} (``adapt_previous``); ``comb_iter_<b>_<left|right>`` is block b's
    branch, its ``separable_<i>`` / ``bn_sep_<i>`` our ``sep<i>`` / ``norm<i>``."""
    n = model.cells_per_stage

    def cell(m: re.Match[str]) -> str:
        kind, index = m["kind"], int(m["index"])
        if kind == "cell_stem_":
            return f"cells.{index}"
        if kind == "cell_":
            return f"cells.{index + 2 + index // n}"
        return f"cells.{2 + (index + 1) * n + index}"  # reduction_cell_

    prefix = r"(?P<kind>cell_stem_|cell_|reduction_cell_)(?P<index>\d+)"
    parts = {"conv": "conv", "bn": "norm"}
    return rename(state_dict, [
        (r"conv0\.conv\.weight", "stem.conv.weight"),
        (r"conv0\.bn\.(.+)", r"stem.norm.\1"),
        (rf"{prefix}\.conv_1x1\.(conv|bn)\.(.+)", lambda m: f"{cell(m)}.adapt_current.{parts[m[3]]}.{m[4]}"),
        (rf"{prefix}\.conv_prev_1x1\.(conv|bn)\.(.+)", lambda m: f"{cell(m)}.adapt_previous.{parts[m[3]]}.{m[4]}"),
        (rf"{prefix}\.path_([12])\.conv\.weight", lambda m: f"{cell(m)}.adapt_previous.path{m[3]}.weight"),
        (rf"{prefix}\.final_path_bn\.(.+)", lambda m: f"{cell(m)}.adapt_previous.norm.{m[3]}"),
        (rf"{prefix}\.comb_iter_(\d)_(left|right)\.separable_([12])\.(depthwise|pointwise)_conv2d\.weight",
         lambda m: f"{cell(m)}.blocks.{m[3]}.{m[4]}.sep{m[5]}.{m[6]}.weight"),
        (rf"{prefix}\.comb_iter_(\d)_(left|right)\.bn_sep_([12])\.(.+)",
         lambda m: f"{cell(m)}.blocks.{m[3]}.{m[4]}.norm{m[5]}.{m[6]}"),
        (r"last_linear\.(.+)", r"fc.\1"),
    ])


# timm's ResNet (``timm.create_model("resnet50")``, the same v1.5 network) keeps torchvision's names.
CONVERTERS = {
    "ResNet": torchvision.resnet,
    "HRNet": hrnet,
    "NASNet": nasnet,
}
