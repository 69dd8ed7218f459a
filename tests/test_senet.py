"""SENet: the SE block gates the residual branch with σ(W_2 δ(W_1 z)) in (0, 1) (eqs. 2–4), adds the parameters
eq. 5 predicts, and SENet-154 carries the Appendix's changes (a) to (d)."""

from __future__ import annotations

import torch

import paperzoo
from conftest import assert_close_rel, randomize_batchnorm
from paperzoo.measure import count_parameters
from paperzoo.models.classification.senet import SEBottleneck


def test_se_gates_the_residual_branch_before_the_sum():
    """x̃ = s · U with s = σ(W_2 δ(W_1 z)), z the channel means of U (eqs. 2–4), every gate in (0, 1); the
    identity is added unscaled."""
    torch.manual_seed(0)
    block = randomize_batchnorm(SEBottleneck(256, 256, 64, 64)).eval()
    x = torch.randn(2, 256, 7, 7)
    with torch.no_grad():
        u = block.conv3(block.conv2(block.conv1(x)))
        z = u.mean(dim=(2, 3))  # squeeze (eq. 2): (N, C)
        w1, b1 = block.se.fc1.weight.flatten(1), block.se.fc1.bias  # (C/r, C)
        w2, b2 = block.se.fc2.weight.flatten(1), block.se.fc2.bias  # (C, C/r)
        assert w1.shape == (16, 256) and w2.shape == (256, 16)  # r = 16
        s = torch.sigmoid(torch.relu(z @ w1.T + b1) @ w2.T + b2)  # excitation (eq. 3)
        assert ((s > 0) & (s < 1)).all() and s.std() > 0.01  # gates, and not all the same
        assert_close_rel(block.se(u), u * s[:, :, None, None])  # scale (eq. 4)
        assert_close_rel(block(x), torch.relu(u * s[:, :, None, None] + x))


def test_se_blocks_add_the_parameters_of_eq_5():
    """SE-ResNet-50 − ResNet-50 = (2/r) Σ_s N_s C_s² weights (eq. 5), plus the two layers' biases (C/r + C per
    block), with N_s = 3, 4, 6, 3 blocks of C_s = 256 … 2048 channels (Table 1): 2,514,944 + 16,048."""
    with torch.device("meta"):
        se_resnet, resnet = paperzoo.create_model("seresnet50"), paperzoo.create_model("resnet50")
    blocks, channels, r = (3, 4, 6, 3), (256, 512, 1024, 2048), 16
    weights = 2 * sum(n * c * c for n, c in zip(blocks, channels, strict=True)) // r
    biases = sum(n * (c // r + c) for n, c in zip(blocks, channels, strict=True))
    assert count_parameters(se_resnet) - count_parameters(resnet) == weights + biases == 2_530_992


def test_senet154_has_the_appendix_changes():
    """(a) the first 1×1 has half the 3×3's channels; 64×4d grouped 3×3; (b) three 3×3 stem convolutions;
    (c) 3×3 stride-2 projection shortcuts; (d) dropout 0.2 before the classifier."""
    with torch.device("meta"):
        model = paperzoo.create_model("senet154")
    for i, stage in enumerate(model.stages):
        width = 64 * 4 * 2**i  # C·d, doubling as the map halves
        for block in stage:
            assert block.conv2.conv.groups == 64 and block.conv2.conv.out_channels == width
            assert block.conv1.conv.out_channels == width // 2  # (a)
        expected_kernel = (1, 1) if i == 0 else (3, 3)  # conv2_x keeps the size: its projection only widens
        assert stage[0].shortcut.conv.kernel_size == expected_kernel  # (c)
    assert [m.conv.kernel_size for m in model.stem] == [(3, 3)] * 3  # (b)
    assert model.dropout.p == 0.2  # (d)
    assert [len(stage) for stage in model.stages] == [3, 8, 36, 3]  # ResNet-152's stacking
