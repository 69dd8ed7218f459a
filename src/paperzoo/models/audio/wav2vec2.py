r"""wav2vec 2.0.

Paper: "wav2vec 2.0: A Framework for Self-Supervised Learning of Speech Representations", Alexei Baevski,
Henry Zhou, Abdelrahman Mohamed, Michael Auli, NeurIPS 2020. https://arxiv.org/abs/2006.11477

Speech recognisers need thousands of hours of transcribed audio; people learn the sounds of a language from
listening long before they read. wav2vec 2.0 learns speech representations from raw, unlabelled audio by
masking parts of it and solving a contrastive task, then fine-tunes on a little labelled data (10 minutes of
transcribed speech are enough for a usable recogniser). Its parts (§2, Figure 1):

* Feature encoder f: X → Z. A stack of seven temporal convolutions (512 channels, kernel widths
  (10, 3, 3, 3, 3, 2, 2), strides (5, 2, 2, 2, 2, 2, 2)), each followed by a normalisation and a GELU, maps
  the 16 kHz waveform to one latent vector $z_t$ every 320 samples (20 ms), each seeing 400 samples (25 ms).
* Context network g: Z → C, a Transformer. Instead of absolute position embeddings it adds the output of one
  wide grouped convolution over time (kernel 128, 16 groups) followed by a GELU: a *relative* positional
  embedding that works for any length (:class:`ConvolutionalPositionEmbedding`).
* Masking (§3.1). A proportion p = 0.065 of all time steps is sampled, without replacement, as starting
  indices, and the M = 10 steps from each are masked (spans may overlap; about 49% of the steps end up
  masked): the context network sees one learned mask vector there instead of $z_t$ (:func:`compute_span_mask`).
  The quantisation module sees the unmasked features.
* Quantisation module (§2, "Quantization module"). Product quantisation: G = 2 codebooks of V = 320 entries
  each; $z_t$ is mapped to logits $l \in \mathbb{R}^{G \times V}$, one entry is chosen per codebook and the G
  entries are concatenated into $q_t$. The choice is made differentiable with the straight-through Gumbel
  softmax (eq. 1),

  $$
  p_{g,v} = \frac{\exp((l_{g,v} + n_v)/\tau)}{\sum_k \exp((l_{g,k} + n_k)/\tau)},
  \quad n = -\log(-\log(u)), \quad u \sim U(0, 1);
  $$

  the forward pass takes the argmax, the backward pass the gradient of the soft p (:class:`GumbelProductQuantizer`).
* Objective (§3.2): $L = L_m + \alpha L_d$ (eq. 2), $\alpha = 0.1$.
    - Contrastive loss (eq. 3): at every masked step t the context vector $c_t$ must pick the true quantised
      latent $q_t$ among K = 100 distractors sampled uniformly from the other masked steps of the same
      utterance (:func:`sample_negatives`),

      $$
      L_m = -\log \frac{\exp(\text{sim}(c_t, q_t)/\kappa)}
                        {\sum_{\tilde q \in Q_t} \exp(\text{sim}(c_t, \tilde q)/\kappa)},
      $$

      with cosine similarity sim and temperature $\kappa = 0.1$ (:func:`contrastive_loss`).
    - Diversity loss (eq. 4): maximise the entropy of the codebooks' average softmax distribution $\bar p_g$ over
      a batch, so that all V entries get used (:func:`diversity_loss`).
* After pre-training the quantiser is dropped and a linear layer on C, into the vocabulary of the task, is
  fine-tuned on transcripts with the CTC loss (§3.3; :class:`Wav2Vec2CTC`, :func:`ctc_loss`).

Data flow of wav2vec 2.0 BASE at 16,000 samples (one second)::

    waveform (N, 16000)
      feature encoder, 7 × [conv (kernel/stride) → norm → GELU]                          (N, 512, 49)
          (10/5) 3199 · (3/2) 1599 · 799 · 399 · 199 · (2/2) 99 · 49 frames, 512 channels each
      transpose, LayerNorm → "extract_features" Z                                         (N, 49, 512)
      linear projection to the model width, dropout                                       (N, 49, 768)
      [training] masked spans ← the learned mask embedding
      context network: x + GELU(grouped conv, kernel 128, 16 groups) → LayerNorm           (N, 49, 768)
          12 × Transformer layer (post-LN; LARGE: pre-LN with a final LayerNorm):
          x ─► self-attention (12 heads) ─(+)─► LN ─► FFN 768→3072→768, GELU ─(+)─► LN ─►
          └──────────────────────────────┘      └─────────────────────────────┘
      "last_hidden_state" C                                                               (N, 49, 768)
    pre-training (Wav2Vec2PreTraining):
      Z ─► dropout ─► logits (N, 49, 2, 320) ─► Gumbel one-hot per codebook ─► 2 entries of 128, concatenated
        ─► project_quantized 256 → 256: q_t                                               (N, 49, 256)
      C ─► project_context 768 → 256: c_t                                                 (N, 49, 256)
      loss at the masked steps: contrastive (q_t vs 100 distractors) + 0.1 · diversity
    fine-tuning (Wav2Vec2CTC):
      C ─► dropout ─► linear 768 → vocabulary (32 classes, the CTC blank among them)          (N, 49, 32)
      loss: CTC of the transcript (labels padded with -100) over the utterance's frames

    variants (§4.2): BASE 12 layers, 768 wide, FFN 3072 · LARGE 24 layers, 1024 wide, FFN 4096, 16 heads;
                     codebook entries of 128 (BASE) or 384 (LARGE) per group.

Which LARGE. The paper pre-trains LARGE on LibriSpeech (LS-960) and on LibriLight (LV-60k); its best results
come from LV-60k, and the LV-60k checkpoint the authors released (updated in October 2020, transformers'
``facebook/wav2vec2-large-lv60``) normalises with LayerNorm after every convolution of the feature encoder,
has convolution biases, and normalises before each Transformer sub-layer with a final LayerNorm (pre-LN,
transformers' ``do_stable_layer_norm``). ``wav2vec2_large`` is that model. The LS-960 LARGE checkpoint keeps
BASE's layout (GroupNorm after the first convolution only, no biases, post-LN): build it with
``wav2vec2_large(feature_encoder_norm="group", conv_bias=False, layer_norm_first=False)``.

Deviations from the paper, each to match the authors' released models (fairseq) and transformers'
``Wav2Vec2Model``/``Wav2Vec2ForPreTraining``, whose weights this model loads and whose outputs it reproduces:

* BASE has 12 attention heads, as the released checkpoint and transformers' config; the paper's §4.2 gives 8.
  The parameter count does not depend on it.
* BASE's feature encoder normalises only after its first convolution, with a GroupNorm of one group per
  channel (each channel normalised over time, per utterance), and its convolutions have no biases: the
  released BASE's "default" extractor. The paper's text puts a layer normalisation in every block; the LV-60k
  LARGE does that (``feature_encoder_norm="layer"``, LayerNorm over the channels of each frame).
* Between the feature encoder and the Transformer sit a LayerNorm over the 512 channels and a linear
  projection to the model width; the mask embedding replaces projected vectors. Z, the quantiser's input and
  the ``extract_features`` output, is the normalised 512-channel feature.
* The positional convolution's kernel is weight-normalised (Salimans & Kingma 2016, w = g · v / ‖v‖, one g per
  kernel tap, as ``torch.nn.utils.weight_norm(conv, dim=2)``); its output drops the last frame (an even
  kernel with padding 64 gives one frame too many).
* Diversity loss: the released code, and transformers, compute (G·V − Σ_g exp H(p̄_g)) / (G·V), the
  codebooks' perplexity, instead of eq. 4's (1/G·V) Σ_g −H(p̄_g); both are smallest for uniform code use.
  p̄_g is averaged over the masked steps (the quantiser's inputs in the released code).
* Losses are sums over the masked steps, not means: the contrastive loss is summed, and the diversity loss is
  multiplied by the number of masked steps, as the released code and transformers (the optimiser then sees
  the same total as theirs; divide by the number of masked steps for a per-step loss).
* A distractor that quantises to the same code as q_t is left out of eq. 3's denominator; distractors are
  drawn with replacement. Span masking rounds p·T probabilistically (⌊p·T + u⌋, u ~ U(0, 1)), masks at least
  two spans per utterance, and at most ⌊T / M⌋: the released code's ``compute_mask_indices`` and
  transformers' ``_compute_mask_indices`` (whose ``mask_time_prob`` is p·M, the masked proportion before
  overlaps, where this model's ``mask_prob`` is the paper's p).
* In training mode ``Wav2Vec2`` itself masks spans too (transformers' ``mask_time_prob``; the paper masks time
  steps when fine-tuning as well, §3.3), so that the mask embedding is trained whatever the model is trained
  for; evaluation mode never masks unless ``mask_time_indices`` is given.
* Dropout defaults follow the released pre-training configurations (BASE: 0.1 in the Transformer, on the
  projected features and on the quantiser's input, 0.1 on attention probabilities; LV-60k LARGE: none).
  LayerDrop defaults to 0, where the released BASE pre-training drops layers with probability 0.05: a dropped
  layer receives no gradient in that step; pass ``layerdrop=0.05`` to train as the authors did.
* Not implemented: the released pre-training recipe's L2 penalty on the feature encoder's activations and its
  scaling of the feature encoder's gradients (0.1 for BASE); transformers leaves them out too. The Gumbel
  temperature τ is an attribute of the quantiser (``quantizer.temperature``, 2 at first); the paper anneals it
  by a factor 0.999995 per update down to 0.5 (BASE) or 0.1 (LARGE): :func:`gumbel_temperature`.
* Evaluation-mode quantisation takes the argmax without noise, and the reported perplexity is that of the
  hard codes (transformers).
* Initialisation as transformers: linear layers N(0, 0.02²) with zero biases, except the feature projection
  and the two output projections (``nn.Linear``'s default) and the quantiser's logits (N(0, 1), zero bias);
  feature-encoder convolutions He-normal; the positional convolution's v ~ N(0, 4 / (128 · width)) with g =
  ‖v‖ and zero bias; the mask embedding and the codebooks U(0, 1).
* Fine-tuning (:class:`Wav2Vec2CTC`) as transformers' ``Wav2Vec2ForCTC``: the blank is the padding token
  (``blank_id`` 0, transformers' ``pad_token_id``), and a label equal to it counts as padding; the loss is summed
  over the batch by default (``ctc_loss_reduction="sum"``). Not implemented: the paper's masking of feature
  channels while fine-tuning (transformers' ``mask_feature_prob``, refused when not 0) and its schedule (only
  the output layer trained for the first 10k updates: freeze the rest yourself; ``freeze_feature_encoder()``
  keeps the convolutions fixed throughout, as the paper does).
* Inputs longer than ``max_samples`` (one minute by default, longer than every utterance the paper trains on,
  crops of at most 20 s, or evaluates on, LibriSpeech's at most 35 s) are refused with a ValueError that says
  to split the recording; self-attention's cost grows with the square of the length. ``max_samples=None``
  lifts the limit.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from paperzoo.layers import MultiHeadAttention, check_waveform_batch, values_are_known
from paperzoo.layers.checkpoint import checkpoint_module, checkpointing
from paperzoo.registry import InputSpec, ModelCard, Paper, register

__all__ = [
    "ContextNetwork", "ConvolutionalPositionEmbedding", "FeatureEncoder", "FeatureEncoderBlock", "FeatureProjection",
    "GumbelProductQuantizer", "TransformerLayer", "Wav2Vec2", "Wav2Vec2CTC", "Wav2Vec2PreTraining", "compute_span_mask",
    "contrastive_logits", "contrastive_loss", "ctc_loss", "diversity_loss", "gumbel_temperature", "sample_negatives",
]

# (kernel width, stride) of the seven convolutions of the feature encoder (§4.2); 512 channels each.
FEATURE_ENCODER_LAYERS = ((10, 5), (3, 2), (3, 2), (3, 2), (3, 2), (2, 2), (2, 2))


# --- the pre-training task: span masking, distractors, losses -------------------------------------------

def compute_span_mask(
    shape: tuple[int, int],
    *,
    mask_prob: float = 0.065,
    span_length: int = 10,
    min_spans: int = 2,
    frame_lengths: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """The paper's span masking (§3.1): a boolean mask ``(N, T)``, ``True`` at masked time steps.

    In each utterance of T steps (its ``frame_lengths`` entry when given: the padding is never masked),
    ⌊p·T + u⌋ starting indices (u ~ U(0, 1), so that the expected number is p·T; at least ``min_spans``, at
    most ⌊T / M⌋) are sampled without replacement from the T − M + 1 positions where a whole span fits, and the
    M = ``span_length`` steps from each are masked. Spans may overlap. An utterance shorter than one span is
    not masked. Random numbers come from ``generator`` (CPU), or torch's global generator.
    """
    if not 0.0 <= mask_prob <= 1.0 or span_length < 1 or min_spans < 0:
        raise ValueError(f"compute_span_mask needs 0 <= mask_prob <= 1, span_length >= 1 and min_spans >= 0; got "
                         f"{mask_prob}, {span_length}, {min_spans}")
    batch_size, num_frames = shape
    lengths = [num_frames] * batch_size if frame_lengths is None else [int(n) for n in frame_lengths.tolist()]
    mask = torch.zeros(batch_size, num_frames, dtype=torch.bool)
    span = torch.arange(span_length)
    for i, length in enumerate(lengths):
        rounding = torch.rand((), generator=generator).item()  # probabilistic rounding of p·T
        num_spans = min(max(int(mask_prob * length + rounding), min_spans), length // span_length)
        if num_spans == 0:
            continue
        starts = torch.randperm(length - span_length + 1, generator=generator)[:num_spans]  # without replacement
        mask[i, (starts[:, None] + span).flatten()] = True  # each start masks the M steps from it
    return mask.to(device)


def sample_negatives(
    mask_time_indices: torch.Tensor,
    num_negatives: int = 100,
    *,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """The K distractors of eq. 3 for every masked step: time indices ``(N, T, K)`` into the same utterance.

    For a masked step t of an utterance with m masked steps, K indices are drawn uniformly, with replacement,
    from the *other* m − 1 masked steps (never t itself). Entries at unmasked steps are 0 and never read.
    Every utterance needs no masked step or at least two.
    """
    mask = mask_time_indices.bool().cpu()
    batch_size, num_frames = mask.shape
    negatives = torch.zeros(batch_size, num_frames, num_negatives, dtype=torch.long)
    for i in range(batch_size):
        masked = mask[i].nonzero().squeeze(1)  # (m,) the masked steps of utterance i
        m = len(masked)
        if m == 0:
            continue
        if m == 1:
            raise ValueError("sample_negatives needs at least two masked steps in every utterance that has one "
                             "(a distractor must be another masked step)")
        draws = torch.randint(0, m - 1, (m, num_negatives), generator=generator)  # among m − 1 others
        draws += draws >= torch.arange(m)[:, None]  # skip the positive itself, keeping the draw uniform
        negatives[i, masked] = masked[draws]
    return negatives.to(mask_time_indices.device)


def contrastive_logits(
    context: torch.Tensor,
    quantized: torch.Tensor,
    mask_time_indices: torch.Tensor,
    negative_indices: torch.Tensor,
    temperature: float = 0.1,
) -> torch.Tensor:
    """The scores of eq. 3 at the M masked steps, ``(M, 1 + K)``: sim(c_t, q̃) / κ for the true q_t (column 0) and
    its K distractors; a distractor with the same code as q_t is the same vector, cannot be told apart, and
    scores −∞ (it leaves the sum). Arguments as :func:`contrastive_loss`."""
    batch, time = mask_time_indices.nonzero(as_tuple=True)  # the M masked (utterance, step) pairs
    c = context[batch, time]  # (M, D)
    positive = quantized[batch, time]  # (M, D)
    distractors = quantized[batch[:, None], negative_indices[batch, time]]  # (M, K, D)
    candidates = torch.cat([positive[:, None], distractors], dim=1)  # Q_t = {q_t} ∪ distractors: (M, 1 + K, D)
    logits = F.cosine_similarity(c[:, None], candidates, dim=-1) / temperature  # sim(c_t, q̃) / κ: (M, 1 + K)
    same_as_positive = (distractors == positive[:, None]).all(dim=-1)  # (M, K)
    return torch.cat([logits[:, :1], logits[:, 1:].masked_fill(same_as_positive, -math.inf)], dim=1)


def contrastive_loss(
    context: torch.Tensor,
    quantized: torch.Tensor,
    mask_time_indices: torch.Tensor,
    negative_indices: torch.Tensor,
    temperature: float = 0.1,
) -> torch.Tensor:
    r"""Eq. 3, summed over the masked steps:
    $-\log \exp(\text{sim}(c_t, q_t)/\kappa) / \sum_{\tilde q \in Q_t} \exp(\text{sim}(c_t, \tilde q)/\kappa)$.

    Args:
        context: c_t, the projected context vectors ``(N, T, D)``.
        quantized: q_t, the projected quantised latents ``(N, T, D)``.
        mask_time_indices: boolean ``(N, T)``, the masked steps (the only ones with a loss).
        negative_indices: ``(N, T, K)`` time indices of each step's distractors in its own utterance.
        temperature: κ.
    """
    logits = contrastive_logits(context, quantized, mask_time_indices, negative_indices, temperature)
    target = torch.zeros(len(logits), dtype=torch.long, device=logits.device)  # the true q_t is candidate 0
    return F.cross_entropy(logits, target, reduction="sum")


def diversity_loss(perplexity: torch.Tensor, num_groups: int, num_entries: int) -> torch.Tensor:
    """The diversity penalty as the released code computes it: (G·V − Σ_g exp H(p̄_g)) / (G·V).

    ``perplexity`` is Σ_g exp H(p̄_g), the codebooks' perplexity (:meth:`GumbelProductQuantizer.perplexity`);
    it reaches G·V, and the penalty 0, when every entry of every codebook is used equally often. Eq. 4's
    (1/G·V) Σ_g −H(p̄_g) has the same minimiser.
    """
    total = num_groups * num_entries
    return (total - perplexity) / total


def gumbel_temperature(update: int, *, start: float = 2.0, end: float = 0.5, decay: float = 0.999995) -> float:
    """The Gumbel softmax temperature τ after ``update`` updates (§4.2): max(start · decay^update, end); the
    paper anneals from 2 to 0.5 (BASE) or 0.1 (LARGE). Set it with ``model.quantizer.temperature = τ``."""
    return max(start * decay**update, end)


# --- the feature encoder f: X → Z -----------------------------------------------------------------------

class FeatureEncoderBlock(nn.Module):
    """One temporal convolution, an optional normalisation, and a GELU.

    ``norm`` is ``"group"`` (a GroupNorm with one group per channel: each channel normalised over time),
    ``"layer"`` (a LayerNorm over the channels of each frame) or ``None``.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int, *, bias: bool,
                 norm: str | None) -> None:
        super().__init__()
        self.conv = nn.Conv1d(in_channels, out_channels, kernel_size, stride=stride, bias=bias)
        self.norm_kind = norm
        if norm == "group":
            self.norm: nn.Module = nn.GroupNorm(out_channels, out_channels)
        elif norm == "layer":
            self.norm = nn.LayerNorm(out_channels)
        elif norm is None:
            self.norm = nn.Identity()
        else:
            raise ValueError(f"unknown feature-encoder norm {norm!r}; expected 'group', 'layer' or None")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x)  # (N, C, T_out)
        if self.norm_kind == "layer":  # over the channels of each frame: (N, T, C) for the LayerNorm
            x = self.norm(x.transpose(1, 2)).transpose(1, 2)
        else:
            x = self.norm(x)
        return F.gelu(x)


class FeatureEncoder(nn.Module):
    """f: X → Z, seven convolutions from the waveform to one 512-channel frame every 320 samples.

    ``norm="group"``: GroupNorm after the first convolution only (BASE); ``"layer"``: LayerNorm after each (the
    LV-60k LARGE, and the paper's text).
    """

    grad_checkpointing = False  # Wav2Vec2.set_grad_checkpointing

    def __init__(self, channels: int = 512, layers: tuple[tuple[int, int], ...] = FEATURE_ENCODER_LAYERS, *,
                 norm: str = "group", bias: bool = False) -> None:
        super().__init__()
        if norm not in ("group", "layer"):
            raise ValueError(f"unknown feature-encoder norm {norm!r}; expected 'group' or 'layer'")
        self.layers = layers
        self.blocks = nn.ModuleList(
            FeatureEncoderBlock(1 if i == 0 else channels, channels, kernel, stride, bias=bias,
                                norm=norm if norm == "layer" or i == 0 else None)
            for i, (kernel, stride) in enumerate(layers))

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        x = waveform[:, None]  # one input channel: (N, 1, samples)
        for block in self.blocks:
            x = checkpoint_module(block, x) if checkpointing(self) else block(x)
        return x  # (N, 512, T)

    def output_lengths(self, samples: torch.Tensor) -> torch.Tensor:
        """Frames of the output for inputs of ``samples`` samples: ⌊(L − kernel) / stride⌋ + 1 per layer."""
        for kernel, stride in self.layers:
            samples = torch.div(samples - kernel, stride, rounding_mode="floor") + 1
        return samples

    @property
    def receptive_field(self) -> int:
        """Samples one output frame sees: 400 (25 ms at 16 kHz) for the paper's encoder."""
        field, jump = 1, 1
        for kernel, stride in self.layers:
            field += (kernel - 1) * jump
            jump *= stride
        return field


class FeatureProjection(nn.Module):
    """LayerNorm over the encoder's channels (this is Z, the quantiser's input), then a linear map to the
    Transformer's width and dropout. Returns ``(projected, normalised)``."""

    def __init__(self, in_features: int, out_features: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(in_features)
        self.projection = nn.Linear(in_features, out_features)
        self.dropout = nn.Dropout(dropout)

    def forward(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        normalised = self.norm(features)
        return self.dropout(self.projection(normalised)), normalised


# --- the context network g: Z → C -----------------------------------------------------------------------

class ConvolutionalPositionEmbedding(nn.Module):
    """The relative positional embedding (§2): GELU(grouped convolution over time), added to the input.

    A kernel of 128 frames (2.56 s) with 16 groups; the kernel is weight-normalised (w = g · v / ‖v‖ with one
    magnitude g per kernel tap), as in the released code. ``weight_g`` and ``weight_v`` are g and v.
    """

    def __init__(self, width: int, kernel_size: int = 128, groups: int = 16) -> None:
        super().__init__()
        if width % groups != 0:
            raise ValueError(f"the width ({width}) must be divisible by the positional convolution's groups ({groups})")
        self.kernel_size = kernel_size
        self.groups = groups
        self.weight_v = nn.Parameter(torch.empty(width, width // groups, kernel_size))  # direction v
        self.weight_g = nn.Parameter(torch.empty(1, 1, kernel_size))  # magnitude g, one per tap
        self.bias = nn.Parameter(torch.zeros(width))
        with torch.no_grad():  # the released initialisation: v ~ N(0, 4 / (kernel · width)), g = ‖v‖, so w = v
            nn.init.normal_(self.weight_v, std=2 * math.sqrt(1 / (kernel_size * width)))
            self.weight_g.copy_(self.weight_v.norm(dim=(0, 1), keepdim=True))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        frames = x.shape[1]
        weight = self.weight_v * (self.weight_g / self.weight_v.norm(dim=(0, 1), keepdim=True))  # w = g·v/‖v‖
        y = F.conv1d(x.transpose(1, 2), weight, self.bias, padding=self.kernel_size // 2, groups=self.groups)
        y = y[:, :, :frames]  # an even kernel with padding K/2 gives T + 1 frames: drop the last one
        return F.gelu(y).transpose(1, 2)  # (N, T, width)


class FeedForward(nn.Module):
    """The position-wise feed-forward network: linear → GELU → dropout → linear → dropout."""

    def __init__(self, width: int, hidden: int, activation_dropout: float, dropout: float) -> None:
        super().__init__()
        self.fc1 = nn.Linear(width, hidden)
        self.fc2 = nn.Linear(hidden, width)
        self.activation_dropout = nn.Dropout(activation_dropout)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.fc2(self.activation_dropout(F.gelu(self.fc1(x)))))


class TransformerLayer(nn.Module):
    """One Transformer encoder layer: self-attention and a feed-forward network, each with a residual.

    ``layer_norm_first=False`` (BASE, the original Transformer): x ← LN(x + Attn(x)); x ← LN(x + FFN(x)).
    ``True`` (the LV-60k LARGE): x ← x + Attn(LN(x)); x ← x + FFN(LN(x)), which trains more stably when deep.
    """

    def __init__(self, width: int, num_heads: int, ffn_dim: int, *, layer_norm_first: bool, dropout: float,
                 attention_dropout: float, activation_dropout: float) -> None:
        super().__init__()
        self.layer_norm_first = layer_norm_first
        self.attention = MultiHeadAttention(width, num_heads, attention_dropout=attention_dropout)
        self.attention_norm = nn.LayerNorm(width)
        self.dropout = nn.Dropout(dropout)
        self.feed_forward = FeedForward(width, ffn_dim, activation_dropout, dropout)
        self.feed_forward_norm = nn.LayerNorm(width)

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None = None) -> torch.Tensor:
        if self.layer_norm_first:
            x = x + self.dropout(self.attention(self.attention_norm(x), attn_mask=attn_mask))
            return x + self.feed_forward(self.feed_forward_norm(x))
        x = self.attention_norm(x + self.dropout(self.attention(x, attn_mask=attn_mask)))
        return self.feed_forward_norm(x + self.feed_forward(x))


class ContextNetwork(nn.Module):
    """g: Z → C. Adds the convolutional position embedding, then runs the Transformer layers.

    Post-LN (BASE): LayerNorm right after adding the position embedding (``input_norm``). Pre-LN (LV-60k
    LARGE): each layer normalises its own inputs, and one LayerNorm closes the stack (``output_norm``).
    Frames outside ``frame_mask`` (padding) are zeroed before the positional convolution and never attended to.
    """

    grad_checkpointing = False  # Wav2Vec2.set_grad_checkpointing

    def __init__(self, width: int, num_layers: int, num_heads: int, ffn_dim: int, *, layer_norm_first: bool,
                 position_kernel_size: int, position_groups: int, dropout: float, attention_dropout: float,
                 activation_dropout: float, layerdrop: float) -> None:
        super().__init__()
        self.layer_norm_first = layer_norm_first
        self.layerdrop = layerdrop
        self.position_embedding = ConvolutionalPositionEmbedding(width, position_kernel_size, position_groups)
        if not layer_norm_first:
            self.input_norm = nn.LayerNorm(width)
        self.dropout = nn.Dropout(dropout)
        self.layers = nn.ModuleList(
            TransformerLayer(width, num_heads, ffn_dim, layer_norm_first=layer_norm_first, dropout=dropout,
                             attention_dropout=attention_dropout, activation_dropout=activation_dropout)
            for _ in range(num_layers))
        if layer_norm_first:
            self.output_norm = nn.LayerNorm(width)

    def forward(self, x: torch.Tensor, frame_mask: torch.Tensor | None = None) -> torch.Tensor:
        attn_mask = None
        if frame_mask is not None:
            x = x.masked_fill(~frame_mask[..., None], 0.0)  # padding must not leak in through the convolution
            attn_mask = frame_mask[:, None, None, :]  # (N, 1, 1, T): True at real frames, the keys one may attend
        x = x + self.position_embedding(x)
        if not self.layer_norm_first:
            x = self.input_norm(x)
        x = self.dropout(x)
        for layer in self.layers:
            # LayerDrop (Fan et al. 2019): in training, skip each whole layer with probability ``layerdrop``.
            if self.training and self.layerdrop > 0 and torch.rand(()) < self.layerdrop:
                continue
            x = checkpoint_module(layer, x, attn_mask) if checkpointing(self) else layer(x, attn_mask)
        return self.output_norm(x) if self.layer_norm_first else x


# --- the model ------------------------------------------------------------------------------------------

class Wav2Vec2(nn.Module):
    """wav2vec 2.0: feature encoder, (masking), context network. ``forward(waveform, attention_mask=None,
    mask_time_indices=None)`` returns ``{"last_hidden_state": C (N, T, hidden_size), "extract_features": Z
    (N, T, 512)}`` with T = the number of 20 ms frames.

    Args:
        hidden_size: the Transformer's width (768 BASE, 1024 LARGE).
        num_layers: Transformer layers (12, 24).
        num_heads: attention heads per layer (12, 16).
        ffn_dim: the feed-forward network's hidden width (3072, 4096).
        feature_channels: channels of every feature-encoder convolution (512).
        feature_encoder_norm: ``"group"`` (GroupNorm after the first convolution, BASE) or ``"layer"``
            (LayerNorm after every convolution, the LV-60k LARGE).
        conv_bias: whether the feature encoder's convolutions have biases.
        layer_norm_first: pre-LN Transformer layers with a final LayerNorm (LV-60k LARGE) instead of post-LN.
        position_kernel_size, position_groups: the positional convolution's kernel width (128) and groups (16).
        dropout: in the Transformer (after attention, in and after the feed-forward network, after the position
            embedding).
        attention_dropout: on the attention probabilities.
        activation_dropout: after the feed-forward network's GELU.
        feature_dropout: on the projected features, before masking (the paper's dropout "at the output of the
            feature encoder").
        layerdrop: probability of skipping each Transformer layer in a training step.
        mask_prob: p, the proportion of time steps sampled as span starts in training mode (0 disables masking).
        mask_span_length: M, the span length.
        mask_min_spans: the fewest spans masked per utterance.
        max_samples: the longest input taken (``None``: no limit).

    ``set_grad_checkpointing()`` checkpoints each feature-encoder block and Transformer layer in training.
    """

    model_name = "wav2vec2"
    min_input_size = 400  # the receptive field of one frame (25 ms); 399 samples give no frame (checked: transformers)

    def __init__(
        self,
        hidden_size: int = 768,
        num_layers: int = 12,
        num_heads: int = 12,
        ffn_dim: int = 3072,
        feature_channels: int = 512,
        feature_encoder_norm: str = "group",
        conv_bias: bool = False,
        layer_norm_first: bool = False,
        position_kernel_size: int = 128,
        position_groups: int = 16,
        dropout: float = 0.1,
        attention_dropout: float = 0.1,
        activation_dropout: float = 0.0,
        feature_dropout: float = 0.1,
        layerdrop: float = 0.0,
        mask_prob: float = 0.065,
        mask_span_length: int = 10,
        mask_min_spans: int = 2,
        max_samples: int | None = 16000 * 60,
    ) -> None:
        super().__init__()
        self.hidden_size = hidden_size
        self.feature_channels = feature_channels
        self.layer_norm_first = layer_norm_first
        self.mask_prob = mask_prob
        self.mask_span_length = mask_span_length
        self.mask_min_spans = mask_min_spans
        self.max_samples = max_samples

        self.feature_encoder = FeatureEncoder(feature_channels, norm=feature_encoder_norm, bias=conv_bias)
        self.feature_projection = FeatureProjection(feature_channels, hidden_size, feature_dropout)
        self.mask_embedding = nn.Parameter(torch.empty(hidden_size))  # the one learned vector of masked steps
        self.context_network = ContextNetwork(
            hidden_size, num_layers, num_heads, ffn_dim, layer_norm_first=layer_norm_first,
            position_kernel_size=position_kernel_size, position_groups=position_groups, dropout=dropout,
            attention_dropout=attention_dropout, activation_dropout=activation_dropout, layerdrop=layerdrop)
        self._init_weights()

    def _init_weights(self) -> None:
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.normal_(module.weight, std=0.02)
                nn.init.zeros_(module.bias)
            elif isinstance(module, nn.Conv1d):
                nn.init.kaiming_normal_(module.weight)
                if module.bias is not None:
                    bound = math.sqrt(module.groups / (module.in_channels * module.kernel_size[0]))
                    nn.init.uniform_(module.bias, -bound, bound)
        self.feature_projection.projection.reset_parameters()
        nn.init.uniform_(self.mask_embedding)

    def num_frames(self, samples: int | torch.Tensor) -> torch.Tensor:
        """Frames the feature encoder makes of ``samples`` samples (an int, or a tensor of lengths)."""
        return self.feature_encoder.output_lengths(torch.as_tensor(samples))

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Checkpoint each feature-encoder block and each Transformer layer in training: their activations are
        recomputed in the backward pass."""
        self.feature_encoder.grad_checkpointing = self.context_network.grad_checkpointing = enable

    def check_inputs(self, waveform: Any, attention_mask: Any = None, *, name: str | None = None) -> None:
        """Raise ValueError unless ``waveform`` is ``(N, samples)`` float audio within the length limits and
        ``attention_mask`` (if given) is ``(N, samples)`` of 1 at the audio and 0 at the padding that follows."""
        name = name or self.model_name
        check_waveform_batch(waveform, model=self, name=name, min_samples=self.min_input_size)
        samples = waveform.shape[1]
        if self.max_samples is not None and samples > self.max_samples:
            raise ValueError(
                f"{name} expects a float tensor of shape (N, samples) of 16 kHz audio with {self.min_input_size} "
                f"<= samples <= {self.max_samples}; got {tuple(waveform.shape)}: {samples} samples "
                f"({samples / 16000:.1f} s); split the recording into shorter pieces, or build the model with "
                "max_samples=None")
        if attention_mask is not None:
            check_padding_mask(attention_mask, name=name, shape=tuple(waveform.shape), min_samples=self.min_input_size)

    def frame_mask(self, attention_mask: torch.Tensor, num_frames: int) -> torch.Tensor:
        """The frames ``(N, T)`` computed from audio only: ``True`` before each utterance's frame count."""
        lengths = self.num_frames(attention_mask.long().sum(dim=1))  # real samples → real frames
        return torch.arange(num_frames, device=attention_mask.device) < lengths[:, None]

    def forward(self, waveform: torch.Tensor, attention_mask: torch.Tensor | None = None, *,
                mask_time_indices: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Encode ``waveform`` (N, samples) of 16 kHz audio.

        Args:
            attention_mask: optional ``(N, samples)``, 1 (``True``) at audio and 0 at the padding after it.
            mask_time_indices: optional boolean ``(N, T)``: the steps replaced by the mask embedding. In training
                mode, when not given, spans are sampled with :func:`compute_span_mask` (if ``mask_prob > 0``).

        Returns ``{"last_hidden_state": (N, T, hidden_size), "extract_features": (N, T, 512)}``.
        """
        self.check_inputs(waveform, attention_mask)
        return self.encode(waveform, attention_mask, mask_time_indices)[0]

    def encode(self, waveform: torch.Tensor, attention_mask: torch.Tensor | None = None,
               mask_time_indices: torch.Tensor | None = None) -> tuple[dict[str, torch.Tensor], torch.Tensor | None]:
        """The forward pass without the input checks; also returns the mask it applied (or ``None``)."""
        features = self.feature_encoder(waveform).transpose(1, 2)  # (N, T, 512)
        n, frames, _ = features.shape
        frame_mask = None if attention_mask is None else self.frame_mask(attention_mask, frames)
        x, extract_features = self.feature_projection(features)  # (N, T, hidden), (N, T, 512)
        if mask_time_indices is None and self.training and self.mask_prob > 0:
            lengths = None if frame_mask is None else frame_mask.sum(dim=1)
            mask_time_indices = compute_span_mask((n, frames), mask_prob=self.mask_prob,
                                                  span_length=self.mask_span_length, min_spans=self.mask_min_spans,
                                                  frame_lengths=lengths, device=x.device)
        if mask_time_indices is not None:
            mask_time_indices = check_time_mask(mask_time_indices, (n, frames), name=self.model_name)
            x = torch.where(mask_time_indices[..., None], self.mask_embedding.to(x.dtype), x)
        hidden = self.context_network(x, frame_mask)
        return {"last_hidden_state": hidden, "extract_features": extract_features}, mask_time_indices


def check_padding_mask(mask: Any, *, name: str, shape: tuple[int, int], min_samples: int) -> None:
    """Check an audio padding mask: ``shape`` ``(N, samples)``, 1 (``True``) at audio and 0 at padding, the
    padding after the audio, and at least ``min_samples`` samples of audio per row."""
    expected = (f"{name} expects an attention mask of shape (N, samples) = {shape}: 1 at audio samples, 0 at the "
                f"padding after them, with at least {min_samples} audio samples per row")
    if not isinstance(mask, torch.Tensor):
        raise ValueError(f"{expected}; got {type(mask).__name__}: convert it with torch.as_tensor(mask)")
    got = tuple(mask.shape)
    problem = None
    if got != shape:
        problem = "a mask that does not match the waveforms; pass one entry per sample"
    elif values_are_known(mask):
        if not bool(((mask == 0) | (mask == 1)).all()):
            problem = "values other than 0 and 1"
        elif bool((mask[:, 1:].long() > mask[:, :-1].long()).any()):
            problem = "audio after padding; pad at the end of each waveform (right padding)"
        elif int(mask.long().sum(dim=1).min()) < min_samples:
            problem = f"a row with fewer than {min_samples} audio samples (less than one frame)"
    if problem is not None:
        raise ValueError(f"{expected}; got {got}: {problem}")


def check_time_mask(mask: Any, shape: tuple[int, int], *, name: str) -> torch.Tensor:
    """``mask_time_indices`` must be ``(N, T)`` (T frames); returned as booleans."""
    if not isinstance(mask, torch.Tensor) or tuple(mask.shape) != shape:
        got = tuple(mask.shape) if isinstance(mask, torch.Tensor) else type(mask).__name__
        raise ValueError(f"{name} expects mask_time_indices of shape (N, T) = {shape}, one entry per frame; "
                         f"got {got}")
    return mask.bool()


class GumbelProductQuantizer(nn.Module):
    r"""Product quantisation with the straight-through Gumbel softmax (§2, eq. 1).

    ``to_logits`` maps each $z_t$ to logits $l \in \mathbb{R}^{G \times V}$; one entry of each of the G codebooks
    ``codebooks`` ``(G, V, d / G)`` is chosen and the G entries are concatenated into a d-dimensional vector. Training:
    the hard Gumbel softmax at temperature ``temperature`` (one-hot forward, the soft probabilities' gradient backward).
    Evaluation: the argmax, no noise. Returns ``(quantized (N, T, d), perplexity)``.
    """

    def __init__(self, input_dim: int = 512, num_groups: int = 2, num_entries: int = 320, codevector_dim: int = 256,
                 temperature: float = 2.0) -> None:
        super().__init__()
        if codevector_dim % num_groups != 0:
            raise ValueError(f"codevector_dim ({codevector_dim}) must be divisible by num_groups ({num_groups})")
        self.num_groups = num_groups
        self.num_entries = num_entries
        self.temperature = temperature
        self.to_logits = nn.Linear(input_dim, num_groups * num_entries)
        self.codebooks = nn.Parameter(torch.empty(num_groups, num_entries, codevector_dim // num_groups))
        nn.init.normal_(self.to_logits.weight, std=1.0)
        nn.init.zeros_(self.to_logits.bias)
        nn.init.uniform_(self.codebooks)

    @staticmethod
    def perplexity(probs: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Σ_g exp H(p̄_g), with p̄_g the codebook-g distribution ``probs`` (N, T, G, V) averaged over the steps
        of ``mask`` (all steps if ``None``)."""
        if mask is not None:
            average = probs[mask].sum(dim=0) / mask.sum()  # (G, V) over the masked steps
        else:
            average = probs.flatten(0, 1).mean(dim=0)
        entropy = -torch.xlogy(average, average).sum(dim=-1)  # H(p̄_g), (G,)
        return entropy.exp().sum()

    def forward(self, z: torch.Tensor, mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        n, t, _ = z.shape
        logits = self.to_logits(z).view(n, t, self.num_groups, self.num_entries)  # l: (N, T, G, V)
        if self.training:
            # eq. 1: argmax of (l + Gumbel noise) / τ forward, the soft probabilities' gradient backward
            codes = F.gumbel_softmax(logits.float(), tau=self.temperature, hard=True).type_as(logits)
            perplexity = self.perplexity(torch.softmax(logits.float(), dim=-1), mask)  # no noise, no τ (eq. 4)
        else:
            codes = torch.zeros_like(logits).scatter_(-1, logits.argmax(dim=-1, keepdim=True), 1.0)  # one-hot
            perplexity = self.perplexity(codes, mask)
        # pick one entry per codebook (a one-hot product) and concatenate the G entries: (N, T, G · d/G)
        quantized = torch.einsum("ntgv,gvd->ntgd", codes, self.codebooks).flatten(2)
        return quantized, perplexity


class Wav2Vec2PreTraining(nn.Module):
    """wav2vec 2.0 with its pre-training task: the quantiser, the two output projections, and the loss.

    ``forward(waveform, attention_mask=None, mask_time_indices=None, sampled_negative_indices=None)`` returns
    a dict: ``last_hidden_state`` and ``extract_features`` (as :class:`Wav2Vec2`), ``projected_states`` c_t
    ``(N, T, final_dim)``, ``projected_quantized_states`` q_t ``(N, T, final_dim)``, ``codevector_perplexity``;
    and, when a loss is computed, ``loss`` = ``contrastive_loss`` + α · ``diversity_loss`` (both summed over
    the masked steps) and the boolean ``mask_time_indices`` it used.

    A loss is computed in training mode (spans masked with :func:`compute_span_mask` unless given) and whenever
    ``mask_time_indices`` is given; distractors are drawn with :func:`sample_negatives` unless
    ``sampled_negative_indices`` ``(N, T, K)`` (time indices into the same utterance) are given. Evaluation mode
    without ``mask_time_indices`` masks nothing, computes no loss, and is deterministic.

    Args: those of :class:`Wav2Vec2`, and
        num_codebooks: G (2). codebook_size: V (320). codevector_dim: d, the concatenated entries' width
            (256 BASE, 768 LARGE). final_dim: the width c_t and q_t are projected to for the similarity
            (256, 768). num_negatives: K (100). contrastive_temperature: κ (0.1). diversity_weight: α (0.1).
        quantizer_dropout: dropout on Z before the quantiser (the paper's "input to the quantization module").

    ``set_grad_checkpointing()`` checkpoints each feature-encoder block and Transformer layer in training.
    """

    model_name = "wav2vec2_pretraining"
    min_input_size = Wav2Vec2.min_input_size

    def __init__(
        self,
        num_codebooks: int = 2,
        codebook_size: int = 320,
        codevector_dim: int = 256,
        final_dim: int = 256,
        num_negatives: int = 100,
        contrastive_temperature: float = 0.1,
        diversity_weight: float = 0.1,
        quantizer_dropout: float = 0.1,
        **wav2vec2_kwargs: Any,
    ) -> None:
        super().__init__()
        self.wav2vec2 = Wav2Vec2(**wav2vec2_kwargs)
        self.hidden_size = self.wav2vec2.hidden_size
        self.num_negatives = num_negatives
        self.contrastive_temperature = contrastive_temperature
        self.diversity_weight = diversity_weight
        self.quantizer_dropout = nn.Dropout(quantizer_dropout)
        self.quantizer = GumbelProductQuantizer(self.wav2vec2.feature_channels, num_codebooks, codebook_size,
                                                codevector_dim)
        self.project_context = nn.Linear(self.hidden_size, final_dim)
        self.project_quantized = nn.Linear(codevector_dim, final_dim)

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Checkpoint each feature-encoder block and Transformer layer in training
        (:meth:`Wav2Vec2.set_grad_checkpointing`)."""
        self.wav2vec2.set_grad_checkpointing(enable)

    def forward(self, waveform: torch.Tensor, attention_mask: torch.Tensor | None = None, *,
                mask_time_indices: torch.Tensor | None = None,
                sampled_negative_indices: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        self.wav2vec2.check_inputs(waveform, attention_mask, name=self.model_name)
        compute_loss = self.training or mask_time_indices is not None
        encoded, mask = self.wav2vec2.encode(waveform, attention_mask, mask_time_indices)
        context = self.project_context(encoded["last_hidden_state"])  # c_t: (N, T, final_dim)
        # The quantiser sees the unmasked features Z (§3.1: "we do not mask inputs to the quantization module").
        quantized, perplexity = self.quantizer(self.quantizer_dropout(encoded["extract_features"]), mask)
        quantized = self.project_quantized(quantized)  # q_t: (N, T, final_dim)
        out = {**encoded, "projected_states": context, "projected_quantized_states": quantized,
               "codevector_perplexity": perplexity}
        if not compute_loss or mask is None:  # e.g. training with mask_prob = 0: nothing to predict
            return out
        if sampled_negative_indices is None:
            sampled_negative_indices = sample_negatives(mask, self.num_negatives)
        elif tuple(sampled_negative_indices.shape[:2]) != tuple(mask.shape) or sampled_negative_indices.ndim != 3:
            raise ValueError(f"{self.model_name} expects sampled_negative_indices of shape (N, T, K) with (N, T) = "
                             f"{tuple(mask.shape)}; got {tuple(sampled_negative_indices.shape)}")
        contrastive = contrastive_loss(context, quantized, mask, sampled_negative_indices.long(),
                                       self.contrastive_temperature)
        # Σ over the masked steps, as the contrastive loss: the per-batch penalty times the number of masked steps
        diversity = diversity_loss(perplexity, self.quantizer.num_groups, self.quantizer.num_entries) * mask.sum()
        out.update(loss=contrastive + self.diversity_weight * diversity, contrastive_loss=contrastive,
                   diversity_loss=diversity, mask_time_indices=mask)
        return out


# --- fine-tuning for speech recognition: a linear layer and CTC -------------------------------------------

CTC_REDUCTIONS = ("sum", "mean", "none")
IGNORE_INDEX = -100  # the label padding, as transformers' data collators write it


def ctc_loss(logits: torch.Tensor, labels: torch.Tensor, frame_lengths: torch.Tensor, *, blank_id: int = 0,
             reduction: str = "sum", zero_infinity: bool = False) -> torch.Tensor:
    """Connectionist temporal classification (Graves et al. 2006), the fine-tuning loss of §3.3: the negative
    log-probability of each transcript summed over every frame-level alignment of it (any number of blanks
    between and around its labels, each label repeated over consecutive frames).

    Args:
        logits: ``(N, T, vocabulary)`` frame-level scores.
        labels: ``(N, U)`` transcripts, padded at the end with -100 (transformers' label padding); the blank
            id marks padding too (a transcript never contains the blank), as in transformers.
        frame_lengths: ``(N,)`` frames computed from audio (the rest is padding).
        blank_id: the blank (transformers: the padding token, ``pad_token_id``).
        reduction: ``"sum"`` over the batch (transformers' default), ``"mean"`` (each loss divided by its
            transcript's length, then averaged: ``F.ctc_loss``'s) or ``"none"``.
        zero_infinity: an impossible alignment (a transcript longer than its frames allow) gives 0 instead of ∞.
    """
    targets = (labels != IGNORE_INDEX) & (labels != blank_id)  # (N, U)
    log_probs = F.log_softmax(logits, dim=-1, dtype=torch.float32).transpose(0, 1)  # (T, N, V), as ctc_loss wants
    return F.ctc_loss(log_probs, labels.masked_select(targets), frame_lengths, targets.sum(dim=-1), blank=blank_id,
                      reduction=reduction, zero_infinity=zero_infinity)


class Wav2Vec2CTC(nn.Module):
    """wav2vec 2.0 fine-tuned for speech recognition (§3.3): a randomly initialised linear projection of the
    context vectors C into the vocabulary (characters and a word boundary in the paper; the blank of CTC
    included), trained with CTC (transformers' ``Wav2Vec2ForCTC``).

    ``forward(waveform, attention_mask=None, *, labels=None, mask_time_indices=None)`` returns ``{"logits":
    (N, T, vocab_size), "last_hidden_state", "extract_features"}``, and ``"loss"`` (:func:`ctc_loss`) when
    ``labels`` ``(N, U)`` are given: each transcript's ids padded at the end with -100. In training mode time
    steps are masked as in :class:`Wav2Vec2` (``mask_prob``; the paper masks when fine-tuning too, §3.3).
    Greedy decoding takes ``logits.argmax(-1)``, merges repeats and drops blanks.

    Args: those of :class:`Wav2Vec2`, and
        vocab_size: output classes, the blank included (32: transformers' default and the released
            LibriSpeech models' character vocabulary).
        blank_id: the CTC blank (transformers: ``pad_token_id``, 0).
        final_dropout: dropout on C before the projection.
        ctc_loss_reduction: ``"sum"`` (transformers' default), ``"mean"`` or ``"none"``.
        ctc_zero_infinity: zero the loss (and its gradient) of a transcript too long for its audio.

    ``freeze_feature_encoder()`` stops training the convolutional feature encoder, as the paper fine-tunes
    ("the feature encoder is not trained during fine-tuning", §4.3).
    """

    model_name = "wav2vec2_ctc"
    min_input_size = Wav2Vec2.min_input_size

    def __init__(self, vocab_size: int = 32, blank_id: int = 0, final_dropout: float = 0.1,
                 ctc_loss_reduction: str = "sum", ctc_zero_infinity: bool = False, **wav2vec2_kwargs: Any) -> None:
        super().__init__()
        if ctc_loss_reduction not in CTC_REDUCTIONS:
            raise ValueError(f"ctc_loss_reduction={ctc_loss_reduction!r}: expected one of {', '.join(CTC_REDUCTIONS)}")
        if not 0 <= blank_id < vocab_size:
            raise ValueError(f"blank_id={blank_id}: the blank must be one of the vocab_size={vocab_size} classes")
        self.wav2vec2 = Wav2Vec2(**wav2vec2_kwargs)
        self.hidden_size = self.wav2vec2.hidden_size
        self.vocab_size = vocab_size
        self.blank_id = blank_id
        self.ctc_loss_reduction = ctc_loss_reduction
        self.ctc_zero_infinity = ctc_zero_infinity
        self.final_dropout = nn.Dropout(final_dropout)
        self.ctc_head = nn.Linear(self.hidden_size, vocab_size)
        nn.init.normal_(self.ctc_head.weight, std=0.02)  # transformers' initialisation of linear layers
        nn.init.zeros_(self.ctc_head.bias)

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Checkpoint each feature-encoder block and Transformer layer in training
        (:meth:`Wav2Vec2.set_grad_checkpointing`)."""
        self.wav2vec2.set_grad_checkpointing(enable)

    def freeze_feature_encoder(self) -> None:
        """Keep the convolutional feature encoder as pre-trained: its parameters get no gradient (§4.3)."""
        for parameter in self.wav2vec2.feature_encoder.parameters():
            parameter.requires_grad_(False)

    def check_labels(self, labels: Any, batch_size: int) -> None:
        """``labels`` must be integer ``(N, U)``: ids in [0, vocab_size), then -100 padding."""
        expected = (f"{self.model_name} expects labels of shape (N, U) with N = {batch_size}: integer ids in "
                    f"[0, {self.vocab_size}) padded at the end with {IGNORE_INDEX}")
        if not isinstance(labels, torch.Tensor) or labels.ndim != 2 or labels.shape[0] != batch_size:
            got = tuple(labels.shape) if isinstance(labels, torch.Tensor) else type(labels).__name__
            raise ValueError(f"{expected}; got {got}")
        if labels.is_floating_point() or labels.dtype == torch.bool:
            raise ValueError(f"{expected}; got {labels.dtype} labels")
        if values_are_known(labels) and bool(((labels != IGNORE_INDEX) & ((labels < 0) | (labels >= self.vocab_size)))
                                             .any()):
            raise ValueError(f"{expected}; got ids outside that range: {sorted(set(labels.unique().tolist()))[:8]}")

    def forward(self, waveform: torch.Tensor, attention_mask: torch.Tensor | None = None, *,
                labels: torch.Tensor | None = None,
                mask_time_indices: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        self.wav2vec2.check_inputs(waveform, attention_mask, name=self.model_name)
        if labels is not None:
            self.check_labels(labels, waveform.shape[0])
        encoded, _ = self.wav2vec2.encode(waveform, attention_mask, mask_time_indices)
        logits = self.ctc_head(self.final_dropout(encoded["last_hidden_state"]))  # (N, T, vocab_size)
        out = {"logits": logits, **encoded}
        if labels is not None:
            samples = (torch.full((waveform.shape[0],), waveform.shape[1], device=waveform.device)
                       if attention_mask is None else attention_mask.long().sum(dim=1))
            out["loss"] = ctc_loss(logits, labels, self.wav2vec2.num_frames(samples).long(), blank_id=self.blank_id,
                                   reduction=self.ctc_loss_reduction, zero_infinity=self.ctc_zero_infinity)
        return out

    def loss(self, waveform: torch.Tensor, labels: torch.Tensor,
             attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """The CTC loss of ``labels`` (``(N, U)``, padded with -100) given ``waveform`` (:func:`ctc_loss`)."""
        return self(waveform, attention_mask, labels=labels)["loss"]


# --- variants -------------------------------------------------------------------------------------------

_PAPER = Paper(
    title="wav2vec 2.0: A Framework for Self-Supervised Learning of Speech Representations",
    authors="Alexei Baevski, Henry Zhou, Abdelrahman Mohamed, Michael Auli",
    year=2020,
    url="https://arxiv.org/abs/2006.11477",
)

_INNOVATIONS = (
    "learns from raw 16 kHz audio: a convolutional feature encoder makes one latent every 20 ms",
    "masks spans of latents (p = 0.065, M = 10) and a Transformer builds context over the rest",
    "a convolution over time (kernel 128, 16 groups) as relative positional embedding",
    "product quantisation with a straight-through Gumbel softmax gives the discrete targets",
    "contrastive loss: pick the true quantised latent among 100 distractors, plus a codebook-diversity penalty",
    "10 minutes of transcribed speech suffice for fine-tuning after pre-training on unlabelled audio",
)

# The LV-60k LARGE (facebook/wav2vec2-large-lv60): LayerNorm feature encoder with biases, pre-LN Transformer.
_LARGE = dict(hidden_size=1024, num_layers=24, num_heads=16, ffn_dim=4096, feature_encoder_norm="layer",
              conv_bias=True, layer_norm_first=True, dropout=0.0, attention_dropout=0.0, feature_dropout=0.0)
_LARGE_CONFIG = ("hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, intermediate_size=4096, "
                 "feat_extract_norm='layer', do_stable_layer_norm=True, conv_bias=True, codevector_dim=768, "
                 "proj_codevector_dim=768")
_LARGE_PRETRAINING = dict(codevector_dim=768, final_dim=768, quantizer_dropout=0.0)

_NOTES = ("input: 16 kHz mono waveforms (N, samples), 400 <= samples <= max_samples (one minute by default), "
          "optional attention_mask (N, samples), 1 at audio, 0 at right padding. Keyword arguments in the reference "
          "are transformers' Wav2Vec2Config; the reference's defaults are BASE's. create_model takes them too, beside "
          "ours (num_hidden_layers or num_layers; `paperzoo info` lists the mapping)")


def _card(name: str, architecture: str, reference: str, params: int, gmacs: float, canonical: bool = False,
          notes: str = _NOTES) -> ModelCard:
    library_class = reference.split("(")[0].removeprefix("transformers:")
    large = "large" in name
    return ModelCard(
        name=name,
        architecture=architecture,
        task="speech",
        paper=_PAPER,
        innovations=_INNOVATIONS,
        input=InputSpec(kind="waveform", shape=(16000,), min_size=Wav2Vec2.min_input_size),
        params=params,
        params_source=f"transformers {library_class} with Wav2Vec2Config({_LARGE_CONFIG if large else ''}), "
                      f"counted; the paper rounds to {'317M' if large else '95M'} with the quantiser",
        reference=reference,
        gmacs=gmacs,
        canonical=canonical,
        notes=notes,
    )


@register(_card("wav2vec2_base", "wav2vec 2.0 BASE", "transformers:Wav2Vec2Model", params=94_371_712, gmacs=6.911,
                canonical=True))
def wav2vec2_base(**kwargs: Any) -> Wav2Vec2:
    """BASE: 12 layers, 768 wide, FFN 3072, 12 heads; GroupNorm feature encoder, post-LN."""
    return Wav2Vec2(**kwargs)


@register(_card("wav2vec2_large", "wav2vec 2.0 LARGE (LV-60k)", f"transformers:Wav2Vec2Model({_LARGE_CONFIG})",
                params=315_438_720, gmacs=17.811))
def wav2vec2_large(**kwargs: Any) -> Wav2Vec2:
    """LARGE as released for LV-60k: 24 layers, 1024 wide, FFN 4096, 16 heads; LayerNorm feature encoder, pre-LN."""
    return Wav2Vec2(**{**_LARGE, **kwargs})


@register(_card("wav2vec2_base_pretraining", "wav2vec 2.0 BASE (pre-training)", "transformers:Wav2Vec2ForPreTraining",
                params=95_044_608, gmacs=6.944))
def wav2vec2_base_pretraining(**kwargs: Any) -> Wav2Vec2PreTraining:
    """BASE with the quantiser (G = 2, V = 320, d = 256) and the contrastive + diversity loss."""
    return Wav2Vec2PreTraining(**kwargs)


@register(_card("wav2vec2_large_pretraining", "wav2vec 2.0 LARGE (LV-60k, pre-training)",
                f"transformers:Wav2Vec2ForPreTraining({_LARGE_CONFIG})", params=317_390_592, gmacs=17.906))
def wav2vec2_large_pretraining(**kwargs: Any) -> Wav2Vec2PreTraining:
    """LARGE (LV-60k) with the quantiser (G = 2, V = 320, d = 768) and the contrastive + diversity loss."""
    return Wav2Vec2PreTraining(**{**_LARGE, **_LARGE_PRETRAINING, **kwargs})


_CTC_NOTES = ("returns logits over vocab_size = 32 classes (transformers' default; the blank is blank_id = 0, its "
              "pad_token_id) and, given labels (N, U) padded with -100, the CTC loss (ctc_loss_reduction: 'sum' by "
              "default, as transformers). " + _NOTES)


@register(_card("wav2vec2_base_ctc", "wav2vec 2.0 BASE (CTC)", "transformers:Wav2Vec2ForCTC", params=94_396_320,
                gmacs=6.913, notes=_CTC_NOTES))
def wav2vec2_base_ctc(**kwargs: Any) -> Wav2Vec2CTC:
    """BASE with a linear CTC layer over the vocabulary, for speech recognition."""
    return Wav2Vec2CTC(**kwargs)


@register(_card("wav2vec2_large_ctc", "wav2vec 2.0 LARGE (LV-60k, CTC)",
                f"transformers:Wav2Vec2ForCTC({_LARGE_CONFIG})", params=315_471_520, gmacs=17.812, notes=_CTC_NOTES))
def wav2vec2_large_ctc(**kwargs: Any) -> Wav2Vec2CTC:
    """LARGE (LV-60k) with a linear CTC layer over the vocabulary, for speech recognition."""
    return Wav2Vec2CTC(**{**_LARGE, **kwargs})


if __name__ == "__main__":
    from paperzoo.cli import main

    main(["run", "wav2vec2_base"])
