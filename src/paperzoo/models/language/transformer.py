r"""The Transformer.

Paper: "Attention Is All You Need", Ashish Vaswani, Noam Shazeer, Niki Parmar, Jakob Uszkoreit, Llion Jones,
Aidan N. Gomez, Łukasz Kaiser, Illia Polosukhin, NeurIPS 2017. https://arxiv.org/abs/1706.03762

A sequence-to-sequence model for translation "based solely on attention mechanisms, dispensing with recurrence
and convolutions entirely". The ideas, in the paper's terms:

* Encoder-decoder stacks (§3.1). The encoder maps the source symbols to a sequence of continuous
  representations z, the *memory*; the decoder generates the output one symbol at a time, auto-regressively,
  consuming the symbols it has generated so far. Each is a stack of N = 6 identical layers.
* Residual sub-layers with layer normalisation (§3.1). Every sub-layer's output is LayerNorm(x + Sublayer(x))
  (the normalisation *after* the residual sum: "post-norm"). An encoder layer has two sub-layers: multi-head
  self-attention and a position-wise feed-forward network; a decoder layer inserts a third, multi-head attention
  over the encoder's output, and masks its self-attention so that, with the output embeddings offset by one
  position, the prediction for position i depends only on the known outputs at positions less than i.
* Scaled dot-product attention (eq. 1), $\text{Attention}(Q, K, V) = \text{softmax}(QK^T / \sqrt{d_k})\, V$, and
  multi-head attention (§3.2.2), h = 8 heads on d_k = d_v = d_model / h = 64 wide projections:
  ``paperzoo.layers.MultiHeadAttention`` on ``F.scaled_dot_product_attention``, with the padding and causal masks passed
  to it.
* Position-wise feed-forward networks (eq. 2): $\text{FFN}(x) = \max(0, x W_1 + b_1) W_2 + b_2$, d_model = 512 → d_ff =
  2048 → 512, the same at every position.
* Shared embeddings (§3.4). One weight matrix E serves the source embedding, the target embedding and the
  pre-softmax linear transformation; the embeddings are multiplied by $\sqrt{d_{model}}$.
* Sinusoidal positional encodings (§3.5), added to the embeddings:

  $$PE_{(pos, 2i)} = \sin(pos / 10000^{2i / d_{model}}), \qquad PE_{(pos, 2i+1)} = \cos(pos / 10000^{2i / d_{model}}).$$

  For a fixed offset k, $PE_{pos + k}$ is a linear function of $PE_{pos}$, and the model may extrapolate to lengths
  longer than those seen in training. No parameters.
* Training (§5): Adam (β₁ = 0.9, β₂ = 0.98, ε = 10⁻⁹) with a learning rate that rises linearly for the first
  warmup_steps = 4000 steps and then decays with the inverse square root of the step (eq. 3, :func:`learning_rate`);
  residual dropout P_drop = 0.1 on every sub-layer's output and on the sums of embeddings and positional
  encodings; label smoothing ε_ls = 0.1 (:func:`label_smoothed_cross_entropy`).
* Inference (§6.1): beam search with a beam of 4 and length penalty α = 0.6 (Wu et al. 2016), maximum output
  length input length + 50: :meth:`Transformer.generate`'s defaults (``num_beams=1`` decodes greedily;
  :meth:`Transformer.beam_search` returns the best translation and its score). A key/value cache per decoder
  layer makes a step cost one new query per layer instead of re-running the prefix.

Data flow of ``transformer_base`` at the canonical input, source and target of 16 tokens (N sentences)::

    source ids (N, 16)                                  target ids (N, 16): <s> y₁ … y₁₅ (shifted right)
      E[ids] · √512 + PE, dropout       (N, 16, 512)      E[ids] · √512 + PE, dropout       (N, 16, 512)
      6 × encoder layer:                                  6 × decoder layer:
        x = LN(x + SelfAttention(x))   (8 heads, padding)   y = LN(y + MaskedSelfAttention(y))   (causal)
        x = LN(x + FFN(x))             (512→2048→512)       y = LN(y + Attention(y, memory))     (padding)
      memory z                          (N, 16, 512) ──►    y = LN(y + FFN(y))
                                                          y Eᵀ: next-token logits        (N, 16, 37000)

    variants (Table 3):  base N=6 d_model=512 d_ff=2048 h=8 P_drop=0.1 · big N=6 1024/4096/16 P_drop=0.3

Parameters. The paper prints 65M (base) and 213M (big), for "a shared source-target vocabulary of about 37000
tokens" (§5.1). Counted exactly: a layer stack of 44,138,496 (base) or 176,357,376 (big) parameters, plus one
shared V × d_model embedding. At V = 37,000 (the paper's figure, taken as it is) that is 63,082,496 and
214,245,376. No single V gives both printed figures: 65M ± 0.5M needs V between 39,769 and 41,721, 213M ± 0.5M
needs V between 35,296 and 36,272 (at d_model = 1024); so the cards keep the exact counts at the paper's 37,000
(1.9M under the printed 65M, 1.2M over the printed 213M) and say so. fairseq's reproduction of the paper
(Ott et al. 2018) uses a joined BPE dictionary of 32,768 entries instead: 60,915,712 and 209,911,808 parameters;
pass ``vocab_size=32768`` for it.

Deviations from the paper (and what the paper does not state):

* Weights the paper does not specify: the vocabulary size (37,000, above), the special symbols' ids (fairseq's
  dictionary order: ``<s>`` = 0, ``<pad>`` = 1, ``</s>`` = 2), the initialisation (every weight matrix
  Xavier-uniform, as ``torch.nn.Transformer`` and fairseq; biases zero; the embedding N(0, d_model^−½), as
  tensor2tensor and fairseq, so that the √d_model-scaled embeddings have unit variance like the positional
  encodings) and LayerNorm's ε (1e-5, torch.nn's and fairseq's; tensor2tensor uses 1e-6).
* ``torch.nn.Transformer`` ends its encoder and decoder stacks with an extra LayerNorm (``encoder.norm``,
  ``decoder.norm``) even with ``norm_first=False``; the paper's post-norm layers end in a LayerNorm already and
  have none. So our layers equal ``nn.TransformerEncoderLayer``/``DecoderLayer`` and stacks of them
  (``nn.TransformerEncoder``/``Decoder`` with ``norm=None``), not ``nn.Transformer`` as a whole.
* The positional encoding interleaves sine and cosine as the paper's formula does (sin at 2i, cos at 2i+1);
  tensor2tensor and fairseq put all sines first, then all cosines (a fixed permutation of the dimensions, which
  only matters for weights trained with one or the other).
* Dropout only where the paper puts it (sub-layer outputs, embeddings + encodings); ``torch.nn``'s layers also
  drop attention probabilities and the feed-forward hidden units: ``attention_dropout`` adds the former.
* Label smoothing spreads ε_ls uniformly over all K classes, u(k) = 1/K, as Szegedy et al. (the paper's
  reference [36]) and ``F.cross_entropy(label_smoothing=...)``; tensor2tensor spreads it over the K − 1 others.
* Padding: the source's ``<pad>`` positions are masked out as keys (encoder self-attention, encoder-decoder
  attention); a source made only of padding is rejected (every query would attend to nothing). Targets are
  padded on the right, so the causal mask already hides their padding from every real token; the loss ignores
  padded positions.
* Decoding never emits ``<pad>`` or ``<s>`` (their log-probabilities are −∞). It is the zoo's one decoding
  routine (``paperzoo.layers.decoding``), given the paper's length penalty: log P(Y | X) / lp(Y), Wu et al.'s
  lp(Y) = ((5 + |Y|) / 6)^α (:func:`gnmt_length_penalty`, |Y| counting ``</s>``, as tensor2tensor, without their
  coverage penalty), where transformers divides by |Y|^α. The paper says only "terminate early when possible":
  a sentence's search stops once it holds 4 finished translations and its best live one cannot beat the worst of
  them even at the maximum length's penalty (tensor2tensor's bound, transformers' ``early_stopping="never"``:
  exact, as log P only falls and lp only grows). At the maximum length the best live hypotheses end as they
  are, without ``</s>``.
* Batch first: ids are ``(N, S)`` and ``(N, T)``; the paper's equations are per sentence.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterable
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from paperzoo.layers import (
    KeyValueCache,
    MultiHeadAttention,
    check_attention_mask,
    check_token_batch,
    decoding,
    values_are_known,
)
from paperzoo.layers.checkpoint import checkpoint_module, checkpointing
from paperzoo.registry import InputSpec, ModelCard, Paper, register

__all__ = [
    "DecoderCache", "PositionwiseFeedForward", "Transformer", "TransformerDecoder", "TransformerDecoderLayer",
    "TransformerEncoder", "TransformerEncoderLayer", "adam_optimizer", "label_smoothed_cross_entropy",
    "learning_rate", "lr_scheduler", "positional_encoding",
]


def gnmt_length_penalty(length: int, alpha: float) -> float:
    """lp(Y) = ((5 + |Y|) / (5 + 1))^α, Wu et al. 2016 eq. 14, which the paper's beam search uses with α = 0.6
    (§6.1): beam search ranks translations by log P(Y | X) / lp(Y), so a larger α favours longer ones."""
    return ((5 + length) / 6) ** alpha


def positional_encoding(length: int, d_model: int, *, offset: int = 0,
                        device: torch.device | str | None = None) -> torch.Tensor:
    """The sinusoidal encodings of positions ``offset … offset + length − 1``, ``(length, d_model)`` (§3.5).

    Each dimension is a sinusoid; the wavelengths form a geometric progression from 2π to 10000 · 2π.
    """
    if d_model % 2:
        raise ValueError(f"d_model ({d_model}) must be even: dimensions come in sine/cosine pairs")
    position = torch.arange(offset, offset + length, dtype=torch.float32, device=device)  # (length,)
    two_i = torch.arange(0, d_model, 2, dtype=torch.float32, device=device)  # (d_model/2,): 2i
    angle = position[:, None] / 10000.0 ** (two_i / d_model)  # pos / 10000^(2i/d_model): (length, d_model/2)
    # PE(pos, 2i) = sin(angle), PE(pos, 2i+1) = cos(angle): interleaved, (length, d_model/2, 2) → (length, d_model)
    return torch.stack([angle.sin(), angle.cos()], dim=-1).flatten(1)


class PositionwiseFeedForward(nn.Module):
    """FFN(x) = max(0, xW₁ + b₁)W₂ + b₂ (eq. 2): two linear transformations with a ReLU between, applied to each
    position separately and identically ("two convolutions with kernel size 1")."""

    def __init__(self, d_model: int, d_ff: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(d_model, d_ff)  # W₁, b₁
        self.fc2 = nn.Linear(d_ff, d_model)  # W₂, b₂

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.relu(self.fc1(x)))


class TransformerEncoderLayer(nn.Module):
    """One encoder layer (§3.1, Figure 1 left): self-attention, then the feed-forward network, each wrapped as
    LayerNorm(x + Dropout(Sublayer(x))). Equals ``nn.TransformerEncoderLayer(norm_first=False)`` in eval mode."""

    def __init__(self, d_model: int, num_heads: int, d_ff: int, dropout: float = 0.1,
                 attention_dropout: float = 0.0, layer_norm_eps: float = 1e-5) -> None:
        super().__init__()
        self.self_attention = MultiHeadAttention(d_model, num_heads, attention_dropout=attention_dropout)
        self.norm1 = nn.LayerNorm(d_model, eps=layer_norm_eps)
        self.feed_forward = PositionwiseFeedForward(d_model, d_ff)
        self.norm2 = nn.LayerNorm(d_model, eps=layer_norm_eps)
        self.dropout = nn.Dropout(dropout)  # P_drop, on each sub-layer's output before the residual sum (§5.4)

    def forward(self, x: torch.Tensor, source_mask: torch.Tensor | None = None) -> torch.Tensor:
        """``x`` (N, S, d_model); ``source_mask`` (N, 1, 1, S), ``True`` at real tokens, ``False`` at padding."""
        x = self.norm1(x + self.dropout(self.self_attention(x, attn_mask=source_mask)))  # LayerNorm(x + Sublayer(x))
        return self.norm2(x + self.dropout(self.feed_forward(x)))


class TransformerDecoderLayer(nn.Module):
    """One decoder layer (§3.1, Figure 1 right): masked self-attention, attention over the encoder's output (the
    *encoder-decoder attention*: queries from the decoder, keys and values from the memory, §3.2.3), then the
    feed-forward network, each wrapped as LayerNorm(y + Dropout(Sublayer(y))). Equals
    ``nn.TransformerDecoderLayer(norm_first=False)`` in eval mode, with a causal target mask."""

    def __init__(self, d_model: int, num_heads: int, d_ff: int, dropout: float = 0.1,
                 attention_dropout: float = 0.0, layer_norm_eps: float = 1e-5) -> None:
        super().__init__()
        self.self_attention = MultiHeadAttention(d_model, num_heads, attention_dropout=attention_dropout)
        self.norm1 = nn.LayerNorm(d_model, eps=layer_norm_eps)
        self.cross_attention = MultiHeadAttention(d_model, num_heads, attention_dropout=attention_dropout)
        self.norm2 = nn.LayerNorm(d_model, eps=layer_norm_eps)
        self.feed_forward = PositionwiseFeedForward(d_model, d_ff)
        self.norm3 = nn.LayerNorm(d_model, eps=layer_norm_eps)
        self.dropout = nn.Dropout(dropout)

    def forward(self, y: torch.Tensor, memory: torch.Tensor, source_mask: torch.Tensor | None = None, *,
                self_cache: KeyValueCache | None = None, cross_cache: KeyValueCache | None = None) -> torch.Tensor:
        """``y`` (N, T, d_model), the new target positions; ``memory`` (N, S, d_model); ``source_mask`` as the
        encoder's. ``self_cache`` holds the keys and values of the positions decoded before ``y``; ``cross_cache``
        the memory's, projected once."""
        # Masked self-attention: position i sees positions ≤ i only, "preventing leftward information flow"
        # (§3.2.3), so that training on the whole shifted target at once equals generating it token by token.
        y = self.norm1(y + self.dropout(self.self_attention(y, is_causal=True, cache=self_cache)))
        y = self.norm2(y + self.dropout(self.cross_attention(y, memory, attn_mask=source_mask, cache=cross_cache)))
        return self.norm3(y + self.dropout(self.feed_forward(y)))


class TransformerEncoder(nn.Module):
    """The encoder stack: N identical layers (§3.1). Equals ``nn.TransformerEncoder(layer, N, norm=None)``."""

    grad_checkpointing = False  # Transformer.set_grad_checkpointing

    def __init__(self, num_layers: int, d_model: int, num_heads: int, d_ff: int, dropout: float = 0.1,
                 attention_dropout: float = 0.0, layer_norm_eps: float = 1e-5) -> None:
        super().__init__()
        self.layers = nn.ModuleList([
            TransformerEncoderLayer(d_model, num_heads, d_ff, dropout, attention_dropout, layer_norm_eps)
            for _ in range(num_layers)])

    def forward(self, x: torch.Tensor, source_mask: torch.Tensor | None = None) -> torch.Tensor:
        for layer in self.layers:
            x = checkpoint_module(layer, x, source_mask) if checkpointing(self) else layer(x, source_mask)
        return x  # the memory z: (N, S, d_model)


class DecoderCache:
    """What the decoder keeps between generation steps, per layer: the keys and values of the target positions
    decoded so far (masked self-attention) and those of the memory (encoder-decoder attention, computed once).
    ``len(cache)`` is the number of positions decoded so far, the position of the next token."""

    def __init__(self, num_layers: int) -> None:
        self.self_attention = [KeyValueCache() for _ in range(num_layers)]
        self.cross_attention = [KeyValueCache() for _ in range(num_layers)]

    def __len__(self) -> int:
        return len(self.self_attention[0])

    def reorder(self, rows: torch.Tensor) -> None:
        """Beam search: row j of the batch continues the hypothesis that was row ``rows[j]``. Only the
        self-attention caches move: a beam moves only among the beams of its own sentence, which share one
        memory, so the cross-attention caches are the same whichever beam a row holds."""
        for cache in self.self_attention:
            cache.reorder(rows)


class TransformerDecoder(nn.Module):
    """The decoder stack: N identical layers (§3.1). Equals ``nn.TransformerDecoder(layer, N, norm=None)`` with a
    causal target mask."""

    grad_checkpointing = False  # Transformer.set_grad_checkpointing

    def __init__(self, num_layers: int, d_model: int, num_heads: int, d_ff: int, dropout: float = 0.1,
                 attention_dropout: float = 0.0, layer_norm_eps: float = 1e-5) -> None:
        super().__init__()
        self.layers = nn.ModuleList([
            TransformerDecoderLayer(d_model, num_heads, d_ff, dropout, attention_dropout, layer_norm_eps)
            for _ in range(num_layers)])

    def forward(self, y: torch.Tensor, memory: torch.Tensor, source_mask: torch.Tensor | None = None,
                cache: DecoderCache | None = None) -> torch.Tensor:
        for i, layer in enumerate(self.layers):
            if cache is None and checkpointing(self):
                y = checkpoint_module(layer, y, memory, source_mask)
                continue
            y = layer(y, memory, source_mask,
                      self_cache=None if cache is None else cache.self_attention[i],
                      cross_cache=None if cache is None else cache.cross_attention[i])
        return y  # (N, T, d_model)


class Transformer(nn.Module):
    """The Transformer (Figure 1, Table 3): an encoder-decoder translation model with one shared vocabulary.

    Args:
        vocab_size: V, the shared source-target vocabulary (source, target and output all use it).
        d_model: the width of every embedding, sub-layer output and residual stream.
        num_heads: h, attention heads per attention sub-layer (d_k = d_v = d_model / h).
        d_ff: the inner width of the position-wise feed-forward networks.
        num_encoder_layers, num_decoder_layers: N, the depth of each stack.
        dropout: P_drop, on each sub-layer's output and on the embeddings plus positional encodings.
        attention_dropout: dropout on the attention probabilities (not in the paper; 0).
        label_smoothing: ε_ls of :meth:`loss`.
        layer_norm_eps: LayerNorm's ε (not stated by the paper).
        bos_id, pad_id, eos_id: the ids of ``<s>`` (the decoder's first input), ``<pad>`` and ``</s>``.

    ``forward(src, tgt)`` is the teacher-forced pass: ``src`` (N, S) and the target shifted right ``tgt`` (N, T),
    starting with ``<s>``, give next-token logits (N, T, V). ``loss(src, tgt)`` shifts a whole target itself.
    ``generate`` and ``beam_search`` translate (call ``model.eval()`` first).

    ``set_grad_checkpointing()`` checkpoints each encoder and decoder layer in training.
    """

    model_name = "transformer"

    def __init__(
        self,
        vocab_size: int = 37000,
        d_model: int = 512,
        num_heads: int = 8,
        d_ff: int = 2048,
        num_encoder_layers: int = 6,
        num_decoder_layers: int = 6,
        dropout: float = 0.1,
        attention_dropout: float = 0.0,
        label_smoothing: float = 0.1,
        layer_norm_eps: float = 1e-5,
        bos_id: int = 0,
        pad_id: int = 1,
        eos_id: int = 2,
    ) -> None:
        super().__init__()
        if len({bos_id, pad_id, eos_id}) != 3 or not all(0 <= i < vocab_size for i in (bos_id, pad_id, eos_id)):
            raise ValueError(f"bos_id, pad_id and eos_id ({bos_id}, {pad_id}, {eos_id}) must be distinct ids "
                             f"in [0, {vocab_size})")
        self.vocab_size = self.target_vocab_size = vocab_size  # one shared vocabulary (§5.1)
        self.d_model = d_model
        self.label_smoothing = label_smoothing
        self.bos_id, self.pad_id, self.eos_id = bos_id, pad_id, eos_id
        # One matrix E for the source embedding, the target embedding and the pre-softmax projection (§3.4).
        self.embedding = nn.Embedding(vocab_size, d_model)
        self.dropout = nn.Dropout(dropout)
        self.encoder = TransformerEncoder(num_encoder_layers, d_model, num_heads, d_ff, dropout, attention_dropout,
                                          layer_norm_eps)
        self.decoder = TransformerDecoder(num_decoder_layers, d_model, num_heads, d_ff, dropout, attention_dropout,
                                          layer_norm_eps)
        self._init_weights()

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Checkpoint each encoder and decoder layer in training (not with a decoding cache): their activations
        are recomputed in the backward pass."""
        self.encoder.grad_checkpointing = self.decoder.grad_checkpointing = enable

    def _init_weights(self) -> None:
        for module in self.modules():
            if isinstance(module, nn.Linear):  # attention projections and feed-forward layers
                nn.init.xavier_uniform_(module.weight)
                nn.init.zeros_(module.bias)
        nn.init.normal_(self.embedding.weight, std=self.d_model ** -0.5)

    # --- the input checks ---------------------------------------------------------------------------------

    def _check_source(self, src: Any) -> None:
        check_token_batch(src, name=self.model_name, vocab_size=self.vocab_size, what="source token ids")
        if values_are_known(src):
            empty = ~(src != self.pad_id).any(dim=1)
            if empty.any():
                raise ValueError(
                    f"{self.model_name} expects source token ids as an integer tensor of shape (N, S) with at "
                    f"least one token that is not padding (id {self.pad_id}) per sentence; got {tuple(src.shape)}: "
                    f"sentence {int(empty.nonzero()[0])} is all padding, which leaves its queries nothing to attend "
                    "to; drop it from the batch")

    def _check_pair(self, src: Any, tgt: Any) -> None:
        self._check_source(src)
        check_token_batch(tgt, name=self.model_name, vocab_size=self.target_vocab_size, what="target token ids")
        if src.shape[0] != tgt.shape[0]:
            raise ValueError(
                f"{self.model_name} expects source and target token ids of shapes (N, S) and (N, T) with the same "
                f"batch size N; got {tuple(src.shape)} and {tuple(tgt.shape)}: pair each source sentence with "
                "its target")

    # --- the network --------------------------------------------------------------------------------------

    def embed(self, ids: torch.Tensor, offset: int = 0) -> torch.Tensor:
        """Ids (N, L) at positions ``offset …`` → E[ids] · √d_model + PE, with dropout (§3.4, §3.5, §5.4)."""
        x = self.embedding(ids) * math.sqrt(self.d_model)  # (N, L, d_model)
        encoding = positional_encoding(ids.shape[1], self.d_model, offset=offset, device=ids.device)  # (L, d_model)
        return self.dropout(x + encoding.to(x.dtype))

    def encode(self, src: torch.Tensor,
               attention_mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Source ids (N, S) → the memory (N, S, d_model) and the source padding mask (N, 1, 1, S): the source's
        non-``<pad>`` tokens, or ``attention_mask``'s ones."""
        real = (src != self.pad_id) if attention_mask is None else attention_mask.bool()
        source_mask = real[:, None, None, :]  # True = may be attended to; broadcasts over heads
        return self.encoder(self.embed(src), source_mask), source_mask

    def decode(self, tgt: torch.Tensor, memory: torch.Tensor, source_mask: torch.Tensor,
               cache: DecoderCache | None = None) -> torch.Tensor:
        """Target ids (N, T) → next-token logits (N, T, V). With ``cache``, ``tgt`` holds only the new positions,
        which follow the ``len(cache)`` positions decoded before."""
        offset = 0 if cache is None else len(cache)
        y = self.decoder(self.embed(tgt, offset), memory, source_mask, cache)  # (N, T, d_model)
        return F.linear(y, self.embedding.weight)  # the pre-softmax linear transformation shares E: (N, T, V)

    def forward(self, src: torch.Tensor, tgt: torch.Tensor) -> torch.Tensor:
        """Teacher forcing: source ids (N, S), target ids shifted right (N, T) → next-token logits (N, T, V)."""
        self._check_pair(src, tgt)
        memory, source_mask = self.encode(src)
        return self.decode(tgt, memory, source_mask)

    def loss(self, src: torch.Tensor, tgt: torch.Tensor) -> torch.Tensor:
        """The training objective: label-smoothed cross-entropy (ε_ls = ``label_smoothing``) of every next target
        token. ``tgt`` (N, T ≥ 2) is the whole target, ``<s> y₁ … yₙ </s>`` padded on the right: the decoder reads
        ``tgt[:, :-1]`` and predicts ``tgt[:, 1:]``; padded positions are ignored."""
        self._check_pair(src, tgt)
        if tgt.shape[1] < 2:
            raise ValueError(f"{self.model_name} expects target token ids of shape (N, T) with T >= 2 for the loss "
                             f"(<s> and at least one token to predict); got {tuple(tgt.shape)}")
        logits = self(src, tgt[:, :-1])
        return label_smoothed_cross_entropy(logits, tgt[:, 1:], self.label_smoothing, ignore_index=self.pad_id)

    # --- decoding ---------------------------------------------------------------------------------------------

    def _next_token_log_probs(self, tokens: torch.Tensor, memory: torch.Tensor, source_mask: torch.Tensor,
                              cache: DecoderCache | None) -> torch.Tensor:
        """log P(next token | tokens so far, source), (N, V), from the last position. With a cache only the
        newest token goes through the decoder; without one, the whole prefix is decoded again."""
        logits = self.decode(tokens[:, -1:] if cache is not None else tokens, memory, source_mask, cache)[:, -1]
        log_probs = logits.float().log_softmax(dim=-1)
        log_probs[:, [self.bos_id, self.pad_id]] = -math.inf  # never generated
        return log_probs

    def _decoder(self, src: torch.Tensor, attention_mask: torch.Tensor | None,
                 use_cache: bool) -> tuple[Any, decoding.Step, decoding.Reorder]:
        """The decoder as the shared decoding routine sees it: its state after encoding ``src``, the step (the
        next-token log-probabilities of each row) and the reordering of the state between beams."""
        self._check_source(src)
        if attention_mask is not None:
            check_attention_mask(attention_mask, name=self.model_name, shape=tuple(src.shape))
        memory, source_mask = self.encode(src, attention_mask)
        state = (memory, source_mask, DecoderCache(len(self.decoder.layers)) if use_cache else None)

        def step(ids: torch.Tensor, state: tuple) -> tuple[torch.Tensor, tuple]:
            return self._next_token_log_probs(ids, *state), state

        def reorder(state: tuple, rows: torch.Tensor) -> tuple:
            memory, source_mask, cache = state
            if cache is not None:
                cache.reorder(rows)
            if len(rows) != len(memory):  # each sentence to its beams; later, rows move only among a sentence's beams,
                memory, source_mask = memory.index_select(0, rows), source_mask.index_select(0, rows)  # one memory
            return memory, source_mask, cache

        return state, step, reorder

    def _length_limits(self, src: torch.Tensor, attention_mask: torch.Tensor | None,
                       extra_length: int) -> torch.Tensor:
        real = (src != self.pad_id) if attention_mask is None else attention_mask.bool()
        return real.sum(dim=1) + extra_length  # "maximum output length to input length + 50" (§6.1)

    @torch.no_grad()
    def generate(self, input_ids: torch.Tensor, max_new_tokens: int | torch.Tensor | None = None, *,
                 do_sample: bool = False, temperature: float = 1.0, top_k: int | None = None,
                 top_p: float | None = None, num_beams: int = 4, length_penalty: float = 0.6,
                 eos_token_id: int | None = None, pad_token_id: int | None = None,
                 attention_mask: torch.Tensor | None = None, use_cache: bool = True,
                 generator: torch.Generator | None = None) -> torch.Tensor:
        """Translate the source ids ``input_ids`` ``(N, S)``: the target ids ``(N, 1 + L)``, from ``<s>`` to
        ``</s>``, padded with ``<pad>`` after it.

        The keywords are transformers' (:func:`paperzoo.layers.decoding.generate`); the defaults are the paper's
        (§6.1): a beam of 4, length penalty α = 0.6 (Wu et al.'s lp, :func:`gnmt_length_penalty`), at most each
        sentence's source length + 50 tokens.
        ``num_beams=1`` decodes greedily, ``do_sample`` samples. ``attention_mask`` (1 at real source tokens)
        replaces the mask of the source's ``<pad>`` tokens.
        """
        state, step, reorder = self._decoder(input_ids, attention_mask, use_cache)
        if max_new_tokens is None:
            max_new_tokens = self._length_limits(input_ids, attention_mask, 50)
        start = input_ids.new_full((input_ids.shape[0], 1), self.bos_id)  # every translation starts with <s>
        return decoding.generate(step, start, state, reorder, max_new_tokens=max_new_tokens, do_sample=do_sample,
                                 temperature=temperature, top_k=top_k, top_p=top_p, num_beams=num_beams,
                                 length_penalty=functools.partial(gnmt_length_penalty, alpha=length_penalty),
                                 early_stopping="never",
                                 eos_token_id=self.eos_id if eos_token_id is None else eos_token_id,
                                 pad_token_id=self.pad_id if pad_token_id is None else pad_token_id,
                                 generator=generator)

    @torch.no_grad()
    def beam_search(self, src: torch.Tensor, *, beam_size: int = 4, length_penalty: float = 0.6,
                    extra_length: int = 50, use_cache: bool = True,
                    return_scores: bool = False) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Beam search as the paper (§6.1), through :meth:`generate`'s routine: the best translation of each
        sentence without ``<s>`` ``(N, L)``, padded with ``<pad>``, and with ``return_scores`` its score
        log P(Y | X) / lp(Y) ``(N,)``. A sentence stops at its source length + ``extra_length`` tokens."""
        state, step, reorder = self._decoder(src, None, use_cache)
        start = src.new_full((src.shape[0], 1), self.bos_id)
        results = decoding.beam_search(step, start, state, reorder, num_beams=beam_size,
                                       max_new_tokens=self._length_limits(src, None, extra_length),
                                       length_penalty=functools.partial(gnmt_length_penalty, alpha=length_penalty),
                                       early_stopping="never",
                                       eos_token_id=self.eos_id)
        best = [hypotheses[0] for hypotheses in results]
        outputs = [h.tokens + ([self.eos_id] if h.finished else []) for h in best]
        out = src.new_full((len(outputs), max(map(len, outputs))), self.pad_id)
        for i, tokens in enumerate(outputs):
            out[i, :len(tokens)] = torch.tensor(tokens, dtype=out.dtype)
        if return_scores:
            return out, torch.tensor([h.score for h in best])
        return out


# --- training: the loss and the learning-rate schedule of §5 ---------------------------------------------------

def label_smoothed_cross_entropy(logits: torch.Tensor, targets: torch.Tensor, smoothing: float = 0.1,
                                 ignore_index: int | None = None) -> torch.Tensor:
    """Cross-entropy against the smoothed target distribution q'(k) = (1 − ε) δ(k, y) + ε u(k), u(k) = 1/K
    (label smoothing, Szegedy et al. 2016; ε_ls = 0.1 in §5.4), averaged over the positions whose target is not
    ``ignore_index``. ``logits`` (..., K), ``targets`` (...)."""
    log_probs = logits.float().log_softmax(dim=-1)
    nll = -log_probs.gather(-1, targets.unsqueeze(-1)).squeeze(-1)  # −log p(y)
    uniform = -log_probs.mean(dim=-1)  # −Σ_k u(k) log p(k): the cross-entropy with the uniform distribution
    loss = (1 - smoothing) * nll + smoothing * uniform
    if ignore_index is None:
        return loss.mean()
    keep = targets != ignore_index
    return (loss * keep).sum() / keep.sum()


def learning_rate(step: int, d_model: int, warmup_steps: int = 4000) -> float:
    """lrate = d_model^−0.5 · min(step_num^−0.5, step_num · warmup_steps^−1.5) (eq. 3, §5.3), ``step`` from 1:
    linear warm-up for ``warmup_steps`` steps, then decay with the inverse square root of the step number."""
    if step < 1:
        raise ValueError(f"the schedule counts steps from 1, got {step}")
    return d_model ** -0.5 * min(step ** -0.5, step * warmup_steps ** -1.5)


def lr_scheduler(optimizer: torch.optim.Optimizer, d_model: int,
                 warmup_steps: int = 4000) -> torch.optim.lr_scheduler.LambdaLR:
    """The schedule of eq. 3 as a ``LambdaLR``: call ``scheduler.step()`` after every ``optimizer.step()``. The
    optimizer's own ``lr`` multiplies the rate: 1.0 (as :func:`adam_optimizer` sets it) gives the paper's."""
    # LambdaLR asks for factor k before the (k + 1)-th optimizer step, the paper's step_num = k + 1.
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda k: learning_rate(k + 1, d_model, warmup_steps))


def adam_optimizer(parameters: Iterable[torch.nn.Parameter]) -> torch.optim.Adam:
    """Adam with β₁ = 0.9, β₂ = 0.98, ε = 10⁻⁹ (§5.3), lr 1.0 for :func:`lr_scheduler` to scale."""
    return torch.optim.Adam(parameters, lr=1.0, betas=(0.9, 0.98), eps=1e-9)


# --- the registered variants ---------------------------------------------------------------------------------

_PAPER = Paper(
    title="Attention Is All You Need",
    authors="Ashish Vaswani, Noam Shazeer, Niki Parmar, Jakob Uszkoreit, Llion Jones, Aidan N. Gomez, "
            "Łukasz Kaiser, Illia Polosukhin",
    year=2017,
    url="https://arxiv.org/abs/1706.03762",
)
_INNOVATIONS = (
    "attention only: no recurrence, no convolution; any two positions interact in one step",
    "scaled dot-product attention softmax(QK^T/sqrt(d_k))V, run as h heads on d_model/h-wide projections",
    "post-norm residual sub-layers LayerNorm(x + Sublayer(x)) with a position-wise ReLU feed-forward network",
    "sinusoidal positional encodings added to embeddings scaled by sqrt(d_model)",
    "one embedding matrix shared by source, target and the pre-softmax projection",
    "warm-up then inverse-square-root learning rate, label smoothing 0.1, beam search with length penalty",
)
_VOCAB_SIZE = 37000  # "a shared source-target vocabulary of about 37000 tokens" (§5.1), taken as it is


def _card(name: str, architecture: str, params: int, derivation: str, paper_params: str, gmacs: float,
          canonical: bool = False) -> ModelCard:
    return ModelCard(
        name=name,
        architecture=architecture,
        task="translation",
        paper=_PAPER,
        innovations=_INNOVATIONS,
        input=InputSpec(kind="token-pairs", shape=(16, 16), dtype=torch.int64, vocab_size=_VOCAB_SIZE,
                        target_vocab_size=_VOCAB_SIZE),
        params=params,
        params_source=f"derived from the paper's configuration (Table 3) with a shared, tied vocabulary of exactly "
                      f"37,000 tokens (§5.1: 'about 37000'): {derivation}. The paper prints {paper_params}, which no "
                      "single vocabulary reproduces together with the other variant's figure (see the module "
                      "docstring)",
        reference="paper",
        gmacs=gmacs,
        canonical=canonical,
        notes="forward(src, tgt) takes source ids and the target shifted right (<s> = 0, <pad> = 1, </s> = 2) and "
              "returns next-token logits over the shared vocabulary; loss(src, tgt) is the label-smoothed "
              "objective; generate(src) translates as the paper (beam 4, length penalty 0.6; num_beams=1 is greedy).",
    )


@register(_card("transformer_base", "Transformer (base)", params=63_082_496,
                derivation="44,138,496 in the 6 + 6 layers + 37,000 x 512 in the embedding", paper_params="65M",
                gmacs=1.012, canonical=True))
def transformer_base(**kwargs: Any) -> Transformer:
    """The base model: N = 6, d_model = 512, d_ff = 2048, h = 8, P_drop = 0.1, ε_ls = 0.1."""
    return Transformer(**{"vocab_size": _VOCAB_SIZE, "d_model": 512, "d_ff": 2048, "num_heads": 8,
                          "num_encoder_layers": 6, "num_decoder_layers": 6, "dropout": 0.1, **kwargs})


@register(_card("transformer_big", "Transformer (big)", params=214_245_376,
                derivation="176,357,376 in the 6 + 6 layers + 37,000 x 1024 in the embedding", paper_params="213M",
                gmacs=3.434))
def transformer_big(**kwargs: Any) -> Transformer:
    """The big model: N = 6, d_model = 1024, d_ff = 4096, h = 16, P_drop = 0.3 (English-German; 0.1 for
    English-French, §6.1), ε_ls = 0.1."""
    return Transformer(**{"vocab_size": _VOCAB_SIZE, "d_model": 1024, "d_ff": 4096, "num_heads": 16,
                          "num_encoder_layers": 6, "num_decoder_layers": 6, "dropout": 0.3, **kwargs})


if __name__ == "__main__":
    from paperzoo.cli import main

    main(["run", "transformer_base"])
