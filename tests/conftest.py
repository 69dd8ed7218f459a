"""Helpers shared by the test files: the one relative-error assertion, and reference-model preparation."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator

import pytest
import torch
from torch import nn

from paperzoo.interop.references import (  # noqa: F401 (the tests import them from here)
    build_reference,
    parse_reference,
    tensors_on_meta,
)
from paperzoo.measure import torch_threads

# pytest-xdist runs one process per core (`pytest -n 2`); each would otherwise start a thread per core too,
# and on 2 cores 4 busy threads are several times slower than 2 (measured: a DenseNet parity test 64 s → 3 s).
if "PYTEST_XDIST_WORKER_COUNT" in os.environ:
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // int(os.environ["PYTEST_XDIST_WORKER_COUNT"])))


@pytest.fixture(autouse=True)
def _threads_as_found():
    """Every test leaves torch's thread count as it found it. A count left at 2 (``train(threads=2)`` did until
    issue 26) made every later test of that worker run 2 threads beside the other worker's on 2 cores: the benchmark's
    detector test took 24.7 and 28.4 s in two full runs, against 4.1 to 5.2 s alone."""
    threads = torch.get_num_threads()
    yield
    left = torch.get_num_threads()
    if left != threads:
        torch.set_num_threads(threads)
        pytest.fail(f"the test left torch at {left} threads; it found {threads}", pytrace=False)


@pytest.fixture
def one_thread():
    """One intra-op thread for a small model's test: on the busy 2-core machine a second thread costs more than it
    gives, and a result does not depend on how many cores the machine has."""
    with torch_threads(1):
        yield


def assert_close_rel(actual: torch.Tensor, expected: torch.Tensor, rtol: float = 1e-5) -> None:
    """The project's parity criterion: max |actual - expected| <= rtol * max |expected| (fp32)."""
    assert actual.shape == expected.shape, f"shapes differ: {tuple(actual.shape)} vs {tuple(expected.shape)}"
    assert torch.isfinite(expected).all(), "the reference output is not finite"
    scale = expected.abs().max().item()
    error = (actual - expected).abs().max().item()
    assert error <= rtol * scale, f"max abs difference {error:.3g} > {rtol} x max |reference| {scale:.3g}"


def randomize_batchnorm(model: nn.Module, seed: int = 0) -> nn.Module:
    """Give every BatchNorm random statistics and affine parameters.

    A freshly initialised BatchNorm (weight 1, bias 0, mean 0, var 1) is the identity in eval mode, so a
    parity test on it could not notice a BatchNorm converted into the wrong place.
    """
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                module.weight.uniform_(0.5, 1.5, generator=generator)
                module.bias.normal_(0.0, 0.1, generator=generator)
                module.running_mean.normal_(0.0, 0.1, generator=generator)
                module.running_var.uniform_(0.5, 1.5, generator=generator)
    return model


def randomize_weights(model: nn.Module, seed: int = 0) -> nn.Module:
    """Redraw every parameter, and the BatchNorm statistics, at a scale where every part of the network shapes
    its output.

    Reference initialisations can hide a wrong conversion below the 1e-5 tolerance: torchvision's GoogLeNet
    (σ = 0.01 everywhere) gives nearly the same logits for any image, ConvNeXt's layer scale (γ = 1e-6) mutes
    every residual branch, and fresh BatchNorms are the identity. Here matrices and kernels are drawn from
    N(0, 2/fan_in), so activations keep their size through the depth (He et al. 2015); scales (norm weights,
    layer scale) from U(0.5, 1.5); biases and embeddings from N(0, 0.02²), small enough not to drown the input.
    """
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.ndim >= 2 and p.shape[0] > 1:  # a linear layer's matrix or a convolution's kernels
                fan_in = p[0].numel()
                p.normal_(0.0, (2.0 / fan_in) ** 0.5, generator=generator)  # He: keeps the size through ReLUs
            elif name.endswith("bias") or p.ndim >= 2:  # biases; class tokens and position embeddings
                p.normal_(0.0, 0.02, generator=generator)
            else:  # norm scales, layer scale
                p.uniform_(0.5, 1.5, generator=generator)
    return randomize_batchnorm(model, seed)


def randomized_reference(reference: str, seed: int = 0) -> nn.Module:
    """``randomize_weights(build_reference(reference), seed)``, without paying for the reference's own
    initialisation, which the redraw replaces anyway (10 of ViT-H/14's 33 s of parity test on one thread).

    The reference is built on the meta device and materialised uninitialised, then every parameter and every
    BatchNorm statistic is drawn as ``randomize_weights`` draws them, from the same generator: the same tensors
    as the slow path. Only where that covers every tensor: a reference with other buffers (Swin's relative
    position index, a transformers model's position ids) or whose constructor cannot run on the meta device (a
    drop-path schedule read with ``.tolist()``) is built normally.
    """
    try:
        with torch.device("meta"):
            model = build_reference(reference)
    except (NotImplementedError, RuntimeError):
        return randomize_weights(build_reference(reference), seed)
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    covered = {id(t) for m in norms for t in (m.running_mean, m.running_var, m.num_batches_tracked) if t is not None}
    if any(id(buffer) not in covered for buffer in model.buffers()):
        return randomize_weights(build_reference(reference), seed)
    model = randomize_weights(model.to_empty(device="cpu"), seed)
    for norm in norms:
        if norm.num_batches_tracked is not None:
            norm.num_batches_tracked.zero_()
    return model


def built_and_filled(build: Callable[[], nn.Module], fill: Callable[[nn.Module, bool], object]) -> nn.Module:
    """``build()`` given its weights by ``fill(model, assign)``, without the random initialisation they replace
    (seconds for the large models: 2.7 s of Seq2Seq's 384M draws). Built on the meta device and filled by assignment;
    where a tensor stays on the meta device (a non-persistent buffer, or a plain tensor attribute such as the
    detectors' cell anchors: what ``__init__`` computes rather than what the weights hold), built normally and filled
    by copying."""
    with torch.device("meta"):
        model = build()
    fill(model, True)
    if not any(t.is_meta for t in [*model.parameters(), *model.buffers(), *_plain_tensors(model)]):
        return model
    model = build()
    fill(model, False)
    return model


def _plain_tensors(model: nn.Module) -> Iterator[torch.Tensor]:
    """The tensors a model's modules hold as plain attributes (alone, or in a list, tuple or dict)."""
    for module in model.modules():
        for value in vars(module).values():
            items = value.values() if isinstance(value, dict) else value if isinstance(value, list | tuple) else [value]
            yield from (item for item in items if isinstance(item, torch.Tensor))


def assert_output_depends_on_input(output: torch.Tensor) -> None:
    """Parity is only evidence if the output depends on the input: two examples must give clearly different
    outputs (relative to the output's size), or a wrongly converted layer could hide below the tolerance."""
    spread = (output[0] - output[1]).abs().max().item()
    assert spread > 1e-3 * output.abs().max().item(), f"the two examples' outputs differ by only {spread:.3g}"


def randomize_constant_parameters(model: nn.Module, seed: int = 0) -> nn.Module:
    """Add N(0, 0.1²) noise to every parameter whose entries are all equal (zero biases, unit LayerNorm scales,
    a zero-initialised head or class token).

    Two such parameters of the same shape are interchangeable, and a zero head hides everything before it
    (torchvision's ViT starts its head at zero: its logits are 0 whatever the rest computes), so a parity test
    on them could not notice a parameter converted into the wrong place.
    """
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in model.parameters():
            flat = parameter.flatten()
            if flat.numel() and bool((flat == flat[0]).all()):
                parameter.add_(0.1 * torch.randn(parameter.shape, generator=generator).to(parameter.dtype))
    return model


# --- the suite's time in CI's log ------------------------------------------------------------------------------

_SECONDS_PER_FILE: dict[str, float] = {}
_SECONDS_PER_WORKER: dict[str, float] = {}
_SESSION_START: list[float] = []


def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config, items: list[pytest.Item]) -> None:
    """The learning tests (tests/test_train*.py: a model trained through ``paperzoo train``'s loop, up to a minute
    each) first, every file's tests otherwise in their order. pytest-xdist deals out the first quarter of the tests
    one by one to its workers and the rest in chunks as they free up: the long tests are then shared out early, and
    the run ends on short ones instead of one worker still training while the other waits. Collected last (in
    alphabetical order), they left the two workers of a fresh run 132 s outside tests (2 x 1,110.8 s of wall time
    against 2,089.2 s of tests), collection and start-up included; the summary below prints each worker's time."""
    items.sort(key=lambda item: not item.path.name.startswith("test_train"))  # a stable sort


def pytest_sessionstart(session: pytest.Session) -> None:
    _SESSION_START.append(time.perf_counter())


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    """Every phase's duration (setup, call, teardown), added up per test file. Under pytest-xdist the workers'
    reports reach the controller's hook too, so the controller's sums cover the whole run."""
    path = report.nodeid.split("::")[0]
    _SECONDS_PER_FILE[path] = _SECONDS_PER_FILE.get(path, 0.0) + report.duration
    worker = getattr(getattr(report, "node", None), "gateway", None)
    worker = worker.id if worker is not None else "this process"
    _SECONDS_PER_WORKER[worker] = _SECONDS_PER_WORKER.get(worker, 0.0) + report.duration


@pytest.hookimpl(trylast=True)  # after --durations' list, just above pytest's final line
def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    """The suite's time, per file (the 15 slowest) and in all, so that CI's log shows where a slower run went.
    A worker's own summary is not printed: only the process that reports to the terminal prints this."""
    if not _SECONDS_PER_FILE or os.environ.get("PYTEST_XDIST_WORKER"):
        return
    total = sum(_SECONDS_PER_FILE.values())
    wall = time.perf_counter() - _SESSION_START[0] if _SESSION_START else float("nan")
    terminalreporter.section("the suite's time")
    for path, seconds in sorted(_SECONDS_PER_FILE.items(), key=lambda item: -item[1])[:15]:
        terminalreporter.write_line(f"{seconds:8.1f} s  {100 * seconds / total:5.1f} %  {path}")
    terminalreporter.write_line(f"{total:8.1f} s of tests (setup, call, teardown) in {len(_SECONDS_PER_FILE)} file(s), "
                                f"{wall:.1f} s of wall time")
    terminalreporter.write_line("in tests per worker: " + ", ".join(
        f"{worker} {seconds:.1f} s" for worker, seconds in sorted(_SECONDS_PER_WORKER.items())))
    terminalreporter.write_line(f"this machine now: {_reference_workload_seconds():.2f} s for a fixed workload "
                                "(ResNet-18 forward, 8 images of 128 pixels, 10 times, one thread)")


def _reference_workload_seconds() -> float:
    """A fixed computation timed after the tests, on the idle machine: the same code took 0.95 to 1.47 s on this
    project's 2-core machine within one day (issue 26), so a suite's time is compared across runs in this unit."""
    import torchvision

    with torch_threads(1), torch.no_grad():
        model, x = torchvision.models.resnet18().eval(), torch.randn(8, 3, 128, 128, generator=torch.Generator())
        model(x)  # the first pass allocates and picks kernels
        start = time.perf_counter()
        for _ in range(10):
            model(x)
        return time.perf_counter() - start
