r"""Gated Recurrent Unit (GRU), as ``torch.nn.GRU`` computes it.

Paper: "Learning Phrase Representations using RNN Encoder–Decoder for Statistical Machine Translation",
Kyunghyun Cho, Bart van Merriënboer, Caglar Gulcehre, Dzmitry Bahdanau, Fethi Bougares, Holger Schwenk,
Yoshua Bengio, EMNLP 2014. https://arxiv.org/abs/1406.1078
(The name "gated recurrent unit" is from Chung et al., "Empirical Evaluation of Gated Recurrent Neural Networks
on Sequence Modeling", 2014, arXiv 1412.3555.)

The paper proposes, for its RNN Encoder–Decoder, "a new type of hidden unit" motivated by the LSTM but simpler
to compute (§2.3): no memory cell separate from the state, two gates instead of three.

* A reset gate r decides how much of the previous state the candidate state sees: with r ≈ 0 the unit
  "forgets" the past and reads only the current input, so it can drop what is irrelevant later (a short-term
  dependency unit has an active reset gate).
* An update gate z decides how much of the previous state carries over, like the LSTM's memory cell: with
  z ≈ 1 the state is copied forward unchanged, so information (and gradient) travels over long spans (a
  long-term dependency unit has an active update gate).

The paper's unit (eqs. 5-8, for unit j; $\phi = \tanh$):

$$
\begin{aligned}
r_j &= \sigma([W_r x]_j + [U_r h_{t-1}]_j) && \text{reset gate} \\
z_j &= \sigma([W_z x]_j + [U_z h_{t-1}]_j) && \text{update gate} \\
\tilde h_j &= \phi([W x]_j + [U (r \odot h_{t-1})]_j) && \text{candidate state} \\
h_j &= z_j h_{t-1, j} + (1 - z_j) \tilde h_j && \text{new state}
\end{aligned}
$$

and torch.nn.GRU's, with its biases (r, z, n are the rows of ``weight_ih`` and ``weight_hh``, in this order):

$$
\begin{aligned}
r_t &= \sigma(W_{ir} x_t + b_{ir} + W_{hr} h_{t-1} + b_{hr}) \\
z_t &= \sigma(W_{iz} x_t + b_{iz} + W_{hz} h_{t-1} + b_{hz}) \\
n_t &= \tanh(W_{in} x_t + b_{in} + r_t \odot (W_{hn} h_{t-1} + b_{hn})) \\
h_t &= (1 - z_t) \odot n_t + z_t \odot h_{t-1}
\end{aligned}
$$

Data flow at the canonical input (the registered ``gru``: 256 features, 512 units, one layer, batch first)::

    x (N, 35, 256) → time-major (35, N, 256)
      W_ih x_t + b_ih for all 35 steps in one matmul            (35, N, 1536) = 3 gates × 512
      for t = 1..35:  W_hh h_{t-1} + b_hh                        (N, 1536) → r, z, n (N, 512) each
                      h_t = (1 - z) ⊙ n + z ⊙ h_{t-1}
    output = h_1..h_35 (N, 35, 512);  state h_n (1, N, 512)

Layers, directions, dropout between layers, variable lengths (``lengths=`` or a PackedSequence) and the state layout
``(num_layers * num_directions, N, H)`` are torch.nn.RNNBase's bookkeeping, written once in
``paperzoo.layers.recurrent``; this file holds the cell. The GRU runs, by default, torch.nn.GRU's own fused kernel
(``torch._VF.gru``) on these parameters, at torch.nn's speed; the cell below, in a loop over time (``fused=False``),
is what it computes, and the tests hold the two equal.

A drop-in replacement for ``torch.nn.GRU``: the same constructor keywords and defaults (``batch_first=False``,
as torch.nn), call signature ``(input, h_0) → (output, h_n)``, parameter names and initialisation
($U(-1/\sqrt{H}, 1/\sqrt{H})$), so a torch.nn.GRU state_dict loads as it is (``load_weights(..., source="torch")``) and
the outputs equal torch.nn's. The registered builder ``create_model("gru", ...)`` defaults to ``batch_first=True``, the
zoo's convention for sequence inputs.

Deviations from the paper, all torch.nn.GRU's, kept so that its weights load and its outputs match:

* The reset gate multiplies the recurrent product, $r \odot (W_{hn} h_{t-1} + b_{hn})$, instead of the state
  before it, $U (r \odot h_{t-1})$ (eq. 8). This is cuDNN's formulation: the recurrent products of all three gates are
  then one matrix product per step. The two are different functions (not a reparametrisation); RNNsearch
  (``attention_seq2seq.py``) keeps the paper's form.
* Two bias vectors per gate ($b_{i\cdot}$ and $b_{h\cdot}$); the paper writes none (its equations omit
  biases). $b_{hn}$ is not redundant here: it sits inside the reset gate's product.
* Layers, directions and dropout between layers are torch.nn's generalisation; the paper's encoder and
  decoder each had one layer of 1000 units.
* ``lengths=`` is our addition: a padded batch becomes variable-length without packing it.
"""

from __future__ import annotations

from typing import Any

import torch

from paperzoo.layers.recurrent import LayerWeights, RecurrentLayers, State
from paperzoo.registry import InputSpec, ModelCard, Paper, register

__all__ = ["GRU"]


class GRU(RecurrentLayers):
    """Multi-layer (bidirectional) GRU with torch.nn.GRU's interface, parameters and outputs.

    Args (torch.nn.GRU's, with its defaults):
        input_size: features per step, F.
        hidden_size: units per layer and direction, H.
        num_layers: GRU layers stacked.
        bias: whether the gates have the biases ``bias_ih_l{k}`` and ``bias_hh_l{k}``.
        batch_first: input and output ``(N, T, F)`` instead of ``(T, N, F)``.
        dropout: dropout on the outputs of every layer but the last, in training mode.
        bidirectional: a second direction per layer that reads the sequence from its end.
        fused: run torch.nn.GRU's fused kernel (the default); False runs :meth:`cell` in a loop over time, the
            reference that the tests hold the kernel equal to.

    ``forward(input, h_0=None, lengths=None) → (output, h_n)``, as torch.nn.GRU; ``lengths`` (N integers)
    makes a padded batch variable-length, as a PackedSequence input does.
    """

    gate_count = 3  # r, z, n: the rows of weight_ih and weight_hh, in torch.nn's order
    state_names = ("h",)
    recurrent_gradient_port = True  # the reset gate scales W_hn h_{t-1}, so the port sits on the recurrent product
    fused_kernel = "gru"  # torch._VF.gru, torch.nn.GRU's kernel: the default path; cell() is its reference
    model_name = "gru"

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, bias: bool = True,
                 batch_first: bool = False, dropout: float = 0.0, bidirectional: bool = False,
                 device: torch.device | str | None = None, dtype: torch.dtype | None = None, *,
                 fused: bool = True) -> None:
        super().__init__(input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional,
                         device=device, dtype=dtype, fused=fused)

    def cell(self, input_gates: torch.Tensor, state: State, weights: LayerWeights) -> State:
        r"""One step of every direction: ``input_gates`` = $W_{i\cdot} x_t + b_{i\cdot}$, ``(D, N, 3H)``;
        $h_{t-1} \to h_t$."""
        (h,) = state  # (D, N, H)
        recurrent = weights["weight_hh"].transpose(1, 2)
        if self.bias:  # W_h· h_{t-1} + b_h·: (D, N, 3H), one product for the three gates
            hidden_gates = torch.baddbmm(weights["bias_hh"].unsqueeze(1), h, recurrent)
        else:
            hidden_gates = torch.bmm(h, recurrent)
        if "recurrent_port" in weights:  # training only: zeros that carry W_hh's gradient (layers/recurrent.py)
            hidden_gates = hidden_gates + weights["recurrent_port"]
        input_r, input_z, input_n = input_gates.chunk(3, dim=-1)
        hidden_r, hidden_z, hidden_n = hidden_gates.chunk(3, dim=-1)
        r = torch.sigmoid(input_r + hidden_r)  # reset gate r_t
        z = torch.sigmoid(input_z + hidden_z)  # update gate z_t
        n = torch.tanh(input_n + r * hidden_n)  # candidate n_t: the reset gate scales W_hn h_{t-1} + b_hn
        return (n + z * (h - n),)  # h_t = (1 - z_t) ⊙ n_t + z_t ⊙ h_{t-1}


_INPUT_SIZE, _HIDDEN_SIZE, _STEPS = 256, 512, 35  # the LSTM's canonical shape, for a side-by-side comparison


@register(ModelCard(
    name="gru",
    architecture="GRU",
    task="sequence",
    paper=Paper(
        title="Learning Phrase Representations using RNN Encoder-Decoder for Statistical Machine Translation",
        authors="Kyunghyun Cho, Bart van Merrienboer, Caglar Gulcehre, Dzmitry Bahdanau, Fethi Bougares, "
                "Holger Schwenk, Yoshua Bengio",
        year=2014,
        url="https://arxiv.org/abs/1406.1078",
    ),
    innovations=(
        "a gated hidden unit simpler than the LSTM: no separate memory cell, two gates instead of three",
        "the reset gate lets the candidate state ignore the past (short-term dependencies)",
        "the update gate interpolates old state and candidate, carrying information over long spans",
        "a drop-in torch.nn.GRU: its keywords (layers, bidirectional, dropout), weights and outputs",
    ),
    input=InputSpec(kind="features", shape=(_STEPS, _INPUT_SIZE)),
    params=1_182_720,
    params_source="torch.nn.GRU(input_size=256, hidden_size=512), counted: 3·512·(256 + 512) weights + 2·3·512 "
                  "biases",
    reference="torch.nn.GRU(input_size=256, hidden_size=512, batch_first=True)",
    gmacs=0.041,
    canonical=True,
    notes="create_model('gru', input_size=..., hidden_size=..., num_layers=..., bidirectional=..., dropout=...) "
          "builds any torch.nn.GRU configuration (batch_first=True unless given); "
          "forward(x, h_0, lengths=None) -> (output, h_n).",
))
def gru(**kwargs: Any) -> GRU:
    """A GRU of torch.nn.GRU's keywords; by default one layer of 512 units on 256 features, batch first."""
    return GRU(**{"input_size": _INPUT_SIZE, "hidden_size": _HIDDEN_SIZE, "batch_first": True, **kwargs})


if __name__ == "__main__":
    from paperzoo.cli import main

    main(["run", "gru"])
