"""The shared multi-head attention against torch.nn.MultiheadAttention with the same weights (with and without
masks, self- and cross-attention), its key/value cache against full causal attention, its dropout, and that
it computes through F.scaled_dot_product_attention."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from conftest import assert_close_rel
from paperzoo.layers import KeyValueCache, MultiHeadAttention

EMBED_DIM, NUM_HEADS = 32, 4


def pair(seed: int = 0, dropout: float = 0.0) -> tuple[MultiHeadAttention, nn.MultiheadAttention]:
    """Ours and torch's, with the same random weights (biases too, so that a swapped bias would show)."""
    torch.manual_seed(seed)
    reference = nn.MultiheadAttention(EMBED_DIM, NUM_HEADS, dropout=dropout, batch_first=True)
    with torch.no_grad():
        reference.in_proj_bias.normal_()
        reference.out_proj.bias.normal_()
    ours = MultiHeadAttention(EMBED_DIM, NUM_HEADS, attention_dropout=dropout)
    ours.load_state_dict({"qkv.weight": reference.in_proj_weight, "qkv.bias": reference.in_proj_bias,
                          "proj.weight": reference.out_proj.weight, "proj.bias": reference.out_proj.bias})
    return ours.eval(), reference.eval()


def inputs(batch: int = 2, length: int = 5, seed: int = 1) -> torch.Tensor:
    return torch.randn(batch, length, EMBED_DIM, generator=torch.Generator().manual_seed(seed))


def test_self_attention_without_mask():
    ours, reference = pair()
    x = inputs()
    assert_close_rel(ours(x), reference(x, x, x, need_weights=False)[0])


def test_float_and_boolean_masks():
    ours, reference = pair()
    x = inputs(length=6)
    generator = torch.Generator().manual_seed(2)
    additive = torch.randn(6, 6, generator=generator)  # (L, S), as Swin's bias
    assert_close_rel(ours(x, attn_mask=additive), reference(x, x, x, attn_mask=additive, need_weights=False)[0])

    allowed = torch.rand(6, 6, generator=generator) > 0.4
    allowed |= torch.eye(6, dtype=torch.bool)  # every query keeps one key
    # SDPA's booleans say "may attend", nn.MultiheadAttention's say "masked out": the same mask, negated.
    assert_close_rel(ours(x, attn_mask=allowed), reference(x, x, x, attn_mask=~allowed, need_weights=False)[0])

    per_head = torch.randn(2, NUM_HEADS, 6, 6, generator=generator)  # (N, h, L, S) vs torch's (N·h, L, S)
    expected = reference(x, x, x, attn_mask=per_head.flatten(0, 1), need_weights=False)[0]
    assert_close_rel(ours(x, attn_mask=per_head), expected)


def test_key_padding_as_a_broadcast_mask():
    ours, reference = pair()
    x = inputs(length=6)
    padding = torch.tensor([[False] * 6, [False] * 4 + [True] * 2])  # (N, S), True at padding, torch's way
    expected = reference(x, x, x, key_padding_mask=padding, need_weights=False)[0]
    assert_close_rel(ours(x, attn_mask=~padding[:, None, None, :]), expected)  # (N, 1, 1, S), True = attend


def test_causal_self_attention():
    ours, reference = pair()
    x = inputs(length=7)
    future = torch.ones(7, 7, dtype=torch.bool).triu(1)
    expected = reference(x, x, x, attn_mask=future, need_weights=False)[0]
    assert_close_rel(ours(x, is_causal=True), expected)
    # causal and padding together (GPT on a padded batch)
    padding = torch.tensor([[False] * 7, [False] * 5 + [True] * 2])
    expected = reference(x, x, x, attn_mask=future, key_padding_mask=padding, need_weights=False)[0]
    assert_close_rel(ours(x, attn_mask=~padding[:, None, None, :], is_causal=True), expected)
    float_padding = torch.zeros(2, 1, 1, 7).masked_fill(padding[:, None, None, :], float("-inf"))
    assert_close_rel(ours(x, attn_mask=float_padding, is_causal=True), expected)


def test_cross_attention_takes_queries_and_keys_from_different_sequences():
    ours, reference = pair()
    queries, memory = inputs(length=3, seed=1), inputs(length=8, seed=2)
    assert_close_rel(ours(queries, memory), reference(queries, memory, memory, need_weights=False)[0])
    mask = torch.randn(3, 8, generator=torch.Generator().manual_seed(3))
    expected = reference(queries, memory, memory, attn_mask=mask, need_weights=False)[0]
    assert_close_rel(ours(queries, memory, attn_mask=mask), expected)


def test_key_value_cache_gives_the_full_causal_output():
    ours, _ = pair()
    x = inputs(length=7)
    full = ours(x, is_causal=True)
    # one token at a time
    cache = KeyValueCache()
    steps = [ours(x[:, t:t + 1], is_causal=True, cache=cache) for t in range(7)]
    assert len(cache) == 7
    assert_close_rel(torch.cat(steps, dim=1), full)
    # a prompt of 4, then a block of 3: the block's causal mask must be aligned to the end of the keys
    cache = KeyValueCache()
    prompt = ours(x[:, :4], is_causal=True, cache=cache)
    block = ours(x[:, 4:], is_causal=True, cache=cache)
    assert_close_rel(torch.cat([prompt, block], dim=1), full)


def test_attention_dropout_only_in_training(monkeypatch):
    ours, _ = pair(dropout=0.5)
    plain, _ = pair(dropout=0.0)
    x = inputs()
    seen = []
    sdpa = F.scaled_dot_product_attention

    def spy(*args, **kwargs):
        seen.append(kwargs["dropout_p"])
        return sdpa(*args, **kwargs)

    monkeypatch.setattr(F, "scaled_dot_product_attention", spy)
    assert torch.equal(ours(x), plain(x))  # eval: no dropout
    ours.train()
    torch.manual_seed(0)
    first = ours(x)
    second = ours(x)
    assert not torch.allclose(first, second) and not torch.allclose(first, plain(x))
    assert seen == [0.0, 0.0, 0.5, 0.5, 0.0]


def test_it_computes_through_scaled_dot_product_attention(monkeypatch):
    ours, _ = pair()
    calls = []

    def fake(query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False, **kwargs):
        calls.append((query.shape, key.shape, is_causal))
        return torch.zeros_like(query)

    monkeypatch.setattr(F, "scaled_dot_product_attention", fake)
    out = ours(inputs(length=5), is_causal=True)
    head_dim = EMBED_DIM // NUM_HEADS
    assert calls == [((2, NUM_HEADS, 5, head_dim), (2, NUM_HEADS, 5, head_dim), True)]
    assert torch.equal(out, ours.proj.bias.expand_as(out))  # whatever SDPA returns is what gets projected


def test_width_must_split_into_heads():
    with pytest.raises(ValueError, match="divisible by num_heads"):
        MultiHeadAttention(30, 4)
