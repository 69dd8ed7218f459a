"""ConvNeXt beyond the generic tests: stochastic depth (schedule and training behaviour, against torchvision),
the channels-first LayerNorm, the feature maps (taken before the next downsampling layer), the initialisation
and the smallest input, each against torchvision's implementation."""

from __future__ import annotations

import pytest
import torch
import torchvision
from torch import nn

import paperzoo
from conftest import assert_close_rel
from paperzoo.layers import StochasticDepth
from paperzoo.models.classification.convnext import ConvNeXt, ConvNeXtBlock, LayerNorm2d

VARIANTS = ["convnext_tiny", "convnext_small", "convnext_base", "convnext_large"]


SMALL_DEPTHS, SMALL_WIDTHS = (1, 1, 2, 1), (8, 16, 24, 32)


def small_convnext(**kwargs) -> ConvNeXt:
    """A few-thousand-parameter ConvNeXt for behaviour tests."""
    torch.manual_seed(0)
    features_only, out_indices = kwargs.pop("features_only", False), kwargs.pop("out_indices", None)
    model = ConvNeXt(depths=SMALL_DEPTHS, widths=SMALL_WIDTHS, num_classes=5, **kwargs)
    if features_only:  # what create_model(..., features_only=True) does
        model.as_backbone(out_indices)
    return model


def small_torchvision(**kwargs) -> torchvision.models.ConvNeXt:
    """torchvision's ConvNeXt class with the same small configuration (its builders fix the full sizes)."""
    from torchvision.models.convnext import CNBlockConfig

    outs = (*SMALL_WIDTHS[1:], None)
    setting = [CNBlockConfig(w, o, d) for w, o, d in zip(SMALL_WIDTHS, outs, SMALL_DEPTHS, strict=True)]
    torch.manual_seed(0)
    return torchvision.models.ConvNeXt(setting, num_classes=5, **kwargs)


@pytest.mark.parametrize("name", VARIANTS)
def test_stochastic_depth_probabilities_equal_torchvision(name):
    """The per-block drop probabilities, in order, equal those of torchvision's StochasticDepth modules (built
    with torchvision's own default stochastic_depth_prob for this variant)."""
    with torch.device("meta"):
        reference = getattr(torchvision.models, name)()
        ours = paperzoo.create_model(name)
    expected = [m.p for m in reference.modules() if isinstance(m, torchvision.ops.StochasticDepth)]
    actual = [m.p for m in ours.modules() if isinstance(m, StochasticDepth)]
    assert len(actual) == len(expected) == sum(len(stage.blocks) for stage in ours.stages)
    assert actual == pytest.approx(expected, abs=1e-12)
    assert actual[0] == 0.0 and actual[-1] > 0.0


def test_stochastic_depth_is_active_in_training_only():
    x = torch.randn(8, 3, 32, 32)
    # γ = 1 instead of 1e-6, so that a dropped branch changes the output by far more than rounding.
    model = small_convnext(stochastic_depth_prob=0.5, layer_scale_init=1.0).train()
    first, second = model(x), model(x)
    assert not torch.allclose(first, second), "training passes with p > 0 must differ"
    model.eval()
    assert torch.equal(model(x), model(x))

    without = small_convnext(stochastic_depth_prob=0.0, layer_scale_init=1.0).train()
    assert torch.equal(without(x), without(x)), "with p = 0 training is deterministic (nothing else is random)"


def test_training_mode_equals_torchvision_for_the_same_seed():
    """Same weights, same random draws: the drop masks fall on the same blocks and examples as in torchvision,
    which checks the schedule, where stochastic depth sits in the block and that it drops whole examples."""
    reference = small_torchvision(stochastic_depth_prob=0.5, layer_scale=1.0).train()  # γ = 1: branches count
    ours = paperzoo.load_weights(small_convnext(stochastic_depth_prob=0.5), reference, source="torchvision").train()
    x = torch.randn(16, 3, 32, 32)
    torch.manual_seed(7)
    expected = reference(x)
    torch.manual_seed(7)
    actual = ours(x)
    assert_close_rel(actual, expected)
    torch.manual_seed(8)
    assert not torch.allclose(ours(x), expected), "another seed drops other branches"


def test_layernorm2d_equals_torchvision_and_normalises_each_pixel():
    torch.manual_seed(0)
    reference = torchvision.models.convnext.LayerNorm2d(6, eps=1e-6)
    ours = LayerNorm2d(6)
    with torch.no_grad():
        reference.weight.normal_()
        reference.bias.normal_()
    ours.load_state_dict(reference.state_dict())
    x = torch.randn(2, 6, 5, 7) * 3 + 1
    assert_close_rel(ours(x), reference(x))
    # The definition, per pixel over the channels (biased variance, as LayerNorm): independent of both.
    mean = x.mean(dim=1, keepdim=True)
    var = x.var(dim=1, unbiased=False, keepdim=True)
    expected = (x - mean) / torch.sqrt(var + 1e-6) * ours.weight[:, None, None] + ours.bias[:, None, None]
    assert_close_rel(ours(x), expected)


def test_feature_maps_are_taken_before_the_next_downsampling():
    """features_only returns each stage's last block output, i.e. torchvision's ``features[2k+1]`` output,
    before the downsampling layer ``features[2k+2]``, at strides 4, 8, 16, 32 (timm's convention)."""
    reference = small_torchvision().eval()
    state = {k: v for k, v in reference.state_dict().items() if not k.startswith("classifier.")}
    backbone = paperzoo.load_weights(small_convnext(features_only=True), state, source="torchvision").eval()
    assert [(info.channels, info.stride) for info in backbone.feature_info] == [
        (8, 4), (16, 8), (24, 16), (32, 32)]
    with torch.device("meta"):
        tiny = paperzoo.create_model("convnext_tiny", features_only=True)
    assert [info.channels for info in tiny.feature_info] == [96, 192, 384, 768]  # torchvision's block_setting
    x = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        features = backbone(x)
        expected = x
        outputs = []
        for index, layer in enumerate(reference.features):
            expected = layer(expected)
            if index % 2 == 1:
                outputs.append(expected)
    for feature, reference_feature, info in zip(features, outputs, backbone.feature_info, strict=True):
        assert_close_rel(feature, reference_feature)
        assert feature.shape[-2:] == (64 // info.stride, 96 // info.stride)
    with pytest.raises(ValueError, match="out_indices"):
        small_convnext(features_only=True, out_indices=(4,))


def test_initialisation_follows_torchvision():
    model = small_convnext(layer_scale_init=1e-6)
    for name, module in model.named_modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            assert torch.all(module.bias == 0), f"{name}: bias not zero"
        if isinstance(module, nn.LayerNorm):  # LayerNorm2d included
            assert torch.all(module.weight == 1) and torch.all(module.bias == 0), name
        if isinstance(module, ConvNeXtBlock):
            assert torch.all(module.layer_scale == 1e-6)
            assert module.layer_scale.shape == (module.norm.weight.numel(), 1, 1)
    # trunc_normal(std=0.02): pooled over ~250k weights, ours have torchvision's spread.
    torch.manual_seed(0)
    config = {"depths": (1, 1, 1, 1), "widths": (32, 64, 96, 128)}
    ours = torch.cat([m.weight.flatten() for m in ConvNeXt(**config).modules() if isinstance(m, nn.Linear)])
    from torchvision.models.convnext import CNBlockConfig

    setting = [CNBlockConfig(32, 64, 1), CNBlockConfig(64, 96, 1), CNBlockConfig(96, 128, 1),
               CNBlockConfig(128, None, 1)]
    reference = torch.cat([m.weight.flatten() for m in torchvision.models.ConvNeXt(setting).modules()
                           if isinstance(m, nn.Linear)])
    assert ours.numel() == reference.numel()
    assert ours.std().item() == pytest.approx(reference.std().item(), rel=0.01)
    assert ours.std().item() == pytest.approx(0.02, rel=0.01)
    assert abs(ours.mean().item()) < 1e-4


def test_smallest_input_is_torchvision_s():
    """min_input_size = 32 found against the reference: torchvision's ConvNeXt takes 32×32 and fails at 31×31
    (res5's 2×2 downsampling convolution gets a 1×1 map)."""
    reference = small_torchvision().eval()  # the stem and downsampling strides of every variant
    with torch.no_grad():
        reference(torch.randn(1, 3, 32, 32))
        with pytest.raises(RuntimeError):
            reference(torch.randn(1, 3, 31, 31))
    assert ConvNeXt.min_input_size == 32
    model = small_convnext().eval()
    with torch.no_grad():
        assert model(torch.randn(1, 3, 32, 32)).shape == (1, 5)
        with pytest.raises(ValueError, match="H, W >= 32"):
            model(torch.randn(1, 3, 31, 31))


def test_head_is_pool_then_layernorm_then_fc():
    """forward_head(pre_logits=True) returns the LayerNorm of the pooled features (the paper's head)."""
    model = small_convnext().eval()
    with torch.no_grad():
        model.head_norm.weight.normal_()
        x = torch.randn(2, 3, 64, 64)
        features = model.forward_features(x)
        pooled = features.mean(dim=(2, 3))
        expected = nn.functional.layer_norm(pooled, (32,), model.head_norm.weight, model.head_norm.bias, 1e-6)
        assert_close_rel(model.forward_head(features, pre_logits=True), expected)
        assert_close_rel(model(x), model.fc(expected))
