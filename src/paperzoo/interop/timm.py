"""Converters from timm's state_dicts, one per architecture class, in :data:`CONVERTERS`.

Each is a table of renaming rules that doubles as documentation of how the two layouts correspond.
"""

from __future__ import annotations

import re

import torch
from torch import nn

from paperzoo.interop import torchvision
from paperzoo.interop._rename import rename

StateDict = dict[str, torch.Tensor]


# --- GhostNet, MixNet, ConvNeXt V2 ----------------------------------------------------------------------------

def _conv_bn(part: str, index: str, rest: str) -> str:
    """A ``Sequential(conv, BatchNorm[, act])`` numbers its convolution 0 and its BatchNorm 1."""
    return f"{part}.{ {'0': 'conv', '1': 'norm'}[index] }.{rest}"


def ghostnet(state_dict: StateDict, model: nn.Module) -> StateDict:
    """timm groups the Ghost bottlenecks as the released code's configuration list does (``blocks.0`` …
    ``blocks.8``, several groups per resolution) and puts the 1×1 convolution to 960 channels after them as the
    last group; ours groups them by resolution (``stages.stage1`` … ``stage5``, Table 1) and calls that
    convolution ``final_conv``. The k-th bottleneck in timm's order is the k-th in ours. Inside a bottleneck,
    timm's ``conv_dw``/``bn_dw`` are our ``depthwise``, ``se.conv_reduce``/``conv_expand`` the gate's ``fc1``/``fc2``,
    ``shortcut.0 … 3`` the shortcut's depthwise and pointwise conv-BN pairs; ``conv_stem``/``bn1`` are the stem,
    ``conv_head`` is ``head_conv`` and ``classifier`` is ``fc``."""
    theirs = sorted({(int(m[1]), int(m[2])) for k in state_dict
                     if (m := re.match(r"blocks\.(\d+)\.(\d+)\.ghost1\.", k))})
    ours = [f"stages.{stage}.{j}" for stage, blocks in model.stages.named_children() for j in range(len(blocks))]
    # zip: the blocks a truncated (features_only) model does not build stay unmatched for the strict load to report.
    block_name = {f"{i}.{j}": name for (i, j), name in zip(theirs, ours, strict=False)}
    final = max((i for i, _ in theirs), default=-1) + 1

    def block(m: re.Match[str]) -> str:
        return f"{block_name[m[1]]}.{m[2]}" if m[1] in block_name else m[0]

    renamed = rename(state_dict, [
        (r"conv_stem\.weight", "stem.conv.weight"),
        (r"bn1\.(.+)", r"stem.norm.\1"),
        (rf"blocks\.{final}\.0\.conv\.weight", "final_conv.conv.weight"),
        (rf"blocks\.{final}\.0\.bn1\.(.+)", r"final_conv.norm.\1"),
        (r"blocks\.(\d+\.\d+)\.(.+)", block),
        (r"conv_head\.(weight|bias)", r"head_conv.\1"),
        (r"classifier\.(weight|bias)", r"fc.\1"),
    ])
    inside = r"(?P<block>stages\.stage\d+\.\d+)\."
    shortcut = {"0": "depthwise.conv", "1": "depthwise.norm", "2": "pointwise.conv", "3": "pointwise.norm"}
    return rename(renamed, [
        (rf"{inside}(?P<ghost>ghost[12]\.(?:primary_conv|cheap_operation))\.(?P<i>[01])\.(?P<rest>.+)",
         lambda m: f"{m['block']}.{_conv_bn(m['ghost'], m['i'], m['rest'])}"),
        (rf"{inside}conv_dw\.weight", r"\g<block>.depthwise.conv.weight"),
        (rf"{inside}bn_dw\.(.+)", r"\g<block>.depthwise.norm.\2"),
        (rf"{inside}se\.conv_reduce\.(.+)", r"\g<block>.squeeze_excite.fc1.\2"),
        (rf"{inside}se\.conv_expand\.(.+)", r"\g<block>.squeeze_excite.fc2.\2"),
        (rf"{inside}shortcut\.([0-3])\.(.+)", lambda m: f"{m['block']}.shortcut.{shortcut[m[2]]}.{m[3]}"),
    ])


def mixnet(state_dict: StateDict, model: nn.Module) -> StateDict:
    """timm's ``blocks.<i>.<j>`` is block j of our ``stages.stage<i+1>``. timm names a block's layers by type: in an
    inverted residual ``conv_pw``/``bn1`` (the 1×1 expansion), ``conv_dw``/``bn2`` (the MixConv), ``conv_pwl``/``bn3``
    (the projection); in the first block, which has no expansion (timm's depthwise-separable block), ``conv_dw``/
    ``bn1`` and ``conv_pw``/``bn2``. A layer of several groups holds one convolution per group, numbered as ours
    (``conv_dw.2.weight`` → ``mixconv.conv.convs.2.weight``); a single-group layer is a bare ``conv_dw.weight``.
    ``se.conv_reduce``/``conv_expand`` are the gate's ``fc1``/``fc2``; ``conv_stem``/``bn1``, ``conv_head``/``bn2`` and
    ``classifier`` are the stem, head_conv and fc."""
    inverted = {m[1] for k in state_dict if (m := re.match(r"blocks\.(\d+\.\d+)\.conv_pwl\.", k))}
    layers = {
        True: {"conv_pw": "expand.conv", "bn1": "expand.norm", "conv_dw": "mixconv.conv", "bn2": "mixconv.norm",
               "conv_pwl": "project.conv", "bn3": "project.norm"},
        False: {"conv_dw": "mixconv.conv", "bn1": "mixconv.norm", "conv_pw": "project.conv", "bn2": "project.norm"},
    }
    gate = {"reduce": "fc1", "expand": "fc2"}

    def block(m: re.Match[str]) -> str:
        name = layers[m["block"] in inverted].get(m["layer"])
        if name is None:  # not a layer of this block type: leave it for the strict load to report
            return m[0]
        stage, index = m["block"].split(".")
        prefix = f"stages.stage{int(stage) + 1}.{index}.{name}"
        if name.endswith(".conv"):  # a MixConv: its groups' convolutions, or the only one
            return f"{prefix}.convs.{m['group'] or '0'}.{m['rest']}"
        return f"{prefix}.{m['rest']}"

    return rename(state_dict, [
        (r"conv_stem\.weight", "stem.conv.weight"),
        (r"bn1\.(.+)", r"stem.norm.\1"),
        (r"conv_head\.weight", "head_conv.conv.weight"),
        (r"bn2\.(.+)", r"head_conv.norm.\1"),
        (r"classifier\.(weight|bias)", r"fc.\1"),
        (r"blocks\.(\d+)\.(\d+)\.se\.conv_(reduce|expand)\.(.+)",
         lambda m: f"stages.stage{int(m[1]) + 1}.{m[2]}.squeeze_excite.{gate[m[3]]}.{m[4]}"),
        (r"blocks\.(?P<block>\d+\.\d+)\.(?P<layer>conv_pwl?|conv_dw|bn[123])\.(?:(?P<group>\d+)\.)?(?P<rest>[a-z_]+)",
         block),
    ])


def convnext_v2(state_dict: StateDict, model: nn.Module) -> StateDict:
    """timm's ``stages.<i>`` is our ``stages.res<i+2>`` (its ``downsample.0``/``1`` the LayerNorm2d and the 2×2
    convolution); in a block, ``conv_dw`` is ``depthwise_conv``, ``mlp.fc1``/``fc2`` are ``expand``/``project`` and
    ``mlp.grn.weight``/``bias`` are GRN's ``gamma``/``beta`` (the paper's γ, β); ``stem.0``/``1`` are the stem's
    convolution and LayerNorm, ``head.norm``/``head.fc`` are ``head_norm``/``fc``. timm builds Atto … Nano with 1×1
    convolutions where ours (and timm's larger variants) have ``nn.Linear``: their (out, in, 1, 1) kernels are
    reshaped to (out, in) matrices, the same numbers."""
    block = r"stages\.(\d+)\.blocks\.(\d+)\."
    layers = {"conv_dw": "depthwise_conv", "norm": "norm", "mlp.fc1": "expand", "mlp.fc2": "project"}
    renamed = rename(state_dict, [
        (r"stem\.0\.(weight|bias)", r"stem.conv.\1"),
        (r"stem\.1\.(weight|bias)", r"stem.norm.\1"),
        (r"stages\.(\d+)\.downsample\.([01])\.(weight|bias)",
         lambda m: f"stages.res{int(m[1]) + 2}.downsample.{ {'0': 'norm', '1': 'conv'}[m[2]] }.{m[3]}"),
        (rf"{block}(conv_dw|norm|mlp\.fc[12])\.(weight|bias)",
         lambda m: f"stages.res{int(m[1]) + 2}.blocks.{m[2]}.{layers[m[3]]}.{m[4]}"),
        (rf"{block}mlp\.grn\.(weight|bias)",
         lambda m: f"stages.res{int(m[1]) + 2}.blocks.{m[2]}.grn.{ {'weight': 'gamma', 'bias': 'beta'}[m[3]] }"),
        (r"head\.norm\.(weight|bias)", r"head_norm.\1"),
        (r"head\.fc\.(weight|bias)", r"fc.\1"),
    ])
    return {k: v.flatten(1) if re.search(r"\.(expand|project)\.weight$", k) and v.ndim == 4 else v
            for k, v in renamed.items()}


CONVERTERS = {
    # timm's ResNet (``timm.create_model("resnet50")``, the same v1.5 network) keeps torchvision's names.
    "ResNet": torchvision.resnet,
    "GhostNet": ghostnet,
    "MixNet": mixnet,
    "ConvNeXtV2": convnext_v2,
}
