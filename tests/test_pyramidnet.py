"""PyramidNet: additive widening per unit against an independent formula, the zero-padded identity shortcut,
the unit of Figure 6(d), and the structure of the three registered variants."""

from __future__ import annotations

from fractions import Fraction

import pytest
import torch
from torch import nn
from torch.nn import functional as F

import paperzoo
from paperzoo.measure import count_parameters
from paperzoo.models.classification.pyramidnet import (
    BasicUnit,
    BottleneckUnit,
    ZeroPaddedShortcut,
    pyramid_widths,
)


def exact_widths(start: int, alpha: int, num_units: int) -> list[int]:
    """Eq. 2/3 in exact arithmetic: D_k = start + ⌊k·α/N⌋."""
    return [start + (k * alpha) // num_units for k in range(1, num_units + 1)]


def unit_widths(model: nn.Module) -> list[int]:
    return [unit.conv1.conv.out_channels for stage in model.stages for unit in stage]


@pytest.mark.parametrize("start, alpha, num_units", [(16, 48, 54), (16, 200, 90), (64, 300, 66), (16, 270, 54)])
def test_widths_follow_additive_widening(start, alpha, num_units):
    ours = pyramid_widths(start, alpha, num_units)
    exact = exact_widths(start, alpha, num_units)
    assert len(ours) == num_units and ours == sorted(ours)
    for k, (a, b) in enumerate(zip(ours, exact, strict=True), start=1):
        step = Fraction(k * alpha, num_units)
        if step.denominator == 1:  # the float running sum may land a hair below a whole number: one fewer
            assert a in (b, b - 1), k
        else:
            assert a == b, k
    assert ours[-1] >= start + alpha - 1


def test_widths_without_rounding_are_exactly_linear():
    # α/N = 5 is exact in floating point: every unit adds 5 channels, 16 + 5k (PyramidNet-164, α = 270).
    assert pyramid_widths(16, 270, 54) == [16 + 5 * k for k in range(1, 55)]


def test_round_mode_is_the_nearest_integer():
    widths = pyramid_widths(16, 200, 90, width_rounding="round")
    assert widths == [int(Fraction(16) + Fraction(200 * k, 90) + Fraction(1, 2)) for k in range(1, 91)]
    with pytest.raises(ValueError, match="width_rounding"):
        pyramid_widths(16, 200, 90, width_rounding="ceil")


@pytest.mark.parametrize("name, stages, start, alpha, expansion", [
    ("pyramidnet_110_a48", (18, 18, 18), 16, 48, 1),
    ("pyramidnet_272_a200", (30, 30, 30), 16, 200, 4),
    ("pyramidnet_200_a300", (3, 24, 36, 3), 64, 300, 4),
])
def test_variants_widen_every_unit(name, stages, start, alpha, expansion):
    with torch.device("meta"):
        model = paperzoo.create_model(name)
    assert tuple(len(stage) for stage in model.stages) == stages
    widths = unit_widths(model)
    assert widths == pyramid_widths(start, alpha, sum(stages))
    exact = exact_widths(start, alpha, sum(stages))
    assert all(0 <= b - a <= 1 for a, b in zip(widths, exact, strict=True))
    assert model.num_features == widths[-1] * expansion
    # No shortcut has parameters: every one is the zero-padded identity.
    for stage in model.stages:
        for unit in stage:
            assert isinstance(unit.shortcut, ZeroPaddedShortcut) and not list(unit.shortcut.parameters())


def test_zero_padded_shortcut():
    x = torch.randn(2, 5, 6, 7)
    same = ZeroPaddedShortcut(5, 8, stride=1)(x)
    assert same.shape == (2, 8, 6, 7)
    assert torch.equal(same[:, :5], x) and torch.equal(same[:, 5:], torch.zeros(2, 3, 6, 7))
    down = ZeroPaddedShortcut(5, 8, stride=2)(x)
    assert down.shape == (2, 8, 3, 4)  # ceil mode: the odd width keeps its last column
    expected = F.avg_pool2d(x[..., :6], 2)
    torch.testing.assert_close(down[:, :5, :, :3], expected)
    torch.testing.assert_close(down[:, :5, :, 3], x[..., 6].unflatten(-1, (3, 2)).mean(-1))
    assert torch.equal(down[:, 5:], torch.zeros(2, 3, 3, 4))
    with pytest.raises(ValueError, match="never narrows"):
        ZeroPaddedShortcut(8, 5, stride=1)


def randomize_batchnorm(module: nn.Module) -> nn.Module:
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5, generator=generator)
                m.bias.normal_(0.0, 0.5, generator=generator)
                m.running_mean.normal_(0.0, 0.5, generator=generator)
                m.running_var.uniform_(0.5, 1.5, generator=generator)
    return module


def test_basic_unit_is_figure_6d():
    """BN → conv → BN → ReLU → conv → BN, plus the padded shortcut, and no ReLU after the sum."""
    torch.manual_seed(0)
    unit = randomize_batchnorm(BasicUnit(8, 11, stride=2)).eval()
    x = torch.randn(2, 8, 10, 10)
    with torch.no_grad():
        out = F.batch_norm(x, unit.norm.running_mean, unit.norm.running_var, unit.norm.weight, unit.norm.bias)
        out = unit.conv1.norm(unit.conv1.conv(out)).relu()  # no ReLU between the first BN and conv
        out = unit.conv2.norm(unit.conv2.conv(out))
        expected = out + F.pad(F.avg_pool2d(x, 2), (0, 0, 0, 0, 0, 3))
        actual = unit(x)
    torch.testing.assert_close(actual, expected)
    assert (actual < 0).any(), "no ReLU after the addition: the unit's output can be negative"


def test_bottleneck_unit_expands_by_four():
    unit = BottleneckUnit(16, 18)
    assert [unit.conv1.conv.kernel_size, unit.conv2.conv.kernel_size, unit.conv3.conv.kernel_size] == [
        (1, 1), (3, 3), (1, 1)]
    assert unit.conv3.conv.out_channels == 72 and not hasattr(unit.conv3, "act")
    assert unit(torch.randn(2, 16, 4, 4)).shape == (2, 72, 4, 4)


def test_network_ends_with_bn_relu_and_global_pool():
    torch.manual_seed(0)
    model = paperzoo.create_model("pyramidnet_110_a48").eval()
    assert isinstance(model.final_norm.norm, nn.BatchNorm2d) and isinstance(model.final_norm.act, nn.ReLU)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        features = model.forward_features(x)
        assert features.shape == (2, 63, 8, 8) and (features >= 0).all()
        # Other sizes work: the global pool replaces the authors' fixed 8×8 pool.
        assert model(torch.randn(1, 3, 40, 24)).shape == (1, 10)


def test_imagenet_variant_has_resnet_stem():
    with torch.device("meta"):
        model = paperzoo.create_model("pyramidnet_200_a300")
    assert model.conv1.conv.kernel_size == (7, 7) and model.conv1.conv.stride == (2, 2)
    assert isinstance(model.maxpool, nn.MaxPool2d) and model.num_classes == 1000
    strided = [unit.conv2.conv.stride[0] for stage in model.stages for unit in stage]
    assert [i for i, s in enumerate(strided) if s == 2] == [3, 27, 63]  # the first unit of stages 2, 3, 4


def test_cifar_100_head_changes_only_the_classifier():
    with torch.device("meta"):
        ten = count_parameters(paperzoo.create_model("pyramidnet_272_a200"))
        hundred = count_parameters(paperzoo.create_model("pyramidnet_272_a200", num_classes=100))
    assert hundred - ten == 90 * (864 + 1)  # 4 · (16 + 200) = 864 features


def test_imagenet_variant_says_its_recipe_is_the_cifar_one():
    """§4's recipe is the CIFAR one; PyramidNet-200 is the ImageNet network, so its card must say what it carries."""
    cifar, imagenet = paperzoo.model_card("pyramidnet_272_a200"), paperzoo.model_card("pyramidnet_200_a300")
    assert "CIFAR" in cifar.recipe.source
    assert "CIFAR recipe" in imagenet.recipe.source and "CIFAR" in imagenet.notes and "ImageNet" in imagenet.notes
    # the same optimiser and schedule: only what the card says about it differs
    assert (imagenet.recipe.lr, imagenet.recipe.milestones, imagenet.recipe.batch_size) == (0.1, (0.5, 0.75), 128)
