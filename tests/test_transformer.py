"""The Transformer (Vaswani et al. 2017) beyond the contract tests.

Parity: its encoder and decoder layers and stacks equal torch.nn's after converting torch.nn's weights, and the
whole model equals a composition of torch.nn modules with the paper's embedding scale, sinusoids and tied output.
The paper's formulas: positional encodings, the learning-rate schedule, label smoothing. Masks: padding and
causality reach F.scaled_dot_product_attention and hide what they must. Decoding: greedy and beam search with
and without the key/value cache agree; beam search finds the exhaustive optimum of the length-penalised score
on a tiny vocabulary; the maximum length is the source length + 50. Bad input. Learning is tested through
`paperzoo train` (tests/test_train_translation.py: the small Transformer with the paper's recipe translates the
numerals).
"""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from torch import nn
from torch.nn import functional as F

import paperzoo
from conftest import assert_close_rel, assert_output_depends_on_input, randomize_weights
from paperzoo.layers import KeyValueCache, MultiHeadAttention
from paperzoo.models.language.transformer import (
    DecoderCache,
    Transformer,
    TransformerDecoder,
    TransformerDecoderLayer,
    TransformerEncoder,
    TransformerEncoderLayer,
    adam_optimizer,
    label_smoothed_cross_entropy,
    learning_rate,
    lr_scheduler,
    positional_encoding,
)

BOS, PAD, EOS = 0, 1, 2  # the model's defaults (fairseq's dictionary order)
D_MODEL, HEADS, D_FF = 32, 4, 64
SMALL = dict(vocab_size=13, d_model=D_MODEL, num_heads=HEADS, d_ff=D_FF, num_encoder_layers=2,
             num_decoder_layers=2, dropout=0.0)


def small_model(seed: int = 0, **kwargs) -> Transformer:
    torch.manual_seed(seed)
    return Transformer(**{**SMALL, **kwargs}).eval()


def paper_positional_encoding(length: int, d_model: int) -> torch.Tensor:
    """§3.5, entry by entry: PE(pos, 2i) = sin(pos / 10000^(2i/d_model)), PE(pos, 2i+1) = cos(...)."""
    table = [[0.0] * d_model for _ in range(length)]
    for pos in range(length):
        for i in range(d_model // 2):
            angle = pos / 10000 ** (2 * i / d_model)
            table[pos][2 * i], table[pos][2 * i + 1] = math.sin(angle), math.cos(angle)
    return torch.tensor(table)


def padded_batch() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Source (2, 7) whose second sentence has 2 padding positions, target (2, 5), both of non-special ids."""
    generator = torch.Generator().manual_seed(3)
    src = torch.randint(3, 13, (2, 7), generator=generator)
    src[1, 5:] = PAD
    tgt = torch.randint(3, 13, (2, 5), generator=generator)
    tgt[:, 0] = BOS
    return src, tgt, src == PAD


# --- parity with torch.nn --------------------------------------------------------------------------------------

def test_encoder_layer_equals_torch_nn():
    torch.manual_seed(0)
    reference = randomize_weights(nn.TransformerEncoderLayer(D_MODEL, HEADS, D_FF, dropout=0.0,
                                                             batch_first=True)).eval()
    ours = paperzoo.load_weights(TransformerEncoderLayer(D_MODEL, HEADS, D_FF, dropout=0.0), reference,
                                 source="torch").eval()
    x = torch.randn(2, 7, D_MODEL, generator=torch.Generator().manual_seed(1))
    padding = torch.tensor([[False] * 7, [False] * 5 + [True] * 2])  # torch's way: True at padding
    with torch.no_grad():
        expected = reference(x, src_key_padding_mask=padding)
        actual = ours(x, ~padding[:, None, None, :])  # SDPA's way: True where attention may go
    assert_output_depends_on_input(expected)
    assert_close_rel(actual, expected)


def test_decoder_layer_equals_torch_nn():
    torch.manual_seed(0)
    reference = randomize_weights(nn.TransformerDecoderLayer(D_MODEL, HEADS, D_FF, dropout=0.0,
                                                             batch_first=True)).eval()
    ours = paperzoo.load_weights(TransformerDecoderLayer(D_MODEL, HEADS, D_FF, dropout=0.0), reference,
                                 source="torch").eval()
    generator = torch.Generator().manual_seed(1)
    y, memory = torch.randn(2, 5, D_MODEL, generator=generator), torch.randn(2, 7, D_MODEL, generator=generator)
    padding = torch.tensor([[False] * 7, [False] * 4 + [True] * 3])
    causal = nn.Transformer.generate_square_subsequent_mask(5)
    with torch.no_grad():
        expected = reference(y, memory, tgt_mask=causal, tgt_is_causal=True, memory_key_padding_mask=padding)
        actual = ours(y, memory, ~padding[:, None, None, :])
    assert_output_depends_on_input(expected)
    assert_close_rel(actual, expected)


def test_stacks_equal_torch_nn_stacks_without_a_final_norm():
    torch.manual_seed(0)
    encoder_layer = nn.TransformerEncoderLayer(D_MODEL, HEADS, D_FF, dropout=0.0, batch_first=True)
    decoder_layer = nn.TransformerDecoderLayer(D_MODEL, HEADS, D_FF, dropout=0.0, batch_first=True)
    # enable_nested_tensor=False: the nested fast path writes zeros at padded positions instead of computing them
    encoder = randomize_weights(nn.TransformerEncoder(encoder_layer, 3, enable_nested_tensor=False)).eval()
    decoder = randomize_weights(nn.TransformerDecoder(decoder_layer, 3), seed=1).eval()
    our_encoder = paperzoo.load_weights(TransformerEncoder(3, D_MODEL, HEADS, D_FF, 0.0), encoder, source="torch")
    our_decoder = paperzoo.load_weights(TransformerDecoder(3, D_MODEL, HEADS, D_FF, 0.0), decoder, source="torch")
    generator = torch.Generator().manual_seed(2)
    x, y = torch.randn(2, 7, D_MODEL, generator=generator), torch.randn(2, 5, D_MODEL, generator=generator)
    padding = torch.tensor([[False] * 7, [False] * 6 + [True]])
    with torch.no_grad():
        memory = encoder(x, src_key_padding_mask=padding)
        expected = decoder(y, memory, tgt_mask=nn.Transformer.generate_square_subsequent_mask(5), tgt_is_causal=True,
                           memory_key_padding_mask=padding)
        our_memory = our_encoder.eval()(x, ~padding[:, None, None, :])
        actual = our_decoder.eval()(y, our_memory, ~padding[:, None, None, :])
    assert_close_rel(our_memory, memory)
    assert_output_depends_on_input(expected)
    assert_close_rel(actual, expected)


def test_a_stack_with_torch_nns_final_norm_does_not_load():
    # nn.Transformer's stacks end with an extra LayerNorm that the paper's post-norm stacks do not have.
    layer = nn.TransformerEncoderLayer(D_MODEL, HEADS, D_FF, batch_first=True)
    reference = nn.TransformerEncoder(layer, 2, norm=nn.LayerNorm(D_MODEL), enable_nested_tensor=False)
    with pytest.raises(ValueError, match=r"unexpected keys: norm\.bias, norm\.weight"):
        paperzoo.load_weights(TransformerEncoder(2, D_MODEL, HEADS, D_FF), reference, source="torch")


def test_torch_source_still_passes_other_classes_through():
    # Only the classes interop/torch_nn.py lists are renamed; any other keeps torch.nn's names as they are.
    reference = nn.MultiheadAttention(D_MODEL, HEADS, batch_first=True)
    weights = {"qkv.weight": reference.in_proj_weight, "qkv.bias": reference.in_proj_bias,
               "proj.weight": reference.out_proj.weight, "proj.bias": reference.out_proj.bias}
    ours = paperzoo.load_weights(MultiHeadAttention(D_MODEL, HEADS), weights, source="torch")
    assert torch.equal(ours.qkv.weight, reference.in_proj_weight)


def test_whole_model_equals_torch_nn_with_the_papers_embeddings():
    """Shared embedding E scaled by √d_model, the sinusoids, the padding and causal masks, and the output
    projection Eᵀ, composed from torch.nn modules and compared with the model on converted weights."""
    torch.manual_seed(0)
    embedding = nn.Embedding(13, D_MODEL)
    encoder = nn.TransformerEncoder(nn.TransformerEncoderLayer(D_MODEL, HEADS, D_FF, dropout=0.0, batch_first=True),
                                    2, enable_nested_tensor=False)
    decoder = nn.TransformerDecoder(nn.TransformerDecoderLayer(D_MODEL, HEADS, D_FF, dropout=0.0, batch_first=True),
                                    2)
    for module in (embedding, encoder, decoder):
        randomize_weights(module).eval()
    with torch.no_grad():
        embedding.weight.normal_(0.0, D_MODEL ** -0.5)  # the scale the model is initialised at
    weights = {"embedding.weight": embedding.weight,
               **{f"encoder.{k}": v for k, v in encoder.state_dict().items()},
               **{f"decoder.{k}": v for k, v in decoder.state_dict().items()}}
    model = paperzoo.load_weights(small_model(), weights, source="torch")
    src, tgt, padding = padded_batch()

    def embed(ids: torch.Tensor) -> torch.Tensor:
        return embedding(ids) * math.sqrt(D_MODEL) + paper_positional_encoding(ids.shape[1], D_MODEL)

    with torch.no_grad():
        memory = encoder(embed(src), src_key_padding_mask=padding)
        hidden = decoder(embed(tgt), memory, tgt_mask=nn.Transformer.generate_square_subsequent_mask(tgt.shape[1]),
                         tgt_is_causal=True, memory_key_padding_mask=padding)
        expected = hidden @ embedding.weight.T
        actual = model(src, tgt)
    assert_output_depends_on_input(expected)
    assert_close_rel(actual, expected)


# --- the paper's formulas ------------------------------------------------------------------------------------------

def test_positional_encoding_is_the_papers_sinusoids():
    assert_close_rel(positional_encoding(50, 16), paper_positional_encoding(50, 16), rtol=1e-6)
    # an offset continues the sequence: what the decoder's cache relies on
    assert torch.allclose(positional_encoding(5, 16, offset=45), positional_encoding(50, 16)[45:], atol=1e-6)


def test_parameter_count_is_the_layers_plus_one_shared_embedding():
    # Per layer (biases included): attention 4·d² + 4d, feed-forward 2·d·d_ff + d_ff + d, LayerNorm 2d each.
    d, d_ff, vocab = 512, 2048, 37000
    attention, feed_forward, norm = 4 * d * d + 4 * d, 2 * d * d_ff + d_ff + d, 2 * d
    encoder_layer, decoder_layer = attention + feed_forward + 2 * norm, 2 * attention + feed_forward + 3 * norm
    expected = 6 * encoder_layer + 6 * decoder_layer + vocab * d  # one V × d matrix: no output projection of its own
    with torch.device("meta"):
        model = paperzoo.create_model("transformer_base")
    assert paperzoo.count_parameters(model) == expected == paperzoo.model_card("transformer_base").params


def test_learning_rate_schedule_is_the_papers_formula():
    d_model, warmup = 512, 4000
    for step in (1, 100, 2000, 3999, 4000, 4001, 10_000, 100_000):
        expected = d_model ** -0.5 * min(step ** -0.5, step * warmup ** -1.5)  # eq. 3
        assert learning_rate(step, d_model, warmup) == pytest.approx(expected, rel=1e-12)
    # linear warm-up, the peak at warmup_steps, then the inverse square root
    assert learning_rate(2000, d_model) == pytest.approx(learning_rate(4000, d_model) / 2)
    assert learning_rate(16_000, d_model) == pytest.approx(learning_rate(4000, d_model) / 2)
    assert max(learning_rate(s, d_model) for s in range(1, 20_000)) == learning_rate(4000, d_model)
    with pytest.raises(ValueError, match="from 1"):
        learning_rate(0, d_model)


def test_lr_scheduler_gives_the_optimizer_the_papers_rate_at_every_step():
    parameter = nn.Parameter(torch.zeros(3))
    optimizer = adam_optimizer([parameter])
    assert optimizer.defaults["betas"] == (0.9, 0.98) and optimizer.defaults["eps"] == 1e-9  # §5.3
    scheduler = lr_scheduler(optimizer, d_model=64, warmup_steps=10)
    for step in range(1, 40):  # the rate the step-th optimizer step uses
        assert optimizer.param_groups[0]["lr"] == pytest.approx(64 ** -0.5 * min(step ** -0.5, step * 10 ** -1.5))
        parameter.sum().backward()
        optimizer.step()
        scheduler.step()


def test_label_smoothing_equals_torch_and_the_smoothed_distribution():
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 6, 11, generator=generator) * 3
    targets = torch.randint(3, 11, (3, 6), generator=generator)
    targets[1, 4:] = PAD
    ours = label_smoothed_cross_entropy(logits, targets, 0.1, ignore_index=PAD)
    torch_ = F.cross_entropy(logits.flatten(0, 1), targets.flatten(), label_smoothing=0.1, ignore_index=PAD)
    assert ours.item() == pytest.approx(torch_.item(), rel=1e-6)
    # q'(k) = (1 − ε) δ(k, y) + ε / K, the cross-entropy −Σ q' log p averaged over the real positions
    smoothed = F.one_hot(targets, 11).float() * 0.9 + 0.1 / 11
    per_position = -(smoothed * logits.log_softmax(-1)).sum(-1)
    keep = targets != PAD
    assert ours.item() == pytest.approx(per_position[keep].mean().item(), rel=1e-6)
    # without smoothing, plain cross-entropy
    plain = F.cross_entropy(logits.flatten(0, 1), targets.flatten(), ignore_index=PAD)
    assert label_smoothed_cross_entropy(logits, targets, 0.0, ignore_index=PAD).item() == pytest.approx(plain.item())


def test_loss_predicts_each_next_target_token():
    model = small_model()
    src, tgt, _ = padded_batch()
    tgt[1, 3:] = PAD  # a shorter second target: its padded positions are ignored
    logits = model(src, tgt[:, :-1])
    expected = F.cross_entropy(logits.flatten(0, 1), tgt[:, 1:].flatten(), label_smoothing=0.1, ignore_index=PAD)
    assert model.loss(src, tgt).item() == pytest.approx(expected.item(), rel=1e-6)


# --- masks -------------------------------------------------------------------------------------------------------

def test_padding_and_causal_masks_reach_scaled_dot_product_attention(monkeypatch):
    model = small_model()
    src, tgt, padding = padded_batch()
    calls = []
    sdpa = F.scaled_dot_product_attention

    def spy(query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False, **kwargs):
        calls.append((attn_mask, is_causal, key.shape[-2]))
        return sdpa(query, key, value, attn_mask=attn_mask, dropout_p=dropout_p, is_causal=is_causal, **kwargs)

    monkeypatch.setattr(F, "scaled_dot_product_attention", spy)
    with torch.no_grad():
        model(src, tgt)
    assert len(calls) == 2 + 2 * 2  # encoder self-attention ×2; decoder self- and cross-attention ×2
    source_mask = ~padding[:, None, None, :]  # (N, 1, 1, S): True = may attend
    encoder_calls, decoder_calls = calls[:2], calls[2:]
    for mask, is_causal, _ in encoder_calls:
        assert torch.equal(mask, source_mask) and not is_causal
    for (self_mask, self_causal, keys), (cross_mask, cross_causal, _) in zip(decoder_calls[::2], decoder_calls[1::2],
                                                                            strict=True):
        assert self_mask is None and self_causal and keys == tgt.shape[1]  # SDPA's own causal kernel
        assert torch.equal(cross_mask, source_mask) and not cross_causal


def test_padding_and_future_tokens_change_nothing_they_must_not():
    model = small_model()
    src, tgt, padding = padded_batch()
    with torch.no_grad():
        logits = model(src, tgt)
        other_padding = src.clone()
        other_padding[1, 5:] = 7  # the same sentence with other (unmasked) tokens in its padded slots
        assert not torch.allclose(model(other_padding, tgt)[1], logits[1])  # the mask is what hid them
        also_padded = torch.cat([src, torch.full((2, 3), PAD)], dim=1)  # more padding changes no real output
        assert_close_rel(model(also_padded, tgt), logits)
        future = tgt.clone()
        future[:, 3:] = 5  # later target tokens cannot reach earlier positions' predictions
        changed = model(src, future)
    assert_close_rel(changed[:, :3], logits[:, :3])
    assert not torch.allclose(changed[:, 3:], logits[:, 3:])


# --- bad input -----------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("call", ["forward", "loss", "generate", "beam_search"])
def test_bad_input_raises_value_error_with_the_expected_shape(call):
    model = small_model()
    good_src, good_tgt = torch.full((2, 4), 5), torch.full((2, 3), 5)
    sources = {
        "an id outside the vocabulary": torch.full((2, 4), 13),
        "a negative id": torch.full((2, 4), -1),
        "empty sequences": torch.zeros(2, 0, dtype=torch.int64),
        "a sentence of padding only": torch.tensor([[5, 6, 2, PAD], [PAD] * 4]),
        "float ids": good_src.float(),
    }
    cases = {reason: (src, good_tgt) for reason, src in sources.items()}
    if call in ("forward", "loss"):
        cases["a target id outside the vocabulary"] = (good_src, torch.full((2, 3), 13))
        cases["an empty target"] = (good_src, torch.zeros(2, 0, dtype=torch.int64))
        cases["batch sizes that differ"] = (good_src, torch.full((3, 3), 5))
    for reason, (src, tgt) in cases.items():
        args = (src, tgt) if call in ("forward", "loss") else (src,)
        with pytest.raises(ValueError) as info:
            getattr(model, call)(*args)
        message = str(info.value)
        assert message.startswith("transformer expects"), f"{reason}: {message}"
        assert "(N, S)" in message or "(N, T)" in message, f"{reason}: {message}"
        assert str(tuple(src.shape)) in message or str(tuple(tgt.shape)) in message, f"{reason}: {message}"
    with pytest.raises(ValueError, match=r"\(N, T\) with T >= 2"):
        model.loss(good_src, good_tgt[:, :1])


def test_special_ids_must_be_distinct_and_in_the_vocabulary():
    with pytest.raises(ValueError, match="must be distinct"):
        Transformer(**{**SMALL, "pad_id": 0})
    with pytest.raises(ValueError, match="must be distinct"):
        Transformer(**{**SMALL, "eos_id": 13})


# --- the shared attention's cache, as the decoder uses it --------------------------------------------------------

def test_cross_attention_cache_projects_the_memory_once():
    torch.manual_seed(0)
    attention = MultiHeadAttention(D_MODEL, HEADS).eval()
    generator = torch.Generator().manual_seed(1)
    queries, memory = torch.randn(2, 3, D_MODEL, generator=generator), torch.randn(2, 6, D_MODEL, generator=generator)
    cache = KeyValueCache()
    first = attention(queries[:, :1], memory, cache=cache)
    assert len(cache) == 6
    # later calls reuse the cached keys and values: the memory argument is not projected again
    later = attention(queries[:, 1:], torch.zeros_like(memory), cache=cache)
    assert len(cache) == 6
    assert_close_rel(torch.cat([first, later], dim=1), attention(queries, memory))


def test_key_value_cache_reorder_keeps_the_chosen_rows():
    cache = KeyValueCache()
    key, value = torch.arange(4.0).view(4, 1, 1, 1), -torch.arange(4.0).view(4, 1, 1, 1)
    cache.update(key, value)
    cache.reorder(torch.tensor([2, 2, 0, 3]))
    assert cache.key.flatten().tolist() == [2.0, 2.0, 0.0, 3.0]
    assert cache.value.flatten().tolist() == [-2.0, -2.0, -0.0, -3.0]


# --- decoding ----------------------------------------------------------------------------------------------------

def test_cached_decoder_steps_equal_the_full_teacher_forced_pass():
    model = small_model()
    src, tgt, _ = padded_batch()
    with torch.no_grad():
        memory, source_mask = model.encode(src)
        full = model.decode(tgt, memory, source_mask)
        cache = DecoderCache(len(model.decoder.layers))
        steps = [model.decode(tgt[:, t:t + 1], memory, source_mask, cache) for t in range(tgt.shape[1])]
    assert len(cache) == tgt.shape[1]
    assert_close_rel(torch.cat(steps, dim=1), full)


def test_decoding_stops_at_the_source_length_plus_50(monkeypatch):
    model = small_model()
    src = torch.tensor([[5, 6, 7, 2], [5, 2, PAD, PAD]])  # 4 and 2 real tokens
    never_end = model._next_token_log_probs

    def without_eos(*args):
        return never_end(*args).index_fill(1, torch.tensor([EOS]), -math.inf)

    monkeypatch.setattr(model, "_next_token_log_probs", without_eos)
    for out in (model.generate(src, num_beams=1)[:, 1:], model.beam_search(src, beam_size=2),
                model.generate(src)[:, 1:]):
        assert out.shape == (2, 54)
        assert (out[0] > EOS).all()  # 54 generated tokens
        assert (out[1, :52] > EOS).all() and (out[1, 52:] == PAD).all()  # 52, then padding
    assert model.beam_search(src, beam_size=1, extra_length=3).shape == (2, 7)
    assert model.generate(src, 3).shape == (2, 4)  # <s> and 3 tokens


def sequence_log_prob(model: Transformer, src: torch.Tensor, hypothesis: list[int]) -> float:
    """log P(hypothesis | src) from one teacher-forced pass, independent of the decoding code."""
    decoder_input = torch.tensor([[BOS, *hypothesis[:-1]]])
    with torch.no_grad():
        log_probs = model(src, decoder_input).log_softmax(-1)[0]
    return sum(log_probs[t, token].item() for t, token in enumerate(hypothesis))


@pytest.mark.parametrize("alpha", [0.0, 0.6, 2.0, 5.0])
def test_beam_search_finds_the_best_length_penalised_translation(alpha):
    """On a vocabulary of two words and a maximum length of 4, a beam of 16 never has to drop a hypothesis, so it
    must return the exhaustive optimum of log P(Y|X) / lp(Y), lp(Y) = ((5 + |Y|) / 6)^α (§6.1, Wu et al. eq. 14)."""
    model = randomize_weights(small_model(seed=2, vocab_size=5)).eval()
    words = [3, 4]
    for src in (torch.tensor([[3]]), torch.tensor([[4]])):
        limit = 1 + 3  # one source token + extra_length
        hypotheses = [[*prefix, EOS] for k in range(limit) for prefix in itertools.product(words, repeat=k)]
        hypotheses += [list(prefix) for prefix in itertools.product(words, repeat=limit)]  # cut at the limit
        scored = sorted(((sequence_log_prob(model, src, h) / ((5 + len(h)) / 6) ** alpha, h) for h in hypotheses),
                        reverse=True)
        assert scored[0][0] - scored[1][0] > 1e-4, "a near tie would make this test fragile: pick another seed"
        out, score = model.beam_search(src, beam_size=16, length_penalty=alpha, extra_length=3, return_scores=True)
        assert out[0].tolist() == scored[0][1]
        assert score.item() == pytest.approx(scored[0][0], abs=1e-5)


def test_beam_search_goes_on_while_a_live_hypothesis_can_still_win(monkeypatch):
    """Every step the same distribution: </s> 0.5, word 3 0.45, word 4 0.05. With α = 5 the length penalty favours
    long translations so much that "3 3 3 </s>" (4 tokens) beats "</s>", although "</s>" finishes first and is the
    most probable: the search must not stop at the first finished hypothesis."""
    model = small_model(vocab_size=5)
    step = torch.tensor([-math.inf, -math.inf, math.log(0.5), math.log(0.45), math.log(0.05)])
    monkeypatch.setattr(model, "_next_token_log_probs", lambda tokens, *args: step.expand(len(tokens), -1))
    alpha, src = 5.0, torch.tensor([[3]])  # limit: 1 + 3 tokens

    def score(k: int, ended: bool) -> float:  # k words, then </s> if ended
        log_p = k * math.log(0.45) + (math.log(0.5) if ended else 0.0)
        return log_p / ((5 + k + ended) / 6) ** alpha

    expected = max([(score(k, True), [3] * k + [EOS]) for k in range(4)] + [(score(4, False), [3] * 4)])
    assert expected[1] == [3, 3, 3, EOS] and score(0, True) < expected[0]
    out, best = model.beam_search(src, beam_size=2, length_penalty=alpha, extra_length=3, return_scores=True)
    assert out[0].tolist() == expected[1] and best.item() == pytest.approx(expected[0])


def test_greedy_generate_equals_the_step_by_step_argmax_and_a_beam_of_one():
    model = randomize_weights(small_model(seed=3)).eval()
    src = torch.tensor([[5, 6, 7, 8, 2], [9, 10, 11, 2, PAD], [3, 4, 2, PAD, PAD]])
    greedy = model.generate(src, num_beams=1)
    for i in range(len(src)):
        prefix = [BOS]
        while len(prefix) <= int((src[i] != PAD).sum()) + 50 and prefix[-1] != EOS:
            with torch.no_grad():
                logits = model(src[i:i + 1, :int((src[i] != PAD).sum())], torch.tensor([prefix]))[0, -1]
            logits[[BOS, PAD]] = -math.inf  # never generated
            prefix.append(int(logits.argmax()))
        assert greedy[i, :len(prefix)].tolist() == prefix
        assert (greedy[i, len(prefix):] == PAD).all()
    assert torch.equal(model.beam_search(src, beam_size=1), greedy[:, 1:])


def test_beam_search_finds_a_more_likely_translation_than_greedy(monkeypatch):
    """First word 3 (0.6) or 4 (0.4); after 3 every token is equally likely, after 4 </s> has 0.99: greedy takes
    3 and ends with P = 0.6 / 3, the beam finds "4 </s>" with P = 0.396."""
    model = small_model(vocab_size=6)

    def next_token_log_probs(tokens, *args):
        out = torch.full((len(tokens), 6), -math.inf)
        for row, prefix in enumerate(tokens.tolist()):
            if len(prefix) == 1:
                out[row, 3], out[row, 4] = math.log(0.6), math.log(0.4)
            elif prefix[1] == 3:
                out[row, [EOS, 3, 4, 5]] = math.log(0.25)
            else:
                out[row, EOS], out[row, 5] = math.log(0.99), math.log(0.01)
        return out

    monkeypatch.setattr(model, "_next_token_log_probs", next_token_log_probs)
    src = torch.tensor([[3, 4]])
    assert model.generate(src, num_beams=1)[0, :3].tolist() == [BOS, 3, EOS]
    assert model.generate(src, num_beams=2, length_penalty=0.0)[0].tolist() == [BOS, 4, EOS]
    assert model.generate(src)[0].tolist() == [BOS, 4, EOS]  # the paper's beam of 4, alpha 0.6


def test_cached_and_uncached_decoding_agree_on_a_random_model(monkeypatch):
    """</s> is forbidden here, so that every hypothesis runs to the maximum length and the beams overtake one
    another (a trained model's first beam tends to stay first): a cache that did not follow its beam would show."""
    model = small_model(seed=0)
    log_probs = model._next_token_log_probs
    monkeypatch.setattr(model, "_next_token_log_probs",
                        lambda *args: log_probs(*args).index_fill(1, torch.tensor([EOS]), -math.inf))
    src = torch.tensor([[5, 6, 7, 8, 2], [9, 10, 11, 2, PAD]])
    assert torch.equal(model.generate(src, 6, num_beams=1), model.generate(src, 6, num_beams=1, use_cache=False))
    cached, cached_scores = model.beam_search(src, extra_length=6, return_scores=True)
    uncached, uncached_scores = model.beam_search(src, extra_length=6, use_cache=False, return_scores=True)
    assert torch.equal(cached, uncached)
    assert torch.allclose(cached_scores, uncached_scores, atol=1e-5)


def test_the_stopping_rule_decides_whether_a_longer_translation_can_still_win():
    """The shared beam search's stopping rules on the same constant distribution as above (</s> 0.5, word 3 0.45),
    with the paper's length penalty at α = 5: transformers' heuristic (False) and True stop at the first full beam
    and keep a short translation; "never" (the Transformer's) goes on to "3 3 3 </s>"; another value is refused."""
    from paperzoo.layers import decoding

    step_log_probs = torch.tensor([-math.inf, -math.inf, math.log(0.5), math.log(0.45), math.log(0.05)])

    def step(ids, state):
        return step_log_probs.expand(len(ids), -1), state

    def search(early_stopping):
        (best, *_), = decoding.beam_search(step, torch.tensor([[BOS]]), None, lambda state, rows: state, num_beams=2,
                                           max_new_tokens=4, early_stopping=early_stopping, eos_token_id=EOS,
                                           length_penalty=lambda length: ((5 + length) / 6) ** 5.0)
        return best.tokens

    assert search("never") == [3, 3, 3]
    assert len(search(False)) < 3 and len(search(True)) < 3
    with pytest.raises(ValueError, match="early_stopping must be False, True or 'never'"):
        search("sometimes")
