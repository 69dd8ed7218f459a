"""GPT and GPT-2 beyond the generic tests: parity with transformers' ``OpenAIGPTLMHeadModel`` and
``GPT2LMHeadModel`` (logits and the language-model loss, with and without padding), the converter on every size,
causal attention through SDPA, generation (the key/value cache changes nothing; greedy equals transformers'
``generate``; top-k and top-p equal transformers' logits warpers), GPT-2's scaled initialisation, the input
checks, and a small GPT that learns English text.

The full-size parity tests build a randomly initialised reference from the card's reference string (no download:
``GPT2LMHeadModel(GPT2Config(...))``) and redraw its weights at a scale where every layer shapes the logits.
"""

from __future__ import annotations

import math

import pytest
import torch
import transformers
from torch.nn import functional as F
from transformers.generation.logits_process import TemperatureLogitsWarper, TopKLogitsWarper, TopPLogitsWarper

import paperzoo
from conftest import assert_close_rel, assert_output_depends_on_input, parse_reference, randomize_weights
from paperzoo.interop import check_state_dict, convert_state_dict
from paperzoo.layers import attention as attention_module
from paperzoo.layers.decoding import filter_logits
from paperzoo.models.language.gpt import GPT

transformers.logging.set_verbosity_error()  # tiny test vocabularies do not hold GPT-2's special token ids


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py: small models, one thread

VARIANTS = ["gpt", "gpt2", "gpt2_medium", "gpt2_large", "gpt2_xl"]
TINY = dict(vocab_size=97, max_positions=40, hidden_size=32, num_layers=2, num_heads=4)


def transformers_reference(name: str) -> torch.nn.Module:
    """The card's reference, randomly initialised: ``transformers:GPT2LMHeadModel(n_layer=24, ...)`` builds
    ``GPT2LMHeadModel(GPT2Config(n_layer=24, ...))``."""
    library, class_name, config = parse_reference(paperzoo.model_card(name).reference)
    assert library == "transformers"
    model_class = getattr(transformers, class_name)
    return model_class(model_class.config_class(**config))


def tiny_pair(pre_norm: bool, seed: int = 0) -> tuple[GPT, torch.nn.Module]:
    """A tiny GPT (pre_norm=False) or GPT-2 and its transformers twin, with the same random weights."""
    torch.manual_seed(seed)
    if pre_norm:
        config = transformers.GPT2Config(vocab_size=97, n_positions=40, n_embd=32, n_layer=2, n_head=4)
        reference = transformers.GPT2LMHeadModel(config)
    else:
        config = transformers.OpenAIGPTConfig(vocab_size=97, n_positions=40, n_embd=32, n_layer=2, n_head=4)
        reference = transformers.OpenAIGPTLMHeadModel(config)
    randomize_weights(reference, seed)
    ours = GPT(**TINY, pre_norm=pre_norm, scaled_residual_init=pre_norm)
    paperzoo.load_weights(ours, reference, source="transformers")
    return ours.eval(), reference.eval()


def random_ids(batch: int, length: int, vocab_size: int, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, vocab_size, (batch, length), generator=torch.Generator().manual_seed(seed))


def right_padding(lengths: list[int], total: int) -> torch.Tensor:
    return (torch.arange(total)[None, :] < torch.tensor(lengths)[:, None]).long()  # (N, T): 1 then 0


# --- parity ------------------------------------------------------------------------------------------------

@pytest.mark.heavy
@pytest.mark.parametrize("name", ["gpt", "gpt2"])
def test_full_size_logits_and_loss_equal_transformers(name):
    """Measured on one thread of a busy 2-core machine: gpt 23 s, gpt2 39 s. GPT-2 Medium, Large and XL are
    compared here by names and shapes only (below): their full parity at 1×1024 passed once, by hand, in 106 s,
    108 s and 317 s (9 GB), too slow for the suite."""
    torch.manual_seed(0)
    reference = randomize_weights(transformers_reference(name)).eval()
    ours = paperzoo.load_weights(paperzoo.create_model(name), reference, source="transformers").eval()
    card = paperzoo.model_card(name)
    full = random_ids(1, card.input.shape[0], card.input.vocab_size, seed=1)  # every position, no padding
    short = random_ids(2, 48, card.input.vocab_size, seed=2)
    mask = right_padding([48, 30], 48)
    with torch.no_grad():
        expected = reference(full).logits
        assert_close_rel(ours(full), expected)
        expected = reference(short, attention_mask=mask).logits
        assert_output_depends_on_input(expected)
        assert_close_rel(ours(short, mask), expected)  # padded positions too: they attend to the real ones
        labels = short.masked_fill(mask == 0, -100)
        assert_close_rel(ours.loss(short, mask), reference(short, attention_mask=mask, labels=labels).loss)


@pytest.mark.parametrize("pre_norm", [False, True], ids=["gpt", "gpt2"])
def test_tiny_logits_equal_transformers_with_left_and_right_padding(pre_norm):
    ours, reference = tiny_pair(pre_norm)
    ids = random_ids(3, 20, 97)
    mask = torch.ones(3, 20, dtype=torch.long)
    mask[1, 14:] = 0  # right padding
    mask[2, :6] = 0  # left padding: its padded queries have no key to attend to, so compare real positions only
    with torch.no_grad():
        expected = reference(ids, attention_mask=mask).logits
        actual = ours(ids, mask)
    real = mask.bool()
    assert_close_rel(actual[real], expected[real])


@pytest.mark.parametrize("name", VARIANTS)
def test_converter_maps_every_transformers_weight_of_every_size(name):
    """Names and shapes, on the meta device: GPT-2 XL's 1.5B parameters cost nothing here."""
    with torch.device("meta"):
        reference = transformers_reference(name)
        ours = paperzoo.create_model(name)
    check_state_dict(ours, convert_state_dict(ours, reference.state_dict(), "transformers"))


def test_converter_transposes_conv1d_and_refuses_an_untied_output_layer():
    ours, reference = tiny_pair(pre_norm=True)
    c_attn = reference.transformer.h[0].attn.c_attn.weight  # Conv1D: (in, 3 · out), x @ W
    assert torch.equal(ours.blocks[0].attention.qkv.weight, c_attn.t())
    state = reference.state_dict()
    state["lm_head.weight"] = state["lm_head.weight"] + 1  # no longer the token embedding
    with pytest.raises(ValueError, match="not tied"):
        paperzoo.load_weights(GPT(**TINY, pre_norm=True), state, source="transformers")


def test_output_layer_is_the_token_embedding():
    model = GPT(**TINY).eval()
    with torch.no_grad():
        model.token_embedding.weight[5].zero_()  # token 5's output row is its embedding: its logit is 0
        logits = model(random_ids(2, 7, 97))
    assert torch.equal(logits[..., 5], torch.zeros(2, 7))


def test_gpt2_has_a_final_layer_norm_and_gpt_has_none():
    assert GPT(**TINY).final_norm is None
    assert isinstance(GPT(**TINY, pre_norm=True).final_norm, torch.nn.LayerNorm)


# --- causal attention ------------------------------------------------------------------------------------

def test_attention_is_causal_through_sdpa(monkeypatch):
    calls = []
    sdpa = F.scaled_dot_product_attention

    def watched(*args, **kwargs):
        calls.append(kwargs.get("is_causal"))
        return sdpa(*args, **kwargs)

    monkeypatch.setattr(attention_module.F, "scaled_dot_product_attention", watched)
    model = GPT(**TINY, pre_norm=True).eval()
    ids = random_ids(2, 12, 97)
    changed = ids.clone()
    changed[:, 8:] = (changed[:, 8:] + 1) % 97  # change the future: positions 0 … 7 must not notice
    with torch.no_grad():
        before, after = model(ids), model(changed)
    assert calls == [True] * 4, "each block attends through F.scaled_dot_product_attention(is_causal=True)"
    assert torch.equal(before[:, :8], after[:, :8])
    assert not torch.allclose(before[:, 8:], after[:, 8:])


# --- generation --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("pre_norm", [False, True], ids=["gpt", "gpt2"])
def test_greedy_generation_with_the_cache_equals_generation_without_it(pre_norm):
    model, _ = tiny_pair(pre_norm)
    prompt = random_ids(3, 5, 97)
    with_cache = model.generate(prompt, 30, use_cache=True)
    without = model.generate(prompt, 30, use_cache=False)
    assert with_cache.shape == (3, 35) and torch.equal(with_cache[:, :5], prompt)
    assert torch.equal(with_cache, without)
    assert len(set(with_cache[:, 5:].flatten().tolist())) > 3, "the randomised model should not repeat one token"

    # The cached step-by-step logits are the full forward pass's.
    cache = model.new_cache()
    with torch.no_grad():
        steps = [model(with_cache[:, :5], cache=cache)] + [model(with_cache[:, t:t + 1], cache=cache)
                                                            for t in range(5, 35)]
        assert_close_rel(torch.cat(steps, dim=1), model(with_cache))


def test_greedy_generation_equals_transformers_generate():
    model, reference = tiny_pair(pre_norm=True)
    prompt = random_ids(2, 4, 97)
    expected = reference.generate(prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=25,
                                  do_sample=False, pad_token_id=0)
    assert torch.equal(model.generate(prompt, 25), expected)


def test_beam_search_equals_transformers_generate():
    """Beam search with a length penalty and an end token, step for step as transformers': the same tokens,
    including where a beam ends early and the others are padded."""
    model, reference = tiny_pair(pre_norm=True, seed=1)
    prompt = random_ids(3, 4, 97, seed=1)
    with torch.no_grad():  # an end token the model does choose: the second row's greedy 3rd token
        eos = int(model.generate(prompt, 3)[1, -1])
    for num_beams, length_penalty in [(3, 1.0), (3, 0.0), (3, 2.0), (1, 1.0)]:
        expected = reference.generate(prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=12,
                                      num_beams=num_beams, length_penalty=length_penalty, eos_token_id=eos,
                                      pad_token_id=96, do_sample=False, early_stopping=False)
        actual = model.generate(prompt, 12, num_beams=num_beams, length_penalty=length_penalty, eos_token_id=eos,
                                pad_token_id=96)  # not 0: transformers' beam search fills with the end token then
        assert torch.equal(actual, expected), (num_beams, length_penalty)
    assert (actual[:, 4:] == eos).any(), "some row should end at the end token"


def test_generation_stops_at_the_end_token_and_pads():
    model, _ = tiny_pair(pre_norm=True)
    prompt = random_ids(3, 4, 97)
    free = model.generate(prompt, 10)
    eos = int(free[0, 6])  # row 0's third generated token
    ended = model.generate(prompt, 10, eos_token_id=eos, pad_token_id=96)
    row = free[0].tolist()
    first = row.index(eos, 4)
    assert ended[0, :first + 1].tolist() == row[:first + 1]
    assert (ended[0, first + 1:] == 96).all()
    everyone = model.generate(prompt, 10, eos_token_id=int(free[0, 4]))  # every row's end: stops when all ended
    assert everyone.shape[1] <= 14


def test_generate_names_what_is_wrong_with_its_length():
    """A negative max_new_tokens was blamed on the prompt ("shorten the prompt or generate fewer tokens")."""
    model, _ = tiny_pair(pre_norm=True)
    prompt = random_ids(1, 4, 97)
    with pytest.raises(ValueError, match="^max_new_tokens must not be negative, got -1$"):
        model.generate(prompt, -1)
    with pytest.raises(ValueError, match=rf"fit its {model.max_positions} positions; got a prompt of shape \(1, 4\) "
                                         rf"and max_new_tokens={model.max_positions - 3}: shorten the prompt"):
        model.generate(prompt, model.max_positions - 3)
    assert model.generate(prompt, model.max_positions - 4).shape == (1, model.max_positions)


@pytest.mark.parametrize("num_beams", [1, 3])
def test_left_padded_prompts_with_the_attention_mask_equal_unpadded_ones(num_beams):
    model, reference = tiny_pair(pre_norm=True)
    short, long = random_ids(1, 3, 97, seed=2), random_ids(1, 6, 97, seed=3)
    padded = torch.cat([torch.cat([torch.full((1, 3), 5), short], dim=1), long])  # pad on the left
    mask = torch.tensor([[0, 0, 0, 1, 1, 1], [1] * 6])
    together = model.generate(padded, 8, num_beams=num_beams, attention_mask=mask)
    assert torch.isfinite(model(padded, mask)).all()
    assert torch.equal(together[0, 3:], model.generate(short, 8, num_beams=num_beams)[0])
    assert torch.equal(together[1], model.generate(long, 8, num_beams=num_beams)[0])
    expected = reference.generate(padded, attention_mask=mask, max_new_tokens=8, num_beams=num_beams,
                                  do_sample=False, pad_token_id=0)
    assert torch.equal(together, expected)
    without_cache = model.generate(padded, 8, num_beams=num_beams, attention_mask=mask, use_cache=False)
    assert torch.equal(together, without_cache)


def test_sampling_arguments_without_do_sample_are_refused():
    model, _ = tiny_pair(pre_norm=True)
    for kwargs in ({"top_k": 5}, {"top_p": 0.9}, {"temperature": 0.7}):
        with pytest.raises(ValueError, match="do_sample=True"):
            model.generate(random_ids(1, 3, 97), 4, **kwargs)


def test_cache_with_a_padding_mask_equals_the_full_pass():
    model, _ = tiny_pair(pre_norm=True)
    ids = random_ids(2, 10, 97)
    mask = right_padding([10, 7], 10)
    cache = model.new_cache()
    with torch.no_grad():
        first = model(ids[:, :6], mask[:, :6], cache=cache)
        rest = model(ids[:, 6:], mask, cache=cache)  # the mask covers the cached positions too
        assert_close_rel(torch.cat([first, rest], dim=1), model(ids, mask))


def test_filter_logits_equals_transformers_warpers():
    logits = torch.randn(4, 50, generator=torch.Generator().manual_seed(0)) * 3
    for temperature, top_k, top_p in [(1.0, 5, None), (0.7, None, 0.9), (1.3, 20, 0.5), (1.0, None, 0.999),
                                      (0.5, 1, None), (2.0, 50, 0.3)]:
        expected = TemperatureLogitsWarper(temperature)(None, logits.clone())
        if top_k is not None:
            expected = TopKLogitsWarper(top_k)(None, expected)
        if top_p is not None:
            expected = TopPLogitsWarper(top_p)(None, expected)
        actual = filter_logits(logits, temperature=temperature, top_k=top_k, top_p=top_p)
        assert torch.equal(torch.isinf(actual), torch.isinf(expected)), (temperature, top_k, top_p)
        assert_close_rel(actual[torch.isfinite(actual)], expected[torch.isfinite(expected)])


def test_top_p_keeps_the_smallest_set_that_reaches_p():
    logits = torch.tensor([[math.log(0.5), math.log(0.3), math.log(0.15), math.log(0.05)]])
    assert torch.isfinite(filter_logits(logits, top_p=0.5)).tolist() == [[True, False, False, False]]
    assert torch.isfinite(filter_logits(logits, top_p=0.75)).tolist() == [[True, True, False, False]]
    assert torch.isfinite(filter_logits(logits, top_p=0.81)).tolist() == [[True, True, True, False]]
    assert torch.isfinite(filter_logits(logits, top_p=0.01)).tolist() == [[True, False, False, False]]


@pytest.mark.parametrize("pre_norm", [False, True], ids=["gpt", "gpt2"])
def test_sampled_tokens_lie_in_the_top_k_and_the_nucleus(pre_norm):
    model, _ = tiny_pair(pre_norm)
    prompt = random_ids(4, 3, 97)
    for top_k, top_p in [(3, None), (None, 0.6), (10, 0.8)]:
        ids = model.generate(prompt, 20, do_sample=True, temperature=0.8, top_k=top_k, top_p=top_p,
                             generator=torch.Generator().manual_seed(0))
        again = model.generate(prompt, 20, do_sample=True, temperature=0.8, top_k=top_k, top_p=top_p,
                               generator=torch.Generator().manual_seed(0))
        assert torch.equal(ids, again), "the same generator draws the same tokens"
        with torch.no_grad():
            allowed = torch.isfinite(filter_logits(model(ids)[:, 2:-1], temperature=0.8, top_k=top_k, top_p=top_p))
        chosen = allowed.gather(-1, ids[:, 3:, None])
        assert chosen.all(), f"a token outside the top-{top_k} / nucleus {top_p} was sampled"
    greedy = model.generate(prompt, 20)
    assert torch.equal(model.generate(prompt, 20, do_sample=True, top_k=1), greedy)


def test_sampling_follows_the_temperature():
    """Without a filter, one step's tokens are drawn from softmax(logits / temperature)."""
    model, _ = tiny_pair(pre_norm=True)
    prompt = random_ids(1, 3, 97).expand(4000, 3)
    with torch.no_grad():
        probabilities = (model(prompt[:1])[0, -1] / 0.5).softmax(-1)
    drawn = model.generate(prompt, 1, do_sample=True, temperature=0.5, generator=torch.Generator().manual_seed(0))
    frequencies = torch.bincount(drawn[:, -1], minlength=97).float() / 4000
    assert (frequencies - probabilities).abs().max() < 0.03


# --- initialisation ----------------------------------------------------------------------------------------

def test_gpt2_scales_the_residual_projections_by_one_over_sqrt_n():
    torch.manual_seed(0)
    model = GPT(vocab_size=100, max_positions=16, hidden_size=256, num_layers=8, num_heads=4, pre_norm=True,
                scaled_residual_init=True)
    residual = torch.cat([p.flatten() for n, p in model.named_parameters()
                          if n.endswith(("attention.proj.weight", "fc2.weight"))])
    other = torch.cat([p.flatten() for n, p in model.named_parameters()
                       if n.endswith(("qkv.weight", "fc1.weight"))])
    assert residual.std().item() == pytest.approx(0.02 / math.sqrt(2 * 8), rel=0.02)  # N = 2 · 8 residual layers
    assert other.std().item() == pytest.approx(0.02, rel=0.02)
    assert GPT(**TINY).blocks[0].attention.proj.weight.std().item() == pytest.approx(0.02, rel=0.2)


# --- input checks ------------------------------------------------------------------------------------------

def test_input_errors():
    model = GPT(**TINY).eval()
    for ids, message in [
        (torch.zeros(2, 41, dtype=torch.int64), r"T <= 40; got \(2, 41\): sequences of 41 tokens"),
        (torch.full((2, 5), 97), r"ids in \[0, 97\).*id 97 outside the vocabulary"),
        (torch.zeros(2, 0, dtype=torch.int64), "empty sequences"),
        (torch.zeros(0, 5, dtype=torch.int64), "an empty batch"),
    ]:
        with pytest.raises(ValueError, match=message):
            model(ids)
    ids = random_ids(2, 5, 97)
    with pytest.raises(ValueError, match=r"attention mask of shape \(N, T\) = \(2, 5\).*got \(2, 4\)"):
        model(ids, torch.ones(2, 4))
    with pytest.raises(ValueError, match="values other than 0 and 1"):
        model(ids, torch.full((2, 5), -math.inf))
    with pytest.raises(ValueError, match="padding only"):
        model(ids, right_padding([5, 0], 5))
    with pytest.raises(ValueError, match="fit its 40 positions"):
        model.generate(ids, 36)
    with pytest.raises(ValueError, match="temperature must be positive"):
        model.generate(ids, 3, do_sample=True, temperature=0)
    with pytest.raises(ValueError, match="one KeyValueCache per block"):
        model(ids, cache=[])
    cache = model.new_cache()
    model(random_ids(2, 38, 97), cache=cache)
    with pytest.raises(ValueError, match="T <= 2; got \\(2, 3\\)"):  # 38 cached + 3 new > 40 positions
        model(ids[:, :3], cache=cache)
    with pytest.raises(ValueError, match="at least 2 tokens"):
        model.loss(ids[:, :1])
