"""Converters from timm's state_dicts, one per architecture class, in :data:`CONVERTERS`.

Each is a table of renaming rules that doubles as documentation of how the two layouts correspond.
"""

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


# --- Darknet-53 (YOLOv3's backbone) -------------------------------------------------------------------------------

def darknet(state_dict: StateDict, model: nn.Module) -> StateDict:
    """timm's ``darknet53`` (``timm.models.cspnet.CspNet`` with "dark" stages) → ours: ``stem.conv1`` is our
    ``stem``, ``stages.<i>`` our ``stages.stage<i+1>`` with ``conv_down`` its ``downsample`` and ``blocks.<j>`` its
    ``units.<j>`` (``conv1`` the 1×1 ``reduce``, ``conv2`` the 3×3 ``expand``); every timm ``conv``/``bn`` pair is our
    ``conv``/``norm``; ``head.fc`` is ``fc``."""
    part = {"conv_down": "downsample", "conv1": "reduce", "conv2": "expand"}
    layer = {"conv": "conv", "bn": "norm"}
    return rename(state_dict, [
        (r"stem\.conv1\.(conv|bn)\.(\w+)", lambda m: f"stem.{layer[m[1]]}.{m[2]}"),
        (r"stages\.(\d)\.conv_down\.(conv|bn)\.(\w+)",
         lambda m: f"stages.stage{int(m[1]) + 1}.downsample.{layer[m[2]]}.{m[3]}"),
        (r"stages\.(\d)\.blocks\.(\d+)\.(conv[12])\.(conv|bn)\.(\w+)",
         lambda m: f"stages.stage{int(m[1]) + 1}.units.{m[2]}.{part[m[3]]}.{layer[m[4]]}.{m[5]}"),
        (r"head\.fc\.(weight|bias)", r"fc.\1"),
    ])


# timm's ResNet (``timm.create_model("resnet50")``, the same v1.5 network) keeps torchvision's names.
CONVERTERS = {
    "ResNet": torchvision.resnet,
    "HRNet": hrnet,
    "NASNet": nasnet,
    "GhostNet": ghostnet,
    "MixNet": mixnet,
    "ConvNeXtV2": convnext_v2,
    "SENet": senet,
    "ResNeSt": resnest,
    "Xception": xception,
    "Darknet": darknet,
}
