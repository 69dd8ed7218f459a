"""Parity with the reference implementations: a randomly initialised reference model's weights, converted with
``load_weights``, make ours give the same outputs (fp32, eval, max error <= 1e-5 relative) at the canonical input
(scaled down to 256 pixels where larger: ``CANONICAL_AT_MOST``) and at an odd size. The odd size takes two examples
(a layer that mixed the examples of a batch would differ; the two outputs differing shows that the output depends on
the input); the canonical size takes one where the model also takes the odd size (the largest inputs, DeepLabV3's
520 pixels, dominated the suite's time), two for a model built for one size only (ViT), whose odd-size check is only
that it refuses it.

The reference's weights and BatchNorm statistics are redrawn first (``randomize_weights``) at a scale where
every layer shapes the output, and each comparison first checks that the output depends on the input: with a
reference's own initialisation (torchvision's GoogLeNet draws σ = 0.01; ConvNeXt's layer scale starts at 1e-6;
fresh BatchNorms are the identity in eval mode) a wrongly converted layer could hide below the tolerance.

The three variants of about 650M parameters (a third of this file's time with their outputs compared) are checked
on the meta device instead: every reference tensor converts onto ours by name and shape, and the parameter count
equals the card's. Their outputs come from the same classes as a smaller variant's, compared here in full
(``OUTPUTS_COMPARED_ON``).
"""

from __future__ import annotations

import pytest
import timm
import torch
import torchvision

import paperzoo
from conftest import (
    assert_close_rel,
    assert_output_depends_on_input,
    build_reference,
    built_and_filled,
    parse_reference,
    randomize_batchnorm,
    randomize_weights,
    randomized_reference,
    tensors_on_meta,
)


def _referencing(library: str) -> list[str]:
    # Detectors take lists of images and return lists of dicts; each detector's own test file compares it with its
    # reference (eval detections and training losses), so the generic image-tensor comparison leaves them out.
    return [name for name in paperzoo.list_models()
            if parse_reference(paperzoo.model_card(name).reference)[0] == library
            and paperzoo.model_card(name).task not in ("object-detection", "instance-segmentation")]


# Every variant whose card names a torchvision or timm reference is compared: a new one is covered when registered.
TORCHVISION = _referencing("torchvision")
TIMM = _referencing("timm")
# The largest variants -> the smaller variant of the same classes and code path whose outputs are compared.
OUTPUTS_COMPARED_ON = {"regnet_y_128gf": "regnet_y_32gf", "vit_h_14": "vit_l_16", "convnextv2_huge": "convnextv2_large"}
LARGEST = [name for name in TORCHVISION + TIMM if paperzoo.model_card(name).params > 500_000_000]
ODD_SIZE = (2, 3, 160, 192)
# Canonical images larger than this are compared scaled down to it (the aspect ratio kept), as the contract tests do:
# at 520 pixels the segmentation models ran the same layers as at 256 for about 70% of their tests' time (the four
# torchvision ones: 33.2 -> 15.2 s on one thread, issue 26). Inception v3's 299 pixels become 256; the fixed-size
# models (ViT) keep theirs.
CANONICAL_AT_MOST = 256


def check_parity(ours: torch.nn.Module, reference: torch.nn.Module, name: str) -> None:
    ours.eval()
    reference.eval()
    generator = torch.Generator().manual_seed(0)
    spec = paperzoo.model_card(name).input
    for shape in [(2 if spec.fixed_size else 1, *spec.shape_within(CANONICAL_AT_MOST)), ODD_SIZE]:
        x = torch.randn(shape, generator=generator)
        with torch.no_grad():
            try:
                expected = reference(x)
            except AssertionError:  # torchvision's own size check (torch._assert): a model built for one size
                if shape != ODD_SIZE:
                    raise
                # ViT takes only the size it was built for: ours must refuse the others too, with a ValueError.
                # tests/test_vision_transformer.py compares it at other sizes, built or resampled for them.
                with pytest.raises(ValueError, match=f"^{name} expects"):
                    ours(x)
                continue
            actual = ours(x)
            if isinstance(expected, dict):  # segmentation: {"out": scores[, "aux": scores]}, torchvision's convention
                assert actual.keys() == expected.keys(), f"{name}: outputs {list(actual)}, reference {list(expected)}"
                actual, expected = list(actual.values()), list(expected.values())
            else:
                actual, expected = [actual], [expected]
            for actual_part, expected_part in zip(actual, expected, strict=True):
                if len(x) > 1:  # two examples, two different outputs
                    assert_output_depends_on_input(expected_part)
                assert_close_rel(actual_part, expected_part)


def converted(name: str, reference: torch.nn.Module, source: str = "torchvision") -> torch.nn.Module:
    """Ours, holding the reference's converted weights (``built_and_filled``: without the random initialisation
    that the weights replace anyway)."""
    weights = reference.state_dict()
    return built_and_filled(lambda: paperzoo.create_model(name),
                            lambda ours, assign: paperzoo.load_weights(ours, weights, source=source, assign=assign))


@pytest.mark.parametrize("reference", ["torchvision.models.resnet18", "timm:seresnet18", "torchvision.models.swin_t"])
def test_randomized_reference_draws_what_the_slow_path_draws(reference):
    """The parity tests build references on the meta device where the redraw covers every tensor (ResNet-18:
    parameters and BatchNorm statistics) and normally where it does not (Swin's relative position index); either
    way the tensors are those of ``randomize_weights(build_reference(...))``, and so is the output."""
    torch.manual_seed(0)
    fast = randomized_reference(reference, seed=3)
    slow = randomize_weights(build_reference(reference), seed=3)
    assert fast.state_dict().keys() == slow.state_dict().keys()
    for key, tensor in slow.state_dict().items():
        assert torch.equal(fast.state_dict()[key], tensor), key
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(fast.eval()(x), slow.eval()(x))


@pytest.mark.heavy
@pytest.mark.parametrize("name", [name for name in TORCHVISION if name not in LARGEST])
def test_torchvision_weights_give_torchvision_outputs(name):
    torch.manual_seed(0)
    reference = randomized_reference(paperzoo.model_card(name).reference)
    check_parity(converted(name, reference), reference, name)


@pytest.mark.heavy
@pytest.mark.parametrize("name", [name for name in TIMM if name not in LARGEST])
def test_timm_weights_give_timm_outputs(name):
    torch.manual_seed(0)
    reference = randomized_reference(paperzoo.model_card(name).reference)
    check_parity(converted(name, reference, source="timm"), reference, name)


@pytest.mark.parametrize("name", LARGEST)
def test_the_largest_variants_take_every_reference_tensor_on_the_meta_device(name):
    """Structure without computation: the reference built with its tensors on the meta device converts onto ours
    with every key matched by name and shape (``load_weights`` is strict), and both count the card's parameters.
    The smaller variant named in OUTPUTS_COMPARED_ON runs the same code and has its outputs compared above."""
    card = paperzoo.model_card(name)
    with tensors_on_meta():
        reference = build_reference(card.reference)
    with torch.device("meta"):
        ours = paperzoo.create_model(name)
        smaller = paperzoo.create_model(OUTPUTS_COMPARED_ON[name])
    assert OUTPUTS_COMPARED_ON[name] in TORCHVISION + TIMM and type(smaller) is type(ours)
    source = parse_reference(card.reference)[0]
    paperzoo.load_weights(ours, reference.state_dict(), source=source, assign=True)
    assert all(tensor.is_meta for tensor in ours.state_dict().values())
    assert paperzoo.count_parameters(ours) == paperzoo.count_parameters(reference) == card.params


def test_the_largest_variants_are_the_ones_compared_on_a_smaller_variant():
    assert sorted(LARGEST) == sorted(OUTPUTS_COMPARED_ON)


def test_the_foundation_models_are_compared():
    assert {"alexnet", "vgg11", "vgg19_bn", "resnet18", "resnet152"} <= set(TORCHVISION)


@pytest.mark.heavy
def test_timm_resnet50_weights_give_timm_outputs():
    torch.manual_seed(0)
    reference = randomize_weights(timm.create_model("resnet50", pretrained=False))
    ours = paperzoo.load_weights(paperzoo.create_model("resnet50"), reference, source="timm")
    check_parity(ours, reference, "resnet50")


@pytest.mark.heavy
@pytest.mark.parametrize("output_stride, dilate", [(16, [False, False, True]), (8, [False, True, True])])
def test_dilated_resnet_backbone_equals_torchvision(output_stride, dilate):
    """The atrous backbone the segmentation models build on: torchvision's replace_stride_with_dilation."""
    torch.manual_seed(0)
    reference = randomize_batchnorm(torchvision.models.resnet50(replace_stride_with_dilation=dilate)).eval()
    ours = paperzoo.create_model("resnet50", output_stride=output_stride, features_only=True).eval()
    state = {k: v for k, v in reference.state_dict().items() if not k.startswith("fc.")}
    paperzoo.load_weights(ours, state, source="torchvision")
    x = torch.randn(ODD_SIZE)
    with torch.no_grad():
        features = ours(x)
        expected = reference.maxpool(reference.relu(reference.bn1(reference.conv1(x))))
        stages = [reference.layer1, reference.layer2, reference.layer3, reference.layer4]
        for i, (stage, feature, info) in enumerate(zip(stages, features, ours.feature_info, strict=True)):
            expected = stage(expected)
            assert_close_rel(feature, expected)
            assert info.stride == min(4 * 2**i, output_stride)
            assert feature.shape[-2] == -(-ODD_SIZE[-2] // info.stride)  # ceil: the map keeps that stride


@pytest.mark.heavy
def test_paper_block_moves_the_stride_to_the_first_1x1():
    """stride_in_1x1=True is the paper's ResNet (v1): same parameters, other outputs, stride on conv1."""
    v15 = paperzoo.create_model("resnet50")
    v1 = paperzoo.create_model("resnet50", stride_in_1x1=True)
    assert paperzoo.count_parameters(v1) == paperzoo.count_parameters(v15)
    block = v1.stages.conv3_x[0]
    assert block.conv1.conv.stride == (2, 2) and block.conv2.conv.stride == (1, 1)
    block = v15.stages.conv3_x[0]
    assert block.conv1.conv.stride == (1, 1) and block.conv2.conv.stride == (2, 2)


def test_reference_strings_parse():
    assert parse_reference("torchvision.models.googlenet(aux_logits=False, init_weights=True)") == (
        "torchvision", "googlenet", {"aux_logits": False, "init_weights": True})
    assert parse_reference("timm:seresnet50") == ("timm", "seresnet50", {})
    assert parse_reference("paper") == ("paper", "", {})
    assert parse_reference("torchvision.models.segmentation.fcn_resnet50(aux_loss=False, weights_backbone=None)") == (
        "torchvision", "fcn_resnet50", {"aux_loss": False, "weights_backbone": None})
