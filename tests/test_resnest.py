"""ResNeSt: the radix-major split-attention unit computes the paper's equations 1–4 written split by split in
cardinal-major order, and equals timm's unit for a cardinality above 1 (every registered variant has K = 1)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from timm.layers import SplitAttn

from conftest import assert_close_rel, randomize_weights
from paperzoo.models.classification.resnest import SplitAttention


def _bn_relu(x: torch.Tensor, norm: torch.nn.BatchNorm2d, rows: slice) -> torch.Tensor:
    """The eval-mode BatchNorm and ReLU of the channels ``rows`` only."""
    return F.relu(F.batch_norm(x, norm.running_mean[rows], norm.running_var[rows], norm.weight[rows],
                               norm.bias[rows], eps=norm.eps))


@pytest.mark.parametrize("radix, cardinality", [(3, 2), (2, 1), (1, 2)])
def test_split_attention_is_equations_1_to_4(radix, cardinality):
    """Split i of cardinal group k is U_{R(k−1)+i} in the paper; in the radix-major grouped convolution it is
    group i·K + k. Û^k = Σ_i U (eq. 1), s^k its spatial mean (eq. 2), a^k_i(c) the r-softmax over the R splits
    (a sigmoid when R = 1, eq. 4), V^k = Σ_i a^k_i U (eq. 3), V = Concat{V^1, …, V^K}."""
    torch.manual_seed(0)
    in_channels = channels = 24
    unit = randomize_weights(SplitAttention(in_channels, channels, radix, cardinality, min_hidden=8)).eval()
    x = torch.randn(2, in_channels, 5, 6)
    width = channels // cardinality  # C/K, the channels of one split and of one cardinal group's output
    in_width = in_channels // (cardinality * radix)
    conv, norm = unit.conv.conv, unit.conv.norm
    hidden = unit.fc1.conv.out_channels // cardinality  # G's hidden units per cardinal group

    with torch.no_grad():
        outputs = []
        for k in range(cardinality):
            splits = []
            for i in range(radix):
                g = i * cardinality + k  # radix-major position of split (k, i)
                rows = slice(g * width, (g + 1) * width)
                u = F.conv2d(x[:, g * in_width:(g + 1) * in_width], conv.weight[rows], padding=1)
                splits.append(_bn_relu(u, norm, rows))
            u_hat = sum(splits)  # eq. 1
            s = u_hat.mean(dim=(2, 3), keepdim=True)  # eq. 2
            own = slice(k * hidden, (k + 1) * hidden)
            h = F.conv2d(s, unit.fc1.conv.weight[own], unit.fc1.conv.bias[own])
            h = _bn_relu(h, unit.fc1.norm, own)
            logits = F.conv2d(h, unit.fc2.weight[k * radix * width:(k + 1) * radix * width],
                              unit.fc2.bias[k * radix * width:(k + 1) * radix * width])
            logits = logits.view(2, radix, width, 1, 1)  # G^c_i(s^k): split i's C/K channels
            a = torch.softmax(logits, dim=1) if radix > 1 else torch.sigmoid(logits)  # eq. 4
            if radix > 1:
                assert torch.allclose(a.sum(dim=1), torch.ones(2, width, 1, 1))  # the splits share each channel
            outputs.append(sum(a[:, i] * splits[i] for i in range(radix)))  # eq. 3
        expected = torch.cat(outputs, dim=1)  # V = Concat{V^k}
        assert_close_rel(unit(x), expected)


def test_split_attention_equals_timm_with_cardinality():
    """ResNeSt's ablation unit (radix 4, cardinality 2) against timm's SplitAttn: same function, same weights."""
    torch.manual_seed(0)
    reference = randomize_weights(SplitAttn(80, 80, radix=4, groups=2, norm_layer=torch.nn.BatchNorm2d)).eval()
    ours = SplitAttention(80, 80, radix=4, cardinality=2).eval()
    names = {"conv.weight": "conv.conv.weight", "fc1.weight": "fc1.conv.weight", "fc1.bias": "fc1.conv.bias"}
    state = {}
    for key, value in reference.state_dict().items():
        key = names.get(key, key)
        key = key.replace("bn0.", "conv.norm.").replace("bn1.", "fc1.norm.")
        state[key] = value
    ours.load_state_dict(state)
    x = torch.randn(2, 80, 9, 7)
    with torch.no_grad():
        assert_close_rel(ours(x), reference(x))
