"""GhostNet beyond the generic contract and parity tests: the Ghost module's channel counts and its identity and
cheap parts (§3.1), the bottleneck's shortcut rule, the width rounding against timm's model, and the feature maps
of ``features_only`` (the last block of each resolution) against timm's network."""

from __future__ import annotations

import math

import pytest
import timm
import torch

import paperzoo
from conftest import assert_close_rel, randomize_weights
from paperzoo.models.classification.ghostnet import GhostBottleneck, GhostModule, round_channels


@pytest.mark.parametrize("out_channels, ratio", [(16, 2), (20, 2), (7, 2), (9, 3), (12, 4)])
def test_ghost_module_channel_counts(out_channels, ratio):
    """m = ⌈n / s⌉ intrinsic maps from the primary convolution, m · (s − 1) ghosts from one depthwise convolution
    with s − 1 filters per intrinsic map, and exactly n maps out."""
    module = GhostModule(10, out_channels, ratio=ratio).eval()
    intrinsic = math.ceil(out_channels / ratio)
    assert module.primary_conv.conv.weight.shape == (intrinsic, 10, 1, 1)
    cheap = module.cheap_operation.conv
    assert cheap.weight.shape == (intrinsic * (ratio - 1), 1, 3, 3) and cheap.groups == intrinsic
    with torch.no_grad():
        assert module(torch.randn(2, 10, 5, 6)).shape == (2, out_channels, 5, 6)


def test_ghost_module_keeps_the_intrinsic_maps_and_derives_each_ghost_from_one_of_them():
    """Φ_i,s is the identity (the first m outputs are the primary convolution's), and ghost y_ij depends on the
    intrinsic map y'_i only (eq. 3)."""
    torch.manual_seed(0)
    module = GhostModule(6, 12, ratio=3, relu=False)
    randomize_weights(module).eval()
    x = torch.randn(1, 6, 5, 5)
    with torch.no_grad():
        intrinsic = module.primary_conv(x)
        out = module(x)
        assert torch.equal(out[:, :4], intrinsic)
        # Perturb intrinsic map 1 only: the cheap operation changes ghosts 2 and 3 (its two) and no other.
        bumped = intrinsic.clone()
        bumped[:, 1] += 1.0
        changed = (module.cheap_operation(bumped) - module.cheap_operation(intrinsic)).abs().amax(dim=(0, 2, 3))
    assert (changed > 0).tolist() == [False, False, True, True, False, False, False, False]


@pytest.mark.parametrize("in_channels, out_channels, stride, identity", [
    (16, 16, 1, True), (16, 24, 2, False), (80, 112, 1, False), (40, 40, 2, False)])
def test_bottleneck_shortcut_is_identity_only_where_the_shape_is_kept(in_channels, out_channels, stride, identity):
    block = GhostBottleneck(in_channels, 48, out_channels, stride=stride)
    assert isinstance(block.shortcut, torch.nn.Identity) == identity
    assert isinstance(block.depthwise, torch.nn.Identity) == (stride == 1)
    with torch.no_grad():
        y = block.eval()(torch.randn(1, in_channels, 8, 8))
    assert y.shape == (1, out_channels, 8 // stride, 8 // stride)


@pytest.mark.parametrize("name, timm_name", [("ghostnet_050", "ghostnet_050"), ("ghostnet_130", "ghostnet_130")])
def test_scaled_widths_equal_timm(name, timm_name):
    """Every convolution's shape, in order, is timm's: the width multiplier rounds as the released code does."""
    with torch.device("meta"):
        ours = paperzoo.create_model(name)
        theirs = timm.create_model(timm_name)
    shapes = [tuple(m.weight.shape) for m in ours.modules() if isinstance(m, torch.nn.Conv2d)]
    expected = [tuple(m.weight.shape) for m in theirs.modules() if isinstance(m, torch.nn.Conv2d)]
    assert shapes == expected
    assert round_channels(16 * 0.5) == 8 and round_channels(72 * 1.3) == 92  # 93.6 → nearest multiple of 4


@pytest.mark.heavy
def test_features_are_the_last_block_of_each_resolution_of_timms_network():
    torch.manual_seed(0)
    reference = randomize_weights(timm.create_model("ghostnet_050")).eval()
    ours = paperzoo.load_weights(paperzoo.create_model("ghostnet_050"), reference, source="timm")
    backbone = paperzoo.create_model("ghostnet_050", features_only=True)
    backbone.load_state_dict(ours.state_dict(), strict=False)
    backbone.eval()
    x = torch.randn(2, 3, 64, 96)
    with torch.no_grad():
        features = backbone(x)
        expected, y = [], reference.act1(reference.bn1(reference.conv_stem(x)))
        # timm's groups of the released configuration list: the last group at each resolution ends a stage.
        for index, group in enumerate(reference.blocks[:9]):
            y = group(y)
            if index in (0, 2, 4, 6, 8):
                expected.append(y)
    assert [info.stride for info in backbone.feature_info] == [2, 4, 8, 16, 32]
    for feature, reference_map in zip(features, expected, strict=True):
        assert_close_rel(feature, reference_map)
