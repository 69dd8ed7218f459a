"""The shared input checks, against an independent statement of what a valid batch of each input kind is."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import paperzoo
from paperzoo.layers import (
    check_feature_sequence,
    check_finite,
    check_image_batch,
    check_image_list,
    check_latent_batch,
    check_token_batch,
    check_waveform_batch,
)
from paperzoo.registry import InputSpec

DTYPES = [torch.float32, torch.float16, torch.float64, torch.bfloat16, torch.int64, torch.uint8, torch.bool]


@settings(max_examples=300, deadline=None)
@given(
    shape=st.lists(st.integers(0, 6), min_size=0, max_size=5),
    dtype=st.sampled_from(DTYPES),
    in_chans=st.integers(1, 4),
    min_size=st.integers(1, 5),
)
def test_accepts_exactly_the_valid_batches(shape, dtype, in_chans, min_size):
    x = torch.zeros(shape, dtype=dtype)
    valid = (len(shape) == 4 and shape[1] == in_chans and dtype.is_floating_point and shape[0] > 0
             and min(shape[2], shape[3]) >= min_size)
    if valid:
        check_image_batch(x, name="net", in_chans=in_chans, min_size=min_size)
        return
    with pytest.raises(ValueError) as info:
        check_image_batch(x, name="net", in_chans=in_chans, min_size=min_size)
    message = str(info.value)
    assert message.startswith(f"net expects a float tensor of shape (N, {in_chans}, H, W)")
    assert f"got {tuple(shape)}: " in message


@pytest.mark.parametrize("x, advice", [
    (torch.zeros(3, 224, 224), "x.unsqueeze(0)"),
    (torch.zeros(1, 224, 224, 3), "x.permute(0, 3, 1, 2)"),
    (torch.zeros(1, 1, 224, 224), "in_chans=1"),
    (torch.zeros(1, 3, 224, 224, dtype=torch.uint8), "x.float()"),
    (torch.zeros(1, 3, 16, 64), "at least 32x32"),
    (torch.zeros(0, 3, 224, 224), "empty batch"),
    (torch.zeros(2, 3, 4, 4, 4), "5-d tensor"),
])
def test_messages_say_how_to_fix_the_call(x, advice):
    with pytest.raises(ValueError, match=r"resnet50 expects a float tensor of shape \(N, 3, H, W\) with H, W >= 32"
                       ) as info:
        check_image_batch(x, name="resnet50", in_chans=3, min_size=32)
    assert advice in str(info.value)


def test_a_channels_last_batch_is_told_to_permute_not_to_rebuild_the_model():
    """(1, 224, 224, 3) used to be told first to build the model with in_chans=224."""
    with pytest.raises(ValueError) as info:
        check_image_batch(torch.zeros(1, 224, 224, 3), name="resnet50", in_chans=3, min_size=32)
    assert "x.permute(0, 3, 1, 2)" in str(info.value) and "in_chans" not in str(info.value)


def test_token_inputs_say_they_are_integer_ids():
    """card.input.dtype said float32 for the models that take int64 ids (the field's default)."""
    import paperzoo

    for name in ("bert_base", "gpt2", "transformer_base", "seq2seq", "attention_seq2seq"):
        card = paperzoo.model_card(name)
        assert card.input.dtype == torch.int64, name
        example = card.example_input(1)
        assert all(t.dtype == torch.int64 for t in (example if isinstance(example, tuple) else (example,))), name
    assert paperzoo.model_card("resnet50").input.dtype == torch.float32


def test_a_count_of_one_channel_is_singular():
    with pytest.raises(ValueError, match=r"got \(1, 1, 8, 8\): 1 channel; convert the images to 3 channels"):
        check_image_batch(torch.zeros(1, 1, 8, 8), name="net", in_chans=3)
    with pytest.raises(ValueError, match="2 channels; convert the images to 1 channel,"):
        check_image_batch(torch.zeros(1, 2, 8, 8), name="net", in_chans=1)


def test_the_issue_example_message():
    with pytest.raises(ValueError) as info:
        check_image_batch(torch.zeros(3, 224, 224), name="resnet50", in_chans=3, min_size=32)
    assert str(info.value).startswith(
        "resnet50 expects a float tensor of shape (N, 3, H, W) with H, W >= 32; got (3, 224, 224)")


@settings(max_examples=200, deadline=None)
@given(shape=st.lists(st.integers(0, 6), min_size=0, max_size=5), dtype=st.sampled_from(DTYPES),
       size=st.integers(1, 5))
def test_an_exact_size_accepts_only_that_size(shape, dtype, size):
    x = torch.zeros(shape, dtype=dtype)
    valid = (len(shape) == 4 and shape[1] == 1 and dtype.is_floating_point and shape[0] > 0
             and shape[2] == shape[3] == size)
    if valid:
        check_image_batch(x, name="net", in_chans=1, min_size=size, size=size)
        return
    with pytest.raises(ValueError) as info:
        check_image_batch(x, name="net", in_chans=1, min_size=size, size=size)
    assert str(info.value).startswith(f"net expects a float tensor of shape (N, 1, H, W) with H = W = {size}; "
                                      f"got {tuple(shape)}: ")


@settings(max_examples=300, deadline=None)
@given(shape=st.lists(st.integers(0, 6), min_size=0, max_size=5), dtype=st.sampled_from(DTYPES),
       latent_dim=st.integers(1, 6))
def test_latent_check_accepts_exactly_the_valid_batches(shape, dtype, latent_dim):
    z = torch.zeros(shape, dtype=dtype)
    valid = len(shape) == 2 and shape[1] == latent_dim and dtype.is_floating_point and shape[0] > 0
    if valid:
        check_latent_batch(z, name="gen", latent_dim=latent_dim)
        return
    with pytest.raises(ValueError) as info:
        check_latent_batch(z, name="gen", latent_dim=latent_dim)
    assert str(info.value).startswith(f"gen expects a float tensor of shape (N, {latent_dim}); got {tuple(shape)}: ")


@pytest.mark.parametrize("z, advice", [
    (torch.zeros(100), "z.unsqueeze(0)"),
    (torch.zeros(2, 100, 1, 1), "z.flatten(1)"),
    (torch.zeros(2, 64), "draw 100 per example"),
    (torch.zeros(2, 100, dtype=torch.int64), "z.float()"),
    (torch.zeros(0, 100), "empty batch"),
    ([0.0] * 100, "torch.as_tensor"),
])
def test_latent_messages_say_how_to_fix_the_call(z, advice):
    with pytest.raises(ValueError, match=r"dcgan expects a float tensor of shape \(N, 100\)") as info:
        check_latent_batch(z, name="dcgan", latent_dim=100)
    assert advice in str(info.value)


INT_DTYPES = (torch.int64, torch.int32, torch.int16, torch.int8, torch.uint8)


@settings(max_examples=300, deadline=None)
@given(
    shape=st.lists(st.integers(0, 5), min_size=0, max_size=4),
    dtype=st.sampled_from(DTYPES),
    vocab_size=st.integers(1, 4),
    max_length=st.one_of(st.none(), st.integers(1, 5)),
    fill=st.integers(-1, 4),
)
def test_token_check_accepts_exactly_the_valid_batches(shape, dtype, vocab_size, max_length, fill):
    ids = torch.full(shape, fill).to(dtype) if dtype != torch.bool else torch.zeros(shape, dtype=dtype)
    value = int(ids.flatten()[0]) if ids.numel() else 0  # what the cast made of ``fill``
    valid = (len(shape) == 2 and dtype in INT_DTYPES and shape[0] > 0 and shape[1] > 0
             and (max_length is None or shape[1] <= max_length) and 0 <= value < vocab_size)
    if valid:
        check_token_batch(ids, name="lm", vocab_size=vocab_size, max_length=max_length)
        return
    with pytest.raises(ValueError) as info:
        check_token_batch(ids, name="lm", vocab_size=vocab_size, max_length=max_length)
    expected = f"lm expects token ids as an integer tensor of shape (N, T) with ids in [0, {vocab_size})"
    assert str(info.value).startswith(expected)
    assert str(tuple(shape)) in str(info.value)


def test_token_messages_say_how_to_fix_the_call():
    with pytest.raises(ValueError, match=r"id 7 outside the vocabulary \[0, 5\); map unknown tokens"):
        check_token_batch(torch.tensor([[1, 7]]), name="lm", vocab_size=5)
    with pytest.raises(ValueError, match="truncate or split them to at most 3"):
        check_token_batch(torch.zeros(1, 4, dtype=torch.int64), name="lm", vocab_size=5, max_length=3)
    with pytest.raises(ValueError, match=r"ids\.unsqueeze\(0\)"):
        check_token_batch(torch.zeros(4, dtype=torch.int64), name="lm", vocab_size=5)


@settings(max_examples=200, deadline=None)
@given(shape=st.lists(st.integers(0, 5), min_size=0, max_size=4), dtype=st.sampled_from(DTYPES),
       input_size=st.integers(1, 4), batch_first=st.booleans())
def test_feature_sequence_check_accepts_exactly_the_valid_batches(shape, dtype, input_size, batch_first):
    x = torch.zeros(shape, dtype=dtype)
    valid = len(shape) in (2, 3) and shape[-1] == input_size and dtype.is_floating_point and 0 not in shape
    if valid:
        check_feature_sequence(x, name="rnn", input_size=input_size, batch_first=batch_first)
        return
    with pytest.raises(ValueError) as info:
        check_feature_sequence(x, name="rnn", input_size=input_size, batch_first=batch_first)
    layout = f"(N, T, {input_size})" if batch_first else f"(T, N, {input_size})"
    assert str(info.value).startswith(f"rnn expects a float tensor of shape {layout}")


@settings(max_examples=200, deadline=None)
@given(shape=st.lists(st.integers(0, 6), min_size=0, max_size=4), dtype=st.sampled_from(DTYPES),
       min_samples=st.integers(1, 5))
def test_waveform_check_accepts_exactly_the_valid_batches(shape, dtype, min_samples):
    x = torch.zeros(shape, dtype=dtype)
    valid = len(shape) == 2 and dtype.is_floating_point and shape[0] > 0 and shape[1] >= min_samples
    if valid:
        check_waveform_batch(x, name="asr", min_samples=min_samples)
        return
    with pytest.raises(ValueError) as info:
        check_waveform_batch(x, name="asr", min_samples=min_samples)
    assert str(info.value).startswith("asr expects a float tensor of shape (N, samples) of 16 kHz audio")


def test_example_inputs_of_the_sequence_kinds():
    ids = InputSpec(kind="tokens", shape=(9,), vocab_size=11).example_input(3)
    assert ids.shape == (3, 9) and ids.dtype == torch.int64 and 0 <= ids.min() and ids.max() < 11
    source, target = InputSpec(kind="token-pairs", shape=(5, 7), vocab_size=4, target_vocab_size=6).example_input(2)
    assert source.shape == (2, 5) and target.shape == (2, 7) and source.max() < 4 and target.max() < 6
    assert InputSpec(kind="features", shape=(4, 3)).example_input(2).shape == (2, 4, 3)
    assert InputSpec(kind="waveform", shape=(16000,), min_size=400).example_input(1).shape == (1, 16000)
    with pytest.raises(ValueError, match="needs its vocab_size"):
        InputSpec(kind="tokens", shape=(9,))
    with pytest.raises(ValueError, match="unknown input kind"):
        InputSpec(kind="text", shape=(9,))
@pytest.mark.parametrize("size, ok", [(27, False), (28, True), (29, False), (64, False)])
def test_exact_size_accepts_only_that_size_and_says_why(size, ok):
    x = torch.zeros(1, 1, size, size)
    if ok:
        check_image_batch(x, name="capsnet", in_chans=1, min_size=28, size=28, size_reason="weights")
        return
    with pytest.raises(ValueError) as info:
        check_image_batch(x, name="capsnet", in_chans=1, min_size=28, size=28, size_reason="weights")
    assert str(info.value) == (f"capsnet expects a float tensor of shape (N, 1, H, W) with H = W = 28; got (1, 1, "
                               f"{size}, {size}): an image of {size}x{size}; resize it to exactly 28x28 (weights)")


# --- dtypes and values ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [torch.float64, torch.float16, torch.bfloat16])
def test_a_dtype_other_than_the_weights_gets_one_line_with_the_fix(dtype):
    model = paperzoo.create_model("resnet18", num_classes=3).eval()
    x = torch.zeros(1, 3, 32, 32, dtype=dtype)
    name = str(dtype).removeprefix("torch.")
    with pytest.raises(ValueError) as info:
        model(x)
    message = str(info.value)
    assert message.startswith("resnet18 expects a float tensor of shape (N, 3, H, W)") and "\n" not in message
    assert f"dtype {name}, but the model's weights are float32" in message
    assert "x.to(torch.float32)" in message and f"model.to(torch.{name})" in message
    # The model in the input's dtype takes it; under autocast mixed dtypes are intended.
    assert model.to(dtype)(x).dtype == dtype or dtype != torch.float64
    with torch.autocast("cpu", dtype=torch.bfloat16):
        paperzoo.create_model("resnet18", num_classes=3).eval()(torch.zeros(1, 3, 32, 32, dtype=torch.bfloat16))


def test_the_dtype_check_reaches_every_float_input_kind():
    checks = [
        lambda x, m: check_image_batch(x, model=m, in_chans=1),
        lambda x, m: check_latent_batch(x.flatten(1), model=m, latent_dim=4),
        lambda x, m: check_feature_sequence(x[:, 0], model=m, input_size=2),
        lambda x, m: check_waveform_batch(x.flatten(1), model=m),
        lambda x, m: check_image_list(list(x.expand(-1, 3, -1, -1)), model=m),
    ]
    model = torch.nn.Linear(2, 2)
    model.model_name = "net"
    x = torch.rand(2, 1, 2, 2, dtype=torch.float64)
    for check in checks:
        with pytest.raises(ValueError, match=r"^net expects .*dtype float64, but the model's weights are float32"):
            check(x, model)
        check(x.float(), model)  # the weights' dtype passes
        with torch.device("meta"):  # and the check runs on the meta device, where there are no values
            meta_model = torch.nn.Linear(2, 2)
        with pytest.raises(ValueError, match="float64"):
            check(x.to("meta"), meta_model)


def test_detectors_refuse_0_to_255_and_non_finite_images():
    image = torch.rand(3, 20, 20)
    check_image_list([image, image * 1.2], name="det")  # a resize's overshoot passes
    with pytest.raises(ValueError, match=r"values in \[.*\]; the model takes pixels in \[0, 1\]: divide 0..255 images "
                                         r"with x / 255"):
        check_image_list([image, image * 255], name="det")
    with pytest.raises(ValueError, match="image 1: NaN or infinite values"):
        check_image_list([image, image.clone().index_fill_(1, torch.tensor([3]), float("nan"))], name="det")
    with pytest.raises(ValueError, match="values in"):  # normalised with mean and std: the detector does it itself
        check_image_list([(image - 0.45) / 0.225], name="det")
    with torch.device("meta"):
        check_image_list([torch.empty(3, 20, 20)], name="det")  # no values to read


def test_non_finite_values_are_an_opt_in_check():
    x = torch.zeros(1, 1, 4, 4)
    x[0, 0, 1, 1] = float("inf")
    check_image_batch(x, name="net", in_chans=1)  # off by default: a pass over every input costs time
    with check_finite(), pytest.raises(ValueError, match="NaN or infinite values"):
        check_image_batch(x, name="net", in_chans=1)
    with check_finite(), pytest.raises(ValueError, match="NaN or infinite values"):
        check_latent_batch(torch.tensor([[float("nan"), 0.0]]), name="net", latent_dim=2)
    check_image_batch(x, name="net", in_chans=1)


@pytest.mark.parametrize("name", ["vae", "autoencoder", "gan", "dcgan"])
def test_generative_losses_refuse_0_to_255_pixels(name):
    model = paperzoo.create_model(name)
    low, high = getattr(model, "output_range", (0.0, 1.0))
    spec = paperzoo.model_card(name).input
    shape = (2, *model.image_shape) if hasattr(model, "image_shape") else (2, *spec.shape)
    pixels = torch.rand(shape, generator=torch.Generator().manual_seed(0))
    model.loss(pixels * (high - low) + low)  # in range
    with pytest.raises(ValueError, match=rf"the model takes pixels in \[{low:g}, {high:g}\]: divide 0..255 images"):
        model.loss(pixels * 255)


@pytest.mark.parametrize("name", ["vae", "autoencoder"])
def test_bernoulli_models_example_input_is_pixels_in_0_1(name):
    x = paperzoo.model_card(name).input.example_input(4, generator=torch.Generator().manual_seed(0))
    assert 0 <= float(x.min()) and float(x.max()) <= 1
    paperzoo.create_model(name).loss(x)


def test_a_model_specific_input_check_shares_the_dtype_check():
    model = paperzoo.create_model("coordconv_classifier").eval()
    coords = torch.zeros(2, 2)
    model(coords)
    with pytest.raises(ValueError, match=r"^coordconv_classifier expects .* dtype float64, but the model's weights"):
        model(coords.double())
