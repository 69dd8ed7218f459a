"""CoordConv: the coordinate channels, the layer, the ImageNet model's derived size, the Not-so-Clevr
networks, and a learning test of the paper's central result (§4): on supervised coordinate
classification with a whole quadrant of positions held out, a CoordConv net paints the held-out pixels
while a deconvolutional net of the same size, which fits its training positions, paints almost none."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn import functional as F

import paperzoo
from paperzoo.measure import count_parameters
from paperzoo.models.classification.coordconv import (
    AddCoords,
    CoordConv2d,
    CoordinateClassifier,
    CoordinateRegressor,
    normalize_coordinates,
)

# --- the layer -------------------------------------------------------------------------------------------

def test_add_coords_channels():
    x = torch.randn(2, 3, 4, 6)
    out = AddCoords()(x)
    assert out.shape == (2, 5, 4, 6) and torch.equal(out[:, :3], x)
    rows = torch.arange(4.0)[:, None].expand(4, 6)
    cols = torch.arange(6.0)[None, :].expand(4, 6)
    torch.testing.assert_close(out[0, 3], 2 * rows / 3 - 1)  # i: row r holds r, scaled to [-1, 1]
    torch.testing.assert_close(out[1, 4], 2 * cols / 5 - 1)  # j: column c holds c
    with_r = AddCoords(with_r=True)(x)
    assert with_r.shape == (2, 6, 4, 6)
    torch.testing.assert_close(with_r[0, 5], torch.sqrt(out[0, 3] ** 2 + out[0, 4] ** 2))
    assert with_r[0, 5].min() > 0 and with_r[0, 5].max() == pytest.approx(2**0.5)  # corners are √2 away


def test_coordconv_with_zero_coordinate_weights_is_a_plain_convolution():
    """The network can learn to ignore position: zero weights on the coordinate channels give back a
    translation-equivariant convolution (§3)."""
    torch.manual_seed(0)
    layer = CoordConv2d(3, 4, kernel_size=3, padding=1, with_r=True)
    assert layer.conv.in_channels == 6
    plain = nn.Conv2d(3, 4, kernel_size=3, padding=1)
    with torch.no_grad():
        plain.weight.copy_(layer.conv.weight[:, :3])
        plain.bias.copy_(layer.conv.bias)
        layer.conv.weight[:, 3:] = 0
        x = torch.randn(2, 3, 8, 8)
        torch.testing.assert_close(layer(x), plain(x))


def test_normalize_coordinates_matches_the_channels():
    channels = AddCoords()(torch.zeros(1, 0, 64, 64))  # (1, 2, 64, 64): i, j only
    torch.testing.assert_close(normalize_coordinates(torch.arange(64), 64), channels[0, 0, :, 0])
    assert normalize_coordinates(torch.tensor([0, 63]), 64).tolist() == [-1.0, 1.0]


# --- the ImageNet model ----------------------------------------------------------------------------------

def test_coordconv_resnet50_is_resnet50_behind_one_coordconv():
    """The card's derivation: ResNet-50 with an 8-channel first convolution, plus a 1×1 CoordConv (with r)
    from 3 + 3 to 8 channels."""
    with torch.device("meta"):
        model = paperzoo.create_model("coordconv_resnet50")
        resnet50 = paperzoo.create_model("resnet50")
        resnet50_in8 = paperzoo.create_model("resnet50", in_chans=8)
    assert model.coord_conv.conv.in_channels == 6 and model.coord_conv.conv.out_channels == 8
    assert model.coord_conv.conv.kernel_size == (1, 1)
    assert count_parameters(model.backbone) == count_parameters(resnet50_in8)
    assert count_parameters(model) == count_parameters(resnet50) + 64 * 5 * 7 * 7 + (6 * 8 + 8)
    assert count_parameters(model) == paperzoo.model_card("coordconv_resnet50").params


def test_coordconv_resnet50_forward_at_a_small_size():
    torch.manual_seed(0)
    model = paperzoo.create_model("coordconv_resnet50", num_classes=5).eval()
    with torch.no_grad():
        assert model(torch.randn(2, 3, 64, 48)).shape == (2, 5)


# --- the Not-so-Clevr networks ---------------------------------------------------------------------------

def test_coordinate_classifier_shapes_and_size():
    model = paperzoo.create_model("coordconv_classifier")
    assert model.num_classes == 64 * 64
    # 1×1 layers with biases: (2 + 2) → 32 → 32 → 64 → 64 → 1.
    widths = [4, 32, 32, 64, 64, 1]
    assert count_parameters(model) == sum(a * b + b for a, b in zip(widths[:-1], widths[1:], strict=False))
    x = paperzoo.model_card("coordconv_classifier").example_input(3)
    assert x.shape == (3, 2) and x.min() >= -1 and x.max() <= 1
    assert model(x).shape == (3, 4096)


def test_coordinate_classifier_rejects_bad_input():
    model = paperzoo.create_model("coordconv_classifier")
    cases = [torch.zeros(2), torch.zeros(4, 3), torch.zeros(4, 2, dtype=torch.int64), [[0.0, 0.0]]]
    for x in cases:
        with pytest.raises(ValueError, match=r"^coordconv_classifier expects a float tensor of shape \(N, 2\)"):
            model(x)


def test_coordinate_regressor_can_express_the_exact_answer():
    """Linear layers and a global max pool (the released model's design): with hand-set weights the pixel
    under the dot outbids every other and the max returns its coordinates exactly."""
    model = CoordinateRegressor()
    assert count_parameters(model) == (3 * 8 + 8) + 2 * (8 * 8 + 8) + (8 * 8 * 9 + 8) + (8 * 2 * 9 + 2)
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
        big = 10.0
        coord = model.layers.coord_conv.conv  # input channels: image, i, j
        coord.weight[0, 0], coord.weight[0, 1], coord.bias[0] = big, 1.0, -big  # i + big·(dot − 1)
        coord.weight[1, 0], coord.weight[1, 2], coord.bias[1] = big, 1.0, -big  # j + big·(dot − 1)
        for name in ("conv2", "conv3"):
            getattr(model.layers, name).weight[:, :, 0, 0] = torch.eye(8)
        model.layers.conv4.weight[:, :, 1, 1] = torch.eye(8)  # the centre tap passes values through
        model.layers.conv5.weight[:, :, 1, 1] = torch.eye(8)[:2]
        images = torch.zeros(3, 1, 16, 16)
        where = torch.tensor([[0, 0], [5, 11], [15, 7]])
        images[torch.arange(3), 0, where[:, 0], where[:, 1]] = 1
        torch.testing.assert_close(model(images), normalize_coordinates(where, 16))


def test_coordinate_regressor_shapes():
    model = CoordinateRegressor()
    assert model(torch.zeros(2, 1, 64, 64)).shape == (2, 2)
    with pytest.raises(ValueError, match=r"expects a float tensor of shape \(N, 1, H, W\)"):
        model(torch.zeros(2, 3, 64, 64))


# --- the paper's result ----------------------------------------------------------------------------------

CANVAS = 16  # 256 positions; the paper's 64×64 canvas takes minutes on 2 cores, the phenomenon is the same


def quadrant_split(size: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """All pixel positions (normalised), their class (row-major index), and the held-out quadrant mask."""
    rows, cols = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    pixels = torch.stack([rows.flatten(), cols.flatten()], dim=1)
    held_out = (pixels[:, 0] >= size // 2) & (pixels[:, 1] >= size // 2)  # the bottom-right quadrant
    return normalize_coordinates(pixels, size), pixels[:, 0] * size + pixels[:, 1], held_out


def deconv_painter(size: int, width: int) -> nn.Module:
    """The paper's baseline: transposed 3×3 convolutions with stride 2 (BN, ReLU between) from the 1×1×2
    coordinates up to the canvas, the layer pattern of the authors' released "DeconvPainter"."""
    layers: list[nn.Module] = [nn.Unflatten(1, (2, 1, 1))]  # (N, 2) → (N, 2, 1, 1)
    channels, side = 2, 1
    while side < size:
        out = width if 2 * side < size else 1
        layers.append(nn.ConvTranspose2d(channels, out, 3, stride=2, padding=1, output_padding=1))  # doubles
        if out > 1:
            layers += [nn.BatchNorm2d(out), nn.ReLU()]
        channels, side = out, 2 * side
    return nn.Sequential(*layers, nn.Flatten())  # (N, 1, S, S) → (N, S·S) logits


def train_and_score(model: nn.Module, seed: int, steps: int, lr: float) -> tuple[float, float]:
    """Adam on softmax cross-entropy over the pixels, batches of 32 training positions; returns the accuracy
    (the argmax pixel is the target) on the training positions and on the held-out quadrant."""
    coords, labels, held_out = quadrant_split(CANVAS)
    train = torch.nonzero(~held_out).flatten()
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    model.train()
    for _ in range(steps):
        batch = train[torch.randperm(len(train), generator=generator)[:32]]
        loss = F.cross_entropy(model(coords[batch]), labels[batch])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    with torch.no_grad():
        correct = model(coords).argmax(dim=1) == labels
    return correct[~held_out].float().mean().item(), correct[held_out].float().mean().item()


@pytest.mark.heavy  # 20 s in the last full run: seven small networks trained
def test_coordconv_generalises_to_a_held_out_quadrant_where_deconvolution_fails(one_thread):
    """Thresholds: CoordConv, the mean held-out accuracy of five seeds >= 0.75 (measured 0.97: three seeds
    paint every held-out pixel, the others 88% and 97%; which solution a seed finds varies, the mean does
    not); the deconvolutional net fits >= 80% of its training positions yet paints <= 10% of the held-out
    ones (measured 93-96% and 2%, the paper's "essentially none"). Each network gets a learning rate at which
    it fits its training set (CoordConv in 150 steps, the deconvolutional net in 1,000)."""
    coordconv_scores, deconv_scores = [], []
    for seed in range(5):
        torch.manual_seed(seed)
        coordconv = CoordinateClassifier(canvas_size=CANVAS)  # the paper's widths: 7,553 parameters
        coordconv_scores.append(train_and_score(coordconv, seed, steps=150, lr=0.1))
    for seed in range(2):
        torch.manual_seed(seed)
        deconv = deconv_painter(CANVAS, width=20)
        assert abs(count_parameters(deconv) - count_parameters(coordconv)) < 0.1 * count_parameters(coordconv)
        deconv_scores.append(train_and_score(deconv, seed, steps=1000, lr=0.01))

    assert all(train == 1.0 for train, _ in coordconv_scores), coordconv_scores
    coordconv_test = sum(test for _, test in coordconv_scores) / len(coordconv_scores)
    assert coordconv_test >= 0.75, coordconv_scores
    assert all(train >= 0.8 for train, _ in deconv_scores), deconv_scores
    deconv_test = sum(test for _, test in deconv_scores) / len(deconv_scores)
    assert deconv_test <= 0.1, deconv_scores
