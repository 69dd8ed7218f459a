"""ResNeXt: the grouped convolution is the sum of C separate paths (Figure 3, (a) ≡ (c)), the template rules
give the paper's Table 1, and the dilated backbone (``output_stride``) equals torchvision's."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
import torchvision

import paperzoo
from conftest import assert_close_rel, randomize_batchnorm
from paperzoo.models.classification.resnext import AggregatedBottleneck


def test_grouped_block_is_the_sum_of_c_separate_transformations():
    """y = x + Σ_i T_i(x) (eq. 3), each T_i a 1×1 → 3×3 → 1×1 path of width d computed on its own, equals the
    block built with one grouped convolution (Figure 3c), with the same weights."""
    torch.manual_seed(0)
    cardinality, d, channels = 8, 4, 64
    block = randomize_batchnorm(AggregatedBottleneck(channels, channels, cardinality, d)).eval()
    x = torch.randn(2, channels, 9, 9)

    def path(i: int) -> torch.Tensor:  # T_i(x), up to the last 1×1, with the slices of the weights it owns
        own = slice(i * d, (i + 1) * d)
        h = F.conv2d(x, block.conv1.conv.weight[own])
        h = F.relu(F.batch_norm(h, block.conv1.norm.running_mean[own], block.conv1.norm.running_var[own],
                                block.conv1.norm.weight[own], block.conv1.norm.bias[own], eps=block.conv1.norm.eps))
        h = F.conv2d(h, block.conv2.conv.weight[own], padding=1)  # a plain 3×3 on this path's d channels
        h = F.relu(F.batch_norm(h, block.conv2.norm.running_mean[own], block.conv2.norm.running_var[own],
                                block.conv2.norm.weight[own], block.conv2.norm.bias[own], eps=block.conv2.norm.eps))
        return F.conv2d(h, block.conv3.conv.weight[:, own])  # this path's part of the last 1×1

    with torch.no_grad():
        aggregated = sum(path(i) for i in range(cardinality))  # Σ_i T_i(x), before the last BN
        expected = F.relu(x + block.conv3.norm(aggregated))
        assert_close_rel(block(x), expected)


def test_template_rules_give_table_1():
    """ResNeXt-50 (32×4d), Table 1: inner widths 128, 256, 512, 1024 with C = 32; outputs 256 … 2048."""
    with torch.device("meta"):
        model = paperzoo.create_model("resnext50_32x4d")
    for stage, inner, out in zip(model.stages, (128, 256, 512, 1024), (256, 512, 1024, 2048), strict=True):
        for block in stage:
            assert block.conv2.conv.groups == 32 and block.conv2.conv.in_channels == inner
            assert block.conv3.conv.out_channels == out
    # eq. 4 / Table 2: a conv2_x block inside the stage costs C·(256·d + 3·3·d·d + d·256) weights (no BN).
    block = model.stages.conv2_x[1]
    weights = sum(m.weight.numel() for m in block.modules() if isinstance(m, torch.nn.Conv2d))
    assert weights == 32 * (256 * 4 + 3 * 3 * 4 * 4 + 4 * 256) == 70_144


@pytest.mark.heavy
@pytest.mark.parametrize("output_stride, dilate", [(16, [False, False, True]), (8, [False, True, True])])
def test_dilated_resnext_backbone_equals_torchvision(output_stride, dilate):
    """The atrous backbone for segmentation: torchvision's replace_stride_with_dilation, stage by stage."""
    torch.manual_seed(0)
    reference = randomize_batchnorm(torchvision.models.resnext50_32x4d(replace_stride_with_dilation=dilate)).eval()
    ours = paperzoo.create_model("resnext50_32x4d", output_stride=output_stride, features_only=True).eval()
    state = {k: v for k, v in reference.state_dict().items() if not k.startswith("fc.")}
    paperzoo.load_weights(ours, state, source="torchvision")
    x = torch.randn(1, 3, 80, 96)
    with torch.no_grad():
        features = ours(x)
        expected = reference.maxpool(reference.relu(reference.bn1(reference.conv1(x))))
        stages = [reference.layer1, reference.layer2, reference.layer3, reference.layer4]
        for i, (stage, feature, info) in enumerate(zip(stages, features, ours.feature_info, strict=True)):
            expected = stage(expected)
            assert_close_rel(feature, expected)
            assert info.stride == min(4 * 2**i, output_stride)
            assert feature.shape[-2] == -(-x.shape[-2] // info.stride)  # ceil: the map keeps that stride
    dilations = [block.conv2.conv.dilation[0] for stage in ours.stages for block in stage]
    assert max(dilations) == 32 // output_stride
