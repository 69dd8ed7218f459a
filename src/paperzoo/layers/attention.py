"""Multi-head attention (Vaswani et al., "Attention Is All You Need", NeurIPS 2017, arXiv:1706.03762, §3.2),
the one attention module of the zoo, computed by ``torch.nn.functional.scaled_dot_product_attention``.

Scaled dot-product attention (eq. 1): Attention(Q, K, V) = softmax(QKᵀ / √d_k + M) V, where the optional
mask M is added to the logits before the softmax (−∞ forbids a pair; a finite value, such as Swin's relative
position bias B, only shifts it). Multi-head attention runs h of these side by side on d_k = d_model / h wide
projections and mixes the heads with W_O: MultiHead(Q, K, V) = Concat(head_1, …, head_h) W_O with
head_i = Attention(Q W_i^Q, K W_i^K, V W_i^V). ``F.scaled_dot_product_attention`` picks a fused kernel
(FlashAttention, memory-efficient attention, or the CPU flash kernel) when the inputs allow one, so every
model that attends through this module gets it.

How the architectures of the zoo use it (one module, three patterns):

* self-attention (ViT, Swin, BERT, the Transformer's encoder): ``attention(x)``. The query, key and value
  projections are one packed ``qkv`` layer, so self-attention is one matrix product.
* causal self-attention (GPT, the Transformer's decoder): ``attention(x, is_causal=True)``. To generate
  token by token, keep one :class:`KeyValueCache` per layer and pass it as ``cache=``: the layer appends the
  new tokens' keys and values and attends over everything cached. A causal query block that is shorter than
  the keys is aligned to the *end* of the keys (the new tokens are the last ones), which is not what SDPA's
  own ``is_causal`` does (it aligns to the start), so this module builds that mask itself.
* cross-attention (the Transformer's decoder, attention-based seq2seq): ``attention(y, key_value=memory)``:
  the queries come from ``y``, the keys and values from ``memory`` (the encoder's output), through the same
  packed weights (rows ``[0, d)`` project queries, rows ``[d, 3d)`` keys and values), as
  ``torch.nn.MultiheadAttention`` does. Both sequences have the model's width d_model, as in the paper.
  A decoder that generates token by token passes a :class:`KeyValueCache` here too: the memory does not
  change between steps, so its keys and values are projected on the first call, kept, and reused.
* padding (BERT): pass ``attn_mask`` of shape ``(N, 1, 1, S)``, ``True`` at real tokens.

Masks follow SDPA's convention, which is the opposite of ``torch.nn.MultiheadAttention``'s for booleans:
a boolean ``True`` means "may attend"; a float mask is added to the logits. A mask broadcasts to
``(N, num_heads, L, S)``. A query whose every key is masked out gets NaN (a softmax over nothing).

Converting weights: ``torch.nn.MultiheadAttention``'s ``in_proj_weight``/``in_proj_bias`` are ``qkv``'s
(rows ordered query, key, value) and its ``out_proj`` is ``proj``; separate query/key/value layers
(Hugging Face BERT) are concatenated along the output dimension in that order; GPT-2's ``Conv1D`` layers
store the transposed matrices.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F  # F.scaled_dot_product_attention is looked up at call time: tests can watch it

__all__ = ["KeyValueCache", "MultiHeadAttention"]


class KeyValueCache:
    """The keys and values a causal attention layer has already computed, one cache per layer.

    Generating token t then costs one query against t cached keys instead of recomputing all of them.
    ``update`` appends along the sequence axis and returns everything cached so far; ``len(cache)`` is the
    number of cached positions (the position index of the next token).
    """

    def __init__(self) -> None:
        self.key: torch.Tensor | None = None  # (N, heads, T, d_k)
        self.value: torch.Tensor | None = None  # (N, heads, T, d_v)

    def __len__(self) -> int:
        return 0 if self.key is None else self.key.shape[-2]

    def update(self, key: torch.Tensor, value: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.key is None or self.value is None:
            self.key, self.value = key, value
        else:
            self.key = torch.cat([self.key, key], dim=-2)
            self.value = torch.cat([self.value, value], dim=-2)
        return self.key, self.value

    def reorder(self, indices: torch.Tensor) -> None:
        """Keep the cached rows ``indices`` of the batch, in that order (beam search: each surviving hypothesis
        takes over the keys and values of the hypothesis it extends)."""
        if self.key is not None and self.value is not None:
            self.key = self.key.index_select(0, indices)
            self.value = self.value.index_select(0, indices)


class MultiHeadAttention(nn.Module):
    """Multi-head scaled dot-product attention on ``F.scaled_dot_product_attention``.

    Args:
        embed_dim: d_model, the width of the queries, keys, values and output.
        num_heads: h; each head attends with d_k = d_v = embed_dim / h.
        bias: whether the projections have biases (all the zoo's models do).
        attention_dropout: dropout on the attention probabilities, applied in training only.

    Submodules: ``qkv``, the packed projections [W^Q; W^K; W^V] (``3 * embed_dim`` outputs), and ``proj``, W_O.
    Initialised as ``torch.nn.MultiheadAttention``: Xavier-uniform ``qkv`` (as one matrix), zero biases,
    ``proj`` as a default ``nn.Linear``. Models re-initialise as their reference does.
    """

    def __init__(self, embed_dim: int, num_heads: int, *, bias: bool = True, attention_dropout: float = 0.0) -> None:
        super().__init__()
        if embed_dim % num_heads != 0:
            raise ValueError(f"embed_dim ({embed_dim}) must be divisible by num_heads ({num_heads})")
        self.embed_dim = embed_dim
        self.num_heads = num_heads
        self.head_dim = embed_dim // num_heads
        self.attention_dropout = attention_dropout
        self.qkv = nn.Linear(embed_dim, 3 * embed_dim, bias=bias)
        self.proj = nn.Linear(embed_dim, embed_dim, bias=bias)
        nn.init.xavier_uniform_(self.qkv.weight)
        if bias:
            nn.init.zeros_(self.qkv.bias)
            nn.init.zeros_(self.proj.bias)

    def split_heads(self, x: torch.Tensor) -> torch.Tensor:
        """(N, L, h·d) → (N, h, L, d): each head sees its own d-wide slice of the projection."""
        n, length, _ = x.shape
        return x.view(n, length, self.num_heads, self.head_dim).transpose(1, 2)

    def forward(
        self,
        query: torch.Tensor,
        key_value: torch.Tensor | None = None,
        *,
        attn_mask: torch.Tensor | None = None,
        is_causal: bool = False,
        cache: KeyValueCache | None = None,
    ) -> torch.Tensor:
        """Attend from ``query`` (N, L, d_model) to ``key_value`` (N, S, d_model), itself if ``None``.

        Args:
            attn_mask: boolean (``True`` = may attend) or float (added to the logits), broadcastable to
                (N, num_heads, L, S).
            is_causal: position i attends to keys up to its own position only (aligned to the end of the keys
                when a cache holds earlier positions).
            cache: a :class:`KeyValueCache` the new keys and values are appended to, and attended over. With
                ``key_value`` (cross-attention) the cache holds the keys and values of ``key_value`` instead:
                projected on the first call, reused as they are on every later one.

        Returns (N, L, d_model).
        """
        if key_value is None:  # self-attention: one product with the packed weights
            q, k, v = self.qkv(query).chunk(3, dim=-1)  # 3 × (N, L, d_model)
            q, k, v = self.split_heads(q), self.split_heads(k), self.split_heads(v)  # (N, h, L, d)
            if cache is not None:
                k, v = cache.update(k, v)  # (N, h, S, d): the cached positions, then the new ones
        else:  # cross-attention: queries from one sequence, keys and values from another
            d = self.embed_dim
            bias = self.qkv.bias
            q = self.split_heads(F.linear(query, self.qkv.weight[:d], None if bias is None else bias[:d]))
            if cache is not None and cache.key is not None and cache.value is not None:
                k, v = cache.key, cache.value  # the memory's, projected at the first step: (N, h, S, d)
            else:
                k, v = F.linear(key_value, self.qkv.weight[d:], None if bias is None else bias[d:]).chunk(2, dim=-1)
                k, v = self.split_heads(k), self.split_heads(v)  # (N, h, S, d)
                if cache is not None:
                    cache.update(k, v)
        if is_causal and (attn_mask is not None or q.shape[-2] != k.shape[-2]):
            attn_mask, is_causal = causal_mask(q.shape[-2], k.shape[-2], attn_mask, q.device), False
        out = F.scaled_dot_product_attention(
            q, k, v, attn_mask=attn_mask, is_causal=is_causal,
            dropout_p=self.attention_dropout if self.training else 0.0,
        )  # softmax(QKᵀ/√d_k + M) V, per head: (N, h, L, d)
        # Concat(head_1, …, head_h): (N, L, h·d). The copy makes the merge of the heads a view whatever layout
        # SDPA's kernel returned: CPU's flash kernel returns (N, L, h, d) in memory, its math decomposition (what
        # torch.onnx runs) (N, h, L, d), and a graph exported with the first would otherwise fail in the second.
        out = out.transpose(1, 2).clone(memory_format=torch.contiguous_format).flatten(2)
        return self.proj(out)  # · W_O

    def extra_repr(self) -> str:
        return f"embed_dim={self.embed_dim}, num_heads={self.num_heads}, attention_dropout={self.attention_dropout}"


def causal_mask(query_length: int, key_length: int, attn_mask: torch.Tensor | None,
                device: torch.device) -> torch.Tensor:
    """The causal mask for L queries that are the *last* L of S positions, combined with ``attn_mask``.

    Query i sits at position S − L + i and may attend to keys 0 … S − L + i: a lower-triangular (L, S)
    boolean mask shifted right by S − L. (SDPA's own ``is_causal`` shifts by 0, right only when L = S.)
    """
    allowed = torch.ones(query_length, key_length, dtype=torch.bool, device=device).tril(key_length - query_length)
    if attn_mask is None:
        return allowed
    if attn_mask.dtype == torch.bool:
        return attn_mask & allowed
    return torch.where(allowed, attn_mask, -math.inf)  # broadcasts both, e.g. (N, 1, 1, S) with (L, S)
