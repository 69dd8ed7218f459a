"""The LSTM and the GRU are drop-in replacements for torch.nn.LSTM and torch.nn.GRU: the same parameter names and
shapes, and the same outputs and final states (fp32, 1e-5 relative) for every combination of torch.nn's options,
with and without an initial state, unbatched, and for variable-length batches (PackedSequence in and out, or a
padded batch with ``lengths=``); dropout draws the same masks between the same layers; gradients agree.

Each of those holds on both paths of the layers (``fused``): torch's fused kernel, the default, and the readable
loop over time that is its reference; and the two paths are compared directly (outputs, final states, and the
gradients of the input, the initial state and every parameter) over the options that change what either runs.
"""

from __future__ import annotations

import itertools
import warnings

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pack_sequence, pad_packed_sequence

import paperzoo
from conftest import assert_close_rel, build_reference, parse_reference
from paperzoo.layers import check_sequence_lengths
from paperzoo.models.sequence.gru import GRU
from paperzoo.models.sequence.lstm import LSTM

INPUT, HIDDEN, BATCH, STEPS = 5, 7, 3, 6
KINDS = {"lstm": (LSTM, nn.LSTM), "gru": (GRU, nn.GRU)}


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py: small models, one thread

def pair(kind: str, seed: int = 0, fused: bool = True, **options) -> tuple[nn.Module, nn.Module]:
    """A randomly initialised torch.nn layer and ours holding its weights (loaded as torch.nn's state_dict), ours on
    torch's fused kernel (``fused``, the default) or on the loop over time."""
    ours_class, reference_class = KINDS[kind]
    torch.manual_seed(seed)
    reference = reference_class(INPUT, HIDDEN, **options)
    ours = ours_class(INPUT, HIDDEN, fused=fused, **options)
    paperzoo.load_weights(ours, reference.state_dict(), source="torch")
    return ours, reference


def initial_state(kind: str, ours: nn.Module, batch: int | None, seed: int = 1):
    """A random initial state of torch.nn's layout: (L·D, N, H_out) (and c_0 (L·D, N, H) for the LSTM)."""
    generator = torch.Generator().manual_seed(seed)
    layers = ours.num_layers * ours.num_directions
    batch_shape = (batch,) if batch is not None else ()
    h = torch.randn(layers, *batch_shape, ours.output_size, generator=generator)
    if kind == "gru":
        return h
    return h, torch.randn(layers, *batch_shape, ours.hidden_size, generator=generator)


def assert_same_result(ours_result, reference_result) -> None:
    """(output, state) of ours against torch.nn's, each tensor to 1e-5 relative."""
    (output, state), (expected_output, expected_state) = ours_result, reference_result
    assert_close_rel(output, expected_output)
    states = state if isinstance(state, tuple) else (state,)
    expected_states = expected_state if isinstance(expected_state, tuple) else (expected_state,)
    assert len(states) == len(expected_states)
    for actual, expected in zip(states, expected_states, strict=True):
        assert_close_rel(actual, expected)


LSTM_GRID = list(itertools.product([1, 2], [True, False], [True, False], [False, True], [0, 4]))
GRU_GRID = list(itertools.product([1, 2], [True, False], [True, False], [False, True], [0]))


@pytest.mark.parametrize("kind, num_layers, bias, batch_first, bidirectional, proj_size",
                         [("lstm", *options) for options in LSTM_GRID] + [("gru", *options) for options in GRU_GRID])
@pytest.mark.parametrize("fused", [True, False], ids=["fused", "loop"])
def test_outputs_equal_torch_nn_for_every_option(kind, num_layers, bias, batch_first, bidirectional, proj_size, fused):
    options = {"num_layers": num_layers, "bias": bias, "batch_first": batch_first, "bidirectional": bidirectional}
    if proj_size:
        options["proj_size"] = proj_size
    ours, reference = pair(kind, fused=fused, **options)
    assert list(ours.state_dict()) == list(reference.state_dict()), "torch.nn's parameter names, in its order"
    assert [p.shape for p in ours.parameters()] == [p.shape for p in reference.parameters()]
    ours.eval()
    reference.eval()
    x = torch.randn((BATCH, STEPS, INPUT) if batch_first else (STEPS, BATCH, INPUT))
    with torch.no_grad():
        for hx in (None, initial_state(kind, ours, BATCH)):
            assert_same_result(ours(x, hx), reference(x, hx))
        # one unbatched sequence (T, F), with and without its (L·D, H) state
        single = x[0] if batch_first else x[:, 0]
        for hx in (None, initial_state(kind, ours, None)):
            assert_same_result(ours(single, hx), reference(single, hx))


@pytest.mark.parametrize("kind", ["lstm", "gru"])
@pytest.mark.parametrize("batch_first", [True, False])
@pytest.mark.parametrize("fused", [True, False], ids=["fused", "loop"])
def test_variable_lengths_equal_torch_nn_packed(kind, batch_first, fused):
    options = {"num_layers": 2, "bidirectional": True, "batch_first": batch_first}
    if kind == "lstm":
        options["proj_size"] = 4
    ours, reference = pair(kind, fused=fused, **options)
    lengths = torch.tensor([4, 6, 1, 3])  # unsorted, with a one-step sequence
    x = torch.randn((4, STEPS, INPUT) if batch_first else (STEPS, 4, INPUT))
    with torch.no_grad():
        for hx in (None, initial_state(kind, ours, 4)):
            packed = pack_padded_sequence(x, lengths, batch_first=batch_first, enforce_sorted=False)
            expected_packed, expected_state = reference(packed, hx)
            # A PackedSequence in gives a PackedSequence out, laid out as torch.nn's.
            packed_output, packed_state = ours(packed, hx)
            assert torch.equal(packed_output.batch_sizes, expected_packed.batch_sizes)
            assert torch.equal(packed_output.sorted_indices, expected_packed.sorted_indices)
            assert torch.equal(packed_output.unsorted_indices, expected_packed.unsorted_indices)
            assert_same_result((packed_output.data, packed_state), (expected_packed.data, expected_state))
            # A padded batch with lengths= gives the padded form of the same: zeros past each sequence's end.
            expected_output, _ = pad_packed_sequence(expected_packed, batch_first=batch_first, total_length=STEPS)
            assert_same_result(ours(x, hx, lengths=lengths), (expected_output, expected_state))
    # A sorted PackedSequence (enforce_sorted=True: no indices) and pack_sequence's too.
    sequences = [torch.randn(n, INPUT) for n in (5, 3, 2)]
    with torch.no_grad():
        for packed in (pack_sequence(sequences), pack_sequence(sequences[::-1], enforce_sorted=False)):
            expected_packed, expected_state = reference(packed)
            packed_output, packed_state = ours(packed)
            assert_same_result((packed_output.data, packed_state), (expected_packed.data, expected_state))


def test_a_padded_sequence_gives_what_it_gives_alone():
    """With lengths=, each sequence's output and final state are those of the sequence run on its own."""
    ours, _ = pair("lstm", num_layers=2, bidirectional=True, batch_first=True)
    x = torch.randn(3, STEPS, INPUT)
    lengths = [STEPS, 2, 4]
    with torch.no_grad():
        output, (h, c) = ours(x, lengths=lengths)
        for n, length in enumerate(lengths):
            alone, (h_alone, c_alone) = ours(x[n:n + 1, :length])
            assert_close_rel(output[n, :length], alone[0])
            assert torch.equal(output[n, length:], torch.zeros_like(output[n, length:]))
            assert_close_rel(h[:, n], h_alone[:, 0])
            assert_close_rel(c[:, n], c_alone[:, 0])


@pytest.mark.parametrize("kind", ["lstm", "gru"])
@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("fused", [True, False], ids=["fused", "loop"])
def test_dropout_between_layers_draws_torch_nns_masks(kind, bidirectional, fused):
    """In training mode with the same seed, ours draws the same dropout masks on the same tensors as torch.nn, so
    the outputs are equal: dropout acts on the outputs of every layer but the last, and nowhere else."""
    ours, reference = pair(kind, fused=fused, num_layers=3, dropout=0.5, bidirectional=bidirectional,
                           batch_first=True)
    x = torch.randn(BATCH, STEPS, INPUT)
    with torch.no_grad():
        torch.manual_seed(7)
        expected = reference(x)
        torch.manual_seed(7)
        actual = ours(x)
        assert_same_result(actual, expected)
        evaluated = ours.eval()(x)
        assert_same_result(evaluated, reference.eval()(x))
    assert not torch.allclose(actual[0], evaluated[0]), "dropout is active between layers in training mode"


@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_no_dropout_after_the_last_layer(kind):
    with pytest.warns(UserWarning, match="dropout acts between layers"):
        ours = KINDS[kind][0](INPUT, HIDDEN, num_layers=1, dropout=0.9)
    x = torch.randn(STEPS, BATCH, INPUT)
    with torch.no_grad():
        torch.manual_seed(0)
        trained = ours.train()(x)
        assert_same_result(trained, ours.eval()(x))


@pytest.mark.parametrize("kind", ["lstm", "gru"])
@pytest.mark.parametrize("fused", [True, False], ids=["fused", "loop"])
def test_gradients_equal_torch_nns(kind, fused):
    options = {"num_layers": 2, "bidirectional": True}
    if kind == "lstm":
        options["proj_size"] = 3
    ours, reference = pair(kind, fused=fused, **options)
    x = torch.randn(STEPS, BATCH, INPUT)
    hx = initial_state(kind, ours, BATCH)
    input_gradients = []
    for model in (ours, reference):
        inputs = x.clone().requires_grad_()
        output, _ = model(inputs, hx)
        output.pow(2).sum().backward()
        input_gradients.append(inputs.grad)
    assert_close_rel(*input_gradients)
    for (name, actual), (_, expected) in zip(ours.named_parameters(), reference.named_parameters(), strict=True):
        assert actual.grad is not None, name
        assert_close_rel(actual.grad, expected.grad)


@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_weight_gradient_in_one_product_equals_autograd_through_every_step(kind):
    """In training the LSTM and the GRU form W_hh's gradient as one product over the steps (layers/recurrent.py);
    with variable lengths, both directions and two layers it equals autograd through every step's own product."""
    torch.manual_seed(0)
    model_class = KINDS[kind][0]
    fast = model_class(INPUT, HIDDEN, num_layers=2, bidirectional=True, fused=False)  # the loop's own gradient
    plain = model_class(INPUT, HIDDEN, num_layers=2, bidirectional=True, fused=False)
    plain.load_state_dict(fast.state_dict())
    plain.recurrent_product_joins_input_gates = plain.recurrent_gradient_port = False  # autograd through each step
    x, lengths = torch.randn(STEPS, BATCH, INPUT), torch.tensor([STEPS, 2, 4])
    for model in (fast, plain):
        output, state = model(x, lengths=lengths)
        final = torch.stack(state).pow(2).sum() if isinstance(state, tuple) else state.sum()
        (output.pow(2).sum() + final).backward()
    for actual, expected in zip(fast.parameters(), plain.parameters(), strict=True):
        assert_close_rel(actual.grad, expected.grad)


def run_and_backward(model: nn.Module, x: torch.Tensor, hx, variable: str | None, lengths: torch.Tensor,
                     seed: int) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """One forward and backward pass from fresh leaves: the output and final state (padded or packed data), and the
    gradients of the input, the initial state and every parameter, of a loss that weighs each output element
    differently (a plain sum would hide a permutation)."""
    model.zero_grad(set_to_none=True)
    x = x.clone().requires_grad_()
    hx = None if hx is None else (hx.clone().requires_grad_() if isinstance(hx, torch.Tensor)
                                  else tuple(h.clone().requires_grad_() for h in hx))
    torch.manual_seed(seed)  # the same dropout masks where both paths draw them on the same tensors
    if variable == "packed":
        packed = pack_padded_sequence(x, lengths, batch_first=model.batch_first, enforce_sorted=False)
        output, state = model(packed, hx)
        output = output.data
    else:
        output, state = model(x, hx, lengths=lengths if variable == "lengths" else None)
    states = list(state) if isinstance(state, tuple) else [state]
    generator = torch.Generator().manual_seed(seed)
    loss = sum((t * torch.randn(t.shape, generator=generator)).sum() for t in [output, *states])
    loss.backward()
    leaves = [x] + ([] if hx is None else list(hx) if isinstance(hx, tuple) else [hx])
    gradients = [leaf.grad for leaf in leaves] + [p.grad for p in model.parameters()]
    return [output.detach(), *(s.detach() for s in states)], gradients


FUSED_GRID = ([("lstm", *options) for options in itertools.product([1, 2], [False, True], [True, False], [0, 3])]
              + [("gru", *options) for options in itertools.product([1, 2], [False, True], [True, False], [0])])


@pytest.mark.parametrize("kind, num_layers, bidirectional, batch_first, proj_size", FUSED_GRID)
def test_fused_kernel_equals_the_loop_over_time(kind, num_layers, bidirectional, batch_first, proj_size):
    """The default path (torch's fused kernel) against the readable loop (``fused=False``) on the same parameters:
    outputs, final states and gradients, in eval and training mode, with and without an initial state, for full,
    padded (``lengths=``) and packed batches. Dropout between layers (two layers, p = 0.5) draws the same masks on
    the same tensors in a full batch; with variable lengths the kernel drops elements of the packed data and the
    loop of the padded batch, so there the layers run at p = 1, where both zero every element between layers."""
    options = {"num_layers": num_layers, "bidirectional": bidirectional, "batch_first": batch_first}
    if proj_size:
        options["proj_size"] = proj_size
    model, _ = pair(kind, **options)
    assert model.fused, "the fused kernel is the default"
    lengths = torch.tensor([STEPS, 2, 5, 1])  # unsorted, with a one-step sequence
    x = torch.randn((4, STEPS, INPUT) if batch_first else (STEPS, 4, INPUT))
    compared = 0
    for training, hx, variable in itertools.product([False, True], [None, initial_state(kind, model, 4)],
                                                    [None, "lengths", "packed"]):
        model.train(training)
        model.dropout = (0.5 if variable is None else 1.0) if training and num_layers > 1 else 0.0
        results = {}
        for fused in (True, False):
            model.fused = fused
            results[fused] = run_and_backward(model, x, hx, variable, lengths, seed=compared)
        (outputs, gradients), (expected_outputs, expected_gradients) = results[True], results[False]
        what = f"training={training}, initial state={hx is not None}, variable={variable}"
        assert len(outputs) == len(expected_outputs) and len(gradients) == len(expected_gradients), what
        for actual, expected in zip(outputs + gradients, expected_outputs + expected_gradients, strict=True):
            assert actual is not None and expected is not None, what
            assert_close_rel(actual, expected)
        compared += 1
    assert compared == 12


def test_a_peephole_lstm_runs_the_loop():
    """torch's kernel has no peephole weights: a peephole LSTM (Seq2Seq's) runs the loop whatever ``fused`` says,
    and gives the same outputs either way."""
    torch.manual_seed(0)
    model = LSTM(INPUT, HIDDEN, peephole=True)
    assert model.fused and not model.fused_kernel_applies()
    x = torch.randn(STEPS, BATCH, INPUT)
    with torch.no_grad():
        default = model(x)
        model.fused = False
        assert_same_result(default, model(x))
    assert LSTM(INPUT, HIDDEN).fused_kernel_applies() and GRU(INPUT, HIDDEN).fused_kernel_applies()


@pytest.mark.parametrize("kind, fused, options", [
    ("lstm", True, {}), ("gru", True, {}), ("lstm", False, {}), ("gru", False, {}), ("lstm", True, {"peephole": True})],
    ids=["lstm-fused", "gru-fused", "lstm-loop", "gru-loop", "peephole-lstm"])
def test_a_compiled_training_step_gives_the_eager_outputs_and_gradients(kind, fused, options):
    """torch.compile around a training step (backend aot_eager: AOT autograd's joint graph, as inductor builds it,
    without generating code), on an input that needs no gradient, as a model's input in training. Until issue 26 the
    LSTM on the kernel failed (an AssertionError from AOT autograd on the tensors the kernel saves for backward;
    under inductor a TypeError at oneDNN's ``mkldnn_rnn_layer``). The layer now runs outside the graph while
    gradients are taken, as Dynamo runs torch.nn's recurrent layers."""
    torch.manual_seed(0)
    model = KINDS[kind][0](INPUT, HIDDEN, num_layers=2, bidirectional=True, batch_first=True, fused=fused, **options)
    x = torch.randn(BATCH, STEPS, INPUT)

    def training_step(forward) -> list[torch.Tensor]:
        output, state = forward(x)
        states = state if isinstance(state, tuple) else (state,)
        loss = output.square().mean() + sum(s.square().mean() for s in states)
        return [output, *states, *torch.autograd.grad(loss, list(model.parameters()))]

    expected = training_step(model)
    torch._dynamo.reset()
    actual = training_step(torch.compile(model, backend="aot_eager"))
    assert len(actual) == len(expected) == 3 + len(list(model.parameters())) - (kind == "gru")
    for a, e in zip(actual, expected, strict=True):
        assert_close_rel(a, e)


@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_fused_kernel_on_the_meta_device(kind):
    """The contract tests build on the meta device; the kernel gives torch.nn's shapes there too."""
    model = KINDS[kind][0](INPUT, HIDDEN, num_layers=2, bidirectional=True, batch_first=True, device="meta")
    output, state = model(torch.randn(BATCH, STEPS, INPUT, device="meta"))
    assert output.device.type == "meta" and output.shape == (BATCH, STEPS, 2 * HIDDEN)
    for s in state if isinstance(state, tuple) else (state,):
        assert s.shape == (4, BATCH, HIDDEN)


@pytest.mark.parametrize("name", ["lstm", "gru"])
def test_the_registered_variant_equals_its_cards_reference(name):
    """The card's reference, built as it says, and ``create_model(name)`` at the canonical input."""
    card = paperzoo.model_card(name)
    assert parse_reference(card.reference)[0] == "torch.nn"
    torch.manual_seed(0)
    reference = build_reference(card.reference).eval()
    ours = paperzoo.load_weights(paperzoo.create_model(name), reference, source="torch").eval()
    assert sum(p.numel() for p in reference.parameters()) == card.params
    x = card.example_input(2)
    with torch.no_grad():
        assert_same_result(ours(x), reference(x))


def test_create_model_takes_torch_nns_keywords():
    model = paperzoo.create_model("lstm", input_size=3, hidden_size=8, num_layers=2, bias=False, dropout=0.25,
                                  bidirectional=True, proj_size=5)
    reference = nn.LSTM(input_size=3, hidden_size=8, num_layers=2, bias=False, dropout=0.25, bidirectional=True,
                        proj_size=5, batch_first=True)
    assert model.batch_first, "the registered builder is batch first, the zoo's convention"
    model.load_state_dict(reference.state_dict())  # a plain load_state_dict from torch.nn works too
    assert not LSTM(3, 8).batch_first, "the class keeps torch.nn's default"
    gru = paperzoo.create_model("gru", input_size=3, hidden_size=8, bidirectional=True)
    gru.load_state_dict(nn.GRU(3, 8, bidirectional=True).state_dict())
    # fused=False (ours) picks the loop over time; it changes no parameter and no state_dict key
    loop = paperzoo.create_model("gru", input_size=3, hidden_size=8, bidirectional=True, fused=False)
    assert gru.fused and not loop.fused and list(loop.state_dict()) == list(gru.state_dict())


def test_peephole_lstm_is_graves_formulation():
    """``peephole=True`` (Seq2Seq's LSTM) against Graves (2013), eqs. 7-11, written out here step by step; with
    zero peephole weights it is torch.nn.LSTM."""
    torch.manual_seed(0)
    ours = LSTM(INPUT, HIDDEN, peephole=True)
    reference = nn.LSTM(INPUT, HIDDEN)
    missing, unexpected = ours.load_state_dict(reference.state_dict(), strict=False)
    assert sorted(missing) == ["weight_cf_l0", "weight_ci_l0", "weight_co_l0"] and not unexpected
    x = torch.randn(STEPS, BATCH, INPUT)
    with torch.no_grad():
        for name in missing:
            getattr(ours, name).zero_()
        assert_same_result(ours(x), reference(x))
        for name in missing:
            getattr(ours, name).uniform_(-1, 1)
        output, (h_n, c_n) = ours(x)
    w_i, w_f, w_g, w_o = ours.weight_ih_l0.chunk(4)
    u_i, u_f, u_g, u_o = ours.weight_hh_l0.chunk(4)
    b_i, b_f, b_g, b_o = (ours.bias_ih_l0 + ours.bias_hh_l0).chunk(4)
    h, c = torch.zeros(BATCH, HIDDEN), torch.zeros(BATCH, HIDDEN)
    with torch.no_grad():
        for t in range(STEPS):
            i = torch.sigmoid(x[t] @ w_i.T + h @ u_i.T + ours.weight_ci_l0 * c + b_i)
            f = torch.sigmoid(x[t] @ w_f.T + h @ u_f.T + ours.weight_cf_l0 * c + b_f)
            c = f * c + i * torch.tanh(x[t] @ w_g.T + h @ u_g.T + b_g)
            o = torch.sigmoid(x[t] @ w_o.T + h @ u_o.T + ours.weight_co_l0 * c + b_o)
            h = o * torch.tanh(c)
            assert_close_rel(output[t], h)
    assert_close_rel(h_n[0], h)
    assert_close_rel(c_n[0], c)


@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_bad_input_raises_value_error_with_the_expected_shape(kind):
    model = KINDS[kind][0](INPUT, HIDDEN, num_layers=2, batch_first=True)
    x = torch.randn(BATCH, STEPS, INPUT)
    cases = {
        "wrong feature size": ((torch.randn(BATCH, STEPS, INPUT + 1),), {}, f"(N, T, {INPUT})"),
        "empty sequences": ((torch.randn(BATCH, 0, INPUT),), {}, f"(N, T, {INPUT})"),
        "a state of the wrong shape": ((x, initial_state(kind, model, BATCH + 1)), {}, f"(2, {BATCH}, {HIDDEN})"),
        "an empty sequence in lengths": ((x,), {"lengths": [STEPS, 0, 2]}, f"integers in [1, {STEPS}]"),
        "a length beyond the padding": ((x,), {"lengths": [STEPS + 1, 1, 2]}, f"integers in [1, {STEPS}]"),
        "too few lengths": ((x,), {"lengths": [1, 2]}, f"N = {BATCH} integers"),
        "lengths for one sequence": ((x[0],), {"lengths": [2]}, "(N, T, F)"),
    }
    if kind == "lstm":
        cases["h_0 without c_0"] = ((x, initial_state(kind, model, BATCH)[0]), {}, "(h_0, c_0)")
    for reason, (args, kwargs, expected) in cases.items():
        with pytest.raises(ValueError) as info:
            model(*args, **kwargs)
        message = str(info.value)
        assert message.startswith(f"{kind} expects") and expected in message, f"{reason}: {message}"


def test_constructor_rejects_impossible_options():
    for options in ({"proj_size": HIDDEN}, {"dropout": 1.5}, {"num_layers": 0}, {"proj_size": -1}):
        with pytest.raises(ValueError), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            LSTM(INPUT, HIDDEN, **options)
    with pytest.raises(TypeError):
        GRU(INPUT, HIDDEN, proj_size=2)  # projections are the LSTM's only (torch.nn.GRU refuses them too)


@settings(max_examples=200, deadline=None)
@given(lengths=st.lists(st.integers(-1, 7), min_size=0, max_size=5), batch_size=st.integers(1, 4),
       max_length=st.integers(1, 6), dtype=st.sampled_from([torch.int64, torch.int32, torch.float32, torch.bool]))
def test_lengths_check_accepts_exactly_the_valid_lengths(lengths, batch_size, max_length, dtype):
    """The shared check behind ``lengths=`` and ``src_lengths=``, against an independent statement of validity."""
    tensor = torch.tensor(lengths, dtype=dtype)
    valid = (len(lengths) == batch_size and dtype in (torch.int64, torch.int32)
             and all(1 <= length <= max_length for length in lengths))
    if valid:
        check_sequence_lengths(tensor, name="net", batch_size=batch_size, max_length=max_length)
        check_sequence_lengths(lengths, name="net", batch_size=batch_size, max_length=max_length)  # a list too
        return
    with pytest.raises(ValueError) as info:
        check_sequence_lengths(tensor, name="net", batch_size=batch_size, max_length=max_length)
    assert str(info.value).startswith(f"net expects lengths as N = {batch_size} integers in [1, {max_length}]")
