"""wav2vec 2.0: parity with transformers' Wav2Vec2Model and Wav2Vec2ForPreTraining (outputs, with and without a
padding mask, and the pre-training loss for the same masks and distractors), the span masking and the distractor
sampling against the paper and transformers, the quantiser, the input checks, and one pre-training step. Learning
(pre-training and CTC fine-tuning on the spoken digits) is tested through ``paperzoo train`` in
test_train_speech.py.

Small configurations (width 32, 2 layers, 32-channel feature encoder) check every code path in well under a
second each; the ``heavy`` tests compare every registered variant at full size, built from its card's reference.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import transformers
from transformers.models.wav2vec2.modeling_wav2vec2 import _compute_mask_indices

import paperzoo
from conftest import assert_close_rel, assert_output_depends_on_input, parse_reference, randomize_weights
from paperzoo.interop import load_weights
from paperzoo.models.audio.wav2vec2 import (
    GumbelProductQuantizer,
    Wav2Vec2,
    Wav2Vec2CTC,
    Wav2Vec2PreTraining,
    compute_span_mask,
    contrastive_loss,
    gumbel_temperature,
    sample_negatives,
)

VARIANTS = ["wav2vec2_base", "wav2vec2_large", "wav2vec2_base_pretraining", "wav2vec2_large_pretraining"]
CTC_VARIANTS = ["wav2vec2_base_ctc", "wav2vec2_large_ctc"]


# --- small twins of the two layouts ----------------------------------------------------------------------

def small_config(layer_norm_first: bool) -> tuple[dict, dict]:
    """Our keyword arguments and transformers' Wav2Vec2Config arguments for the same small model: BASE's layout
    (GroupNorm feature encoder, post-LN) or the LV-60k LARGE's (LayerNorm feature encoder with biases, pre-LN)."""
    ours = dict(hidden_size=32, num_layers=2, num_heads=4, ffn_dim=64, feature_channels=32, position_kernel_size=16,
                position_groups=4, feature_encoder_norm="layer" if layer_norm_first else "group",
                conv_bias=layer_norm_first, layer_norm_first=layer_norm_first)
    theirs = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64, conv_dim=(32,) * 7,
                  num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=4,
                  feat_extract_norm="layer" if layer_norm_first else "group", do_stable_layer_norm=layer_norm_first,
                  conv_bias=layer_norm_first)
    return ours, theirs


SMALL_QUANTIZER = dict(codebook_size=8, codevector_dim=16, final_dim=12)
SMALL_QUANTIZER_HF = dict(num_codevectors_per_group=8, codevector_dim=16, proj_codevector_dim=12)


def padding_mask(batch: int, samples: int, lengths: list[int]) -> torch.Tensor:
    mask = torch.zeros(batch, samples, dtype=torch.long)
    for i, length in enumerate(lengths):
        mask[i, :length] = 1
    return mask


def hf_negatives(negatives: torch.Tensor) -> torch.Tensor:
    """Our distractors (time indices in the same utterance) → transformers' (indices into the flattened batch)."""
    n, t, _ = negatives.shape
    return negatives + torch.arange(n)[:, None, None] * t


@pytest.mark.parametrize("layer_norm_first", [False, True], ids=["base-layout", "lv60k-layout"])
def test_small_model_equals_transformers_with_and_without_padding(layer_norm_first, one_thread):
    ours_kwargs, config = small_config(layer_norm_first)
    torch.manual_seed(0)
    reference = randomize_weights(transformers.Wav2Vec2Model(transformers.Wav2Vec2Config(**config)).eval())
    model = load_weights(Wav2Vec2(**ours_kwargs).eval(), reference, source="transformers")
    x = torch.randn(2, 8000)
    for mask in (None, padding_mask(2, 8000, [8000, 5000])):
        with torch.no_grad():
            expected, got = reference(x, attention_mask=mask), model(x, attention_mask=mask)
        assert_output_depends_on_input(expected.last_hidden_state)
        assert_close_rel(got["last_hidden_state"], expected.last_hidden_state)
        assert_close_rel(got["extract_features"], expected.extract_features)


@pytest.mark.parametrize("layer_norm_first", [False, True], ids=["base-layout", "lv60k-layout"])
def test_pretraining_loss_equals_transformers_for_the_same_masks_and_distractors(layer_norm_first, one_thread):
    ours_kwargs, config = small_config(layer_norm_first)
    torch.manual_seed(0)
    reference = transformers.Wav2Vec2ForPreTraining(transformers.Wav2Vec2Config(**config, **SMALL_QUANTIZER_HF))
    reference = randomize_weights(reference.eval())
    model = load_weights(Wav2Vec2PreTraining(**ours_kwargs, **SMALL_QUANTIZER).eval(), reference,
                         source="transformers")
    x = torch.randn(2, 8000)
    frames = int(model.wav2vec2.num_frames(8000))
    generator = torch.Generator().manual_seed(0)
    for mask, lengths in ((None, [frames, frames]), (padding_mask(2, 8000, [8000, 5000]),
                                                      [frames, int(model.wav2vec2.num_frames(5000))])):
        time_mask = compute_span_mask((2, frames), mask_prob=0.2, span_length=3, frame_lengths=torch.tensor(lengths),
                                      generator=generator)
        negatives = sample_negatives(time_mask, 10, generator=generator)
        with torch.no_grad():
            expected = reference(x, attention_mask=mask, mask_time_indices=time_mask,
                                 sampled_negative_indices=hf_negatives(negatives))
            got = model(x, attention_mask=mask, mask_time_indices=time_mask, sampled_negative_indices=negatives)
        assert_output_depends_on_input(expected.projected_states)
        for key in ("loss", "contrastive_loss", "diversity_loss", "codevector_perplexity", "projected_states",
                    "projected_quantized_states"):
            assert_close_rel(got[key].reshape(-1), getattr(expected, key).reshape(-1))
        assert expected.diversity_loss > 0 and expected.contrastive_loss > 0


def test_both_weight_norm_spellings_load():
    """transformers stores the positional convolution's g and v as ``parametrizations.weight.original0/1`` (torch's
    parametrizations) or ``weight_g``/``weight_v`` (the older torch.nn.utils.weight_norm): both convert."""
    ours_kwargs, config = small_config(False)
    torch.manual_seed(0)
    reference = randomize_weights(transformers.Wav2Vec2Model(transformers.Wav2Vec2Config(**config)).eval())
    state = reference.state_dict()
    legacy = {k.replace("parametrizations.weight.original0", "weight_g").replace("parametrizations.weight.original1",
                                                                                   "weight_v"): v
              for k, v in state.items()}
    assert legacy.keys() != state.keys() and "encoder.pos_conv_embed.conv.weight_g" in legacy
    first = load_weights(Wav2Vec2(**ours_kwargs), state, source="transformers")
    second = load_weights(Wav2Vec2(**ours_kwargs), legacy, source="transformers")
    for (name, a), b in zip(first.state_dict().items(), second.state_dict().values(), strict=True):
        assert torch.equal(a, b), name


# --- fine-tuning with CTC --------------------------------------------------------------------------------

def small_ctc(layer_norm_first: bool, **ctc_config):
    """A small Wav2Vec2ForCTC (vocabulary 11) with random weights, and ours holding them."""
    ours_kwargs, config = small_config(layer_norm_first)
    torch.manual_seed(0)
    config = transformers.Wav2Vec2Config(**config, vocab_size=11, **ctc_config)
    reference = randomize_weights(transformers.Wav2Vec2ForCTC(config).eval())
    ours = {"pad_token_id": "blank_id", "ctc_loss_reduction": "ctc_loss_reduction",
            "ctc_zero_infinity": "ctc_zero_infinity"}
    kwargs = {ours[k]: v for k, v in ctc_config.items()}
    model = load_weights(Wav2Vec2CTC(**ours_kwargs, vocab_size=11, **kwargs).eval(), reference, source="transformers")
    return reference, model


# Transcripts padded with -100 at the end, as transformers' data collators write them.
LABELS = torch.tensor([[1, 2, 2, 3, 4, 5], [6, 7, 8, -100, -100, -100]])


@pytest.mark.parametrize("layer_norm_first", [False, True], ids=["base-layout", "lv60k-layout"])
@pytest.mark.parametrize("ctc_config", [{}, dict(ctc_loss_reduction="mean"), dict(pad_token_id=4)],
                         ids=["sum", "mean", "blank-4"])
def test_ctc_logits_and_loss_equal_transformers_with_and_without_padding(layer_norm_first, ctc_config, one_thread):
    reference, model = small_ctc(layer_norm_first, **ctc_config)
    assert paperzoo.count_parameters(model) == sum(p.numel() for p in reference.parameters())
    x = torch.randn(2, 8000, generator=torch.Generator().manual_seed(0))
    for mask in (None, padding_mask(2, 8000, [8000, 5000])):
        with torch.no_grad():
            expected = reference(x, attention_mask=mask, labels=LABELS)
            got = model(x, attention_mask=mask, labels=LABELS)
        assert_output_depends_on_input(expected.logits)
        assert_close_rel(got["logits"], expected.logits)
        assert_close_rel(got["loss"], expected.loss)
        assert expected.loss > 0
        assert_close_rel(model.loss(x, LABELS, mask).detach(), expected.loss)


def test_ctc_zero_infinity_and_an_impossible_transcript(one_thread):
    """A transcript with more labels than the audio has frames has no alignment: the loss is ∞, or 0 with
    ``ctc_zero_infinity``, as transformers."""
    x = torch.randn(2, 1600)  # 4 frames
    for zero_infinity in (False, True):
        reference, model = small_ctc(False, ctc_zero_infinity=zero_infinity)
        with torch.no_grad():
            expected, got = reference(x, labels=LABELS).loss, model(x, labels=LABELS)["loss"]
        assert torch.isfinite(got) == zero_infinity and torch.isfinite(expected) == zero_infinity
        if zero_infinity:
            assert_close_rel(got, expected)


def test_ctc_labels_are_checked_and_the_feature_encoder_freezes(one_thread):
    _, model = small_ctc(False)
    x = torch.randn(2, 1600)
    for labels, message in [(LABELS[:1], r"labels of shape \(N, U\) with N = 2"),
                            (LABELS.float(), "got torch.float32 labels"),
                            (torch.tensor([[1, 11], [2, 3]]), r"ids in \[0, 11\).*outside that range: \[1, 2, 3, 11\]"),
                            (torch.tensor([[1, -5], [2, 3]]), "outside that range")]:
        with pytest.raises(ValueError, match=f"^wav2vec2_ctc expects {message}" if "shape" in message else message):
            model(x, labels=labels)
    with pytest.raises(ValueError, match="ctc_loss_reduction='avg': expected one of sum, mean, none"):
        Wav2Vec2CTC(ctc_loss_reduction="avg")
    model.freeze_feature_encoder()
    model.train()(x, labels=LABELS[:, :1])["loss"].backward()
    assert all(p.grad is None for p in model.wav2vec2.feature_encoder.parameters())
    assert model.ctc_head.weight.grad is not None
    assert model.wav2vec2.feature_projection.projection.weight.grad is not None


@pytest.mark.parametrize("name", CTC_VARIANTS)
def test_ctc_cards_count_the_references_parameters(name):
    card = paperzoo.model_card(name)
    library, class_name, config = parse_reference(card.reference)
    with torch.device("meta"):
        reference = getattr(transformers, class_name)(transformers.Wav2Vec2Config(**config))
    assert sum(p.numel() for p in reference.parameters()) == card.params


# --- full size, from the cards ---------------------------------------------------------------------------

@pytest.mark.heavy
@pytest.mark.parametrize("name", VARIANTS)
def test_registered_variant_equals_its_card_reference(name):
    """Every variant against transformers built from its card's reference (class and Wav2Vec2Config keywords).
    Measured on 2 busy cores: BASE 6 s, BASE pre-training 9 s, LARGE 14 s, LARGE pre-training 20 s."""
    card = paperzoo.model_card(name)
    library, class_name, config = parse_reference(card.reference)
    assert library == "transformers"
    torch.manual_seed(0)
    reference = getattr(transformers, class_name)(transformers.Wav2Vec2Config(**config)).eval()
    reference = randomize_weights(reference)
    assert sum(p.numel() for p in reference.parameters()) == card.params
    with torch.device("meta"):
        model = paperzoo.create_model(name).eval()
    load_weights(model, reference, source="transformers", assign=True)
    x = card.example_input(2)
    with torch.no_grad():
        if class_name == "Wav2Vec2Model":
            expected, got = reference(x), model(x)
            assert_output_depends_on_input(expected.last_hidden_state)
            assert_close_rel(got["last_hidden_state"], expected.last_hidden_state)
            assert_close_rel(got["extract_features"], expected.extract_features)
            return
        frames = int(model.wav2vec2.num_frames(x.shape[1]))
        generator = torch.Generator().manual_seed(0)
        time_mask = compute_span_mask((2, frames), generator=generator)
        negatives = sample_negatives(time_mask, 100, generator=generator)
        expected = reference(x, mask_time_indices=time_mask, sampled_negative_indices=hf_negatives(negatives))
        got = model(x, mask_time_indices=time_mask, sampled_negative_indices=negatives)
    assert_output_depends_on_input(expected.projected_states)
    for key in ("loss", "contrastive_loss", "diversity_loss", "projected_states", "projected_quantized_states"):
        assert_close_rel(got[key].reshape(-1), getattr(expected, key).reshape(-1))


# --- span masking ----------------------------------------------------------------------------------------

def masked_runs(mask: torch.Tensor) -> list[int]:
    """Lengths of the maximal runs of masked steps, over all rows."""
    lengths = []
    for row in mask.long().numpy():
        edges = np.diff(np.concatenate([[0], row, [0]]))
        lengths += list(np.flatnonzero(edges == -1) - np.flatnonzero(edges == 1))
    return lengths


def test_span_mask_reproduces_the_papers_masking_statistics():
    """§3.1: with p = 0.065 and M = 10 "approximately 49% of all time steps are masked with a mean span length of
    14.7" (on the paper's 15.6 s crops: 780 frames). Every masked run is at least one whole span long."""
    mask = compute_span_mask((1000, 780), generator=torch.Generator().manual_seed(0))
    runs = masked_runs(mask)
    assert mask.float().mean().item() == pytest.approx(0.49, abs=0.01)
    assert np.mean(runs) == pytest.approx(14.7, abs=0.2)
    assert min(runs) >= 10


@pytest.mark.parametrize("frames", [49, 100, 300])
def test_span_mask_matches_transformers_statistically(frames):
    """transformers' ``_compute_mask_indices`` with mask_prob = p·M is the same procedure: the masked proportion
    and its spread across utterances agree within sampling error (2000 utterances each)."""
    ours = compute_span_mask((2000, frames), generator=torch.Generator().manual_seed(0)).float()
    np.random.seed(0)  # transformers draws its rounding once per call: many calls of 4 utterances
    theirs = np.concatenate([_compute_mask_indices((4, frames), mask_prob=0.65, mask_length=10, min_masks=2)
                             for _ in range(500)]).astype(np.float32)
    ours_count, theirs_count = ours.sum(1).numpy(), theirs.sum(1)
    standard_error = theirs_count.std() / np.sqrt(len(theirs_count)) * np.sqrt(2)
    assert abs(ours_count.mean() - theirs_count.mean()) < 4 * standard_error
    assert ours_count.std() == pytest.approx(theirs_count.std(), rel=0.1)
    assert np.mean(masked_runs(ours)) == pytest.approx(np.mean(masked_runs(torch.from_numpy(theirs))), rel=0.03)


def test_span_mask_counts_spans_and_respects_padding_and_short_utterances():
    generator = torch.Generator().manual_seed(0)
    # p·T = 0.065 · 200 = 13: ⌊13 + u⌋ = 13 starts, 130 masked steps before overlaps, never past the length
    mask = compute_span_mask((200, 200), generator=generator, frame_lengths=torch.full((200,), 150))
    assert not mask[:, 150:].any()
    counts = mask.sum(1)
    assert counts.max() <= 10 * round(0.065 * 150 + 1) and counts.min() >= 10
    # at least min_spans spans, but never more than fit: T // M
    short = compute_span_mask((50, 25), mask_prob=0.0, generator=generator)
    assert (short.sum(1) >= 10).all() and (short.sum(1) <= 20).all()  # two spans of 10, maybe overlapping
    assert compute_span_mask((50, 15), generator=generator).sum(1).eq(10).all()  # one span fits
    assert not compute_span_mask((5, 9), generator=generator).any()  # no span fits
    # one generator, one mask
    again = compute_span_mask((4, 100), generator=torch.Generator().manual_seed(3))
    assert torch.equal(again, compute_span_mask((4, 100), generator=torch.Generator().manual_seed(3)))


# --- distractors -----------------------------------------------------------------------------------------

def test_negatives_are_other_masked_steps_of_the_same_utterance_drawn_uniformly():
    mask = torch.zeros(2, 30, dtype=torch.bool)
    mask[0, [3, 4, 5, 20, 21]] = True
    mask[1, 10:25] = True
    negatives = sample_negatives(mask, 100, generator=torch.Generator().manual_seed(0))
    assert negatives.shape == (2, 30, 100)
    for i in range(2):
        masked = set(mask[i].nonzero().flatten().tolist())
        for t in masked:
            drawn = negatives[i, t].tolist()
            assert set(drawn) <= masked - {t}, "a distractor must be another masked step of the same utterance"
    # uniform over the 4 other masked steps of utterance 0: 5 × 100 draws, 125 expected for each step
    draws = negatives[0, mask[0]]
    for step in mask[0].nonzero().flatten().tolist():
        others = draws[torch.tensor([s != step for s in mask[0].nonzero().flatten().tolist()])]
        assert (others == step).sum().item() == pytest.approx(125, abs=45)  # ~4 standard deviations
    single = torch.zeros(1, 10, dtype=torch.bool)
    single[0, 4] = True
    with pytest.raises(ValueError, match="at least two masked steps"):
        sample_negatives(single, 5)


def equation_3(context, quantized, mask, negatives, temperature):
    """Eq. 3 step by step, summed over the masked steps; a distractor equal to the positive is left out."""
    total = torch.zeros(())
    for n, t in mask.nonzero().tolist():
        positive = quantized[n, t]
        kept = [quantized[n, j] for j in negatives[n, t].tolist() if not torch.equal(quantized[n, j], positive)]
        similarity = torch.nn.functional.cosine_similarity(context[n, t][None], torch.stack([positive, *kept]))
        total = total - torch.log_softmax(similarity / temperature, dim=0)[0]
    return total


def test_contrastive_loss_is_equation_3_and_leaves_out_copies_of_the_positive():
    torch.manual_seed(0)
    context, quantized = torch.randn(2, 6, 8), torch.randn(2, 6, 8)
    mask = torch.tensor([[True, True, False, True, False, True], [False, True, True, True, True, False]])
    negatives = sample_negatives(mask, 4, generator=torch.Generator().manual_seed(0))
    negatives[0, 0, 0], negatives[0, 3, 0] = 3, 0  # steps 0 and 3 of utterance 0 are each other's distractors
    loss = contrastive_loss(context, quantized, mask, negatives, temperature=0.1)
    assert loss.item() == pytest.approx(equation_3(context, quantized, mask, negatives, 0.1).item(), rel=1e-5)
    # Two steps with the same code: each is the other's copy, which leaves the other's denominator.
    quantized[0, 3] = quantized[0, 0]
    loss = contrastive_loss(context, quantized, mask, negatives, temperature=0.1)
    assert loss.item() == pytest.approx(equation_3(context, quantized, mask, negatives, 0.1).item(), rel=1e-5)
    everything = torch.nn.functional.cosine_similarity(context[0, 0][None], torch.stack(
        [quantized[0, 0], *quantized[0, negatives[0, 0]]])) / 0.1
    kept = torch.nn.functional.cosine_similarity(context[0, 0][None], torch.stack(
        [quantized[0, 0], *[quantized[0, j] for j in negatives[0, 0].tolist() if j != 3]])) / 0.1
    assert torch.log_softmax(everything, 0)[0] < torch.log_softmax(kept, 0)[0]  # leaving it out matters


# --- the quantiser, masking in training, the loss in training ------------------------------------------

def test_quantizer_picks_one_entry_per_codebook_and_passes_gradients_in_training():
    torch.manual_seed(0)
    quantizer = GumbelProductQuantizer(input_dim=6, num_groups=2, num_entries=5, codevector_dim=8)
    z = torch.randn(3, 7, 6)
    quantized, perplexity = quantizer.eval()(z)
    entries = quantized.view(3, 7, 2, 4)
    for g in range(2):  # each group's slice is exactly one of its codebook's entries: the argmax of the logits
        chosen = quantizer.to_logits(z).view(3, 7, 2, 5)[:, :, g].argmax(-1)
        assert torch.equal(entries[:, :, g], quantizer.codebooks[g][chosen])
    assert 1.0 <= perplexity.item() <= 2 * 5
    quantizer.train()
    quantized, perplexity = quantizer(z)
    (quantized.sum() + perplexity).backward()
    assert quantizer.to_logits.weight.grad.abs().sum() > 0 and quantizer.codebooks.grad.abs().sum() > 0
    assert gumbel_temperature(0) == 2.0 and gumbel_temperature(10**7) == 0.5
    assert gumbel_temperature(10**7, end=0.1) == pytest.approx(0.1)
    assert gumbel_temperature(100_000) == pytest.approx(2.0 * 0.999995**100_000)


def test_training_mode_masks_spans_and_evaluation_mode_does_not(one_thread):
    ours_kwargs, _ = small_config(False)
    torch.manual_seed(0)
    model = Wav2Vec2(**ours_kwargs, dropout=0.0, attention_dropout=0.0, feature_dropout=0.0)
    x = torch.randn(2, 16000)
    model.train()
    model(x)["last_hidden_state"].sum().backward()
    assert model.mask_embedding.grad is not None and model.mask_embedding.grad.abs().sum() > 0
    model.eval()
    with torch.no_grad():
        plain = model(x)["last_hidden_state"]
        assert torch.equal(plain, model(x)["last_hidden_state"])
        time_mask = torch.zeros(2, 49, dtype=torch.bool)
        time_mask[0, 10:20] = True
        masked = model(x, mask_time_indices=time_mask)["last_hidden_state"]
    assert not torch.allclose(masked[0], plain[0]) and torch.equal(masked[1], plain[1])


def test_pretraining_in_training_mode_samples_masks_and_every_parameter_learns(one_thread):
    ours_kwargs, _ = small_config(True)
    torch.manual_seed(0)
    model = Wav2Vec2PreTraining(**ours_kwargs, **SMALL_QUANTIZER).train()
    out = model(torch.randn(2, 16000))
    mask = out["mask_time_indices"]
    assert mask.dtype == torch.bool and mask.shape == (2, 49) and (mask.sum(1) >= 10).all()
    assert out["loss"] == out["contrastive_loss"] + 0.1 * out["diversity_loss"]
    out["loss"].backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, f"{name} received no gradient"
    model.eval()
    with torch.no_grad():
        first, second = model(torch.ones(1, 4000)), model(torch.ones(1, 4000))
    assert "loss" not in first and torch.equal(first["projected_states"], second["projected_states"])


# --- inputs ----------------------------------------------------------------------------------------------

def test_bad_inputs_raise_value_errors():
    ours_kwargs, _ = small_config(False)
    model = Wav2Vec2(**ours_kwargs, max_samples=32000).eval()
    model.model_name = "wav2vec2_small"
    x = torch.randn(2, 8000)
    cases = {
        "over-long": (torch.zeros(1, 32001), None, "samples <= 32000"),
        "empty batch": (torch.zeros(0, 8000), None, "empty batch"),
        "no samples": (torch.zeros(2, 0), None, "(N, samples)"),
        "mask of another shape": (x, torch.ones(2, 7999), "one entry per sample"),
        "mask not 0/1": (x, torch.full((2, 8000), 2), "values other than 0 and 1"),
        "left padding": (x, torch.cat([torch.zeros(2, 10), torch.ones(2, 7990)], 1), "right padding"),
        "a row shorter than a frame": (x, padding_mask(2, 8000, [8000, 399]), "fewer than 400"),
        "mask not a tensor": (x, [[1] * 8000] * 2, "convert it"),
    }
    for reason, (waveform, mask, words) in cases.items():
        with pytest.raises(ValueError) as info:
            model(waveform, attention_mask=mask)
        assert str(info.value).startswith("wav2vec2_small expects") and words in str(info.value), reason
    with pytest.raises(ValueError, match=r"mask_time_indices of shape \(N, T\)"):
        model(x, mask_time_indices=torch.zeros(2, 5, dtype=torch.bool))
    assert model(torch.zeros(1, 32000))["last_hidden_state"].shape == (1, 99, 32)
    unlimited = Wav2Vec2(**ours_kwargs, max_samples=None)
    unlimited.check_inputs(torch.zeros(1, 10**6))  # no limit: accepted


def test_padding_does_not_change_the_audio_frames_of_the_layer_norm_encoder(one_thread):
    """With a LayerNorm feature encoder (the LV-60k LARGE) every frame sees only its own 400 samples, and padding is
    masked out of attention and zeroed before the positional convolution (the zeros the convolution pads with when
    the utterance is alone): a padded utterance gives the same vectors at its own frames as it does alone."""
    ours_kwargs, _ = small_config(True)
    torch.manual_seed(0)
    model = Wav2Vec2(**ours_kwargs).eval()
    audio = torch.randn(1, 6000)
    padded = torch.cat([audio, torch.randn(1, 2000)], 1)
    with torch.no_grad():
        alone = model(audio)["last_hidden_state"]
        together = model(padded, attention_mask=padding_mask(1, 8000, [6000]))["last_hidden_state"]
    frames = alone.shape[1]
    assert_close_rel(together[:, :frames], alone)
