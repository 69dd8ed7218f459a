r"""CapsNet.

Paper: "Dynamic Routing Between Capsules", Sara Sabour, Nicholas Frosst, Geoffrey E. Hinton, NIPS 2017.
https://arxiv.org/abs/1710.09829

A capsule is a group of neurons whose activity *vector* stands for one entity: its length is the probability
that the entity is present, its orientation the entity's instantiation parameters (pose, deformation, stroke
thickness). The paper's ideas:

* The squash non-linearity (eq. 1) shrinks short vectors to almost zero and long vectors to a length just
  below 1, keeping the direction, so that a length is a probability:

  $$v_j = \frac{\|s_j\|^2}{1 + \|s_j\|^2} \frac{s_j}{\|s_j\|}.$$

* Prediction vectors (eq. 2): each capsule $i$ of the layer below predicts the output of each capsule $j$ above
  through its own transformation matrix, $\hat u_{j|i} = W_{ij} u_i$, and capsule $j$'s total input is the
  weighted sum $s_j = \sum_i c_{ij} \hat u_{j|i}$.
* Routing by agreement (Procedure 1): the coupling coefficients $c_{ij}$ are a softmax over the parents $j$ of
  routing logits $b_{ij}$ (eq. 3), which start at 0 and grow by the agreement $a_{ij} = \hat u_{j|i} \cdot v_j$
  between a prediction and the parent's output. A child thus sends its output to the parents whose outputs its
  prediction agrees with, iterated three times. $b_{ij}$ are not learned: they are recomputed for every image.
* The margin loss (eq. 4), one per digit capsule, so that several digits can be present at once:

  $$L_k = T_k \max(0, m^+ - \|v_k\|)^2 + \lambda (1 - T_k) \max(0, \|v_k\| - m^-)^2,$$

  with $m^+ = 0.9$, $m^- = 0.1$, $\lambda = 0.5$.
* A reconstruction decoder (§4.1, Figure 2) as a regulariser: three fully-connected layers rebuild the image
  from the DigitCaps output with every capsule but one masked to zero (the true digit in training); its sum of
  squared errors is added to the loss, scaled by 0.0005 so that it does not dominate the margin loss.

Data flow at the canonical 1×28×28 input::

    image 1×28×28
      Conv1: 9×9 conv, 256, stride 1 → ReLU                                   256×20×20
      PrimaryCaps: 9×9 conv, 32·8 = 256, stride 2                              256×6×6
        → 32 capsule types × 8-D at each of 6×6 positions → squash           u_i: 1152×8
      DigitCaps: û_j|i = W_ij u_i, one 16×8 matrix per (i, j)                  1152×10×16
        → 3 iterations of routing by agreement                               v_j: 10×16
      class scores ‖v_j‖                                                      10
      decoder (training): mask all but one v_j → 160 → FC 512, ReLU → FC 1024, ReLU
                          → FC 784, sigmoid                                   1×28×28

The parameter count, 8,215,568 (the paper's "8.2M ... 6.8M without the reconstruction subnetwork", §5):
Conv1 256·(1·9·9) + 256 = 20,992; PrimaryCaps 256·(256·9·9) + 256 = 5,308,672 (a convolution, so the 6×6
positions share it); DigitCaps 1152·10·(16·8) = 1,474,560, one W_ij per primary capsule i, i.e. per type *and*
position (were W shared over the grid, as the convolution is, it would be 32·10·128 = 40,960 and the total
5.4M, not 6.8M); that sums to 6,804,224. The routing logits b_ij and coupling coefficients c_ij are no
parameters: they are reset to zero and recomputed for every image. s_j has no bias (eq. 2). The decoder adds
(160·512 + 512) + (512·1024 + 1024) + (1024·784 + 784) = 1,411,344.

How the classifier conventions apply to a capsule network (the project's method set):

* Class scores are the capsule lengths ‖v_j‖ in [0, 1), shape (N, num_classes), not logits: argmax predicts
  the class, but the paper's loss is the margin loss on them (``loss``), not a cross-entropy.
* ``forward`` returns the class scores in training mode too, as every classifier returns its logits. The
  decoder is reached through ``loss(images, labels)`` / ``training_loss`` (what ``paperzoo train`` calls), which
  masks by the true class, as the paper does in training; ``reconstruct(digit_capsules(x))`` draws the
  longest capsule's digit (the prediction, as the paper does outside training).
* There are no stages of feature maps (``features_only``, ``forward_intermediates`` and pruning say so), no
  pooling and no dropout before the classifier (``global_pool`` and ``drop_rate`` say so).
* The classifier is DigitCaps: its W_ij and routing are what depends on the number of classes (one digit
  capsule per class). ``forward_features`` returns the primary capsules u_i (N, 1152, 8), the vectors the
  routing reads; ``forward_head`` routes them to the digit capsules and returns their lengths, or with
  ``pre_logits=True`` the primary capsules flattened (N, 9216), so ``num_features`` = 1152·8. (Taking the
  DigitCaps vectors as the features would not work: ``reset_classifier(0)`` leaves no digit capsules.)
  ``reset_classifier(k)`` builds k fresh digit capsules and a fresh decoder, whose input is the 16·k masked
  vectors; 0 removes both, and the model returns the flattened primary capsules.
* ``digit_capsules(x)`` gives the vectors v_j (N, num_classes, 16) and ``reconstruct(v, labels)`` the decoder's
  images, for the paper's reconstruction and perturbation figures.

The input must be exactly 28×28, not merely at least 28×28: DigitCaps holds one W_ij per primary capsule of the
6×6 grid that a 28×28 image gives, so a larger image (29×29 already gives 7×7) has primary capsules for which
there are no weights; and the decoder draws 28×28 images, which the reconstruction loss compares with the
input. (27×27 happens to give a 6×6 grid too, but its capsules would see other places of the image.)

Deviations from the paper: none in the network. The paper leaves the initialisation open, so it follows the
authors' TensorFlow code (github.com/Sarasra/models, research/capsules): truncated normal weights (σ = 0.05
for Conv1, 0.1 elsewhere, cut at 2σ) and biases 0.1. That code differs from the paper in places where this
file follows the paper: it adds a learned bias to s_j in DigitCaps (10·16 = 160 more parameters), offers
"leaky" routing (an extra all-zero logit in the softmax), and halves both terms of the margin loss. The paper
trains with 2-pixel shifts of the images (data augmentation, outside the model).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from paperzoo.layers import check_image_batch
from paperzoo.layers.classifier import ImageClassifier, NotApplicableError
from paperzoo.registry import InputSpec, ModelCard, Paper, TrainingRecipe, register

__all__ = ["CapsNet", "PrimaryCapsules", "DigitCapsules", "DynamicRouting", "ReconstructionDecoder", "squash",
           "margin_loss"]


def squash(s: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """The squash non-linearity (eq. 1) over the capsule dimension ``dim``: length into [0, 1), same direction."""
    length = torch.linalg.vector_norm(s, dim=dim, keepdim=True)  # ‖s‖ (its gradient at s = 0 is taken as 0)
    # v = ‖s‖² / (1 + ‖s‖²) · s / ‖s‖, written as s · ‖s‖ / (1 + ‖s‖²): the same value, without dividing by ‖s‖,
    # so an all-zero capsule gives 0 rather than 0/0, and a finite gradient.
    return s * length / (1.0 + length * length)


def _truncated_normal_(tensor: torch.Tensor, std: float) -> torch.Tensor:
    """TensorFlow's truncated normal (the authors' initialiser): N(0, std²) redrawn outside ±2 std."""
    return nn.init.trunc_normal_(tensor, mean=0.0, std=std, a=-2 * std, b=2 * std)


class PrimaryCapsules(nn.Module):
    """The PrimaryCapsules layer (§4): a convolutional capsule layer with ``num_types`` channels of
    ``capsule_dim``-D capsules, i.e. one convolution of ``num_types·capsule_dim`` units, grouped and squashed.
    Every position of the output grid holds one capsule of each type, all types sharing the kernel over the
    grid."""

    def __init__(self, in_channels: int = 256, num_types: int = 32, capsule_dim: int = 8, kernel_size: int = 9,
                 stride: int = 2) -> None:
        super().__init__()
        self.num_types = num_types
        self.capsule_dim = capsule_dim
        self.conv = nn.Conv2d(in_channels, num_types * capsule_dim, kernel_size, stride=stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Conv1's map ``(N, 256, 20, 20)`` → primary capsules u_i ``(N, num_types·6·6, capsule_dim)``."""
        units = self.conv(x)  # (N, types·dim, h, w); the capsule's own non-linearity is the squash, no ReLU
        n, _, h, w = units.shape
        # Channel t·dim + d is component d of type t (the authors' grouping); index the capsules by (type, y, x).
        capsules = units.view(n, self.num_types, self.capsule_dim, h, w)  # (N, types, dim, h, w)
        capsules = capsules.permute(0, 1, 3, 4, 2).reshape(n, self.num_types * h * w, self.capsule_dim)
        return squash(capsules)  # (N, 1152, 8)


class DynamicRouting(nn.Module):
    """Routing by agreement (Procedure 1), vectorised over the batch, the children i and the parents j.

    Takes the predictions û_j|i ``(N, children, parents, dim)`` and returns the parents' outputs v_j
    ``(N, parents, dim)`` and the final coupling coefficients c_ij ``(N, children, parents)``. No parameters:
    the routing logits b_ij start at zero for every input.
    """

    def __init__(self, num_iterations: int = 3) -> None:
        super().__init__()
        if num_iterations < 1:
            raise ValueError(f"routing needs at least one iteration, got {num_iterations}")
        self.num_iterations = num_iterations

    def forward(self, predictions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits = predictions.new_zeros(predictions.shape[:3])  # b_ij ← 0: (N, children, parents)
        for iteration in range(self.num_iterations):
            coupling = logits.softmax(dim=2)  # c_i ← softmax(b_i) over the parents j (eq. 3)
            total_input = torch.einsum("nij,nijd->njd", coupling, predictions)  # s_j ← Σ_i c_ij û_j|i (eq. 2)
            outputs = squash(total_input)  # v_j ← squash(s_j) (eq. 1): (N, parents, dim)
            if iteration < self.num_iterations - 1:  # the last update would not be read
                agreement = torch.einsum("nijd,njd->nij", predictions, outputs)  # a_ij = û_j|i · v_j
                logits = logits + agreement  # b_ij ← b_ij + û_j|i · v_j
        return outputs, coupling

    def extra_repr(self) -> str:
        return f"num_iterations={self.num_iterations}"


class DigitCapsules(nn.Module):
    """The DigitCaps layer: one ``out_dim``-D capsule per class, fed by every primary capsule through its own
    transformation matrix W_ij (eq. 2) and routing by agreement. The only capsule layer with routing (§4)."""

    def __init__(self, num_children: int = 1152, in_dim: int = 8, num_capsules: int = 10, out_dim: int = 16,
                 num_routing_iterations: int = 3) -> None:
        super().__init__()
        # W_ij: (children i, parents j, out_dim, in_dim), one matrix per pair; no bias (s_j = Σ_i c_ij û_j|i).
        self.weight = nn.Parameter(torch.empty(num_children, num_capsules, out_dim, in_dim))
        self.routing = DynamicRouting(num_routing_iterations)

    def predictions(self, primary: torch.Tensor) -> torch.Tensor:
        """û_j|i = W_ij u_i: primary capsules ``(N, children, in_dim)`` → ``(N, children, parents, out_dim)``."""
        return torch.einsum("ijdk,nik->nijd", self.weight, primary)

    def forward(self, primary: torch.Tensor) -> torch.Tensor:
        """Primary capsules ``(N, 1152, 8)`` → digit capsules v_j ``(N, num_capsules, 16)``."""
        outputs, _ = self.routing(self.predictions(primary))
        return outputs


class ReconstructionDecoder(nn.Module):
    """The decoder of Figure 2: the masked DigitCaps (16·K values) → FC 512, ReLU → FC 1024, ReLU → FC
    C·28·28, sigmoid, an image with intensities in [0, 1]."""

    def __init__(self, num_capsules: int = 10, capsule_dim: int = 16, hidden: tuple[int, int] = (512, 1024),
                 image_shape: tuple[int, int, int] = (1, 28, 28)) -> None:
        super().__init__()
        self.image_shape = image_shape
        c, h, w = image_shape
        self.fc1 = nn.Linear(num_capsules * capsule_dim, hidden[0])
        self.fc2 = nn.Linear(hidden[0], hidden[1])
        self.fc3 = nn.Linear(hidden[1], c * h * w)

    def forward(self, digit_capsules: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Digit capsules ``(N, K, 16)`` and a one-hot ``mask`` ``(N, K)`` → images ``(N, C, 28, 28)``."""
        kept = (digit_capsules * mask.unsqueeze(-1)).flatten(1)  # all but one capsule zeroed: (N, K·16)
        pixels = torch.sigmoid(self.fc3(F.relu(self.fc2(F.relu(self.fc1(kept))))))  # (N, C·28·28)
        return pixels.view(-1, *self.image_shape)  # (N, C, 28, 28)


def margin_loss(lengths: torch.Tensor, labels: torch.Tensor, m_plus: float = 0.9, m_minus: float = 0.1,
                absent_weight: float = 0.5) -> torch.Tensor:
    """The margin loss (eq. 4), summed over the digit capsules and averaged over the batch.

    L_k = T_k max(0, m⁺ − ‖v_k‖)² + λ (1 − T_k) max(0, ‖v_k‖ − m⁻)², with T_k = 1 iff class k is present;
    λ (``absent_weight``) down-weights the absent classes so that early learning does not shrink every
    capsule's length. ``lengths`` are the ‖v_k‖ ``(N, K)``, ``labels`` class indices ``(N,)``.
    """
    present = F.one_hot(labels, lengths.shape[1]).to(lengths.dtype)  # T_k: (N, K)
    loss = (present * F.relu(m_plus - lengths).pow(2)
            + absent_weight * (1.0 - present) * F.relu(lengths - m_minus).pow(2))
    return loss.sum(dim=1).mean()


class CapsNet(ImageClassifier):
    """The three-layer capsule network of §4 with its reconstruction decoder.

    Args:
        num_classes: digit capsules, one per class; 0 builds neither DigitCaps nor the decoder, and the model
            returns the flattened primary capsules.
        in_chans: channels of the (28×28) input, and of the reconstructions.
        conv_channels: Conv1's channels (256).
        primary_capsule_types: PrimaryCaps' channels of capsules (32).
        primary_capsule_dim: dimension of a primary capsule (8).
        digit_capsule_dim: dimension of a digit capsule (16).
        num_routing_iterations: iterations of routing by agreement (3; §4 and Table 1 compare 1 and 3).
        decoder: build the reconstruction decoder (without it: 6,804,224 parameters, the paper's 6.8M).
        decoder_widths: the decoder's hidden widths (512, 1024).
        m_plus, m_minus, absent_weight: the margin loss's m⁺, m⁻ and λ (eq. 4).
        reconstruction_weight: the decoder's loss is scaled by this (0.0005) before it is added.
    """

    # Exactly 28×28 (see the module docstring): the 6×6 PrimaryCaps grid and its 1152 W_ij fix the size.
    min_input_size = 28
    image_size = 28
    model_name = "capsnet"
    # The class scores are the lengths ‖v_j‖, each the probability that digit j is present (§2), not logits:
    # `paperzoo predict` prints them as they are, not their softmax.
    scores_are_probabilities = True
    first_conv = "conv1"
    classifier_name = "digit_caps"
    no_checkpointing_reason = ("two layers and one routing step: recomputing any of them in the backward pass holds "
                               "the same memory at the peak")
    no_levels_reason = ("one convolution and one layer of primary capsules, whose 6x6 grid DigitCaps reads whole "
                        "(it has a weight matrix for each capsule), not stages of maps at growing strides")

    def __init__(
        self,
        num_classes: int = 10,
        in_chans: int = 1,
        conv_channels: int = 256,
        primary_capsule_types: int = 32,
        primary_capsule_dim: int = 8,
        digit_capsule_dim: int = 16,
        num_routing_iterations: int = 3,
        decoder: bool = True,
        decoder_widths: tuple[int, int] = (512, 1024),
        m_plus: float = 0.9,
        m_minus: float = 0.1,
        absent_weight: float = 0.5,
        reconstruction_weight: float = 0.0005,
    ) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.in_chans = in_chans
        self.digit_capsule_dim = digit_capsule_dim
        self.num_routing_iterations = num_routing_iterations
        self.has_decoder = decoder
        self.decoder_widths = tuple(decoder_widths)
        self.m_plus, self.m_minus, self.absent_weight = m_plus, m_minus, absent_weight
        self.reconstruction_weight = reconstruction_weight

        self.conv1 = nn.Conv2d(in_chans, conv_channels, kernel_size=9)  # 28 → 20
        self.primary_caps = PrimaryCapsules(conv_channels, primary_capsule_types, primary_capsule_dim)  # 20 → 6
        grid = ((self.image_size - 8) - 9) // 2 + 1  # 6: the PrimaryCaps grid of a 28×28 image
        self.num_primary_capsules = primary_capsule_types * grid * grid  # 1152
        self.primary_capsule_dim = primary_capsule_dim
        self.num_features = self.num_primary_capsules * primary_capsule_dim  # 9216, what DigitCaps reads
        self._init_weights(self.conv1, std=0.05)
        self._init_weights(self.primary_caps.conv, std=0.1)
        self.digit_caps: DigitCapsules | None = None
        self.decoder: ReconstructionDecoder | None = None
        self.reset_classifier(num_classes)

    @staticmethod
    def _init_weights(module: nn.Module, std: float = 0.1) -> None:
        """The authors' initialisation: truncated normal weights, biases 0.1."""
        for name, parameter in module.named_parameters():
            if name.endswith("bias"):
                nn.init.constant_(parameter, 0.1)
            else:
                _truncated_normal_(parameter, std)

    def check_input(self, x: torch.Tensor) -> None:
        check_image_batch(x, model=self, in_chans=self.in_chans, min_size=self.min_input_size,
                          size=self.image_size,
                          size_reason="DigitCaps has one weight matrix W_ij for each of the 6x6x32 primary "
                                      "capsules that a 28x28 image gives, and the decoder draws 28x28 images")

    def forward_stem(self, x: torch.Tensor) -> torch.Tensor:
        """Images ``(N, C, 28, 28)`` → primary capsules u_i ``(N, 1152, 8)`` (``forward_features``)."""
        return self.primary_caps(F.relu(self.conv1(x)))

    def set_global_pool(self, global_pool: str) -> None:
        raise NotApplicableError("CapsNet does not pool: each digit capsule routes over all 1152 primary capsules; "
                                 "leave global_pool out")

    def set_drop_rate(self, drop_rate: float) -> None:
        raise NotApplicableError("CapsNet has no dropout before a classifier: its class scores are capsule lengths; "
                                 "leave drop_rate out")

    def reset_classifier(self, num_classes: int, global_pool: str | None = None) -> None:
        """Build ``num_classes`` fresh digit capsules, and a fresh decoder reading their 16·K masked values
        (0: neither; the model then returns the flattened primary capsules)."""
        if global_pool is not None:
            self.set_global_pool(global_pool)
        self.num_classes = num_classes
        if num_classes == 0:
            self.digit_caps, self.decoder = None, None
            return
        reference = next(self.conv1.parameters())
        self.digit_caps = DigitCapsules(self.num_primary_capsules, self.primary_capsule_dim, num_classes,
                                        self.digit_capsule_dim, self.num_routing_iterations).to(reference)
        self._init_weights(self.digit_caps, std=0.1)
        if self.has_decoder:
            self.decoder = ReconstructionDecoder(num_classes, self.digit_capsule_dim, self.decoder_widths,
                                                 (self.in_chans, self.image_size, self.image_size)).to(reference)
            self._init_weights(self.decoder, std=0.1)
        self.train(self.training)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """Primary capsules → class scores ‖v_j‖ ``(N, num_classes)``, or with ``pre_logits`` (or no digit
        capsules) the primary capsules flattened ``(N, 9216)``."""
        if pre_logits or self.digit_caps is None:
            return x.flatten(1)  # (N, 1152, 8) → (N, 9216)
        return self._route(x).norm(dim=-1)  # (N, K, 16) → (N, K)

    def _route(self, primary: torch.Tensor) -> torch.Tensor:
        """Primary capsules → digit capsules v_j (dynamic routing)."""
        return self.digit_caps(primary)

    def digit_capsules(self, x: torch.Tensor) -> torch.Tensor:
        """Images → the DigitCaps vectors v_j ``(N, num_classes, 16)``."""
        if self.digit_caps is None:
            raise ValueError("this CapsNet has no digit capsules (num_classes=0)")
        return self._route(self.forward_features(x))

    def reconstruct(self, digit_capsules: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """Decode the capsule of ``labels`` (the true classes), or of the longest capsule if ``None``, with
        every other capsule masked to zero: ``(N, K, 16)`` → images ``(N, C, 28, 28)``."""
        if self.decoder is None:
            raise ValueError("this CapsNet was built without the reconstruction decoder")
        if labels is None:
            labels = digit_capsules.norm(dim=-1).argmax(dim=1)  # the prediction
        mask = F.one_hot(labels, self.num_classes).to(digit_capsules.dtype)  # (N, K)
        return self.decoder(digit_capsules, mask)

    def loss(self, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """The paper's objective for a batch: margin loss (eq. 4) + 0.0005 × the sum of squared errors of the
        reconstruction of the true class (§4.1), each averaged over the batch. ``images`` in [0, 1]."""
        return self.training_loss(images, labels)[0]

    def training_loss(self, images: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(loss, scores)``: the paper's objective (see ``loss``) and the capsule lengths ‖v_j‖ it was computed
        from, so that a training loop gets both from one pass (``paperzoo train`` calls this)."""
        digit = self.digit_capsules(images)
        scores = digit.norm(dim=-1)  # (N, K)
        loss = margin_loss(scores, labels, self.m_plus, self.m_minus, self.absent_weight)
        if self.decoder is not None:
            reconstruction = self.reconstruct(digit, labels)  # masked by the true class in training (§4.1)
            squared_error = (reconstruction - images).pow(2).flatten(1).sum(dim=1).mean()
            loss = loss + self.reconstruction_weight * squared_error
        return loss, scores


_PAPER = Paper(
    title="Dynamic Routing Between Capsules",
    authors="Sara Sabour, Nicholas Frosst, Geoffrey E. Hinton",
    year=2017,
    url="https://arxiv.org/abs/1710.09829",
)

# §4: Adam with TensorFlow's defaults (lr 1e-3) and an exponentially decaying learning rate (the authors' code:
# ×0.96 every 2000 steps); no weight decay. Cosine decay stands in for the exponential one. `paperzoo train`
# trains with the paper's loss through `CapsNet.training_loss`.
_RECIPE = TrainingRecipe(optimizer="adamw", lr=1e-3, weight_decay=0.0, schedule="cosine", batch_size=128,
                         source="Sabour et al. 2017, §4 (Adam, TensorFlow defaults, decaying learning rate)")


@register(ModelCard(
    name="capsnet",
    architecture="CapsNet",
    task="image-classification",
    paper=_PAPER,
    innovations=(
        "capsules: vectors whose length is the probability an entity exists and whose orientation its pose",
        r"squash non-linearity: $v = \frac{\|s\|^2}{1 + \|s\|^2} \frac{s}{\|s\|}$ keeps the direction, maps the length "
        "into [0, 1)",
        r"routing by agreement: coupling $c_{ij} = \text{softmax}_j(b_{ij})$, $b_{ij}$ grows by "
        r"$\hat u_{j|i} \cdot v_j$, 3 iterations",
        "margin loss per class capsule (m+ 0.9, m- 0.1, lambda 0.5), so several digits can be present",
        "a reconstruction decoder on the masked digit capsule regularises the capsules (loss weight 0.0005)",
    ),
    input=InputSpec(kind="image", shape=(1, 28, 28), min_size=CapsNet.min_input_size, fixed_size=True),
    params=8_215_568,
    params_source="derived by hand from the paper's §4 and Figure 2 (the paper: 8.2M, 6.8M without the decoder); "
                  "Conv1 20,992 + PrimaryCaps 5,308,672 + DigitCaps W_ij 1,474,560 + decoder 1,411,344",
    reference="paper",
    gmacs=0.202,
    canonical=True,
    recipe=_RECIPE,
    notes="Exactly 28x28 inputs. Class scores are the capsule lengths; the training-mode forward also returns "
          "the reconstructions (of the longest capsule), and CapsNet.loss(images, labels) is the paper's margin "
          "+ 0.0005 x reconstruction loss with the true-class mask. The GMACs are those of the eval forward "
          "(3 routing iterations, no decoder). The routing logits b_ij are recomputed per image, not parameters.",
))
def capsnet(**kwargs: Any) -> CapsNet:
    """CapsNet for MNIST (§4): Conv1 256@9×9, PrimaryCaps 32×8-D, DigitCaps 10×16-D, 3 routing iterations."""
    return CapsNet(**kwargs)


if __name__ == "__main__":
    from paperzoo.cli import main

    main(["run", "capsnet"])
