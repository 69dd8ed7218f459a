"""One decoding routine for every generator of the zoo: GPT, GPT-2, the Transformer, Seq2Seq and RNNsearch.

:func:`generate` takes the keywords transformers users know (``max_new_tokens``, ``do_sample``, ``temperature``,
``top_k``, ``top_p``, ``num_beams``, ``length_penalty``, ``eos_token_id``, ``pad_token_id``) and knows nothing of
the model: the model gives it a ``step`` function, the next-token log-probabilities of each row from the ids so
far and its decoder state (GPT's key/value caches, an LSTM's (h, c), RNNsearch's s, the Transformer's caches), and a
``reorder`` function that keeps the state of the given rows (beam search moves hypotheses between rows, and the
first call expands each example to its beams). A decoder-only model's prompt is its input; an encoder-decoder
model's prompt is its start token, the source living in the state.

The strategies:

* Greedy decoding (``num_beams=1``): the most likely token at every step.
* Sampling (``do_sample=True``): a draw from softmax(logits / temperature), restricted to the k most likely
  tokens (top-k; GPT-2 §3.6) and to the smallest set of tokens holding probability p (nucleus or top-p sampling,
  Holtzman et al. 2019, https://arxiv.org/abs/1904.09751): :func:`filter_logits`.
* Beam search (``num_beams=B > 1``, Sutskever et al. 2014 §3.2): keep the B most likely partial hypotheses;
  "as soon as the <EOS> symbol is appended to a hypothesis, it is removed from the beam and is added to the set
  of complete hypotheses". :func:`beam_search` returns the complete hypotheses themselves.

A row ends at ``eos_token_id`` or after ``max_new_tokens`` tokens (one number, or one per example: the
Transformer's "input length + 50"); ended rows are filled with ``pad_token_id`` up to the longest.

Beam search follows transformers' ``generate`` step for step, so that GPT-2 decodes as ``GPT2LMHeadModel`` does:

* a hypothesis scores its log-probability (the <EOS> token's included) divided by length ** ``length_penalty``,
  the length counting the generated tokens and the <EOS>; α = 0 ranks by the log-probability (the papers of
  Seq2Seq and RNNsearch), α > 0 favours longer outputs. A model whose paper divides by another function of the
  length passes that function as ``length_penalty`` (the Transformer: Wu et al.'s ((5 + |Y|) / 6)^α);
* each step keeps the 2B best extensions, so that B go on even if B of them end; an extension that ends is
  complete if it ranks among the B best; the B best complete hypotheses are kept;
* at the maximum length the B best extensions are complete as they are, without <EOS> (``finished=False``);
* an example stops early once it holds B complete hypotheses and its best live hypothesis, scored at its current
  length, no longer beats the worst of them (transformers' ``early_stopping=False``). Without a length penalty
  this is exact, as log-probabilities only fall; with α > 0 it is transformers' heuristic, which can stop before
  a longer hypothesis would have won. ``early_stopping="never"`` (transformers' name) scores the best live one
  at the maximum length's penalty instead, a bound no continuation can beat (log p < 0 only falls, lp only
  grows), so that the search stops only when nothing left can win; ``True`` stops at B complete hypotheses.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

__all__ = ["Hypothesis", "beam_search", "filter_logits", "generate", "generate_from_source", "source_lengths"]

Step = Callable[[torch.Tensor, Any], tuple[torch.Tensor, Any]]
Reorder = Callable[[Any, torch.Tensor], Any]


@dataclass(frozen=True)
class Hypothesis:
    """One output of the beam search.

    Attributes:
        tokens: the generated tokens, after the prompt (or the start token), without the end token.
        log_probability: log p(tokens, <EOS> | prompt) for a finished hypothesis (of the tokens alone if not).
        score: what ranks hypotheses: log_probability / lp(length), length counting the <EOS> (lp: see
            :func:`generate`'s ``length_penalty``).
        finished: whether it ended with the end token (False where the maximum length cut it).
    """

    tokens: list[int]
    log_probability: float
    score: float
    finished: bool


def filter_logits(logits: torch.Tensor, *, temperature: float = 1.0, top_k: int | None = None,
                  top_p: float | None = None) -> torch.Tensor:
    """Next-token logits ``(..., vocab)`` → the logits to sample from: divided by ``temperature``, then every
    token outside the ``top_k`` most likely, then every token outside the nucleus (the smallest set of most
    likely tokens whose probability reaches ``top_p``), set to −∞. The most likely token always stays."""
    _check_sampling(temperature, top_k, top_p)
    logits = logits / temperature  # < 1 sharpens the distribution, > 1 flattens it
    if top_k is not None and top_k < logits.shape[-1]:
        kth_largest = logits.topk(top_k, dim=-1).values[..., -1:]  # (..., 1)
        logits = logits.masked_fill(logits < kth_largest, -math.inf)
    if top_p is not None and top_p < 1:
        sorted_logits, order = logits.sort(dim=-1, descending=True)
        probabilities = sorted_logits.softmax(dim=-1)
        mass_before = probabilities.cumsum(dim=-1) - probabilities  # the probability of the tokens ranked above
        outside = mass_before >= top_p  # the tokens above already reach p: this one is outside the nucleus
        logits = logits.masked_fill(outside.scatter(-1, order, outside), -math.inf)  # back to vocabulary order
    return logits


def _check_sampling(temperature: float, top_k: int | None, top_p: float | None) -> None:
    if temperature <= 0:
        raise ValueError(f"temperature must be positive, got {temperature} (greedy decoding: do_sample=False)")
    if top_k is not None and top_k < 1:
        raise ValueError(f"top_k must be at least 1, got {top_k}")
    if top_p is not None and not 0 < top_p <= 1:
        raise ValueError(f"top_p must lie in (0, 1], got {top_p}")


def source_lengths(attention_mask: torch.Tensor | None, src: torch.Tensor, name: str) -> torch.Tensor | None:
    """``attention_mask`` ``(N, S)`` of a right-padded source (1 at its real tokens) → its lengths ``(N,)``, for
    the recurrent encoders, which take lengths (``src_lengths``) rather than a mask."""
    if attention_mask is None:
        return None
    attention_mask = torch.as_tensor(attention_mask)
    lengths = attention_mask.sum(dim=1) if attention_mask.ndim == 2 else None
    positions = torch.arange(src.shape[1], device=src.device)
    if (attention_mask.shape != src.shape
            or not torch.equal(attention_mask.bool(), positions < lengths.to(src.device)[:, None])):
        got = attention_mask.tolist() if attention_mask.numel() <= 32 else tuple(attention_mask.shape)
        raise ValueError(f"{name} expects attention_mask of shape {tuple(src.shape)} (the source's), ones then "
                         f"zeros (padding on the right); got {got}")
    return lengths


def _limits(max_new_tokens: int | torch.Tensor, batch_size: int) -> list[int]:
    limits = torch.as_tensor(max_new_tokens).expand(batch_size).tolist()
    if min(limits, default=1) < 0:
        raise ValueError(f"max_new_tokens must not be negative, got {max_new_tokens}")
    return limits


@torch.no_grad()
def generate(step: Step, input_ids: torch.Tensor, state: Any, reorder: Reorder, *,
             max_new_tokens: int | torch.Tensor, do_sample: bool = False, temperature: float = 1.0,
             top_k: int | None = None, top_p: float | None = None, num_beams: int = 1,
             length_penalty: float | Callable[[int], float] = 1.0, early_stopping: bool | str = False,
             eos_token_id: int | None = None, pad_token_id: int | None = None,
             generator: torch.Generator | None = None) -> torch.Tensor:
    """Continue each row of ``input_ids`` ``(N, T)``: the prompt and the generated tokens, ``(N, T + L)``.

    Args:
        step: ``step(ids, state) → (log_probs, state)``: the ids so far ``(R, T + t)`` (the model feeds what its
            state has not seen) → next-token log-probabilities ``(R, V)`` and the new state. A token the model
            never generates may have −∞ there, without renormalising the others (transformers' logits
            processors work the same way), so that a hypothesis's score is the model's log-probability.
        state: the decoder's state for the N rows of ``input_ids``.
        reorder: ``reorder(state, rows) → state``: the state of the given rows ``(R,)``, in that order; with
            ``num_beams`` B it first expands the N rows to N·B (row n·B + b is beam b of example n).
        max_new_tokens: the most tokens generated, one number or one per example ``(N,)``.
        do_sample: draw each token from :func:`filter_logits`'s distribution instead of taking the most likely.
        temperature, top_k, top_p: the sampling distribution (only with ``do_sample``).
        num_beams: B; above 1, beam search (greedy otherwise).
        length_penalty: α of beam search's score log p / length ** α (transformers' definition); or the
            function lp(length) itself, for a paper that divides by another one.
        early_stopping: when beam search stops an example (the module docstring): ``False``, ``"never"`` or
            ``True``, as transformers.
        eos_token_id: the token that ends a row (``None``: rows end at ``max_new_tokens`` only).
        pad_token_id: what fills a row after it ended (default ``eos_token_id``).
        generator: the random numbers of sampling, for reproducible draws.
    """
    if num_beams < 1:
        raise ValueError(f"num_beams must be at least 1, got {num_beams}")
    if do_sample:
        if num_beams > 1:
            # the translation models' generate searches with their paper's beam by default: say so, and the way out
            raise ValueError(f"do_sample=True with num_beams={num_beams}: sampling from a beam is not supported; "
                             "pass num_beams=1 to sample (the translation models search with their paper's beam "
                             "by default)")
        _check_sampling(temperature, top_k, top_p)
    elif temperature != 1.0 or top_k is not None or top_p is not None:
        # transformers ignores them here with a warning; a silently unused argument is a bug waiting to happen
        raise ValueError(f"temperature, top_k and top_p shape the sampling distribution (got {temperature}, "
                         f"{top_k}, {top_p}); pass do_sample=True to sample, or leave them out for greedy decoding")
    pad_token_id = eos_token_id if pad_token_id is None else pad_token_id
    limits = _limits(max_new_tokens, input_ids.shape[0])
    if pad_token_id is None and len(set(limits)) > 1:
        raise ValueError("rows of different max_new_tokens need a pad_token_id to fill the shorter ones")
    if num_beams > 1:
        results = beam_search(step, input_ids, state, reorder, num_beams=num_beams, max_new_tokens=max_new_tokens,
                              length_penalty=length_penalty, early_stopping=early_stopping,
                              eos_token_id=eos_token_id)
        outputs = [best.tokens + ([eos_token_id] if best.finished else []) for best, *_ in results]
        out = input_ids.new_full((len(outputs), max(map(len, outputs))), -1 if pad_token_id is None else pad_token_id)
        for row, tokens in enumerate(outputs):
            out[row, :len(tokens)] = torch.tensor(tokens, dtype=out.dtype)
        return torch.cat([input_ids, out], dim=1)

    ids = input_ids
    limit = torch.tensor(limits, device=ids.device)
    finished = limit == 0
    for length in range(1, max(limits, default=0) + 1):
        if bool(finished.all()):
            break
        log_probs, state = step(ids, state)
        log_probs = log_probs.float()
        if do_sample:  # log-probabilities are logits shifted by a constant: the same softmax
            probabilities = filter_logits(log_probs, temperature=temperature, top_k=top_k, top_p=top_p).softmax(-1)
            next_token = torch.multinomial(probabilities, 1, generator=generator).squeeze(1)  # (N,)
        else:
            next_token = log_probs.argmax(dim=-1)  # (N,)
        if pad_token_id is not None:
            next_token = next_token.masked_fill(finished, pad_token_id)
        ids = torch.cat([ids, next_token[:, None]], dim=1)
        if eos_token_id is not None:
            finished = finished | (next_token == eos_token_id)
        finished = finished | (length >= limit)
    return ids


@torch.no_grad()
def generate_from_source(model: Any, input_ids: torch.Tensor, *, max_new_tokens: int | None,
                         attention_mask: torch.Tensor | None, src_lengths: torch.Tensor | None,
                         eos_token_id: int | None, **search: Any) -> torch.Tensor:
    """:func:`generate` for a recurrent encoder-decoder whose source lives in its decoder's state (Seq2Seq,
    RNNsearch): ``model._decoder(src, src_lengths) → (state, step, reorder)`` and its ``bos_id`` and ``eos_id``.
    A right-padded source's lengths come from ``attention_mask`` or ``src_lengths``; the output starts with
    ``bos_id`` and has at most ``max_new_tokens`` (default 2 S + 10) more; ``search`` are :func:`generate`'s
    keywords."""
    lengths = source_lengths(attention_mask, input_ids, model.model_name)
    state, step, reorder = model._decoder(input_ids, src_lengths if lengths is None else lengths)
    start = input_ids.new_full((input_ids.shape[0], 1), model.bos_id)
    if max_new_tokens is None:  # not `or`: 0 is a limit (the start token alone), and a tensor has no truth value
        max_new_tokens = 2 * input_ids.shape[1] + 10
    return generate(step, start, state, reorder, max_new_tokens=max_new_tokens,
                    eos_token_id=model.eos_id if eos_token_id is None else eos_token_id, **search)


@torch.no_grad()
def beam_search(step: Step, input_ids: torch.Tensor, state: Any, reorder: Reorder, *, num_beams: int,
                max_new_tokens: int | torch.Tensor, length_penalty: float | Callable[[int], float] = 1.0,
                early_stopping: bool | str = False, eos_token_id: int | None = None) -> list[list[Hypothesis]]:
    """The complete hypotheses of each of the N examples of ``input_ids`` ``(N, T)``, best first (up to
    ``num_beams`` each); ``step``, ``state``, ``reorder`` and the rest as :func:`generate`."""
    n, b, prompt_length = input_ids.shape[0], num_beams, input_ids.shape[1]
    lp = length_penalty if callable(length_penalty) else lambda length: length ** length_penalty
    if early_stopping not in (False, True, "never"):
        raise ValueError(f"early_stopping must be False, True or 'never' (transformers' values); "
                         f"got {early_stopping!r}")
    limits = _limits(max_new_tokens, n)
    if min(limits, default=1) < 1:
        raise ValueError(f"beam search needs max_new_tokens of at least 1, got {max_new_tokens}")
    ids = input_ids.repeat_interleave(b, dim=0)  # (N·B, T): row n·B + b is beam b of example n
    state = reorder(state, torch.arange(n, device=ids.device).repeat_interleave(b))
    # Only beam 0 is live at the start: the others start at -inf, so the first step fills the beam with
    # B different tokens instead of B copies of the best one.
    scores = torch.full((n, b), -math.inf, device=ids.device)
    scores[:, 0] = 0.0
    complete: list[list[Hypothesis]] = [[] for _ in range(n)]
    searching = [True] * n
    for length in range(1, max(limits) + 1):
        log_probs, state = step(ids, state)
        log_probs = log_probs.float()
        vocab = log_probs.shape[-1]
        # Extend each partial hypothesis with every word: (N, B·V) scores of the extensions, the 2B best kept.
        candidates = (scores.unsqueeze(-1) + log_probs.view(n, b, vocab)).view(n, b * vocab)
        top_scores, top_index = candidates.topk(min(2 * b, b * vocab), dim=1)  # best first
        top_beam, top_token = top_index // vocab, top_index % vocab
        at_limit = torch.tensor([length >= limit for limit in limits], device=ids.device)[:, None]
        ends = at_limit.expand_as(top_token) if eos_token_id is None else (top_token == eos_token_id) | at_limit
        for example, rank in (ends[:, :b] & torch.isfinite(top_scores[:, :b])).nonzero().tolist():
            if not searching[example]:
                continue
            log_probability = top_scores[example, rank].item()
            token = top_token[example, rank].item()
            prefix = ids[example * b + top_beam[example, rank].item(), prompt_length:].tolist()
            finished = token == eos_token_id
            complete[example].append(Hypothesis(prefix + ([] if finished else [token]), log_probability,
                                                log_probability / lp(length), finished))
        for example in range(n):  # the B best complete ones (a stable sort: the earlier one wins a tie)
            complete[example] = sorted(complete[example], key=lambda h: h.score, reverse=True)[:b]
        # The new beam: the B best extensions that did not end.
        ranks = torch.arange(top_scores.shape[1], device=ids.device).expand_as(top_scores)
        keep = torch.where(ends, ranks + top_scores.shape[1], ranks).argsort(dim=1, stable=True)[:, :b]  # (N, B)
        beam, token = top_beam.gather(1, keep), top_token.gather(1, keep)
        scores = top_scores.gather(1, keep).masked_fill(ends.gather(1, keep), -math.inf)
        rows = (torch.arange(n, device=ids.device).unsqueeze(1) * b + beam).view(-1)  # the row each one extends
        ids = torch.cat([ids.index_select(0, rows), token.view(-1, 1)], dim=1)
        state = reorder(state, rows)
        for example in range(n):
            if length >= limits[example]:
                searching[example] = False
            elif searching[example] and len(complete[example]) == b:
                if early_stopping is True:
                    searching[example] = False
                    continue
                horizon = limits[example] if early_stopping == "never" else length
                best_live = scores[example, 0].item() / lp(horizon)
                searching[example] = best_live > complete[example][-1].score
        if not any(searching):
            break
    return complete
