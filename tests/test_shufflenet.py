"""ShuffleNet v1 against its paper (Table 1's widths, Tables 1, 2 and 5's complexities, the unit's cost formula),
the channel shuffle against an index formula written independently and against torch.nn.ChannelShuffle, and
the units' concatenation and channel split. ShuffleNet V2's outputs are compared with torchvision's by
test_parity.py."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import paperzoo
from conftest import randomize_batchnorm
from paperzoo.measure import count_parameters, measure_gmacs
from paperzoo.models.classification.shufflenet_v1 import ShuffleNetUnit, channel_shuffle
from paperzoo.models.classification.shufflenet_v2 import BasicUnit, DownsamplingUnit
from paperzoo.models.classification.shufflenet_v2 import channel_shuffle as channel_shuffle_v2

# The paper's Table 1: output channels of Stage 2, 3, 4 of ShuffleNet 1× for g = 1, 2, 3, 4, 8.
TABLE1_OUTPUT_CHANNELS = {
    1: (144, 288, 576),
    2: (200, 400, 800),
    3: (240, 480, 960),
    4: (272, 544, 1088),
    8: (384, 768, 1536),
}
# The paper's Table 1: output sizes of Conv1, MaxPool, Stage 2, 3, 4 at 224×224, and "Repeat" per stage.
TABLE1_OUTPUT_SIZES = (112, 56, 28, 14, 7)
TABLE1_UNITS = (1 + 3, 1 + 7, 1 + 3)


def build_meta(name: str) -> torch.nn.Module:
    with torch.device("meta"):
        return paperzoo.create_model(name).eval()


@pytest.mark.parametrize("groups", sorted(TABLE1_OUTPUT_CHANNELS))
def test_stage_widths_and_sizes_are_table_1(groups):
    model = build_meta(f"shufflenet_v1_g{groups}")
    with torch.device("meta"):
        x = model.conv1(torch.empty(1, 3, 224, 224))
        channels, sizes = [x.shape[1]], [x.shape[-1]]
        x = model.maxpool(x)
        sizes.append(x.shape[-1])
        for stage in model.stages:
            x = stage(x)
            channels.append(x.shape[1])
            sizes.append(x.shape[-1])
    assert channels == [24, *TABLE1_OUTPUT_CHANNELS[groups]]
    assert tuple(sizes) == TABLE1_OUTPUT_SIZES
    assert tuple(len(stage) for stage in model.stages) == TABLE1_UNITS
    for i, stage in enumerate(model.stages):
        for j, unit in enumerate(stage):
            width = TABLE1_OUTPUT_CHANNELS[groups][i]
            assert unit.dwconv.conv.out_channels == width // 4, "the bottleneck is 1/4 of the output (§3.3)"
            assert unit.dwconv.conv.stride == ((2, 2) if j == 0 else (1, 1))
            assert unit.gconv2.conv.groups == groups
            # §3.3: no group convolution on the first pointwise layer of Stage 2 (24 input channels).
            assert unit.gconv1.conv.groups == (1 if (i, j) == (0, 0) else groups)


# Complexity in MFLOPs (multiply-adds): the paper's Table 1 for the 1× networks, Table 2 for the 0.5× ones.
PAPER_MFLOPS = {"shufflenet_v1_g1": 143, "shufflenet_v1_g2": 140, "shufflenet_v1_g3": 137,
                "shufflenet_v1_g4": 133, "shufflenet_v1_g8": 137,
                "shufflenet_v1_g1_x0_5": 38, "shufflenet_v1_g3_x0_5": 38,
                # Table 2 gives 38 for 0.5× g = 8 too, but halving Table 1's widths, as the authors' released
                # implementation does, gives 40: its README reports 40M, the figure checked here.
                "shufflenet_v1_g8_x0_5": 40,
                # ShuffleNet V2's Table 5.
                "shufflenet_v2_x0_5": 41, "shufflenet_v2_x1_0": 146, "shufflenet_v2_x1_5": 299,
                "shufflenet_v2_x2_0": 591}


@pytest.mark.parametrize("name", sorted(PAPER_MFLOPS))
def test_complexity_is_the_papers(name):
    measured = measure_gmacs(build_meta(name), torch.empty(1, 3, 224, 224, device="meta")) * 1000
    assert measured == pytest.approx(PAPER_MFLOPS[name], rel=0.03), f"{name}: {measured:.1f} MFLOPs"


def test_canonical_network_is_about_140_mflops():
    # Tables 2 and 5 call ShuffleNet 1× (g = 3) a 140-MFLOPs network (Table 1 gives 137).
    measured = measure_gmacs(build_meta("shufflenet_v1_g3"), torch.empty(1, 3, 224, 224, device="meta")) * 1000
    assert measured == pytest.approx(140, rel=0.03)


# Parameter counts the authors' released implementation reports (megvii-model/ShuffleNet-Series, in millions,
# rounded to 0.1M); the paper states none.
RELEASE_PARAMS_M = {"shufflenet_v1_g3": 1.9, "shufflenet_v1_g8": 2.4, "shufflenet_v1_g3_x0_5": 0.7,
                    "shufflenet_v1_g8_x0_5": 1.0}


@pytest.mark.parametrize("name", sorted(RELEASE_PARAMS_M))
def test_parameter_count_rounds_to_the_released_figure(name):
    count = count_parameters(build_meta(name))
    assert round(count / 1e6, 1) == RELEASE_PARAMS_M[name], f"{name}: {count:,}"


def test_unit_cost_is_the_papers_formula():
    """§3.2: a ShuffleNet unit on a c×h×w input with m bottleneck channels costs hw(2cm/g + 9m) multiply-adds."""
    c, h, w, g = 240, 28, 28, 3
    m = c // 4
    with torch.device("meta"):
        unit = ShuffleNetUnit(c, c, groups=g).eval()
        macs = measure_gmacs(unit, torch.empty(1, c, h, w)) * 1e9
    assert macs == pytest.approx(h * w * (2 * c * m / g + 9 * m), rel=1e-9)


# --- channel shuffle -------------------------------------------------------------------------------------

def shuffled_source(k: int, channels: int, groups: int) -> int:
    """Which input channel lands at output channel k: §3.1 reshapes C = g·n channels to (g, n) (input channel
    i·n + j at row i, column j), transposes to (n, g) and flattens, so output k = j·g + i takes row i = k mod g,
    column j = k div g."""
    n = channels // groups
    return (k % groups) * n + k // groups


@pytest.mark.parametrize("shuffle", [channel_shuffle, channel_shuffle_v2], ids=["v1", "v2"])
@pytest.mark.parametrize("channels, groups", [(6, 2), (6, 3), (12, 3), (12, 4), (24, 8), (60, 3), (10, 1)])
def test_channel_shuffle_is_the_papers_permutation(shuffle, channels, groups):
    x = torch.arange(channels, dtype=torch.float32).view(1, channels, 1, 1).expand(2, channels, 3, 2)
    out = shuffle(x, groups)
    expected = torch.tensor([shuffled_source(k, channels, groups) for k in range(channels)], dtype=torch.float32)
    assert torch.equal(out[0, :, 0, 0], expected)
    assert torch.equal(out, x[:, expected.long()]), "the same permutation at every position and example"
    assert torch.equal(out, torch.nn.ChannelShuffle(groups)(x)), "torch's own channel shuffle agrees"


def test_after_the_shuffle_every_group_sees_every_group():
    # Figure 1(c): with g groups of n >= g channels, each of the next layer's groups gets channels of all groups.
    channels, groups = 12, 3
    n = channels // groups
    out = channel_shuffle(torch.arange(channels, dtype=torch.float32).view(1, channels, 1, 1), groups).flatten()
    for next_group in out.view(groups, n):
        assert {int(c) // n for c in next_group} == set(range(groups))


def test_channel_shuffle_rejects_channels_that_do_not_split():
    with pytest.raises(ValueError, match="cannot shuffle 10 channels in 3 groups"):
        channel_shuffle(torch.zeros(1, 10, 2, 2), 3)


# --- the units -------------------------------------------------------------------------------------------

def random_unit(unit: torch.nn.Module) -> torch.nn.Module:
    torch.manual_seed(0)
    return randomize_batchnorm(unit).eval()


def test_stride_2_unit_concatenates_the_pooled_input_and_the_branch():
    unit = random_unit(ShuffleNetUnit(24, 240, groups=3, stride=2, group_first_pointwise=False))
    x = torch.randn(2, 24, 9, 8).relu()  # a unit's input comes out of a ReLU
    with torch.no_grad():
        out = unit(x)
        branch = unit.gconv2(unit.dwconv(unit.shuffle(unit.gconv1(x))))
    assert out.shape == (2, 240, 5, 4) and branch.shape == (2, 240 - 24, 5, 4)
    assert torch.allclose(out[:, :24], F.avg_pool2d(x, 3, stride=2, padding=1)), "the shortcut comes first"
    assert torch.allclose(out[:, 24:], branch.relu()), "then the branch, through the ReLU after the concat"


def test_stride_1_unit_adds_the_input():
    unit = random_unit(ShuffleNetUnit(240, 240, groups=3))
    x = torch.randn(2, 240, 7, 7).relu()
    with torch.no_grad():
        out = unit(x)
        branch = unit.gconv2(unit.dwconv(unit.shuffle(unit.gconv1(x))))
    assert torch.allclose(out, (x + branch).relu())


def test_v2_basic_unit_passes_half_of_the_channels_through():
    unit = random_unit(BasicUnit(116))
    x = torch.randn(2, 116, 7, 6)
    with torch.no_grad():
        out = unit(x)
        branch = unit.right_branch(x[:, 58:])
    # The two-group shuffle interleaves the halves: even channels are the identity half, odd ones the branch.
    assert torch.equal(out[:, 0::2], x[:, :58])
    assert torch.allclose(out[:, 1::2], branch)


def test_v2_downsampling_unit_doubles_the_width_and_halves_the_size():
    unit = random_unit(DownsamplingUnit(24, 116))
    x = torch.randn(2, 24, 9, 8)
    with torch.no_grad():
        out = unit(x)
        left, right = unit.left_branch(x), unit.right_branch(x)
    assert out.shape == (2, 116, 5, 4)
    assert torch.allclose(out[:, 0::2], left) and torch.allclose(out[:, 1::2], right)
