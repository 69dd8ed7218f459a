"""Converters from timm's state_dicts, one per architecture class, in :data:`CONVERTERS`."""

from __future__ import annotations

import re

import torch
from torch import nn

from paperzoo.interop import torchvision
from paperzoo.interop._rename import rename

StateDict = dict[str, torch.Tensor]


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
    "NASNet": nasnet,
}
