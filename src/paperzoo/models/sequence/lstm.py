r"""Long Short-Term Memory (LSTM), as ``torch.nn.LSTM`` computes it.

Paper: "Long Short-Term Memory", Sepp Hochreiter, Jürgen Schmidhuber, Neural Computation 9(8), 1997.
https://doi.org/10.1162/neco.1997.9.8.1735
The forget gate: "Learning to Forget: Continual Prediction with LSTM", Felix A. Gers, Jürgen Schmidhuber,
Fred Cummins, Neural Computation 12(10), 2000. Peepholes: Gers & Schmidhuber, IJCNN 2000. The projection:
Haşim Sak, Andrew Senior, Françoise Beaufays, Interspeech 2014 (arXiv 1402.1128).

Backpropagated error in a recurrent net is multiplied at each step by the recurrent weights times the
activation's slope, so over long time lags it vanishes or explodes (§3). The paper's remedy:

* The constant error carousel (§3.2, §4): a linear memory cell whose self-connection has weight 1.0,
  $s_c(t) = s_c(t-1) + y^{in}(t)\, g(net_c(t))$, so error flowing back through $s_c$ is neither scaled nor
  squashed.
* Multiplicative gates (§4): an input gate $y^{in}$ decides when new input is written into the cell
  (protecting its content from irrelevant inputs), an output gate $y^{out}$ decides when the cell's content
  $y^c = y^{out} h(s_c)$ reaches the rest of the network (protecting the others from the cell).
* Gers et al. (2000) added a forget gate f: without it the cell state of a continual input stream grows
  without bound; with it a cell learns to reset itself, $s_c(t) = f(t)\, s_c(t-1) + y^{in}(t)\, g(net_c(t))$.

The modern cell, in torch.nn's notation ($i \leftrightarrow y^{in}$, $o \leftrightarrow y^{out}$,
$g \leftrightarrow g(net_c)$, $c \leftrightarrow s_c$, $h \leftrightarrow y^c$), for each step:

$$
\begin{aligned}
i_t &= \sigma(W_{ii} x_t + b_{ii} + W_{hi} h_{t-1} + b_{hi}) && \text{input gate} \\
f_t &= \sigma(W_{if} x_t + b_{if} + W_{hf} h_{t-1} + b_{hf}) && \text{forget gate} \\
g_t &= \tanh(W_{ig} x_t + b_{ig} + W_{hg} h_{t-1} + b_{hg}) && \text{cell input} \\
o_t &= \sigma(W_{io} x_t + b_{io} + W_{ho} h_{t-1} + b_{ho}) && \text{output gate} \\
c_t &= f_t \odot c_{t-1} + i_t \odot g_t && \text{the carousel, gated} \\
h_t &= o_t \odot \tanh(c_t) && (h_t = W_{hr} (o_t \odot \tanh(c_t)) \text{ with proj\_size})
\end{aligned}
$$

Data flow at the canonical input (the registered ``lstm``: 256 features, 512 units, one layer, batch first)::

    x (N, 35, 256) → time-major (35, N, 256)
      W_ih x_t + b_ih + b_hh for all 35 steps in one matmul     (35, N, 2048) = 4 gates × 512
      for t = 1..35:  + W_hh h_{t-1}                             (N, 2048) → i, f, g, o (N, 512) each
                      c_t = f ⊙ c_{t-1} + i ⊙ g,  h_t = o ⊙ tanh(c_t)
    output = h_1..h_35 (N, 35, 512);  state (h_n, c_n), each (1, N, 512)

With ``num_layers`` > 1 layer k reads the outputs of layer k - 1 (dropout between layers in training mode); with
``bidirectional`` a second direction reads the sequence from its end and the outputs of the two are concatenated,
(N, T, 2H); the state is ``(num_layers * num_directions, N, H)``, layer-major, as torch.nn. The stacking, the
directions, variable lengths (``lengths=`` or a PackedSequence) and the state layout are torch.nn.RNNBase's
bookkeeping, written once in ``paperzoo.layers.recurrent``; this file holds the cell. The LSTM without peepholes
runs, by default, torch.nn.LSTM's own fused kernel (``torch._VF.lstm``) on these parameters, at torch.nn's speed;
the cell below, in a loop over time (``fused=False``), is what it computes, and the tests hold the two equal.

A drop-in replacement for ``torch.nn.LSTM``: the same constructor keywords and defaults (``batch_first=False``,
as torch.nn), call signature ``(input, (h_0, c_0)) → (output, (h_n, c_n))``, parameter names and
initialisation ($U(-1/\sqrt{H}, 1/\sqrt{H})$), so a torch.nn.LSTM state_dict loads as it is (``load_weights(...,
source="torch")``) and the outputs equal torch.nn's. The registered builder ``create_model("lstm", ...)``
defaults to ``batch_first=True``, the zoo's convention for sequence inputs.

Deviations from the 1997 paper, all torch.nn.LSTM's, kept so that its weights load and its outputs match:

* The forget gate (Gers et al. 2000): the 1997 cell has none, its carousel weight is fixed at 1.0.
* Squashing functions: the 1997 paper's g (a sigmoid scaled to [-2, 2]) and h (scaled to [-1, 1]) are tanh.
* Every cell has its own gates; the paper groups cells into "memory cell blocks" that share them (§4).
* Two bias vectors per gate ($b_{i\cdot}$ and $b_{h\cdot}$, cuDNN's layout), of which only the sum matters; the paper
  has one.
* Training is by full backpropagation through time (autograd); the paper truncated the error flow outside
  the cells to make learning local in time (§4, "truncated backprop").
* No peephole connections by default (torch.nn has none). ``peephole=True``, our addition, adds the diagonal
  peephole weights of Gers & Schmidhuber (2000) in Graves' (2013) formulation, the one Seq2Seq uses:
  $i_t$ and $f_t$ also see $w_{ci} \odot c_{t-1}$ and $w_{cf} \odot c_{t-1}$, $o_t$ sees $w_{co} \odot c_t$.
* ``lengths=`` is our addition: a padded batch becomes variable-length without packing it.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from paperzoo.layers.recurrent import LayerWeights, RecurrentLayers, State
from paperzoo.registry import InputSpec, ModelCard, Paper, register

__all__ = ["LSTM"]


class LSTM(RecurrentLayers):
    r"""Multi-layer (bidirectional) LSTM with torch.nn.LSTM's interface, parameters and outputs.

    Args (torch.nn.LSTM's, with its defaults):
        input_size: features per step, F.
        hidden_size: memory cells per layer and direction, H.
        num_layers: LSTM layers stacked.
        bias: whether the gates have the biases ``bias_ih_l{k}`` and ``bias_hh_l{k}``.
        batch_first: input and output ``(N, T, F)`` instead of ``(T, N, F)``.
        dropout: dropout on the outputs of every layer but the last, in training mode.
        bidirectional: a second direction per layer that reads the sequence from its end.
        proj_size: if > 0, $h_t = W_{hr} (o_t \odot \tanh(c_t))$ has this size (LSTMP, Sak et al. 2014).
        peephole: add Gers & Schmidhuber's diagonal peephole weights ``weight_ci``, ``weight_cf``, ``weight_co``
            (not in torch.nn; off by default). A peephole LSTM always runs the loop over time (torch has no kernel).
        fused: run torch.nn.LSTM's fused kernel (the default); False runs :meth:`cell` in a loop over time, the
            reference that the tests hold the kernel equal to.

    ``forward(input, (h_0, c_0)=None, lengths=None) → (output, (h_n, c_n))``, as torch.nn.LSTM; ``lengths``
    (N integers) makes a padded batch variable-length, as a PackedSequence input does.
    """

    gate_count = 4  # i, f, g, o: the rows of weight_ih and weight_hh, in torch.nn's order
    state_names = ("h", "c")
    recurrent_product_joins_input_gates = True  # gates = (W_i· x_t + b) + W_h· h_{t-1}, then the nonlinearities
    fused_kernel = "lstm"  # torch._VF.lstm, torch.nn.LSTM's kernel: the default path; cell() is its reference
    model_name = "lstm"

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, bias: bool = True,
                 batch_first: bool = False, dropout: float = 0.0, bidirectional: bool = False, proj_size: int = 0,
                 device: torch.device | str | None = None, dtype: torch.dtype | None = None, *,
                 peephole: bool = False, fused: bool = True) -> None:
        self.peephole = peephole  # read by parameter_shapes during the base class's __init__
        super().__init__(input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional, proj_size,
                         device=device, dtype=dtype, fused=fused)

    @property
    def state_sizes(self) -> tuple[int, ...]:
        return (self.output_size, self.hidden_size)  # h is projected (proj_size), c never is

    def parameter_shapes(self, layer_input_size: int) -> list[tuple[str, tuple[int, ...]]]:
        shapes = super().parameter_shapes(layer_input_size)
        if self.peephole:  # w_ci, w_cf, w_co: one weight per cell, from its own state to its gates (diagonal)
            shapes += [(f"weight_c{gate}", (self.hidden_size,)) for gate in "ifo"]
        return shapes

    def fused_kernel_applies(self) -> bool:
        return not self.peephole  # torch's kernel has no peephole weights: a peephole LSTM runs the loop

    def project_inputs(self, x: torch.Tensor, weights: LayerWeights) -> torch.Tensor:
        # Both biases are added before any nonlinearity, so they fold into the input projection that is
        # computed once for the whole sequence: (T, N, F) → (T, N, D * 4H).
        bias = (weights["bias_ih"] + weights["bias_hh"]).flatten() if self.bias else None
        return F.linear(x, weights["weight_ih"].flatten(0, 1), bias)

    def cell(self, input_gates: torch.Tensor, state: State, weights: LayerWeights) -> State:
        r"""One step of every direction: ``input_gates`` = $W_{i\cdot} x_t + b_{i\cdot} + b_{h\cdot}$, ``(D, N, 4H)``;
        state ($h_{t-1}$ ``(D, N, H_out)``, $c_{t-1}$ ``(D, N, H)``) → ($h_t$, $c_t$)."""
        h, c = state
        gates = torch.baddbmm(input_gates, h, weights["weight_hh"].transpose(1, 2))  # + W_h· h_{t-1}: (D, N, 4H)
        i, f, g, o = gates.chunk(4, dim=-1)
        if self.peephole:  # the gates that guard c_t look at c_{t-1} (Graves 2013, eqs. 7-8)
            i = i + weights["weight_ci"].unsqueeze(1) * c
            f = f + weights["weight_cf"].unsqueeze(1) * c
        i, f, g = torch.sigmoid(i), torch.sigmoid(f), torch.tanh(g)  # i_t, f_t, g_t
        c = f * c + i * g  # c_t = f_t ⊙ c_{t-1} + i_t ⊙ g_t: the constant error carousel, gated
        if self.peephole:  # the output gate looks at the new state c_t (Graves 2013, eq. 10)
            o = o + weights["weight_co"].unsqueeze(1) * c
        h = torch.sigmoid(o) * torch.tanh(c)  # h_t = o_t ⊙ tanh(c_t)
        if self.proj_size > 0:
            h = torch.bmm(h, weights["weight_hr"].transpose(1, 2))  # h_t = W_hr h_t: (D, N, proj_size)
        return h, c

    def extra_repr(self) -> str:
        return super().extra_repr() + (", peephole=True" if self.peephole else "")


_INPUT_SIZE, _HIDDEN_SIZE, _STEPS = 256, 512, 35  # 35 steps: the unrolled length of the PTB language models


@register(ModelCard(
    name="lstm",
    architecture="LSTM",
    task="sequence",
    paper=Paper(
        title="Long Short-Term Memory",
        authors="Sepp Hochreiter, Jürgen Schmidhuber",
        year=1997,
        url="https://doi.org/10.1162/neco.1997.9.8.1735",
    ),
    innovations=(
        "the constant error carousel: a linear memory cell with a self-connection of weight 1 carries error back "
        "through time without vanishing",
        "multiplicative input and output gates decide when the cell is written and when it is read",
        r"the forget gate (Gers et al. 2000): $c_t = f_t \odot c_{t-1} + i_t \odot g_t$ lets a cell reset itself",
        "a drop-in torch.nn.LSTM: its keywords (layers, bidirectional, dropout, proj_size), weights and outputs",
    ),
    input=InputSpec(kind="features", shape=(_STEPS, _INPUT_SIZE)),
    params=1_576_960,
    params_source="torch.nn.LSTM(input_size=256, hidden_size=512), counted: 4·512·(256 + 512) weights + 2·4·512 "
                  "biases",
    reference="torch.nn.LSTM(input_size=256, hidden_size=512, batch_first=True)",
    gmacs=0.055,
    canonical=True,
    notes="create_model('lstm', input_size=..., hidden_size=..., num_layers=..., bidirectional=..., dropout=..., "
          "proj_size=...) builds any torch.nn.LSTM configuration (batch_first=True unless given); "
          "forward(x, (h_0, c_0), lengths=None) -> (output, (h_n, c_n)).",
))
def lstm(**kwargs: Any) -> LSTM:
    """An LSTM of torch.nn.LSTM's keywords; by default one layer of 512 cells on 256 features, batch first."""
    return LSTM(**{"input_size": _INPUT_SIZE, "hidden_size": _HIDDEN_SIZE, "batch_first": True, **kwargs})


if __name__ == "__main__":
    from paperzoo.cli import main

    main(["run", "lstm"])
