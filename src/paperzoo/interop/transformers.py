"""Converters from transformers' (Hugging Face) state_dicts, one per architecture class, in :data:`CONVERTERS`.

Each is a set of renaming rules plus the few tensor changes a rename cannot express, documented where they
happen:

* BERT keeps separate query, key and value layers; our attention packs them into one ``qkv`` layer, so the
  three weights (and biases) are concatenated along the output dimension, in that order.
* GPT and GPT-2 are written with ``transformers.pytorch_utils.Conv1D``, a linear layer that stores its weight
  as ``(in_features, out_features)`` and computes ``x @ W + b``; ``nn.Linear`` stores ``(out, in)`` and computes
  ``x @ Wᵀ + b``. Every ``Conv1D`` weight (``c_attn``, ``c_proj``, ``c_fc``) is therefore transposed. ``c_attn``
  is already packed query, key, value along its output columns, which after the transpose are our ``qkv`` rows.
* Output layers tied to the token embedding (``lm_head.weight``, ``cls.predictions.decoder.weight`` and its
  bias, which is ``cls.predictions.bias``) are not stored twice in our models: they are dropped after checking
  that they are indeed the tied tensors. Buffers that transformers keeps (position ids, causal masks) are dropped.
* wav2vec 2.0 keeps separate ``q_proj``, ``k_proj``, ``v_proj`` layers, packed into ``qkv`` as BERT's; its
  quantizer's flat ``codevectors`` are reshaped to one codebook per group.
* The task heads keep the encoder under its prefix (``bert.``, ``wav2vec2.``) and rename only their own layers:
  BERT's masked-LM head as in pre-training, its sequence classifier as it is (``classifier``), wav2vec 2.0's CTC
  projection ``lm_head`` → ``ctc_head``.
"""

from __future__ import annotations

import re

import torch
from torch import nn

from paperzoo.interop._rename import rename

StateDict = dict[str, torch.Tensor]

# --- BERT ------------------------------------------------------------------------------------------------

_BERT_RULES = [
    (r"embeddings\.word_embeddings\.(.+)", r"embeddings.token_embedding.\1"),
    (r"embeddings\.token_type_embeddings\.(.+)", r"embeddings.segment_embedding.\1"),
    (r"embeddings\.position_embeddings\.(.+)", r"embeddings.position_embedding.\1"),
    (r"embeddings\.LayerNorm\.(.+)", r"embeddings.norm.\1"),
    (r"encoder\.layer\.(\d+)\.attention\.qkv\.(.+)", r"layers.\1.attention.qkv.\2"),  # packed by _pack_qkv
    (r"encoder\.layer\.(\d+)\.attention\.output\.dense\.(.+)", r"layers.\1.attention.proj.\2"),
    (r"encoder\.layer\.(\d+)\.attention\.output\.LayerNorm\.(.+)", r"layers.\1.attention_norm.\2"),
    (r"encoder\.layer\.(\d+)\.intermediate\.dense\.(.+)", r"layers.\1.feed_forward.fc1.\2"),
    (r"encoder\.layer\.(\d+)\.output\.dense\.(.+)", r"layers.\1.feed_forward.fc2.\2"),
    (r"encoder\.layer\.(\d+)\.output\.LayerNorm\.(.+)", r"layers.\1.feed_forward_norm.\2"),
    (r"pooler\.dense\.(.+)", r"pooler.\1"),
]
_BERT_HEAD_RULES = [
    (r"cls\.predictions\.transform\.dense\.(.+)", r"mlm_head.dense.\1"),
    (r"cls\.predictions\.transform\.LayerNorm\.(.+)", r"mlm_head.norm.\1"),
    (r"cls\.predictions\.bias", r"mlm_head.bias"),
    (r"cls\.seq_relationship\.(.+)", r"nsp_head.\1"),
]
_BERT_BUFFERS = re.compile(r"(bert\.)?embeddings\.(position_ids|token_type_ids)")


def _pack_qkv(state_dict: StateDict, pattern: str, projections: tuple[str, str, str], unpacked: str) -> StateDict:
    """Concatenate separate query, key and value layers into our packed ``<module>.qkv.{weight,bias}``, in that
    order along the output dimension. ``pattern`` matches one of their keys with three groups (the attention
    module, the projection's name among ``projections``, weight or bias); ``unpacked`` rebuilds such a key, for
    an incomplete triple that stays as it is for the strict load to report."""
    compiled = re.compile(pattern)
    parts: dict[tuple[str, str], dict[str, torch.Tensor]] = {}
    packed: StateDict = {}
    for key, value in state_dict.items():
        match = compiled.fullmatch(key)
        if match:
            parts.setdefault((match[1], match[3]), {})[match[2]] = value
        else:
            packed[key] = value
    for (module, kind), found in parts.items():
        if set(found) != set(projections):
            packed.update({unpacked.format(module=module, projection=p, kind=kind): t for p, t in found.items()})
            continue
        packed[f"{module}.qkv.{kind}"] = torch.cat([found[p] for p in projections])
    return packed


def _drop_tied(state_dict: StateDict, tied: str, to: str) -> None:
    """Remove ``tied`` (an output layer that transformers ties to ``to``) after checking that it is ``to``."""
    if tied in state_dict:
        weight, embedding = state_dict[tied], state_dict.get(to)
        if embedding is not None and weight is not embedding and not (  # a meta tensor's values are unknown
                weight.shape == embedding.shape and (weight.is_meta or torch.equal(weight, embedding))):
            raise ValueError(f"{tied} differs from {to}: these weights are not tied, and our model ties them")
        del state_dict[tied]


def _bert_encoder(state_dict: StateDict, prefix: str) -> StateDict:
    """``BertModel``'s keys (under ``prefix``) → :class:`~paperzoo.models.language.bert.BERT`'s (same prefix)."""
    state_dict = {k: v for k, v in state_dict.items() if not _BERT_BUFFERS.fullmatch(k)}
    layer = rf"{re.escape(prefix)}encoder\.layer\.\d+\.attention"  # BERT: ...attention.self.{query,key,value}
    state_dict = _pack_qkv(state_dict, rf"({layer})\.self\.(query|key|value)\.(weight|bias)", ("query", "key", "value"),
                           "{module}.self.{projection}.{kind}")
    rules = [(re.escape(prefix) + pattern, prefix + replacement) for pattern, replacement in _BERT_RULES]
    return rename(state_dict, rules)


def bert(state_dict: StateDict, model: nn.Module) -> StateDict:
    """transformers ``BertModel`` → ``BERT``. A ``BertForPreTraining`` state_dict loads too: its heads are left out."""
    if any(k.startswith("bert.") for k in state_dict):
        state_dict = {k.removeprefix("bert."): v for k, v in state_dict.items() if not k.startswith("cls.")}
    return _bert_encoder(state_dict, prefix="")


def bert_with_heads(state_dict: StateDict, model: nn.Module) -> StateDict:
    """transformers ``BertForPreTraining``, ``BertForMaskedLM`` or ``BertForSequenceClassification`` →
    ``BERTPreTraining``, ``BERTMaskedLM`` or ``BERTSequenceClassification``: the encoder under ``bert.``, then the
    heads (the masked-LM head's tied output layer dropped; ``classifier`` keeps its name)."""
    state_dict = dict(state_dict)
    _drop_tied(state_dict, "cls.predictions.decoder.weight", "bert.embeddings.word_embeddings.weight")
    _drop_tied(state_dict, "cls.predictions.decoder.bias", "cls.predictions.bias")
    return rename(_bert_encoder(state_dict, prefix="bert."), _BERT_HEAD_RULES)


# --- GPT and GPT-2 ---------------------------------------------------------------------------------------

# Both layouts: OpenAIGPT's ``tokens_embed``/``positions_embed`` and GPT-2's ``wte``/``wpe``. ``ln_1`` belongs to
# the attention sub-layer and ``ln_2`` to the feed-forward one in both (after it in GPT, before it in GPT-2).
_GPT_RULES = [
    (r"(?:tokens_embed|wte)\.weight", r"token_embedding.weight"),
    (r"(?:positions_embed|wpe)\.weight", r"position_embedding.weight"),
    (r"h\.(\d+)\.attn\.c_attn\.(.+)", r"blocks.\1.attention.qkv.\2"),
    (r"h\.(\d+)\.attn\.c_proj\.(.+)", r"blocks.\1.attention.proj.\2"),
    (r"h\.(\d+)\.ln_1\.(.+)", r"blocks.\1.attention_norm.\2"),
    (r"h\.(\d+)\.mlp\.c_fc\.(.+)", r"blocks.\1.feed_forward.fc1.\2"),
    (r"h\.(\d+)\.mlp\.c_proj\.(.+)", r"blocks.\1.feed_forward.fc2.\2"),
    (r"h\.(\d+)\.ln_2\.(.+)", r"blocks.\1.feed_forward_norm.\2"),
    (r"ln_f\.(.+)", r"final_norm.\1"),
]
_GPT_BUFFERS = re.compile(r"position_ids|h\.\d+\.attn\.(bias|masked_bias)")
_CONV1D = re.compile(r"h\.\d+\.(attn\.c_attn|attn\.c_proj|mlp\.c_fc|mlp\.c_proj)\.weight")


def gpt(state_dict: StateDict, model: nn.Module) -> StateDict:
    """transformers ``OpenAIGPTLMHeadModel``/``OpenAIGPTModel`` (GPT) or ``GPT2LMHeadModel``/``GPT2Model``
    (GPT-2) → ``GPT``. Conv1D weights are transposed (module docstring)."""
    state_dict = dict(state_dict)
    embedding = next((k for k in ("transformer.tokens_embed.weight", "transformer.wte.weight") if k in state_dict), "")
    _drop_tied(state_dict, "lm_head.weight", embedding)
    converted: StateDict = {}
    for key, value in state_dict.items():
        key = key.removeprefix("transformer.")
        if _GPT_BUFFERS.fullmatch(key):
            continue
        if _CONV1D.fullmatch(key):
            value = value.t()  # Conv1D's (in, out) → nn.Linear's (out, in)
        converted[key] = value
    return rename(converted, _GPT_RULES)


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
    """``...attention.{q,k,v}_proj.{weight,bias}`` → ``...attention.qkv.{weight,bias}``."""
    return _pack_qkv(state_dict, r"(.*encoder\.layers\.\d+\.attention)\.([qkv])_proj\.(weight|bias)", ("q", "k", "v"),
                     "{module}.{projection}_proj.{kind}")


def _wav2vec2_rules(prefix: str, layer_norm_first: bool) -> list[tuple[str, str]]:
    """The renaming rules for a ``Wav2Vec2Model`` whose keys start with ``prefix`` (``""`` or ``"wav2vec2."``)."""
    final = "output_norm" if layer_norm_first else "input_norm"
    rules = _WAV2VEC2_RULES + [(r"encoder\.layer_norm\.(weight|bias)", rf"context_network.{final}.\1")]
    return [(re.escape(prefix) + pattern, prefix + replacement) for pattern, replacement in rules]


def wav2vec2(state_dict: StateDict, model: nn.Module) -> StateDict:
    """transformers' ``Wav2Vec2Model`` → :class:`paperzoo.models.audio.wav2vec2.Wav2Vec2`. A
    ``Wav2Vec2ForPreTraining`` state_dict (what ``facebook/wav2vec2-base`` publishes) loads too: its quantizer and
    projections are left out."""
    if any(k.startswith("wav2vec2.") for k in state_dict):
        state_dict = {k.removeprefix("wav2vec2."): v for k, v in state_dict.items() if k.startswith("wav2vec2.")}
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


def wav2vec2_ctc(state_dict: StateDict, model: nn.Module) -> StateDict:
    """transformers' ``Wav2Vec2ForCTC`` → :class:`~paperzoo.models.audio.wav2vec2.Wav2Vec2CTC`: the encoder under
    ``wav2vec2.`` as :func:`wav2vec2`; ``lm_head`` (the output projection) → ``ctc_head``."""
    rules = _wav2vec2_rules("wav2vec2.", model.wav2vec2.layer_norm_first) + [
        (r"lm_head\.(weight|bias)", r"ctc_head.\1")]
    return rename(_pack_wav2vec2_qkv(state_dict), rules)


CONVERTERS = {
    "BERT": bert,
    "BERTPreTraining": bert_with_heads,
    "BERTMaskedLM": bert_with_heads,
    "BERTSequenceClassification": bert_with_heads,
    "GPT": gpt,
    "Wav2Vec2": wav2vec2,
    "Wav2Vec2PreTraining": wav2vec2_pretraining,
    "Wav2Vec2CTC": wav2vec2_ctc,
}
