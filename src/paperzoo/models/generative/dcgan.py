r"""Deep Convolutional Generative Adversarial Networks (DCGAN).

Paper: "Unsupervised Representation Learning with Deep Convolutional Generative Adversarial Networks", Alec
Radford, Luke Metz, Soumith Chintala, ICLR 2016 (arXiv 2015). https://arxiv.org/abs/1511.06434

Adversarial training (Goodfellow et al. 2014: a generator G and a discriminator D playing the minimax game
min_G max_D E[log D(x)] + E[log(1 - D(G(z)))]) had worked with multilayer perceptrons; scaled up with CNNs
it was unstable. The paper found a family of convolutional architectures that train stably at 64×64 (§3):

* All-convolutional networks: no pooling. D downsamples with strided convolutions, G upsamples with
  fractionally-strided (transposed) convolutions, so each learns its own spatial resampling.
* No fully-connected hidden layers. G's first layer takes the uniform noise z and is "just a matrix
  multiplication", but its result is reshaped into a 4×4 stack of feature maps that starts the convolutions
  ("project and reshape"); D's last convolutional layer is flattened into a single sigmoid output.
* Batch normalisation in both networks, except on G's output layer and D's input layer: on every layer it
  made samples oscillate and the model unstable.
* ReLU in G, with tanh on the output (images scaled to [-1, 1]); LeakyReLU (slope 0.2) in every layer of D.
* Training (§4): Adam with learning rate 0.0002 and β1 = 0.5, minibatches of 128, every weight from
  N(0, 0.02²).

The learned representation is the point of the paper's title: D's features classify CIFAR-10 and SVHN well,
walks in z change scenes smoothly, and vector arithmetic on z averaged over a few samples works ("smiling
woman" - "neutral woman" + "neutral man" = "smiling man", §6.3).

The generator of Figure 1 (LSUN bedrooms) and its mirror image as the discriminator, at z of 100 entries::

    z (N, 100) ~ U(-1, 1)
      project: Linear 100 → 4·4·1024, reshape              (N, 1024, 4, 4)   BN, ReLU
      conv1: 5×5 fractionally-strided, stride 2            (N, 512, 8, 8)    BN, ReLU
      conv2: 5×5 fractionally-strided, stride 2            (N, 256, 16, 16)  BN, ReLU
      conv3: 5×5 fractionally-strided, stride 2            (N, 128, 32, 32)  BN, ReLU
      conv4: 5×5 fractionally-strided, stride 2            (N, 3, 64, 64)    tanh → G(z) in [-1, 1]

    image (N, 3, 64, 64) in [-1, 1], real or generated
      conv1: 5×5, stride 2                                 (N, 128, 32, 32)  LeakyReLU 0.2 (no BN)
      conv2: 5×5, stride 2                                 (N, 256, 16, 16)  BN, LeakyReLU
      conv3: 5×5, stride 2                                 (N, 512, 8, 8)    BN, LeakyReLU
      conv4: 5×5, stride 2                                 (N, 1024, 4, 4)   BN, LeakyReLU
      flatten → Linear 16384 → 1 → sigmoid                 (N,) D(x)

Details the paper leaves open are the authors' release's (github.com/Newmu/dcgan_code, ``faces/
train_uncond_dcgan.py``, the 64×64 model with 1024 projected maps): no convolution or linear layer has a bias
(where BatchNorm follows, its shift makes one redundant; D's first layer and both output layers go without
too); BatchNorm scales start at N(1, 0.02²), shifts at 0;
a 5×5 transposed convolution of stride 2 exactly doubles the size (padding 2 and one extra output row and
column here); z ~ U(-1, 1).

Parameter count. Generator: projection 1,638,400 + BN 2,048; 5×5 kernels 13,107,200 + 3,276,800 + 819,200 +
9,600; BN 1,024 + 512 + 256: 18,855,040. Discriminator: 9,600 + 819,200 + 3,276,800 + 13,107,200 kernels,
BN 3,584, output 16,384: 17,232,768. A generator of 12,658,432 parameters, the count often derived by hand
for this network, is this generator with 4×4 kernels (``kernel_size=4``: 8,388,608 + 2,097,152 + 524,288 + 6,144
kernel weights), the kernel size of the PyTorch DCGAN example and of the Torch release (github.com/soumith/
dcgan.torch, by the paper's third author, whose first version had these 1024 maps), not Figure 1's. The
figure draws 5×5 kernels and the paper's own code uses 5×5, so the canonical ``dcgan`` is built with 5×5 and
its card carries 36,087,808 = 18,855,040 + 17,232,768; ``create_model("dcgan", kernel_size=4)`` reproduces the
12,658,432 generator exactly (its discriminator: 11,036,160). The projection is the same operation whether
written as a bias-free Linear layer reshaped to 4×4 maps (the paper's words, and the release) or as a 4×4
transposed convolution of a 1×1 input (the PyTorch example): 100 · 16,384 weights either way.

``dcgan_ngf64`` is the network of the widely used PyTorch DCGAN example (pytorch/examples, ``dcgan/main.py``,
ngf = ndf = 64): 512 projected maps, 4×4 kernels, the discriminator's widths 64-128-256-512; generator
3,576,704 + discriminator 2,765,568 = 6,342,272 parameters.

What one call does (the project's contract for generative models): ``forward(z)`` is the generator,
``(N, 100)`` → ``(N, 3, 64, 64)``; ``loss(batch)`` returns both players' objectives on real images scaled to
[-1, 1], ``{"discriminator": ..., "generator": ...}`` (the discriminator's parameters learn only from it);
``sample(n)`` draws n images; ``discriminate(x)`` is D(x).

Deviations:

* The release batch-normalises the projection per unit, over the 16,384 outputs of its matrix product
  (32,768 BN parameters); here per channel over the 1,024 maps (2,048), as every other BatchNorm of the
  network, which the paper's "project and reshape ... the start of the convolution stack" describes.
* D's sigmoid output is kept as its logit a(x), $D(x) = \sigma(a(x))$, so that $\log D = \log \sigma(a)$ and
  $\log(1 - D) = \log \sigma(-a)$ are computed without rounding D to 0 or 1: the same quantities, numerically
  safe.
* The release adds L2 weight decay of 1e-5 to Adam's updates: training, not the model, so not here.
"""

from __future__ import annotations

from collections import OrderedDict
from functools import partial
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from paperzoo.layers import ConvNormAct, check_image_batch, check_latent_batch
from paperzoo.registry import InputSpec, ModelCard, Paper, register

__all__ = ["DCGAN", "Generator", "Discriminator", "ProjectAndReshape", "FractionallyStridedConv"]

IMAGE_SIZE = 64  # 4×4 projected maps, doubled by each of the four fractionally-strided convolutions
NUM_UPSAMPLINGS = 4


class ProjectAndReshape(nn.Module):
    """G's first layer: a matrix product of z, reshaped into a stack of 4×4 feature maps, then BN and ReLU."""

    def __init__(self, latent_dim: int, channels: int) -> None:
        super().__init__()
        self.channels = channels
        self.project = nn.Linear(latent_dim, channels * 4 * 4, bias=False)  # BN's shift makes a bias redundant
        self.norm = nn.BatchNorm2d(channels)
        self.act = nn.ReLU(inplace=True)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        x = self.project(z).view(len(z), self.channels, 4, 4)  # (N, C·16) → (N, C, 4, 4)
        return self.act(self.norm(x))


class FractionallyStridedConv(nn.Sequential):
    """A transposed convolution of stride 2 (the size doubles), then BN and ReLU, or tanh on the output layer.

    A stride-2 convolution maps 2n pixels to n; its transpose maps n to 2n: the generator learns its own
    upsampling. For an odd kernel the exact doubling needs one extra row and column (``output_padding``).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, output_layer: bool = False) -> None:
        layers: OrderedDict[str, nn.Module] = OrderedDict()
        layers["conv"] = nn.ConvTranspose2d(in_channels, out_channels, kernel_size, stride=2,
                                            padding=(kernel_size - 1) // 2, output_padding=kernel_size % 2,
                                            bias=False)
        if output_layer:  # no BN on G's output layer (§3): it made the samples oscillate
            layers["act"] = nn.Tanh()
        else:
            layers["norm"] = nn.BatchNorm2d(out_channels)
            layers["act"] = nn.ReLU(inplace=True)
        super().__init__(layers)


class Generator(nn.Module):
    """G: project and reshape z, then four fractionally-strided convolutions halving the channels (Figure 1)."""

    def __init__(self, latent_dim: int, base_channels: int, image_channels: int, kernel_size: int) -> None:
        super().__init__()
        widths = [base_channels // 2**i for i in range(NUM_UPSAMPLINGS)]  # 1024, 512, 256, 128
        self.project = ProjectAndReshape(latent_dim, widths[0])
        self.conv1 = FractionallyStridedConv(widths[0], widths[1], kernel_size)
        self.conv2 = FractionallyStridedConv(widths[1], widths[2], kernel_size)
        self.conv3 = FractionallyStridedConv(widths[2], widths[3], kernel_size)
        self.conv4 = FractionallyStridedConv(widths[3], image_channels, kernel_size, output_layer=True)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        x = self.project(z)  # (N, 1024, 4, 4)
        return self.conv4(self.conv3(self.conv2(self.conv1(x))))  # 8, 16, 32 → (N, 3, 64, 64)


class Discriminator(nn.Module):
    """D before its sigmoid: G mirrored, strided convolutions with LeakyReLU, one linear output unit.

    Returns the logit a(x); the probability that x is real is D(x) = σ(a(x)).
    """

    def __init__(self, base_channels: int, image_channels: int, kernel_size: int) -> None:
        super().__init__()
        widths = [base_channels // 2**i for i in reversed(range(NUM_UPSAMPLINGS))]  # 128, 256, 512, 1024
        leaky_relu = partial(nn.LeakyReLU, 0.2)
        conv = partial(ConvNormAct, kernel_size=kernel_size, stride=2, padding=(kernel_size - 1) // 2,
                       act_layer=leaky_relu, bias=False)
        self.conv1 = conv(image_channels, widths[0], norm_layer=None)  # no BN on D's input layer (§3)
        self.conv2 = conv(widths[0], widths[1])
        self.conv3 = conv(widths[1], widths[2])
        self.conv4 = conv(widths[2], widths[3])
        self.output = nn.Linear(widths[3] * 4 * 4, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv4(self.conv3(self.conv2(self.conv1(x))))  # 64 → 32, 16, 8, 4
        return self.output(torch.flatten(x, 1)).squeeze(1)  # (N, 1024, 4, 4) → (N, 16384) → logits (N,)


class DCGAN(nn.Module):
    """A DCGAN pair at 64×64: ``generator`` and ``discriminator``.

    Args:
        latent_dim: size of z (100).
        base_channels: feature maps after the projection (1024 in Figure 1; 512 in the PyTorch example); each
            fractionally-strided convolution halves them, and the discriminator mirrors the widths.
        image_channels: channels of the images (3).
        kernel_size: of every convolution (5 in Figure 1 and the release; 4 in the PyTorch example).
    """

    model_name = "dcgan"
    output_range = (-1.0, 1.0)  # the generator's tanh, and the range real images must be scaled to (§4)

    def __init__(self, latent_dim: int = 100, base_channels: int = 1024, image_channels: int = 3,
                 kernel_size: int = 5) -> None:
        super().__init__()
        if base_channels % 2 ** (NUM_UPSAMPLINGS - 1):
            raise ValueError(f"base_channels must be divisible by 8 (halved three times), got {base_channels}")
        self.latent_dim = latent_dim
        self.in_chans = image_channels
        self.image_shape = (image_channels, IMAGE_SIZE, IMAGE_SIZE)
        self.generator = Generator(latent_dim, base_channels, image_channels, kernel_size)
        self.discriminator = Discriminator(base_channels, image_channels, kernel_size)
        self._init_weights()

    def _init_weights(self) -> None:
        # §4: every weight from N(0, 0.02²); the release starts BN scales at N(1, 0.02²) and shifts at 0.
        for module in self.modules():
            if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
                nn.init.normal_(module.weight, 0.0, 0.02)
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.normal_(module.weight, 1.0, 0.02)
                nn.init.zeros_(module.bias)

    def prior(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """n noise vectors z ~ U(-1, 1)^latent_dim, ``(n, latent_dim)`` (the paper's uniform noise)."""
        weight = self.generator.project.project.weight
        u = torch.rand(n, self.latent_dim, device=weight.device, dtype=weight.dtype, generator=generator)
        return 2.0 * u - 1.0

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """The generator: latent vectors ``(N, latent_dim)`` → images ``(N, C, 64, 64)`` in [-1, 1]."""
        check_latent_batch(z, model=self, latent_dim=self.latent_dim)
        return self.generator(z)

    def discriminate(self, x: torch.Tensor) -> torch.Tensor:
        """D(x): the probability ``(N,)`` that each image came from the data rather than from G."""
        self._check_images(x)
        return torch.sigmoid(self.discriminator(x))

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """n images G(z), z ~ U(-1, 1): ``(n, C, 64, 64)`` in [-1, 1] (call ``eval()`` first for BN's averages)."""
        return self.generator(self.prior(n, generator))

    def discriminator_loss(self, real: torch.Tensor, z: torch.Tensor | None = None) -> torch.Tensor:
        """-(E[log D(x)] + E[log(1 - D(G(z)))]): D's objective as a loss; G(z) is detached, so it trains D only.

        Real and generated images go through D as separate batches, so each has its own BN statistics (as in
        the release). ``z`` defaults to a fresh draw from the prior, one per real image.
        """
        self._check_images(real)
        z = self._latents(z, len(real))
        real_logit = self.discriminator(real)
        fake_logit = self.discriminator(self.generator(z).detach())
        # log D = log σ(a), log(1 - D) = log σ(-a)
        return -(F.logsigmoid(real_logit).mean() + F.logsigmoid(-fake_logit).mean())

    def generator_loss(self, z: torch.Tensor) -> torch.Tensor:
        """-E[log D(G(z))]: G maximises log D(G(z)), the non-saturating objective the paper trains with."""
        check_latent_batch(z, model=self, latent_dim=self.latent_dim)
        return -F.logsigmoid(self.discriminator(self.generator(z))).mean()

    def loss(self, batch: torch.Tensor, z: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Both players' objectives on real images ``(N, C, 64, 64)`` in [-1, 1].

        Returns ``{"discriminator": ..., "generator": ...}``; step each player's optimiser on its own entry,
        alternately. The same ``z`` (default: a fresh draw) feeds both.
        """
        self._check_images(batch)
        z = self._latents(z, len(batch))
        return {"discriminator": self.discriminator_loss(batch, z), "generator": self.generator_loss(z)}

    def _check_images(self, x: torch.Tensor) -> None:
        # real images in the range of the generator's output, or D tells them apart by their scale alone
        check_image_batch(x, model=self, in_chans=self.in_chans, min_size=IMAGE_SIZE, size=IMAGE_SIZE,
                          value_range=self.output_range)

    def _latents(self, z: torch.Tensor | None, n: int) -> torch.Tensor:
        if z is None:
            return self.prior(n)
        check_latent_batch(z, model=self, latent_dim=self.latent_dim)
        return z


_PAPER = Paper(
    title="Unsupervised Representation Learning with Deep Convolutional Generative Adversarial Networks",
    authors="Alec Radford, Luke Metz, Soumith Chintala",
    year=2015,
    url="https://arxiv.org/abs/1511.06434",
)
_INNOVATIONS = (
    "all-convolutional: strided convolutions in D and fractionally-strided ones in G replace pooling",
    "no fully-connected hidden layers: z is projected and reshaped into 4x4 maps, D ends in one sigmoid unit",
    "batch normalisation everywhere except G's output and D's input layers",
    "ReLU in G with a tanh output; LeakyReLU (0.2) in D",
    "Adam (lr 0.0002, beta1 0.5) and N(0, 0.02) weights make adversarial training stable at 64x64",
)


@register(ModelCard(
    name="dcgan",
    architecture="DCGAN (Figure 1, 64x64)",
    task="generative",
    paper=_PAPER,
    innovations=_INNOVATIONS,
    input=InputSpec(kind="latent", shape=(100,)),
    params=36_087_808,
    params_source="derived by hand from Figure 1 (5x5 kernels, 1024 projected maps) and its mirror discriminator; "
                  "the paper states no count: 1,638,400 (G projection) + 2,048 (its BatchNorm) + 17,212,800 (G 5x5 "
                  "kernels) + 1,792 (G BatchNorm) + 17,212,800 (D 5x5 kernels) + 3,584 (D BatchNorm) + 16,384 "
                  "(D output) = 36,087,808",
    reference="paper",
    gmacs=0.641,
    canonical=True,
    notes="A generator count of 12,658,432, derived by hand elsewhere, assumes 4x4 kernels, which "
          "Figure 1 (5x5) and the authors' code (5x5) do not use. With kernel_size=4 this build gives exactly "
          "12,658,432 (discriminator 11,036,160). forward(z) runs the generator (N, 100) → (N, 3, 64, 64); "
          "the parameters count both halves.",
))
def dcgan(**kwargs: Any) -> DCGAN:
    """The DCGAN of Figure 1: 1024 projected maps, 5×5 kernels, and its mirror-image discriminator."""
    return DCGAN(**{"base_channels": 1024, "kernel_size": 5, **kwargs})


@register(ModelCard(
    name="dcgan_ngf64",
    architecture="DCGAN (PyTorch example, ngf=ndf=64)",
    task="generative",
    paper=_PAPER,
    innovations=_INNOVATIONS,
    input=InputSpec(kind="latent", shape=(100,)),
    params=6_342_272,
    params_source="counted from the configuration of the PyTorch DCGAN example (pytorch/examples dcgan/main.py, "
                  "ngf = ndf = 64): generator 3,576,704 + discriminator 2,765,568; equal to it layer for layer",
    reference="paper",
    gmacs=0.105,
    notes="512 projected maps and 4x4 kernels; the example writes the projection as a 4x4 transposed "
          "convolution of a 1x1 input, the same map as the Linear layer here (tests/test_generative.py loads "
          "the example's layers and compares outputs).",
))
def dcgan_ngf64(**kwargs: Any) -> DCGAN:
    """The 64-filter DCGAN of the PyTorch example: 512 projected maps, 4×4 kernels."""
    return DCGAN(**{"base_channels": 512, "kernel_size": 4, **kwargs})


if __name__ == "__main__":
    from paperzoo.cli import main

    main(["run", "dcgan"])
