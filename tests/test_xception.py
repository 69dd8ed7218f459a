"""Xception: a depthwise separable convolution is a full convolution whose kernel factorises into a spatial
filter per channel times a 1×1 mixing (k²·C_in + C_in·C_out weights instead of k²·C_in·C_out), and the network
has the paper's 36 convolutional layers in 14 modules, 12 of them residual (§3)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

import paperzoo
from conftest import assert_close_rel
from paperzoo.models.classification.xception import SeparableConv2d, XceptionModule


def test_separable_convolution_is_a_factorised_full_convolution():
    torch.manual_seed(0)
    in_channels, out_channels, k = 12, 20, 3
    separable = SeparableConv2d(in_channels, out_channels, k)
    assert sum(p.numel() for p in separable.parameters()) == k * k * in_channels + in_channels * out_channels
    # The same map as one k×k convolution with kernel W[o, i] = P[o, i] · D[i]: rank one across channels and space.
    depthwise = separable.depthwise.weight[:, 0]  # (C_in, k, k)
    pointwise = separable.pointwise.weight[:, :, 0, 0]  # (C_out, C_in)
    full = pointwise[:, :, None, None] * depthwise[None]  # (C_out, C_in, k, k)
    x = torch.randn(2, in_channels, 8, 9)
    with torch.no_grad():
        assert_close_rel(separable(x), F.conv2d(x, full, padding=k // 2))


def test_middle_flow_separable_convolution_costs_a_ninth():
    """728 → 728 at 3×3: 9·728 + 728² = 536,536 weights, against 9·728² = 4,769,856 for a full convolution."""
    assert sum(p.numel() for p in SeparableConv2d(728, 728).parameters()) == 536_536


def test_36_convolutional_layers_in_14_modules():
    """§3: 36 convolutional layers (the two stem convolutions and 34 separable ones; the 1×1 shortcuts are not
    counted) in 14 modules: the stem, 12 modules with linear residual connections, and the exit flow's tail."""
    with torch.device("meta"):
        model = paperzoo.create_model("xception")
    separable = [m for m in model.modules() if isinstance(m, SeparableConv2d)]
    modules = [m for m in model.modules() if isinstance(m, XceptionModule)]
    assert 2 + len(separable) == 36
    assert len(modules) == 12 and len(model.middle_flow) == 8
    shortcuts = [m for m in modules if not isinstance(m.shortcut, torch.nn.Identity)]
    assert len(shortcuts) == 4  # the three entry modules and the exit module change the shape
