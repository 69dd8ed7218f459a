"""Measuring a model: the one way this project counts parameters, multiply-accumulates and training memory."""

from __future__ import annotations

import contextlib
import re
import weakref
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

ExampleInput = torch.Tensor | tuple[torch.Tensor, ...] | list[torch.Tensor]


@contextlib.contextmanager
def torch_threads(count: int | None) -> Iterator[None]:
    """torch's intra-op threads at ``count`` (None: as they are) inside the block, and as they were after it.

    For what runs inside a caller's process (``train``, ``paperzoo bench`` called as a function, a worked example):
    the thread count is process-wide, and a count left behind changes the speed of everything the caller runs next.
    """
    previous = torch.get_num_threads()
    if count is not None:
        torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameters (each shared tensor once), as the papers and the references count them."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def run_example(model: nn.Module, example_input: ExampleInput) -> Any:
    """Call ``model`` on an input made by ``InputSpec.example_input``: a tuple (a translation model's source
    and target) is spread over the arguments; a tensor, or a list of images (a detector's input), is passed as is."""
    return model(*example_input) if isinstance(example_input, tuple) else model(example_input)


# What PyTorch and torchvision say when a meta tensor meets an operation whose output depends on the values.
_DATA_DEPENDENCE = re.compile(
    r"data-independent implementation does not exist|data-dependent shape|cannot be called on meta tensors"
    r"|Cannot copy out of meta tensor|with Meta tensors, but there was no fake impl or Meta kernel"
    r"|meta tensor without output_size")


def stops_at_data_dependence(error: Exception) -> bool:
    """Whether ``error`` is a meta tensor meeting an operation whose output size or value depends on the data
    (boolean indexing and ``nonzero``, NMS, ``.item()``, ``unique``): there is nothing to compute it from."""
    return isinstance(error, (NotImplementedError, RuntimeError)) and bool(_DATA_DEPENDENCE.search(str(error)))


def measure_gmacs(model: nn.Module, example_input: ExampleInput) -> float:
    """Multiply-accumulates of one forward pass, in billions, per example of ``example_input``.

    ``torch.utils.flop_counter`` counts the matrix products (convolutions, linear layers, attention),
    2 FLOPs per multiply-accumulate, as the papers' "FLOPs" mostly mean MACs. It works on the meta device,
    so a full-size model can be measured without allocating its weights.

    Detectors (a list of images as input) on the meta device: the count covers the dense network, everything
    a forward pass computes before its first data-dependent step (filtering scores by a threshold, NMS): the
    transform, the backbone, the FPN and the dense heads (the whole classification and box subnets of a one-stage
    detector; the RPN head of Faster/Mask R-CNN). Which region-wise work follows (Faster R-CNN's box head on the
    proposals that survive NMS, Mask R-CNN's mask head on the detections) depends on the image and the weights, so
    it is left out: the figure is the same for every image of the canonical size. On a real device the whole
    forward pass is counted, for the given weights and image.
    """
    from torch.utils.flop_counter import FlopCounterMode  # here, not at the top: it imports triton (~0.5 s)

    images = isinstance(example_input, list)
    on_meta = any(p.is_meta for p in model.parameters()) or (
        images and any(isinstance(image, torch.Tensor) and image.is_meta for image in example_input))
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        try:
            run_example(model, example_input)
        except (NotImplementedError, RuntimeError) as error:
            if not (images and on_meta and stops_at_data_dependence(error)) or counter.get_total_flops() == 0:
                raise
    batch = example_input[0] if isinstance(example_input, tuple) else example_input
    return counter.get_total_flops() / 2 / 1e9 / len(batch)


class _LiveTensorBytes(TorchDispatchMode):
    """Follows every storage that an operator allocates while the mode is active until it is freed: the bytes
    alive at each moment, as a log of allocations and frees, from which a peak is read."""

    def __init__(self) -> None:
        super().__init__()
        self.live: dict[int, tuple[int, int]] = {}  # storage address → (allocation number, bytes)
        self.log: list[tuple[int, int]] = []  # (allocation number, +bytes at allocation / −bytes at free)

    def _freed(self, address: int) -> None:
        number, nbytes = self.live.pop(address)
        self.log.append((number, -nbytes))

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: ANN001, ANN204
        kwargs = kwargs or {}
        inputs = {t.untyped_storage().data_ptr() for t in _tensors((args, kwargs))}
        out = func(*args, **kwargs)
        for tensor in _tensors(out):
            storage = tensor.untyped_storage()
            address = storage.data_ptr()
            # A view, an in-place or out= result, or a storage already followed is no new allocation.
            if storage.nbytes() == 0 or address in inputs or address in self.live:
                continue
            number = len(self.log)
            self.live[address] = (number, storage.nbytes())
            self.log.append((number, storage.nbytes()))
            weakref.finalize(storage, self._freed, address)
        return out

    def peak(self, excluded: set[int]) -> int:
        """The most bytes alive at once, not counting the allocations numbered in ``excluded``."""
        alive = peak = 0
        for number, change in self.log:
            if number not in excluded:
                alive += change
                peak = max(peak, alive)
        return peak


def _tensors(tree: Any) -> list[torch.Tensor]:
    """The tensors in nested tuples, lists and dicts (a model's inputs and outputs)."""
    if isinstance(tree, torch.Tensor):
        return [tree]
    if isinstance(tree, dict):
        tree = list(tree.values())
    if isinstance(tree, (list, tuple)):
        return [t for item in tree for t in _tensors(item)]
    return []


def _sum_of_means(output: Any) -> torch.Tensor:
    """A scalar that depends on every floating-point output that carries a gradient."""
    return sum(t.float().mean() for t in _tensors(output) if t.is_floating_point() and t.requires_grad)


def peak_training_memory(model: nn.Module, example_input: torch.Tensor | tuple[torch.Tensor, ...],
                         loss_fn: Callable[[Any], torch.Tensor] | None = None) -> int:
    """Peak bytes of activation memory in one training step: ``loss_fn(model(example_input)).backward()``.

    What is counted: every tensor storage that an operator allocates during the forward and backward passes
    (activations saved for the backward pass, activations recomputed by gradient checkpointing, the
    gradients flowing back through the activations, temporaries), from its allocation until it is freed;
    the result is the most bytes alive at once. The parameters' gradients are not counted (the same with or
    without checkpointing, and not activations), nor the model's weights and the input, which exist before
    the step. A gradient that is added into a parameter's (a tied embedding's second contribution) is a
    temporary and is counted: with a large vocabulary it can dominate at short lengths. Measured with a
    ``TorchDispatchMode`` that sees every operator, the recomputations in the
    backward pass included, and a weak reference to each new storage that reports when it is freed: what
    non-reentrant checkpointing discards after a block's forward pass is freed there and then, so it is
    not counted as held. The same on every device; on CUDA these are tensor bytes, not the caching
    allocator's blocks (``torch.cuda.max_memory_allocated`` counts those, and the weights).

    The model runs in training mode (its mode, its parameters' ``.grad`` and its buffers are restored
    afterwards). ``loss_fn`` maps the output to a scalar; by default the sum of the means of every
    floating-point output that requires a gradient.
    """
    was_training = model.training
    grads = {p: p.grad for p in model.parameters()}
    buffers = [(b, b.clone()) for b in model.buffers()]
    for p in grads:
        p.grad = None
    tracker = _LiveTensorBytes()
    try:
        model.train()
        with tracker:
            output = run_example(model, example_input)
            loss = (loss_fn or _sum_of_means)(output)
            del output  # what the backward pass needs is held by the graph, not by this reference
            loss.backward()
            del loss
        # A parameter's gradient is the storage that the backward pass allocated for it, still alive.
        excluded = {tracker.live[p.grad.untyped_storage().data_ptr()][0] for p in grads
                    if p.grad is not None and p.grad.untyped_storage().data_ptr() in tracker.live}
        return tracker.peak(excluded)
    finally:
        model.train(was_training)
        for p, grad in grads.items():
            p.grad = grad
        with torch.no_grad():
            for buffer, value in buffers:
                buffer.copy_(value)
