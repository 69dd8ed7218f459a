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


CONVERTERS = {"AlexNet": alexnet, "VGG": vgg, "ResNet": resnet, "VisionTransformer": vision_transformer,
              "SwinTransformer": swin_transformer}
