"""What ``torch.nn.RNNBase`` does around a recurrent cell, written once for the recurrent networks of the zoo.

A recurrent layer is more than its cell. ``torch.nn.LSTM`` and ``torch.nn.GRU`` stack layers (layer k reads
the outputs of layer k - 1), run a second direction that reads the sequence back to front, name their
parameters ``weight_ih_l{k}``, ``weight_hh_l{k}``, ``bias_ih_l{k}``, ``bias_hh_l{k}`` (``_reverse`` for the
second direction), lay the state out as ``(num_layers * num_directions, N, H)``, take variable-length batches
(a ``PackedSequence``), and apply dropout between layers. :class:`RecurrentLayers` does all of that with
torch.nn's keywords, call signature and names; a subclass adds only its cell, the paper's equations, and lives
in its model file, in full view: the LSTM (``models/sequence/lstm.py``), the GRU (``models/sequence/gru.py``)
and the gated hidden unit of RNNsearch's bidirectional encoder (``models/sequence/attention_seq2seq.py``).
Seq2Seq builds its encoder and decoder from the LSTM.

Variable lengths come two ways: a ``PackedSequence`` (as torch.nn), or a padded batch with ``lengths=``. Past
the end of a sequence its state is held, so the final state is the one after its last real step, and the
reverse direction starts from its last real step; padded steps output zeros (as ``pad_packed_sequence``).

Two paths compute the same function. By default (``fused=True``) a layer whose cell torch implements, the LSTM
without peepholes and the GRU, calls torch's fused operator, ``torch._VF.lstm`` or ``torch._VF.gru``: what
torch.nn.LSTM and torch.nn.GRU call (on a CPU oneDNN for the LSTM, torch's own C++ implementation for the GRU and
for an LSTM with projections; cuDNN on a GPU). Our parameters are laid out as torch.nn's, so the kernel takes them
as they are (:meth:`_flat_weights`: no copy, the state_dict unchanged), a padded batch with ``lengths=`` runs
packed, and dropout between layers draws the same masks as the loop on the same tensors. With ``fused=False``, and
always for a cell torch has no kernel for (Seq2Seq's peephole LSTM, RNNsearch's gated hidden unit), the layer runs
the loop over time of :meth:`_run` and the subclass's :meth:`cell`: the equations a student reads, and the
reference that ``tests/test_recurrent.py`` holds the kernel equal to (outputs, final states, gradients of the
input, the initial state and every parameter; layers with dropout between them, both directions, projections,
padded and packed batches), and both equal to torch.nn. The kernel runs on the meta device and is traced by
``torch.export`` (as ``aten.lstm.input``/``aten.gru.input``) and by ``torch.compile`` in inference (below), so no
input needs the loop as a fallback. On a GPU cuDNN wants the weights in one buffer: :meth:`flatten_parameters`
makes it after every move, as torch.nn's does (checked on a GPU by ``scripts/gpu-checks.py``, which no CPU can
run: cuDNN's layout is known only to ``torch._cudnn_rnn_flatten_weight``).

Under torch.compile. In inference (no gradients) TorchDynamo traces the layer, on the kernel or the loop, into the
model's graph: the whole forward is one graph (``fullgraph=True``, ``tests/test_export.py``). A forward whose
gradients will be taken runs the layer outside the graph instead (``torch.compiler.disable``: a graph break, then
the layer eagerly, exactly as in eager mode), as Dynamo runs torch.nn's recurrent layers in any mode. Traced, a
compiled training step failed on the kernel (torch 2.14 on a CPU, the LSTM on an input that needs no gradient, as
a model's input in training: AOT autograd stopped at oneDNN's ``aten.mkldnn_rnn_layer`` under inductor, at the
tensors the kernel saves for backward under aot_eager); the loop's one-product gradient of W_hh (below) cannot be
traced (its backward reads a list that the loop fills after the call), and the loop traced without it, through one
product per step, was the slow graph: ``paperzoo bench gru lstm --train --compile`` (one thread, inductor, the
cards' input) timed the compiled training step at 93 ms for the LSTM (torch.nn's 28.5 ms) and 68.5 ms for the GRU
(41.4 ms). Outside the graph: 26.9 ms (torch.nn's 26.2 ms) and 39.3 ms (37.4 ms), ratios 1.02 and 1.05.

Why the kernel is the default: it is torch.nn's speed by construction, and the loop's own cost is not. Measured on
one CPU thread of a 2-core machine shared with other jobs (so noisy: a ratio within about 0.1 of 1 is not told
apart from 1 here), ``paperzoo bench lstm gru --train --threads 1 --repeats 7`` at the cards' input (2 × 35 steps,
256 → 512 units), five runs of the loop interleaved with five of the kernel, median ratio ours / torch.nn: LSTM
forward 1.05 on the loop, 0.99 on the kernel; LSTM training step 1.04 and 1.00; GRU forward 1.24 and 1.00; GRU
training step 0.66 and 0.99. ``benchmarks/bench_rnn.py --threads 1 --repeats 5``, the loop over torch.nn: at 32
sequences the LSTM 1.43 in inference and 1.06 per training step, two bidirectional layers 1.25 and 1.34, the GRU
1.06 and 1.54; one sequence of 100 steps of 64 units (Python and dispatch at every step, against one call) the
LSTM 8.9 and 7.3, the GRU 2.3 and 1.4. Two cases went the other way, and a caller who meets them can pass
``fused=False``: the GRU's training step at the cards' input (the loop forms W_hh's gradient in one product,
below; 25.7 ms against the kernel's 36 to 37 ms in the two quietest runs, torch.nn.GRU's own 37 to 39 ms), and
oneDNN's LSTM at few tokens through large layers (4 layers of 1000 units, 2 × 8 tokens, inference: torch.nn 191 ms,
ours on the kernel 196 ms, on the kernel with oneDNN switched off 78 ms, on the loop 78 ms; at 16 × 30 tokens all
four within 480 ± 25 ms). That second case is a Seq2Seq without peepholes: ``benchmarks/bench_rnn.py --models``
(vocabularies of 1000 words) timed its inference at 574 ms on the kernel against 262 ms on the loop at 2 × 8 tokens,
3157 against 2225 ms at 16 × 30, its training step 1793 against 990 ms and 4633 against 4303 ms. Seq2Seq as
registered (peephole LSTMs) and RNNsearch run the loop on either setting: their default / loop ratios in that run,
0.87 to 1.01, are the noise.

How the loop is kept fast: the input projection W_ih x_t + b does not depend on the state, so it is computed for
every step and both directions in one matrix product before the time loop; the loop over time is the only Python
loop, and both directions advance in the same iteration, one batched product (``baddbmm``) per step. In training,
the gradient of W_hh is one matrix product over every step (:class:`_RecurrentWeightGradient`), as torch.nn's
fused kernels form it, instead of one outer product per step summed T times (half the LSTM's training step at its
canonical shape on one CPU thread). It needs the gradient of each step's recurrent product $W_{hh} h_{t-1}$: the
LSTM adds that product to the input gates, so theirs is the same; the GRU's reset gate scales part of it first,
so its cell adds a zero "port" to the product, whose gradient is the product's. A ``torch.compile``d cell was
measured and is not used: a compiled graph's call costs as much as the ten eager operations it replaces (inference
5.7 ms against 4.5 ms eager at 1 × 100 steps × 64 units), and compiling the whole loop unrolls it, one graph per
sequence length.
"""

from __future__ import annotations

import math
import numbers
import warnings
from collections.abc import Sequence
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn
from torch.autograd.function import once_differentiable
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

from paperzoo.layers.validation import check_feature_sequence, check_sequence_lengths

State = tuple[torch.Tensor, ...]
LayerWeights = dict[str, torch.Tensor]  # kind ("weight_ih", ...) -> the directions' tensors stacked, (D, ...)

__all__ = ["LayerWeights", "RecurrentLayers", "State"]


class _RecurrentWeightGradient(torch.autograd.Function):
    """The identity on the input gates ``(T, D, N, G * H)`` (or on zeros that the cell adds to its recurrent
    product: ``recurrent_gradient_port``), whose backward also returns the gradient of W_hh.

    Where a cell computes gates_t = input_gates_t + W_hh h_{t-1}, the gradient reaching the input gates at step t
    is also the gradient of the recurrent product, δ_t, so dL/dW_hh = Σ_t δ_tᵀ h_{t-1}: one matrix product over
    the T·N rows of every step once the backward pass has all δ_t, where autograd through a per-step product forms
    and adds T separate (G·H, H) outer products. The loop then uses W_hh detached, and the h_{t-1} that it appends
    to ``previous_states`` during the forward pass are the other factor.
    """

    @staticmethod
    def forward(ctx, gates: torch.Tensor, weight: torch.Tensor, previous_states: list) -> torch.Tensor:
        ctx.previous_states = previous_states  # filled by the time loop after this call, read by backward
        ctx.weight_dtype = weight.dtype
        return gates.clone()

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_gates: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, None]:
        steps, directions, batch, width = grad_gates.shape
        previous = torch.stack(ctx.previous_states).to(grad_gates.dtype)  # (T, D, N, H_out): h_{t-1} of each step
        # Σ_t δ_tᵀ h_{t-1} for each direction: (D, G·H, T·N) @ (D, T·N, H_out) → (D, G·H, H_out)
        grad_weight = torch.bmm(grad_gates.permute(1, 3, 0, 2).reshape(directions, width, steps * batch),
                                previous.permute(1, 0, 2, 3).reshape(directions, steps * batch, -1))
        return grad_gates, grad_weight.to(ctx.weight_dtype), None


# torch.compiler.is_dynamo_compiling is torch 2.3's; before it, a training step is traced as in inference
_dynamo_compiling = getattr(torch.compiler, "is_dynamo_compiling", lambda: False)


@torch.compiler.disable
def _run_eagerly(layer: RecurrentLayers, input: torch.Tensor | PackedSequence, hx: torch.Tensor | State | None,
                 lengths: torch.Tensor | Sequence[int] | None) -> tuple[torch.Tensor | PackedSequence, object]:
    """The layer's forward outside TorchDynamo's graph (a graph break), as torch.nn's recurrent layers run."""
    return layer._forward(input, hx, lengths)


class RecurrentLayers(nn.Module):
    """Stacked, optionally bidirectional recurrent layers with torch.nn's interface, around a subclass's cell.

    Args (torch.nn's, with its defaults):
        input_size: features per step of the input, F.
        hidden_size: units per layer and direction, H.
        num_layers: layers stacked; layer k > 0 reads the num_directions * H_out outputs of layer k - 1.
        bias: whether the layers have the bias vectors ``bias_ih`` and ``bias_hh``.
        batch_first: input and output ``(N, T, F)`` instead of ``(T, N, F)``; the state is ``(L * D, N, H)``
            either way.
        dropout: probability of dropout on the outputs of every layer but the last, in training mode.
        bidirectional: add a second direction per layer that reads the sequence from its end.
        proj_size: if > 0, the cell's output h is projected to this size (LSTM only, Sak et al. 2014).
        fused (keyword only, ours): run torch's fused kernel where the cell has one (``fused_kernel``), as torch.nn
            does; False runs the loop over time of :meth:`_run` and :meth:`cell`, the reference that the tests hold
            the kernel equal to. An attribute too: ``layer.fused = False`` switches a built layer.

    A subclass sets ``gate_count`` and ``state_names`` and writes :meth:`cell`; it may change
    :meth:`parameter_shapes` and :meth:`project_inputs`, and name torch's operator for its cell in ``fused_kernel``.
    """

    gate_count: ClassVar[int] = 1  # pre-activations per unit in weight_ih's rows: 4 for an LSTM, 3 for a GRU
    state_names: ClassVar[tuple[str, ...]] = ("h",)  # ("h", "c") for an LSTM; the output is always state[0]
    # True where the cell adds W_hh h_{t-1} to the input gates before any nonlinearity (the LSTM): then W_hh's
    # gradient is one product over all steps (see _RecurrentWeightGradient). Not the GRU: its reset gate scales
    # part of the recurrent product first.
    recurrent_product_joins_input_gates: ClassVar[bool] = False
    # True where the cell adds ``weights["recurrent_port"]`` (zeros, given in training) to its W_hh h_{t-1}: the
    # gradient reaching the port is the recurrent product's, so W_hh's gradient is again one product (the GRU).
    recurrent_gradient_port: ClassVar[bool] = False
    # The name of torch's fused operator that computes this cell over a whole sequence (``torch._VF.lstm`` or
    # ``torch._VF.gru``, what torch.nn.LSTM and torch.nn.GRU call), or None where torch has none for the cell.
    fused_kernel: ClassVar[str | None] = None
    model_name = "recurrent layers"

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, bias: bool = True,
                 batch_first: bool = False, dropout: float = 0.0, bidirectional: bool = False, proj_size: int = 0,
                 device: torch.device | str | None = None, dtype: torch.dtype | None = None, *,
                 fused: bool = True) -> None:
        super().__init__()
        for name, value, low in (("input_size", input_size, 1), ("hidden_size", hidden_size, 1),
                                 ("num_layers", num_layers, 1), ("proj_size", proj_size, 0)):
            if not isinstance(value, int) or isinstance(value, bool) or value < low:
                raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
        if not isinstance(dropout, numbers.Number) or isinstance(dropout, bool) or not 0 <= dropout <= 1:
            raise ValueError(f"dropout must be a probability in [0, 1], got {dropout!r}")
        if proj_size >= hidden_size:
            raise ValueError(f"proj_size must be smaller than hidden_size ({hidden_size}), got {proj_size}")
        if dropout > 0 and num_layers == 1:
            warnings.warn(f"dropout={dropout} with num_layers=1 does nothing: dropout acts between layers, never "
                          "after the last (as torch.nn)", stacklevel=2)
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        self.bias = bias
        self.batch_first = batch_first
        self.dropout = float(dropout)
        self.bidirectional = bidirectional
        self.proj_size = proj_size
        self.num_directions = 2 if bidirectional else 1
        self.fused = fused
        self._kinds = [kind for kind, _ in self.parameter_shapes(input_size)]
        self._all_weights: list[list[str]] = []
        for layer in range(num_layers):
            layer_input_size = input_size if layer == 0 else self.num_directions * self.output_size
            for suffix in self._suffixes():
                names = []
                for kind, shape in self.parameter_shapes(layer_input_size):
                    names.append(f"{kind}_l{layer}{suffix}")
                    self.register_parameter(names[-1], nn.Parameter(torch.empty(shape, device=device, dtype=dtype)))
                self._all_weights.append(names)
        self.reset_parameters()

    # --- what a subclass may change ----------------------------------------------------------------------

    @property
    def output_size(self) -> int:
        """H_out, the width of h (and of the output, per direction): proj_size if > 0, else hidden_size."""
        return self.proj_size if self.proj_size > 0 else self.hidden_size

    @property
    def state_sizes(self) -> tuple[int, ...]:
        """The width of each state tensor, in ``state_names`` order."""
        return (self.output_size,)

    def parameter_shapes(self, layer_input_size: int) -> list[tuple[str, tuple[int, ...]]]:
        """torch.nn's parameters of one layer and direction, in its order: the gates' pre-activations are the
        rows of ``weight_ih`` (from the input) and ``weight_hh`` (from the previous h), ``gate_count * H``."""
        gates = self.gate_count * self.hidden_size
        shapes = [("weight_ih", (gates, layer_input_size)), ("weight_hh", (gates, self.output_size))]
        if self.bias:
            shapes += [("bias_ih", (gates,)), ("bias_hh", (gates,))]
        if self.proj_size > 0:
            shapes.append(("weight_hr", (self.proj_size, self.hidden_size)))
        return shapes

    def reset_parameters(self) -> None:
        """torch.nn's initialisation: every parameter from U(-1/√H, 1/√H)."""
        bound = 1.0 / math.sqrt(self.hidden_size)
        for parameter in self.parameters():
            nn.init.uniform_(parameter, -bound, bound)

    def project_inputs(self, x: torch.Tensor, weights: LayerWeights) -> torch.Tensor:
        """W_ih x_t + b_ih for every step and direction in one matrix product: ``(T, N, F) → (T, N, D * G * H)``."""
        bias = weights["bias_ih"].flatten() if self.bias else None
        return F.linear(x, weights["weight_ih"].flatten(0, 1), bias)

    def cell(self, input_gates: torch.Tensor, state: State, weights: LayerWeights) -> State:
        """One time step of every direction of one layer: ``input_gates`` ``(D, N, G * H)`` from
        :meth:`project_inputs`, ``state`` the previous state (each ``(D, N, size)``) → the new state."""
        raise NotImplementedError

    def fused_kernel_applies(self) -> bool:
        """Whether ``fused_kernel`` computes this layer (a subclass says no for a cell option torch lacks)."""
        return self.fused_kernel is not None

    # --- torch.nn's interface ----------------------------------------------------------------------------

    def forward(self, input: torch.Tensor | PackedSequence, hx: torch.Tensor | State | None = None,
                lengths: torch.Tensor | Sequence[int] | None = None) -> tuple[torch.Tensor | PackedSequence, object]:
        """torch.nn's call: ``input`` ``(T, N, F)`` (``(N, T, F)`` if batch_first, ``(T, F)`` unbatched, or a
        PackedSequence) and the initial state (zeros if None) → ``(output, final state)``.

        ``output`` holds h_t of the last layer for every step, the directions concatenated:
        ``(T, N, D * H_out)`` (batch first if batch_first; a PackedSequence for a PackedSequence input).
        ``lengths`` (N integers in [1, T]), our addition, makes a padded batch variable-length, as packing does.
        """
        if _dynamo_compiling() and torch.is_grad_enabled():  # see "Under torch.compile" above
            return _run_eagerly(self, input, hx, lengths)
        return self._forward(input, hx, lengths)

    def _forward(self, input: torch.Tensor | PackedSequence, hx: torch.Tensor | State | None,
                 lengths: torch.Tensor | Sequence[int] | None) -> tuple[torch.Tensor | PackedSequence, object]:
        fused = self.fused and self.fused_kernel_applies()
        if isinstance(input, PackedSequence):
            if lengths is not None:
                raise ValueError(f"{self.model_name} expects either a PackedSequence or lengths, not both")
            check_feature_sequence(input.data, model=self, input_size=self.input_size)
            if fused:
                state = self._initial_state(hx, input.data, int(input.batch_sizes[0]), batched=True)
                data, state = self._run_fused_packed(input, state)
                return PackedSequence(data, input.batch_sizes, input.sorted_indices,
                                      input.unsorted_indices), self._public_state(state)
            padded, lengths = pad_packed_sequence(input)  # (T, N, F) in the caller's batch order
            state = self._initial_state(hx, padded, padded.shape[1], batched=True)
            output, state = self._run(padded, state, lengths.to(padded.device))
            # Back to the packed layout: the batch sorted by length, then step by step, only the live rows.
            if input.sorted_indices is not None:
                output = output.index_select(1, input.sorted_indices)
            live = torch.arange(output.shape[1])[None, :] < input.batch_sizes[:, None]  # (T, N)
            data = output[live.to(output.device)]  # (sum of lengths, D * H_out)
            packed = PackedSequence(data, input.batch_sizes, input.sorted_indices, input.unsorted_indices)
            return packed, self._public_state(state)

        check_feature_sequence(input, model=self, input_size=self.input_size, batch_first=self.batch_first)
        batched = input.ndim == 3
        if not batched:
            if lengths is not None:
                raise ValueError(f"{self.model_name} expects lengths only with a batch (N, T, F); got one "
                                 f"sequence {tuple(input.shape)}")
            input = input.unsqueeze(0 if self.batch_first else 1)
        steps, batch = (input.shape[1], input.shape[0]) if self.batch_first else input.shape[:2]
        state = self._initial_state(hx, input, batch, batched)
        lengths = self._check_lengths(lengths, input, steps, batch)
        if fused:
            output, state = self._run_fused(input, state, lengths)
        else:
            # (T, N, F): time-major inside, copied contiguous: a matrix product over a transposed 3-D view takes a
            # slow path (the input projection was 4 times slower on a (N, T, F) batch viewed as (T, N, F))
            x = input.transpose(0, 1).contiguous() if self.batch_first else input
            output, state = self._run(x, state, lengths)
            if self.batch_first:
                output = output.transpose(0, 1)
        if not batched:
            output = output.squeeze(0 if self.batch_first else 1)
            state = tuple(s.squeeze(1) for s in state)
        return output, self._public_state(state)

    def _run_fused(self, x: torch.Tensor, state: State, lengths: torch.Tensor | None) -> tuple[torch.Tensor, State]:
        """What :meth:`_run` computes, by torch's fused kernel: ``x`` and the output in the layer's layout (batch
        first or not), the state ``(L * D, N, size)`` each, in the caller's batch order."""
        if lengths is None:
            result = getattr(torch._VF, self.fused_kernel)(
                x, self._public_state(state), self._flat_weights(), self.bias, self.num_layers, self.dropout,
                self.training, self.bidirectional, self.batch_first)
            return result[0], tuple(result[1:])
        # A padded batch with lengths is run packed, as torch.nn runs a PackedSequence; padding it back gives
        # zeros past each sequence's end, as the loop's mask does.
        packed = pack_padded_sequence(x, lengths.cpu(), batch_first=self.batch_first, enforce_sorted=False)
        data, state = self._run_fused_packed(packed, state)
        packed = PackedSequence(data, packed.batch_sizes, packed.sorted_indices, packed.unsorted_indices)
        output, _ = pad_packed_sequence(packed, batch_first=self.batch_first,
                                        total_length=x.shape[1 if self.batch_first else 0])
        return output, state

    def _run_fused_packed(self, packed: PackedSequence, state: State) -> tuple[torch.Tensor, State]:
        """The fused kernel over a PackedSequence: its data ``(sum of lengths, D * H_out)`` and the final state,
        in the caller's batch order (the kernel takes and returns it in the packed, length-sorted order)."""
        if packed.sorted_indices is not None:
            state = tuple(s.index_select(1, packed.sorted_indices) for s in state)
        result = getattr(torch._VF, self.fused_kernel)(
            packed.data, packed.batch_sizes, self._public_state(state), self._flat_weights(), self.bias,
            self.num_layers, self.dropout, self.training, self.bidirectional)
        state = tuple(result[1:])
        if packed.unsorted_indices is not None:
            state = tuple(s.index_select(1, packed.unsorted_indices) for s in state)
        return result[0], state

    def _flat_weights(self) -> list[torch.Tensor]:
        """The parameters as the fused kernels take them (torch.nn's ``_flat_weights``): for each layer and
        direction, in order, ``weight_ih, weight_hh[, bias_ih, bias_hh][, weight_hr]`` (our names, our order)."""
        return [getattr(self, name) for names in self._all_weights for name in names]

    def _public_state(self, state: State) -> torch.Tensor | State:
        """The state as torch.nn returns it: h_n alone, or the tuple (h_n, c_n)."""
        return state if len(state) > 1 else state[0]

    def _run(self, x: torch.Tensor, state: State, lengths: torch.Tensor | None) -> tuple[torch.Tensor, State]:
        """The layers over a time-major batch ``(T, N, F)`` → ``(T, N, D * H_out)`` and the final state."""
        steps, batch = x.shape[:2]
        directions = self.num_directions
        mask = None
        if lengths is not None:
            real = torch.arange(steps, device=x.device)[:, None] < lengths[None, :]  # (T, N): step t is real
            # (T, D, N, 1), each direction in its own reading order (the reverse one reads step T - 1 first)
            mask = torch.stack([real, real.flip(0)][:directions], dim=1).unsqueeze(-1)
        finals: list[list[torch.Tensor]] = [[] for _ in state]
        layer_input = x
        for layer in range(self.num_layers):
            weights = self.layer_weights(layer)
            gates = self.project_inputs(layer_input, weights)  # (T, N, D * G * H): every step at once
            gates = gates.view(steps, batch, directions, -1).transpose(1, 2)  # (T, D, N, G * H)
            if directions == 2:  # the reverse direction's step t is the sequence's step T - 1 - t
                gates = torch.stack((gates[:, 0], gates[:, 1].flip(0)), dim=1)
            layer_state = tuple(s[layer * directions:(layer + 1) * directions] for s in state)  # (D, N, size)
            previous_states: list[torch.Tensor] | None = None
            ports: tuple[torch.Tensor, ...] | None = None
            if ((self.recurrent_product_joins_input_gates or self.recurrent_gradient_port)
                    and torch.is_grad_enabled() and weights["weight_hh"].requires_grad):
                previous_states = []  # h_{t-1} of every step, for W_hh's gradient in one product
                if self.recurrent_product_joins_input_gates:
                    gates = _RecurrentWeightGradient.apply(gates, weights["weight_hh"], previous_states)
                else:  # zeros whose gradient at step t is the recurrent product's: (T, D, N, G * H)
                    ports = _RecurrentWeightGradient.apply(gates.new_zeros(gates.shape), weights["weight_hh"],
                                                           previous_states).unbind(0)
                weights = {**weights, "weight_hh": weights["weight_hh"].detach()}
            # One view per step from unbind, not gates[t]: in training, autograd then joins the steps' gradients
            # with one stack, where indexing makes a zero tensor of the whole (T, D, N, G * H) for every step and
            # adds T of them (that was 80% of the LSTM's training step at its canonical shape).
            step_gates = gates.unbind(0)
            outputs = []
            for t in range(steps):
                if previous_states is not None:
                    previous_states.append(layer_state[0])
                step_weights = weights if ports is None else {**weights, "recurrent_port": ports[t]}
                new_state = self.cell(step_gates[t], layer_state, step_weights)
                if mask is not None:  # past its end a sequence keeps its state: h_n is its last real step's
                    new_state = tuple(torch.where(mask[t], new, old) for new, old in zip(new_state, layer_state,
                                                                                         strict=True))
                layer_state = new_state
                outputs.append(layer_state[0])
            output = torch.stack(outputs)  # (T, D, N, H_out)
            if mask is not None:
                output = output.masked_fill(~mask, 0.0)  # padded steps output zeros, as pad_packed_sequence
            if directions == 2:  # the reverse direction's outputs back in the sequence's order, concatenated
                output = torch.cat((output[:, 0], output[:, 1].flip(0)), dim=-1)  # (T, N, 2 * H_out)
            else:
                output = output[:, 0]  # (T, N, H_out)
            for final, s in zip(finals, layer_state, strict=True):
                final.append(s)
            layer_input = output
            if self.dropout > 0 and self.training and layer < self.num_layers - 1:
                layer_input = F.dropout(output, self.dropout, training=True)  # between layers, never after the last
        return layer_input, tuple(torch.cat(final) for final in finals)

    def layer_weights(self, layer: int) -> LayerWeights:
        """The parameters of one layer, each kind stacked over the directions: ``(D, ...)``."""
        weights = {}
        for kind in self._kinds:
            tensors = [getattr(self, f"{kind}_l{layer}{suffix}") for suffix in self._suffixes()]
            weights[kind] = tensors[0].unsqueeze(0) if len(tensors) == 1 else torch.stack(tensors)
        return weights

    def _suffixes(self) -> tuple[str, ...]:
        return ("", "_reverse")[:self.num_directions]

    def _initial_state(self, hx: torch.Tensor | State | None, x: torch.Tensor, batch: int, batched: bool) -> State:
        """The given initial state, checked, as a tuple of ``(L * D, N, size)`` tensors; zeros (of ``x``'s dtype
        and device) if None."""
        layers = self.num_layers * self.num_directions
        if hx is None:
            return tuple(x.new_zeros(layers, batch, size) for size in self.state_sizes)
        names = self.state_names
        if len(names) > 1:
            if not isinstance(hx, (tuple, list)) or len(hx) != len(names):
                raise ValueError(f"{self.model_name} expects the initial state as a tuple "
                                 f"({', '.join(f'{n}_0' for n in names)}); got {type(hx).__name__}")
            parts = tuple(hx)
        else:
            parts = (hx,)
        state = []
        for name, size, part in zip(names, self.state_sizes, parts, strict=True):
            expected = (layers, batch, size) if batched else (layers, size)
            layout = "(num_layers * num_directions, N, H)" if batched else "(num_layers * num_directions, H)"
            if not isinstance(part, torch.Tensor) or tuple(part.shape) != expected or not part.is_floating_point():
                got = tuple(part.shape) if isinstance(part, torch.Tensor) else type(part).__name__
                raise ValueError(f"{self.model_name} expects the initial state {name}_0 as a float tensor of shape "
                                 f"{layout} = {expected}; got {got}")
            state.append(part if batched else part.unsqueeze(1))
        return tuple(state)

    def _check_lengths(self, lengths: torch.Tensor | Sequence[int] | None, x: torch.Tensor, steps: int,
                       batch: int) -> torch.Tensor | None:
        """``lengths`` (N integers in [1, T]) as an int64 tensor on the input's device."""
        if lengths is None:
            return None
        check_sequence_lengths(lengths, name=self.model_name, batch_size=batch, max_length=steps)
        return torch.as_tensor(lengths).to(device=x.device, dtype=torch.int64)

    # --- torch.nn compatibility --------------------------------------------------------------------------

    @property
    def all_weights(self) -> list[list[nn.Parameter]]:
        """The parameters per layer and direction, as torch.nn's ``all_weights``."""
        return [[getattr(self, name) for name in names] for names in self._all_weights]

    def flatten_parameters(self) -> None:
        """torch.nn's: on a GPU, lay the weights out in the one buffer cuDNN reads (each parameter becomes a view of
        it, its name and shape unchanged), so that the fused kernel takes them as they are; separate, cuDNN copies
        them into such a buffer at every call, and warns. Called after every ``.to()``/``.cuda()`` (``_apply``). A
        no-op on a CPU, for a cell cuDNN lacks (the peephole LSTM), and for weights cuDNN does not take as they are
        (mixed dtypes, two names for one tensor, a sharded tensor)."""
        weights = self._flat_weights()
        if not self.fused_kernel_applies() or not weights:
            return
        first = weights[0]
        if not all(type(w) in (nn.Parameter, torch.Tensor) and w.is_cuda and w.dtype == first.dtype
                   and torch.backends.cudnn.is_acceptable(w) for w in weights):
            return
        if len({w.data_ptr() for w in weights}) != len(weights):  # tied weights cannot be two views of one buffer
            return
        import torch.backends.cudnn.rnn as cudnn_rnn

        with torch.cuda.device_of(first), torch.no_grad():  # in place: each parameter's storage is replaced
            if torch._use_cudnn_rnn_flatten_weight():
                torch._cudnn_rnn_flatten_weight(
                    weights, len(self._kinds), self.input_size, cudnn_rnn.get_cudnn_mode(self.fused_kernel.upper()),
                    self.hidden_size, self.proj_size, self.num_layers, self.batch_first, self.bidirectional)

    def _apply(self, fn, recurse: bool = True):
        module = super()._apply(fn, recurse)
        self.flatten_parameters()  # .cuda() and .to() made new, separate tensors
        return module

    def extra_repr(self) -> str:
        text = f"{self.input_size}, {self.hidden_size}"
        for name, default in (("num_layers", 1), ("bias", True), ("batch_first", False), ("dropout", 0.0),
                              ("bidirectional", False), ("proj_size", 0)):
            if getattr(self, name) != default:
                text += f", {name}={getattr(self, name)}"
        if not self.fused and self.fused_kernel_applies():
            text += ", fused=False"
        return text
