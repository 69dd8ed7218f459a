"""Speed side by side with the reference implementations.

For each model whose card names an implementation (torchvision, timm, transformers, torch.nn), the benchmark
builds the reference as the card says, converts its weights into ours with ``load_weights``, checks that both give
the same output on the card's example input (it refuses to time a pair that differs), then times

* the forward pass (eval mode, ``torch.no_grad``), and
* a training step (train mode: forward, the mean of the output as the loss, or a detector's own losses on
  synthetic boxes, backward, one SGD step with momentum; the same optimizer for both),

ours and the reference in turn (the order alternates between repeats, so a drift in the machine's speed hits both
alike), after warm-up calls, and reports the medians and the ratio ours / reference (> 1: ours is slower), with
the geometric mean of the ratios over the models. On CUDA every pair is also timed under bfloat16 autocast, CNNs
in channels_last. With ``Settings.compile`` (``paperzoo bench --compile [BACKEND]``) both phases are timed again
with ours and the reference each wrapped by ``torch.compile`` with that backend (inductor by default), beside the
eager timings: the compiled pair is first checked to give the same output, its compilation happens in the warm-up
calls, and the summary gives each side's speed-up over its own eager timing. The CPU and CUDA paths are the same
code: only the synchronisation and the precision modes differ. ``import_time`` measures what ``import paperzoo``
adds to ``import torch`` in fresh interpreters, and ``training_memory`` the peak training memory of a model with
and without gradient checkpointing.

``Settings.max_image_size`` shrinks the images of the models that take any size (and a detector's resizing, on
both sides of the pair) to at most that many pixels a side: on a CPU, DeepLabV3 at 520×520 and the R-CNNs at 800
pixels cost minutes per model; each row says the input it was timed on.

The numbers depend on the machine and its load: they are measured by ``paperzoo bench`` or
``benchmarks/compare.py``, never asserted by a test.
"""

from __future__ import annotations

import contextlib
import math
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from paperzoo.interop import load_weights
from paperzoo.interop.references import WEIGHT_SOURCES, build_reference, parse_reference, reference_unavailable
from paperzoo.measure import peak_training_memory, run_example
from paperzoo.registry import ModelCard, create_model, list_models, model_card

PHASES = ("forward", "train")
COMPILED = "compiled "  # the prefix of a phase timed with both models wrapped by torch.compile: "compiled forward"
# The largest relative difference (max |ours - reference| / max |reference|) at which the converted pair counts as
# equal. The parity tests hold 1e-5 on fp32 with redrawn weights; here the default initialisation and larger
# inputs leave a little more rounding, and a wrong conversion is off by orders of magnitude more.
PARITY_TOLERANCE = 1e-4
# The same under bfloat16 autocast (the compiled pair's check): ours and the reference round to 8 mantissa bits at
# their own points, about 1% of the output (tests/test_export.py measured up to 1.4% between bf16 and fp32); a
# graph that computes something else is off by the output's own size.
BF16_TOLERANCE = 5e-2


class BenchmarkError(RuntimeError):
    """A pair that cannot be timed fairly: the conversion failed or the outputs differ."""


# ------------------------------------------------------------------------------------------------- selection


def referenced_models(pattern: str = "*", canonical_only: bool = False) -> list[str]:
    """The registered names matching ``pattern`` whose card names a reference implementation (not the paper)."""
    return [name for name in list_models(pattern, canonical_only=canonical_only)
            if parse_reference(model_card(name).reference)[0] != "paper"]


def select_models(patterns: Sequence[str], canonical_only: bool = False) -> list[str]:
    """Names and shell wildcards → registered names, in order, each once. An exact name that is not registered
    raises ``UnknownModelError`` (with "did you mean"); a wildcard that matches nothing raises ``ValueError``."""
    names: list[str] = []
    for pattern in patterns:
        if any(c in pattern for c in "*?["):
            matched = list_models(pattern, canonical_only=canonical_only)
            if not matched:
                raise ValueError(f"no registered model matches {pattern!r}")
        else:
            model_card(pattern)  # raises UnknownModelError for a wrong name
            matched = [pattern]
        names += [name for name in matched if name not in names]
    return names


# ------------------------------------------------------------------------------------------- the model pair


@dataclass
class Pair:
    """Ours and the reference with the same weights, and how to call each on the card's example input."""

    name: str
    card: ModelCard
    library: str
    ours: nn.Module
    reference: nn.Module
    notes: list[str] = field(default_factory=list)

    def call_ours(self, x: Any, targets: list[dict[str, torch.Tensor]] | None = None) -> Any:
        return self.ours(x, targets) if targets is not None else run_example(self.ours, x)

    def call_reference(self, x: Any, targets: list[dict[str, torch.Tensor]] | None = None) -> Any:
        if targets is not None:  # a detector in training mode: torchvision's (images, targets) → losses
            return self.reference(x, targets)
        if self.library == "transformers":  # keyword inputs: BERT/GPT take ids, wav2vec 2.0 the waveform
            key = "input_values" if self.card.input.kind == "waveform" else "input_ids"
            return self.reference(**{key: x})
        return run_example(self.reference, x)

    @property
    def is_cnn(self) -> bool:
        """An image model without attention: the one kind that channels_last is meant for."""
        return self.card.input.kind == "image" and not any(
            "attention" in type(m).__name__.lower() for model in (self.ours, self.reference) for m in model.modules())


def build_pair(name: str, reference: str | None = None, seed: int = 0) -> Pair:
    """Build ``name`` and its card's reference (or ``reference``), and load the reference's weights into ours.

    Raises ``BenchmarkError`` if the conversion fails; ``ValueError`` if the reference cannot be built here."""
    card = model_card(name)
    reference = reference or card.reference
    reason = reference_unavailable(reference)
    if reason:
        raise ValueError(f"{name}: {reason}")
    library = parse_reference(reference)[0]
    torch.manual_seed(seed)
    theirs = build_reference(reference)
    ours = create_model(name)
    try:
        load_weights(ours, theirs.state_dict(), source=WEIGHT_SOURCES[library])
    except Exception as err:  # a wrong or missing converter: report it, never time two different networks
        raise BenchmarkError(f"{name}: converting the weights of {reference} failed: {err}") from err
    pair = Pair(name, card, library, ours, theirs)
    config = getattr(theirs, "config", None)
    if getattr(config, "layerdrop", 0.0) and not any(getattr(m, "layerdrop", 0.0) for m in ours.modules()):
        # transformers' configs default to LayerDrop 0.1 (wav2vec 2.0), ours to none (the card's model): a training
        # step that skips a tenth of the layers at random would not be the same work, so the reference drops none.
        pair.notes.append(f"reference trained with layerdrop 0 (its config's default: {config.layerdrop})")
        config.layerdrop = 0.0
    return pair


def primary_output(output: Any) -> torch.Tensor:
    """The tensor a task's output is about: logits, a segmentation's "out", the last hidden state, an RNN's
    output sequence (transformers' ``ModelOutput`` is a dict too)."""
    if isinstance(output, torch.Tensor):
        return output
    if isinstance(output, dict):
        for key in ("out", "logits", "prediction_logits", "mlm_logits", "last_hidden_state"):
            if isinstance(output.get(key), torch.Tensor):
                return output[key]
        return primary_output(next(iter(output.values())))
    if isinstance(output, (list, tuple)):
        return primary_output(output[0])
    raise TypeError(f"no tensor in an output of type {type(output).__name__}")


def training_loss(output: Any) -> torch.Tensor:
    """The scalar a training step minimises: the sum of a detector's losses (what it returns in training mode, a
    dict of scalars), else the mean of the primary output."""
    if isinstance(output, dict) and output and all(isinstance(v, torch.Tensor) and v.ndim == 0
                                                   for v in output.values()):
        return sum(output.values())
    return primary_output(output).float().mean()


# The attributes that hold a detector's inference score threshold, in ours and in torchvision (object, attribute).
_SCORE_THRESHOLDS = (("roi_heads", "score_thresh"), ("", "score_thresh"), ("", "score_threshold"))


def _score_thresholds(model: nn.Module, value: float | None) -> list[tuple[Any, str, float]]:
    """Set every score threshold a detector has to ``value`` (None: leave them); returns what to restore."""
    saved = []
    model = getattr(model, "_orig_mod", model)  # a torch.compile wrapper: the thresholds are the wrapped model's
    for owner_name, attribute in _SCORE_THRESHOLDS:
        owner = getattr(model, owner_name, None) if owner_name else model
        if owner is not None and isinstance(getattr(owner, attribute, None), float):
            saved.append((owner, attribute, getattr(owner, attribute)))
            if value is not None:
                setattr(owner, attribute, value)
    return saved


def resize_detector(model: nn.Module, size: int) -> None:
    """Make a detector resize its images to ``size`` pixels a side at most: torchvision's transform and ours keep
    ``min_size`` (a tuple) and ``max_size``; SSD's fixed size is left as it is."""
    transform = getattr(model, "transform", None)
    if transform is None or getattr(transform, "fixed_size", None):
        return
    if max(transform.min_size) > size or transform.max_size > size:
        transform.min_size, transform.max_size = (min(size, *transform.min_size),), size


def detection_targets(images: list[torch.Tensor], with_masks: bool, seed: int = 0) -> list[dict[str, torch.Tensor]]:
    """Two random boxes per image (a quarter to a half of each side, labels 1..10), and their filled boxes as
    masks for an instance-segmentation model: the ground truth a detector's training step needs."""
    generator = torch.Generator().manual_seed(seed)
    targets = []
    for image in images:
        height, width = image.shape[-2:]
        low = torch.rand(2, 2, generator=generator) * torch.tensor([width / 2, height / 2])  # (x1, y1)
        extent = (0.25 + 0.25 * torch.rand(2, 2, generator=generator)) * torch.tensor([width, height])
        boxes = torch.cat([low, low + extent], dim=1).to(image.device)  # (2, 4) x1, y1, x2, y2
        target = {"boxes": boxes, "labels": torch.randint(1, 11, (2,), generator=generator).to(image.device)}
        if with_masks:
            masks = torch.zeros(2, height, width, dtype=torch.uint8, device=image.device)
            for mask, (x1, y1, x2, y2) in zip(masks, boxes.round().long().tolist(), strict=True):
                mask[y1:y2, x1:x2] = 1
            target["masks"] = masks
        targets.append(target)
    return targets


def relative_difference(actual: torch.Tensor, expected: torch.Tensor) -> float:
    """max |actual - expected| / max |expected|, the parity tests' measure (inf if the shapes differ; 0 for two
    empty tensors, e.g. no detection on either side)."""
    if actual.shape != expected.shape:
        return math.inf
    if actual.numel() == 0:
        return 0.0
    actual, expected = actual.detach().float(), expected.detach().float()
    return ((actual - expected).abs().max() / expected.abs().max().clamp_min(1e-30)).item()


def check_same_outputs(pair: Pair, x: Any, tolerance: float = PARITY_TOLERANCE) -> float:
    """Both models in eval mode on ``x``: the relative difference of their outputs, or ``BenchmarkError`` if it
    exceeds ``tolerance`` (then the pair is not the same network and timing it would compare nothing)."""
    pair.ours.eval()
    pair.reference.eval()
    # A randomly initialised detector is unsure of every class: at its score threshold it may detect nothing,
    # and two empty lists prove nothing. For the check, every scored box is kept (then the top 100 per image).
    saved = _score_thresholds(pair.ours, 0.0) + _score_thresholds(pair.reference, 0.0)
    try:
        with torch.no_grad():
            difference = relative_difference(primary_output(pair.call_ours(x)),
                                             primary_output(pair.call_reference(x)))
    finally:
        for owner, attribute, value in saved:
            setattr(owner, attribute, value)
    if not difference <= tolerance:
        raise BenchmarkError(f"{pair.name}: ours and the converted reference differ (max relative difference "
                             f"{difference:.3g} > {tolerance:g}); not timed")
    return difference


# ------------------------------------------------------------------------------------------------- timing


def synchronize(device: torch.device) -> None:
    """Wait for the device's queued work: a CUDA call returns before its kernels finish."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _seconds(function: Callable[[], object], device: torch.device, calls: int) -> float:
    synchronize(device)
    start = time.perf_counter()
    for _ in range(calls):
        function()
    synchronize(device)
    return (time.perf_counter() - start) / calls


def time_interleaved(functions: dict[str, Callable[[], object]], device: torch.device, *, warmup: int = 2,
                     repeats: int = 5, min_seconds: float = 0.02) -> dict[str, list[float]]:
    """Seconds per call of each function, ``repeats`` samples each, taken in turn.

    Each function is first called ``warmup`` times (allocator, oneDNN/cuDNN algorithm choice, lazy init). A sample
    averages enough calls to last about ``min_seconds`` (a fast model's single call is below the clock's and the
    scheduler's noise). The order of the functions reverses every repeat, so neither always runs first."""
    for function in functions.values():
        for _ in range(warmup):
            function()
    synchronize(device)
    calls = {key: max(1, math.ceil(min_seconds / max(_seconds(f, device, 1), 1e-9))) for key, f in functions.items()}
    samples: dict[str, list[float]] = {key: [] for key in functions}
    order = list(functions)
    for repeat in range(repeats):
        for key in order if repeat % 2 == 0 else reversed(order):
            samples[key].append(_seconds(functions[key], device, calls[key]))
    return samples


def geometric_mean(values: Sequence[float]) -> float:
    return math.exp(statistics.fmean(math.log(v) for v in values)) if values else math.nan


@contextlib.contextmanager
def _precision(device: torch.device, precision: str) -> Iterator[None]:
    if precision == "bf16":
        with torch.autocast(device_type=device.type, dtype=torch.bfloat16):
            yield
    else:
        yield


@contextlib.contextmanager
def _full_fp32() -> Iterator[None]:
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


def _first(x: Any) -> Any:
    """The first example of a batch (each tensor of a tuple; the first image of a list)."""
    return tuple(t[:1] for t in x) if isinstance(x, tuple) else x[:1]


def _to(x: Any, device: torch.device, channels_last: bool) -> Any:
    if isinstance(x, list):  # a detector's images
        return [_to(t, device, False) for t in x]
    if isinstance(x, tuple):
        return tuple(_to(t, device, channels_last) for t in x)
    x = x.to(device)
    return x.contiguous(memory_format=torch.channels_last) if channels_last and x.ndim == 4 else x


def _forward(call: Callable[[Any], Any], x: Any, device: torch.device, precision: str) -> Callable[[], None]:
    def step() -> None:
        with torch.no_grad(), _precision(device, precision):
            call(x)
    return step


def _training_step(model: nn.Module, call: Callable[..., Any], x: Any, device: torch.device,
                   precision: str, targets: list[dict[str, torch.Tensor]] | None = None) -> Callable[[], None]:
    # A small learning rate: the weights barely move over the repeats, so neither model drifts into a numerically
    # different regime (denormals, overflow) that would change its speed.
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-5, momentum=0.9)

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        with _precision(device, precision):
            loss = training_loss(call(x, targets) if targets is not None else call(x))
        loss.backward()
        optimizer.step()
    return step


@dataclass
class Settings:
    device: str = "cpu"
    batch: int = 1
    repeats: int = 5
    warmup: int = 2
    train: bool = True
    precisions: tuple[str, ...] = ()  # empty: fp32 on CPU; fp32 and bf16 on CUDA
    min_seconds: float = 0.02
    max_image_size: int | None = None  # images (and a detector's resizing) at most this many pixels a side
    compile: str | None = None  # a torch.compile backend ("inductor"): the phases are timed compiled too

    def resolved_precisions(self) -> tuple[str, ...]:
        return self.precisions or (("fp32", "bf16") if torch.device(self.device).type == "cuda" else ("fp32",))

    def phases(self) -> tuple[str, ...]:
        """``forward`` (and ``train``), then the same phases compiled where ``compile`` names a backend."""
        eager = PHASES if self.train else PHASES[:1]
        return eager + tuple(COMPILED + phase for phase in eager) if self.compile else eager


def compile_backends() -> list[str]:
    """The names ``torch.compile(backend=...)`` takes here, the debugging ones (``eager``, ``aot_eager``) included."""
    return sorted(torch.compiler.list_backends(exclude_tags=()))


def compiled(pair: Pair, backend: str) -> Pair:
    """The same pair, each model wrapped by ``torch.compile`` (the weights and the training mode are shared)."""
    return Pair(pair.name, pair.card, pair.library, torch.compile(pair.ours, backend=backend),
                torch.compile(pair.reference, backend=backend), pair.notes)


@dataclass
class Result:
    """One model's row: ``status`` is "ok", "skipped" (no reference here) or "error" (not timed, or a phase
    failed); ``timings[precision][phase]`` holds the medians in milliseconds, the ratio and every sample."""

    model: str
    reference: str
    input: str = ""  # what it was timed on, e.g. "2 × 3 × 224 × 224"
    status: str = "ok"
    reason: str = ""
    max_relative_difference: float | None = None
    timings: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    memory: dict[str, Any] | None = None
    notes: list[str] = field(default_factory=list)

    def ratio(self, precision: str, phase: str) -> float | None:
        return self.timings.get(precision, {}).get(phase, {}).get("ratio")


def benchmark_model(name: str, settings: Settings, log: Callable[[str], None] = lambda line: None) -> Result:
    """Build, check and time one model against its reference (see the module docstring)."""
    card = model_card(name)
    result = Result(name, card.reference)
    reason = reference_unavailable(card.reference)
    if reason:
        result.status, result.reason = "skipped", reason
        return result
    device = torch.device(settings.device)
    try:
        pair = build_pair(name)
        result.notes = pair.notes
        x = example_input(card, settings)
        result.input = describe_input(x)
        detector = card.input.kind == "image-list"
        if detector and settings.max_image_size:
            resize_detector(pair.ours, settings.max_image_size)
            resize_detector(pair.reference, settings.max_image_size)
        targets = detection_targets(x, card.task == "instance-segmentation") if detector else None
        pair.ours.to(device)
        pair.reference.to(device)
        # fp32 on the device, on the first example (the whole batch would cost a large model minutes on a CPU);
        # TF32 off for the check, as cuDNN would otherwise round the convolutions' inputs to 10 mantissa bits.
        with _full_fp32():
            result.max_relative_difference = check_same_outputs(pair, _to(_first(x), device, False))
    except Exception as err:  # a failed conversion, different outputs, or no memory for the pair: report, go on
        result.status, result.reason = "error", str(err) if isinstance(err, BenchmarkError) else \
            f"{name}: {type(err).__name__}: {err}"
        return result
    # The training phases move the weights and the BatchNorm statistics, ours and the reference's by as many steps
    # as each was timed for (not the same number): every compiled pair is checked from the state checked above.
    checked = _states(pair) if settings.compile else None
    for precision in settings.resolved_precisions():
        channels_last = precision == "bf16" and device.type == "cuda" and pair.is_cnn
        if channels_last:
            pair.ours.to(memory_format=torch.channels_last)
            pair.reference.to(memory_format=torch.channels_last)
        xd = _to(x, device, channels_last)
        td = None if targets is None else [{k: v.to(device) for k, v in t.items()} for t in targets]
        rows = result.timings.setdefault(precision, {})
        compiled_pair: Pair | Exception | None = None  # built at the first compiled phase, for both
        for phase in settings.phases():
            try:
                timed = pair
                if phase.startswith(COMPILED):
                    if compiled_pair is None:
                        try:
                            _restore(pair, checked)
                            compiled_pair = _compiled_and_checked(pair, settings.compile, xd, device, precision)
                        except Exception as err:  # neither compiled phase is timed
                            compiled_pair = err
                    if isinstance(compiled_pair, Exception):
                        raise compiled_pair
                    timed = compiled_pair
                if phase.removeprefix(COMPILED) == "forward":
                    pair.ours.eval()
                    pair.reference.eval()
                    functions = {"ours": _forward(timed.call_ours, xd, device, precision),
                                 "reference": _forward(timed.call_reference, xd, device, precision)}
                else:
                    pair.ours.train()
                    pair.reference.train()
                    functions = {"ours": _training_step(timed.ours, timed.call_ours, xd, device, precision, td),
                                 "reference": _training_step(timed.reference, timed.call_reference, xd, device,
                                                             precision, td)}
                warmup = max(settings.warmup, 1) if phase.startswith(COMPILED) else settings.warmup  # compiles
                samples = time_interleaved(functions, device, warmup=warmup, repeats=settings.repeats,
                                           min_seconds=settings.min_seconds)
            except Exception as err:  # e.g. BatchNorm in training mode on one pooled value at batch 1
                rows[phase] = {"error": f"{type(err).__name__}: {err}"}
                result.status, result.reason = "error", f"{precision} {phase}: {type(err).__name__}: {err}"
                log(f"  {name} {precision} {phase}: {rows[phase]['error']}")
                continue
            ours, theirs = statistics.median(samples["ours"]), statistics.median(samples["reference"])
            rows[phase] = {"ours_ms": ours * 1e3, "reference_ms": theirs * 1e3, "ratio": ours / theirs,
                           "ours_samples_ms": [s * 1e3 for s in samples["ours"]],
                           "reference_samples_ms": [s * 1e3 for s in samples["reference"]],
                           "channels_last": channels_last}
            log(f"  {name} {precision} {phase}: ours {ours * 1e3:.2f} ms, reference {theirs * 1e3:.2f} ms, "
                f"ratio {ours / theirs:.3f}")
        if channels_last:
            pair.ours.to(memory_format=torch.contiguous_format)
            pair.reference.to(memory_format=torch.contiguous_format)
    return result


def _states(pair: Pair) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """Copies of ours' and the reference's state_dicts."""
    return tuple({key: tensor.clone() for key, tensor in model.state_dict().items()}
                 for model in (pair.ours, pair.reference))


def _restore(pair: Pair, states: tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]) -> None:
    for model, state in zip((pair.ours, pair.reference), states, strict=True):
        model.load_state_dict(state)


def _compiled_and_checked(pair: Pair, backend: str, x: Any, device: torch.device, precision: str) -> Pair:
    """The pair compiled (``compiled``), this model's graphs only (Dynamo's cache of the last model's dropped), and
    refused as the eager pair is if the compiled models' outputs differ: on the input and in the precision that
    the forward pass is then timed on, so that the check compiles the graph the timing runs (another batch size
    would make Dynamo compile a second, dynamic-shape graph)."""
    torch._dynamo.reset()
    timed = compiled(pair, backend)
    full_fp32 = _full_fp32() if precision == "fp32" else contextlib.nullcontext()
    with full_fp32, _precision(device, precision):
        check_same_outputs(timed, x, PARITY_TOLERANCE if precision == "fp32" else BF16_TOLERANCE)
    return timed


def example_input(card: ModelCard, settings: Settings) -> Any:
    """The card's example input at ``settings.batch``, its images shrunk to ``settings.max_image_size`` where the
    model takes any size (``InputSpec.shape_within``)."""
    return card.example_input(settings.batch, generator=torch.Generator().manual_seed(0),
                              max_image_size=settings.max_image_size)


def describe_input(x: Any) -> str:
    """``2 × 3 × 224 × 224``; a tuple's tensors joined by "+"; a list of images as ``2 images 3 × 800 × 800``."""
    if isinstance(x, list):
        return f"{len(x)} images {' × '.join(map(str, x[0].shape))}"
    if isinstance(x, tuple):
        return " + ".join(describe_input(t) for t in x)
    return " × ".join(map(str, x.shape))


def summarize(results: Sequence[Result]) -> dict[str, dict[str, dict[str, Any]]]:
    """Per precision and phase: the geometric mean of the ratios, how many models it covers, and the largest."""
    summary: dict[str, dict[str, dict[str, Any]]] = {}
    for result in results:
        for precision, phases in result.timings.items():
            for phase, row in phases.items():
                if "ratio" in row:
                    summary.setdefault(precision, {}).setdefault(phase, {"ratios": {}})["ratios"][result.model] = \
                        row["ratio"]
    for precision, phases in summary.items():
        for phase, entry in phases.items():
            ratios = entry.pop("ratios")
            worst = max(ratios, key=ratios.get)
            entry.update(geometric_mean=geometric_mean(list(ratios.values())), models=len(ratios),
                         slower=sorted(name for name, r in ratios.items() if r > 1.0), worst=[worst, ratios[worst]])
            if phase.startswith(COMPILED):  # eager time / compiled time, each side against itself
                entry["speedup"] = {side: geometric_mean([
                    result.timings[precision][phase.removeprefix(COMPILED)][f"{side}_ms"]
                    / result.timings[precision][phase][f"{side}_ms"] for result in results
                    if "ratio" in result.timings.get(precision, {}).get(phase, {})
                    and "ratio" in result.timings[precision].get(phase.removeprefix(COMPILED), {})])
                    for side in ("ours", "reference")}
    return summary


# ------------------------------------------------------------------------------------ import time and memory


IMPORT_PROBE = ("import time; t0 = time.perf_counter(); import torch; t1 = time.perf_counter(); import paperzoo; "
                "t2 = time.perf_counter(); print(t1 - t0, t2 - t1)")


def import_time(repeats: int = 5) -> dict[str, Any]:
    """Seconds that ``import torch`` takes and that ``import paperzoo`` adds after it, each the median over
    ``repeats`` fresh interpreters (a module imported once is cached, so only a new process measures it)."""
    torch_s, paperzoo_s = [], []
    for _ in range(repeats):
        out = subprocess.run([sys.executable, "-c", IMPORT_PROBE], capture_output=True, text=True, check=True,
                             env=os.environ.copy()).stdout.split()
        torch_s.append(float(out[0]))
        paperzoo_s.append(float(out[1]))
    return {"torch_s": statistics.median(torch_s), "paperzoo_s": statistics.median(paperzoo_s),
            "paperzoo_samples_s": paperzoo_s, "repeats": repeats, "target_s": 0.2}


def training_memory(name: str, settings: Settings) -> dict[str, Any] | None:
    """Peak training memory of ours with gradient checkpointing off and on, for a model that has
    ``set_grad_checkpointing`` (``None`` otherwise)."""
    device = torch.device(settings.device)
    model = create_model(name).to(device).train()
    if getattr(model, "set_grad_checkpointing", None) is None:
        return None
    x = _to(example_input(model_card(name), settings), device, False)
    row: dict[str, Any] = {}
    for enabled in (False, True):
        model.set_grad_checkpointing(enable=enabled)
        model.zero_grad(set_to_none=True)
        row["checkpointing" if enabled else "plain"] = peak_training_memory(model, x, training_loss)
    row["measured_by"] = "paperzoo.measure.peak_training_memory"
    return row


# ----------------------------------------------------------------------------------------------- reports


def machine(threads: int, device: str, label: str = "") -> dict[str, Any]:
    info = {"label": label, "platform": platform.platform(), "processor": platform.processor() or platform.machine(),
            "cpu_count": os.cpu_count(), "threads": threads, "python": platform.python_version(),
            "torch": torch.__version__, "device": device}
    if torch.device(device).type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(torch.device(device))
    for library in ("torchvision", "timm", "transformers"):
        with contextlib.suppress(ImportError):
            info[library] = __import__(library).__version__
    return info


def report(results: Sequence[Result], settings: Settings, *, threads: int, label: str = "",
           import_seconds: dict[str, Any] | None = None) -> dict[str, Any]:
    """Everything measured, as one JSON-ready dict."""
    return {"machine": machine(threads, settings.device, label),
            "settings": {"device": settings.device, "batch": settings.batch, "max_image_size": settings.max_image_size,
                         "repeats": settings.repeats,
                         "warmup": settings.warmup, "train": settings.train, "compile": settings.compile,
                         "phases": list(settings.phases()),
                         "precisions": list(settings.resolved_precisions()), "statistic": "median",
                         "ratio": "ours / reference (> 1: ours is slower)"},
            "import_time": import_seconds,
            "summary": summarize(results),
            "results": [vars(result) for result in results]}


def _ms(value: float) -> str:
    return f"{value:.1f}" if value >= 10 else f"{value:.2f}"


def _phase_table(title: str, phases: list[str], timed: list[dict], precision: str,
                 summary: dict[str, dict[str, Any]]) -> list[str]:
    """One Markdown table (the phases' medians and ratios, a row per model) and its geometric means."""
    header = "| model | reference | input |" + "".join(
        f" {phase.replace('train', 'train step')} ours (ms) | reference (ms) | ratio |" for phase in phases)
    lines = [f"**{title}**", "", header, "| --- | --- | --- |" + " ---: | ---: | ---: |" * len(phases)]
    for r in timed:
        cells = [f"`{r['model']}`", r["reference"].replace("|", "\\|"), r.get("input", "")]
        for phase in phases:
            row = r["timings"][precision].get(phase, {})
            if "ratio" in row:
                mark = " ⚠" if row["ratio"] > 1.10 else ""
                cells += [_ms(row["ours_ms"]), _ms(row["reference_ms"]), f"{row['ratio']:.2f}{mark}"]
            else:
                cells += ["error", "", ""]
        lines.append("| " + " | ".join(cells) + " |")
    means = ", ".join(f"{phase} {summary[phase]['geometric_mean']:.3f} over {summary[phase]['models']} models" + (
        f" (eager time / compiled time: ours {summary[phase]['speedup']['ours']:.2f}, reference "
        f"{summary[phase]['speedup']['reference']:.2f})" if "speedup" in summary[phase] else "")
        for phase in phases if phase in summary)
    flagged = any(r["timings"][precision].get(phase, {}).get("ratio", 0) > 1.10 for r in timed for phase in phases)
    return lines + ["", f"Geometric mean ratio ({title}): {means}." + (" ⚠: above 1.10." if flagged else ""), ""]


def markdown(data: dict[str, Any]) -> str:
    """The report as Markdown: a line on the machine, one table per precision (medians in ms and the ratios),
    the geometric means, the models that were not timed and why, the import time and the memory rows."""
    m, s = data["machine"], data["settings"]
    lines = [f"Measured on {m['label'] or m['processor']}: {m['cpu_count']} cores, {m['threads']} thread(s), "
             f"device `{s['device']}`{' (' + m['gpu'] + ')' if 'gpu' in m else ''}; torch {m['torch']}. "
             f"Batch {s['batch']}, the card's input size"
             + (f" (images at most {s['max_image_size']} pixels a side)" if s.get("max_image_size") else "")
             + f", median of {s['repeats']} interleaved repeats after "
             f"{s['warmup']} warm-up calls. Ratio = ours / reference (> 1: ours is slower)."
             + (f" Compiled: both models wrapped by `torch.compile(backend=\"{s['compile']}\")`, compiled in the "
                "warm-up calls." if s.get("compile") else "")
             + (f" {s['note']}." if s.get("note") else ""), ""]
    results = data["results"]
    for precision in s["precisions"]:
        timed = [r for r in results if precision in r["timings"]]
        if not timed:
            continue
        channels_last = " (CNNs in channels_last)" if s["device"].startswith("cuda") else ""
        title = {"fp32": "float32", "bf16": f"bfloat16 autocast{channels_last}"}.get(precision, precision)
        phases = s.get("phases") or (PHASES if s["train"] else PHASES[:1])
        # the compiled phases in a table of their own below the eager one: both fit the documentation's page
        for group in ([p for p in phases if not p.startswith(COMPILED)], [p for p in phases if p.startswith(COMPILED)]):
            if group:
                lines += _phase_table(title if group[0] in PHASES else f"{title}, compiled", group, timed, precision,
                                      data["summary"].get(precision, {}))
        lines.append("")
    noted = [r for r in results if r.get("notes")]
    if noted:
        lines += ["Notes:", ""]
        lines += [f"- `{r['model']}`: {'; '.join(r['notes'])}" for r in noted]
        lines.append("")
    failed = [r for r in results if r["status"] != "ok"]
    if failed:
        lines += ["Not timed, or not every phase:", ""]
        lines += [f"- `{r['model']}` ({r['status']}): {r['reason']}" for r in failed]
        lines.append("")
    if data.get("import_time"):
        t = data["import_time"]
        lines += [f"`import paperzoo` adds {t['paperzoo_s'] * 1e3:.0f} ms to `import torch` ({t['torch_s']:.2f} s), "
                  f"median of {t['repeats']} fresh interpreters (target: under {t['target_s'] * 1e3:.0f} ms).", ""]
    with_memory = [r for r in results if r.get("memory")]
    if with_memory:
        lines += ["| model | training memory, plain (MiB) | with gradient checkpointing (MiB) | measured by |",
                  "| --- | ---: | ---: | --- |"]
        for r in with_memory:
            mem = r["memory"]
            lines.append(f"| `{r['model']}` | {mem['plain'] / 2**20:.1f} | {mem['checkpointing'] / 2**20:.1f} | "
                         f"{mem['measured_by']} |")
        lines.append("")
    return "\n".join(lines)
