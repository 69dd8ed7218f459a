r"""Generative Adversarial Networks (GAN).

Paper: "Generative Adversarial Nets", Ian J. Goodfellow, Jean Pouget-Abadie, Mehdi Mirza, Bing Xu, David
Warde-Farley, Sherjil Ozair, Aaron Courville, Yoshua Bengio, NeurIPS 2014. https://arxiv.org/abs/1406.2661

Two networks play a game. The generator G maps noise z drawn from a prior p_z to a sample G(z); the
discriminator D maps a sample x to D(x), the probability that x came from the data rather than from G.
D is trained to tell the two apart, G to fool D: the two-player minimax game of eq. 1,

$$\min_G \max_D V(D, G) = \mathbb{E}_{x \sim p_{data}}[\log D(x)] + \mathbb{E}_{z \sim p_z}[\log(1 - D(G(z)))].$$

Both are plain multilayer perceptrons trained with backpropagation alone: no Markov chain and no approximate
inference, neither to train nor to sample (§1). The paper's results:

* For a fixed G the best discriminator is $D^*(x) = p_{data}(x) / (p_{data}(x) + p_g(x))$ (Proposition 1),
  and with it the game's value is $C(G) = -\log 4 + 2\, \text{JSD}(p_{data} \,\|\, p_g)$, whose only minimum
  is $p_g = p_{data}$ (Theorem 1): the game recovers the data distribution.
* Training alternates k steps of gradient ascent on V for D with one step of descent for G (Algorithm 1;
  the experiments use k = 1).
* Early on, when G is poor, D rejects its samples confidently and $\log(1 - D(G(z)))$ saturates: its
  gradient vanishes. So G is trained to maximise $\log D(G(z))$ instead (§3): the same fixed point, much stronger
  gradients early in learning. :meth:`GAN.generator_loss` computes both.

The MNIST networks (§5: "the generator nets used a mixture of rectifier linear activations and sigmoid
activations, while the discriminator net used maxout activations; dropout was applied in training the
discriminator net"). The sizes, dropout rates, initialisation and noise prior (a standard normal; the paper
leaves p_z open) are the authors' release's (github.com/goodfeli/adversarial, ``mnist.yaml``)::

    z (N, 100) ~ N(0, I)
      generator:     Linear 100 → 1200, ReLU                 (N, 1200)
                     Linear 1200 → 1200, ReLU                (N, 1200)
                     Linear 1200 → 784, sigmoid              (N, 784) → reshape (N, 1, 28, 28) in [0, 1]

    image (N, 1, 28, 28), real or generated → flatten        (N, 784)
      discriminator: dropout 0.2 → maxout 240 units × 5 pieces   (N, 240)
                     dropout 0.5 → maxout 240 units × 5 pieces   (N, 240)
                     dropout 0.5 → Linear 240 → 1, sigmoid       (N,) D(x) in (0, 1)

Parameters: generator 121,200 + 1,441,200 + 941,584 = 2,503,984; discriminator (a maxout layer of 240 units
× 5 pieces is a 1,200-output linear map) 942,000 + 289,200 + 241 = 1,231,441; 3,735,425 in all, derived by hand
from the paper's configuration (the paper states no count).

What one call does (the project's contract for generative models): ``forward(z)`` is the generator,
latent vectors ``(N, 100)`` → images ``(N, 1, 28, 28)``; ``loss(batch)`` is the game's two objectives on a
batch of real images, ``{"discriminator": ..., "generator": ...}``, each to be minimised by its own player's
optimiser (the discriminator's parameters learn only from ``loss``, never from ``forward``); ``sample(n)``
draws n images; ``discriminate(x)`` is D(x).

Deviations:

* The release initialises the generator's output biases to the logits of the training set's mean pixel
  intensities (``init_sigmoid_bias_from_marginals``); a model built here has not seen the data, so they start
  at 0 like every other bias. The weights follow the release: uniform on ±0.05 in G, ±0.005 in D.
* The release halves the discriminator's cost (the mean of the two cross-entropies); this file minimises
  -V(D, G) of eq. 1 as written. Only the scale differs (a learning rate twice the release's is the same).
* D's sigmoid output is kept as its logit a(x), $D(x) = \sigma(a(x))$, so that $\log D = \log \sigma(a)$ and
  $\log(1 - D) = \log \sigma(-a)$ are computed without rounding D to 0 or 1: the same quantities, numerically
  safe.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from paperzoo.layers import check_image_batch, check_latent_batch
from paperzoo.registry import InputSpec, ModelCard, Paper, register

__all__ = ["GAN", "Generator", "Discriminator", "Maxout"]


class Maxout(nn.Module):
    """A maxout layer (Goodfellow et al. 2013): each unit is the maximum of ``num_pieces`` linear pieces.

    h_i(x) = max_j (x W_ij + b_ij): a learned convex piecewise-linear activation. The pieces of unit i are
    consecutive outputs of one linear map, as in pylearn2, the release's library.
    """

    def __init__(self, in_features: int, num_units: int, num_pieces: int) -> None:
        super().__init__()
        self.num_units, self.num_pieces = num_units, num_pieces
        self.linear = nn.Linear(in_features, num_units * num_pieces)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pieces = self.linear(x).view(len(x), self.num_units, self.num_pieces)  # (N, units·pieces) → (N, units, pieces)
        return pieces.amax(dim=2)


class Generator(nn.Module):
    """G(z; θ_g): an MLP from noise to data space, rectifier hidden units and a sigmoid output."""

    def __init__(self, latent_dim: int, hidden_dim: int, image_shape: tuple[int, int, int]) -> None:
        super().__init__()
        self.image_shape = image_shape
        pixels = image_shape[0] * image_shape[1] * image_shape[2]
        self.layers = nn.Sequential(OrderedDict(
            hidden1=nn.Linear(latent_dim, hidden_dim),
            relu1=nn.ReLU(inplace=True),
            hidden2=nn.Linear(hidden_dim, hidden_dim),
            relu2=nn.ReLU(inplace=True),
            output=nn.Linear(hidden_dim, pixels),
            sigmoid=nn.Sigmoid(),  # pixel intensities in [0, 1], as MNIST's
        ))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.layers(z).view(len(z), *self.image_shape)  # (N, 784) → (N, 1, 28, 28)


class Discriminator(nn.Module):
    """D(x; θ_d) before its sigmoid: two maxout layers with dropout, then one linear output unit.

    Returns the logit a(x); the discriminator's probability is D(x) = σ(a(x)). Dropout acts on the input of
    every layer (the release's ``input_include_probs``: keep 0.8 of the pixels, 0.5 of the hidden units, and
    scale the kept ones by 1.25 and 2, as ``nn.Dropout`` does).
    """

    def __init__(self, pixels: int, num_units: int, num_pieces: int, input_dropout: float = 0.2,
                 hidden_dropout: float = 0.5) -> None:
        super().__init__()
        self.layers = nn.Sequential(OrderedDict(
            drop1=nn.Dropout(input_dropout),
            maxout1=Maxout(pixels, num_units, num_pieces),
            drop2=nn.Dropout(hidden_dropout),
            maxout2=Maxout(num_units, num_units, num_pieces),
            drop3=nn.Dropout(hidden_dropout),
            output=nn.Linear(num_units, 1),
        ))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(torch.flatten(x, 1)).squeeze(1)  # (N, 1, 28, 28) → (N, 784) → logits (N,)


class GAN(nn.Module):
    """The adversarial pair of the paper's MNIST experiments: ``generator`` and ``discriminator``.

    Args:
        latent_dim: size of the noise vector z (the release's 100).
        hidden_dim: width of the generator's two rectifier layers (1200).
        maxout_units: units in each of the discriminator's two maxout layers (240).
        maxout_pieces: linear pieces per maxout unit (5).
        image_shape: ``(C, H, W)`` of the data, ``(1, 28, 28)`` for MNIST.
        input_dropout, hidden_dropout: the discriminator's dropout on its input pixels (0.2) and on its
            hidden units (0.5).
    """

    model_name = "gan"
    output_range = (0.0, 1.0)  # the generator's sigmoid output, and the range real images must be scaled to

    def __init__(self, latent_dim: int = 100, hidden_dim: int = 1200, maxout_units: int = 240,
                 maxout_pieces: int = 5, image_shape: tuple[int, int, int] = (1, 28, 28),
                 input_dropout: float = 0.2, hidden_dropout: float = 0.5) -> None:
        super().__init__()
        self.latent_dim = latent_dim
        self.image_shape = tuple(image_shape)
        self.in_chans = self.image_shape[0]
        pixels = self.image_shape[0] * self.image_shape[1] * self.image_shape[2]
        self.generator = Generator(latent_dim, hidden_dim, self.image_shape)
        self.discriminator = Discriminator(pixels, maxout_units, maxout_pieces, input_dropout, hidden_dropout)
        self._init_weights()

    def _init_weights(self) -> None:
        # The release's pylearn2 "irange": weights uniform on ±0.05 in G and ±0.005 in D, biases 0.
        for half, irange in ((self.generator, 0.05), (self.discriminator, 0.005)):
            for module in half.modules():
                if isinstance(module, nn.Linear):
                    nn.init.uniform_(module.weight, -irange, irange)
                    nn.init.zeros_(module.bias)

    def prior(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """n noise vectors z ~ p_z = N(0, I), ``(n, latent_dim)``."""
        weight = self.generator.layers.hidden1.weight
        return torch.randn(n, self.latent_dim, device=weight.device, dtype=weight.dtype, generator=generator)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """The generator: latent vectors ``(N, latent_dim)`` → images ``(N, *image_shape)`` in [0, 1]."""
        check_latent_batch(z, model=self, latent_dim=self.latent_dim)
        return self.generator(z)

    def discriminate(self, x: torch.Tensor) -> torch.Tensor:
        """D(x): the probability ``(N,)`` that each image came from the data rather than from G."""
        self._check_images(x)
        return torch.sigmoid(self.discriminator(x))

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """n images G(z), z ~ p_z: ``(n, *image_shape)`` in [0, 1]."""
        return self.generator(self.prior(n, generator))

    def discriminator_loss(self, real: torch.Tensor, z: torch.Tensor | None = None) -> torch.Tensor:
        """-V(D, G) on a minibatch: D's step of Algorithm 1 ascends V, i.e. descends this.

        G(z) is detached: this loss trains the discriminator only. ``z`` defaults to a fresh draw from p_z,
        one per real image.
        """
        self._check_images(real)
        z = self._latents(z, len(real))
        real_logit = self.discriminator(real)
        fake_logit = self.discriminator(self.generator(z).detach())
        # eq. 1: V = E[log D(x)] + E[log(1 - D(G(z)))], with log D = log σ(a) and log(1 - D) = log σ(-a).
        value = F.logsigmoid(real_logit).mean() + F.logsigmoid(-fake_logit).mean()
        return -value

    def generator_loss(self, z: torch.Tensor, non_saturating: bool = True) -> torch.Tensor:
        """G's objective on noise ``z``, to be minimised with respect to G's parameters.

        ``non_saturating=True`` (§3, what the paper trains with): -E[log D(G(z))], maximising log D(G(z)).
        ``False``: eq. 1's E[log(1 - D(G(z)))], whose gradient vanishes while D rejects G's samples.
        """
        check_latent_batch(z, model=self, latent_dim=self.latent_dim)
        fake_logit = self.discriminator(self.generator(z))
        if non_saturating:
            return -F.logsigmoid(fake_logit).mean()  # -E[log D(G(z))]
        return F.logsigmoid(-fake_logit).mean()  # E[log(1 - D(G(z)))]

    def loss(self, batch: torch.Tensor, z: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Both players' objectives on a batch of real images ``(N, *image_shape)`` in [0, 1].

        Returns ``{"discriminator": -V(D, G), "generator": -E[log D(G(z))]}``; step each player's optimiser
        on its own entry (Algorithm 1). The same ``z`` (default: a fresh draw) feeds both.
        """
        self._check_images(batch)
        z = self._latents(z, len(batch))
        return {"discriminator": self.discriminator_loss(batch, z), "generator": self.generator_loss(z)}

    def _check_images(self, x: torch.Tensor) -> None:
        # real images in the range of the generator's output, or D tells them apart by their scale alone
        check_image_batch(x, model=self, in_chans=self.in_chans, min_size=self.image_shape[1],
                          size=self.image_shape[1], value_range=self.output_range)

    def _latents(self, z: torch.Tensor | None, n: int) -> torch.Tensor:
        if z is None:
            return self.prior(n)
        check_latent_batch(z, model=self, latent_dim=self.latent_dim)
        return z


@register(ModelCard(
    name="gan",
    architecture="GAN (MNIST)",
    task="generative",
    paper=Paper(
        title="Generative Adversarial Nets",
        authors="Ian J. Goodfellow, Jean Pouget-Abadie, Mehdi Mirza, Bing Xu, David Warde-Farley, Sherjil Ozair, "
                "Aaron Courville, Yoshua Bengio",
        year=2014,
        url="https://arxiv.org/abs/1406.2661",
    ),
    innovations=(
        "a generator and a discriminator trained against each other in a two-player minimax game (eq. 1)",
        "the game's optimum is p_g = p_data: it minimises the Jensen-Shannon divergence (Theorem 1)",
        "no Markov chains and no approximate inference: backpropagation alone trains both, sampling is one pass",
        "the non-saturating generator objective, maximise log D(G(z)), for strong early gradients (§3)",
        "a maxout discriminator trained with dropout",
    ),
    input=InputSpec(kind="latent", shape=(100,)),
    params=3_735_425,
    params_source="derived by hand from the paper's MNIST configuration as the authors' release (mnist.yaml) sets it; "
                  "the paper states no count: 121,200 (G 100→1200) + 1,441,200 (G 1200→1200) + 941,584 (G 1200→784) "
                  "+ 942,000 (D maxout 784→240×5) + 289,200 (D maxout 240→240×5) + 241 (D 240→1) = 3,735,425",
    reference="paper",
    gmacs=0.003,
    canonical=True,
    notes="forward(z) runs the generator (N, 100) → (N, 1, 28, 28); loss(images) returns both players' "
          "objectives; the card's parameters count both halves.",
))
def gan(**kwargs: Any) -> GAN:
    """The paper's MNIST GAN: a 100-1200-1200-784 rectifier generator, a 240×5 maxout discriminator."""
    return GAN(**kwargs)


if __name__ == "__main__":
    from paperzoo.cli import main

    main(["run", "gan"])
