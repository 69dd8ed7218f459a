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


def convnext(state_dict: StateDict, model: nn.Module) -> StateDict:
    """torchvision's flat ``features`` interleaves [stem, stage, downsampling, stage, …, stage]: index 0 is the
    stem (``0`` its conv, ``1`` its LayerNorm2d), index 2k+1 the blocks of stage k (our ``res{k+2}``), index 2k
    (k >= 1) the downsampling layer (``0`` LayerNorm2d, ``1`` conv) that opens stage k. In a block, torchvision's
    ``block`` Sequential is [depthwise conv, permute, LayerNorm, Linear, GELU, Linear, permute];
    ``classifier`` is [LayerNorm2d, flatten, Linear]."""
    block_parts = {"0": "depthwise_conv", "2": "norm", "3": "expand", "5": "project"}

    def stage(index: str) -> str:  # features index 2k+1 (its blocks) or 2k (its downsampling) → stage k
        return f"stages.res{int(index) // 2 + 2}"

    return rename(state_dict, [
        (r"features\.0\.0\.(weight|bias)", r"stem.conv.\1"),
        (r"features\.0\.1\.(weight|bias)", r"stem.norm.\1"),
        (r"features\.(\d*[13579])\.(\d+)\.block\.([0235])\.(weight|bias)",
         lambda m: f"{stage(m[1])}.blocks.{m[2]}.{block_parts[m[3]]}.{m[4]}"),
        (r"features\.(\d*[13579])\.(\d+)\.layer_scale", lambda m: f"{stage(m[1])}.blocks.{m[2]}.layer_scale"),
        (r"features\.(\d*[02468])\.0\.(weight|bias)", lambda m: f"{stage(m[1])}.downsample.norm.{m[2]}"),
        (r"features\.(\d*[02468])\.1\.(weight|bias)", lambda m: f"{stage(m[1])}.downsample.conv.{m[2]}"),
        (r"classifier\.0\.(weight|bias)", r"head_norm.\1"),
        (r"classifier\.2\.(weight|bias)", r"fc.\1"),
    ])


def shufflenet_v2(state_dict: StateDict, model: nn.Module) -> StateDict:
    """torchvision's ``stage<k>`` are our ``stages.stage<k>``; its ``branch1`` (down-sampling units only) is
    Figure 3d's left branch, ``branch2`` the right one; the indices inside a branch name its layers."""
    left = {"0": "depthwise.conv", "1": "depthwise.norm", "2": "pointwise.conv", "3": "pointwise.norm"}
    right = {"0": "pointwise1.conv", "1": "pointwise1.norm", "3": "depthwise.conv", "4": "depthwise.norm",
             "5": "pointwise2.conv", "6": "pointwise2.norm"}  # index 2 is a ReLU

    def unit(m: re.Match[str]) -> str:
        branch, layers = ("left_branch", left) if m["branch"] == "1" else ("right_branch", right)
        if m["index"] not in layers:  # not a layer with weights: leave it for the strict load to report
            return m[0]
        return f"stages.stage{m['stage']}.{m['unit']}.{branch}.{layers[m['index']]}.{m['param']}"

    return rename(state_dict, [
        (r"(conv1|conv5)\.0\.weight", r"\1.conv.weight"),
        (r"(conv1|conv5)\.1\.(.+)", r"\1.norm.\2"),
        (r"stage(?P<stage>\d)\.(?P<unit>\d+)\.branch(?P<branch>[12])\.(?P<index>\d)\.(?P<param>.+)", unit),
    ])


def densenet(state_dict: StateDict, model: nn.Module) -> StateDict:
    """torchvision's ``features`` holds everything but the classifier. Inside a dense layer, ``norm1``,
    ``conv1`` are the 1×1 bottleneck's BN and convolution, ``norm2``, ``conv2`` the 3×3's; ``norm5`` is
    ``final_norm``'s BN; ``classifier`` is ``fc``. The released ImageNet checkpoints spell the dense-layer
    names with a dot (``norm.1``), which torchvision itself renames on loading; both spellings are read."""
    layer = r"features\.denseblock(\d+)\.denselayer(\d+)\."
    part = {"1": "bottleneck", "2": "conv3x3"}
    return rename(state_dict, [
        (r"features\.conv0\.weight", "conv0.conv.weight"),
        (r"features\.norm0\.(.+)", r"conv0.norm.\1"),
        (rf"{layer}(norm|conv)\.?([12])\.(.+)",
         lambda m: f"blocks.dense_block{m[1]}.layer{m[2]}.{part[m[4]]}.{m[3]}.{m[5]}"),
        (r"features\.transition(\d+)\.(norm|conv)\.(.+)", r"blocks.transition\1.compress.\2.\3"),
        (r"features\.norm5\.(.+)", r"final_norm.norm.\1"),
        (r"classifier\.(weight|bias)", r"fc.\1"),
    ])


def squeezenet(state_dict: StateDict, model: nn.Module) -> StateDict:
    """torchvision numbers the layers of ``features`` (convolutions, ReLUs and pools alike); its k-th Fire
    module is our k-th (``fire2`` … ``fire9``), its first convolution ``conv1``, and ``classifier.1`` is
    ``conv10``. Inside a Fire module the names are the same, ours one level deeper (``squeeze.conv``)."""
    theirs = sorted({int(k.split(".")[1]) for k in state_dict if re.fullmatch(r"features\.\d+\.squeeze\.weight", k)})
    ours = [k.removesuffix(".squeeze.conv.weight") for k in model.state_dict() if k.endswith(".squeeze.conv.weight")]
    if len(theirs) != len(ours):
        raise ValueError(f"torchvision SqueezeNet has {len(theirs)} Fire modules, the model {len(ours)}")
    rules = [(rf"features\.{index}\.(squeeze|expand1x1|expand3x3)\.(weight|bias)", rf"{name}.\1.conv.\2")
             for index, name in zip(theirs, ours, strict=True)]
    rules += [(r"features\.0\.(weight|bias)", r"features.conv1.conv.\1"),
              (r"classifier\.1\.(weight|bias)", r"conv10.conv.\1")]
    return rename(state_dict, rules)


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


def vision_transformer(state_dict: StateDict, model: nn.Module) -> StateDict:
    """torchvision's ``conv_proj`` is the patch embedding E; ``encoder.layers.encoder_layer_<i>`` is encoder block
    i, whose ``ln_1``/``ln_2`` are norm1/norm2, whose ``nn.MultiheadAttention`` keeps the packed projection as
    ``in_proj_*`` (our ``qkv``) and W_O as ``out_proj`` (our ``proj``), and whose MLP layers are ``mlp.0``/``mlp.3``;
    ``heads.pre_logits`` is the pre-training head's hidden layer. Position embeddings learned for another
    image size are resampled to the model's grid, as torchvision's ``interpolate_embeddings`` does."""
    block = r"encoder\.layers\.encoder_layer_(\d+)"
    converted = rename(state_dict, [
        (r"conv_proj\.(weight|bias)", r"patch_embed.projection.\1"),
        (r"encoder\.pos_embedding", "position_embedding"),
        (rf"{block}\.ln_(\d)\.(weight|bias)", r"encoder.\1.norm\2.\3"),
        (rf"{block}\.self_attention\.in_proj_(weight|bias)", r"encoder.\1.attention.qkv.\2"),
        (rf"{block}\.self_attention\.out_proj\.(weight|bias)", r"encoder.\1.attention.proj.\2"),
        (rf"{block}\.mlp\.0\.(weight|bias)", r"encoder.\1.mlp.fc1.\2"),
        (rf"{block}\.mlp\.3\.(weight|bias)", r"encoder.\1.mlp.fc2.\2"),
        (r"encoder\.ln\.(weight|bias)", r"norm.\1"),
        (r"heads\.pre_logits\.(weight|bias)", r"representation.fc.\1"),
        (r"heads\.head\.(weight|bias)", r"head.\1"),
    ])
    position = converted.get("position_embedding")
    if position is not None and position.shape != model.position_embedding.shape:
        converted["position_embedding"] = model.resample_position_embedding(position)
    return converted


def swin_transformer(state_dict: StateDict, model: nn.Module) -> StateDict:
    """torchvision's ``features`` interleaves the stages and the patch merging layers: ``features.0`` is the patch
    embedding (conv, permute, norm), ``features.1/3/5/7`` the blocks of stages 1-4 and ``features.2/4/6`` the patch
    merging that opens stages 2-4. In a block, ``attn.qkv``/``attn.proj`` are the attention's projections and
    ``mlp.0``/``mlp.3`` its MLP's layers."""
    def stage(index: str) -> str:
        return f"stages.stage{int(index) // 2 + 1}"

    return rename(state_dict, [
        (r"features\.0\.0\.(weight|bias)", r"patch_embed.projection.\1"),
        (r"features\.0\.2\.(weight|bias)", r"patch_embed.norm.\1"),
        (r"features\.([246])\.(norm|reduction)\.(.+)", lambda m: f"{stage(m[1])}.patch_merging.{m[2]}.{m[3]}"),
        (r"features\.([1357])\.(\d+)\.attn\.(qkv|proj)\.(.+)",
         lambda m: f"{stage(m[1])}.blocks.{m[2]}.attn.attention.{m[3]}.{m[4]}"),
        (r"features\.([1357])\.(\d+)\.mlp\.0\.(.+)", lambda m: f"{stage(m[1])}.blocks.{m[2]}.mlp.fc1.{m[3]}"),
        (r"features\.([1357])\.(\d+)\.mlp\.3\.(.+)", lambda m: f"{stage(m[1])}.blocks.{m[2]}.mlp.fc2.{m[3]}"),
        (r"features\.([1357])\.(\d+)\.(.+)", lambda m: f"{stage(m[1])}.blocks.{m[2]}.{m[3]}"),  # norms, B̂, index
    ])


def _segmentation_backbone(state_dict: StateDict, model: nn.Module) -> StateDict:
    """torchvision's segmentation models keep the ResNet's own names under ``backbone.`` (its
    ``IntermediateLayerGetter`` drops only the pool and fc): the ResNet rules apply inside the prefix."""
    inner = {k.removeprefix("backbone."): v for k, v in state_dict.items() if k.startswith("backbone.")}
    renamed = {f"backbone.{k}": v for k, v in resnet(inner, model.backbone).items()}
    renamed.update((k, v) for k, v in state_dict.items() if not k.startswith("backbone."))
    return renamed


def _fcn_head_rules(theirs: str, ours: str) -> list[tuple[str, str]]:
    """torchvision's ``FCNHead`` is a flat Sequential [conv, BN, ReLU, dropout, conv]: indices 0, 1 are our
    ``conv`` (a ConvNormAct), index 4 our ``classifier``."""
    return [(rf"{theirs}\.0\.weight", rf"{ours}.conv.conv.weight"),
            (rf"{theirs}\.1\.(.+)", rf"{ours}.conv.norm.\1"),
            (rf"{theirs}\.4\.(weight|bias)", rf"{ours}.classifier.\1")]


def fcn_resnet(state_dict: StateDict, model: nn.Module) -> StateDict:
    """torchvision's FCN: ``classifier`` and ``aux_classifier`` (FCN heads) are our ``head`` and ``aux_head``."""
    return rename(_segmentation_backbone(state_dict, model),
                  _fcn_head_rules("classifier", "head") + _fcn_head_rules("aux_classifier", "aux_head"))


def deeplabv3(state_dict: StateDict, model: nn.Module) -> StateDict:
    """torchvision's DeepLabV3: ``classifier`` is [ASPP, conv, BN, ReLU, conv] (our ``head``: ``aspp``, ``conv``,
    ``classifier``). In ASPP, ``convs.0`` is the 1×1 branch, ``convs.1`` … ``convs.<r>`` the atrous branches
    (each [conv, BN, ReLU]), the last ``convs`` entry the image pooling ([pool, conv, BN, ReLU]); ``project.0``,
    ``project.1`` the projection's conv and BN."""
    pooling = len(model.head.aspp.atrous) + 1
    aspp = r"classifier\.0\.convs"

    def branch(m: re.Match[str]) -> str:
        index = int(m["branch"])
        if index == 0:
            name = "conv1x1"
        elif index < pooling:
            name = f"atrous.{index - 1}"
        else:
            name = "image_pooling.conv"
        layer = int(m["layer"]) - (index == pooling)  # the pooling branch starts with the pool itself
        return f"head.aspp.{name}.{'conv' if layer == 0 else 'norm'}.{m['rest']}"

    return rename(_segmentation_backbone(state_dict, model), [
        (rf"{aspp}\.(?P<branch>\d+)\.(?P<layer>\d)\.(?P<rest>.+)", branch),
        (r"classifier\.0\.project\.0\.weight", "head.aspp.project.conv.weight"),
        (r"classifier\.0\.project\.1\.(.+)", r"head.aspp.project.norm.\1"),
        (r"classifier\.1\.weight", "head.conv.conv.weight"),
        (r"classifier\.2\.(.+)", r"head.conv.norm.\1"),
        (r"classifier\.4\.(weight|bias)", r"head.classifier.\1"),
        *_fcn_head_rules("aux_classifier", "aux_head"),
    ])


# --- detection (issue 7): the shared ResNet-FPN backbone ----------------------------------------------------

def resnet_fpn_backbone(state_dict: StateDict, model: nn.Module) -> StateDict:
    """torchvision's ``BackboneWithFPN`` → our :class:`ResNetFPNBackbone`, under any prefix (a detector's
    ``backbone.``), so that each detector's converter can apply it first and rename only its heads:
    ``<prefix>body.<resnet key>`` follows :func:`resnet`'s rules; the FPN's ``inner_blocks.<i>.0`` (1×1 lateral
    convolutions) are our ``lateral_convs.<i>`` and ``layer_blocks.<i>.0`` (3×3 output convolutions) our
    ``output_convs.<i>``; ``extra_blocks.p6``/``p7`` keep their names. A ``num_batches_tracked`` that the model
    does not hold (torchvision's builders keep ``nn.BatchNorm2d`` without pretrained weights; our backbone's
    BatchNorms are frozen) is dropped."""
    renamed: StateDict = {}
    for key, value in state_dict.items():
        match = re.fullmatch(r"(?P<prefix>(?:.*\.)?)body\.(?P<rest>.+)", key)
        if match:
            (inner,) = resnet({match["rest"]: value}, model).keys()
            key = f"{match['prefix']}body.{inner}"
        else:
            key = rename({key: value}, [
                (r"(.*\.)?fpn\.inner_blocks\.(\d+)\.0\.(weight|bias)", r"\1fpn.lateral_convs.\2.\3"),
                (r"(.*\.)?fpn\.layer_blocks\.(\d+)\.0\.(weight|bias)", r"\1fpn.output_convs.\2.\3"),
            ]).popitem()[0]
        renamed[key] = value
    own = model.state_dict().keys()
    return {k: v for k, v in renamed.items() if not (k.endswith("num_batches_tracked") and k not in own)}


def ssd(state_dict: StateDict, model: nn.Module) -> StateDict:
    """torchvision's ``SSDFeatureExtractorVGG``: ``backbone.features`` is VGG16's flat list up to conv4_3 (its k-th
    convolution is our k-th under ``to_conv4_3``), ``scale_weight`` the L2Norm's scale; ``extra.0`` is [pool4,
    conv5_1, ReLU, conv5_2, ReLU, conv5_3, ReLU, [pool5, fc6, ReLU, fc7, ReLU]] (our ``to_fc7``); ``extra.<i>``
    (i >= 1) is [1×1 conv, ReLU, conv, ReLU]: the paper's conv<i+7>_1 and conv<i+7>_2. The head's
    ``classification_head`` and ``regression_head`` are our ``confidence`` and ``location`` predictors."""
    theirs = sorted({int(k.split(".")[2]) for k, v in state_dict.items()
                     if k.startswith("backbone.features.") and k.endswith(".weight") and v.ndim == 4})
    ours = [k.removesuffix(".conv.weight") for k in model.state_dict()
            if k.startswith("backbone.to_conv4_3.") and k.endswith(".conv.weight")]
    if len(theirs) != len(ours):
        raise ValueError(f"torchvision's SSD has {len(theirs)} convolutions up to conv4_3, the model {len(ours)}")
    rules: list = [(rf"backbone\.features\.{index}\.(weight|bias)", rf"{name}.conv.\1")
                   for index, name in zip(theirs, ours, strict=True)]
    fc7_stage = {"1": "conv5_1", "3": "conv5_2", "5": "conv5_3", "7.1": "fc6", "7.3": "fc7"}
    rules += [
        (r"backbone\.scale_weight", "backbone.conv4_3_norm.scale"),
        (r"backbone\.extra\.0\.(1|3|5|7\.1|7\.3)\.(weight|bias)",
         lambda m: f"backbone.to_fc7.{fc7_stage[m[1]]}.conv.{m[2]}"),
        (r"backbone\.extra\.(\d+)\.([02])\.(weight|bias)",
         lambda m: f"backbone.extras.conv{int(m[1]) + 7}.conv{int(m[1]) + 7}_{int(m[2]) // 2 + 1}.conv.{m[3]}"),
        (r"head\.classification_head\.module_list\.(\d+)\.(weight|bias)", r"head.confidence.\1.\2"),
        (r"head\.regression_head\.module_list\.(\d+)\.(weight|bias)", r"head.location.\1.\2"),
    ]
    return rename(state_dict, rules)
# --- RetinaNet (issue 7) ----------------------------------------------------------------------------------

def retinanet(state_dict: StateDict, model: nn.Module) -> StateDict:
    """torchvision's ``RetinaNet`` → ours: the backbone by :func:`resnet_fpn_backbone` (``backbone.`` prefix;
    ``extra_blocks.p6``/``p7`` keep their names), and the heads by the paper's names:
    ``head.classification_head`` is our ``classification_subnet`` (``conv.<i>.0`` → ``tower.<i>.conv``,
    ``cls_logits`` → ``class_logits``), ``head.regression_head`` our ``box_subnet`` (``conv.<i>.0`` →
    ``tower.<i>.conv``, ``bbox_reg`` → ``box_deltas``)."""
    heads = rename(state_dict, [
        (r"head\.classification_head\.conv\.(\d+)\.0\.(weight|bias)", r"classification_subnet.tower.\1.conv.\2"),
        (r"head\.classification_head\.cls_logits\.(weight|bias)", r"classification_subnet.class_logits.\1"),
        (r"head\.regression_head\.conv\.(\d+)\.0\.(weight|bias)", r"box_subnet.tower.\1.conv.\2"),
        (r"head\.regression_head\.bbox_reg\.(weight|bias)", r"box_subnet.box_deltas.\1"),
    ])
    return resnet_fpn_backbone(heads, model)

# --- detection (issue 7): Faster R-CNN and Mask R-CNN ----------------------------------------------------

_RCNN_RULES = [
    (r"rpn\.head\.conv\.0\.0\.(weight|bias)", r"rpn.head.conv.\1"),  # Conv2dNormActivation without norm: a conv
    (r"rpn\.head\.cls_logits\.(weight|bias)", r"rpn.head.objectness.\1"),
    (r"rpn\.head\.bbox_pred\.(weight|bias)", r"rpn.head.anchor_deltas.\1"),
    (r"roi_heads\.box_predictor\.cls_score\.(weight|bias)", r"roi_heads.box_predictor.class_logits.\1"),
    (r"roi_heads\.box_predictor\.bbox_pred\.(weight|bias)", r"roi_heads.box_predictor.box_deltas.\1"),
]


def faster_rcnn(state_dict: StateDict, model: nn.Module) -> StateDict:
    """torchvision's ``FasterRCNN`` → our :class:`FasterRCNN`: the backbone by :func:`resnet_fpn_backbone`; the RPN
    head's ``conv.0.0`` (a Conv2dNormActivation holding only a conv), ``cls_logits`` and ``bbox_pred`` are our
    ``conv``, ``objectness`` and ``anchor_deltas``; the box predictor's ``cls_score`` and ``bbox_pred`` our
    ``class_logits`` and ``box_deltas``; ``roi_heads.box_head.fc6``/``fc7`` keep their names."""
    return rename(resnet_fpn_backbone(state_dict, model), _RCNN_RULES)


def mask_rcnn(state_dict: StateDict, model: nn.Module) -> StateDict:
    """torchvision's ``MaskRCNN`` → our :class:`MaskRCNN`: :func:`faster_rcnn`'s rules, and the mask branch, which
    torchvision keeps inside ``roi_heads`` and we as ``mask_head``: ``mask_head.<i>.0`` (four 3×3 convolutions) are
    our ``mask_head.convs.<i>``, ``mask_predictor.conv5_mask`` (the 2×2 deconvolution) our ``mask_head.deconv``,
    ``mask_predictor.mask_fcn_logits`` (1×1, a mask per class) our ``mask_head.mask_logits``."""
    return rename(resnet_fpn_backbone(state_dict, model), _RCNN_RULES + [
        (r"roi_heads\.mask_head\.(\d+)\.0\.(weight|bias)", r"mask_head.convs.\1.\2"),
        (r"roi_heads\.mask_predictor\.conv5_mask\.(weight|bias)", r"mask_head.deconv.\1"),
        (r"roi_heads\.mask_predictor\.mask_fcn_logits\.(weight|bias)", r"mask_head.mask_logits.\1"),
    ])

CONVERTERS = {
    "AlexNet": alexnet,
    "VGG": vgg,
    "ResNet": resnet,
    "ConvNeXt": convnext,
    "ShuffleNetV2": shufflenet_v2,
    "DenseNet": densenet,
    "SqueezeNet": squeezenet,
    "ResNeXt": resnet,
    "RegNet": regnet,
    "MobileNetV2": mobilenet_v2,
    "EfficientNet": efficientnet,
    "EfficientNetV2": efficientnet,
    "GoogLeNet": googlenet,
    "InceptionV3": inception_v3,
    "VisionTransformer": vision_transformer,
    "SwinTransformer": swin_transformer,
    "FCNResNet": fcn_resnet,
    "DeepLabV3": deeplabv3,
    "ResNetFPNBackbone": resnet_fpn_backbone,
    "SSD": ssd,
    "RetinaNet": retinanet,
    "FasterRCNN": faster_rcnn,
    "MaskRCNN": mask_rcnn,
}
