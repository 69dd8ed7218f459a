r"""Deep autoencoder.

Paper: "Reducing the Dimensionality of Data with Neural Networks", Geoffrey E. Hinton, Ruslan R. Salakhutdinov,
Science 313(5786), 504-507, 2006. https://doi.org/10.1126/science.1127647

An autoencoder is a multilayer "encoder" network that maps high-dimensional data to a low-dimensional code
and a "decoder" network that maps the code back to the data; both are trained together to minimise the
discrepancy between the data and its reconstruction. With non-linear layers it is a non-linear
generalisation of PCA, and the paper shows that a deep one finds far better codes than PCA:

* On MNIST a 784-1000-500-250-30 autoencoder reconstructs test digits with an average squared error of 3.00
  per image, against 8.01 for logistic PCA and 13.87 for PCA with the same 30 components (Figure 2B).
* Deep autoencoders were hard to train: from large random weights gradient descent finds poor local minima,
  from small ones the gradients in the early layers are tiny. The paper's remedy is pretraining: a stack of
  restricted Boltzmann machines, each trained on the previous one's hidden activities, whose weights are then
  "unrolled" into the encoder and, transposed, the decoder, and fine-tuned by backpropagation (Figure 1).
* Fine-tuning minimises the cross-entropy error for MNIST,
  $-\sum_i [x_i \log \hat x_i + (1 - x_i) \log(1 - \hat x_i)]$, pixel intensities treated as probabilities.
* The units are logistic, except for the 30 units of the code layer, which are linear: the code is not
  squashed into (0, 1) and can spread along each direction as PCA's components do.

The network (untied weights: fine-tuning adjusts encoder and decoder separately)::

    image x (N, 1, 28, 28) in [0, 1] → flatten              (N, 784)
      encoder: Linear 784 → 1000, logistic                   (N, 1000)
               Linear 1000 → 500, logistic                   (N, 500)
               Linear 500 → 250, logistic                    (N, 250)
               Linear 250 → 30, linear                       (N, 30)  the code
      decoder: Linear 30 → 250, logistic                     (N, 250)
               Linear 250 → 500, logistic                    (N, 500)
               Linear 500 → 1000, logistic                   (N, 1000)
               Linear 1000 → 784, logistic                   (N, 784) → reshape x̂ (N, 1, 28, 28)

Parameters: encoder 785,000 + 500,500 + 125,250 + 7,530 = 1,418,280; decoder 7,750 + 125,500 + 501,000 +
784,784 = 1,419,034; 2,837,314 in all, derived by hand from the paper's configuration (the paper states no
count).

What one call does (the project's contract for generative models): ``forward(x)`` is the reconstruction
x̂ = decode(encode(x)); ``encode(x)`` gives the 30-d codes, ``decode(code)`` images; ``loss(batch)`` is the
cross-entropy error per image, averaged over the batch. There is no ``sample(n)``: the paper's autoencoder
defines no distribution over codes to draw from (``decode`` maps any code you choose).

Deviations:

* No RBM pretraining. The network is trained end to end by backpropagation from a random initialisation,
  the "sparse initialisation" of Martens 2010 ("Deep learning via Hessian-free optimization", ICML): each unit
  gets 15 non-zero incoming weights drawn from N(0, 1), biases 0, so that units start neither saturated nor
  all alike. With it Martens trained this same MNIST autoencoder from random weights to a lower error than
  the pretrained one, and Sutskever, Martens, Dahl & Hinton 2013 ("On the importance of initialization and
  momentum in deep learning", ICML) did so with first-order momentum methods. ``tests/test_generative.py``
  trains it with Adam and shows its 2-d codes beating PCA's, as the paper's Figure 3 compares them.
* The decoder's last logistic is folded into the loss (``binary_cross_entropy_with_logits`` on its input):
  the same cross-entropy, without log(0) when x̂ rounds to 0 or 1. ``decode`` and ``forward`` return x̂.
* The paper fine-tunes with conjugate gradients on minibatches of 1000 images: training, not the model.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from paperzoo.layers import check_image_batch, check_latent_batch
from paperzoo.registry import InputSpec, ModelCard, Paper, register

__all__ = ["Autoencoder", "sparse_init_"]


def sparse_init_(linear: nn.Linear, connections: int = 15) -> None:
    """Martens 2010's sparse initialisation: ``connections`` random incoming weights per unit from N(0, 1), the
    rest 0, biases 0. Few large weights keep the logistic units from starting out saturated or redundant."""
    n_out, n_in = linear.weight.shape
    with torch.no_grad():
        chosen = torch.rand(n_out, n_in, device=linear.weight.device).topk(min(connections, n_in), dim=1).indices
        weight = torch.zeros_like(linear.weight)
        weight.scatter_(1, chosen, torch.randn(chosen.shape, device=weight.device, dtype=weight.dtype))
        linear.weight.copy_(weight)
        linear.bias.zero_()


def _logistic_stack(widths: tuple[int, ...], linear_output: bool) -> nn.Sequential:
    """Linear layers between consecutive ``widths``, each followed by a logistic unit, except the last one
    when ``linear_output`` (the code layer)."""
    layers: OrderedDict[str, nn.Module] = OrderedDict()
    for i, (n_in, n_out) in enumerate(zip(widths[:-1], widths[1:], strict=True), start=1):
        layers[f"linear{i}"] = nn.Linear(n_in, n_out)
        if i < len(widths) - 1 or not linear_output:
            layers[f"logistic{i}"] = nn.Sigmoid()
    return nn.Sequential(layers)


class Autoencoder(nn.Module):
    """The deep autoencoder of the paper's MNIST experiment: ``encoder`` to a linear code, mirrored ``decoder``.

    Args:
        widths: layer sizes from the pixels to the code, ``(784, 1000, 500, 250, 30)``; the decoder mirrors
            them. The last is the code size.
        image_shape: ``(C, H, W)`` of the data, ``(1, 28, 28)`` for MNIST (C·H·W must equal ``widths[0]``).
    """

    min_input_size = 28  # a fully-connected encoder: it takes exactly image_shape's 28×28
    model_name = "autoencoder"
    output_range = (0.0, 1.0)  # logistic outputs, and the range the data must be scaled to

    def __init__(self, widths: tuple[int, ...] = (784, 1000, 500, 250, 30),
                 image_shape: tuple[int, int, int] = (1, 28, 28)) -> None:
        super().__init__()
        self.image_shape = tuple(image_shape)
        if self.image_shape[0] * self.image_shape[1] * self.image_shape[2] != widths[0]:
            raise ValueError(f"image_shape {self.image_shape} has not widths[0] = {widths[0]} pixels")
        self.widths = tuple(widths)
        self.code_size = widths[-1]
        self.in_chans = self.image_shape[0]
        self.min_input_size = self.image_shape[1]
        self.encoder = _logistic_stack(self.widths, linear_output=True)
        # The decoder's last logistic is applied by decode/forward, or folded into the loss.
        self.decoder = _logistic_stack(self.widths[::-1], linear_output=True)
        for module in self.modules():
            if isinstance(module, nn.Linear):
                sparse_init_(module)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Images ``(N, 1, 28, 28)`` → codes ``(N, 30)``."""
        check_image_batch(x, model=self, in_chans=self.in_chans, min_size=self.min_input_size,
                          size=self.image_shape[1])
        return self.encoder(torch.flatten(x, 1))  # (N, 1, 28, 28) → (N, 784) → (N, 30)

    def _decode_logits(self, code: torch.Tensor) -> torch.Tensor:
        return self.decoder(code).view(len(code), *self.image_shape)  # (N, 784) → (N, 1, 28, 28)

    def decode(self, code: torch.Tensor) -> torch.Tensor:
        """Codes ``(N, 30)`` → reconstructed images ``(N, 1, 28, 28)`` in (0, 1)."""
        check_latent_batch(code, model=self, latent_dim=self.code_size)
        return torch.sigmoid(self._decode_logits(code))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The reconstruction x̂ = decode(encode(x)), ``(N, 1, 28, 28)`` in (0, 1)."""
        return torch.sigmoid(self._decode_logits(self.encode(x)))

    def loss(self, batch: torch.Tensor) -> torch.Tensor:
        """The cross-entropy error -Σ_i [x_i log x̂_i + (1 - x_i) log(1 - x̂_i)] per image, averaged over the
        batch of images ``(N, 1, 28, 28)`` in [0, 1]."""
        # the cross-entropy against logistic outputs in (0, 1) is an error only for targets in [0, 1]
        check_image_batch(batch, model=self, in_chans=self.in_chans, min_size=self.min_input_size,
                          size=self.image_shape[1], value_range=(0.0, 1.0))
        logits = self._decode_logits(self.encode(batch))
        return F.binary_cross_entropy_with_logits(logits, batch, reduction="none").flatten(1).sum(1).mean()


@register(ModelCard(
    name="autoencoder",
    architecture="Deep autoencoder (784-1000-500-250-30)",
    task="generative",
    paper=Paper(
        title="Reducing the Dimensionality of Data with Neural Networks",
        authors="Geoffrey E. Hinton, Ruslan R. Salakhutdinov",
        year=2006,
        url="https://doi.org/10.1126/science.1127647",
    ),
    innovations=(
        "a deep encoder to a low-dimensional code and a mirrored decoder: a non-linear generalisation of PCA",
        "greedy layer-wise pretraining with stacked RBMs, unrolled and fine-tuned by backpropagation",
        "logistic units with a linear 30-d code layer, trained on the cross-entropy reconstruction error",
        "30-d codes reconstruct MNIST far better than PCA or logistic PCA with 30 components",
    ),
    input=InputSpec(kind="image", shape=(1, 28, 28), min_size=Autoencoder.min_input_size, fixed_size=True,
                    value_range=(0.0, 1.0)),
    params=2_837_314,
    params_source="derived by hand from the paper's MNIST configuration (784-1000-500-250-30, mirrored decoder, "
                  "untied weights, one bias per unit); the paper states no count: 785,000 + 500,500 + 125,250 + "
                  "7,530 (encoder) + 7,750 + 125,500 + 501,000 + 784,784 (decoder) = 2,837,314",
    reference="paper",
    gmacs=0.003,
    canonical=True,
    notes="Trained end to end by backpropagation; the paper's RBM pretraining is not implemented. "
          "forward(x) returns the reconstruction; encode(x) the 30-d code.",
))
def autoencoder(**kwargs: Any) -> Autoencoder:
    """The paper's MNIST autoencoder: 784-1000-500-250-30 with a linear code, mirrored decoder."""
    return Autoencoder(**kwargs)


if __name__ == "__main__":
    from paperzoo.cli import main

    main(["run", "autoencoder"])
