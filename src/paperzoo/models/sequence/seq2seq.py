r"""Sequence to Sequence Learning (Seq2Seq).

Paper: "Sequence to Sequence Learning with Neural Networks", Ilya Sutskever, Oriol Vinyals, Quoc V. Le,
NeurIPS 2014. https://arxiv.org/abs/1409.3215

A feed-forward network maps vectors of a fixed size to vectors of a fixed size; translation maps a sentence to
a sentence of another, unknown length. The paper's answer is plain: one LSTM reads the source sentence, one
token per step, into a fixed-dimensional vector v (its final state), and a second LSTM, a language model whose
initial state is v, writes the target sentence (eq. 1):

$$p(y_1, \dots, y_{T'} \mid x_1, \dots, x_T) = \prod_{t=1}^{T'} p(y_t \mid v, y_1, \dots, y_{t-1}).$$

* Two different LSTMs for the input and the output sequence (§2): more parameters at negligible cost, and the
  decoder can be trained on several language pairs at once.
* Deep LSTMs (4 layers) beat shallow ones by far: each extra layer cut perplexity by nearly 10% (§2, §3.4).
* Reversing the source sentence (§3.3): reading "c b a" to write "α β γ" puts a near α, b near β: the
  many short-term dependencies make optimisation much easier (test perplexity 5.8 → 4.7, BLEU 25.9 → 30.6),
  although the mean distance between corresponding words is unchanged.
* A left-to-right beam search (§3.2) finds the most likely translation; beam size 1 already does well, 2 gives
  most of the benefit (:meth:`Seq2Seq.generate`, the zoo's one decoding routine, ``paperzoo.layers.decoding``).

The paper's model (§3.4): "deep LSTMs with 4 layers, with 1000 cells at each layer and 1000 dimensional word
embeddings, with an input vocabulary of 160,000 and an output vocabulary of 80,000". The LSTM formulation is
Graves' (2013), with peephole connections (``paperzoo.models.sequence.lstm``, ``peephole=True``), built through
``create_model("lstm", ...)``. Data flow at the canonical input (source and target of 8 tokens)::

    source ids (N, 8) → reversed → embedding E_x (160k × 1000)   (N, 8, 1000)
      encoder: 4-layer LSTM, 1000 cells                           final state v = (h, c), each (4, N, 1000)
    target ids (N, 8) = <s> y_1 … y_7 → embedding E_y (80k × 1000) (N, 8, 1000)
      decoder: 4-layer LSTM, 1000 cells, initial state v          (N, 8, 1000)
      softmax layer over 80,000 words                             logits (N, 8, 80000)

Parameters: embeddings 160,000,000 + 80,000,000; 8 LSTM layers of 4·1000·(1000 + 1000) weights, 2·4000
biases and 3·1000 peephole weights each, 8 × 8,011,000 = 64,088,000 (the paper's "64M pure recurrent
connections", 32M per LSTM, are the weights); softmax 80,000,000 + 80,000: 384,168,000 in all, the paper's
"384M parameters".

What a call does: ``forward(src, tgt)`` is teacher forcing: ``tgt`` is the decoder's input, starting with the
start token (``bos_id``), and ``logits[:, t]`` scores the token that follows ``tgt[:, :t + 1]``; to train, feed
``<s> y_1 … y_k`` and take the cross-entropy against ``y_1 … y_k <eos>``. ``generate(src)`` translates
(``beam_search(src)`` returns the complete hypotheses with their log-probabilities).
``src_lengths`` makes the source batch variable-length (padding at the end; the reversal keeps it there).

Initialisation as §3.4: every parameter from U(-0.08, 0.08).

Deviations:

* Two bias vectors per gate in each LSTM layer (torch.nn.LSTM's layout, so the encoder and decoder are the
  zoo's torch.nn-compatible LSTM; only their sum matters): 4,000 redundant parameters per layer, 32,000 in
  all, within the paper's rounded "384M".
* The decoder's first input is a start token, ``bos_id``, of the target vocabulary: the paper does not say what
  the decoder reads before the first target word (its Figure 1 shows one LSTM that reads "<EOS>" there).
* Decoding (the zoo's shared routine, which follows transformers' ``generate``): at the maximum length, which
  the paper does not give (2 S + 10 here), the best live hypotheses end as they are, without <EOS>; the search
  of an example stops once it holds B complete hypotheses and no live one scores higher than the worst of them.
* The training recipe of §3.4 (SGD at 0.7 halved every half epoch after the fifth, batches of 128 sentences of
  similar length, gradient norm clipped at 5) belongs to training, not to the model. The paper's 8-GPU model
  parallelism (§3.5) is not reproduced.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from paperzoo.layers import Hypothesis, check_token_pair, decoding
from paperzoo.registry import InputSpec, ModelCard, Paper, create_model, register

__all__ = ["Seq2Seq"]

State = tuple[torch.Tensor, torch.Tensor]


class Seq2Seq(nn.Module):
    """Sutskever et al.'s encoder-decoder: a deep LSTM reads the reversed source, another writes the target.

    Args:
        vocab_size: source vocabulary (160,000 in the paper).
        target_vocab_size: target vocabulary (80,000).
        embedding_dim: word embedding size of both languages (1000).
        hidden_size: cells per LSTM layer (1000).
        num_layers: layers of the encoder and of the decoder (4).
        dropout: dropout between LSTM layers in training mode (the paper uses none).
        reverse_source: read the source back to front (§3.3).
        peephole: Graves' peephole connections in the LSTMs (the paper's formulation).
        bos_id, eos_id: the target vocabulary's start and end tokens, for ``generate``.
        init_range: parameters are drawn from U(-init_range, init_range) (0.08).
    """

    model_name = "seq2seq"

    def __init__(self, vocab_size: int = 160_000, target_vocab_size: int = 80_000, embedding_dim: int = 1000,
                 hidden_size: int = 1000, num_layers: int = 4, dropout: float = 0.0, reverse_source: bool = True,
                 peephole: bool = True, bos_id: int = 1, eos_id: int = 2, init_range: float = 0.08) -> None:
        super().__init__()
        for name, token in (("bos_id", bos_id), ("eos_id", eos_id)):
            if not 0 <= token < target_vocab_size:
                raise ValueError(f"{name} must be a target token id in [0, {target_vocab_size}), got {token}")
        self.vocab_size = vocab_size
        self.target_vocab_size = target_vocab_size
        self.reverse_source = reverse_source
        self.bos_id = bos_id
        self.eos_id = eos_id
        lstm = {"input_size": embedding_dim, "hidden_size": hidden_size, "num_layers": num_layers,
                "dropout": dropout, "peephole": peephole, "batch_first": True}
        self.source_embedding = nn.Embedding(vocab_size, embedding_dim)
        self.encoder = create_model("lstm", **lstm)
        self.target_embedding = nn.Embedding(target_vocab_size, embedding_dim)
        self.decoder = create_model("lstm", **lstm)  # a second LSTM (§2): the encoder's weights are not shared
        self.output = nn.Linear(hidden_size, target_vocab_size)  # the "naive softmax" over the target words
        for parameter in self.parameters():  # §3.4
            nn.init.uniform_(parameter, -init_range, init_range)

    def encode(self, src: torch.Tensor, src_lengths: torch.Tensor | None = None) -> State:
        """The source ``(N, S)`` → v, the encoder's final state (h, c), each ``(num_layers, N, hidden_size)``."""
        if self.reverse_source:
            src = reverse_sequences(src, src_lengths)
        _, state = self.encoder(self.source_embedding(src), lengths=src_lengths)  # (N, S, E) → v
        return state

    def forward(self, src: torch.Tensor, tgt: torch.Tensor, src_lengths: torch.Tensor | None = None) -> torch.Tensor:
        """Teacher forcing: source ``(N, S)`` and decoder input ``(N, T)`` (``<s> y_1 … y_{T-1}``) → next-token
        logits ``(N, T, target_vocab_size)``."""
        check_token_pair(src, tgt, name=self.model_name, vocab_size=self.vocab_size,
                         target_vocab_size=self.target_vocab_size, src_lengths=src_lengths)
        output, _ = self.decoder(self.target_embedding(tgt), self.encode(src, src_lengths))  # (N, T, H)
        return self.output(output)  # (N, T, V): log p(y_t | v, y_<t) up to the softmax's normaliser

    def _decoder(self, src: torch.Tensor,
                 src_lengths: torch.Tensor | None) -> tuple[State, decoding.Step, decoding.Reorder]:
        """The decoder as the shared decoding routine sees it: v, the step (the next-token log-probabilities from
        the last token and (h, c)) and the reordering of (h, c) between beams."""
        check_token_pair(src, None, name=self.model_name, vocab_size=self.vocab_size,
                         target_vocab_size=self.target_vocab_size, src_lengths=src_lengths)

        def step(ids: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
            output, state = self.decoder(self.target_embedding(ids[:, -1:]), state)  # one step: (R, 1, H)
            return F.log_softmax(self.output(output[:, 0]), dim=-1), state

        def reorder(state: State, rows: torch.Tensor) -> State:
            return tuple(s.index_select(1, rows) for s in state)  # (layers, R, H): the batch is dim 1

        return self.encode(src, src_lengths), step, reorder

    @torch.no_grad()
    def generate(self, input_ids: torch.Tensor, max_new_tokens: int | None = None, *, do_sample: bool = False,
                 temperature: float = 1.0, top_k: int | None = None, top_p: float | None = None,
                 num_beams: int = 12, length_penalty: float = 0.0, eos_token_id: int | None = None,
                 pad_token_id: int | None = None, attention_mask: torch.Tensor | None = None,
                 src_lengths: torch.Tensor | None = None, generator: torch.Generator | None = None) -> torch.Tensor:
        """Translate the source ids ``input_ids`` ``(N, S)``: the target ids ``(N, 1 + L)``, from ``bos_id`` to
        ``eos_id`` and padded after it (with ``pad_token_id``, default the end token).

        The keywords are transformers' (:func:`paperzoo.layers.decoding.generate`); the defaults are the paper's
        left-to-right beam search (§3.2): 12 beams (its best results), hypotheses ranked by their log-probability
        (``length_penalty=0``); ``num_beams=1`` decodes greedily. ``max_new_tokens`` defaults to 2 S + 10. A
        right-padded source takes ``attention_mask`` or ``src_lengths``. Call ``model.eval()`` first (dropout).
        """
        return decoding.generate_from_source(
            self, input_ids, max_new_tokens=max_new_tokens, attention_mask=attention_mask, src_lengths=src_lengths,
            eos_token_id=eos_token_id, do_sample=do_sample, temperature=temperature, top_k=top_k, top_p=top_p,
            num_beams=num_beams, length_penalty=length_penalty, pad_token_id=pad_token_id, generator=generator)

    @torch.no_grad()
    def beam_search(self, src: torch.Tensor, beam_size: int = 12, max_length: int | None = None,
                    src_lengths: torch.Tensor | None = None, length_penalty: float = 0.0) -> list[list[Hypothesis]]:
        """The beam search of :meth:`generate`, returning for each example its ``beam_size`` complete hypotheses,
        best first (tokens without ``bos_id`` and ``eos_id``, their log-probabilities and scores).
        ``max_length`` (decoding steps, <eos> included) defaults to 2 S + 10."""
        state, step, reorder = self._decoder(src, src_lengths)
        start = src.new_full((src.shape[0], 1), self.bos_id)
        return decoding.beam_search(step, start, state, reorder, num_beams=beam_size,
                                    max_new_tokens=max_length or 2 * src.shape[1] + 10,
                                    length_penalty=length_penalty, eos_token_id=self.eos_id)


def reverse_sequences(ids: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
    """Each sequence of ``ids`` ``(N, S)`` back to front; with ``lengths``, only its first ``lengths[n]`` tokens
    (the padding stays at the end)."""
    if lengths is None:
        return ids.flip(1)
    positions = torch.arange(ids.shape[1], device=ids.device)
    lengths = lengths.to(ids.device).unsqueeze(1)  # (N, 1)
    index = torch.where(positions < lengths, lengths - 1 - positions, positions)  # (N, S)
    return ids.gather(1, index)


@register(ModelCard(
    name="seq2seq",
    architecture="Seq2Seq (deep LSTM encoder-decoder)",
    task="translation",
    paper=Paper(
        title="Sequence to Sequence Learning with Neural Networks",
        authors="Ilya Sutskever, Oriol Vinyals, Quoc V. Le",
        year=2014,
        url="https://arxiv.org/abs/1409.3215",
    ),
    innovations=(
        "an LSTM encodes the whole source sentence into one fixed-size vector, a second LSTM decodes it",
        "deep (4-layer) LSTMs: each layer cut perplexity by nearly 10%",
        "reversing the source sentence creates short-term dependencies: BLEU 25.9 -> 30.6",
        "a simple left-to-right beam search; beam size 2 gives most of the benefit",
    ),
    input=InputSpec(kind="token-pairs", shape=(8, 8), vocab_size=160_000, target_vocab_size=80_000),
    params=384_000_000,
    params_tolerance=500_000,
    params_source="the paper, §3.4: 'The resulting LSTM has 384M parameters'. This build: 384,168,000 = embeddings "
                  "160,000,000 + 80,000,000, 8 LSTM layers x 8,011,000 (4·1000·2000 weights, 2·4000 biases, "
                  "3·1000 peepholes), softmax 80,080,000",
    reference="paper",
    gmacs=1.152,
    canonical=True,
    notes="forward(src, tgt, src_lengths=None) is teacher-forced: tgt starts with bos_id and logits[:, t] scores "
          "the token after tgt[:, :t+1]; generate(src) translates with the paper's beam search (12 beams). Short "
          "example sequences (8 tokens) keep the 384M-parameter model affordable on a CPU.",
))
def seq2seq(**kwargs: Any) -> Seq2Seq:
    """The paper's model: 4-layer LSTMs of 1000 cells, 1000-d embeddings, 160k source and 80k target words."""
    return Seq2Seq(**kwargs)


if __name__ == "__main__":
    from paperzoo.cli import main

    main(["run", "seq2seq"])
