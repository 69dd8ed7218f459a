"""Left-to-right beam search over any decoder that predicts the next token (Sutskever et al. 2014, §3.2).

"We search for the most likely translation using a simple left-to-right beam search decoder which maintains a
small number B of partial hypotheses, where a partial hypothesis is a prefix of some translation. At each
timestep we extend each partial hypothesis in the beam with every possible word in the vocabulary. This
greatly increases the number of the hypotheses so we discard all but the B most likely hypotheses according to
the model's log probability. As soon as the "<EOS>" symbol is appended to a hypothesis, it is removed from the
beam and is added to the set of complete hypotheses."

Used by every translation model of the zoo (Seq2Seq, RNNsearch) through :func:`beam_search`, which knows
nothing of the model: a ``step`` function gives the next-token log-probabilities of each live hypothesis from
its last token and the decoder's state (an LSTM's (h, c), a GRU's s, a Transformer's key-value cache), and a
``reorder`` function keeps the state of the hypotheses that survive.

Lengths. A hypothesis scores log p(y_1 … y_k, <EOS> | x), the sum of its tokens' log-probabilities, as in the
paper. Each token multiplies in a probability below 1, so the score only falls as a hypothesis grows; the search
of one example therefore stops as soon as its best complete hypothesis scores at least as high as the best
partial one (no partial hypothesis can overtake it), and at ``max_length`` steps at the latest: at that last
step every partial hypothesis ends with <EOS>, its probability included (as fairseq forces it), so no output is
longer. The raw score favours short outputs; ``length_penalty`` α > 0 ranks complete hypotheses by
log p / |y|^α instead, |y| counting the <EOS> (α = 1 is the per-token average), and the search then runs until
B hypotheses are complete. Only where <EOS> is impossible (log-probability -inf) are partial hypotheses
returned, marked unfinished.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

__all__ = ["Hypothesis", "beam_search"]


@dataclass(frozen=True)
class Hypothesis:
    """One output of the search.

    Attributes:
        tokens: the generated tokens, without the start token and without the end token.
        log_probability: log p(tokens, <EOS> | source) for a finished hypothesis (of the tokens alone if not).
        score: what ranks hypotheses: log_probability / length ** length_penalty, length counting the <EOS>.
        finished: whether it ended with the end token (False only where the model gave <EOS> no probability).
    """

    tokens: list[int]
    log_probability: float
    score: float
    finished: bool


def beam_search(step: Callable[[torch.Tensor, Any], tuple[torch.Tensor, Any]], state: Any,
                reorder: Callable[[Any, torch.Tensor], Any], *, batch_size: int, beam_size: int, max_length: int,
                bos_id: int, eos_id: int, length_penalty: float = 0.0,
                device: torch.device | str | None = None) -> list[list[Hypothesis]]:
    """The B best outputs of each of ``batch_size`` examples, best first (up to ``beam_size`` each).

    Args:
        step: ``step(tokens, state) → (log_probs, state)``: for R = batch_size · beam_size rows, the last token
            of each hypothesis ``(R,)`` and the decoder's state → log p(next token) ``(R, V)`` and the new state.
        state: the decoder's state before the first step, for the R rows: row ``n · beam_size + b`` is beam b
            of example n (repeat each example's encoder state ``beam_size`` times, ``repeat_interleave``).
        reorder: ``reorder(state, rows) → state``: the state of the given rows ``(R,)``, in that order (rows
            only ever move within one example's block of beam_size rows).
        beam_size: B, the partial hypotheses kept per example (1 is greedy decoding).
        max_length: the most decoding steps, the <EOS> step included.
        bos_id, eos_id: the start token fed first, and the end token.
        length_penalty: α; 0 ranks by the log-probability, as the paper.
    """
    if beam_size < 1 or max_length < 1:
        raise ValueError(f"beam_size and max_length must be positive, got {beam_size} and {max_length}")
    n, b = batch_size, beam_size
    tokens = torch.full((n * b,), bos_id, dtype=torch.int64, device=device)
    # Only beam 0 is live at the start: the others start at -inf, so the first step fills the beam with
    # B different tokens instead of B copies of the best one.
    scores = torch.full((n, b), float("-inf"), device=device)
    scores[:, 0] = 0.0
    history = torch.zeros((n, b, 0), dtype=torch.int64, device=device)  # the tokens of each partial hypothesis
    complete: list[list[Hypothesis]] = [[] for _ in range(n)]
    done = [False] * n
    for length in range(1, max_length + 1):
        log_probs, state = step(tokens, state)
        vocab = log_probs.shape[-1]
        # Extend each partial hypothesis with every word: (N, B · V) scores of the extensions.
        candidates = (scores.unsqueeze(-1) + log_probs.float().view(n, b, vocab)).view(n, b * vocab)
        # Each beam ends with <EOS> at most once, so among the 2B best at least B go on.
        top_scores, top_index = candidates.topk(min(2 * b, b * vocab), dim=1)
        top_beam, top_token = top_index // vocab, top_index % vocab
        is_eos = top_token == eos_id
        ranks = torch.arange(top_scores.shape[1], device=top_scores.device).expand_as(top_scores)
        # An extension that ends is complete if it is among the B most likely ("discard all but the B most
        # likely"; with B = 1 the search is greedy decoding).
        ended = is_eos & (ranks < b) & torch.isfinite(top_scores)
        if length == max_length:  # the last step: every partial hypothesis ends here, with its log p(<EOS>)
            end_scores = scores + log_probs.float().view(n, b, vocab)[:, :, eos_id]
            ended_rows = [(example, beam, end_scores[example, beam].item())
                          for example, beam in torch.isfinite(end_scores).nonzero().tolist()]
        else:  # "removed from the beam and added to the set of complete hypotheses"
            ended_rows = [(example, top_beam[example, rank].item(), top_scores[example, rank].item())
                          for example, rank in ended.nonzero().tolist()]
        for example, beam, log_probability in ended_rows:
            if not done[example]:
                complete[example].append(Hypothesis(history[example, beam].tolist(), log_probability,
                                                    log_probability / length ** length_penalty, True))
        # The new beam: the B best extensions that did not end.
        keep = torch.where(is_eos, ranks + top_scores.shape[1], ranks).argsort(dim=1)[:, :b]  # (N, B)
        beam, token, scores = top_beam.gather(1, keep), top_token.gather(1, keep), top_scores.gather(1, keep)
        history = torch.cat((history.gather(1, beam.unsqueeze(-1).expand(-1, -1, history.shape[2])),
                             token.unsqueeze(-1)), dim=2)
        rows = (torch.arange(n, device=beam.device).unsqueeze(1) * b + beam).view(-1)
        state = reorder(state, rows)
        tokens = token.view(-1)
        best_partial = scores.max(dim=1).values.tolist()
        for example in range(n):
            if done[example] or not complete[example]:
                continue
            if length_penalty == 0:  # scores only fall: the best complete one can no longer be overtaken
                done[example] = max(h.score for h in complete[example]) >= best_partial[example]
            else:
                done[example] = len(complete[example]) >= b
        if all(done):
            break
    results = []
    for example in range(n):
        hypotheses = complete[example]
        if not hypotheses:  # <EOS> was never possible: the partial hypotheses, as they are
            hypotheses = [Hypothesis(history[example, beam].tolist(), score, score / max_length ** length_penalty,
                                     False)
                          for beam, score in enumerate(scores[example].tolist()) if score > float("-inf")]
        results.append(sorted(hypotheses, key=lambda h: h.score, reverse=True)[:b])
    return results
