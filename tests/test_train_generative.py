"""``paperzoo train`` for the generative models (GAN, DCGAN, VAE, deep autoencoder): learning on the digits through
the loop's own code path, the two players' alternation, exact resume, the sample grids, the Fréchet distance and
its digits classifier, and bad input refused before anything is written."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

import paperzoo
from paperzoo import cli
from paperzoo.training import checkpoints, digit_features
from paperzoo.training.data import digits
from paperzoo.training.loop import TrainConfig, train
from resume import whole_and_resumed


def digit_images(split: str, size: int = 28) -> torch.Tensor:
    return digits(split, image_size=size).tensors[0]  # (N, 1, size, size) in [0, 1]


def trained(name: str, out, **kwargs) -> torch.nn.Module:
    """The run's model.safetensors loaded into a fresh model built as the checkpoint says."""
    extra = checkpoints.load_checkpoint(out / "checkpoint.pt", name)
    model = paperzoo.create_model(name, **extra["model_kwargs"])
    paperzoo.load_weights(model, out / "model.safetensors")
    return model.eval()


# --- the Fréchet distance and its classifier -------------------------------------------------------------

def test_frechet_distance_equals_the_matrix_square_root_formula():
    """Against FID's formula with scipy's general matrix square root (pytorch-fid's computation)."""
    from scipy import linalg

    generator = torch.Generator().manual_seed(0)
    a = torch.randn(300, 6, generator=generator, dtype=torch.float64)
    mixing = torch.randn(6, 6, generator=generator, dtype=torch.float64)
    b = torch.randn(200, 6, generator=generator, dtype=torch.float64) @ mixing + 0.5
    mu1, mu2 = a.mean(0).numpy(), b.mean(0).numpy()
    s1, s2 = np.cov(a.numpy(), rowvar=False), np.cov(b.numpy(), rowvar=False)
    root = linalg.sqrtm(s1 @ s2).real
    expected = ((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * np.trace(root)
    assert digit_features.frechet_distance(a, b) == pytest.approx(expected, rel=1e-8)
    assert digit_features.frechet_distance(a, a) == pytest.approx(0.0, abs=1e-9)


def test_the_shipped_digits_classifier_has_its_documented_accuracy():
    images, labels = digits("test", image_size=28).tensors
    with torch.no_grad():
        accuracy = (digit_features.load()(images).argmax(1) == labels).float().mean().item()
    assert accuracy == pytest.approx(digit_features.TEST_ACCURACY, abs=1e-4)
    assert accuracy > 0.98


def test_held_out_digits_are_nearer_to_training_digits_than_noise_is():
    """The distance sees what a digit is: held-out digits lie far nearer the training digits than blurred
    noise with the same mean ink does."""
    train_features = digit_features.features(digit_images("train"))
    test = digit_images("test")
    noise = F.avg_pool2d(torch.rand(test.shape, generator=torch.Generator().manual_seed(0)), 3, 1, 1)
    noise = noise * test.mean() / noise.mean()
    real = digit_features.frechet_distance(digit_features.features(test), train_features)
    fake = digit_features.frechet_distance(digit_features.features(noise), train_features)
    assert real < 0.1 * fake, (real, fake)


# --- learning on the digits, through the loop ------------------------------------------------------------

def parzen_log_likelihood(samples: torch.Tensor, data: torch.Tensor, sigma: float) -> float:
    """Mean log-likelihood of ``data`` under a Gaussian Parzen window on ``samples``: the GAN paper's §5."""
    squared = torch.cdist(data.flatten(1), samples.flatten(1)).pow(2)
    dims = samples[0].numel()
    log_p = (torch.logsumexp(-squared / (2 * sigma**2), dim=1) - math.log(len(samples))
             - dims * math.log(sigma * math.sqrt(2 * math.pi)))
    return log_p.mean().item()


@pytest.mark.heavy
def test_gan_learns_digits(tmp_path, one_thread):
    """One epoch (45 alternating steps of 32 digits) raises the Parzen-window log-likelihood of held-out digits
    (the paper's measure, with the release's σ = 0.2) by hundreds of nats and lowers the Fréchet distance. So few
    steps mostly teach G the digits' ink statistics, not their shapes: this shows the game learning."""
    test = digit_images("test")
    torch.manual_seed(0)  # the loop's initial weights
    untrained = paperzoo.create_model("gan").eval()
    before = parzen_log_likelihood(untrained.sample(500, torch.Generator().manual_seed(1)), test, 0.2)
    before_fd = digit_features.frechet_distance(digit_features.features(untrained.sample(359)),
                                                digit_features.features(test))
    summary = train(TrainConfig("gan", epochs=1, batch_size=32, out=str(tmp_path)))
    model = trained("gan", tmp_path)
    samples = model.sample(500, torch.Generator().manual_seed(1))
    assert samples.shape == (500, 1, 28, 28) and samples.min() >= 0 and samples.max() <= 1
    after = parzen_log_likelihood(samples, test, 0.2)
    assert after > before + 200, f"Parzen log-likelihood {before:.0f} → {after:.0f} nats"
    assert summary["final_test_frechet_distance"] < before_fd, (before_fd, summary)
    row = json.loads((tmp_path / "metrics.jsonl").read_text().splitlines()[-1])
    assert {"train_discriminator_loss", "train_generator_loss", "test_discriminator_loss",
            "test_generator_loss"} <= set(row)
    assert row["train_loss"] == pytest.approx(row["train_discriminator_loss"], rel=1e-6)
    assert Image.open(tmp_path / "samples" / "epoch_001.png").size == (8 * 30 + 2, 8 * 30 + 2)  # 8×8 of 28 + 2


@pytest.mark.heavy
def test_vae_learns_digits(tmp_path, one_thread):
    """The README's run (10 epochs in batches of 64, Adam rather than the paper's Adagrad; measured: −326.3 nats):
    the bound on held-out digits beats the exact log-likelihood of the best model without a latent code
    (independent pixels at the training set's mean intensities), so the code carries information."""
    train_images, test = digit_images("train"), digit_images("test")
    torch.manual_seed(0)
    with torch.no_grad():
        before = paperzoo.create_model("vae").elbo(test, torch.Generator().manual_seed(0)).mean().item()
    pixel_means = train_images.mean(0, keepdim=True).clamp(1e-4, 1 - 1e-4).expand_as(test)
    independent_pixels = -F.binary_cross_entropy(pixel_means, test, reduction="none").flatten(1).sum(1).mean().item()
    summary = train(TrainConfig("vae", epochs=10, out=str(tmp_path)))
    with torch.no_grad():
        after = trained("vae", tmp_path).elbo(test, torch.Generator().manual_seed(0)).mean().item()
    assert after == pytest.approx(summary["final_test_elbo"], abs=3.0)  # the loop's figure is this bound
    assert after > before + 150, f"held-out ELBO {before:.1f} → {after:.1f} nats"
    assert after > independent_pixels + 10, f"ELBO {after:.1f} vs {independent_pixels:.1f} without a code"
    for picture in ("samples", "reconstructions"):
        assert len(list((tmp_path / picture).glob("epoch_*.png"))) == 10


@pytest.mark.heavy
def test_autoencoder_two_dimensional_codes_beat_pca(tmp_path, one_thread):
    """Figure 3's comparison: a 784-1000-500-250-2 autoencoder against the first two principal components.
    Trained end to end from the sparse initialisation (no RBM pretraining) for 6 epochs in batches of 16, its
    reconstructions of held-out digits have a lower squared error than PCA's. (With 30-d codes PCA reconstructs
    these upsampled 8×8 digits almost perfectly, 0.8 per image, as they span only 64 dimensions.)"""
    train_images, test = digit_images("train"), digit_images("test")
    mean = train_images.flatten(1).mean(0)  # PCA from the SVD of the centred training images: independent
    _, _, components = torch.linalg.svd(train_images.flatten(1) - mean, full_matrices=False)
    basis = components[:2].T  # (784, 2)
    pca = ((test.flatten(1) - mean) @ basis @ basis.T + mean - test.flatten(1)).pow(2).sum(1).mean().item()
    summary = train(TrainConfig("autoencoder", epochs=6, batch_size=16, out=str(tmp_path),
                                model_kwargs="widths=(784, 1000, 500, 250, 2)"))
    with torch.no_grad():
        error = (trained("autoencoder", tmp_path)(test) - test).pow(2).flatten(1).sum(1).mean().item()
    assert error < 0.95 * pca, f"squared error per held-out image {error:.2f}, PCA's {pca:.2f}"
    last = json.loads((tmp_path / "metrics.jsonl").read_text().splitlines()[-1])
    assert last["test_squared_error"] == pytest.approx(error, rel=1e-4)
    assert summary["final_test_reconstruction_error"] < summary["first_train_loss"]


@pytest.mark.heavy
def test_dcgan_trains_on_grey_digits_in_its_tanh_range(tmp_path, one_thread):
    """A narrow DCGAN (64 projected maps, the PyTorch example's 4×4 kernels) on 64×64 digits scaled to [-1, 1]
    (§4): one image channel for the grey digits, both players step, the samples lie in tanh's range."""
    summary = train(TrainConfig("dcgan", epochs=1, batch_size=64, out=str(tmp_path),
                                model_kwargs="base_channels=64 kernel_size=4"))
    model = trained("dcgan", tmp_path)
    assert model.in_chans == 1
    samples = model.sample(8)
    assert samples.shape == (8, 1, 64, 64) and samples.min() >= -1 and samples.max() <= 1
    row = json.loads((tmp_path / "metrics.jsonl").read_text().splitlines()[-1])
    assert all(math.isfinite(row[k]) for k in ("train_discriminator_loss", "train_generator_loss"))
    assert math.isfinite(summary["final_test_frechet_distance"])


# --- resume, folders, bad input --------------------------------------------------------------------------


@pytest.mark.heavy
def test_an_interrupted_gan_resumes_to_the_same_weights(tmp_path, one_thread):
    """The GAN has what a resume must restore: two optimizers, the discriminator's dropout and the generator's
    noise, both drawn from the global random generator."""
    config = TrainConfig("gan", epochs=2, batch_size=128)
    whole, resumed = whole_and_resumed(config, tmp_path)
    assert resumed["parameter_digest"] == whole["parameter_digest"]
    assert resumed["final_test_frechet_distance"] == whole["final_test_frechet_distance"]


def make_folder(root, count: int = 6):
    root.mkdir(parents=True)
    for i in range(count):
        Image.new("RGB", (20 + i, 24), (40 * i, 100, 200)).save(root / f"{i}.png")
    return root


def test_a_folder_of_images_trains_the_vae(tmp_path):
    data = make_folder(tmp_path / "images", 10)
    summary = train(TrainConfig("vae", data="folder", data_path=str(data), epochs=1, batch_size=4,
                                out=str(tmp_path / "run")))
    assert math.isfinite(summary["final_test_elbo"])
    assert (tmp_path / "run" / "reconstructions" / "epoch_001.png").is_file()


@pytest.mark.parametrize("args, message", [
    (["--data", "folder", "{tmp}/nowhere"], "nowhere does not exist"),
    (["--data", "folder", "{tmp}/few"], "holds 2 images"),
    (["--data", "folder", "{tmp}/broken"], "cannot read the image"),
    (["--image-size", "32"], "generates 28x28 images; --image-size 32 does not apply"),
    (["--model-kwargs", "depth=3"], "unexpected keyword argument 'depth'"),
    (["--model-kwargs", "3"], "--model-kwargs takes KEY=VALUE pairs with Python literal values; got 3"),
])
def test_bad_input_is_refused_before_anything_is_written(args, message, tmp_path, capsys):
    make_folder(tmp_path / "few", 2)
    make_folder(tmp_path / "broken", 5)
    (tmp_path / "broken" / "9.png").write_bytes(b"not a png")
    out = tmp_path / "out"
    assert cli.main(["train", "vae", *[a.format(tmp=tmp_path) for a in args], "--out", str(out)]) == 2
    assert message in capsys.readouterr().err
    assert not out.exists()


# --- paperzoo sample ----------------------------------------------------------------------------------------

def test_sample_draws_a_grid_from_a_runs_generator(tmp_path, capsys, one_thread):
    """`paperzoo sample gan --checkpoint RUN`: the run's generator, seeded draws, rows of 8 in one PNG. There was
    no way to draw from a trained generator but the grids each epoch writes. The expected grid is computed here
    from model.safetensors and torchvision's make_grid, as save_image writes a PNG."""
    from safetensors.torch import load_file, save_file
    from torchvision.utils import make_grid

    run, out = tmp_path / "run", tmp_path / "drawn" / "gan.png"
    kwargs = {"latent_dim": 16, "hidden_dim": 64, "maxout_units": 32}
    assert cli.main(["train", "gan", "--epochs", "1", "--out", str(run), "--model-kwargs",
                     *(f"{k}={v}" for k, v in kwargs.items())]) == 0
    capsys.readouterr()
    # One epoch of a small GAN draws near-grey images (about 0.5 ± 0.001): a wider output layer in the run's file
    # makes the draws differ visibly, so that the grid compared below shows which noise drew it.
    weights = load_file(run / "model.safetensors")
    weights["generator.layers.output.weight"] = weights["generator.layers.output.weight"] * 300
    save_file(weights, run / "model.safetensors")
    assert cli.main(["sample", "gan", "--checkpoint", str(run), "--count", "12", "--seed", "3", "--out", str(out)]) == 0
    assert f"12 samples of gan trained by paperzoo train ({run}) → {out}" in capsys.readouterr().out
    model = paperzoo.create_model("gan", **kwargs)
    model.load_state_dict(load_file(run / "model.safetensors"))
    loaded = paperzoo.from_pretrained(run)
    assert all(torch.equal(a, b) for a, b in zip(loaded.state_dict().values(), model.state_dict().values(),
                                                 strict=True))
    with pytest.raises(ValueError, match="the model of a generative run takes no photographs to preprocess"):
        paperzoo.transforms(loaded)  # it gave the detectors' pipeline
    with torch.no_grad():
        images = model.eval().sample(12, torch.Generator().manual_seed(3))  # the GAN's range is [0, 1]
    grid = make_grid(images, nrow=8, padding=2).mul(255).add(0.5).clamp(0, 255).to(torch.uint8).permute(1, 2, 0)
    written = np.asarray(Image.open(out).convert("RGB"))
    assert written.shape == (2 * 30 + 2, 8 * 30 + 2, 3) and np.array_equal(written, grid.numpy())
    assert images.std(0).mean() > 0.1  # twelve draws, not one image twelve times
    with torch.no_grad():  # the seed picks the draws
        assert (model.sample(12, torch.Generator().manual_seed(4)) - images).abs().mean() > 0.1

    for arguments, message in [
        (["resnet18", "--checkpoint", str(run)], "resnet18's task is image-classification; paperzoo sample draws"),
        (["gan", "--checkpoint", str(run), "--out", str(tmp_path / "x.jpg")], "name a .png file"),
        (["vae", "--checkpoint", str(run)], f"--checkpoint {run} holds a run of 'gan', not 'vae'"),
    ]:
        assert cli.main(["sample", *arguments]) == 2
        assert message in capsys.readouterr().err
    assert cli.main(["train", "autoencoder", "--epochs", "1", "--out", str(tmp_path / "codes"), "--model-kwargs",
                     "widths=(784,32,2)"]) == 0
    capsys.readouterr()
    assert cli.main(["sample", "autoencoder", "--checkpoint", str(tmp_path / "codes")]) == 2
    assert "autoencoder draws no samples: an autoencoder codes and reconstructs" in capsys.readouterr().err
