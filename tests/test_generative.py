"""The generative models (GAN, DCGAN, VAE, deep autoencoder): what the contract tests do not see.

The papers' configurations (layer sizes and shapes, the counts each half contributes), the objectives written
out against independent computations (eq. 1 and §3 of the GAN paper, the VAE's Appendix B KL and its
reparameterisation), the DCGAN variant of the PyTorch example layer for layer, and one GAN step on real
digits moves both players' losses. Learning (the GAN's Parzen likelihood, the VAE's bound against the best
model without a latent code, the autoencoder's 2-d codes against PCA) is tested through ``paperzoo train``'s
own loop, in test_train_generative.py.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

import paperzoo
from conftest import assert_close_rel, randomize_batchnorm
from paperzoo.measure import count_parameters
from paperzoo.models.generative.gan import Maxout
from paperzoo.models.generative.vae import VAE, gaussian_kl_to_standard_normal
from paperzoo.training.data import digits


def digit_images(split: str, size: int = 28, channels: int = 1) -> torch.Tensor:
    return digits(split, image_size=size, channels=channels).tensors[0]  # (N, C, size, size) in [0, 1]


# --- GAN -------------------------------------------------------------------------------------------------

def test_gan_halves_are_the_papers_mnist_networks():
    with torch.device("meta"):
        model = paperzoo.create_model("gan")
    g, d = model.generator.layers, model.discriminator.layers
    assert [(m.in_features, m.out_features) for m in (g.hidden1, g.hidden2, g.output)] == [
        (100, 1200), (1200, 1200), (1200, 784)]
    assert (d.maxout1.num_units, d.maxout1.num_pieces, d.maxout2.num_units, d.output.out_features) == (240, 5, 240, 1)
    assert (d.drop1.p, d.drop2.p, d.drop3.p) == (0.2, 0.5, 0.5)  # the release's input_include_probs 0.8, 0.5
    # the hand-derived split (G 2,503,984 + D 1,231,441) of the module docstring.
    assert (count_parameters(model.generator), count_parameters(model.discriminator)) == (2_503_984, 1_231_441)


def test_maxout_is_the_max_over_each_units_pieces():
    torch.manual_seed(0)
    layer = Maxout(6, num_units=3, num_pieces=4)
    x = torch.randn(5, 6)
    pieces = x @ layer.linear.weight.T + layer.linear.bias  # (5, 12): unit i owns outputs 4i ... 4i + 3
    expected = torch.stack([pieces[:, 4 * i:4 * i + 4].max(dim=1).values for i in range(3)], dim=1)
    torch.testing.assert_close(layer(x), expected)


def test_gan_losses_are_eq1_and_the_non_saturating_objective():
    torch.manual_seed(0)
    model = paperzoo.create_model("gan").eval()  # eval: no dropout, so D is the same function in every term
    real, z = torch.rand(8, 1, 28, 28), model.prior(8)
    with torch.no_grad():
        d_real, d_fake = model.discriminate(real), model.discriminate(model(z))
        losses = model.loss(real, z)
        saturating = model.generator_loss(z, non_saturating=False)
    value = torch.log(d_real).mean() + torch.log(1 - d_fake).mean()  # V(D, G), eq. 1
    torch.testing.assert_close(losses["discriminator"], -value)
    torch.testing.assert_close(losses["generator"], -torch.log(d_fake).mean())  # §3: maximise log D(G(z))
    torch.testing.assert_close(saturating, torch.log(1 - d_fake).mean())  # eq. 1's term, G minimises it


def test_non_saturating_objective_gives_the_generator_gradient_when_d_rejects_its_samples():
    """§3: when D confidently rejects G's samples, log(1 - D(G(z))) saturates; log D(G(z)) does not."""
    torch.manual_seed(0)
    model = paperzoo.create_model("gan").eval()
    with torch.no_grad():
        model.discriminator.layers.output.bias.fill_(-12.0)  # D(x) ≈ 6e-6 for every x
    z = model.prior(16)
    norms = {}
    for non_saturating in (False, True):
        model.zero_grad()
        model.generator_loss(z, non_saturating=non_saturating).backward()
        norms[non_saturating] = torch.cat([p.grad.flatten() for p in model.generator.parameters()]).norm()
    assert norms[True] > 1e4 * norms[False]  # d/da log σ(a) = 1 - σ(a) ≈ 1; d/da log(1 - σ(a)) = -σ(a) ≈ 0


def test_gan_loss_and_sample_check_their_inputs():
    with torch.device("meta"):
        model = paperzoo.create_model("gan")
    with pytest.raises(ValueError, match=r"gan expects a float tensor of shape \(N, 1, H, W\) with H = W = 28"):
        model.loss(torch.zeros(2, 1, 32, 32))
    with pytest.raises(ValueError, match=r"gan expects a float tensor of shape \(N, 100\); got \(2, 64\)"):
        model.loss(torch.zeros(2, 1, 28, 28), z=torch.zeros(2, 64))


def one_step_moves_both_losses(model: nn.Module, real: torch.Tensor) -> None:
    """A discriminator step lowers D's loss and a generator step G's, on the same batch, noise and dropout
    (Adam as the DCGAN paper sets it, §4: each parameter moves by about the learning rate in its first step)."""
    z = model.prior(len(real))
    d_opt = torch.optim.Adam(model.discriminator.parameters(), lr=2e-4, betas=(0.5, 0.999))
    g_opt = torch.optim.Adam(model.generator.parameters(), lr=2e-4, betas=(0.5, 0.999))

    def d_loss() -> torch.Tensor:
        torch.manual_seed(1)  # the same dropout masks for the loss before and after the step
        return model.discriminator_loss(real, z)

    def g_loss() -> torch.Tensor:
        torch.manual_seed(2)
        return model.generator_loss(z)

    before = d_loss()
    d_opt.zero_grad()
    before.backward()
    d_opt.step()
    with torch.no_grad():
        after = d_loss()
        assert after < before, f"the discriminator's step did not lower its loss: {before:.5f} → {after:.5f}"
    before = g_loss()
    g_opt.zero_grad()
    before.backward()
    g_opt.step()
    with torch.no_grad():
        after = g_loss()
        assert after < before, f"the generator's step did not lower its loss: {before:.5f} → {after:.5f}"


def test_gan_step_on_digits_moves_both_losses(one_thread):
    torch.manual_seed(0)
    model = paperzoo.create_model("gan").train()
    one_step_moves_both_losses(model, digit_images("train")[:32])


# --- DCGAN -----------------------------------------------------------------------------------------------

def test_dcgan_generator_is_figure_1():
    with torch.device("meta"):
        model = paperzoo.create_model("dcgan").eval()
        shapes = {}
        hooks = [getattr(model.generator, name).register_forward_hook(
            lambda module, args, out, name=name: shapes.__setitem__(name, tuple(out.shape[1:])))
            for name in ("project", "conv1", "conv2", "conv3", "conv4")]
        model(torch.zeros(1, 100))
    for hook in hooks:
        hook.remove()
    assert shapes == {"project": (1024, 4, 4), "conv1": (512, 8, 8), "conv2": (256, 16, 16),
                      "conv3": (128, 32, 32), "conv4": (3, 64, 64)}
    assert model.generator.conv1.conv.kernel_size == (5, 5)  # Figure 1's kernels
    assert not any(isinstance(m, (nn.MaxPool2d, nn.AvgPool2d)) for m in model.modules())  # no pooling (§3)
    assert not hasattr(model.generator.conv4, "norm") and not hasattr(model.discriminator.conv1, "norm")


def test_dcgan_counts():
    with torch.device("meta"):
        figure1 = paperzoo.create_model("dcgan")
        with_4x4 = paperzoo.create_model("dcgan", kernel_size=4)
    # Figure 1's 5×5 generator, counted by hand in the module docstring.
    assert count_parameters(figure1.generator) == 18_855_040
    # the hand-derived 12,658,432 is the same generator with 4×4 kernels.
    assert count_parameters(with_4x4.generator) == 12_658_432
    assert count_parameters(with_4x4.discriminator) == 11_036_160


def pytorch_example_networks(nz: int = 100, ngf: int = 64, ndf: int = 64, nc: int = 3) -> tuple[nn.Module, nn.Module]:
    """The generator and discriminator of the PyTorch DCGAN example (pytorch/examples, dcgan/main.py), as its
    layer list states them: transposed convolutions from a 1×1 input, 4×4 kernels, no biases."""
    generator = nn.Sequential(
        nn.ConvTranspose2d(nz, ngf * 8, 4, 1, 0, bias=False), nn.BatchNorm2d(ngf * 8), nn.ReLU(True),
        nn.ConvTranspose2d(ngf * 8, ngf * 4, 4, 2, 1, bias=False), nn.BatchNorm2d(ngf * 4), nn.ReLU(True),
        nn.ConvTranspose2d(ngf * 4, ngf * 2, 4, 2, 1, bias=False), nn.BatchNorm2d(ngf * 2), nn.ReLU(True),
        nn.ConvTranspose2d(ngf * 2, ngf, 4, 2, 1, bias=False), nn.BatchNorm2d(ngf), nn.ReLU(True),
        nn.ConvTranspose2d(ngf, nc, 4, 2, 1, bias=False), nn.Tanh())
    discriminator = nn.Sequential(
        nn.Conv2d(nc, ndf, 4, 2, 1, bias=False), nn.LeakyReLU(0.2, inplace=True),
        nn.Conv2d(ndf, ndf * 2, 4, 2, 1, bias=False), nn.BatchNorm2d(ndf * 2), nn.LeakyReLU(0.2, inplace=True),
        nn.Conv2d(ndf * 2, ndf * 4, 4, 2, 1, bias=False), nn.BatchNorm2d(ndf * 4), nn.LeakyReLU(0.2, inplace=True),
        nn.Conv2d(ndf * 4, ndf * 8, 4, 2, 1, bias=False), nn.BatchNorm2d(ndf * 8), nn.LeakyReLU(0.2, inplace=True),
        nn.Conv2d(ndf * 8, 1, 4, 1, 0, bias=False), nn.Sigmoid())
    return generator, discriminator


def test_dcgan_ngf64_equals_the_pytorch_example_layer_for_layer():
    torch.manual_seed(0)
    ex_g, ex_d = (randomize_batchnorm(net, seed) for seed, net in enumerate(pytorch_example_networks()))
    ours = paperzoo.create_model("dcgan_ngf64")
    assert count_parameters(ex_g) == count_parameters(ours.generator) == 3_576_704
    assert count_parameters(ex_d) == count_parameters(ours.discriminator) == 2_765_568
    g, d = ours.generator, ours.discriminator
    # The example's first layer, a 4×4 transposed convolution of a 1×1 map, weight (100, 512, 4, 4), is the
    # projection's matrix: out[c, i, j] = Σ_k z_k W[k, c, i, j], i.e. Linear weight W.permute(1, 2, 3, 0).
    mapping = {g.project.norm: ex_g[1], g.conv1.conv: ex_g[3], g.conv1.norm: ex_g[4], g.conv2.conv: ex_g[6],
               g.conv2.norm: ex_g[7], g.conv3.conv: ex_g[9], g.conv3.norm: ex_g[10], g.conv4.conv: ex_g[12],
               d.conv1.conv: ex_d[0], d.conv2.conv: ex_d[2], d.conv2.norm: ex_d[3], d.conv3.conv: ex_d[5],
               d.conv3.norm: ex_d[6], d.conv4.conv: ex_d[8], d.conv4.norm: ex_d[9]}
    with torch.no_grad():
        for mine, theirs in mapping.items():
            mine.load_state_dict(theirs.state_dict())
        g.project.project.weight.copy_(ex_g[0].weight.permute(1, 2, 3, 0).reshape(512 * 16, 100))
        d.output.weight.copy_(ex_d[11].weight.reshape(1, 512 * 16))  # the last 4×4 convolution covers the map
        ours.eval(), ex_g.eval(), ex_d.eval()
        z = torch.randn(3, 100)
        assert_close_rel(ours(z), ex_g(z.view(3, 100, 1, 1)))
        x = torch.rand(3, 3, 64, 64) * 2 - 1
        assert_close_rel(ours.discriminate(x), ex_d(x).view(3))


def test_dcgan_step_on_digits_moves_both_losses_and_samples_lie_in_tanh_range(one_thread):
    """A narrow DCGAN (64 projected maps) on 64×64 three-channel digits scaled to [-1, 1], as §4 scales images."""
    torch.manual_seed(0)
    model = paperzoo.create_model("dcgan", base_channels=64, kernel_size=4).train()
    real = digit_images("train", size=64, channels=3)[:16] * 2 - 1
    one_step_moves_both_losses(model, real)
    samples = model.eval().sample(8)
    assert samples.shape == (8, 3, 64, 64) and samples.min() >= -1 and samples.max() <= 1


# --- VAE -------------------------------------------------------------------------------------------------

def test_vae_kl_is_appendix_b():
    torch.manual_seed(0)
    mu, logvar = torch.randn(4, 20), torch.randn(4, 20)
    posterior = torch.distributions.Normal(mu, torch.exp(0.5 * logvar))
    prior = torch.distributions.Normal(torch.zeros(4, 20), torch.ones(4, 20))
    expected = torch.distributions.kl_divergence(posterior, prior).sum(1)
    torch.testing.assert_close(gaussian_kl_to_standard_normal(mu, logvar), expected)


def test_reparameterisation_samples_the_posterior_and_passes_gradients():
    mu = torch.tensor([[0.5, -2.0, 3.0]], requires_grad=True)
    logvar = torch.tensor([[0.0, math.log(4.0), math.log(0.01)]], requires_grad=True)
    z = VAE.reparameterize(mu.expand(20_000, 3), logvar.expand(20_000, 3), torch.Generator().manual_seed(0))
    torch.testing.assert_close(z.mean(0), mu[0].detach(), atol=0.05, rtol=0)
    torch.testing.assert_close(z.std(0), torch.tensor([1.0, 2.0, 0.1]), atol=0.05, rtol=0)
    z.sum().backward()  # z = μ + σ ε: dz/dμ = 1, so the gradient reaches μ (and log σ² through σ)
    assert torch.equal(mu.grad, torch.full((1, 3), 20_000.0)) and logvar.grad.abs().min() > 0


def test_vae_elbo_is_bernoulli_log_likelihood_minus_kl():
    torch.manual_seed(0)
    model = paperzoo.create_model("vae")
    x = torch.rand(4, 1, 28, 28)
    elbo = model.elbo(x, generator=torch.Generator().manual_seed(3))
    mu, logvar = model.encode(x)
    z = model.reparameterize(mu, logvar, torch.Generator().manual_seed(3))
    y = model.decode(z).flatten(1)
    log_likelihood = (x.flatten(1) * torch.log(y) + (1 - x.flatten(1)) * torch.log(1 - y)).sum(1)  # Appendix C.1
    torch.testing.assert_close(elbo, log_likelihood - gaussian_kl_to_standard_normal(mu, logvar))
    model.eval()
    torch.testing.assert_close(model(x), model.decode(mu))  # eval-mode reconstruction decodes the mean


@pytest.mark.parametrize("latent_dim", [3, 5, 10, 20, 200])  # Figure 2's N_z
def test_vae_latent_sizes(latent_dim):
    with torch.device("meta"):
        model = paperzoo.create_model("vae", latent_dim=latent_dim)
    # 784·500 + 500 encoder hidden, 2·(500·N_z + N_z) for μ and log σ², N_z·500 + 500 and 500·784 + 784 decoder
    expected = 392_500 + 2 * (500 * latent_dim + latent_dim) + (latent_dim * 500 + 500) + 392_784
    assert count_parameters(model) == expected
    assert model.sample(2).shape == (2, 1, 28, 28)
    with pytest.raises(ValueError, match=rf"\(N, {latent_dim}\); got \(2, {latent_dim + 1}\)"):
        model.decode(torch.zeros(2, latent_dim + 1))


def test_vae_rejects_images_of_another_size():
    with torch.device("meta"):
        model = paperzoo.create_model("vae")
    with pytest.raises(ValueError, match=r"vae expects .* H = W = 28; got \(2, 1, 32, 32\): .* to exactly 28x28"):
        model(torch.zeros(2, 1, 32, 32))


# --- deep autoencoder ------------------------------------------------------------------------------------

def test_autoencoder_encode_decode_and_loss():
    torch.manual_seed(0)
    model = paperzoo.create_model("autoencoder")
    x = torch.rand(3, 1, 28, 28)
    code = model.encode(x)
    assert code.shape == (3, 30)
    assert code.abs().max() > 1, "the code layer is linear, not squashed into (0, 1)"
    reconstruction = model.decode(code)
    torch.testing.assert_close(model(x), reconstruction)
    assert reconstruction.min() > 0 and reconstruction.max() < 1
    flat, recon = x.flatten(1), reconstruction.flatten(1)
    cross_entropy = -(flat * torch.log(recon) + (1 - flat) * torch.log(1 - recon)).sum(1).mean()
    torch.testing.assert_close(model.loss(x), cross_entropy)
    widths = [m.out_features for m in model.encoder if isinstance(m, nn.Linear)]
    assert widths == [1000, 500, 250, 30]
    assert [m.out_features for m in model.decoder if isinstance(m, nn.Linear)] == [250, 500, 1000, 784]
    assert sum(isinstance(m, nn.Sigmoid) for m in model.encoder) == 3  # logistic but for the linear code layer


def test_autoencoder_rejects_images_of_another_size():
    with torch.device("meta"):
        model = paperzoo.create_model("autoencoder")
    with pytest.raises(ValueError, match=r"autoencoder expects .* H = W = 28; got \(1, 1, 56, 56\)"):
        model(torch.zeros(1, 1, 56, 56))
    with pytest.raises(ValueError, match=r"autoencoder expects a float tensor of shape \(N, 30\)"):
        model.decode(torch.zeros(1, 2))
