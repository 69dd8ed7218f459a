"""What only a CUDA GPU can check, run by ``scripts/gpu-table`` before its benchmarks (the suite runs on CPUs).

The recurrent layers' cuDNN weight layout (``RecurrentLayers.flatten_parameters``): after ``.cuda()`` every
parameter of our LSTM and GRU is a view of one buffer, so cuDNN takes the weights as they are instead of copying
them at every call (and warning); the outputs, final states and gradients equal torch.nn's with the same weights;
``load_state_dict`` keeps the layout. Exits 1 with the first difference, 2 without a GPU.

    PYTHONPATH=src python scripts/gpu-checks.py
"""

from __future__ import annotations

import sys
import warnings

import torch

from paperzoo.models.sequence.gru import GRU
from paperzoo.models.sequence.lstm import LSTM


def storages(module: torch.nn.Module) -> set[int]:
    return {parameter.untyped_storage().data_ptr() for parameter in module.parameters()}


def check_recurrent(ours_class: type, reference_class: type, **kwargs) -> None:
    torch.manual_seed(0)
    settings = dict(input_size=64, hidden_size=128, num_layers=2, bidirectional=True, batch_first=True, **kwargs)
    ours, reference = ours_class(**settings), reference_class(**settings)
    reference.load_state_dict(ours.state_dict())
    ours, reference = ours.cuda(), reference.cuda()
    name = f"{ours_class.__name__}({', '.join(f'{k}={v}' for k, v in kwargs.items())})"
    assert len(storages(ours)) == 1, f"{name}: {len(storages(ours))} weight buffers after .cuda(), not one"
    x = torch.randn(4, 20, 64, device="cuda")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # cuDNN's "weights are not part of single contiguous chunk of memory"
        output, state = ours(x)
    expected, expected_state = reference(x)
    states = state if isinstance(state, tuple) else (state,)
    expected_states = expected_state if isinstance(expected_state, tuple) else (expected_state,)
    pairs = [("output", output, expected)] + [("state", s, e) for s, e in zip(states, expected_states, strict=True)]
    for what, a, b in pairs:
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-5), f"{name}: {what} differs by {(a - b).abs().max():.3g}"
    output.square().sum().backward()
    expected.square().sum().backward()
    theirs = dict(reference.named_parameters())
    for parameter_name, parameter in ours.named_parameters():
        difference = (parameter.grad - theirs[parameter_name].grad).abs().max()
        assert torch.allclose(parameter.grad, theirs[parameter_name].grad, rtol=1e-4, atol=1e-5), (
            f"{name}: the gradient of {parameter_name} differs by {difference:.3g}")
    ours.load_state_dict(reference.state_dict())
    assert len(storages(ours)) == 1, f"{name}: load_state_dict broke the one buffer"
    print(f"gpu-checks: {name}: one weight buffer, torch.nn's outputs, states and gradients")


def main() -> int:
    if not torch.cuda.is_available():
        print("gpu-checks: no CUDA GPU here; run it on one (scripts/gpu-table does)", file=sys.stderr)
        return 2
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False  # fp32 against fp32
    try:
        check_recurrent(LSTM, torch.nn.LSTM)
        check_recurrent(LSTM, torch.nn.LSTM, proj_size=32)
        check_recurrent(GRU, torch.nn.GRU)
    except AssertionError as failure:
        print(f"gpu-checks: FAILED: {failure}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
