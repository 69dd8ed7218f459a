"""The MBConv family (MobileNetV2, EfficientNet, EfficientNetV2) beyond the generic contract and parity tests:
compound scaling against the released table, the rounding rules, the per-variant input sizes on the cards,
stochastic depth (its schedule, training against eval, the same random draws as torchvision), the feature
maps of ``features_only``, and the shared inverted residual block.
"""

from __future__ import annotations

import math

import pytest
import timm
import torch
import torchvision
from torchvision.models import _utils as tv_utils
from torchvision.models import efficientnet as tv_efficientnet

import paperzoo
from conftest import assert_close_rel, randomize_batchnorm
from paperzoo.layers import InvertedResidual
from paperzoo.measure import count_parameters
from paperzoo.models.classification import efficientnet as ours_v1
from paperzoo.models.classification import efficientnet_v2 as ours_v2

B_VARIANTS = [f"efficientnet_b{i}" for i in range(8)]
V2_VARIANTS = ["efficientnet_v2_s", "efficientnet_v2_m", "efficientnet_v2_l"]


def meta_parameters(build) -> int:
    with torch.device("meta"):
        return count_parameters(build())


# --- compound scaling: eq. 3 against the released table ---------------------------------------------------

def test_compound_scaling_is_equation_3():
    # The paper's constants (§3.3): α = 1.2, β = 1.1, γ = 1.15 with α · β² · γ² ≈ 2.
    assert ours_v1.ALPHA * ours_v1.BETA**2 * ours_v1.GAMMA**2 == pytest.approx(2, abs=0.1)
    for phi in (0, 1, 2.5, 7):
        c = ours_v1.compound_scaling(phi)
        assert c.depth == pytest.approx(1.2**phi) and c.width == pytest.approx(1.1**phi)
        assert c.resolution == round(224 * 1.15**phi)
    assert ours_v1.compound_scaling(0) == ours_v1.RELEASED_SCALING["efficientnet_b0"][:3]


def test_released_table_departs_from_alpha_beta_gamma_to_the_phi():
    """What the Deviations paragraph says about the table, computed from eq. 3 and the table."""
    table = ours_v1.RELEASED_SCALING

    def implied_phi(name: str) -> tuple[float, float, float]:  # the φ each coefficient alone would mean
        width, depth, resolution, _ = table[name]
        return (math.log(width) / math.log(ours_v1.BETA), math.log(depth) / math.log(ours_v1.ALPHA),
                math.log(resolution / 224) / math.log(ours_v1.GAMMA))

    # B1 lies between φ = 0 and φ = 1, its width unscaled; B2 and B3 are eq. 3 at φ = 1 and 2 to one decimal.
    assert table["efficientnet_b1"][0] == 1.0 and 0 < implied_phi("efficientnet_b1")[1] < 1
    for name, phi in (("efficientnet_b2", 1), ("efficientnet_b3", 2)):
        c = ours_v1.compound_scaling(phi)
        assert table[name][:2] == (round(c.width, 1), round(c.depth, 1)) and abs(table[name][2] - c.resolution) <= 4
    # From B4 on no single φ gives the three coefficients, and depth lags behind the most.
    for name in B_VARIANTS[4:]:
        width_phi, depth_phi, resolution_phi = implied_phi(name)
        assert max(width_phi, resolution_phi) - depth_phi > 0.5, f"{name}: {implied_phi(name)}"
    # B7: width and resolution near φ = 7, depth near φ = 6.2 (α⁷ = 3.58 would be needed, the table has 3.1).
    width_phi, depth_phi, resolution_phi = implied_phi("efficientnet_b7")
    assert width_phi == pytest.approx(7, abs=0.3) and resolution_phi == pytest.approx(7, abs=0.1)
    assert depth_phi == pytest.approx(6.2, abs=0.05)
    # The table's FLOPS factors d · w² · r² (Deviations: 1.3, 2.0, 3.6, 10, 23, 47, 89), each below 1.92^φ.
    factors = [d * w**2 * (r / 224) ** 2 for w, d, r, _ in (table[n] for n in B_VARIANTS[1:])]
    for got, stated in zip(factors, (1.3, 2.0, 3.6, 10, 23, 47, 89), strict=True):
        assert got == pytest.approx(stated, rel=0.05)
    alpha_beta_gamma = ours_v1.ALPHA * ours_v1.BETA**2 * ours_v1.GAMMA**2
    assert all(f < alpha_beta_gamma**phi for phi, f in enumerate(factors, start=1))


def test_networks_built_from_equation_3():
    """The constructor takes eq. 3's coefficients too: φ = 1 builds torchvision's B2 exactly (the same rounded
    widths and depths), φ = 7 a deeper network than the released B7."""
    def from_phi(phi: float):
        c = ours_v1.compound_scaling(phi)
        return lambda: ours_v1.EfficientNet(width_coefficient=c.width, depth_coefficient=c.depth)

    assert meta_parameters(from_phi(1)) == meta_parameters(torchvision.models.efficientnet_b2)
    with torch.device("meta"):
        pure = from_phi(7)()
        released = torchvision.models.efficientnet_b7()
    blocks_of_ours = sum(len(stage) for stage in pure.stages)
    blocks_of_released = sum(len(stage) for stage in released.features[1:-1])
    assert blocks_of_ours > blocks_of_released == 55  # the table's d = 3.1 against α⁷ = 3.58


def test_rounding_rules_equal_torchvision():
    widths = {w for w, *_ in ours_v1.RELEASED_SCALING.values()} | {1.1**phi for phi in range(8)}
    channels = {ours_v1.STEM_CHANNELS, ours_v1.HEAD_CHANNELS} | {c for *_, c, _ in ours_v1.B0_STAGES}
    for width in widths:
        for c in channels:
            assert ours_v1.round_channels(c, width) == tv_utils._make_divisible(c * width, 8), (c, width)
    for depth in {d for _, d, *_ in ours_v1.RELEASED_SCALING.values()} | {1.2**phi for phi in range(8)}:
        for layers in range(1, 5):
            assert ours_v1.round_layers(layers, depth) == tv_efficientnet.MBConvConfig.adjust_depth(layers, depth)


# --- the cards: each variant's input size ------------------------------------------------------------------

def _torchvision_crop_size(name: str) -> int:
    weights = torchvision.models.get_model_weights(name).DEFAULT
    (size,) = weights.transforms().crop_size
    return size


@pytest.mark.parametrize("name", B_VARIANTS)
def test_efficientnet_cards_give_the_released_resolution(name):
    resolution = ours_v1.RELEASED_SCALING[name][2]
    assert paperzoo.model_card(name).input.shape == (3, resolution, resolution)
    # torchvision's evaluation transforms agree, except B2: its weights (timm's, trained at 256) are evaluated
    # at 288, where the released table and the paper's B2 use 260.
    expected = 288 if name == "efficientnet_b2" else resolution
    assert _torchvision_crop_size(name) == expected


@pytest.mark.parametrize("name, resolution", [("efficientnet_v2_s", 384), ("efficientnet_v2_m", 480),
                                              ("efficientnet_v2_l", 480), ("mobilenet_v2", 224)])
def test_cards_give_torchvision_evaluation_size(name, resolution):
    # 384 / 480 / 480: the paper's evaluation sizes for V2-S, M, L; 224: MobileNetV2's Table 2.
    assert paperzoo.model_card(name).input.shape == (3, resolution, resolution)
    assert _torchvision_crop_size(name) == resolution


@pytest.mark.parametrize("name", B_VARIANTS + V2_VARIANTS)
def test_batchnorm_settings_equal_torchvision(name):
    with torch.device("meta"):
        ours = paperzoo.create_model(name)
        reference = torchvision.models.get_model(name)
    settings = {(m.eps, m.momentum) for m in ours.modules() if isinstance(m, torch.nn.BatchNorm2d)}
    expected = {(m.eps, m.momentum) for m in reference.modules() if isinstance(m, torch.nn.BatchNorm2d)}
    assert settings == expected and len(settings) == 1


# --- stochastic depth --------------------------------------------------------------------------------------

def _drop_probabilities(model: torch.nn.Module) -> list[float]:
    """Each residual block's stochastic-depth probability, in forward order."""
    return [m.p for m in model.modules() if type(m).__name__ == "StochasticDepth"]


@pytest.mark.parametrize("name", ["efficientnet_b0", "efficientnet_b7", "efficientnet_v2_s"])
def test_stochastic_depth_schedule_equals_torchvision(name):
    with torch.device("meta"):
        ours = paperzoo.create_model(name)
        reference = torchvision.models.get_model(name)
    # torchvision gives every block a StochasticDepth but applies it only with a shortcut; we build it only there.
    expected = [b.stochastic_depth.p for b in reference.modules()
                if isinstance(b, (tv_efficientnet.MBConv, tv_efficientnet.FusedMBConv)) and b.use_res_connect]
    assert _drop_probabilities(ours) == pytest.approx(expected)
    assert max(expected) < 0.2 and sorted(expected) == expected  # linear in the block index, below 0.2


# Small members of each family, so that the training-mode tests stay fast: the same classes and code paths.
TINY = {
    "efficientnet": lambda **kw: ours_v1.EfficientNet(width_coefficient=0.25, depth_coefficient=0.5, **kw),
    "efficientnet_v2": lambda **kw: ours_v2.EfficientNetV2(
        stages=(ours_v2.StageSpec("fused", 1, 3, 1, 16, 2), ours_v2.StageSpec("fused", 4, 3, 2, 24, 2),
                ours_v2.StageSpec("mbconv", 4, 3, 2, 32, 3, 0.25)), stem_channels=16, head_channels=64, **kw),
}


@pytest.mark.parametrize("family", sorted(TINY))
def test_stochastic_depth_only_in_training(family):
    torch.manual_seed(0)
    model = TINY[family](dropout=0.0, stochastic_depth_prob=0.5)  # dropout off: only stochastic depth is random
    assert len(_drop_probabilities(model)) >= 3
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        model.train()
        assert not torch.equal(model(x), model(x)), "two training passes with p > 0 must differ"
        model.eval()
        assert torch.equal(model(x), model(x))
    still = TINY[family](dropout=0.0, stochastic_depth_prob=0.0).train()
    with torch.no_grad():
        assert torch.equal(still(x), still(x)), "with p = 0 training is deterministic"


@pytest.mark.parametrize("name", ["mobilenet_v2", "efficientnet_b0", "efficientnet_v2_s"])
def test_training_mode_draws_the_same_random_numbers_as_torchvision(name):
    """Stochastic depth and dropout draw in the same order as torchvision's, so with the same seed a training
    step gives the same output (BatchNorm uses the batch statistics in both)."""
    torch.manual_seed(0)
    reference = torchvision.models.get_model(name).train()
    ours = paperzoo.load_weights(paperzoo.create_model(name), reference.state_dict(), source="torchvision").train()
    x = torch.randn(4, 3, 64, 64)
    with torch.no_grad():
        torch.manual_seed(7)
        expected = reference(x)
        torch.manual_seed(7)
        got = ours(x)
    assert_close_rel(got, expected)


# --- features_only -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("name, timm_name", [("mobilenet_v2", "mobilenetv2_100"),
                                             ("efficientnet_b0", "efficientnet_b0"),
                                             ("efficientnet_v2_s", "tf_efficientnetv2_s"),
                                             ("efficientnet_v2_m", "tf_efficientnetv2_m")])
def test_feature_levels_are_timms(name, timm_name):
    """The five maps: the last stage at each stride 2 … 32, the levels timm's backbones return."""
    with torch.device("meta"):
        ours = paperzoo.create_model(name, features_only=True)
        reference = timm.create_model(timm_name, features_only=True)
    assert [i.channels for i in ours.feature_info] == reference.feature_info.channels()
    assert [i.stride for i in ours.feature_info] == reference.feature_info.reduction() == [2, 4, 8, 16, 32]


@pytest.mark.parametrize("name", ["mobilenet_v2", "efficientnet_b0", "efficientnet_v2_s"])
def test_feature_maps_equal_torchvision_intermediate_outputs(name):
    torch.manual_seed(0)
    reference = randomize_batchnorm(torchvision.models.get_model(name)).eval()
    ours = paperzoo.create_model(name, features_only=True).eval()
    converted = paperzoo.interop.convert_state_dict(ours, reference.state_dict(), "torchvision")
    missing, unexpected = ours.load_state_dict(converted, strict=False)
    assert missing == [] and all(k.startswith(("head_conv.", "fc.")) for k in unexpected)
    x = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        features = ours(x)
        expected, y = [], x
        for layer in reference.features[:-1]:  # all but the head convolution
            y = layer(y)
            expected.append(y)
    # torchvision's feature list at the same points: after the stem and each stage (MobileNetV2: each block).
    ends = {"mobilenet_v2": [1, 3, 6, 13, 17], "efficientnet_b0": [1, 2, 3, 5, 7], "efficientnet_v2_s": [1, 2, 3, 5, 6]}
    for feature, index, info in zip(features, ends[name], ours.feature_info, strict=True):
        assert_close_rel(feature, expected[index])
        assert feature.shape[1] == info.channels and feature.shape[-1] == 96 // info.stride


def test_converter_refuses_another_variant():
    with torch.device("meta"):
        ours = paperzoo.create_model("efficientnet_b1")
        reference = torchvision.models.efficientnet_b0()
    with pytest.raises(paperzoo.interop.WeightsMismatchError, match="missing keys"):
        paperzoo.load_weights(ours, reference.state_dict(), source="torchvision")


# --- the shared inverted residual block --------------------------------------------------------------------

def test_inverted_residual_parts():
    block = InvertedResidual(40, 80, expand_ratio=6, kernel_size=5, stride=2, act_layer=torch.nn.SiLU,
                             se_ratio=0.25, stochastic_depth_prob=0.1)
    assert block.expand.conv.out_channels == 240 and block.depthwise.conv.groups == 240
    assert block.depthwise.conv.kernel_size == (5, 5) and block.depthwise.conv.stride == (2, 2)
    # Squeeze-excitation on the 240 expanded channels, its bottleneck from the 40 input channels (not 240 / 4).
    assert block.squeeze_excite.fc1.in_channels == 240 and block.squeeze_excite.fc1.out_channels == 10
    assert not hasattr(block.project, "act"), "the projection is linear"
    assert not block.use_residual and isinstance(block.stochastic_depth, torch.nn.Identity)
    x = torch.randn(2, 40, 15, 17)
    assert block(x).shape == (2, 80, 8, 9)

    mobile = InvertedResidual(16, 16, expand_ratio=1)  # t = 1: no expansion; ReLU6, no gate, a shortcut
    assert isinstance(mobile.expand, torch.nn.Identity) and isinstance(mobile.squeeze_excite, torch.nn.Identity)
    assert isinstance(mobile.depthwise.act, torch.nn.ReLU6) and mobile.use_residual


def test_inverted_residual_equals_torchvision_mobilenet_v2_block():
    torch.manual_seed(0)
    reference = randomize_batchnorm(torchvision.models.mobilenetv2.InvertedResidual(24, 24, 1, expand_ratio=6)).eval()
    ours = InvertedResidual(24, 24, expand_ratio=6).eval()
    names = ["expand.conv", "expand.norm", "depthwise.conv", "depthwise.norm", "project.conv", "project.norm"]
    sources = ["conv.0.0", "conv.0.1", "conv.1.0", "conv.1.1", "conv.2", "conv.3"]
    state = {k.replace(src, dst, 1): v for k, v in reference.state_dict().items()
             for src, dst in zip(sources, names, strict=True) if k.startswith(src + ".")}
    ours.load_state_dict(state)
    x = torch.randn(2, 24, 9, 11)
    with torch.no_grad():
        assert_close_rel(ours(x), reference(x))


def test_fused_mbconv_parts():
    fused = ours_v2.FusedMBConv(48, 48, expand_ratio=4)  # k×k to 192 channels, linear 1×1 back, a shortcut
    assert fused.fused_conv.conv.out_channels == 192 and fused.fused_conv.conv.groups == 1
    assert fused.project.conv.kernel_size == (1, 1) and not hasattr(fused.project, "act")
    assert fused.use_residual
    single = ours_v2.FusedMBConv(24, 24, expand_ratio=1)  # Fused-MBConv1: one k×k convolution with SiLU
    assert isinstance(single.project, torch.nn.Identity) and isinstance(single.fused_conv.act, torch.nn.SiLU)
    down = ours_v2.FusedMBConv(24, 48, expand_ratio=4, stride=2)
    assert not down.use_residual and down(torch.randn(1, 24, 9, 10)).shape == (1, 48, 5, 5)
