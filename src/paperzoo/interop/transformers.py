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


def _pack_qkv(state_dict: StateDict, prefix: str) -> StateDict:
    """Concatenate ``...attention.self.{query,key,value}.{weight,bias}`` into ``...attention.qkv.{weight,bias}``."""
    layer = rf"{re.escape(prefix)}encoder\.layer\.\d+\.attention"
    pattern = re.compile(rf"({layer})\.self\.(query|key|value)\.(weight|bias)")
    parts: dict[tuple[str, str], dict[str, torch.Tensor]] = {}
    packed: StateDict = {}
    for key, value in state_dict.items():
        match = pattern.fullmatch(key)
        if match:
            parts.setdefault((match[1], match[3]), {})[match[2]] = value
        else:
            packed[key] = value
    for (module, kind), projections in parts.items():
        if set(projections) != {"query", "key", "value"}:  # incomplete: keep them, the strict load names them
            packed.update({f"{module}.self.{p}.{kind}": t for p, t in projections.items()})
            continue
        packed[f"{module}.qkv.{kind}"] = torch.cat([projections["query"], projections["key"], projections["value"]])
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
    state_dict = _pack_qkv(state_dict, prefix)
    rules = [(re.escape(prefix) + pattern, prefix + replacement) for pattern, replacement in _BERT_RULES]
    return rename(state_dict, rules)


def bert(state_dict: StateDict, model: nn.Module) -> StateDict:
    """transformers ``BertModel`` → ``BERT``. A ``BertForPreTraining`` state_dict loads too: its heads are left out."""
    if any(k.startswith("bert.") for k in state_dict):
        state_dict = {k.removeprefix("bert."): v for k, v in state_dict.items() if not k.startswith("cls.")}
    return _bert_encoder(state_dict, prefix="")


def bert_pretraining(state_dict: StateDict, model: nn.Module) -> StateDict:
    """transformers ``BertForPreTraining`` → ``BERTPreTraining``: the encoder under ``bert.``, then the heads."""
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


CONVERTERS = {"BERT": bert, "BERTPreTraining": bert_pretraining, "GPT": gpt}
