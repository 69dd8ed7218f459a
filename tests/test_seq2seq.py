"""The recurrent translation models: Seq2Seq (Sutskever et al. 2014) and RNNsearch (Bahdanau et al. 2014).

Their sizes are the papers'; the source is read reversed (Seq2Seq); a padded source gives what each sentence gives
alone; RNNsearch's attention is a distribution over the real source words; decoding step by step with the
recurrent state equals recomputing the whole prefix; the beam search finds the most likely output of a small
vocabulary, checked against enumerating every output; and small configurations learn to sort and to reverse
digit sequences on a CPU.
"""

from __future__ import annotations

import itertools

import pytest
import torch
import torch.nn.functional as F

import paperzoo
from conftest import assert_close_rel, randomize_weights
from paperzoo.measure import count_parameters

NAMES = ["seq2seq", "attention_seq2seq"]
PAD, BOS, EOS, FIRST_DIGIT = 0, 1, 2, 3  # the digit tasks' vocabulary: 3 special tokens, then the digits 0-9


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py: small models, one thread

def small(name: str, vocab_size: int = 11, target_vocab_size: int = 7, seed: int = 0) -> torch.nn.Module:
    """A small model of the architecture, its weights redrawn at a scale where every part shapes the output."""
    torch.manual_seed(seed)
    if name == "seq2seq":
        model = paperzoo.create_model(name, vocab_size=vocab_size, target_vocab_size=target_vocab_size,
                                      embedding_dim=6, hidden_size=8, num_layers=2)
    else:
        model = paperzoo.create_model(name, vocab_size=vocab_size, target_vocab_size=target_vocab_size,
                                      embedding_dim=6, hidden_size=8, alignment_size=5, maxout_size=4)
    return randomize_weights(model, seed).eval()


# --- the papers' sizes ------------------------------------------------------------------------------------

def test_seq2seq_is_the_papers_size():
    with torch.device("meta"):
        model = paperzoo.create_model("seq2seq")
    assert count_parameters(model) == 384_168_000  # the derivation in seq2seq.py's docstring
    # §3.4: "384M parameters of which 64M are pure recurrent connections (32M for the "encoder" LSTM and 32M for
    # the "decoder" LSTM)": 4 layers of 4·1000·(1000 + 1000) weights each.
    for lstm in (model.encoder, model.decoder):
        assert (lstm.num_layers, lstm.hidden_size, lstm.peephole) == (4, 1000, True)
        weights = sum(p.numel() for name, p in lstm.named_parameters() if name.startswith(("weight_ih", "weight_hh")))
        assert weights == 32_000_000
    assert model.source_embedding.weight.shape == (160_000, 1000)  # "an input vocabulary of 160,000"
    assert model.target_embedding.weight.shape == (80_000, 1000)  # "an output vocabulary of 80,000"
    assert model.output.weight.shape == (80_000, 1000) and model.reverse_source


def test_rnnsearch_is_appendix_as_size():
    with torch.device("meta"):
        model = paperzoo.create_model("attention_seq2seq")
    n, m, alignment, maxout, words = 1000, 620, 1000, 500, 30_000  # appendix A.2 and B; §4.1's shortlists

    def count(module: torch.nn.Module) -> int:
        return count_parameters(module)

    decoder = model.decoder
    assert count(model.source_embedding) == words * m
    assert count(model.encoder) == 2 * (3 * n * m + 3 * n * n + 3 * n)  # two directions of W·, U·, biases
    assert count(decoder.initial_state) == n * n + n  # W_s
    assert count(decoder.embedding) == words * m
    gated_unit = count(decoder.input_gates) + count(decoder.context_gates) + decoder.recurrent_weight.numel()
    assert gated_unit == 3 * n * m + 3 * n * n + 3 * n * 2 * n + 3 * n  # W·, U·, C·, biases
    assert count(decoder.alignment) == alignment * n + alignment * 2 * n + alignment + alignment  # W_a, U_a, b, v_a
    readout = decoder.readout
    assert count(readout) - count(readout.output) == 2 * maxout * (n + m + 2 * n) + 2 * maxout  # U_o, V_o, C_o, b
    assert count(readout.output) == words * maxout + words  # W_o
    assert count(model) == 80_443_000 == paperzoo.model_card("attention_seq2seq").params


# --- what one forward call computes -----------------------------------------------------------------------

def test_seq2seq_reads_the_source_reversed():
    model = small("seq2seq")
    straight = paperzoo.create_model("seq2seq", vocab_size=11, target_vocab_size=7, embedding_dim=6, hidden_size=8,
                                     num_layers=2, reverse_source=False).eval()
    straight.load_state_dict(model.state_dict())
    src, tgt = torch.randint(0, 11, (3, 5)), torch.randint(0, 7, (3, 4))
    with torch.no_grad():
        assert_close_rel(model(src, tgt), straight(src.flip(1), tgt))
        assert not torch.allclose(model(src, tgt), straight(src, tgt))


@pytest.mark.parametrize("name", NAMES)
def test_a_padded_source_gives_what_each_sentence_gives_alone(name):
    model = small(name)
    lengths = torch.tensor([5, 2, 4])
    src = torch.randint(0, 11, (3, 5))
    src[1, 2:] = 0  # whatever the padding holds must not matter
    tgt = torch.randint(0, 7, (3, 4))
    with torch.no_grad():
        logits = model(src, tgt, src_lengths=lengths)
        for n, length in enumerate(lengths.tolist()):
            assert_close_rel(logits[n], model(src[n:n + 1, :length], tgt[n:n + 1])[0])
        if name == "attention_seq2seq":
            _, attention = model(src, tgt, src_lengths=lengths, return_attention=True)
            assert torch.equal(attention[1, :, 2:], torch.zeros(4, 3)), "no attention on the padding"


def test_attention_is_a_distribution_over_the_source():
    model = small("attention_seq2seq")
    src, tgt = torch.randint(0, 11, (2, 6)), torch.randint(0, 7, (2, 3))
    with torch.no_grad():
        logits, attention = model(src, tgt, return_attention=True)
        assert torch.equal(logits, model(src, tgt))
    assert attention.shape == (2, 3, 6) and (attention >= 0).all()
    assert_close_rel(attention.sum(-1), torch.ones(2, 3))
    assert attention.std() > 1e-3, "the alignment model discriminates between source positions"


def test_rnnsearch_backward_rnn_reads_the_sentence_back_to_front():
    """The encoder's backward direction is its forward cell run on the reversed sentence, with its own weights:
    the annotation h_j = [h→_j; h←_j] has the two in the right places."""
    model = small("attention_seq2seq")
    encoder = model.encoder
    embedded = torch.randn(2, 5, 6)
    with torch.no_grad():
        annotations, final = encoder(embedded)
        mirrored = type(encoder)(6, 8)  # the same encoder with the two directions' weights exchanged
        mirrored.load_state_dict({name.removesuffix("_reverse") if name.endswith("_reverse") else name + "_reverse": p
                                  for name, p in encoder.state_dict().items()})
        swapped, swapped_final = mirrored(embedded.flip(1))
    assert_close_rel(annotations[..., 8:], swapped[..., :8].flip(1))  # h←_j
    assert_close_rel(annotations[..., :8], swapped[..., 8:].flip(1))  # h→_j
    assert_close_rel(final, swapped_final.flip(0))


# --- decoding ---------------------------------------------------------------------------------------------

def greedy_by_recomputing(model: torch.nn.Module, src: torch.Tensor, steps: int) -> tuple[list[int], float, bool]:
    """Greedy decoding without carrying any decoder state: the whole prefix is run again for every new token, for
    at most ``steps`` tokens. Returns the tokens (without <eos>), their log-probability and whether <eos> ended it."""
    prefix, log_probability = [model.bos_id], 0.0
    for _ in range(steps):
        with torch.no_grad():
            log_probs = F.log_softmax(model(src, torch.tensor([prefix]))[0, -1], dim=-1)
        token = int(log_probs.argmax())
        log_probability += float(log_probs[token])
        if token == model.eos_id:
            return prefix[1:], log_probability, True
        prefix.append(token)
    return prefix[1:], log_probability, False


@pytest.mark.parametrize("name", NAMES)
def test_decoding_with_the_state_equals_recomputing_the_prefix(name):
    """Greedy decoding, by ``generate`` and by a beam of 1, carries the decoder's recurrent state from step to step,
    its cache; it gives the tokens and log-probabilities of recomputing every prefix from scratch."""
    model = small(name)
    src = torch.randint(0, 11, (4, 5))
    lengths = set()
    for eos_id in range(2, model.target_vocab_size):  # each word in turn as the end token: outputs of many lengths
        model.eos_id = eos_id
        hypotheses = model.beam_search(src, beam_size=1, max_length=7)
        greedy = model.generate(src, 7, num_beams=1, pad_token_id=0)
        assert (greedy[:, 0] == model.bos_id).all()
        for n in range(len(src)):
            tokens, log_probability, finished = greedy_by_recomputing(model, src[n:n + 1], steps=7)
            (best,) = hypotheses[n]
            assert best.tokens == tokens and best.finished == finished
            assert best.log_probability == pytest.approx(log_probability, abs=1e-5)
            ended = tokens + [eos_id] * finished
            assert greedy[n, 1:1 + len(ended)].tolist() == ended
            assert (greedy[n, 1 + len(ended):] == 0).all()  # padding after <eos>
            lengths.add(len(tokens))
    assert min(lengths) < 7 and max(lengths) == 7, "some outputs ended by the model, some by max_length"


def every_output(model: torch.nn.Module, src: torch.Tensor,
                 max_length: int) -> dict[tuple[tuple[int, ...], bool], float]:
    """log p(y | src) of every output y (y, finished) that fits max_length tokens, by teacher forcing: y then <eos>
    (finished), or max_length words cut there (not finished)."""
    words = [token for token in range(model.target_vocab_size) if token != model.eos_id]
    scores = {}
    for length in range(max_length):
        for output in itertools.product(words, repeat=length):
            tgt = torch.tensor([[model.bos_id, *output]])
            with torch.no_grad():
                log_probs = F.log_softmax(model(src, tgt)[0], dim=-1)  # (length + 1, V)
            so_far = float(log_probs[:-1].gather(1, torch.tensor(output, dtype=torch.long)[:, None]).sum())
            scores[output, True] = so_far + float(log_probs[-1, model.eos_id])
            if length == max_length - 1:
                for word in words:
                    scores[(*output, word), False] = so_far + float(log_probs[-1, word])
    return scores


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("length_penalty", [0.0, 1.0])
def test_beam_search_finds_the_most_likely_output(name, length_penalty):
    """A 7-word vocabulary and 3 steps allow 1 + 6 + 6² finished outputs and 6³ cut ones; a beam wider than the 6·7
    extensions of the second step misses none before the last step, where all extensions have one length, so its
    best hypothesis is the best of all outputs, enumerated, and every hypothesis carries its true log-probability."""
    model = small(name)
    src = torch.randint(0, 11, (1, 4))
    scores = every_output(model, src, max_length=3)
    ranked = {key: score / (len(key[0]) + key[1]) ** length_penalty for key, score in scores.items()}
    hypotheses = model.beam_search(src, beam_size=64, max_length=3, length_penalty=length_penalty)[0]
    assert len(hypotheses) == 64
    assert [h.score for h in hypotheses] == sorted((h.score for h in hypotheses), reverse=True)
    for hypothesis in hypotheses:
        key = tuple(hypothesis.tokens), hypothesis.finished
        assert hypothesis.log_probability == pytest.approx(scores[key], abs=1e-5)
        assert hypothesis.score == pytest.approx(ranked[key], abs=1e-5)
    assert hypotheses[0].score == pytest.approx(max(ranked.values()), abs=1e-5)
    # A beam of 2 (the paper's "most of the benefit") keeps at most 2 and never beats the exhaustive search.
    narrow = model.beam_search(src, beam_size=2, max_length=3, length_penalty=length_penalty)[0]
    assert 1 <= len(narrow) <= 2 and narrow[0].score <= hypotheses[0].score + 1e-6


def output_log_probability(model: torch.nn.Module, src: torch.Tensor, output: torch.Tensor) -> float:
    """log p(output | src) of ``generate``'s output row (<s> first; up to and with <eos>), by teacher forcing."""
    tokens = output[1:].tolist()
    if model.eos_id in tokens:
        tokens = tokens[:tokens.index(model.eos_id) + 1]
    with torch.no_grad():
        log_probs = F.log_softmax(model(src, torch.tensor([[model.bos_id, *tokens[:-1]]]))[0], dim=-1)
    return float(log_probs.gather(1, torch.tensor(tokens)[:, None]).sum())


@pytest.mark.parametrize("name", NAMES)
def test_generate_with_a_beam_finds_more_likely_outputs_than_greedy(name):
    """The paper's reason for the beam: over random sources, a beam of 4 never finds a less likely output than
    greedy decoding (same length bound, no length penalty) and finds a more likely one for some."""
    model = small(name)
    generator = torch.Generator().manual_seed(0)
    better = 0
    for _ in range(20):
        src = torch.randint(0, 11, (1, 4), generator=generator)
        greedy = output_log_probability(model, src, model.generate(src, 5, num_beams=1)[0])
        beam = output_log_probability(model, src, model.generate(src, 5, num_beams=4)[0])
        assert beam >= greedy - 1e-5
        better += beam > greedy + 1e-5
    assert better > 0


@pytest.mark.parametrize("name", NAMES)
def test_generate_takes_the_attention_mask_of_a_padded_source(name):
    model = small(name)
    src = torch.randint(0, 11, (2, 5))
    mask = torch.tensor([[1, 1, 1, 0, 0], [1] * 5])
    padded = model.generate(src, 6, attention_mask=mask, num_beams=3)
    assert torch.equal(padded, model.generate(src, 6, src_lengths=torch.tensor([3, 5]), num_beams=3))
    alone = model.generate(src[:1, :3], 6, num_beams=3)[0]
    assert padded[0, :len(alone)].tolist() == alone.tolist()
    with pytest.raises(ValueError, match="padding on the right"):
        model.generate(src, 6, attention_mask=mask.flip(1))


@pytest.mark.parametrize("name", NAMES)
def test_generate_keeps_to_its_length_limits_and_says_how_to_sample(name):
    """max_new_tokens=0 was read as "the default", 2 S + 10 (RNNsearch then translated 20 tokens), and a tensor
    of per-row limits raised "Boolean value of Tensor ... is ambiguous"; the Transformer's generate read both."""
    model = small(name)
    src = torch.randint(0, 11, (2, 5), generator=torch.Generator().manual_seed(1))
    assert model.generate(src, 0, num_beams=1).tolist() == [[model.bos_id]] * 2
    with pytest.raises(ValueError, match="beam search needs max_new_tokens of at least 1, got 0"):
        model.generate(src, 0)
    limits = torch.tensor([1, 3])
    rows = model.generate(src, limits, num_beams=1, eos_token_id=-1, pad_token_id=PAD)  # no end token: full length
    assert rows.shape == (2, 4) and rows[0, 2:].tolist() == [PAD, PAD] and (rows[1, 1:] != PAD).any()
    assert rows[1].tolist() == model.generate(src[1:], 3, num_beams=1, eos_token_id=-1)[0].tolist()
    # sampling needs num_beams=1, and the message says so with the beam it was given (the paper's 12 by default;
    # it said "sampling with a beam (do_sample=True, num_beams > 1) is not supported: pass one")
    with pytest.raises(ValueError, match="^do_sample=True with num_beams=12: .* pass num_beams=1 to sample"):
        model.generate(src, 3, do_sample=True)
    assert model.generate(src, 3, do_sample=True, num_beams=1).shape[0] == 2


def test_beam_search_batches_examples_independently():
    model = small("seq2seq")
    src = torch.randint(0, 11, (3, 4))
    together = model.beam_search(src, beam_size=3, max_length=5)
    for n in range(3):
        alone = model.beam_search(src[n:n + 1], beam_size=3, max_length=5)[0]
        assert [h.tokens for h in together[n]] == [h.tokens for h in alone]


def test_max_length_bounds_the_output():
    """At the maximum length the best live hypotheses end as they are, without <eos> (as transformers' beam
    search), their log-probability that of their tokens alone."""
    model = small("seq2seq")
    src = torch.randint(0, 11, (1, 3))
    with torch.no_grad():
        model.output.bias[model.eos_id] = -30.0  # the end token is very unlikely
        hypotheses = model.beam_search(src, beam_size=3, max_length=4)[0]
    assert len(hypotheses) == 3 and all(not h.finished and len(h.tokens) == 4 for h in hypotheses)
    assert all(h.log_probability > -30 for h in hypotheses)
    assert model.generate(src, 4, num_beams=3).shape == (1, 5)  # <s> and 4 tokens


# --- bad input --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", NAMES)
def test_bad_input_raises_value_error_with_the_expected_shape(name):
    model = small(name)
    src, tgt = torch.randint(0, 11, (2, 4)), torch.randint(0, 7, (2, 3))
    cases = {
        "a source id out of the vocabulary": (lambda: model(torch.full((2, 4), 11), tgt), "(N, T) with ids in [0, 11)"),
        "a target id out of the vocabulary": (lambda: model(src, torch.full((2, 3), 7)), "(N, T) with ids in [0, 7)"),
        "empty target sequences": (lambda: model(src, tgt[:, :0]), "(N, T)"),
        "mismatched batch sizes": (lambda: model(src, tgt[:1]), "same batch size N"),
        "an empty sentence in src_lengths": (lambda: model(src, tgt, src_lengths=torch.tensor([4, 0])), "[1, 4]"),
        "src_lengths longer than the source": (lambda: model(src, tgt, src_lengths=[5, 1]), "[1, 4]"),
        "a float source to beam_search": (lambda: model.beam_search(src.float()), "(N, T)"),
        "an out-of-vocabulary source to beam_search": (lambda: model.beam_search(src + 11), "[0, 11)"),
    }
    for reason, (call, expected) in cases.items():
        with pytest.raises(ValueError) as info:
            call()
        message = str(info.value)
        assert message.startswith(f"{name} expects") and expected in message, f"{reason}: {message}"
    with pytest.raises(ValueError, match="eos_id"):
        paperzoo.create_model(name, vocab_size=5, target_vocab_size=2, eos_id=2)
