"""The segmentation models (U-Net, FCN, DeepLabV3, PSPNet): what the contract and generic parity tests do not see.

The papers' configurations (layer shapes, the crops, the parameter counts and where they come from), the size
arithmetic and its errors, the losses written out against independent computations, parity with torchvision
with the auxiliary head and at output stride 16. Learning is tested through ``paperzoo train``'s own loop, in
test_train_segmentation.py.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
import torchvision
from torch import nn

import paperzoo
from conftest import assert_close_rel, randomize_weights
from paperzoo.measure import count_parameters
from paperzoo.models.segmentation.deeplabv3 import DeepLabV3
from paperzoo.models.segmentation.fcn import (
    FCN,
    FINAL_CROP,
    POOL3_CROP,
    POOL4_CROP,
    FCNResNet,
    FixedUpsampling,
    LearnedUpsampling,
)
from paperzoo.models.segmentation.pspnet import PSPNet
from paperzoo.models.segmentation.unet import UNet, separation_weight_map

SMALL_RESNET = {"backbone": "resnet18", "backbone_kwargs": {"stem_width": 8, "stage_widths": (8, 16, 32, 64)}}
SMALL_VGG = {"backbone": "vgg11", "backbone_kwargs": {"block_widths": (8, 16, 32, 32, 32)}, "fc_width": 64}


def meta(name: str, **kwargs) -> nn.Module:
    with torch.device("meta"):
        return paperzoo.create_model(name, **kwargs).eval()


def meta_output_shape(model: nn.Module, *shape: int) -> dict[str, tuple[int, ...]]:
    """Shapes of the outputs for an input of ``shape``, computed on the meta device (no arithmetic)."""
    with torch.device("meta"):
        return {key: tuple(value.shape) for key, value in model(torch.empty(*shape)).items()}


def parameters_of(module: nn.Module) -> int:
    return count_parameters(module)


# --- U-Net -----------------------------------------------------------------------------------------------

def test_unet_is_the_papers_network():
    model = meta("unet")
    assert count_parameters(model) == 31_030_658  # derived by hand from Figure 1 (the card's params_source)
    widths = [step.conv2.conv.out_channels for step in model.contracting] + [model.bottom.conv2.conv.out_channels]
    assert widths == [64, 128, 256, 512, 1024]
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d) and m.kernel_size == (3, 3)]
    assert len(convs) == 18 and all(c.padding == (0, 0) and c.bias is not None for c in convs)  # unpadded
    ups = [step.up_conv for step in model.expansive]
    assert [(u.in_channels, u.out_channels, u.kernel_size, u.stride) for u in ups] == [
        (1024, 512, (2, 2), (2, 2)), (512, 256, (2, 2), (2, 2)), (256, 128, (2, 2), (2, 2)), (128, 64, (2, 2), (2, 2))]
    assert meta_output_shape(model, 1, 1, 572, 572) == {"out": (1, 2, 388, 388)}  # Figure 1


def test_unet_crops_the_copies_as_figure_1():
    """The copied maps and the up-convolved maps they meet at the 572 tile: 568 → 392, 280 → 200, 136 → 104,
    64 → 56 (Figure 1), i.e. crops of 88, 40, 16 and 4 pixels per side."""
    model = meta("unet")
    seen = []
    hooks = [step.register_forward_hook(lambda m, args, out: seen.append((args[0].shape[-1], args[1].shape[-1])))
             for step in model.expansive]
    with torch.device("meta"):
        model(torch.empty(1, 1, 572, 572))
    for hook in hooks:
        hook.remove()
    up_sizes = [2 * below for below, _ in seen]
    assert [copied for _, copied in seen] == [64, 136, 280, 568]
    assert up_sizes == [56, 104, 200, 392]


def test_unet_valid_sizes_and_their_errors():
    model = meta("unet")
    valid = [s for s in range(1, 700) if model.output_size(s) is not None]
    assert valid == list(range(188, 700, 16))  # 572 among them: 188 + 16·24
    with pytest.raises(ValueError, match=r"^unet expects .*188 \+ 16k.*nearest valid sizes are 492 and 508"):
        model(torch.empty(1, 1, 500, 572, device="meta"))
    with pytest.raises(ValueError, match=r"nearest valid sizes are 556 and 572"):
        model(torch.empty(1, 1, 572, 570, device="meta"))
    assert meta_output_shape(model, 2, 1, 188, 204) == {"out": (2, 2, 4, 20)}  # any valid pair works


def test_padded_unet_keeps_the_input_size():
    model = meta("unet_padded")
    assert count_parameters(model) == 31_030_658  # padding adds no parameter
    assert meta_output_shape(model, 1, 1, 512, 512) == {"out": (1, 2, 512, 512)}
    assert meta_output_shape(model, 2, 1, 16, 80) == {"out": (2, 2, 16, 80)}
    with pytest.raises(ValueError, match=r"^unet_padded expects .*multiples of 16.*nearest valid sizes are 96 and 112"):
        model(torch.empty(1, 1, 100, 96, device="meta"))


def test_unet_loss_is_eq1_on_the_tiles_centre():
    torch.manual_seed(0)
    model = UNet(num_classes=3, base_width=4, depth=2).eval()  # 68 → 28
    x = torch.randn(2, 1, 68, 68)
    target = torch.randint(0, 3, (2, 68, 68))
    target[0, 30:34, 30:34] = 255
    weights = torch.rand(2, 68, 68) + 0.5
    outputs = model(x)
    logits = outputs["out"]
    assert logits.shape == (2, 3, 28, 28)
    centre_target, centre_weights = target[:, 20:48, 20:48], weights[:, 20:48, 20:48]  # (68 − 28) / 2 = 20
    log_p = F.log_softmax(logits, dim=1)
    energy = 0.0
    for n in range(2):  # eq. 1, written out: −Σ_x w(x) log p_ℓ(x)(x) over the tile, ignored pixels left out
        for i in range(28):
            for j in range(28):
                label = int(centre_target[n, i, j])
                if label != 255:
                    energy -= centre_weights[n, i, j] * log_p[n, label, i, j]
    torch.testing.assert_close(model.loss(outputs, target, weight_map=weights), energy / 2)
    torch.testing.assert_close(model.loss(outputs, centre_target, weight_map=centre_weights), energy / 2)


def test_separation_weight_map_is_eq2():
    """Against distances from scipy's exact Euclidean distance transform, an independent implementation."""
    from scipy.ndimage import distance_transform_edt

    instances = torch.zeros(40, 48, dtype=torch.long)
    instances[5:15, 5:20] = 1
    instances[18:30, 8:22] = 2  # three background rows from cell 1: a thin gap between touching cells
    instances[10:35, 26:40] = 3
    weights = separation_weight_map(instances, w0=10.0, sigma=5.0)

    background = (instances == 0).numpy()
    distances = torch.stack([torch.from_numpy(distance_transform_edt(instances.numpy() != c)).float()
                             for c in (1, 2, 3)])
    d1, d2 = distances.sort(dim=0).values[:2]
    fraction = (instances > 0).float().mean()
    class_weight = torch.where(instances > 0, 1 / (2 * fraction), 1 / (2 * (1 - fraction)))
    expected = class_weight + torch.from_numpy(background) * 10 * torch.exp(-((d1 + d2) ** 2) / (2 * 5.0**2))
    torch.testing.assert_close(weights, expected)
    assert weights[16, 10] > 5 * weights[0, 47]  # the gap between cells 1 and 2 weighs much more than far background


# --- FCN -------------------------------------------------------------------------------------------------

def test_fcn_parameters_are_the_papers_134m():
    fcn8s = meta("fcn8s_vgg16")
    assert tuple(fcn8s.fc6.conv.weight.shape) == (4096, 512, 7, 7)  # fc6 as a 7×7 convolution over pool5
    assert tuple(fcn8s.fc7.conv.weight.shape) == (4096, 4096, 1, 1)
    assert count_parameters(fcn8s.backbone) == 14_714_688  # VGG-16's 13 convolutions
    learned = [m for m in fcn8s.modules() if isinstance(m, LearnedUpsampling)]
    assert [parameters_of(m) for m in learned] == [21 * 21 * 4 * 4] * 2  # upscore2, upscore_pool4
    assert isinstance(fcn8s.upscore, FixedUpsampling) and parameters_of(fcn8s.upscore) == 0  # fixed ×8 (§4.3)
    # Derived in fcn.py's docstring; the paper's Table 1 says 134M.
    counts = {name: count_parameters(meta(name)) for name in ("fcn32s_vgg16", "fcn16s_vgg16", "fcn8s_vgg16")}
    assert counts == {"fcn32s_vgg16": 134_346_581, "fcn16s_vgg16": 134_364_410, "fcn8s_vgg16": 134_376_863}
    assert count_parameters(meta("fcn8s_vgg16", learn_upsampling=False)) == 134_362_751  # the released models
    assert all(abs(c - 134_000_000) <= 500_000 for c in counts.values())


def test_fc6_and_fc7_are_the_classifiers_layers_as_convolutions():
    """§3.1: a trained classifier's fc6/fc7, reshaped into convolutions, compute the same features on a 224
    image's pool5 (7×7 → one position), and slide over larger maps."""
    torch.manual_seed(0)
    widths = (8, 16, 32, 32, 32)
    vgg = paperzoo.create_model("vgg16", block_widths=widths).eval()
    fcn = FCN(backbone_kwargs={"block_widths": widths}).eval()
    fc6, fc7 = vgg.classifier.fc6, vgg.classifier.fc7
    with torch.no_grad():
        fcn.fc6.conv.weight.copy_(fc6.weight.view(4096, 32, 7, 7))  # (4096, 25088·…) → (4096, C, 7, 7)
        fcn.fc6.conv.bias.copy_(fc6.bias)
        fcn.fc7.conv.weight.copy_(fc7.weight.view(4096, 4096, 1, 1))
        fcn.fc7.conv.bias.copy_(fc7.bias)
        pool5 = vgg.forward_features(torch.randn(2, 3, 224, 224))  # (2, 32, 7, 7)
        expected = vgg.forward_head(pool5, pre_logits=True)  # fc7's features, (2, 4096)
        dense = fcn.fc7(fcn.fc6(pool5))  # (2, 4096, 1, 1)
        assert_close_rel(dense.flatten(1), expected)
        bigger = fcn.fc7(fcn.fc6(torch.cat([pool5, pool5], dim=-1)))  # a 7×14 map: 8 positions
        assert bigger.shape == (2, 4096, 1, 8)
        assert_close_rel(bigger[:, :, 0, 0], expected)  # the window at the left edge is the same image
        assert_close_rel(bigger[:, :, 0, 7], expected)


def test_bilinear_upsampling_interpolates():
    """The fixed ×f upsampling (kernel 2f, stride f), cropped by f/2, is bilinear interpolation (torch's, with
    align_corners=False) away from the border, where the transposed convolution sees zero padding: it centres
    input pixel u on output f·u + f − 1/2, the interpolation on f·u + f/2 − 1/2."""
    torch.manual_seed(0)
    x = torch.randn(2, 3, 6, 7)
    for factor in (2, 8, 32):
        upsampled = FixedUpsampling(factor)(x)
        assert upsampled.shape == (2, 3, factor * 7, factor * 8)  # f(h − 1) + 2f
        expected = F.interpolate(x, scale_factor=factor, mode="bilinear", align_corners=False)
        inner = slice(factor, 5 * factor)  # interior output rows/cols of the interpolation
        half = factor // 2
        torch.testing.assert_close(upsampled[..., half:, half:][..., inner, inner], expected[..., inner, inner])
        if factor == 2:  # the learned layers start as the same interpolation
            with torch.no_grad():
                torch.testing.assert_close(LearnedUpsampling(3, factor)(x), upsampled)


def test_fcn_crop_offsets_follow_from_the_layers():
    """Compose where each layer puts its output on its input (the coordinate maps of the FCN authors' Caffe
    "crop" tool), reading kernel, stride and padding off the built modules: the offsets must be the ones the
    model uses, which are also the released prototxts' (19, 27, 31; 5 and 9)."""
    model = meta("fcn8s_vgg16")

    def forward_map(layers, scale=1.0, shift=-99.0):  # image coordinate = scale · index + shift
        for layer in layers:
            if isinstance(layer, (nn.Conv2d, nn.MaxPool2d)):
                k, s, p = (v if isinstance(v, int) else v[0] for v in (layer.kernel_size, layer.stride, layer.padding))
                scale, shift = scale * s, shift + scale * ((k - 1) / 2 - p)
        return scale, shift

    def up_map(scale, shift, kernel, stride):  # transposed: input i lands on output stride·i + (k − 1)/2
        return scale / stride, shift - scale / stride * (kernel - 1) / 2

    blocks = list(model.backbone.features)  # the 99-pixel pad and conv1_1's own 1 make Caffe's pad 100 (shift −99)
    pool3 = forward_map([m for b in blocks[:3] for m in b.modules()])
    pool4 = forward_map([m for b in blocks[:4] for m in b.modules()])
    fr = forward_map([m for b in blocks for m in b.modules()] + [model.fc6.conv, model.fc7.conv])
    assert pool3 == (8, 3.5 - 99) and pool4 == (16, 7.5 - 99) and fr == (32, 12.5)

    up2 = up_map(*fr, 4, 2)
    assert (up2[1] - pool4[1]) / up2[0] == POOL4_CROP == 5
    up4 = up_map(*up2, 4, 2)
    assert (up4[1] - pool3[1]) / up4[0] == POOL3_CROP == 9
    assert -up_map(*up4, 16, 8)[1] == FINAL_CROP[8] == 31
    assert -up_map(*up2, 32, 16)[1] == FINAL_CROP[16] == 27
    assert -up_map(*fr, 64, 32)[1] == FINAL_CROP[32] == 19


@pytest.mark.parametrize("stride", [32, 16, 8])
def test_fcn_takes_any_image_size(stride):
    with torch.device("meta"):
        model = FCN(output_stride=stride).eval()
    for height, width in [(1, 1), (2, 31), (32, 33), (63, 100), (187, 224), (500, 375), (512, 512), (513, 511)]:
        assert meta_output_shape(model, 1, 3, height, width) == {"out": (1, 21, height, width)}


def test_fcn_loss_is_summed_over_pixels_and_zero_init_scores_start_at_zero():
    torch.manual_seed(0)
    model = FCN(num_classes=4, **SMALL_VGG, zero_init_scores=True).eval()
    x = torch.randn(2, 3, 40, 44)
    with torch.no_grad():
        outputs = model(x)
    assert outputs["out"].shape == (2, 4, 40, 44) and not outputs["out"].any()  # zero scores, zero output
    target = torch.randint(0, 4, (2, 40, 44))
    target[1, :5] = 255
    logits = torch.randn(2, 4, 40, 44)
    expected = F.cross_entropy(logits, target, ignore_index=255, reduction="sum") / 2  # Caffe: normalize false
    torch.testing.assert_close(model.loss({"out": logits}, target), expected)


# --- torchvision's FCN-ResNet and DeepLabV3: parity beyond the generic test ------------------------------

@pytest.mark.heavy
@pytest.mark.parametrize("name", ["fcn_resnet50", "deeplabv3_resnet50"])
def test_torchvision_parity_with_the_auxiliary_head(name):
    torch.manual_seed(0)
    reference = randomize_weights(torchvision.models.get_model(name, weights=None, weights_backbone=None,
                                                               aux_loss=True)).eval()
    ours = paperzoo.load_weights(paperzoo.create_model(name, aux_loss=True), reference, source="torchvision").eval()
    assert count_parameters(ours) == count_parameters(reference)  # 35,322,218 and 42,004,074
    x = torch.randn(2, 3, 97, 130)
    with torch.no_grad():
        expected, actual = reference(x), ours(x)
    assert list(actual) == list(expected) == ["out", "aux"]
    for key in expected:
        assert_close_rel(actual[key], expected[key])


def test_parameter_counts_with_and_without_aux_equal_torchvision():
    for name in ("fcn_resnet50", "fcn_resnet101", "deeplabv3_resnet50", "deeplabv3_resnet101"):
        for aux in (False, True):
            with torch.device("meta"):
                reference = torchvision.models.get_model(name, weights=None, weights_backbone=None, aux_loss=aux)
            assert count_parameters(meta(name, aux_loss=aux)) == count_parameters(reference), (name, aux)


@pytest.mark.heavy
def test_deeplabv3_output_stride_16_equals_torchvision_assembled_so():
    """Output stride 16 (the paper's training setting): torchvision builds only 8, but its parts assemble the
    16 one: a ResNet dilating only its last stage, and the head with rates (6, 12, 18)."""
    from torchvision.models._utils import IntermediateLayerGetter
    from torchvision.models.segmentation.deeplabv3 import DeepLabHead
    from torchvision.models.segmentation.deeplabv3 import DeepLabV3 as TorchvisionDeepLabV3

    torch.manual_seed(0)
    resnet = torchvision.models.resnet50(replace_stride_with_dilation=[False, False, True])
    reference = TorchvisionDeepLabV3(IntermediateLayerGetter(resnet, {"layer4": "out"}),
                                     DeepLabHead(2048, 21, atrous_rates=(6, 12, 18)))
    reference = randomize_weights(reference).eval()
    ours = paperzoo.create_model("deeplabv3_resnet50", output_stride=16)
    paperzoo.load_weights(ours, reference, source="torchvision").eval()
    assert [conv[0].dilation for conv in ours.head.aspp.atrous] == [(6, 6), (12, 12), (18, 18)]
    assert ours.backbone.feature_info[-1].stride == 16
    x = torch.randn(2, 3, 97, 130)
    with torch.no_grad():
        assert_close_rel(ours(x)["out"], reference(x)["out"])


def test_deeplabv3_rates_double_at_output_stride_8():
    model = meta("deeplabv3_resnet50")
    assert [conv[0].dilation for conv in model.head.aspp.atrous] == [(12, 12), (24, 24), (36, 36)]  # §4.3
    assert model.backbone.feature_info[-1].stride == 8
    with pytest.raises(ValueError, match="output_stride must be 8 or 16"):
        meta("deeplabv3_resnet50", output_stride=32)


# --- PSPNet ----------------------------------------------------------------------------------------------

def test_pspnet_parameters_as_derived():
    model = meta("pspnet_resnet50")
    # pspnet.py's docstring derives each part (≈49.18M with the auxiliary head, 150 classes).
    assert count_parameters(model.backbone) == 23_631_808
    assert count_parameters(model.head.pyramid) == 4_198_400
    assert count_parameters(model.head.conv) == 18_875_392
    assert count_parameters(model.head.classifier) == 76_950
    assert count_parameters(model.aux_head) == 2_398_358
    assert count_parameters(model) == 49_180_908
    assert count_parameters(meta("pspnet_resnet50", aux_loss=False)) == 46_782_550
    standard = meta("resnet50", features_only=True)
    # The deep stem: 112,832 in place of the 7×7's 9,536, and conv2_x's first block reads 128 channels, not 64.
    assert count_parameters(model.backbone) - count_parameters(standard) == 112_832 - 9_536 + 64 * 64 + 64 * 256


def test_pspnet_is_the_papers_configuration():
    model = meta("pspnet_resnet50")
    stem = model.backbone.conv1
    assert [(c.conv.in_channels, c.conv.out_channels, c.conv.kernel_size, c.conv.stride) for c in stem] == [
        (3, 64, (3, 3), (2, 2)), (64, 64, (3, 3), (1, 1)), (64, 128, (3, 3), (1, 1))]
    assert [level.pool.output_size for level in model.head.pyramid.levels] == [1, 2, 3, 6]
    assert [level.reduce.conv.out_channels for level in model.head.pyramid.levels] == [512] * 4  # 1/N of 2048
    assert model.aux_head.conv.conv.in_channels == 1024 and model.aux_head.conv.conv.out_channels == 256
    seen = {}
    model.head.pyramid.register_forward_hook(lambda m, args, out: seen.update(features=args[0].shape,
                                                                              pyramid=out.shape))
    assert meta_output_shape(model, 1, 3, 473, 473) == {"out": (1, 150, 473, 473), "aux": (1, 150, 473, 473)}
    assert seen == {"features": (1, 2048, 60, 60), "pyramid": (1, 4096, 60, 60)}


def test_pspnet_dropout_is_the_caffe_releases_and_the_card_says_so():
    """The authors' Caffe prototxt (conv5_4/dropout, Caffe's element-wise Dropout) produced the paper's results;
    their later PyTorch code uses Dropout2d. The card names the choice; the module drops single activations."""
    model = meta("pspnet_resnet50")
    for dropout in (model.head.dropout, model.aux_head.dropout):
        assert type(dropout) is nn.Dropout and dropout.p == 0.1
    notes = paperzoo.model_card("pspnet_resnet50").notes
    assert "nn.Dropout2d" in notes and "element-wise" in notes


def test_aux_weights_and_ignore_index():
    """Each loss against F.cross_entropy: PSPNet's α = 0.4 (§3.4), torchvision's 0.5, and 255 ignored."""
    torch.manual_seed(0)
    target = torch.randint(0, 5, (2, 33, 47))
    target[0, :, :10] = 255
    out, aux = torch.randn(2, 5, 33, 47), torch.randn(2, 5, 33, 47)

    def ce(logits):
        return F.cross_entropy(logits, target, ignore_index=255)

    for model, weight in [(PSPNet(num_classes=5, **SMALL_RESNET), 0.4),
                          (DeepLabV3(num_classes=5, aux_loss=True, **SMALL_RESNET), 0.5),
                          (FCNResNet(num_classes=5, aux_loss=True, **SMALL_RESNET), 0.5)]:
        torch.testing.assert_close(model.loss({"out": out, "aux": aux}, target), ce(out) + weight * ce(aux))
        torch.testing.assert_close(model.loss({"out": out}, target), ce(out))


@pytest.mark.parametrize("name", ["unet_padded", "fcn8s_vgg16", "fcn_resnet50", "deeplabv3_resnet50",
                                  "pspnet_resnet50"])
def test_loss_rejects_bad_targets(name):
    model = meta(name)
    logits = torch.zeros(2, model.num_classes, 32, 32)
    good = torch.zeros(2, 32, 32, dtype=torch.long)
    cases = {
        "a channel dimension": good[:, None],
        "float targets": good.float(),
        "one-hot targets": torch.zeros(2, model.num_classes, 32, 32, dtype=torch.long),
        "another size": torch.zeros(2, 31, 32, dtype=torch.long),
        "a class index too large": torch.full((2, 32, 32), model.num_classes),
        "not a tensor": [[0] * 32] * 32,
    }
    for reason, target in cases.items():
        with pytest.raises(ValueError, match=rf"^{name} expects a target .*\(N, H, W\) = \(2, 32, 32\)") as info:
            model.loss({"out": logits}, target)
        assert "got" in str(info.value), f"{name}, {reason}: {info.value}"
    assert model.loss({"out": logits}, torch.full((2, 32, 32), 255)).item() == 0  # every pixel ignored


@pytest.mark.parametrize("name", ["fcn_resnet50", "deeplabv3_resnet50", "pspnet_resnet50"])
def test_dilated_models_take_any_size_from_32(name):
    model = meta(name, aux_loss=True)
    for height, width in [(32, 32), (33, 97), (473, 200), (520, 521)]:
        shapes = meta_output_shape(model, 2, 3, height, width)
        assert shapes == {"out": (2, model.num_classes, height, width), "aux": (2, model.num_classes, height, width)}
