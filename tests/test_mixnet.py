"""MixNet beyond the generic contract and parity tests: MixConv's equal channel partition (the paper's rule, and
timm's), a MixConv computed group by group (§3), the grouped 1×1 convolutions, the architecture tables
against timm's, and the feature maps of ``features_only`` against timm's feature extractor."""

from __future__ import annotations

import pytest
import timm
import torch
import torch.nn.functional as F
from timm.layers.mixed_conv2d import _split_channels as timm_split_channels

import paperzoo
from conftest import assert_close_rel, randomize_weights
from paperzoo.models.classification.mixnet import MixConv, split_channels


def test_equal_partition_gives_the_remainder_to_the_first_group():
    # The paper's equal partition (§3.1) on odd counts: ⌊C/g⌋ each, the first group takes C mod g more.
    assert split_channels(7, 3) == [3, 2, 2]
    assert split_channels(11, 4) == [5, 2, 2, 2]
    assert split_channels(5, 5) == [1, 1, 1, 1, 1]
    for channels in range(1, 97):
        for groups in range(1, min(channels, 5) + 1):
            sizes = split_channels(channels, groups)
            assert sum(sizes) == channels and len(sizes) == groups
            assert sizes[1:] == [channels // groups] * (groups - 1)
            assert sizes == timm_split_channels(channels, groups)  # the reference implementation's rule


def test_mixconv_is_each_group_convolved_with_its_own_kernel():
    """MixConv written out: split 13 channels as (5, 4, 4), convolve them depthwise with 3×3, 5×5, 7×7 kernels
    (padding (k − 1) / 2, stride 2), concatenate."""
    torch.manual_seed(0)
    layer = MixConv(13, 13, (3, 5, 7), stride=2)
    assert [conv.kernel_size for conv in layer.convs] == [(3, 3), (5, 5), (7, 7)]
    assert [conv.in_channels for conv in layer.convs] == [5, 4, 4] and all(
        conv.groups == conv.in_channels for conv in layer.convs)
    x = torch.randn(2, 13, 11, 10)
    expected = torch.cat([
        F.conv2d(x[:, 0:5], layer.convs[0].weight, stride=2, padding=1, groups=5),
        F.conv2d(x[:, 5:9], layer.convs[1].weight, stride=2, padding=2, groups=4),
        F.conv2d(x[:, 9:13], layer.convs[2].weight, stride=2, padding=3, groups=4),
    ], dim=1)
    with torch.no_grad():
        assert_close_rel(layer(x), expected)


def test_grouped_pointwise_maps_each_input_group_to_its_own_output_group():
    torch.manual_seed(0)
    layer = MixConv(11, 7, (1, 1), depthwise=False)  # inputs split (6, 5), outputs (4, 3)
    assert [tuple(conv.weight.shape) for conv in layer.convs] == [(4, 6, 1, 1), (3, 5, 1, 1)]
    x = torch.randn(1, 11, 4, 4)
    bumped = x.clone()
    bumped[:, 6:] += 1.0  # only the second input group changes
    with torch.no_grad():
        changed = (layer(bumped) - layer(x)).abs().amax(dim=(0, 2, 3)) > 0
    assert changed.tolist() == [False] * 4 + [True] * 3
    with pytest.raises(ValueError, match="keeps its width"):
        MixConv(8, 16, (3, 5))


@pytest.mark.parametrize("name", ["mixnet_s", "mixnet_m", "mixnet_l"])
def test_kernel_groups_and_channel_splits_equal_timm(name):
    """Every depthwise convolution, in order: its kernel size and channels equal timm's (Figure 5 as encoded there)."""
    with torch.device("meta"):
        ours = paperzoo.create_model(name)
        theirs = timm.create_model(name)

    def layout(model: torch.nn.Module) -> list[tuple[int, ...]]:
        return [(*m.kernel_size, m.in_channels, m.out_channels, m.groups, m.stride[0])
                for m in model.modules() if isinstance(m, torch.nn.Conv2d)]

    assert layout(ours) == layout(theirs)


@pytest.mark.heavy
def test_features_equal_timms_feature_extractor():
    torch.manual_seed(0)
    reference = randomize_weights(timm.create_model("mixnet_s")).eval()
    extractor = timm.create_model("mixnet_s", features_only=True)
    extractor.load_state_dict(reference.state_dict(), strict=False)
    ours = paperzoo.load_weights(paperzoo.create_model("mixnet_s"), reference, source="timm")
    backbone = paperzoo.create_model("mixnet_s", features_only=True)
    backbone.load_state_dict(ours.state_dict(), strict=False)
    x = torch.randn(2, 3, 64, 96)
    with torch.no_grad():
        features, expected = backbone.eval()(x), extractor.eval()(x)
    assert [info.stride for info in backbone.feature_info] == extractor.feature_info.reduction()
    assert [info.channels for info in backbone.feature_info] == extractor.feature_info.channels()
    for feature, reference_map in zip(features, expected, strict=True):
        assert_close_rel(feature, reference_map)
