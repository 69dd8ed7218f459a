"""ConvNeXt V2 beyond the generic contract and parity tests: Global Response Normalization against its equations
(1)–(3) computed channel by channel, and against timm's layer; the block as V1's plus GRN minus layer scale (the
parameter counts of the two files); the stochastic depth schedule against timm's."""

from __future__ import annotations

import pytest
import timm
import torch
from timm.layers.grn import GlobalResponseNorm as TimmGlobalResponseNorm

import paperzoo
from conftest import assert_close_rel
from paperzoo.layers import StochasticDepth
from paperzoo.measure import count_parameters
from paperzoo.models.classification.convnext_v2 import VARIANTS, ConvNeXtV2Block, GlobalResponseNorm


def grn_by_the_equations(x: torch.Tensor, gamma: torch.Tensor, beta: torch.Tensor) -> torch.Tensor:
    """The paper's GRN on a channels-last (N, H, W, C) map, one channel at a time."""
    n, _, _, c = x.shape
    out = torch.empty_like(x)
    for example in range(n):
        # (1) G(X) = {‖X_1‖, …, ‖X_C‖}: the L2 norm of each channel over all H×W positions.
        norms = [x[example, :, :, i].pow(2).sum().sqrt() for i in range(c)]
        total = sum(norms)
        for i in range(c):
            # (2) N(‖X_i‖) = ‖X_i‖ / Σ_j ‖X_j‖; the released code divides by the mean, i.e. C times this.
            normalized = c * norms[i] / total
            # (3) X_i · N(G(X)_i), with the learned γ, β and the residual connection.
            out[example, :, :, i] = gamma[i] * x[example, :, :, i] * normalized + beta[i] + x[example, :, :, i]
    return out


def test_grn_computes_equations_1_to_3():
    torch.manual_seed(0)
    grn = GlobalResponseNorm(6)
    with torch.no_grad():
        grn.gamma.normal_()
        grn.beta.normal_()
        x = torch.randn(2, 3, 5, 6)
        # The only difference is the 1e-6 that guards the division, far below the tolerance at this scale.
        assert_close_rel(grn(x), grn_by_the_equations(x, grn.gamma, grn.beta))


def test_grn_equals_timms_layer_and_starts_as_the_identity():
    torch.manual_seed(0)
    ours, theirs = GlobalResponseNorm(8), TimmGlobalResponseNorm(8)
    x = torch.randn(2, 4, 4, 8)
    with torch.no_grad():
        assert torch.equal(ours(x), x), "γ = β = 0 at initialisation: the layer passes its input through"
        ours.gamma.normal_()
        ours.beta.normal_()
        theirs.weight.copy_(ours.gamma)
        theirs.bias.copy_(ours.beta)
        assert_close_rel(ours(x), theirs(x))


def test_block_has_grn_on_the_wide_layer_and_no_layer_scale():
    block = ConvNeXtV2Block(16)
    assert block.grn.gamma.shape == (64,) and block.grn.beta.shape == (64,)
    assert not any("layer_scale" in name for name, _ in block.named_parameters())


@pytest.mark.parametrize("size", ["tiny", "base", "large"])
def test_v2_is_v1_with_grn_for_layer_scale(size):
    """Per block, V2 drops V1's layer scale γ (C parameters) and adds GRN's γ and β on the 4C-wide layer (8C):
    the counts of the two files differ by 7 · Σ blocks · C and by nothing else."""
    depths, widths = VARIANTS[size]
    with torch.device("meta"):
        v1 = count_parameters(paperzoo.create_model(f"convnext_{size}"))
        v2 = count_parameters(paperzoo.create_model(f"convnextv2_{size}"))
    assert v2 - v1 == 7 * sum(d * c for d, c in zip(depths, widths, strict=True))


def test_stochastic_depth_schedule_equals_timm():
    with torch.device("meta"):
        reference = timm.create_model("convnextv2_atto", drop_path_rate=0.3)
        ours = paperzoo.create_model("convnextv2_atto", stochastic_depth_prob=0.3)
    expected = [float(b.drop_path.drop_prob) if hasattr(b.drop_path, "drop_prob") else 0.0
                for stage in reference.stages for b in stage.blocks]
    actual = [m.p for m in ours.modules() if isinstance(m, StochasticDepth)]
    assert actual == pytest.approx(expected, abs=1e-7)
    assert actual[0] == 0.0 and actual[-1] == pytest.approx(0.3)
