"""The shared layers, each against an independent implementation or its defining property."""

from __future__ import annotations

import pytest
import torch
import torchvision
from torch import nn

from conftest import assert_close_rel
from paperzoo.layers import ConvNormAct, SqueezeExcite, StochasticDepth


def test_squeeze_excite_equals_torchvision():
    torch.manual_seed(0)
    reference = torchvision.ops.SqueezeExcitation(32, 8, activation=nn.SiLU).eval()
    ours = SqueezeExcite(32, 8, act_layer=nn.SiLU).eval()
    ours.load_state_dict(reference.state_dict())  # fc1 and fc2, as in torchvision
    x = torch.randn(2, 32, 7, 9)
    assert_close_rel(ours(x), reference(x))


def test_stochastic_depth_drops_whole_examples_and_keeps_the_mean():
    torch.manual_seed(0)
    drop = StochasticDepth(0.25).train()
    branch = torch.ones(4000, 3, 2, 2)
    out = drop(branch)
    per_example = out.flatten(1)
    kept = per_example[:, 0] > 0
    assert torch.all(per_example[kept] == 1 / 0.75) and torch.all(per_example[~kept] == 0)
    assert abs(kept.float().mean().item() - 0.75) < 0.03
    assert abs(out.mean().item() - 1.0) < 0.04  # E[y] = x: eval needs no rescaling
    assert drop.eval()(branch) is branch
    assert StochasticDepth(0.0).train()(branch) is branch
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        StochasticDepth(1.0)


def test_stochastic_depth_equals_torchvision_for_the_same_seed():
    x = torch.randn(64, 8, 3, 3)
    torch.manual_seed(3)
    ours = StochasticDepth(0.3).train()(x)
    torch.manual_seed(3)
    reference = torchvision.ops.stochastic_depth(x, 0.3, "row", training=True)
    assert torch.equal(ours, reference)


def test_conv_norm_act_padding_and_bias_rules():
    block = ConvNormAct(4, 8, kernel_size=5, dilation=2)
    assert block.conv.padding == (4, 4) and block.conv.bias is None and isinstance(block.act, nn.ReLU)
    assert block(torch.randn(1, 4, 11, 13)).shape == (1, 8, 11, 13)
    plain = ConvNormAct(4, 8, norm_layer=None, act_layer=None)
    assert plain.conv.bias is not None and list(dict(plain.named_children())) == ["conv"]
    assert ConvNormAct(4, 8, bias=True).conv.bias is not None
    assert isinstance(ConvNormAct(4, 8, act_layer=nn.GELU).act, nn.GELU)  # no inplace argument needed
