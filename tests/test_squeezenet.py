"""SqueezeNet: what the generic contract and parity tests do not see. The Fire module's channels and the
order of its concatenation, the widths from the paper's metaparameters against torchvision's modules, the
convolutional head (what pre_logits and reset_classifier mean here), the initialisation, and the smallest
input of both versions."""

from __future__ import annotations

import math

import pytest
import torch
import torchvision

import paperzoo
from conftest import assert_close_rel
from paperzoo.models.classification.squeezenet import FireModule, SqueezeNet, fire_widths, smallest_input_size


def test_fire_module_concatenates_expand1x1_then_expand3x3():
    torch.manual_seed(0)
    fire = FireModule(in_channels=24, squeeze_channels=6, expand1x1_channels=10, expand3x3_channels=14).eval()
    assert fire.out_channels == 10 + 14
    assert fire.squeeze.conv.weight.shape == (6, 24, 1, 1)
    assert fire.expand1x1.conv.weight.shape == (10, 6, 1, 1)
    assert fire.expand3x3.conv.weight.shape == (14, 6, 3, 3)
    x = torch.randn(2, 24, 9, 7)
    with torch.no_grad():
        y = fire(x)
        squeezed = torch.relu(fire.squeeze.conv(x))
        expected = torch.cat([torch.relu(fire.expand1x1.conv(squeezed)), torch.relu(fire.expand3x3.conv(squeezed))], 1)
    assert y.shape == (2, 24, 9, 7)  # the 3×3 filters' zero border keeps the map size
    assert torch.equal(y, expected)


@pytest.mark.parametrize("name", ["squeezenet1_0", "squeezenet1_1"])
def test_fire_widths_from_the_metaparameters_are_torchvisions(name):
    reference = torchvision.models.get_model(name)
    theirs = [(m.squeeze.out_channels, m.expand1x1.out_channels, m.expand3x3.out_channels)
              for m in reference.features if isinstance(m, torchvision.models.squeezenet.Fire)]
    with torch.device("meta"):
        model = paperzoo.create_model(name)
    ours = [(m.squeeze.conv.out_channels, m.expand1x1.conv.out_channels, m.expand3x3.conv.out_channels)
            for m in model.modules() if isinstance(m, FireModule)]
    assert ours == theirs == fire_widths()
    assert model.num_features == 512 == reference.classifier[1].in_channels


def test_other_metaparameters_build_the_design_space_of_section_5():
    # By hand from §5.1: e_i = 128 + 128·⌊i/2⌋, e_3x3 = 0.75·e_i, s_1x1 = 0.25·e_i.
    widths = fire_widths(squeeze_ratio=0.25, pct_3x3=0.75)
    assert widths[0] == (32, 32, 96) and widths[-1] == (128, 128, 384)
    model = SqueezeNet(squeeze_ratio=0.25, pct_3x3=0.75, num_classes=10).eval()
    assert model.features.fire9.squeeze.conv.out_channels == 128
    with torch.no_grad():
        assert model(torch.randn(1, 3, 64, 64)).shape == (1, 10)


def test_pools_sit_after_the_layers_of_each_version():
    with torch.device("meta"):
        v10, v11 = paperzoo.create_model("squeezenet1_0"), paperzoo.create_model("squeezenet1_1")
    assert [n for n in v10.features._modules if n.startswith("maxpool")] == ["maxpool1", "maxpool4", "maxpool8"]
    assert [n for n in v11.features._modules if n.startswith("maxpool")] == ["maxpool1", "maxpool3", "maxpool5"]
    assert v10.features.conv1.conv.weight.shape == (96, 3, 7, 7)
    assert v11.features.conv1.conv.weight.shape == (64, 3, 3, 3)


def test_the_head_is_a_convolution_per_class_then_the_average():
    torch.manual_seed(0)
    model = paperzoo.create_model("squeezenet1_1", num_classes=10).eval()
    x = torch.randn(2, 3, 96, 80)
    with torch.no_grad():
        fire9 = model.forward_features(x)
        logits = model(x)
        class_maps = torch.relu(model.conv10.conv(fire9))  # (N, 10, h, w)
        assert_close_rel(logits, class_maps.mean(dim=(2, 3)))
        assert (logits >= 0).all(), "a ReLU precedes the pool: the logits are never negative"
        pooled = model.forward_head(fire9, pre_logits=True)
        assert_close_rel(pooled, fire9.mean(dim=(2, 3)))
        assert pooled.shape == (2, model.num_features)
        # The ReLU between conv10 and the pool: conv10 applied to the pooled features is not the logits.
        assert not torch.allclose(torch.relu(model.conv10.conv(pooled[..., None, None])).flatten(1), logits)


def test_reset_classifier_initialises_conv10_as_torchvision():
    """torchvision draws its final convolution from N(0, 0.01²) and every other one Kaiming-uniform."""
    torch.manual_seed(0)
    model = paperzoo.create_model("squeezenet1_0")
    model.reset_classifier(500)
    weight, bias = model.conv10.conv.weight, model.conv10.conv.bias
    assert weight.shape == (500, 512, 1, 1) and torch.equal(bias, torch.zeros(500))
    assert weight.std().item() == pytest.approx(0.01, rel=0.02)  # 256,000 draws
    expand = model.features.fire9.expand3x3.conv.weight  # fan-in 64·9: bound √2·√(3 / 576)
    bound = math.sqrt(2) * math.sqrt(3 / 576)
    assert expand.abs().max().item() <= bound and expand.std().item() == pytest.approx(bound / math.sqrt(3), rel=0.03)
    assert torch.equal(model.features.fire9.expand3x3.conv.bias, torch.zeros(256))


@pytest.mark.parametrize("name, smallest", [("squeezenet1_0", 21), ("squeezenet1_1", 17)])
def test_smallest_input_is_torchvisions(name, smallest):
    """torchvision's own metadata gives 21 and 17; below, the last max pool has no window left."""
    torch.manual_seed(0)
    reference = torchvision.models.get_model(name).eval()
    model = paperzoo.load_weights(paperzoo.create_model(name), reference.state_dict(), "torchvision").eval()
    assert model.min_input_size == smallest == paperzoo.model_card(name).input.min_size
    assert smallest == smallest_input_size(model.features.conv1.conv.kernel_size[0])
    with torch.no_grad():
        x = torch.randn(1, 3, smallest, smallest)
        assert model.forward_features(x).shape[-2:] == (1, 1)
        assert_close_rel(model(x), reference(x))
        too_small = torch.randn(1, 3, smallest - 1, smallest - 1)
        with pytest.raises(RuntimeError):
            reference(too_small)
        with pytest.raises(RuntimeError):  # the network itself, without our input check
            model.features(too_small)
        with pytest.raises(ValueError, match=f"H, W >= {smallest}"):
            model(too_small)
