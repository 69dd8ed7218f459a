"""BERT: Bidirectional Encoder Representations from Transformers.

Paper: "BERT: Pre-training of Deep Bidirectional Transformers for Language Understanding", Jacob Devlin,
Ming-Wei Chang, Kenton Lee, Kristina Toutanova, NAACL 2019 (arXiv 2018). https://arxiv.org/abs/1810.04805

A left-to-right language model (GPT) lets each token see only the tokens before it, which the paper argues is
sub-optimal for understanding a sentence, where context on both sides matters. BERT pre-trains a deep
*bidirectional* Transformer encoder, every token attending to every other in every layer, and makes that
trainable with two unsupervised tasks (§3.1), then fine-tunes all of its parameters on each downstream task
with one added output layer (§3.2):

* Masked language model (MLM, "Task #1"). A bidirectional model could trivially see the word it has to
  predict, so 15% of the WordPiece tokens of each sequence are chosen at random and the model predicts the
  original token at those positions only (a Cloze task), with a softmax over the vocabulary on their final
  hidden vectors T_i. Because [MASK] never appears when fine-tuning, a chosen token is replaced by [MASK] 80%
  of the time, by a random token 10% of the time, and left unchanged 10% of the time (:func:`mask_tokens`).
* Next sentence prediction (NSP, "Task #2"). Each example is a pair of segments A and B, where B is the
  segment that follows A half of the time (IsNext) and a random one otherwise (NotNext); the final hidden
  vector C of the first token, [CLS], classifies the pair. The training loss is the sum of the mean MLM
  likelihood and the mean NSP likelihood (Appendix A.2): :meth:`BERTPreTraining.loss`.
* Input representation (§3, Figure 2). The sequence is "[CLS] A [SEP] B [SEP]"; each token's input is the
  sum of its token embedding (a 30,000-piece WordPiece vocabulary), a learned *segment* embedding saying
  whether it belongs to A or B, and a learned position embedding (up to 512 positions).
* The encoder is the Transformer's, unchanged (Vaswani et al. 2017): L post-LN layers of multi-head
  self-attention and a feed-forward network of width 4H, here with GELU activations.
  BERT-Base: L = 12, H = 768, A = 12 heads; BERT-Large: L = 24, H = 1024, A = 16.

Data flow of BERT-Base at 128 tokens (the sequence length of 90% of the pre-training steps, Appendix A.2)::

    token ids (N, 128): [CLS] segment A [SEP] segment B [SEP] [PAD] …
      token embedding (30522×768) + segment embedding (2×768) + position embedding (512×768)   (N, 128, 768)
      LayerNorm, dropout
      12 × encoder layer, padding masked out of the keys:                                     (N, 128, 768)
          x ─► multi-head self-attention (12 heads) ─(+)─► LN ─► FFN 768→3072→768, GELU ─(+)─► LN ─►
          └────────────────────────────────────────┘      └───────────────────────────────┘
      last_hidden_state T_1 … T_128                                                            (N, 128, 768)
      pooler: C = tanh(W T_[CLS] + b)                                                          (N, 768)
    pre-training heads (BERTPreTraining):
      masked LM: dense → GELU → LN → · E_tokenᵀ + b (the token embedding, tied)               (N, 128, 30522)
      next sentence: W_NSP C + b                                                               (N, 2)

Deviations from the paper, each to match the authors' released code (google-research/bert) and transformers'
``BertModel``/``BertForPreTraining``, whose weights this model loads and whose outputs it reproduces:

* The pooler (a dense layer with tanh on T_[CLS]) produces C, and the MLM head transforms T_i by a dense layer,
  GELU and LayerNorm before the tied output projection: both are in the released code but not in the paper,
  which feeds C and T_i to the output layers directly.
* LayerNorm's ε is 1e-12 (the released code; the paper does not state it).
* Initialisation as transformers: weights and embeddings N(0, 0.02²) (the released code draws a truncated
  normal with σ = 0.02), zero biases, unit LayerNorm scales; the [PAD] embedding (id ``pad_token_id``) starts
  at zero and receives no gradient (``padding_idx``; the released code treats it as any other row).
* :func:`mask_tokens` chooses exactly round(15% × n) of the n maskable tokens of each sequence (at least one),
  as the released ``create_pretraining_data.py`` does, except that its n also counts [CLS] and the [SEP]s,
  which are never chosen (here n counts only the tokens that can be chosen); transformers' data collator
  instead draws every token independently with probability 0.15. ``max_predictions`` is the released code's
  cap per sequence (20 at 128 tokens); the default is no cap.
* Dropout is 0.1 on the embeddings, on each sub-layer's output and on the attention probabilities (the
  paper's "dropout probability of 0.1 on all layers" in the released code's places).
* The pre-training model's outputs are named ``mlm_logits`` and ``nsp_logits`` (transformers:
  ``prediction_logits`` and ``seq_relationship_logits``); it also returns the encoder's ``last_hidden_state`` and
  ``pooler_output``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from paperzoo.layers import MultiHeadAttention, check_attention_mask, check_token_batch
from paperzoo.layers.checkpoint import checkpoint_module, checkpointing
from paperzoo.registry import InputSpec, ModelCard, Paper, register

__all__ = ["BERT", "BERTMaskedLM", "BERTPreTraining", "BERTSequenceClassification", "EncoderLayer", "InputEmbedding",
           "MaskedLanguageModelHead", "mask_tokens"]

IGNORE_INDEX = -100  # the label of a position that is not predicted (cross_entropy's default ignore_index)


def mask_tokens(
    input_ids: torch.Tensor,
    *,
    vocab_size: int,
    mask_token_id: int,
    special_token_ids: Sequence[int] = (),
    attention_mask: torch.Tensor | None = None,
    masking_rate: float = 0.15,
    max_predictions: int | None = None,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The masked-LM corruption of §3.1 ("Task #1"): returns ``(inputs, labels)`` for a batch ``(N, T)``.

    In each sequence, round(``masking_rate`` · n) of its n maskable tokens (at least one; not the special tokens
    [CLS], [SEP], [PAD] listed in ``special_token_ids``, not the padding of ``attention_mask``) are chosen at
    random. A chosen token becomes ``mask_token_id`` with probability 0.8, a token drawn uniformly from the
    vocabulary with probability 0.1, and stays as it is with probability 0.1: the model cannot tell which
    tokens to predict from the input alone, so it must keep a contextual representation of every token.
    ``labels`` holds the original id at the chosen positions and -100 (ignored by the loss) elsewhere.
    """
    if not 0 < masking_rate < 1:
        raise ValueError(f"masking_rate must lie in (0, 1), got {masking_rate}")
    device = input_ids.device
    maskable = ~torch.isin(input_ids, torch.as_tensor(list(special_token_ids), dtype=input_ids.dtype, device=device))
    if attention_mask is not None:
        maskable &= attention_mask.bool()
    num_maskable = maskable.sum(dim=1)  # (N,)
    # round(rate · n) in float64, half to even, as Python 3's round of the released code's rate · n
    num_chosen = torch.minimum((num_maskable.double() * masking_rate).round().long().clamp(min=1), num_maskable)
    if max_predictions is not None:
        num_chosen = num_chosen.clamp(max=max_predictions)

    # A random order of each sequence's maskable positions (the others sort last); the first num_chosen are chosen.
    scores = torch.rand(input_ids.shape, generator=generator, device=device).masked_fill(~maskable, 2.0)
    rank = scores.argsort(dim=1).argsort(dim=1)  # (N, T): each position's place in that order
    chosen = rank < num_chosen[:, None]

    decision = torch.rand(input_ids.shape, generator=generator, device=device)
    random_ids = torch.randint(vocab_size, input_ids.shape, generator=generator, device=device)
    inputs = torch.where(chosen & (decision < 0.8), mask_token_id, input_ids)  # 80%: [MASK]
    inputs = torch.where(chosen & (decision >= 0.8) & (decision < 0.9), random_ids, inputs)  # 10%: a random token
    labels = torch.where(chosen, input_ids, IGNORE_INDEX)  # the remaining 10% keep their token
    return inputs, labels


class InputEmbedding(nn.Module):
    """The input representation of Figure 2: token + segment + position embeddings, then LayerNorm and dropout."""

    def __init__(self, vocab_size: int, hidden_size: int, max_positions: int, type_vocab_size: int,
                 dropout: float, layer_norm_eps: float, pad_token_id: int) -> None:
        super().__init__()
        self.token_embedding = nn.Embedding(vocab_size, hidden_size, padding_idx=pad_token_id)
        self.segment_embedding = nn.Embedding(type_vocab_size, hidden_size)  # E_A, E_B
        self.position_embedding = nn.Embedding(max_positions, hidden_size)  # learned, not sinusoidal
        self.norm = nn.LayerNorm(hidden_size, eps=layer_norm_eps)
        self.dropout = nn.Dropout(dropout)

    def forward(self, input_ids: torch.Tensor, token_type_ids: torch.Tensor) -> torch.Tensor:
        positions = torch.arange(input_ids.shape[1], device=input_ids.device)  # (T,), broadcast over the batch
        x = self.token_embedding(input_ids) + self.segment_embedding(token_type_ids)  # (N, T, H)
        x = x + self.position_embedding(positions)
        return self.dropout(self.norm(x))


class FeedForward(nn.Module):
    """The position-wise feed-forward network, FFN(x) = GELU(x W_1 + b_1) W_2 + b_2, of width 4H."""

    def __init__(self, hidden_size: int, intermediate_size: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(hidden_size, intermediate_size)
        self.act = nn.GELU()  # the exact (erf) GELU, as the released code
        self.fc2 = nn.Linear(intermediate_size, hidden_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class EncoderLayer(nn.Module):
    """One Transformer encoder layer, post-LN as in Vaswani et al.: each sub-layer is wrapped as
    LayerNorm(x + Dropout(Sublayer(x)))."""

    def __init__(self, hidden_size: int, num_heads: int, intermediate_size: int, dropout: float,
                 attention_dropout: float, layer_norm_eps: float) -> None:
        super().__init__()
        self.attention = MultiHeadAttention(hidden_size, num_heads, attention_dropout=attention_dropout)
        self.attention_norm = nn.LayerNorm(hidden_size, eps=layer_norm_eps)
        self.feed_forward = FeedForward(hidden_size, intermediate_size)
        self.feed_forward_norm = nn.LayerNorm(hidden_size, eps=layer_norm_eps)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, padding_mask: torch.Tensor | None = None) -> torch.Tensor:
        # Bidirectional: no causal mask, every token attends to every real token on both sides.
        x = self.attention_norm(x + self.dropout(self.attention(x, attn_mask=padding_mask)))
        return self.feed_forward_norm(x + self.dropout(self.feed_forward(x)))


class BERT(nn.Module):
    """The BERT encoder with its pooler: token ids → contextual vectors T_i and the pooled [CLS] vector C.

    Args:
        vocab_size: WordPiece vocabulary (30,522 in the released uncased models).
        hidden_size: H, the width of every layer.
        num_layers: L, the number of encoder layers.
        num_heads: A, the attention heads per layer.
        intermediate_size: the feed-forward width, 4H.
        max_positions: learned positions, the longest sequence the model takes (512).
        type_vocab_size: segments (2: A and B).
        dropout: on the embeddings and on each sub-layer's output.
        attention_dropout: on the attention probabilities.
        layer_norm_eps: LayerNorm's ε.
        pad_token_id: the [PAD] id, whose embedding starts at zero and gets no gradient.
        add_pooling_layer: whether to build the pooler (transformers' name; its masked-LM model has none).

    ``forward(input_ids, attention_mask=None, token_type_ids=None)`` takes ids ``(N, T)``, an optional mask
    ``(N, T)`` with 1 at real tokens and 0 at padding, and optional segment ids ``(N, T)`` (0 for A, 1 for B;
    all 0 by default), and returns ``{"last_hidden_state": (N, T, H), "pooler_output": (N, H)}`` (no
    ``pooler_output`` without the pooler).

    ``set_grad_checkpointing()`` checkpoints each encoder layer in training.
    """

    model_name = "bert"
    grad_checkpointing = False  # set_grad_checkpointing

    def __init__(
        self,
        *,
        vocab_size: int = 30522,
        hidden_size: int = 768,
        num_layers: int = 12,
        num_heads: int = 12,
        intermediate_size: int = 3072,
        max_positions: int = 512,
        type_vocab_size: int = 2,
        dropout: float = 0.1,
        attention_dropout: float = 0.1,
        layer_norm_eps: float = 1e-12,
        pad_token_id: int = 0,
        add_pooling_layer: bool = True,
    ) -> None:
        super().__init__()
        self.vocab_size = vocab_size
        self.hidden_size = hidden_size
        self.max_positions = max_positions
        self.type_vocab_size = type_vocab_size
        self.embeddings = InputEmbedding(vocab_size, hidden_size, max_positions, type_vocab_size, dropout,
                                         layer_norm_eps, pad_token_id)
        self.layers = nn.ModuleList(
            EncoderLayer(hidden_size, num_heads, intermediate_size, dropout, attention_dropout, layer_norm_eps)
            for _ in range(num_layers))
        self.pooler = nn.Linear(hidden_size, hidden_size) if add_pooling_layer else None
        self.apply(init_weights)

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Checkpoint each encoder layer in training: its activations are recomputed in the backward pass."""
        self.grad_checkpointing = enable

    def check_inputs(self, input_ids: Any, attention_mask: Any, token_type_ids: Any, name: str) -> None:
        """Raise a ValueError naming ``name`` (the variant) unless the three inputs fit this encoder."""
        check_token_batch(input_ids, name=name, vocab_size=self.vocab_size, max_length=self.max_positions)
        if attention_mask is not None:
            check_attention_mask(attention_mask, name=name, shape=tuple(input_ids.shape))
        if token_type_ids is not None:
            check_token_batch(token_type_ids, name=name, vocab_size=self.type_vocab_size,
                              what="token type (segment) ids")
            if token_type_ids.shape != input_ids.shape:
                raise ValueError(f"{name} expects token type (segment) ids of the token ids' shape "
                                 f"(N, T) = {tuple(input_ids.shape)}; got {tuple(token_type_ids.shape)}")

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                token_type_ids: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        self.check_inputs(input_ids, attention_mask, token_type_ids, name=self.model_name)
        return self.encode(input_ids, attention_mask, token_type_ids)

    def encode(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
               token_type_ids: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """``forward`` without the input checks."""
        if token_type_ids is None:
            token_type_ids = torch.zeros_like(input_ids)  # one segment: everything is A
        x = self.embeddings(input_ids, token_type_ids)  # (N, T, H)
        # (N, T) → (N, 1, 1, T): True at the keys a query may attend to, the same for every head and query.
        padding_mask = None if attention_mask is None else attention_mask.bool()[:, None, None, :]
        for layer in self.layers:
            x = checkpoint_module(layer, x, padding_mask) if checkpointing(self) else layer(x, padding_mask)
        if self.pooler is None:
            return {"last_hidden_state": x}
        pooled = torch.tanh(self.pooler(x[:, 0]))  # C, from the final hidden vector of [CLS]: (N, H)
        return {"last_hidden_state": x, "pooler_output": pooled}


class MaskedLanguageModelHead(nn.Module):
    """Predicts the original token at every position: dense → GELU → LayerNorm, then the scores against every
    token embedding (the output matrix is the input embedding, tied) plus a per-token bias."""

    def __init__(self, hidden_size: int, vocab_size: int, layer_norm_eps: float) -> None:
        super().__init__()
        self.dense = nn.Linear(hidden_size, hidden_size)
        self.act = nn.GELU()
        self.norm = nn.LayerNorm(hidden_size, eps=layer_norm_eps)
        self.bias = nn.Parameter(torch.zeros(vocab_size))

    def forward(self, hidden: torch.Tensor, token_embedding: torch.Tensor) -> torch.Tensor:
        hidden = self.norm(self.act(self.dense(hidden)))  # (N, T, H)
        return F.linear(hidden, token_embedding, self.bias)  # T_i · E_tokenᵀ + b: (N, T, vocab_size)


class BERTPreTraining(nn.Module):
    """BERT with its two pre-training heads: the masked LM over the vocabulary at every position, and next
    sentence prediction from C.

    Takes the arguments of :class:`BERT`. ``forward`` returns ``{"mlm_logits": (N, T, vocab_size),
    "nsp_logits": (N, 2), "last_hidden_state": (N, T, H), "pooler_output": (N, H)}``; NSP class 0 is IsNext,
    1 is NotNext (as the released code and transformers).

    ``set_grad_checkpointing()`` checkpoints each encoder layer in training.
    """

    model_name = "bert_pretraining"

    def __init__(self, **kwargs: Any) -> None:
        super().__init__()
        self.bert = BERT(**kwargs)
        self.vocab_size = self.bert.vocab_size
        self.hidden_size = self.bert.hidden_size
        layer_norm_eps = self.bert.embeddings.norm.eps
        self.mlm_head = MaskedLanguageModelHead(self.hidden_size, self.vocab_size, layer_norm_eps)
        self.nsp_head = nn.Linear(self.hidden_size, 2)  # IsNext / NotNext
        self.mlm_head.apply(init_weights)
        self.nsp_head.apply(init_weights)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                token_type_ids: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        self.bert.check_inputs(input_ids, attention_mask, token_type_ids, name=self.model_name)
        encoded = self.bert.encode(input_ids, attention_mask, token_type_ids)
        mlm_logits = self.mlm_head(encoded["last_hidden_state"], self.bert.embeddings.token_embedding.weight)
        nsp_logits = self.nsp_head(encoded["pooler_output"])  # (N, 2)
        return {"mlm_logits": mlm_logits, "nsp_logits": nsp_logits, **encoded}

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Checkpoint each encoder layer in training (:meth:`BERT.set_grad_checkpointing`)."""
        self.bert.set_grad_checkpointing(enable)

    def loss(self, input_ids: torch.Tensor, mlm_labels: torch.Tensor, next_sentence_labels: torch.Tensor,
             attention_mask: torch.Tensor | None = None, token_type_ids: torch.Tensor | None = None) -> torch.Tensor:
        """The pre-training loss (Appendix A.2): the mean masked-LM negative log-likelihood over the chosen
        positions (``mlm_labels`` from :func:`mask_tokens`, -100 elsewhere) plus the mean NSP one
        (``next_sentence_labels`` (N,): 0 IsNext, 1 NotNext)."""
        out = self(input_ids, attention_mask, token_type_ids)
        if mlm_labels.shape != input_ids.shape or next_sentence_labels.shape != input_ids.shape[:1]:
            raise ValueError(f"{self.model_name} expects mlm_labels of shape (N, T) = {tuple(input_ids.shape)} and "
                             f"next_sentence_labels of shape (N,) = ({input_ids.shape[0]},); got "
                             f"{tuple(mlm_labels.shape)} and {tuple(next_sentence_labels.shape)}")
        mlm = F.cross_entropy(out["mlm_logits"].flatten(0, 1), mlm_labels.flatten(), ignore_index=IGNORE_INDEX)
        nsp = F.cross_entropy(out["nsp_logits"], next_sentence_labels)
        return mlm + nsp


def _check_labels(labels: Any, *, name: str, shape: tuple[int, ...], what: str) -> None:
    if not isinstance(labels, torch.Tensor) or tuple(labels.shape) != shape:
        got = tuple(labels.shape) if isinstance(labels, torch.Tensor) else type(labels).__name__
        raise ValueError(f"{name} expects {what} of shape {shape}; got {got}")


class BERTMaskedLM(nn.Module):
    """BERT with the masked-LM head alone (transformers' ``BertForMaskedLM``): no pooler, no NSP head.

    Takes the arguments of :class:`BERT`. ``forward(input_ids, attention_mask=None, token_type_ids=None, *,
    labels=None)`` returns ``{"logits": (N, T, vocab_size), "last_hidden_state": (N, T, H)}``, and ``"loss"``,
    the mean cross-entropy over the positions whose label is not -100, when ``labels`` ``(N, T)`` are given
    (:func:`mask_tokens` makes them).

    ``set_grad_checkpointing()`` checkpoints each encoder layer in training.
    """

    model_name = "bert_masked_lm"

    def __init__(self, **kwargs: Any) -> None:
        super().__init__()
        self.bert = BERT(**{"add_pooling_layer": False, **kwargs})
        self.vocab_size = self.bert.vocab_size
        self.hidden_size = self.bert.hidden_size
        self.mlm_head = MaskedLanguageModelHead(self.hidden_size, self.vocab_size, self.bert.embeddings.norm.eps)
        self.mlm_head.apply(init_weights)

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Checkpoint each encoder layer in training (:meth:`BERT.set_grad_checkpointing`)."""
        self.bert.set_grad_checkpointing(enable)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                token_type_ids: torch.Tensor | None = None, *,
                labels: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        self.bert.check_inputs(input_ids, attention_mask, token_type_ids, name=self.model_name)
        if labels is not None:
            _check_labels(labels, name=self.model_name, shape=tuple(input_ids.shape),
                          what="labels (the original ids at the predicted positions, -100 elsewhere)")
        encoded = self.bert.encode(input_ids, attention_mask, token_type_ids)
        logits = self.mlm_head(encoded["last_hidden_state"], self.bert.embeddings.token_embedding.weight)
        out = {"logits": logits, **encoded}
        if labels is not None:
            out["loss"] = F.cross_entropy(logits.flatten(0, 1), labels.flatten(), ignore_index=IGNORE_INDEX)
        return out

    def loss(self, input_ids: torch.Tensor, labels: torch.Tensor, attention_mask: torch.Tensor | None = None,
             token_type_ids: torch.Tensor | None = None) -> torch.Tensor:
        """The masked-LM loss of §3.1: the mean negative log-likelihood of the original tokens at the positions
        ``labels`` names (-100 elsewhere)."""
        return self(input_ids, attention_mask, token_type_ids, labels=labels)["loss"]


PROBLEM_TYPES = ("regression", "single_label_classification", "multi_label_classification")


class BERTSequenceClassification(nn.Module):
    r"""BERT fine-tuned to classify a sequence or a pair (§4.1, GLUE): K classes from the pooled [CLS] vector C,
    logits = C Wᵀ + b with $W \in \mathbb{R}^{K \times H}$, "the only new parameters introduced during fine-tuning"
    (transformers' ``BertForSequenceClassification``).

    Args: those of :class:`BERT`, and
        num_classes: K (transformers' ``num_labels``; 2 by default, as transformers).
        classifier_dropout: dropout on C before the classifier (``None``: the encoder's ``dropout``).
        problem_type: the loss: ``"single_label_classification"`` (cross-entropy on class ids),
            ``"multi_label_classification"`` (binary cross-entropy on float targets ``(N, K)``) or
            ``"regression"`` (mean squared error; K = 1 for one score, as STS-B); ``None`` chooses as
            transformers: regression for K = 1, otherwise single-label for integer labels and multi-label for
            float ones.

    ``forward(input_ids, attention_mask=None, token_type_ids=None, *, labels=None)`` returns ``{"logits": (N, K),
    "last_hidden_state": (N, T, H), "pooler_output": (N, H)}``, and ``"loss"`` when ``labels`` are given.
    """

    model_name = "bert_sequence_classification"

    def __init__(self, num_classes: int = 2, classifier_dropout: float | None = None, problem_type: str | None = None,
                 **kwargs: Any) -> None:
        super().__init__()
        if problem_type not in (None, *PROBLEM_TYPES):
            raise ValueError(f"problem_type={problem_type!r}: expected None or one of {', '.join(PROBLEM_TYPES)}")
        if num_classes < 1:
            raise ValueError(f"num_classes={num_classes}: expected at least 1 (1 for a regression score)")
        self.bert = BERT(**kwargs)
        self.vocab_size = self.bert.vocab_size
        self.hidden_size = self.bert.hidden_size
        self.num_classes = num_classes
        self.problem_type = problem_type
        self.dropout = nn.Dropout(self.bert.embeddings.dropout.p if classifier_dropout is None else classifier_dropout)
        self.classifier = nn.Linear(self.hidden_size, num_classes)  # W, b
        self.classifier.apply(init_weights)

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Checkpoint each encoder layer in training (:meth:`BERT.set_grad_checkpointing`)."""
        self.bert.set_grad_checkpointing(enable)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                token_type_ids: torch.Tensor | None = None, *,
                labels: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        self.bert.check_inputs(input_ids, attention_mask, token_type_ids, name=self.model_name)
        encoded = self.bert.encode(input_ids, attention_mask, token_type_ids)
        logits = self.classifier(self.dropout(encoded["pooler_output"]))  # C Wᵀ + b: (N, K)
        out = {"logits": logits, **encoded}
        if labels is not None:
            out["loss"] = self._loss(logits, labels)
        return out

    def _loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        n = logits.shape[0]
        if not isinstance(labels, torch.Tensor):
            raise ValueError(f"{self.model_name} expects labels as a tensor: class ids (N,) = ({n},), or float "
                             f"targets (N, K) = ({n}, {self.num_classes}); got {type(labels).__name__}")
        problem = self.problem_type
        if problem is None:  # transformers' choice, from K and the labels' dtype
            integer = labels.dtype in (torch.long, torch.int)
            problem = PROBLEM_TYPES[0] if self.num_classes == 1 else PROBLEM_TYPES[1] if integer else PROBLEM_TYPES[2]
        if problem == "single_label_classification":
            _check_labels(labels, name=self.model_name, shape=(n,), what="class ids (N,)")
            return F.cross_entropy(logits, labels)  # log softmax(C Wᵀ), §4.1
        if problem == "multi_label_classification":
            _check_labels(labels, name=self.model_name, shape=(n, self.num_classes), what="float targets (N, K)")
            return F.binary_cross_entropy_with_logits(logits, labels)
        if self.num_classes == 1:  # one score per example: (N,) or (N, 1) targets
            if labels.numel() != n:
                raise ValueError(f"{self.model_name} expects regression targets of shape (N,) = ({n},); got "
                                 f"{tuple(labels.shape)}")
            return F.mse_loss(logits.squeeze(), labels.squeeze())
        _check_labels(labels, name=self.model_name, shape=(n, self.num_classes), what="regression targets (N, K)")
        return F.mse_loss(logits, labels)

    def loss(self, input_ids: torch.Tensor, labels: torch.Tensor, attention_mask: torch.Tensor | None = None,
             token_type_ids: torch.Tensor | None = None) -> torch.Tensor:
        """The fine-tuning loss of ``problem_type`` for ``labels``."""
        return self(input_ids, attention_mask, token_type_ids, labels=labels)["loss"]


def init_weights(module: nn.Module) -> None:
    """transformers' BERT initialisation: N(0, 0.02²) weights and embeddings, zero biases and [PAD] row."""
    if isinstance(module, nn.Linear):
        nn.init.normal_(module.weight, std=0.02)
        nn.init.zeros_(module.bias)
    elif isinstance(module, nn.Embedding):
        nn.init.normal_(module.weight, std=0.02)
        if module.padding_idx is not None:
            with torch.no_grad():
                module.weight[module.padding_idx].zero_()
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)


_PAPER = Paper(
    title="BERT: Pre-training of Deep Bidirectional Transformers for Language Understanding",
    authors="Jacob Devlin, Ming-Wei Chang, Kenton Lee, Kristina Toutanova",
    year=2018,
    url="https://arxiv.org/abs/1810.04805",
)
_INNOVATIONS = (
    "a deep bidirectional Transformer encoder: every token attends to both sides in every layer",
    "masked language model: predict 15% of the tokens (80% [MASK], 10% random, 10% unchanged) from both sides",
    "next sentence prediction on the [CLS] vector teaches the relation between two segments",
    "input = token + segment + position embeddings; [CLS] first, [SEP] between segments",
    "one pre-trained model fine-tuned end to end for each task with a single added output layer",
)
_LARGE = dict(hidden_size=1024, num_layers=24, num_heads=16, intermediate_size=4096)
_LARGE_CONFIG = "hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, intermediate_size=4096"
_NOTES = ("keyword arguments in the reference are BertConfig's (the uncased checkpoints' config); create_model takes "
          "them too, beside ours (num_hidden_layers or num_layers; `paperzoo info` lists the mapping)")


def _card(name: str, architecture: str, reference: str, params: int, gmacs: float, canonical: bool = False,
          notes: str = "") -> ModelCard:
    library_class = reference.split("(")[0].removeprefix("transformers:")
    return ModelCard(
        name=name,
        architecture=architecture,
        task="masked-language-model",
        paper=_PAPER,
        innovations=_INNOVATIONS,
        input=InputSpec(kind="tokens", shape=(128,), vocab_size=30522),
        params=params,
        params_source=f"transformers {library_class} with BertConfig("
                      + (_LARGE_CONFIG if "large" in name else "") + "), counted"
                      + ("; the paper rounds to 340M" if "large" in name else "; the paper rounds to 110M"),
        reference=reference,
        gmacs=gmacs,
        canonical=canonical,
        notes=notes or _NOTES,
    )


@register(_card("bert_base", "BERT-Base", "transformers:BertModel", params=109_482_240, gmacs=11.174,
                canonical=True))
def bert_base(**kwargs: Any) -> BERT:
    """BERT-Base: L = 12, H = 768, A = 12."""
    return BERT(**kwargs)


@register(_card("bert_large", "BERT-Large", f"transformers:BertModel({_LARGE_CONFIG})", params=335_141_888,
                gmacs=39.461))
def bert_large(**kwargs: Any) -> BERT:
    """BERT-Large: L = 24, H = 1024, A = 16."""
    return BERT(**{**_LARGE, **kwargs})


@register(_card("bert_base_pretraining", "BERT-Base (MLM + NSP heads)", "transformers:BertForPreTraining",
                params=110_106_428, gmacs=14.25,
                notes="returns mlm_logits and nsp_logits (transformers: prediction_logits, seq_relationship_logits)"))
def bert_base_pretraining(**kwargs: Any) -> BERTPreTraining:
    """BERT-Base with the masked-LM and next-sentence heads."""
    return BERTPreTraining(**kwargs)


@register(_card("bert_large_pretraining", "BERT-Large (MLM + NSP heads)",
                f"transformers:BertForPreTraining({_LARGE_CONFIG})", params=336_226_108, gmacs=43.596,
                notes="returns mlm_logits and nsp_logits (transformers: prediction_logits, seq_relationship_logits)"))
def bert_large_pretraining(**kwargs: Any) -> BERTPreTraining:
    """BERT-Large with the masked-LM and next-sentence heads."""
    return BERTPreTraining(**{**_LARGE, **kwargs})


@register(_card("bert_base_masked_lm", "BERT-Base (masked-LM head)", "transformers:BertForMaskedLM",
                params=109_514_298, gmacs=14.25,
                notes="no pooler, no NSP head; returns logits (and loss with labels), as transformers' "
                      "BertForMaskedLM. " + _NOTES))
def bert_base_masked_lm(**kwargs: Any) -> BERTMaskedLM:
    """BERT-Base with the masked-LM head alone."""
    return BERTMaskedLM(**kwargs)


@register(_card("bert_base_sequence_classification", "BERT-Base (sequence classifier)",
                "transformers:BertForSequenceClassification", params=109_483_778, gmacs=11.174,
                notes="num_classes (transformers' num_labels) from the pooled [CLS] vector; returns logits (and loss "
                      "with labels), as transformers' BertForSequenceClassification. " + _NOTES))
def bert_base_sequence_classification(**kwargs: Any) -> BERTSequenceClassification:
    """BERT-Base with a K-class classifier on C (§4.1); K = 2 by default."""
    return BERTSequenceClassification(**kwargs)


if __name__ == "__main__":
    from paperzoo.cli import main

    main(["run", "bert_base"])
