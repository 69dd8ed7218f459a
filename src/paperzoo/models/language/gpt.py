r"""GPT and GPT-2: generatively pre-trained Transformer decoders.

Papers:

* GPT: "Improving Language Understanding by Generative Pre-Training", Alec Radford, Karthik Narasimhan,
  Tim Salimans, Ilya Sutskever, OpenAI 2018.
  https://cdn.openai.com/research-covers/language-unsupervised/language_understanding_paper.pdf
* GPT-2: "Language Models are Unsupervised Multitask Learners", Alec Radford, Jeffrey Wu, Rewon Child, David Luan,
  Dario Amodei, Ilya Sutskever, OpenAI 2019.
  https://cdn.openai.com/better-language-models/language_models_are_unsupervised_multitask_learners.pdf

GPT's idea (§3): labelled data is scarce and unlabelled text is plentiful, so first pre-train a language model
on a large corpus of contiguous text (BooksCorpus), then fine-tune the same network on each task, with its
structured inputs (entailment pairs, multiple-choice answers) written out as one token sequence with start,
delimiter and extract tokens, so the architecture never changes.

* The unsupervised objective is the standard language-modelling likelihood over a context window of k tokens
  (eq. 1), $L_1(U) = \sum_i \log P(u_i \mid u_{i-k}, \dots, u_{i-1}; \Theta)$ (:meth:`GPT.loss`, the mean
  negative of it).
* The model is a Transformer *decoder*: masked (causal) multi-head self-attention, so position i sees only the
  tokens up to i, then a position-wise feed-forward network, each sub-layer in a residual connection (eq. 2):

  $$
  h_0 = U W_e + W_p, \qquad h_l = \text{transformer\_block}(h_{l-1}) \text{ for } l = 1 \dots n, \qquad
  P(u) = \text{softmax}(h_n W_e^T),
  $$

  where U is the one-hot context, W_e the token embedding (reused, transposed, as the output layer) and W_p the
  learned position embedding.
* GPT (§4.1): 12 layers, 768-wide states, 12 heads, a 3072-wide feed-forward layer, GELU, 512 positions, a
  bytepair vocabulary of 40,000 merges (40,478 tokens), dropout 0.1, weights drawn from N(0, 0.02²) "since
  layernorm is used extensively throughout the model".

GPT-2's idea: a language model large enough, trained on enough varied text (WebText), learns to perform tasks
from their description in the text itself (zero-shot: "TL;DR:" asks for a summary), without fine-tuning. The
model is GPT with a few changes (§2.3):

* Layer normalisation moved to the input of each sub-block, "similar to a pre-activation residual network",
  and one more layer normalisation after the final block (the pre-LN residual stream is never normalised
  otherwise). ``pre_norm=True``.
* A modified initialisation that accounts for the accumulation on the residual path with depth: the weights of
  the residual layers (each sub-block's last projection) are scaled by 1/√N, N = 2 × layers the number of
  residual layers. ``scaled_residual_init=True``.
* A byte-level BPE vocabulary of 50,257 tokens, a context of 1,024 tokens, and four sizes (Table 2): 12, 24, 36
  and 48 layers of width 768, 1024, 1280 and 1600.

Data flow of GPT at 512 tokens (GPT-2: 1024 tokens, 50,257-token vocabulary)::

    token ids U (N, 512)
      h_0 = U W_e + W_p: token embedding (40478×768) + position embedding (512×768), dropout    (N, 512, 768)
      12 × decoder block, GPT (post-LN):                                                        (N, 512, 768)
          h ─► masked multi-head self-attention (12 heads) ─(+)─► LN ─► FFN 768→3072→768, GELU ─(+)─► LN ─►
          └──────────────────────────────────────────────┘      └──────────────────────────────┘
      logits h_12 W_eᵀ (the token embedding, tied)                                              (N, 512, 40478)

    decoder block, GPT-2 (pre-LN), and one more LN before the logits:
          h ─► LN ─► masked multi-head self-attention ─(+)─► LN ─► FFN ─(+)─►
          └─────────────────────────────────────────┘  └─────────────────┘

Generating (:meth:`GPT.generate`): feed the prompt, pick the next token from the last position's distribution,
append it, repeat. A :class:`~paperzoo.layers.KeyValueCache` per layer keeps the keys and values of the
positions already seen, so each new token costs one query instead of re-running the whole sequence. The
strategies (greedy, sampling with temperature, top-k (GPT-2 §3.6 samples with k = 2) and top-p, beam search)
are the zoo's one decoding routine, :func:`paperzoo.layers.decoding.generate`, which equals transformers'
``generate``; this file gives it only the next-token step.

Deviations, each to match transformers' ``OpenAIGPTLMHeadModel`` and ``GPT2LMHeadModel`` (whose weights load
here and whose logits this model reproduces) or stated otherwise:

* The number of heads of the GPT-2 sizes (12, 16, 20, 25) is the released models', which Table 2 does not give.
  The released GPT-2 models have 124M, 355M, 774M and 1,558M parameters (counted here and in transformers);
  Table 2 lists 117M, 345M, 762M and 1,542M.
* GELU is the tanh approximation, as in both papers' released code (transformers' ``gelu_new``).
* Initialisation as transformers: weights and embeddings N(0, 0.02²), zero biases, unit LayerNorm scales;
  GPT-2's residual projections N(0, (0.02/√(2·layers))²). LayerNorm's ε is 1e-5.
* Dropout 0.1 on the embeddings, the attention probabilities and each sub-block's output: GPT's §4.1, and
  transformers' GPT-2 default; the GPT-2 paper states no dropout (pass ``dropout=0, attention_dropout=0``).
* Only the pre-trained language model is built: GPT's fine-tuning heads and auxiliary objective (§3.2) are not.
* ``attention_mask`` removes padding from the keys; positions count from the first token of each row, as in
  transformers' forward, so pad on the right (or pass ``position_ids``). ``generate`` takes prompts padded on
  the left with their ``attention_mask`` and counts positions from each row's first real token, as transformers'
  ``generate`` does. A query that sees no real token (left padding) attends to every key before it, as in
  transformers, instead of to nothing (NaN); its output is padding and is never read.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from paperzoo.layers import KeyValueCache, MultiHeadAttention, check_attention_mask, check_token_batch, decoding
from paperzoo.layers.checkpoint import checkpoint_module, checkpointing
from paperzoo.layers.decoding import filter_logits
from paperzoo.registry import InputSpec, ModelCard, Paper, register

__all__ = ["GPT", "DecoderBlock", "filter_logits"]  # filter_logits: paperzoo.layers.decoding's


class FeedForward(nn.Module):
    """The position-wise feed-forward network, FFN(h) = GELU(h W_1 + b_1) W_2 + b_2, four times as wide inside."""

    def __init__(self, hidden_size: int, intermediate_size: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(hidden_size, intermediate_size)
        self.act = nn.GELU(approximate="tanh")
        self.fc2 = nn.Linear(intermediate_size, hidden_size)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(h)))


class DecoderBlock(nn.Module):
    """One transformer_block of eq. 2: masked multi-head self-attention and a feed-forward network, each in a
    residual connection with layer normalisation, after the sum (GPT) or at the sub-block's input (GPT-2)."""

    def __init__(self, hidden_size: int, num_heads: int, intermediate_size: int, dropout: float,
                 attention_dropout: float, layer_norm_eps: float, pre_norm: bool) -> None:
        super().__init__()
        self.pre_norm = pre_norm
        self.attention = MultiHeadAttention(hidden_size, num_heads, attention_dropout=attention_dropout)
        self.attention_norm = nn.LayerNorm(hidden_size, eps=layer_norm_eps)
        self.feed_forward = FeedForward(hidden_size, intermediate_size)
        self.feed_forward_norm = nn.LayerNorm(hidden_size, eps=layer_norm_eps)
        self.dropout = nn.Dropout(dropout)

    def forward(self, h: torch.Tensor, padding_mask: torch.Tensor | None = None,
                cache: KeyValueCache | None = None) -> torch.Tensor:
        def attend(x: torch.Tensor) -> torch.Tensor:  # causal: position i attends to positions ≤ i only
            return self.dropout(self.attention(x, attn_mask=padding_mask, is_causal=True, cache=cache))

        if self.pre_norm:  # GPT-2: h + Sublayer(LN(h))
            h = h + attend(self.attention_norm(h))
            return h + self.dropout(self.feed_forward(self.feed_forward_norm(h)))
        h = self.attention_norm(h + attend(h))  # GPT: LN(h + Sublayer(h))
        return self.feed_forward_norm(h + self.dropout(self.feed_forward(h)))


class GPT(nn.Module):
    """A GPT language model: token ids → next-token logits at every position.

    Args:
        vocab_size: the bytepair vocabulary (40,478 for GPT, 50,257 for GPT-2).
        max_positions: learned positions, the context size (512 for GPT, 1,024 for GPT-2).
        hidden_size: the width of the states (768 … 1600).
        num_layers: decoder blocks.
        num_heads: attention heads per block.
        intermediate_size: the feed-forward width (default 4 × hidden_size).
        dropout: on the embeddings and on each sub-block's output.
        attention_dropout: on the attention probabilities.
        layer_norm_eps: LayerNorm's ε.
        pre_norm: GPT-2's layer normalisation at each sub-block's input, and one after the last block;
            ``False``: GPT's, after each residual sum.
        scaled_residual_init: GPT-2's initialisation of the residual projections, scaled by 1/√(2·num_layers).

    ``forward(input_ids, attention_mask=None, *, cache=None, position_ids=None)`` takes ids ``(N, T)`` and a mask
    ``(N, T)`` (1 at real tokens, 0 at padding) and returns logits ``(N, T, vocab_size)``: the logits at
    position t predict token t + 1. ``cache`` (from :meth:`new_cache`) makes the call continue a sequence whose
    earlier positions it holds (the mask then covers those positions too: ``(N, cached + T)``).

    ``set_grad_checkpointing()`` checkpoints each decoder block in training.
    """

    model_name = "gpt"
    grad_checkpointing = False  # set_grad_checkpointing

    def __init__(
        self,
        *,
        vocab_size: int = 40478,
        max_positions: int = 512,
        hidden_size: int = 768,
        num_layers: int = 12,
        num_heads: int = 12,
        intermediate_size: int | None = None,
        dropout: float = 0.1,
        attention_dropout: float = 0.1,
        layer_norm_eps: float = 1e-5,
        pre_norm: bool = False,
        scaled_residual_init: bool = False,
    ) -> None:
        super().__init__()
        self.vocab_size = vocab_size
        self.max_positions = max_positions
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        self.token_embedding = nn.Embedding(vocab_size, hidden_size)  # W_e, also the output layer
        self.position_embedding = nn.Embedding(max_positions, hidden_size)  # W_p
        self.embedding_dropout = nn.Dropout(dropout)
        self.blocks = nn.ModuleList(
            DecoderBlock(hidden_size, num_heads, intermediate_size or 4 * hidden_size, dropout, attention_dropout,
                         layer_norm_eps, pre_norm)
            for _ in range(num_layers))
        self.final_norm = nn.LayerNorm(hidden_size, eps=layer_norm_eps) if pre_norm else None
        self._init_weights(scaled_residual_init)

    def _init_weights(self, scaled_residual_init: bool) -> None:
        for module in self.modules():
            if isinstance(module, (nn.Linear, nn.Embedding)):
                nn.init.normal_(module.weight, std=0.02)
                if getattr(module, "bias", None) is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.LayerNorm):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
        if scaled_residual_init:  # each block adds two residual branches: N = 2 · num_layers
            for block in self.blocks:
                for projection in (block.attention.proj, block.feed_forward.fc2):
                    nn.init.normal_(projection.weight, std=0.02 / math.sqrt(2 * self.num_layers))

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Checkpoint each decoder block in training (not with a cache): its activations are recomputed in the
        backward pass."""
        self.grad_checkpointing = enable

    def new_cache(self) -> list[KeyValueCache]:
        """One empty key/value cache per block, for :meth:`forward`'s ``cache``."""
        return [KeyValueCache() for _ in self.blocks]

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None, *,
                cache: list[KeyValueCache] | None = None, position_ids: torch.Tensor | None = None) -> torch.Tensor:
        if cache is not None and len(cache) != len(self.blocks):
            raise ValueError(f"{self.model_name} expects one KeyValueCache per block ({len(self.blocks)}); got "
                             f"{len(cache)}: make it with model.new_cache()")
        past = 0 if cache is None else len(cache[0])  # positions already in the cache
        check_token_batch(input_ids, name=self.model_name, vocab_size=self.vocab_size,
                          max_length=self.max_positions - past)
        if attention_mask is not None:
            length = past + input_ids.shape[1]  # the mask covers the cached positions too
            check_attention_mask(attention_mask, name=self.model_name, shape=(input_ids.shape[0], length))

        positions = torch.arange(past, past + input_ids.shape[1], device=input_ids.device)  # (T,)
        if position_ids is not None:  # (N, T): left-padded prompts count from their first real token
            positions = position_ids
        padding_mask = None
        if attention_mask is not None:
            keys = attention_mask.bool()[:, None, None, :]  # (N, 1, 1, S): True at the keys a query may attend to
            # A query with no real token at or before it (left padding) would attend to nothing and put NaN into
            # the keys and values later positions read through zero weights; it attends to everything instead.
            unattended = attention_mask.cumsum(-1)[:, -input_ids.shape[1]:] == 0  # (N, T)
            padding_mask = keys | unattended[:, None, :, None]  # (N, 1, T, S); the blocks add the causal mask
        h = self.embedding_dropout(self.token_embedding(input_ids) + self.position_embedding(positions))  # h_0
        for i, block in enumerate(self.blocks):
            if cache is None and checkpointing(self):
                h = checkpoint_module(block, h, padding_mask)  # (N, T, hidden_size)
            else:
                h = block(h, padding_mask, None if cache is None else cache[i])  # (N, T, hidden_size)
        if self.final_norm is not None:
            h = self.final_norm(h)
        return F.linear(h, self.token_embedding.weight)  # h_n W_eᵀ: (N, T, vocab_size)

    def loss(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """−L_1 / (number of predictions) (eq. 1): the mean negative log-likelihood of every token given the
        tokens before it, in nats. Padding (``attention_mask`` 0) is not predicted."""
        if isinstance(input_ids, torch.Tensor) and input_ids.ndim == 2 and input_ids.shape[1] < 2:
            raise ValueError(f"{self.model_name} expects at least 2 tokens per sequence to compute the "
                             f"language-model loss; got {tuple(input_ids.shape)}")
        logits = self(input_ids, attention_mask)
        targets = input_ids[:, 1:]  # the logits at t predict token t + 1
        if attention_mask is not None:
            targets = targets.masked_fill(attention_mask[:, 1:] == 0, -100)  # -100: ignored by cross_entropy
        return F.cross_entropy(logits[:, :-1].flatten(0, 1), targets.flatten(), ignore_index=-100)

    @torch.no_grad()
    def generate(self, input_ids: torch.Tensor, max_new_tokens: int, *, do_sample: bool = False,
                 temperature: float = 1.0, top_k: int | None = None, top_p: float | None = None, num_beams: int = 1,
                 length_penalty: float = 1.0, eos_token_id: int | None = None, pad_token_id: int | None = None,
                 attention_mask: torch.Tensor | None = None, use_cache: bool = True,
                 generator: torch.Generator | None = None) -> torch.Tensor:
        """Continue each prompt of ``input_ids`` ``(N, T)`` by up to ``max_new_tokens`` tokens: ``(N, T + L)``.

        The keywords are transformers' (:func:`paperzoo.layers.decoding.generate`): greedy unless ``do_sample``
        (``temperature``, ``top_k``, ``top_p``, drawn with ``generator``) or ``num_beams`` > 1 (beam search, scored
        log p / length ** ``length_penalty``); a row ends at ``eos_token_id`` and is then filled with
        ``pad_token_id`` (default: the end token). Prompts of different lengths are padded on the left, with
        ``attention_mask`` (1 at real tokens). ``use_cache`` keeps each block's keys and values (the output is the
        same without it, only slower). Put the model in eval mode first, or dropout stays on.
        """
        check_token_batch(input_ids, name=self.model_name, vocab_size=self.vocab_size, max_length=self.max_positions)
        # (a negative max_new_tokens is the shared decoding's to refuse, as such: this message would blame the prompt)
        if input_ids.shape[1] + max_new_tokens > self.max_positions:
            raise ValueError(f"{self.model_name} expects a prompt and max_new_tokens that fit its "
                             f"{self.max_positions} positions; got a prompt of shape {tuple(input_ids.shape)} and "
                             f"max_new_tokens={max_new_tokens}: shorten the prompt or generate fewer tokens")
        if attention_mask is not None:
            check_attention_mask(attention_mask, name=self.model_name, shape=tuple(input_ids.shape))
        state = (self.new_cache() if use_cache else None, attention_mask)

        def step(ids: torch.Tensor, state: tuple) -> tuple[torch.Tensor, tuple]:
            cache, mask = state
            past = 0 if cache is None else len(cache[0])  # the cache holds every position but the newest
            positions = None
            if mask is not None:
                mask = torch.cat([mask, mask.new_ones(len(ids), ids.shape[1] - mask.shape[1])], dim=1)  # (R, T + t)
                positions = (mask.cumsum(-1) - 1).clamp(min=0)[:, past:]  # each row counts from its first token
            logits = self(ids[:, past:], mask, cache=cache, position_ids=positions)[:, -1]  # (R, vocab_size)
            return F.log_softmax(logits.float(), dim=-1), (cache, mask)

        def reorder(state: tuple, rows: torch.Tensor) -> tuple:
            cache, mask = state
            for layer in cache or ():
                layer.reorder(rows)
            return cache, None if mask is None else mask.index_select(0, rows)

        return decoding.generate(step, input_ids, state, reorder, max_new_tokens=max_new_tokens, do_sample=do_sample,
                                 temperature=temperature, top_k=top_k, top_p=top_p, num_beams=num_beams,
                                 length_penalty=length_penalty, eos_token_id=eos_token_id,
                                 pad_token_id=pad_token_id, generator=generator)


_GPT_PAPER = Paper(
    title="Improving Language Understanding by Generative Pre-Training",
    authors="Alec Radford, Karthik Narasimhan, Tim Salimans, Ilya Sutskever",
    year=2018,
    url="https://cdn.openai.com/research-covers/language-unsupervised/language_understanding_paper.pdf",
)
_GPT2_PAPER = Paper(
    title="Language Models are Unsupervised Multitask Learners",
    authors="Alec Radford, Jeffrey Wu, Rewon Child, David Luan, Dario Amodei, Ilya Sutskever",
    year=2019,
    url="https://cdn.openai.com/better-language-models/language_models_are_unsupervised_multitask_learners.pdf",
)
_GPT_INNOVATIONS = (
    "generative pre-training of a language model on unlabelled text, then fine-tuning the same network per task",
    "a Transformer decoder: masked self-attention, each position sees only the tokens before it",
    r"maximise $\sum_i \log P(u_i \mid u_{i-k} \dots u_{i-1})$; the output layer is the transposed token embedding",
    "structured task inputs written as one token sequence with start, delimiter and extract tokens",
)
_GPT2_INNOVATIONS = (
    "a larger language model trained on WebText performs tasks zero-shot, from their description in the text",
    "layer normalisation at the input of each sub-block (pre-LN), and one more after the last block",
    "residual projections initialised scaled by 1/sqrt(N), N the number of residual layers",
    "byte-level BPE vocabulary of 50,257 tokens and a context of 1,024 tokens",
)
_GPT2_SIZES = {  # name: (layers, width, heads, parameters, GMACs at 1024 tokens)
    "gpt2": (12, 768, 12, 124_439_808, 145.824),
    "gpt2_medium": (24, 1024, 16, 354_823_168, 413.476),
    "gpt2_large": (36, 1280, 20, 774_030_080, 887.285),
    "gpt2_xl": (48, 1600, 25, 1_557_611_200, 1753.352),
}


def _gpt2_card(name: str) -> ModelCard:
    layers, width, heads, params, gmacs = _GPT2_SIZES[name]
    config = "" if name == "gpt2" else f"(n_layer={layers}, n_embd={width}, n_head={heads})"
    return ModelCard(
        name=name,
        architecture="GPT-2" + {"gpt2": "", "gpt2_medium": " Medium", "gpt2_large": " Large", "gpt2_xl": " XL"}[name],
        task="language-model",
        paper=_GPT2_PAPER,
        innovations=_GPT2_INNOVATIONS,
        input=InputSpec(kind="tokens", shape=(1024,), vocab_size=50257),
        params=params,
        params_source=f"transformers GPT2LMHeadModel(GPT2Config{config or '()'}), counted (output layer tied); "
                      "Table 2 of the paper lists 117M, 345M, 762M and 1,542M for the four sizes",
        reference=f"transformers:GPT2LMHeadModel{config}",
        gmacs=gmacs,
        notes="keyword arguments in the reference are GPT2Config's; create_model takes them too, beside ours "
              "(n_layer or num_layers; `paperzoo info` lists the mapping)",
    )


@register(ModelCard(
    name="gpt",
    architecture="GPT",
    task="language-model",
    paper=_GPT_PAPER,
    innovations=_GPT_INNOVATIONS,
    input=InputSpec(kind="tokens", shape=(512,), vocab_size=40478),
    params=116_534_784,
    params_source="transformers OpenAIGPTLMHeadModel(OpenAIGPTConfig()), counted (output layer tied)",
    reference="transformers:OpenAIGPTLMHeadModel",
    gmacs=64.235,
    canonical=True,
    notes="create_model takes OpenAIGPTConfig's names too, beside ours (n_layer or num_layers; `paperzoo info` "
          "lists the mapping)",
))
def gpt(**kwargs: Any) -> GPT:
    """GPT: 12 post-LN blocks, 768 wide, 12 heads, 512 positions, 40,478 tokens."""
    return GPT(**kwargs)


def _gpt2(name: str, **kwargs: Any) -> GPT:
    layers, width, heads, _, _ = _GPT2_SIZES[name]
    config = dict(vocab_size=50257, max_positions=1024, hidden_size=width, num_layers=layers, num_heads=heads,
                  pre_norm=True, scaled_residual_init=True)
    return GPT(**{**config, **kwargs})


@register(_gpt2_card("gpt2"))
def gpt2(**kwargs: Any) -> GPT:
    """GPT-2 (the smallest, 124M): 12 pre-LN blocks, 768 wide, 12 heads."""
    return _gpt2("gpt2", **kwargs)


@register(_gpt2_card("gpt2_medium"))
def gpt2_medium(**kwargs: Any) -> GPT:
    """GPT-2 Medium (355M): 24 pre-LN blocks, 1024 wide, 16 heads."""
    return _gpt2("gpt2_medium", **kwargs)


@register(_gpt2_card("gpt2_large"))
def gpt2_large(**kwargs: Any) -> GPT:
    """GPT-2 Large (774M): 36 pre-LN blocks, 1280 wide, 20 heads."""
    return _gpt2("gpt2_large", **kwargs)


@register(_gpt2_card("gpt2_xl"))
def gpt2_xl(**kwargs: Any) -> GPT:
    """GPT-2 XL (1.5B): 48 pre-LN blocks, 1600 wide, 25 heads."""
    return _gpt2("gpt2_xl", **kwargs)


if __name__ == "__main__":
    from paperzoo.cli import main

    main(["run", "gpt"])
