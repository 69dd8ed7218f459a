"""Speed of the zoo's LSTM and GRU against torch.nn.LSTM and torch.nn.GRU, side by side in one run.

Ours run torch's fused kernels by default (``torch._VF.lstm``/``gru``, what torch.nn calls: oneDNN on CPU for the
LSTM, cuDNN on a GPU) and, with ``fused=False``, the cell's equations in a Python loop over time (the input
projections of all steps are one matrix product before it), the reference path. All three hold the same weights;
each configuration is timed for inference (eval, no_grad) and for training (forward + backward), and the table
gives each of ours / torch.nn (> 1: ours is slower).

    PYTHONPATH=src python benchmarks/bench_rnn.py [--threads 1] [--repeats 5] [--device cpu] [--models]

``--models`` times instead the translation models built on the layers, Seq2Seq and RNNsearch (vocabularies cut to
1000 words so that the recurrent part is most of the time), with their layers on the default path against
``fused=False``, interleaved: Seq2Seq's peephole LSTMs (the paper's) and RNNsearch's gated hidden unit have no
torch kernel and run the loop either way; Seq2Seq with ``peephole=False`` shows what the kernel does there.

Not a test: the numbers depend on the machine and its load.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch
from torch import nn

import paperzoo

# (kind, batch N, steps T, features F, hidden H, options)
CONFIGS = [
    ("lstm", 32, 35, 256, 512, {}),  # the registered lstm's canonical shape
    ("lstm", 32, 35, 256, 512, {"num_layers": 2, "bidirectional": True}),
    ("lstm", 32, 35, 256, 512, {"proj_size": 128}),
    ("lstm", 1, 100, 64, 64, {}),  # small: the per-step overhead of the Python loop dominates
    ("lstm", 128, 50, 1000, 1000, {"num_layers": 2}),  # Seq2Seq-sized layers
    ("gru", 32, 35, 256, 512, {}),
    ("gru", 32, 35, 256, 512, {"num_layers": 2, "bidirectional": True}),
    ("gru", 1, 100, 64, 64, {}),
]


def seconds(function: Callable[[], object], repeats: int, device: torch.device) -> float:
    """The median wall time of ``repeats`` calls, after one warm-up call."""
    function()
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        function()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


# (model, keywords, [(batch N, tokens T)]): the cards' input (2 x 8 tokens) and a larger batch of longer sentences
MODEL_CONFIGS = [
    ("seq2seq", {}, [(2, 8), (16, 30)]),  # peephole LSTMs: the loop on both paths
    ("seq2seq", {"peephole": False}, [(2, 8), (16, 30)]),  # torch.nn-style LSTMs: the kernel by default
    ("attention_seq2seq", {}, [(2, 8), (16, 30)]),  # the paper's gated unit: the loop on both paths
]


CallFor = Callable[[bool], Callable[[], None]]


def _model_calls(model: torch.nn.Module, layers: list, optimizer: torch.optim.Optimizer, src: torch.Tensor,
                 tgt: torch.Tensor) -> tuple[CallFor, CallFor]:
    """The timed calls of one model and input: ``infer(fused)`` and ``train(fused)`` each give a call that sets
    every recurrent layer's path, then runs a forward pass (no grad) or a training step."""

    def infer(fused: bool) -> Callable[[], None]:
        def call() -> None:
            for layer in layers:
                layer.fused = fused
            with torch.no_grad():
                model(src, tgt)
        return call

    def train(fused: bool) -> Callable[[], None]:
        def call() -> None:
            for layer in layers:
                layer.fused = fused
            optimizer.zero_grad(set_to_none=True)
            model(src, tgt).logsumexp(-1).mean().backward()
            optimizer.step()
        return call

    return infer, train


def time_models(repeats: int, device: torch.device) -> None:
    """Seq2Seq and RNNsearch with their recurrent layers on the default path and on the loop (``fused=False``)."""
    from paperzoo.benchmark import time_interleaved
    from paperzoo.layers.recurrent import RecurrentLayers

    print(f"{'model':<18} {'options':<18} {'kernel':<7} {'N':>3} {'T':>3} {'infer: default':>15} {'loop':>9} "
          f"{'train: default':>15} {'loop':>9}")
    for name, options, shapes in MODEL_CONFIGS:
        torch.manual_seed(0)
        model = paperzoo.create_model(name, vocab_size=1000, target_vocab_size=1000, **options).to(device)
        layers = [m for m in model.modules() if isinstance(m, RecurrentLayers)]
        kernel = "yes" if all(m.fused_kernel_applies() for m in layers) else "no"
        optimizer = torch.optim.SGD(model.parameters(), lr=1e-5)
        for batch, steps in shapes:
            src = torch.randint(3, 1000, (batch, steps), device=device)
            tgt = torch.randint(3, 1000, (batch, steps), device=device)

            infer, train = _model_calls(model, layers, optimizer, src, tgt)
            model.eval()
            inference = time_interleaved({"default": infer(True), "loop": infer(False)}, device, repeats=repeats)
            model.train()
            training = time_interleaved({"default": train(True), "loop": train(False)}, device, repeats=repeats)
            ms = {key: statistics.median(samples) * 1e3 for key, samples in inference.items()}
            train_ms = {key: statistics.median(samples) * 1e3 for key, samples in training.items()}
            text = ", ".join(f"{k}={v}" for k, v in options.items()) or "-"
            print(f"{name:<18} {text:<18} {kernel:<7} {batch:>3} {steps:>3} {ms['default']:>12.1f} ms "
                  f"{ms['loop']:>6.1f} ms {train_ms['default']:>12.1f} ms {train_ms['loop']:>6.1f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--models", action="store_true", help="time Seq2Seq and RNNsearch instead of the layers")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    print(f"torch {torch.__version__}, {device}, {args.threads} threads, median of {args.repeats}")
    if args.models:
        time_models(args.repeats, device)
        return
    header = (f"{'layer':<6} {'N':>4} {'T':>4} {'F':>5} {'H':>5} {'options':<34} {'infer: torch':>13} {'fused':>6} "
              f"{'loop':>6} {'train: torch':>13} {'fused':>6} {'loop':>6}")
    print(header)
    print("-" * len(header))
    for kind, batch, steps, features, hidden, options in CONFIGS:
        torch.manual_seed(0)
        reference = getattr(nn, kind.upper())(features, hidden, batch_first=True, **options).to(device)
        fused = paperzoo.create_model(kind, input_size=features, hidden_size=hidden, **options).to(device)
        fused.load_state_dict(reference.state_dict())
        loop = paperzoo.create_model(kind, input_size=features, hidden_size=hidden, fused=False, **options).to(device)
        loop.load_state_dict(reference.state_dict())
        x = torch.randn(batch, steps, features, device=device)
        models = (reference, fused, loop)
        inference, training = [], []
        for model in models:
            model.eval()
            with torch.no_grad():
                inference.append(seconds(lambda model=model, x=x: model(x), args.repeats, device))
        for model in models:
            model.train()

            def step(model: nn.Module = model, x: torch.Tensor = x) -> None:
                output, _ = model(x)
                output.sum().backward()

            training.append(seconds(step, args.repeats, device))
        text = ", ".join(f"{k}={v}" for k, v in options.items()) or "-"
        print(f"{kind:<6} {batch:>4} {steps:>4} {features:>5} {hidden:>5} {text:<34} "
              f"{inference[0] * 1e3:>10.2f} ms {inference[1] / inference[0]:>6.2f} {inference[2] / inference[0]:>6.2f} "
              f"{training[0] * 1e3:>10.2f} ms {training[1] / training[0]:>6.2f} {training[2] / training[0]:>6.2f}")


if __name__ == "__main__":
    main()
