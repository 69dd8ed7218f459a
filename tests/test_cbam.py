"""CBAM: the two attention maps against the paper's equations computed by hand, their order and placement in
the ResNet bottleneck, the exported module's documented example, and the parameter budget of Table 4."""

from __future__ import annotations

import doctest

import torch
from torch.nn import functional as F

import paperzoo
from paperzoo.measure import count_parameters
from paperzoo.models.classification import cbam
from paperzoo.models.classification.cbam import CBAM, CBAMBottleneck, ChannelAttention, SpatialAttention


def randomize(module: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=generator) * 0.3)
    return module


def test_channel_attention_is_equation_2():
    torch.manual_seed(0)
    attention = randomize(ChannelAttention(32, reduction=16)).eval()
    x = torch.randn(3, 32, 5, 7)
    w0, b0 = attention.mlp.fc1.weight, attention.mlp.fc1.bias  # W0: (C/r, C)
    w1, b1 = attention.mlp.fc2.weight, attention.mlp.fc2.bias  # W1: (C, C/r)
    assert w0.shape == (2, 32) and w1.shape == (32, 2)

    def mlp(v):
        return F.relu(v @ w0.T + b0) @ w1.T + b1

    expected = torch.sigmoid(mlp(x.mean(dim=(2, 3))) + mlp(x.flatten(2).max(dim=2).values))
    with torch.no_grad():
        actual = attention(x)
    assert actual.shape == (3, 32, 1, 1)
    torch.testing.assert_close(actual[:, :, 0, 0], expected)


def test_spatial_attention_is_equation_3():
    torch.manual_seed(1)
    attention = randomize(SpatialAttention(kernel_size=7), seed=1).eval()
    x = torch.randn(2, 16, 9, 11)
    pooled = torch.stack([x.mean(dim=1), x.max(dim=1).values], dim=1)  # [AvgPool(F); MaxPool(F)]
    expected = torch.sigmoid(F.conv2d(pooled, attention.conv.weight, attention.conv.bias, padding=3))
    with torch.no_grad():
        actual = attention(x)
    assert actual.shape == (2, 1, 9, 11) and attention.conv.weight.shape == (1, 2, 7, 7)
    torch.testing.assert_close(actual, expected)


def test_cbam_applies_channel_then_spatial_attention():
    torch.manual_seed(2)
    module = randomize(CBAM(64), seed=2).eval()
    x = torch.randn(2, 64, 6, 6)
    with torch.no_grad():
        refined = module.channel_attention(x) * x  # F' = M_c(F) ⊗ F
        expected = module.spatial_attention(refined) * refined  # F'' = M_s(F') ⊗ F'
        located = module.spatial_attention(x) * x
        spatial_first = module.channel_attention(located) * located
        actual = module(x)
    torch.testing.assert_close(actual, expected)
    assert not torch.allclose(actual, spatial_first), "spatial first is another function: the order matters"


def test_cbam_docstring_example_runs():
    finder = doctest.DocTestFinder()
    runner = doctest.DocTestRunner()
    for test in finder.find(CBAM, "CBAM", globs={}):
        runner.run(test)
    assert runner.failures == 0 and runner.tries >= 4


def test_attention_sits_on_the_residual_branch_before_the_addition():
    torch.manual_seed(3)
    block = randomize(CBAMBottleneck(64, 16, stride=2), seed=3).eval()
    x = torch.randn(2, 64, 8, 8)
    with torch.no_grad():
        branch = block.conv3(block.conv2(block.conv1(x)))
        expected = F.relu(block.attention(branch) + block.shortcut(x))
        assert torch.equal(block(x), expected)


def test_spatial_maps_start_uniform_as_in_the_authors_code():
    torch.manual_seed(0)
    model = paperzoo.create_model("cbam_resnet50", num_classes=10).eval()
    spatial = [m for m in model.modules() if isinstance(m, SpatialAttention)]
    assert len(spatial) == 16  # one per bottleneck: [3, 4, 6, 3]
    with torch.no_grad():
        assert torch.equal(spatial[0](torch.randn(1, 256, 4, 4)), torch.full((1, 1, 4, 4), 0.5))


def test_parameter_budget_is_resnet50_plus_one_cbam_per_block():
    """Table 4: ResNet50 25.56M → 28.09M. The difference is the MLPs (2·C²/r weights, C/r + C biases) and
    the 7×7 convolutions (2·49 + 1) of the 16 blocks; everything else is the ResNet-50 the paper starts from."""
    with torch.device("meta"):
        resnet50 = count_parameters(paperzoo.create_model("resnet50"))
        ours = count_parameters(paperzoo.create_model("cbam_resnet50"))
    added = sum(n * (2 * c * c // 16 + c // 16 + c + 2 * 49 + 1)
                for n, c in [(3, 256), (4, 512), (6, 1024), (3, 2048)])
    assert ours == resnet50 + added
    assert round(ours / 1e6, 2) == 28.09  # the paper's figure


def test_module_exports_the_attention_blocks():
    assert {"CBAM", "ChannelAttention", "SpatialAttention"} <= set(cbam.__all__)


def test_recipe_divides_the_lr_at_epochs_30_and_60_of_90():
    """§4 follows ResNet's ImageNet schedule: lr ÷10 at epochs 30 and 60 of 90 (the card had 50%/75%, CIFAR's)."""
    recipe = paperzoo.model_card("cbam_resnet50").recipe
    assert recipe.schedule == "step" and recipe.gamma == 0.1
    assert [round(f * 90) for f in recipe.milestones] == [30, 60]
    assert [round(f * 300) for f in recipe.milestones] == [100, 200]  # fractions, not 45/68 of a 90-epoch run
