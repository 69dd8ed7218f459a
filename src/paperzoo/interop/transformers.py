"""Converters from transformers' (Hugging Face) state_dicts, one per architecture class, in :data:`CONVERTERS`.

Each is a set of renaming rules plus the few tensor changes a rename cannot express, documented where they
happen.
"""

from __future__ import annotations

import re

import torch
from torch import nn

from paperzoo.interop._rename import rename

StateDict = dict[str, torch.Tensor]

# --- wav2vec 2.0 ----------------------------------------------------------------------------------------
#
# transformers' ``Wav2Vec2Model`` → our ``Wav2Vec2``; ``Wav2Vec2ForPreTraining`` → ``Wav2Vec2PreTraining``.
#
# * The attention keeps separate ``q_proj``, ``k_proj``, ``v_proj`` layers; ours packs them into one ``qkv``
#   layer: the three weights (and biases) are concatenated along the output dimension, in that order.
# * The positional convolution is weight-normalised. transformers wraps it with
#   ``torch.nn.utils.parametrizations.weight_norm`` when torch has it (keys
#   ``conv.parametrizations.weight.original0`` = g and ``original1`` = v) and with the older
#   ``torch.nn.utils.weight_norm`` otherwise (``conv.weight_g``, ``conv.weight_v``); checkpoints saved under
#   either spelling exist, and both are read. Both hold g with shape (1, 1, kernel) (``dim=2``: one magnitude
#   per kernel tap) and v with the kernel's shape, which are our ``weight_g`` and ``weight_v``.
# * transformers' ``encoder.layer_norm`` is the LayerNorm after the position embedding in the post-LN
#   Transformer (our ``input_norm``) and the final one in the pre-LN ("stable layer norm") Transformer (our
#   ``output_norm``): the model says which (``layer_norm_first``).
# * The quantiser's codebooks ``quantizer.codevectors`` are stored as (1, G·V, d/G); ours are (G, V, d/G).
# * ``masked_spec_embed`` exists in transformers only when the config masks (``mask_time_prob > 0``, the
#   default); our model always has its mask embedding.

_WAV2VEC2_RULES = [
    (r"masked_spec_embed", "mask_embedding"),
    (r"feature_extractor\.conv_layers\.(\d+)\.conv\.(weight|bias)", r"feature_encoder.blocks.\1.conv.\2"),
    (r"feature_extractor\.conv_layers\.(\d+)\.layer_norm\.(weight|bias)", r"feature_encoder.blocks.\1.norm.\2"),
    (r"feature_projection\.layer_norm\.(weight|bias)", r"feature_projection.norm.\1"),
    (r"feature_projection\.projection\.(weight|bias)", r"feature_projection.projection.\1"),
    (r"encoder\.pos_conv_embed\.conv\.(weight_g|parametrizations\.weight\.original0)",
     "context_network.position_embedding.weight_g"),
    (r"encoder\.pos_conv_embed\.conv\.(weight_v|parametrizations\.weight\.original1)",
     "context_network.position_embedding.weight_v"),
    (r"encoder\.pos_conv_embed\.conv\.bias", "context_network.position_embedding.bias"),
    (r"encoder\.layers\.(\d+)\.attention\.qkv\.(weight|bias)", r"context_network.layers.\1.attention.qkv.\2"),
    (r"encoder\.layers\.(\d+)\.attention\.out_proj\.(weight|bias)", r"context_network.layers.\1.attention.proj.\2"),
    (r"encoder\.layers\.(\d+)\.layer_norm\.(weight|bias)", r"context_network.layers.\1.attention_norm.\2"),
    (r"encoder\.layers\.(\d+)\.feed_forward\.intermediate_dense\.(weight|bias)",
     r"context_network.layers.\1.feed_forward.fc1.\2"),
    (r"encoder\.layers\.(\d+)\.feed_forward\.output_dense\.(weight|bias)",
     r"context_network.layers.\1.feed_forward.fc2.\2"),
    (r"encoder\.layers\.(\d+)\.final_layer_norm\.(weight|bias)", r"context_network.layers.\1.feed_forward_norm.\2"),
]


def _pack_wav2vec2_qkv(state_dict: StateDict) -> StateDict:
    """Concatenate ``...attention.{q,k,v}_proj.{weight,bias}`` into ``...attention.qkv.{weight,bias}``."""
    pattern = re.compile(r"(.*encoder\.layers\.\d+\.attention)\.([qkv])_proj\.(weight|bias)")
    parts: dict[tuple[str, str], dict[str, torch.Tensor]] = {}
    packed: StateDict = {}
    for key, value in state_dict.items():
        match = pattern.fullmatch(key)
        if match:
            parts.setdefault((match[1], match[3]), {})[match[2]] = value
        else:
            packed[key] = value
    for (module, kind), projections in parts.items():
        if set(projections) != {"q", "k", "v"}:  # incomplete: keep them, the strict load names them
            packed.update({f"{module}.{p}_proj.{kind}": t for p, t in projections.items()})
            continue
        packed[f"{module}.qkv.{kind}"] = torch.cat([projections["q"], projections["k"], projections["v"]])
    return packed


def _wav2vec2_rules(prefix: str, layer_norm_first: bool) -> list[tuple[str, str]]:
    """The renaming rules for a ``Wav2Vec2Model`` whose keys start with ``prefix`` (``""`` or ``"wav2vec2."``)."""
    final = "output_norm" if layer_norm_first else "input_norm"
    rules = _WAV2VEC2_RULES + [(r"encoder\.layer_norm\.(weight|bias)", rf"context_network.{final}.\1")]
    return [(re.escape(prefix) + pattern, prefix + replacement) for pattern, replacement in rules]


def wav2vec2(state_dict: StateDict, model: nn.Module) -> StateDict:
    """transformers' ``Wav2Vec2Model`` → :class:`paperzoo.models.audio.wav2vec2.Wav2Vec2`."""
    return rename(_pack_wav2vec2_qkv(state_dict), _wav2vec2_rules("", model.layer_norm_first))


def wav2vec2_pretraining(state_dict: StateDict, model: nn.Module) -> StateDict:
    """transformers' ``Wav2Vec2ForPreTraining`` → :class:`~paperzoo.models.audio.wav2vec2.Wav2Vec2PreTraining`:
    the encoder under ``wav2vec2.`` as :func:`wav2vec2`; ``quantizer.weight_proj`` → ``quantizer.to_logits``,
    ``quantizer.codevectors`` (1, G·V, d/G) → ``quantizer.codebooks`` (G, V, d/G); ``project_hid`` (the context
    vectors' projection) → ``project_context``; ``project_q`` → ``project_quantized``."""
    state_dict = dict(state_dict)
    codebooks = state_dict.pop("quantizer.codevectors", None)
    if codebooks is not None:
        groups, entries = model.quantizer.num_groups, model.quantizer.num_entries
        if codebooks.shape[1] != groups * entries:
            raise ValueError(f"quantizer.codevectors holds {codebooks.shape[1]} entries; the model has {groups} "
                             f"codebooks of {entries}: build the same configuration")
        state_dict["quantizer.codebooks"] = codebooks.reshape(groups, entries, codebooks.shape[-1])
    rules = _wav2vec2_rules("wav2vec2.", model.wav2vec2.layer_norm_first) + [
        (r"quantizer\.weight_proj\.(weight|bias)", r"quantizer.to_logits.\1"),
        (r"project_hid\.(weight|bias)", r"project_context.\1"),
        (r"project_q\.(weight|bias)", r"project_quantized.\1"),
    ]
    return rename(_pack_wav2vec2_qkv(state_dict), rules)


CONVERTERS = {
    # wav2vec 2.0
    "Wav2Vec2": wav2vec2,
    "Wav2Vec2PreTraining": wav2vec2_pretraining,
}
