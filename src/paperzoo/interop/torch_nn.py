"""Converters from ``torch.nn``'s own state_dicts, for the classes whose names differ from torch.nn's.

Most of our layers keep torch.nn's parameter names, so ``source="torch"`` loads their state_dicts as they are;
a class listed in :data:`CONVERTERS` is renamed first. Each converter is a table of renaming rules that doubles
as documentation of how the two layouts correspond.
"""

from __future__ import annotations

import torch
from torch import nn

from paperzoo.interop._rename import rename

StateDict = dict[str, torch.Tensor]


def transformer_layers(state_dict: StateDict, model: nn.Module) -> StateDict:
    """``nn.TransformerEncoderLayer``/``DecoderLayer`` (and ``nn.TransformerEncoder``/``Decoder`` stacks of them,
    ``layers.<i>.``) → the Transformer's layers, named after the paper's sub-layers.

    ``self_attn`` is the (masked) multi-head self-attention, ``multihead_attn`` the encoder-decoder attention;
    their packed ``in_proj_weight``/``in_proj_bias`` (rows ordered query, key, value) are our ``qkv``, their
    ``out_proj`` our ``proj`` (W_O). ``linear1``/``linear2`` are the position-wise feed-forward network's two
    layers (W_1, W_2 of eq. 2); ``norm1``…``norm3`` keep their names. A stack's final ``norm`` has no
    counterpart: the paper's post-norm layers end in a LayerNorm already, so it stays unexpected and the strict
    load reports it.
    """
    attention = {"self_attn": "self_attention", "multihead_attn": "cross_attention"}
    return rename(state_dict, [
        (r"(.*?)(self_attn|multihead_attn)\.in_proj_(weight|bias)",
         lambda m: f"{m[1]}{attention[m[2]]}.qkv.{m[3]}"),
        (r"(.*?)(self_attn|multihead_attn)\.out_proj\.(weight|bias)",
         lambda m: f"{m[1]}{attention[m[2]]}.proj.{m[3]}"),
        (r"(.*?)linear([12])\.(weight|bias)", r"\1feed_forward.fc\2.\3"),
    ])


# The Transformer's blocks (paperzoo.models.language.transformer), and the whole model for a state_dict that
# holds its layers under torch.nn's names (``encoder.layers.<i>.self_attn...``) beside ``embedding.weight``.
CONVERTERS = {
    "TransformerEncoderLayer": transformer_layers,
    "TransformerDecoderLayer": transformer_layers,
    "TransformerEncoder": transformer_layers,
    "TransformerDecoder": transformer_layers,
    "Transformer": transformer_layers,
}
