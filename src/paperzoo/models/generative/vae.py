r"""Variational Autoencoder (VAE).

Paper: "Auto-Encoding Variational Bayes", Diederik P. Kingma, Max Welling, ICLR 2014 (arXiv 2013).
https://arxiv.org/abs/1312.6114

A latent-variable model $p_\theta(x, z) = p_\theta(z)\, p_\theta(x \mid z)$ with a continuous latent z has an
intractable posterior $p_\theta(z \mid x)$, so neither maximum likelihood nor exact inference is possible. The
paper fits a recognition model $q_\phi(z \mid x)$ (the probabilistic *encoder*) together with the generative
model $p_\theta(x \mid z)$ (the *decoder*) by maximising, by stochastic gradient ascent, a lower bound on the
log-likelihood of each datapoint (eq. 3):

$$
\log p_\theta(x) \ge \mathcal{L}(\theta, \phi; x)
  = -D_{KL}(q_\phi(z \mid x) \,\|\, p_\theta(z)) + \mathbb{E}_{q_\phi(z \mid x)}[\log p_\theta(x \mid z)].
$$

* The reparameterisation trick (§2.4): a sample $z \sim q_\phi(z \mid x) = N(\mu, \sigma^2 I)$ is written as a
  differentiable function of φ and an independent noise, $z = \mu + \sigma \odot \varepsilon$ with
  $\varepsilon \sim N(0, I)$, so the expectation's gradient is
  estimated with ordinary backpropagation through the sample, with low variance (the SGVB estimator).
* With a Gaussian q and prior $p_\theta(z) = N(0, I)$ the KL term is analytic (Appendix B),
  $-D_{KL} = \frac{1}{2} \sum_j (1 + \log \sigma_j^2 - \mu_j^2 - \sigma_j^2)$; only the reconstruction term is
  sampled (eq. 10). With
  minibatches of M = 100, one sample per datapoint (L = 1) suffices (§2.3).
* Encoder and decoder are MLPs trained jointly (the AEVB algorithm): an autoencoder whose code is a
  distribution and whose regulariser, the KL term, comes out of the variational bound.

The MNIST model of §5 and Appendix C: a Gaussian MLP encoder and a Bernoulli MLP decoder with 500 tanh hidden
units each, N_z = 20 latent dimensions (Figure 2 compares N_z = 3, 5, 10, 20 and 200: ``latent_dim``)::

    image x (N, 1, 28, 28) in [0, 1] → flatten                   (N, 784)
      encoder q_φ(z | x):  h = tanh(W3 x + b3)                    (N, 500)
                           μ = W4 h + b4,  log σ² = W5 h + b5     (N, 20), (N, 20)
      reparameterise:      z = μ + σ ⊙ ε,  ε ~ N(0, I)            (N, 20)
      decoder p_θ(x | z):  y = sigmoid(W2 tanh(W1 z + b1) + b2)   (N, 784) → (N, 1, 28, 28)
      -L = -Σ_i [x_i log y_i + (1 - x_i) log(1 - y_i)] + D_KL     per image, averaged over the batch

Parameters: encoder 392,500 + 10,020 + 10,020, decoder 10,500 + 392,784: 815,824, derived by hand
from the paper's configuration (the paper states no count).

What one call does (the project's contract for generative models): ``forward(x)`` encodes and decodes,
returning the decoder's Bernoulli means y, the reconstruction, ``(N, 1, 28, 28)``; in training mode z is a
reparameterised sample, in eval mode z = μ (the posterior mean, so that eval is deterministic; the paper
defines no reconstruction call). ``loss(batch)`` is -L per image averaged over the batch, estimated with one
sample per image; ``elbo(x)`` gives L per image; ``sample(n)`` decodes z ~ p_θ(z) = N(0, I) into Bernoulli
means (the images of the paper's Figures 4 and 5), not into binary draws.

Initialisation as §5: every parameter from N(0, 0.01) (read as a standard deviation of 0.01; the paper's
notation does not say whether 0.01 is the variance).

Deviations:

* The decoder's sigmoid is folded into the loss (``binary_cross_entropy_with_logits`` on the decoder's
  pre-sigmoid output): the same Bernoulli log-likelihood of Appendix C.1, without log(0) when y rounds to 0
  or 1. ``decode`` and ``forward`` return y itself.
* The paper's weight decay (a prior p(θ) = N(0, I) on the parameters, §5) and its Adagrad optimiser belong to
  training, not to the model: not here.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from paperzoo.layers import check_image_batch, check_latent_batch
from paperzoo.registry import InputSpec, ModelCard, Paper, register

__all__ = ["VAE", "GaussianEncoder", "BernoulliDecoder", "gaussian_kl_to_standard_normal"]


def gaussian_kl_to_standard_normal(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """D_KL(N(μ, σ²I) || N(0, I)) per example, ``(N,)``: Appendix B, -D_KL = ½ Σ_j (1 + log σ_j² - μ_j² - σ_j²)."""
    return -0.5 * torch.sum(1.0 + logvar - mu.pow(2) - logvar.exp(), dim=1)


class GaussianEncoder(nn.Module):
    """q_φ(z | x) = N(z; μ, σ² I), μ and log σ² from one tanh hidden layer (Appendix C.2)."""

    def __init__(self, pixels: int, hidden_dim: int, latent_dim: int) -> None:
        super().__init__()
        self.hidden = nn.Sequential(OrderedDict(linear=nn.Linear(pixels, hidden_dim), tanh=nn.Tanh()))
        self.mu = nn.Linear(hidden_dim, latent_dim)
        self.logvar = nn.Linear(hidden_dim, latent_dim)  # log σ²: σ > 0 without a constraint

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.hidden(torch.flatten(x, 1))  # (N, 1, 28, 28) → (N, 784) → (N, 500)
        return self.mu(h), self.logvar(h)


class BernoulliDecoder(nn.Module):
    """p_θ(x | z): independent Bernoulli pixels with means y = sigmoid(W2 tanh(W1 z + b1) + b2) (Appendix C.1).

    Returns the logits W2 tanh(W1 z + b1) + b2, ``(N, C, H, W)``; y = σ(logits).
    """

    def __init__(self, latent_dim: int, hidden_dim: int, image_shape: tuple[int, int, int]) -> None:
        super().__init__()
        self.image_shape = image_shape
        pixels = image_shape[0] * image_shape[1] * image_shape[2]
        self.hidden = nn.Sequential(OrderedDict(linear=nn.Linear(latent_dim, hidden_dim), tanh=nn.Tanh()))
        self.output = nn.Linear(hidden_dim, pixels)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.output(self.hidden(z)).view(len(z), *self.image_shape)  # (N, 784) → (N, 1, 28, 28)


class VAE(nn.Module):
    """The MNIST variational autoencoder of §5: ``encoder`` q_φ(z | x) and ``decoder`` p_θ(x | z).

    Args:
        latent_dim: N_z, the size of z (20; Figure 2 compares 3, 5, 10, 20 and 200).
        hidden_dim: tanh units in the encoder's and the decoder's hidden layer (500 for MNIST, 200 for Frey Face).
        image_shape: ``(C, H, W)`` of the data, ``(1, 28, 28)`` for MNIST.
    """

    min_input_size = 28  # a fully-connected encoder: it takes exactly image_shape's 28×28
    model_name = "vae"
    output_range = (0.0, 1.0)  # Bernoulli means, and the range the data must be scaled to

    def __init__(self, latent_dim: int = 20, hidden_dim: int = 500,
                 image_shape: tuple[int, int, int] = (1, 28, 28)) -> None:
        super().__init__()
        if latent_dim < 1:
            raise ValueError(f"latent_dim must be positive, got {latent_dim}")
        self.latent_dim = latent_dim
        self.image_shape = tuple(image_shape)
        self.in_chans = self.image_shape[0]
        self.min_input_size = self.image_shape[1]
        pixels = self.image_shape[0] * self.image_shape[1] * self.image_shape[2]
        self.encoder = GaussianEncoder(pixels, hidden_dim, latent_dim)
        self.decoder = BernoulliDecoder(latent_dim, hidden_dim, self.image_shape)
        for parameter in self.parameters():  # §5: "initialized by random sampling from N(0, 0.01)"
            nn.init.normal_(parameter, 0.0, 0.01)

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Images ``(N, 1, 28, 28)`` → the posterior's mean μ and log-variance log σ², each ``(N, latent_dim)``."""
        check_image_batch(x, model=self, in_chans=self.in_chans, min_size=self.min_input_size,
                          size=self.image_shape[1])
        return self.encoder(x)

    @staticmethod
    def reparameterize(mu: torch.Tensor, logvar: torch.Tensor,
                       generator: torch.Generator | None = None) -> torch.Tensor:
        """z = μ + σ ⊙ ε, ε ~ N(0, I) (§2.4): a sample of q_φ(z | x) that gradients flow through to μ and σ."""
        epsilon = torch.randn(mu.shape, dtype=mu.dtype, device=mu.device, generator=generator)
        sigma = torch.exp(0.5 * logvar)  # σ = exp(½ log σ²)
        return mu + sigma * epsilon

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Latent vectors ``(N, latent_dim)`` → Bernoulli means y ``(N, 1, 28, 28)`` in (0, 1)."""
        check_latent_batch(z, model=self, latent_dim=self.latent_dim)
        return torch.sigmoid(self.decoder(z))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Reconstruction: y for z sampled from q_φ(z | x) in training mode, for z = μ in eval mode."""
        mu, logvar = self.encode(x)
        z = self.reparameterize(mu, logvar) if self.training else mu
        return torch.sigmoid(self.decoder(z))

    def elbo(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """The lower bound L(θ, φ; x) of eq. 10 per image, ``(N,)`` nats, with one sample z per image."""
        # Bernoulli pixels: x_i log y_i + (1 - x_i) log(1 - y_i) is a log-likelihood only for x_i in [0, 1]
        check_image_batch(x, model=self, in_chans=self.in_chans, min_size=self.min_input_size,
                          size=self.image_shape[1], value_range=(0.0, 1.0))
        mu, logvar = self.encode(x)
        z = self.reparameterize(mu, logvar, generator)
        logits = self.decoder(z)
        # log p_θ(x | z) = Σ_i x_i log y_i + (1 - x_i) log(1 - y_i), y = σ(logits)  (Appendix C.1)
        log_likelihood = -F.binary_cross_entropy_with_logits(logits, x, reduction="none").flatten(1).sum(1)
        return log_likelihood - gaussian_kl_to_standard_normal(mu, logvar)  # eq. 10

    def loss(self, batch: torch.Tensor) -> torch.Tensor:
        """-L(θ, φ; x) averaged over a batch of images ``(N, 1, 28, 28)`` in [0, 1]: the loss to minimise."""
        return -self.elbo(batch).mean()

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """n images from the generative model: z ~ p_θ(z) = N(0, I), decoded to Bernoulli means ``(n, 1, 28, 28)``."""
        weight = self.decoder.output.weight
        z = torch.randn(n, self.latent_dim, device=weight.device, dtype=weight.dtype, generator=generator)
        return torch.sigmoid(self.decoder(z))


@register(ModelCard(
    name="vae",
    architecture="Variational Autoencoder (MNIST, N_z = 20)",
    task="generative",
    paper=Paper(
        title="Auto-Encoding Variational Bayes",
        authors="Diederik P. Kingma, Max Welling",
        year=2013,
        url="https://arxiv.org/abs/1312.6114",
    ),
    innovations=(
        "a recognition model q(z|x), the encoder, learned jointly with the generative model p(x|z), the decoder",
        "the variational lower bound (ELBO) on log p(x) as the training objective (eq. 3)",
        "the reparameterisation trick z = mu + sigma * eps: low-variance gradients through the sample (SGVB)",
        "an analytic KL term for Gaussian posterior and prior (Appendix B); one sample per datapoint suffices",
    ),
    input=InputSpec(kind="image", shape=(1, 28, 28), min_size=VAE.min_input_size, fixed_size=True,
                    value_range=(0.0, 1.0)),
    params=815_824,
    params_source="derived by hand from the paper's MNIST configuration (§5, Appendix C: 500 tanh hidden units, "
                  "N_z = 20); the paper states no count: 392,500 (encoder 784→500) + 10,020 (μ 500→20) + 10,020 "
                  "(log σ² 500→20) + 10,500 (decoder 20→500) + 392,784 (decoder 500→784) = 815,824",
    reference="paper",
    gmacs=0.001,
    canonical=True,
    notes="forward(x) returns the reconstruction (Bernoulli means; z = mu in eval mode); loss(x) is the negative "
          "ELBO per image; latent_dim=3...200 gives the other models of Figure 2.",
))
def vae(**kwargs: Any) -> VAE:
    """The paper's MNIST VAE: 784-500-(20, 20) Gaussian encoder, 20-500-784 Bernoulli decoder."""
    return VAE(**kwargs)


if __name__ == "__main__":
    from paperzoo.cli import main

    main(["run", "vae"])
