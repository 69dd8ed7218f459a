"""RegNet: the quantized linear width rule (eqs. 2–4) and the group-width compatibility rule, checked against
torchvision's independent implementation: the modules of its built networks, and its BlockParams.

The generic tests cover parameter counts, GMACs and output parity; these check the rule that generates the
widths, so that a variant that happened to match by count but not by layout, or a rule that only works for
the fifteen published configurations, cannot slip through.
"""

from __future__ import annotations

import random

import pytest
import torch
import torchvision
from torchvision.models import regnet as tv_regnet

import paperzoo
from conftest import assert_close_rel, randomize_batchnorm
from paperzoo.models.classification.regnet import REGNET_CONFIGS, StageSpec, regnet_stages

TORCHVISION_REGNETS = sorted(name for name in torchvision.models.list_models() if name.startswith("regnet_"))


def torchvision_on_meta(name: str, monkeypatch: pytest.MonkeyPatch) -> torch.nn.Module:
    """torchvision's own builder, its modules created on the meta device (no weights, no time).

    Its builder computes the widths with tensors, which the meta device cannot read back, so only the network
    constructor is moved onto the meta device; the width computation runs as torchvision wrote it.
    """
    real_regnet = tv_regnet.RegNet

    def on_meta(*args, **kwargs):
        with torch.device("meta"):
            return real_regnet(*args, **kwargs)

    monkeypatch.setattr(tv_regnet, "RegNet", on_meta)
    return torchvision.models.get_model(name, weights=None)


def torchvision_stages(model: torch.nn.Module) -> list[StageSpec]:
    """(width, depth, group width) of each stage, read off torchvision's modules."""
    specs = []
    for stage in model.trunk_output:
        grouped = stage[0].f.b[0]
        specs.append(StageSpec(width=stage[0].f.c[0].out_channels, depth=len(stage),
                               group_width=grouped.out_channels // grouped.groups))
    return specs


def test_every_torchvision_regnet_is_registered():
    assert set(REGNET_CONFIGS) == set(TORCHVISION_REGNETS) == set(paperzoo.list_models("regnet_*"))


@pytest.mark.parametrize("name", TORCHVISION_REGNETS)
def test_width_rule_reproduces_torchvision_stages(name, monkeypatch):
    reference = torchvision_on_meta(name, monkeypatch)
    config = {k: v for k, v in REGNET_CONFIGS[name].items() if k != "se_ratio"}
    assert regnet_stages(**config) == torchvision_stages(reference)


@pytest.mark.parametrize("name", TORCHVISION_REGNETS)
def test_blocks_match_torchvision_block_by_block(name, monkeypatch):
    """Every block: in/out widths, groups, stride, squeeze width of the SE gate, projection or identity."""
    reference = torchvision_on_meta(name, monkeypatch)
    with torch.device("meta"):
        ours = paperzoo.create_model(name)
    theirs = [block for stage in reference.trunk_output for block in stage]
    mine = [block for stage in ours.stages for block in stage]
    assert len(mine) == len(theirs)
    for i, (a, b) in enumerate(zip(mine, theirs, strict=True)):
        for our_conv, their_conv in ((a.conv1.conv, b.f.a[0]), (a.conv2.conv, b.f.b[0]), (a.conv3.conv, b.f.c[0])):
            assert (our_conv.in_channels, our_conv.out_channels, our_conv.groups, our_conv.stride) == (
                their_conv.in_channels, their_conv.out_channels, their_conv.groups, their_conv.stride), f"block {i}"
        has_se = "se" in b.f._modules
        assert isinstance(a.se, paperzoo.layers.SqueezeExcite) == has_se == name.startswith("regnet_y")
        if has_se:
            assert a.se.fc1.out_channels == b.f.se.fc1.out_channels, f"block {i}: squeeze width"
        assert isinstance(a.shortcut, torch.nn.Identity) == (b.proj is None), f"block {i}: shortcut"


def block_params(bottleneck_ratio: float = 1.0, **config) -> list[StageSpec]:
    """torchvision's BlockParams for a configuration (it calls b the bottleneck multiplier), as StageSpecs."""
    params = tv_regnet.BlockParams.from_init_params(bottleneck_multiplier=bottleneck_ratio, **config)
    return [StageSpec(w, d, g) for w, d, g in zip(params.widths, params.depths, params.group_widths, strict=True)]


# One-stage networks (w_a = 0: every block has width w_0) isolate the compatibility rule. Expected values are
# torchvision's BlockParams, and the comment says which branch of the rule each case takes.
@pytest.mark.parametrize("w_0, group_width, bottleneck_ratio, expected_width, expected_group_width", [
    (200, 24, 1.0, 192, 24),   # 200 / 24 = 8.33: down to 8 groups of 24
    (40, 16, 1.0, 48, 16),     # 40 / 16 = 2.5: a half rounds up (the authors' code would give 32)
    (192, 56, 1.0, 224, 56),   # nearest is 168, 12.5% below 192: more than 10% down, so one group more
    (200, 256, 1.0, 200, 200), # a group cannot be wider than the layer: g shrinks to w, one group
    (200, 24, 0.5, 192, 24),   # bottleneck b = 1/2: the grouped layer has 100 channels → 96, w = 96 / b
    (64, 16, 1.0, 64, 16),     # already compatible: unchanged
])
def test_group_width_compatibility_rule(w_0, group_width, bottleneck_ratio, expected_width, expected_group_width):
    config = dict(depth=3, w_0=w_0, w_a=0.0, w_m=2.0, group_width=group_width, bottleneck_ratio=bottleneck_ratio)
    stages = regnet_stages(**config)
    assert stages == [StageSpec(expected_width, 3, expected_group_width)]
    assert stages == block_params(**config)


def test_width_rule_agrees_with_torchvision_across_the_design_space():
    """Random networks from the RegNet design space (the paper's ranges: d <= 64, w_0 and w_a <= 256,
    1.5 <= w_m <= 3, g up to 256): same stages as torchvision's BlockParams, and every stage compatible."""
    rng = random.Random(0)
    for _ in range(300):
        config = dict(depth=rng.randint(1, 64), w_0=8 * rng.randint(1, 32), w_a=round(rng.uniform(0, 256), 2),
                      w_m=round(rng.uniform(1.5, 3.0), 2), bottleneck_ratio=rng.choice([1.0, 0.5, 0.25]),
                      group_width=rng.choice([1, 2, 4, 8, 16, 24, 32, 48, 64, 256]))
        stages = regnet_stages(**config)
        assert stages == block_params(**config), config
        assert sum(s.depth for s in stages) == config["depth"]
        for spec in stages:
            inner = int(spec.width * config["bottleneck_ratio"])
            assert inner % spec.group_width == 0 and spec.group_width <= inner, (config, spec)


def test_invalid_parameters_are_refused():
    with pytest.raises(ValueError, match="w_0=20"):
        regnet_stages(depth=10, w_0=20, w_a=10.0, w_m=2.0, group_width=8)  # w_0 not a multiple of 8
    with pytest.raises(ValueError, match="w_m=1.0"):
        regnet_stages(depth=10, w_0=24, w_a=10.0, w_m=1.0, group_width=8)


def test_features_only_gives_torchvision_stage_outputs():
    """The four stages (strides 4 … 32) are torchvision's trunk stages, with its converted weights."""
    torch.manual_seed(0)
    reference = randomize_batchnorm(torchvision.models.regnet_y_400mf()).eval()
    ours = paperzoo.create_model("regnet_y_400mf", features_only=True).eval()
    state = {k: v for k, v in reference.state_dict().items() if not k.startswith("fc.")}
    paperzoo.load_weights(ours, state, source="torchvision")
    x = torch.randn(2, 3, 96, 80)
    with torch.no_grad():
        features = ours(x)
        expected = reference.stem(x)
        for stage, feature, info in zip(reference.trunk_output, features, ours.feature_info, strict=True):
            expected = stage(expected)
            assert_close_rel(feature, expected)
            assert feature.shape[1] == info.channels
            assert feature.shape[-2] == -(-x.shape[-2] // info.stride)  # ceil: every stride-2 layer pads
    assert [info.stride for info in ours.feature_info] == [4, 8, 16, 32]
