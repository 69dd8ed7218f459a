"""ViT beyond the generic tests: other input sizes (built for them, or with the position embeddings resampled,
square and not) against torchvision, the interpolation against torchvision's ``interpolate_embeddings``, the
pre-training head, the size errors, and attention through SDPA.

The generic parity test runs every torchvision model at 2x3x160x192 too; torchvision's ViT refuses that size
(it takes only the square size it was built for), so there ours must refuse it too, and the comparisons at
other sizes are here, on a small ViT (2 layers, D=64) so that they stay fast.
"""

from __future__ import annotations

import pytest
import torch
from torch.nn import functional as F
from torchvision.models.vision_transformer import VisionTransformer as TorchvisionViT
from torchvision.models.vision_transformer import interpolate_embeddings

import paperzoo
from conftest import assert_close_rel, randomize_constant_parameters
from paperzoo.models.classification.vision_transformer import VisionTransformer, resample_position_embedding

SMALL = dict(patch_size=16, num_layers=2, num_heads=4, hidden_dim=64, mlp_dim=128)


def torchvision_small(image_size: int = 224, **kwargs) -> TorchvisionViT:
    torch.manual_seed(0)
    return randomize_constant_parameters(TorchvisionViT(image_size=image_size, num_classes=10, **SMALL, **kwargs))


def ours_small(**kwargs) -> VisionTransformer:
    return VisionTransformer(num_classes=10, **SMALL, **kwargs)


def images(height: int, width: int, batch: int = 2) -> torch.Tensor:
    return torch.randn(batch, 3, height, width, generator=torch.Generator().manual_seed(0))


def compare(ours: torch.nn.Module, reference: torch.nn.Module, x: torch.Tensor) -> None:
    with torch.no_grad():
        assert_close_rel(ours.eval()(x), reference.eval()(x))


def test_built_for_another_size_equals_torchvision_built_for_it():
    reference = torchvision_small(image_size=160)
    ours = paperzoo.load_weights(ours_small(img_size=160), reference.state_dict(), source="torchvision")
    compare(ours, reference, images(160, 160))


def test_resampled_position_embeddings_equal_torchvision_interpolate_embeddings():
    reference_224 = torchvision_small()
    state = reference_224.state_dict()
    reference_320 = torchvision_small(image_size=320)
    reference_320.load_state_dict(interpolate_embeddings(320, 16, dict(state)))
    x = images(320, 320)

    resampled = paperzoo.load_weights(ours_small(), state, source="torchvision")
    resampled.set_image_size(320)  # after loading: the method
    compare(resampled, reference_320, x)
    assert resampled.position_embedding.shape == (1, 1 + 20 * 20, 64) and resampled.min_input_size == 320

    built = paperzoo.load_weights(ours_small(img_size=320), state, source="torchvision")  # at build time
    compare(built, reference_320, x)


def test_interpolation_is_bicubic_on_the_grid_and_keeps_the_class_token():
    embedding = torch.randn(1, 1 + 7 * 7, 8, generator=torch.Generator().manual_seed(0))
    for side in (5, 12):  # smaller and larger: torchvision's interpolate_embeddings is the reference
        expected = interpolate_embeddings(side * 16, 16, {"encoder.pos_embedding": embedding})
        assert_close_rel(resample_position_embedding(embedding, (7, 7), (side, side)),
                         expected["encoder.pos_embedding"])
    assert resample_position_embedding(embedding, (7, 7), (7, 7)) is embedding
    assert torch.equal(resample_position_embedding(embedding, (7, 7), (3, 11))[:, 0], embedding[:, 0])


def test_non_square_interpolation_resamples_each_axis_as_torchvision_does():
    # Bicubic interpolation is separable: resampling a grid to (rows, cols) applies one 1-D operator per axis.
    # A field that varies along the rows only must come out as torchvision's square (rows, rows) result does,
    # one along the columns only as its (cols, cols) result; every field is a sum of such products.
    generator = torch.Generator().manual_seed(0)
    rows, cols = 10, 12
    along_rows = torch.randn(8, 7, 1, generator=generator).expand(8, 7, 7)  # (D, g, g), constant along columns
    along_cols = torch.randn(8, 1, 7, generator=generator).expand(8, 7, 7)

    def as_embedding(grid: torch.Tensor) -> torch.Tensor:  # (D, g, g) → (1, 1 + g·g, D) with a class token
        return torch.cat([torch.zeros(1, 1, 8), grid.flatten(1).T[None]], dim=1)

    def torchvision_square(grid: torch.Tensor, side: int) -> torch.Tensor:  # → (D, side, side)
        out = interpolate_embeddings(side * 16, 16, {"encoder.pos_embedding": as_embedding(grid)})
        return out["encoder.pos_embedding"][0, 1:].T.reshape(8, side, side)

    def ours(grid: torch.Tensor) -> torch.Tensor:  # → (D, rows, cols)
        return resample_position_embedding(as_embedding(grid), (7, 7), (rows, cols))[0, 1:].T.reshape(8, rows, cols)

    assert_close_rel(ours(along_rows), torchvision_square(along_rows, rows)[:, :, :1].expand(8, rows, cols))
    assert_close_rel(ours(along_cols), torchvision_square(along_cols, cols)[:, :1, :].expand(8, rows, cols))


def test_non_square_input_equals_torchvision_modules_with_the_resampled_embeddings():
    reference = torchvision_small().eval()
    ours = paperzoo.load_weights(ours_small(), reference.state_dict(), source="torchvision").eval()
    ours.set_image_size((160, 192))
    x = images(160, 192)
    with torch.no_grad():
        # torchvision's forward without its square-size assertion: its own modules, step by step.
        reference.encoder.pos_embedding.data = resample_position_embedding(
            reference.encoder.pos_embedding, (14, 14), (10, 12))
        tokens = reference.conv_proj(x).flatten(2).transpose(1, 2)  # (N, 10·12, D)
        tokens = torch.cat([reference.class_token.expand(len(x), -1, -1), tokens], dim=1)
        expected = reference.heads(reference.encoder(tokens)[:, 0])
        assert_close_rel(ours(x), expected)
    assert ours.forward_features(x).shape == (2, 1 + 10 * 12, 64)


def test_pre_training_head_equals_torchvision_representation_size():
    reference = torchvision_small(representation_size=48)
    ours = paperzoo.load_weights(ours_small(representation_size=48), reference.state_dict(), source="torchvision")
    compare(ours, reference, images(224, 224))
    assert ours.head_hidden_size == 48  # the pre-logits width; num_features is the tokens' (timm's meanings)
    with torch.no_grad():
        features = ours.forward_head(ours.forward_features(images(224, 224)), pre_logits=True)
    assert features.shape == (2, 48) and features.abs().max() <= 1  # the tanh layer's output


def test_wrong_size_says_which_size_works_and_how_to_allow_others():
    model = ours_small()
    for height, width in [(160, 192), (320, 320), (112, 112)]:
        with pytest.raises(ValueError) as info:
            model(torch.zeros(1, 3, height, width))
        message = str(info.value)
        assert message.startswith("vit expects a float tensor of shape (N, 3, H, W) with (H, W) = (224, 224)")
        assert f"set_image_size(({height}, {width}))" in message and f"img_size=({height}, {width})" in message
    with pytest.raises(ValueError, match="multiples of the patch size 16"):
        ours_small(img_size=(200, 224))
    with pytest.raises(ValueError, match="multiples of the patch size 16"):
        model.set_image_size(100)
    with pytest.raises(ValueError, match="vit_b_16 expects"):  # the registered name in the message
        with torch.device("meta"):
            paperzoo.create_model("vit_b_16")(torch.zeros(1, 3, 256, 256, device="meta"))


def test_head_initialisation():
    torch.manual_seed(0)
    assert ours_small().head.weight.abs().sum() > 0  # a fresh model passes gradients to its body
    zero = ours_small(zero_init_head=True)
    assert torch.count_nonzero(zero.head.weight) == 0 and torch.count_nonzero(zero.head.bias) == 0


def test_every_block_attends_through_scaled_dot_product_attention(monkeypatch):
    calls = []
    sdpa = F.scaled_dot_product_attention

    def spy(query, key, value, attn_mask=None, **kwargs):
        calls.append((tuple(query.shape), attn_mask, kwargs.get("is_causal")))
        return sdpa(query, key, value, attn_mask=attn_mask, **kwargs)

    monkeypatch.setattr(F, "scaled_dot_product_attention", spy)
    with torch.no_grad():
        ours_small().eval()(images(224, 224))
    # one call per block, unmasked and non-causal, so that a fused kernel can run: (N, heads, 1 + 14·14, 16)
    assert calls == [((2, 4, 197, 16), None, False)] * SMALL["num_layers"]
