"""Speed of the zoo's LSTM and GRU against torch.nn.LSTM and torch.nn.GRU, side by side in one run.

Ours run torch's fused kernels by default (``torch._VF.lstm``/``gru``, what torch.nn calls: oneDNN on CPU for the
LSTM, cuDNN on a GPU) and, with ``fused=False``, the cell's equations in a Python loop over time (the input
projections of all steps are one matrix product before it), the reference path. All three hold the same weights;
each configuration is timed for inference (eval, no_grad) and for training (forward + backward), and the table
gives each of ours / torch.nn (> 1: ours is slower).

    PYTHONPATH=src python benchmarks/bench_rnn.py [--threads 1] [--repeats 5] [--device cpu]

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    print(f"torch {torch.__version__}, {device}, {args.threads} threads, median of {args.repeats}")
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
