"""What only a CUDA GPU can check, run by ``scripts/gpu-table`` before its benchmarks (the suite runs on CPUs).

1. The recurrent layers' cuDNN weight layout (``RecurrentLayers.flatten_parameters``): after ``.cuda()`` every
   parameter of our LSTM and GRU is a view of one buffer, so cuDNN takes the weights as they are instead of copying
   them at every call (and warning); the outputs, final states and gradients equal torch.nn's with the same weights;
   ``load_state_dict`` keeps the layout.
2. ``paperzoo train``'s device paths, one short run each: ResNet-18 on the digits with ``--amp`` (on CUDA float16
   autocast and the gradient scaler), the LSTM language model with ``--amp`` (cuDNN's LSTM in training, on the one
   buffer), and a tiny GPT with ``--shard`` (FSDP2 on a process group of one: NCCL on CUDA).

Exits 1 with the first failure, 2 without a GPU. ``--device cpu`` runs part 2 on the CPU, to check this script.

    PYTHONPATH=src python scripts/gpu-checks.py [--device cpu]
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
import warnings
from pathlib import Path

import torch

from paperzoo.models.sequence.gru import GRU
from paperzoo.models.sequence.lstm import LSTM
from paperzoo.training.loop import TrainConfig, train


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


def check_training(device: str, out: Path) -> None:
    """One short run per device path of paperzoo train; thresholds far above chance, measured on a CPU (one thread;
    ``--device cpu``, where --amp is bfloat16): ResNet-18 0.942 after one epoch, the LSTM perplexity 35.8."""
    digits = train(TrainConfig("resnet18", epochs=1, image_size=32, device=device, amp=True, out=str(out / "resnet")))
    accuracy = digits["final_test_accuracy"]
    assert accuracy > 0.5, f"resnet18 --amp on {device}: test accuracy {accuracy:.3f} after one epoch (chance 0.1)"
    print(f"gpu-checks: train resnet18 --amp on {device}: test accuracy {accuracy:.3f}")
    text = train(TrainConfig("lstm", epochs=1, lr=3e-3, device=device, amp=True, out=str(out / "lstm"),
                             options={"seq_len": 64, "vocab_size": 320}, model_kwargs={"hidden_size": 128}))
    perplexity = text["final_test_perplexity"]
    assert perplexity < 100, f"lstm --amp on {device}: held-out perplexity {perplexity:.1f} (uniform guess: 320)"
    print(f"gpu-checks: train lstm --amp on {device}: held-out perplexity {perplexity:.1f}")
    sharded = train(TrainConfig("gpt", epochs=1, lr=3e-3, batch_size=16, device=device, shard=True,
                                out=str(out / "gpt"), options={"seq_len": 32, "vocab_size": 300},
                                model_kwargs={"num_layers": 2, "hidden_size": 32, "num_heads": 2}))
    loss = sharded["final_train_loss"]
    assert sharded["sharded"] and math.isfinite(loss), f"gpt --shard on {device}: train loss {loss}"
    assert (out / "gpt" / "model.safetensors").is_file(), f"gpt --shard on {device}: no model.safetensors"
    print(f"gpu-checks: train gpt --shard on {device}: train loss {loss:.3f}, model.safetensors written")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    device = parser.parse_args(argv).device
    if device == "cuda" and not torch.cuda.is_available():
        print("gpu-checks: no CUDA GPU here; run it on one (scripts/gpu-table does), or --device cpu",
              file=sys.stderr)
        return 2
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False  # fp32 against fp32
    try:
        if device == "cuda":
            check_recurrent(LSTM, torch.nn.LSTM)
            check_recurrent(LSTM, torch.nn.LSTM, proj_size=32)
            check_recurrent(GRU, torch.nn.GRU)
        with tempfile.TemporaryDirectory() as out:
            check_training(device, Path(out))
    except (AssertionError, ValueError) as failure:  # a check that failed, or a refusal of paperzoo train's
        print(f"gpu-checks: FAILED: {failure}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
