r"""Attention Seq2Seq: RNNsearch.

Paper: "Neural Machine Translation by Jointly Learning to Align and Translate", Dzmitry Bahdanau, Kyunghyun Cho,
Yoshua Bengio, ICLR 2015 (arXiv 2014). https://arxiv.org/abs/1409.0473

An encoder-decoder that squeezes the source sentence into one fixed-length vector (Seq2Seq, RNNencdec) degrades
quickly as sentences grow longer than those it was trained on (Figure 2). RNNsearch drops the fixed vector:

* The encoder (§3.2) is a bidirectional RNN: a forward RNN reads $x_1 \dots x_{T_x}$, a backward RNN reads
  $x_{T_x} \dots x_1$, and the annotation of word j concatenates their states,
  $h_j = [\overrightarrow{h}_j; \overleftarrow{h}_j]$, a summary of the whole sentence focused on the words
  around $x_j$.
* The decoder (§3.1) computes a distinct context vector $c_i$ for each target word, a weighted sum of the
  annotations, $c_i = \sum_j \alpha_{ij} h_j$ (eq. 5), with weights $\alpha_{ij} = \text{softmax}_j(e_{ij})$
  (eq. 6) from an alignment model $e_{ij} = a(s_{i-1}, h_j)$ that scores how well the source around position j
  matches the output at position i. The alignment model is a small feed-forward network trained jointly with the rest
  ("jointly learning to align and translate"); α is a soft alignment that can be inspected (Figure 3).
* The new state $s_i = f(s_{i-1}, y_{i-1}, c_i)$ and the output distribution
  $p(y_i \mid y_{<i}, x) = g(y_{i-1}, s, c_i)$ both read the context; the output is a deep output layer with a single
  maxout hidden layer (appendix A.2.2).

The equations of appendix A, with the paper's names (n = 1000 hidden units, m = 620-d embeddings, n' = 1000
alignment units, l = 500 maxout units, K_x = K_y = 30,000 words; the paper omits bias terms "to make the
equations less cluttered", so each pre-activation here has one)::

    encoder (A.2.1), each direction:   r_j = σ(W_r E x_j + U_r h_{j-1})
                                       z_j = σ(W_z E x_j + U_z h_{j-1})
                                       h̃_j = tanh(W E x_j + U [r_j ∘ h_{j-1}])
                                       h_j = (1 - z_j) ∘ h_{j-1} + z_j ∘ h̃_j
    initial decoder state:             s_0 = tanh(W_s h←_1)
    alignment (A.1.2):                 e_ij = v_aᵀ tanh(W_a s_{i-1} + U_a h_j),  α_ij = softmax_j(e_ij)
    context (eq. 5):                   c_i = Σ_j α_ij h_j
    decoder (A.2.2):                   r_i = σ(W_r E y_{i-1} + U_r s_{i-1} + C_r c_i)
                                       z_i = σ(W_z E y_{i-1} + U_z s_{i-1} + C_z c_i)
                                       s̃_i = tanh(W E y_{i-1} + U [r_i ∘ s_{i-1}] + C c_i)
                                       s_i = (1 - z_i) ∘ s_{i-1} + z_i ∘ s̃_i
    deep output (A.2.2):               t̃_i = U_o s_{i-1} + V_o E y_{i-1} + C_o c_i      (2l)
                                       t_i = [max(t̃_{i,2j-1}, t̃_{i,2j})]_{j=1..l}      (maxout)
                                       p(y_i | s_i, y_{i-1}, c_i) ∝ exp(y_iᵀ W_o t_i)

Data flow at the canonical input (source and target of 8 tokens)::

    source ids (N, 8) → E_x (30000 × 620)                              (N, 8, 620)
      bidirectional encoder, 1000 units per direction                  annotations h (N, 8, 2000)
      s_0 = tanh(W_s h←_1)                                             (N, 1000)
    target ids (N, 8) = <s> y_1 … y_7 → E_y (30000 × 620)              (N, 8, 620)
      for i = 1..8:  α_i = softmax(v_aᵀ tanh(W_a s_{i-1} + U_a h))     (N, 8): attention over the source
                     c_i = α_i h                                       (N, 2000)
                     s_i = gated unit(s_{i-1}, E y_{i-1}, c_i)          (N, 1000)
      deep output: maxout(U_o s_{i-1} + V_o E y_{i-1} + C_o c_i)       (N, 8, 500) → logits (N, 8, 30000)

Parameters (the paper gives no total; derived from appendix A and B with one bias per pre-activation):

    source embedding E_x          30000·620                               18,600,000
    encoder, 2 directions         2 · (3·1000·620 + 3·1000·1000 + 3·1000)   9,726,000
    W_s (+ bias)                  1000·1000 + 1000                          1,001,000
    target embedding E_y          30000·620                               18,600,000
    decoder gated unit            3·1000·620 + 3·1000·1000 + 3·1000·2000 + 3·1000   10,863,000
    alignment W_a, U_a (+ bias), v_a   1000·1000 + 1000·2000 + 1000 + 1000   3,002,000
    deep output U_o (+ bias), V_o, C_o 1000·1000 + 1000 + 1000·620 + 1000·2000  3,621,000
    W_o (+ bias)                  30000·500 + 30000                        15,030,000
                                                                    total 80,443,000

What a call does: ``forward(src, tgt)`` is teacher forcing: ``tgt`` is the decoder's input $y_0 \dots y_{T-1}$,
starting with the start token (``bos_id``), and ``logits[:, i]`` scores the word that follows ``tgt[:, :i + 1]``;
``forward(src, tgt, return_attention=True)`` also returns the soft alignment α, ``(N, T, S)``.
``generate(src)`` translates (``beam_search(src)`` returns the complete hypotheses). ``src_lengths`` makes the
source batch variable-length (no annotation of the padding is attended to).

Initialisation as appendix B.1: the recurrent matrices U, U_z, U_r (of both encoder directions and the decoder)
random orthogonal, W_a and U_a from N(0, 0.001²), biases zero, every other weight matrix from N(0, 0.01²).

Deviations:

* The gated hidden unit keeps the paper's form, the reset gate applied to the state before the recurrent
  product (U [r ∘ h]), so the encoder is not ``torch.nn.GRU`` (which computes r ∘ (U h + b)); it runs on the
  same torch.nn-style recurrent bookkeeping (``paperzoo.layers.recurrent``), with the paper's cell.
* $v_a$ is drawn from $N(0, 0.01^2)$ instead of starting at zero (B.1): with $v_a = 0$ every score $e_{ij}$ is 0
  and $W_a$, $U_a$ get no gradient from the first update (the zoo's contract checks that one backward pass reaches every
  parameter); after one update of v_a the two schemes train alike.
* The additive alignment model is not ``paperzoo.layers.MultiHeadAttention``: that module computes scaled
  dot-product scores; the paper's scores come from a feed-forward network (a nonlinearity between query
  and key), which is its contribution.
* The decoder's first input $y_0$ is a start token of the target vocabulary (``bos_id``): appendix A does not say
  what $E y_0$ is.
* The readout uses $s_{i-1}$, as appendix A.2.2 writes it (the main text's eq. 4 writes $g(y_{i-1}, s_i, c_i)$).
* One bias per pre-activation, an assumption (the paper omits biases): none on the score $v_a^T(\cdot)$, which the
  softmax over j would cancel.
* Decoding is the zoo's shared routine (``paperzoo.layers.decoding``, as transformers' ``generate``): the beam
  width (12, Sutskever et al.'s) and the maximum length (2 S + 10) are not the paper's, which states neither; at
  the maximum length the best live hypotheses end as they are, without <EOS>.
* Training (Adadelta, ε = 10⁻⁶, ρ = 0.95, minibatches of 80 sentences, gradient norm clipped at 1, §B.2) and
  the [UNK] shortlist of 30,000 words are the data pipeline's and the trainer's, not the model's.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from paperzoo.layers import Hypothesis, check_token_pair, decoding
from paperzoo.layers.recurrent import LayerWeights, RecurrentLayers, State
from paperzoo.registry import InputSpec, ModelCard, Paper, register

__all__ = ["RNNsearch", "BidirectionalEncoder", "AlignmentModel", "MaxoutReadout", "AttentionDecoder",
           "gated_hidden_unit"]


def gated_hidden_unit(input_gates: torch.Tensor, state: torch.Tensor, recurrent_weight: torch.Tensor) -> torch.Tensor:
    """One step of the paper's gated hidden unit (A.1.1), for the encoder and the decoder.

    ``input_gates`` ``(..., N, 3n)``: the pre-activations that do not depend on the state, $[W_r x; W_z x; W x]$
    (plus $C_r c$, $C_z c$, $C c$ in the decoder, and the biases); ``state`` $h_{t-1}$ ``(..., N, n)``;
    ``recurrent_weight`` $[U_r; U_z; U]$ ``(..., 3n, n)`` → $h_t$ ``(..., N, n)``.
    """
    n = state.shape[-1]
    recurrent_gates, recurrent_candidate = recurrent_weight[..., :2 * n, :], recurrent_weight[..., 2 * n:, :]
    gates = torch.sigmoid(input_gates[..., :2 * n] + state @ recurrent_gates.transpose(-1, -2))
    reset, update = gates.chunk(2, dim=-1)  # r = σ(W_r x + U_r h), z = σ(W_z x + U_z h)
    # h̃ = tanh(W x + U [r ∘ h]): the reset gate acts on the state *before* the product, so a unit with r ≈ 0
    # reads only the current input, forgetting the past.
    candidate = torch.tanh(input_gates[..., 2 * n:] + (reset * state) @ recurrent_candidate.transpose(-1, -2))
    return state + update * (candidate - state)  # h = (1 - z) ∘ h_{t-1} + z ∘ h̃


class BidirectionalEncoder(RecurrentLayers):
    """The encoder (§3.2, A.2.1): a forward and a backward RNN of gated hidden units over the source embeddings,
    whose states concatenate into the annotations h_j = [h→_j; h←_j] ``(N, S, 2n)``.

    On the zoo's torch.nn-style recurrent bookkeeping, so the parameters are named as torch.nn's:
    ``weight_ih_l0`` = [W_r; W_z; W] ``(3n, m)``, ``weight_hh_l0`` = [U_r; U_z; U] ``(3n, n)``, ``bias_ih_l0``
    (``_reverse`` for the backward RNN). The embedding matrix E is shared by both directions (A.2.1).
    """

    gate_count = 3  # reset, update, candidate: the rows of weight_ih and weight_hh
    model_name = "attention_seq2seq encoder"

    def __init__(self, embedding_dim: int, hidden_size: int) -> None:
        super().__init__(embedding_dim, hidden_size, bidirectional=True, batch_first=True)

    def parameter_shapes(self, layer_input_size: int) -> list[tuple[str, tuple[int, ...]]]:
        gates = self.gate_count * self.hidden_size  # one bias per pre-activation: with the reset gate before U,
        return [("weight_ih", (gates, layer_input_size)), ("weight_hh", (gates, self.hidden_size)),
                ("bias_ih", (gates,))]  # a second (recurrent) bias would only add to the first

    def cell(self, input_gates: torch.Tensor, state: State, weights: LayerWeights) -> State:
        # both directions at once: (2, N, 3n), h_{j-1} (2, N, n), [U_r; U_z; U] (2, 3n, n)
        return (gated_hidden_unit(input_gates, state[0], weights["weight_hh"]),)


class AlignmentModel(nn.Module):
    r"""The alignment model (§3.1, A.1.2): $e_{ij} = a(s_{i-1}, h_j) = v_a^\top \tanh(W_a s_{i-1} + U_a h_j)$, a
    one-hidden-layer network that scores every source position for the next target word; the scores become
    the weights $\alpha_{ij}$ of the context $c_i = \sum_j \alpha_{ij} h_j$."""

    def __init__(self, state_size: int, annotation_size: int, alignment_size: int) -> None:
        super().__init__()
        self.query = nn.Linear(state_size, alignment_size, bias=False)  # W_a
        self.key = nn.Linear(annotation_size, alignment_size)  # U_a, with the hidden layer's bias
        self.score = nn.Linear(alignment_size, 1, bias=False)  # v_a

    def forward(self, state: torch.Tensor, keys: torch.Tensor, annotations: torch.Tensor,
                mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """s_{i-1} ``(N, n)``, ``keys`` = U_a h_j + b ``(N, S, n')`` (computed once per sentence: it does not
        depend on i, A.1.2), annotations ``(N, S, 2n)``, ``mask`` ``(N, S)`` True at real words → the context
        c_i ``(N, 2n)`` and the weights α_i ``(N, S)``."""
        energies = self.score(torch.tanh(self.query(state).unsqueeze(1) + keys)).squeeze(-1)  # e_ij: (N, S)
        if mask is not None:
            energies = energies.masked_fill(~mask, float("-inf"))
        weights = torch.softmax(energies, dim=-1)  # α_ij = exp(e_ij) / Σ_k exp(e_ik)  (eq. 6)
        context = torch.bmm(weights.unsqueeze(1), annotations).squeeze(1)  # c_i = Σ_j α_ij h_j  (eq. 5): (N, 2n)
        return context, weights


class MaxoutReadout(nn.Module):
    r"""The deep output layer (A.2.2, after Pascanu et al. 2014) with a single maxout hidden layer (Goodfellow
    et al. 2013, pools of 2): $\tilde t_i = U_o s_{i-1} + V_o E y_{i-1} + C_o c_i$, $t_i$ = max over pairs of
    $\tilde t_i$, logits $W_o t_i$."""

    def __init__(self, state_size: int, embedding_dim: int, annotation_size: int, maxout_size: int,
                 vocab_size: int) -> None:
        super().__init__()
        self.state = nn.Linear(state_size, 2 * maxout_size)  # U_o, with the layer's bias
        self.embedding = nn.Linear(embedding_dim, 2 * maxout_size, bias=False)  # V_o
        self.context = nn.Linear(annotation_size, 2 * maxout_size, bias=False)  # C_o
        self.output = nn.Linear(maxout_size, vocab_size)  # W_o

    def forward(self, state: torch.Tensor, embedded: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        """s_{i-1} ``(..., n)``, E y_{i-1} ``(..., m)``, c_i ``(..., 2n)`` → logits ``(..., K_y)``."""
        hidden = self.state(state) + self.embedding(embedded) + self.context(context)  # t̃_i: (..., 2l)
        maxout = hidden.unflatten(-1, (-1, 2)).amax(dim=-1)  # t_i,j = max(t̃_i,2j-1, t̃_i,2j): (..., l)
        return self.output(maxout)  # y_iᵀ W_o t_i for every word y_i


class AttentionDecoder(nn.Module):
    """The decoder (§3.1, A.2.2): a gated hidden unit whose every step reads its own context c_i."""

    def __init__(self, vocab_size: int, embedding_dim: int, hidden_size: int, alignment_size: int,
                 maxout_size: int) -> None:
        super().__init__()
        n = hidden_size
        self.embedding = nn.Embedding(vocab_size, embedding_dim)  # E (of the target language)
        self.initial_state = nn.Linear(n, n)  # W_s: s_0 = tanh(W_s h←_1)
        self.alignment = AlignmentModel(n, 2 * n, alignment_size)
        self.input_gates = nn.Linear(embedding_dim, 3 * n)  # [W_r; W_z; W] on E y_{i-1}, with the biases
        self.context_gates = nn.Linear(2 * n, 3 * n, bias=False)  # [C_r; C_z; C] on c_i
        self.recurrent_weight = nn.Parameter(torch.empty(3 * n, n))  # [U_r; U_z; U] on s_{i-1}
        self.readout = MaxoutReadout(n, embedding_dim, 2 * n, maxout_size, vocab_size)

    def step(self, state: torch.Tensor, input_gates: torch.Tensor, annotations: torch.Tensor, keys: torch.Tensor,
             mask: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """s_{i-1} ``(N, n)`` and [W_r; W_z; W] E y_{i-1} + b ``(N, 3n)`` → s_i, the context c_i ``(N, 2n)`` and
        the attention weights α_i ``(N, S)``."""
        context, weights = self.alignment(state, keys, annotations, mask)
        # s_i = f(s_{i-1}, y_{i-1}, c_i): the context enters every gate through C_r, C_z, C
        new_state = gated_hidden_unit(input_gates + self.context_gates(context), state, self.recurrent_weight)
        return new_state, context, weights


class RNNsearch(nn.Module):
    """Bahdanau et al.'s attention-based encoder-decoder.

    Args:
        vocab_size: K_x, the source shortlist (30,000 in the paper).
        target_vocab_size: K_y, the target shortlist (30,000).
        embedding_dim: m, the word embedding size (620).
        hidden_size: n, the hidden units of each encoder direction and of the decoder (1000).
        alignment_size: n', the hidden units of the alignment model (1000).
        maxout_size: l, the maxout units of the deep output layer (500).
        bos_id, eos_id: the target vocabulary's start and end tokens, for ``generate``.
    """

    model_name = "attention_seq2seq"

    def __init__(self, vocab_size: int = 30_000, target_vocab_size: int = 30_000, embedding_dim: int = 620,
                 hidden_size: int = 1000, alignment_size: int = 1000, maxout_size: int = 500, bos_id: int = 1,
                 eos_id: int = 2) -> None:
        super().__init__()
        for name, token in (("bos_id", bos_id), ("eos_id", eos_id)):
            if not 0 <= token < target_vocab_size:
                raise ValueError(f"{name} must be a target token id in [0, {target_vocab_size}), got {token}")
        self.vocab_size = vocab_size
        self.target_vocab_size = target_vocab_size
        self.bos_id = bos_id
        self.eos_id = eos_id
        self.source_embedding = nn.Embedding(vocab_size, embedding_dim)  # E, shared by both directions
        self.encoder = BidirectionalEncoder(embedding_dim, hidden_size)
        self.decoder = AttentionDecoder(target_vocab_size, embedding_dim, hidden_size, alignment_size, maxout_size)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Appendix B.1 (v_a excepted, see Deviations)."""
        recurrent = [self.decoder.recurrent_weight] + [p for name, p in self.encoder.named_parameters()
                                                       if name.startswith("weight_hh")]
        alignment = [self.decoder.alignment.query.weight, self.decoder.alignment.key.weight]
        for name, parameter in self.named_parameters():
            if any(parameter is p for p in recurrent):
                for block in parameter.data.chunk(3):  # U_r, U_z and U: each a random orthogonal matrix
                    nn.init.orthogonal_(block)
            elif any(parameter is p for p in alignment):
                nn.init.normal_(parameter, 0.0, 0.001)
            elif name.rsplit(".", 1)[-1].startswith("bias"):
                nn.init.zeros_(parameter)
            else:
                nn.init.normal_(parameter, 0.0, 0.01)

    def encode(self, src: torch.Tensor, src_lengths: torch.Tensor | None = None
               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """The source ``(N, S)`` → annotations h ``(N, S, 2n)``, s_0 ``(N, n)`` and the mask of real words."""
        annotations, final = self.encoder(self.source_embedding(src), lengths=src_lengths)  # (N, S, 2n), (2, N, n)
        # h←_1, the backward RNN's state after reading the sentence from its end back to x_1, is its final state.
        initial_state = torch.tanh(self.decoder.initial_state(final[1]))  # s_0 = tanh(W_s h←_1)
        mask = None
        if src_lengths is not None:
            positions = torch.arange(src.shape[1], device=src.device)
            mask = positions < torch.as_tensor(src_lengths, device=src.device).unsqueeze(1)  # (N, S)
        return annotations, initial_state, mask

    def forward(self, src: torch.Tensor, tgt: torch.Tensor, src_lengths: torch.Tensor | None = None,
                return_attention: bool = False) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Teacher forcing: source ``(N, S)`` and decoder input ``(N, T)`` (``<s> y_1 … y_{T-1}``) → next-word
        logits ``(N, T, target_vocab_size)``, and with ``return_attention`` the alignment α ``(N, T, S)``."""
        check_token_pair(src, tgt, name=self.model_name, vocab_size=self.vocab_size,
                         target_vocab_size=self.target_vocab_size, src_lengths=src_lengths)
        annotations, state, mask = self.encode(src, src_lengths)
        keys = self.decoder.alignment.key(annotations)  # U_a h_j + b: (N, S, n'), once per sentence
        embedded = self.decoder.embedding(tgt)  # E y_{i-1}: (N, T, m)
        input_gates = self.decoder.input_gates(embedded)  # for every step at once: (N, T, 3n)
        previous_states, contexts, weights = [], [], []
        for i in range(tgt.shape[1]):
            previous_states.append(state)  # s_{i-1}
            context, alpha = self.decoder.alignment(state, keys, annotations, mask)
            contexts.append(context)
            weights.append(alpha)
            if i + 1 < tgt.shape[1]:  # s_i, which the next word needs (the last one would go unused)
                state = gated_hidden_unit(input_gates[:, i] + self.decoder.context_gates(context), state,
                                          self.decoder.recurrent_weight)
        # The deep output of all steps in one go: (N, T, n), (N, T, m), (N, T, 2n) → (N, T, K_y)
        logits = self.decoder.readout(torch.stack(previous_states, 1), embedded, torch.stack(contexts, 1))
        return (logits, torch.stack(weights, 1)) if return_attention else logits

    def _decoder(self, src: torch.Tensor,
                 src_lengths: torch.Tensor | None) -> tuple[tuple, decoding.Step, decoding.Reorder]:
        """The decoder as the shared decoding routine sees it: (s_0, the annotations, their keys U_a h_j and the
        source mask), the step (the next-word log-probabilities from y_{i-1} and s_{i-1}) and the reordering
        between beams."""
        check_token_pair(src, None, name=self.model_name, vocab_size=self.vocab_size,
                         target_vocab_size=self.target_vocab_size, src_lengths=src_lengths)
        annotations, state, mask = self.encode(src, src_lengths)
        keys = self.decoder.alignment.key(annotations)  # once per sentence

        def step(ids: torch.Tensor, state: tuple) -> tuple[torch.Tensor, tuple]:
            previous, annotations, keys, mask = state
            embedded = self.decoder.embedding(ids[:, -1])  # E y_{i-1}: (R, m)
            new_state, context, _ = self.decoder.step(previous, self.decoder.input_gates(embedded), annotations,
                                                      keys, mask)
            log_probs = F.log_softmax(self.decoder.readout(previous, embedded, context), dim=-1)
            return log_probs, (new_state, annotations, keys, mask)

        def reorder(state: tuple, rows: torch.Tensor) -> tuple:
            previous, annotations, keys, mask = state
            if len(rows) != len(annotations):  # each example to its beams; later, rows move only among an
                annotations, keys = annotations.index_select(0, rows), keys.index_select(0, rows)  # example's beams
                mask = None if mask is None else mask.index_select(0, rows)
            return previous.index_select(0, rows), annotations, keys, mask

        return (state, annotations, keys, mask), step, reorder

    @torch.no_grad()
    def generate(self, input_ids: torch.Tensor, max_new_tokens: int | None = None, *, do_sample: bool = False,
                 temperature: float = 1.0, top_k: int | None = None, top_p: float | None = None,
                 num_beams: int = 12, length_penalty: float = 0.0, eos_token_id: int | None = None,
                 pad_token_id: int | None = None, attention_mask: torch.Tensor | None = None,
                 src_lengths: torch.Tensor | None = None, generator: torch.Generator | None = None) -> torch.Tensor:
        """Translate the source ids ``input_ids`` ``(N, S)``: the target ids ``(N, 1 + L)``, from ``bos_id`` to
        ``eos_id`` and padded after it (with ``pad_token_id``, default the end token).

        The keywords are transformers' (:func:`paperzoo.layers.decoding.generate`); the defaults are a
        left-to-right beam search ranking hypotheses by their log-probability (§4.2 uses one, after Sutskever et
        al.; the beam width, 12, is theirs); ``num_beams=1`` decodes greedily. ``max_new_tokens`` defaults to
        2 S + 10. A right-padded source takes ``attention_mask`` or ``src_lengths``. Call ``model.eval()`` first.
        """
        return decoding.generate_from_source(
            self, input_ids, max_new_tokens=max_new_tokens, attention_mask=attention_mask, src_lengths=src_lengths,
            eos_token_id=eos_token_id, do_sample=do_sample, temperature=temperature, top_k=top_k, top_p=top_p,
            num_beams=num_beams, length_penalty=length_penalty, pad_token_id=pad_token_id, generator=generator)

    @torch.no_grad()
    def beam_search(self, src: torch.Tensor, beam_size: int = 12, max_length: int | None = None,
                    src_lengths: torch.Tensor | None = None, length_penalty: float = 0.0) -> list[list[Hypothesis]]:
        """The beam search of :meth:`generate`, returning for each example its ``beam_size`` complete hypotheses,
        best first. ``max_length`` (decoding steps, <eos> included) defaults to 2 S + 10."""
        state, step, reorder = self._decoder(src, src_lengths)
        start = src.new_full((src.shape[0], 1), self.bos_id)
        return decoding.beam_search(step, start, state, reorder, num_beams=beam_size,
                                    max_new_tokens=max_length or 2 * src.shape[1] + 10,
                                    length_penalty=length_penalty, eos_token_id=self.eos_id)


@register(ModelCard(
    name="attention_seq2seq",
    architecture="RNNsearch (attention-based encoder-decoder)",
    task="translation",
    paper=Paper(
        title="Neural Machine Translation by Jointly Learning to Align and Translate",
        authors="Dzmitry Bahdanau, Kyunghyun Cho, Yoshua Bengio",
        year=2014,
        url="https://arxiv.org/abs/1409.0473",
    ),
    innovations=(
        "no fixed-length bottleneck: a distinct context vector c_i for every target word",
        "additive attention: an alignment network scores $s_{i-1}$ against every annotation, softmax-weighted sum",
        "a bidirectional RNN encoder: each annotation summarises the words before and after x_j",
        "alignment learned jointly with translation; the soft alignment can be inspected",
        "a deep output layer with a maxout hidden layer",
    ),
    input=InputSpec(kind="token-pairs", shape=(8, 8), vocab_size=30_000, target_vocab_size=30_000),
    params=80_443_000,
    params_source="derived by hand from the paper's appendix A (n = 1000, m = 620, n' = 1000, l = 500, 30,000-word "
                  "shortlists), one bias per pre-activation; the paper states no total: 18,600,000 (source "
                  "embedding) + 9,726,000 (bidirectional encoder) + 1,001,000 (W_s) + 18,600,000 (target embedding) "
                  "+ 10,863,000 (decoder gated unit) + 3,002,000 (alignment) + 3,621,000 (deep output) + 15,030,000 "
                  "(W_o) = 80,443,000",
    reference="paper",
    gmacs=0.330,
    canonical=True,
    notes="forward(src, tgt, src_lengths=None, return_attention=False) is teacher-forced: tgt starts with bos_id and "
          "logits[:, i] scores the word after tgt[:, :i+1]; return_attention=True also returns alpha (N, T, S); "
          "generate(src) translates with a beam search (12 beams).",
))
def attention_seq2seq(**kwargs: Any) -> RNNsearch:
    """RNNsearch at the paper's size: bidirectional encoder of 2 × 1000 units, 620-d embeddings, 1000-unit
    alignment model, 500 maxout units, 30,000-word vocabularies."""
    return RNNsearch(**kwargs)


if __name__ == "__main__":
    from paperzoo.cli import main

    main(["run", "attention_seq2seq"])
