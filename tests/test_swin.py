"""Swin beyond the generic tests: the paper's mechanisms one by one (window partition, relative position index,
the cyclic-shift mask, (S)W-MSA with padding, patch merging) against torchvision's or an independent statement
of them, a small Swin against torchvision's class at odd sizes and in training mode (stochastic depth), the
backbone's features, the input sizes, and attention through SDPA."""

from __future__ import annotations

import pytest
import torch
from torch.nn import functional as F
from torchvision.models import swin_transformer as tv_swin

import paperzoo
from conftest import assert_close_rel, randomize_constant_parameters
from paperzoo.models.classification.swin_transformer import (
    PatchMerging,
    SwinTransformer,
    WindowAttention,
    relative_position_index,
    shifted_window_mask,
    window_partition,
    window_reverse,
)

# A small Swin: 2 blocks (W-MSA, SW-MSA) per stage, C = 16.
SMALL = dict(embed_dim=16, depths=(2, 2, 2, 2), num_heads=(1, 2, 2, 4), stochastic_depth_prob=0.2)


def torchvision_small() -> torch.nn.Module:
    torch.manual_seed(0)
    reference = tv_swin.SwinTransformer(patch_size=[4, 4], window_size=[7, 7], num_classes=10,
                                        **{k: list(v) if isinstance(v, tuple) else v for k, v in SMALL.items()})
    return randomize_constant_parameters(reference)


def ours_small(**kwargs) -> SwinTransformer:
    features_only = kwargs.pop("features_only", False)
    model = SwinTransformer(num_classes=10, **SMALL, **kwargs)
    if features_only:  # what create_model(..., features_only=True) does
        model.as_backbone()
    return model


def images(height: int, width: int, batch: int = 2) -> torch.Tensor:
    return torch.randn(batch, 3, height, width, generator=torch.Generator().manual_seed(0))


def test_window_partition_cuts_row_major_windows_and_reverse_undoes_it():
    x = torch.randn(2, 14, 21, 5)
    windows = window_partition(x, 7)
    assert windows.shape == (2 * 2 * 3, 49, 5)
    # window 4 of image 1 is its second row of windows, second column: rows 7..13, columns 7..13
    assert torch.equal(windows[6 + 4], x[1, 7:14, 7:14].reshape(49, 5))
    assert torch.equal(window_reverse(windows, 7, 14, 21), x)


def test_relative_position_index_equals_torchvision():
    reference = tv_swin.ShiftedWindowAttention(8, [7, 7], [0, 0], num_heads=2)
    assert torch.equal(relative_position_index(7), reference.relative_position_index)
    # and what it means: the offset between query (0, 0) and key (1, 2) is (-1, -2), entry (5, 4) of the 13x13 table
    assert relative_position_index(7).view(49, 49)[0, 1 * 7 + 2] == 5 * 13 + 4


@pytest.mark.parametrize("size", [(14, 14), (21, 14), (7, 14)])
def test_shift_mask_separates_the_pieces_the_cyclic_shift_brought_together(size):
    height, width = size
    window, shift = 7, 3
    shifts = (shift if height > window else 0, shift if width > window else 0)
    mask = shifted_window_mask(height, width, window, shifts, torch.device("cpu"), torch.float32)
    # Independently: after rolling by -s, position (r, c) holds original ((r + s) mod H, (c + s) mod W); it
    # "wrapped" if it came from the other border. Two tokens of a window may attend iff they wrapped alike.
    rows = torch.arange(height)[:, None].expand(height, width) >= height - shifts[0]
    cols = torch.arange(width)[None, :].expand(height, width) >= width - shifts[1]
    piece = window_partition((rows * 2 + cols)[None, :, :, None], window).squeeze(-1)  # (nW, 49)
    expected = torch.where(piece[:, :, None] == piece[:, None, :], 0.0, -100.0)
    assert torch.equal(mask, expected)


@pytest.mark.parametrize("shift", [0, 3])
@pytest.mark.parametrize("size", [(14, 14), (9, 13), (7, 7), (5, 16), (1, 1)])
def test_window_attention_equals_torchvision(shift, size):
    torch.manual_seed(0)
    reference = randomize_constant_parameters(tv_swin.ShiftedWindowAttention(16, [7, 7], [shift, shift], 2))
    ours = WindowAttention(16, 2, window_size=7, shift_size=shift)
    ours.load_state_dict({"attention.qkv.weight": reference.qkv.weight, "attention.qkv.bias": reference.qkv.bias,
                          "attention.proj.weight": reference.proj.weight, "attention.proj.bias": reference.proj.bias,
                          "relative_position_bias_table": reference.relative_position_bias_table,
                          "relative_position_index": reference.relative_position_index})
    x = torch.randn(2, *size, 16)
    with torch.no_grad():
        assert_close_rel(ours.eval()(x), reference.eval()(x))


@pytest.mark.parametrize("size", [(8, 8), (7, 9)])
def test_patch_merging_equals_torchvision(size):
    torch.manual_seed(0)
    reference = randomize_constant_parameters(tv_swin.PatchMerging(8))
    ours = PatchMerging(8)
    ours.load_state_dict(reference.state_dict())
    x = torch.randn(2, *size, 8)
    out = ours(x)
    assert out.shape == (2, -(-size[0] // 2), -(-size[1] // 2), 16)
    assert_close_rel(out, reference(x))


@pytest.mark.parametrize("size", [(160, 192), (97, 61), (4, 4)])
def test_small_swin_equals_torchvision_at_odd_sizes(size):
    reference = torchvision_small().eval()
    ours = paperzoo.load_weights(ours_small(), reference.state_dict(), source="torchvision").eval()
    x = images(*size)
    with torch.no_grad():
        assert_close_rel(ours(x), reference(x))


def test_training_mode_with_stochastic_depth_equals_torchvision_for_the_same_seed():
    reference = torchvision_small().train()
    ours = paperzoo.load_weights(ours_small(), reference.state_dict(), source="torchvision").train()
    drop = [block.drop_path.p for stage in ours.stages for block in stage.blocks]
    assert drop == [block.stochastic_depth.p for stage in reference.features[1::2] for block in stage]
    assert drop[0] == 0.0 and drop[-1] == pytest.approx(0.2)  # linear in depth up to the variant's rate
    x = images(64, 64, batch=8)
    torch.manual_seed(1)
    expected = reference(x)
    torch.manual_seed(1)
    assert_close_rel(ours(x), expected)


def test_features_are_torchvision_stage_outputs_channels_first():
    reference = torchvision_small().eval()
    state = {k: v for k, v in reference.state_dict().items() if not k.startswith(("norm.", "head."))}
    backbone = paperzoo.load_weights(ours_small(features_only=True), state, source="torchvision").eval()
    assert [(info.channels, info.stride) for info in backbone.feature_info] == [(16, 4), (32, 8), (64, 16), (128, 32)]
    x = images(160, 192)
    with torch.no_grad():
        features = backbone(x)
        expected = reference.features[0](x)
        for i, feature in enumerate(features):
            expected = reference.features[2 * i + 1](expected if i == 0 else reference.features[2 * i](expected))
            assert_close_rel(feature, expected.permute(0, 3, 1, 2))  # torchvision's (N, H, W, C), as NCHW
            assert feature.shape[-2:] == (-(-160 // (4 * 2**i)), -(-192 // (4 * 2**i)))


def test_forward_features_is_channels_last():
    with torch.no_grad():
        out = ours_small().eval().forward_features(images(224, 224))
    assert out.shape == (2, 7, 7, 128)


def test_any_size_from_four_pixels_and_a_clear_error_below():
    assert SwinTransformer.min_input_size == 4 == paperzoo.model_card("swin_t").input.min_size
    with torch.device("meta"):
        model = paperzoo.create_model("swin_t")
        with pytest.raises(ValueError, match=r"swin_t expects .* H, W >= 4; got \(1, 3, 3, 40\)"):
            model(torch.zeros(1, 3, 3, 40))
    # torchvision agrees on the limit: its first convolution needs a whole 4x4 patch
    reference = torchvision_small().eval()
    with torch.no_grad():
        assert reference(torch.zeros(1, 3, 4, 4)).shape == (1, 10)
        with pytest.raises(RuntimeError):
            reference(torch.zeros(1, 3, 3, 40))


def test_every_block_attends_through_sdpa_with_bias_and_shift_mask_as_the_mask(monkeypatch):
    calls = []
    sdpa = F.scaled_dot_product_attention

    def spy(query, key, value, attn_mask=None, **kwargs):
        calls.append((tuple(query.shape), tuple(attn_mask.shape)))
        return sdpa(query, key, value, attn_mask=attn_mask, **kwargs)

    monkeypatch.setattr(F, "scaled_dot_product_attention", spy)
    with torch.no_grad():
        ours_small().eval()(images(56, 56))  # maps 14x14, 7x7, 4x4, 2x2: only stage 1 has two windows a side
    assert calls == [
        ((2 * 4, 1, 49, 16), (1, 1, 49, 49)),  # W-MSA: the bias B, shared by every window
        ((2 * 4, 1, 49, 16), (2 * 4, 1, 49, 49)),  # SW-MSA: B plus the shift mask, per window
    ] + [((2, heads, 49, dim), (1, heads, 49, 49))  # one window (7x7, 4x4 and 2x2 padded to 7x7): no shift
         for heads, dim in [(2, 16), (2, 16), (2, 32), (2, 32), (4, 32), (4, 32)]]
