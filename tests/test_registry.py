"""The registry: lazy loading, the module index, lookups, wildcards, duplicate and unknown names."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest
import torch

import paperzoo
from paperzoo import registry
from paperzoo.registry import MODEL_MODULES, TASKS, ModelCard, UnknownModelError, register


@pytest.mark.parametrize("module", sorted(MODEL_MODULES))
def test_module_index_matches_what_modules_register(module):
    assert registry.registered_in(module) == sorted(MODEL_MODULES[module]), (
        f"registry.MODEL_MODULES[{module!r}] must list exactly the names the module registers")


@pytest.mark.parametrize("module", sorted(MODEL_MODULES))
def test_every_model_module_has_one_canonical_variant(module):
    canonical = [n for n in MODEL_MODULES[module] if paperzoo.model_card(n).canonical]
    assert len(canonical) == 1, f"{module} must mark exactly one variant canonical, marks {canonical}"


def _fresh_python(code: str) -> str:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()


def test_import_and_cards_load_no_model_module_and_no_torch():
    loaded = _fresh_python(
        "import sys, paperzoo; cards = [paperzoo.model_card(n) for n in paperzoo.list_models(task='translation')]; "
        "cards[0].input.describe(); print(sorted(m for m in sys.modules if m.startswith(('paperzoo.models.', "
        "'paperzoo.interop.')) or m.split('.')[0] in ('torch', 'torchvision')))")
    assert loaded == "[]"


def test_model_index_is_current():
    committed = json.loads(registry.INDEX_PATH.read_text(encoding="utf-8"))["cards"]
    current = json.loads(registry.index_text())["cards"]
    stale = sorted(n for n in committed.keys() | current.keys() if committed.get(n) != current.get(n))
    assert not stale and registry.INDEX_PATH.read_text(encoding="utf-8") == registry.index_text(), (
        f"src/paperzoo/model_index.json is stale ({', '.join(stale) or 'its layout'}): "
        "run `python scripts/write-model-index` and commit the result")


def test_indexed_cards_equal_the_registered_ones():
    registry._import_all()
    for name in registry._index():
        assert registry._indexed_card(name) == registry._REGISTRY[name].card, name
    indexed = registry._indexed_card("transformer_base")
    assert isinstance(indexed.input.shape, tuple) and isinstance(indexed.innovations, tuple)
    assert indexed.input.dtype is torch.int64  # named "int64" in the index


def test_create_model_imports_only_the_module_it_needs():
    loaded = _fresh_python(
        "import sys, paperzoo; paperzoo.create_model('resnet18'); "
        "print(sorted(m for m in sys.modules if m.startswith('paperzoo.models.classification.')))")
    assert loaded == "['paperzoo.models.classification.resnet']"


def test_unknown_name_suggests_the_closest():
    with pytest.raises(KeyError) as info:
        paperzoo.create_model("resnet05")
    assert isinstance(info.value, UnknownModelError)
    message = str(info.value)
    assert "unknown model 'resnet05'" in message
    assert "did you mean resnet50" in message  # the closest comes first
    with pytest.raises(KeyError, match=r"did you mean [\w, ]*vgg16"):
        paperzoo.model_card("vgg61")
    with pytest.raises(KeyError, match="did you mean resnet50"):
        paperzoo.create_model("ResNet50")


@pytest.mark.parametrize("name, family", [
    ("bert", ["bert_base", "bert_large", "bert_base_masked_lm", "bert_base_pretraining", "bert_large_pretraining"]),
    ("vit", ["vit_b_16", "vit_b_32", "vit_h_14", "vit_l_16", "vit_l_32"]),
    ("wav2vec", ["wav2vec2_base", "wav2vec2_large", "wav2vec2_base_ctc", "wav2vec2_large_ctc",
                 "wav2vec2_base_pretraining"]),
    ("transformer", ["transformer_big", "transformer_base"]),
])
def test_a_family_name_suggests_the_family(name, family):
    with pytest.raises(UnknownModelError, match=f"unknown model '{name}'; did you mean {', '.join(family)}\\?"):
        paperzoo.model_card(name)


def test_a_large_family_says_how_to_list_it_all():
    with pytest.raises(UnknownModelError, match=r"did you mean (regnet_\w+, ){4}regnet_\w+\? "
                       r"\(`paperzoo list 'regnet\*'` shows all 15\)"):
        paperzoo.create_model("regnet")


def test_name_without_any_close_match():
    with pytest.raises(KeyError, match="unknown model 'zzzz'") as info:
        paperzoo.create_model("zzzz")
    assert "did you mean" not in str(info.value)


def test_a_name_that_is_not_a_string_is_a_type_error():
    """create_model(3) and model_card(None) ended in "'int' object has no attribute 'lower'", from the suggestions;
    a list ended in "unhashable type"."""
    for name in (3, None, ["resnet50"]):
        for lookup in (paperzoo.create_model, paperzoo.model_card):
            with pytest.raises(TypeError, match=rf"^a model name is a string such as 'resnet50' .*; got "
                                                rf"{type(name).__name__} {re.escape(repr(name))}$"):
                lookup(name)


def test_duplicate_name_raises():
    card = paperzoo.model_card("resnet50")

    def resnet50(**kwargs):  # a second definition, from another file, under a taken name
        raise AssertionError("never built")

    with pytest.raises(ValueError, match="already registered"):
        register(card)(resnet50)


def test_builder_must_carry_its_own_card():
    def not_resnet50():
        raise AssertionError("never built")

    with pytest.raises(ValueError, match="carries the card of 'resnet50'"):
        register(paperzoo.model_card("resnet50"))(not_resnet50)


def test_list_models_wildcards_and_tasks():
    assert paperzoo.list_models("resnet*") == ["resnet101", "resnet152", "resnet18", "resnet34", "resnet50"]
    assert paperzoo.list_models("vgg1?_bn") == ["vgg11_bn", "vgg13_bn", "vgg16_bn", "vgg19_bn"]
    assert paperzoo.list_models("nothing*") == []
    everything = paperzoo.list_models()
    assert everything == sorted(everything) and {"alexnet", "vgg16", "resnet50"} <= set(everything)
    assert paperzoo.list_models(task="image-classification") == [
        n for n in everything if paperzoo.model_card(n).task == "image-classification"]
    assert "resnet50" in paperzoo.list_models(canonical_only=True)
    assert "resnet18" not in paperzoo.list_models(canonical_only=True)
    with pytest.raises(ValueError, match="unknown task"):
        paperzoo.list_models(task="classification")


def test_card_rejects_an_unknown_task():
    card = paperzoo.model_card("alexnet")
    fields = {f: getattr(card, f) for f in card.__dataclass_fields__}
    with pytest.raises(ValueError, match="unknown task"):
        ModelCard(**{**fields, "task": "classification"})


def test_params_match_is_exact_unless_a_tolerance_is_stated():
    card = paperzoo.model_card("resnet50")
    assert card.params_match(card.params)
    assert not card.params_match(card.params + 1)
    fields = {f: getattr(card, f) for f in card.__dataclass_fields__}
    rounded = ModelCard(**{**fields, "params": 28_090_000, "params_tolerance": 5_000})
    assert rounded.params_match(28_094_999) and not rounded.params_match(28_095_001)


def test_example_input_shrinks_only_larger_images_of_networks_that_take_any_size():
    from paperzoo.registry import InputSpec

    wide = InputSpec(kind="image", shape=(3, 520, 260), min_size=32)
    assert wide.shape_within(None) == wide.shape_within(520) == (3, 520, 260)
    assert wide.shape_within(100) == (3, 100, 50)  # the aspect ratio kept
    assert wide.shape_within(40) == (3, 40, 32)  # never below min_size
    assert wide.example_input(2, max_image_size=100).shape == (2, 3, 100, 50)
    detector = InputSpec(kind="image-list", shape=(3, 800, 800))
    images = detector.example_input(2, max_image_size=320)
    assert [tuple(image.shape) for image in images] == [(3, 320, 320)] * 2
    assert all(0 <= image.min() and image.max() <= 1 for image in images)  # pixel values, as before the shrink
    assert InputSpec(kind="image", shape=(3, 224, 224), fixed_size=True).shape_within(100) == (3, 224, 224)
    assert InputSpec(kind="features", shape=(35, 256)).shape_within(16) == (35, 256)


def test_tasks_are_the_designs():
    # DESIGN.md's ten tasks, and keypoint-detection (HRNet's pose network, issue 4)
    assert {"image-classification", "keypoint-detection"} <= set(TASKS) and len(TASKS) == len(set(TASKS)) == 11


def test_create_model_on_the_meta_device_names_the_variant():
    with torch.device("meta"):
        model = paperzoo.create_model("resnet34")
    assert model.model_name == "resnet34"
    assert next(model.parameters()).is_meta


# timm's keywords, each with a value an image classifier takes
_CLASSIFIER_KEYWORDS = {"features_only": True, "out_indices": (1, 2), "global_pool": "max", "drop_rate": 0.1,
                        "drop_path_rate": 0.1, "pretrained_cfg_overlay": {"input_size": (3, 64, 64)}}


def test_every_classifier_keyword_is_given_a_value_here():
    assert set(_CLASSIFIER_KEYWORDS) == set(registry.CLASSIFIER_KEYWORDS)


def _not_image_classifiers() -> list[str]:
    cards = [paperzoo.model_card(name) for name in paperzoo.list_models()]
    return [card.name for card in cards if card.task != "image-classification" or card.input.kind != "image"]


@pytest.mark.parametrize("name", _not_image_classifiers())
def test_classifier_keywords_are_refused_by_a_model_that_does_not_classify_images(name):
    """A TypeError naming the variant and the keyword, as for any argument a model does not take, before anything
    is built. CoordConv's coordinate classifier (the classification task, coordinates in) ended in an
    AttributeError from inside the registry until issue 26."""
    for keyword, value in _CLASSIFIER_KEYWORDS.items():
        with pytest.raises(TypeError, match=f"^{name} .*; {keyword} apply to image classifiers only$"):
            paperzoo.create_model(name, device="meta", **{keyword: value})


# num_classes and in_chans below what any model of the task can have: one line naming the variant, the keyword and
# what it takes, before anything is built. Before issue 26 these ended in torch's RuntimeError ("negative
# dimension"), a ZeroDivisionError or an IndexError from inside the build, or built a classifier-less resnet18 that
# said num_classes=-1.
_BELOW = {"num_classes": (-1, 2.5, True, "10"), "in_chans": (0, -3, 3.0)}


@pytest.mark.parametrize("task", sorted(registry._LEAST_SIZES))
def test_sizes_no_model_can_have_are_refused_in_one_line(task):
    # every variant of the task: nothing is built, so this costs nothing
    names = [name for name in paperzoo.list_models(task=task) if paperzoo.model_card(name).input.kind != "coordinates"]
    assert names
    for name in names:
        for keyword, minimum in registry._LEAST_SIZES[task].items():
            for value in (*_BELOW[keyword], minimum - 1):
                with pytest.raises(ValueError, match=rf"^{name}: {keyword} must be a positive integer(, or 0 for "
                                                     rf"no classifier .*)?; got {re.escape(repr(value))}$"):
                    paperzoo.create_model(name, device="meta", **{keyword: value})


@pytest.mark.parametrize(("name", "keyword", "least"), [
    ("resnet18", "num_classes", 0), ("resnet18", "in_chans", 1), ("hrnet_w32_pose", "in_chans", 1),
    ("unet", "num_classes", 1), ("unet", "in_chans", 1), ("fasterrcnn_resnet50_fpn", "num_classes", 1),
    ("maskrcnn_resnet50_fpn", "num_classes", 1), ("yolov3", "num_classes", 1),
])
def test_the_least_size_of_a_task_builds(name, keyword, least):
    """The refusal's bound is real: a model of the task builds at the least value (and numpy's integers pass)."""
    import numpy as np

    assert registry._LEAST_SIZES[paperzoo.model_card(name).task][keyword] == least
    model = paperzoo.create_model(name, device="meta", **{keyword: np.int64(least)})
    assert next(model.parameters()).is_meta


def test_a_model_without_the_keyword_still_says_it_does_not_take_it():
    for name, keyword in [("gpt", "num_classes"), ("coordconv_classifier", "num_classes"), ("lstm", "in_chans"),
                          ("fasterrcnn_resnet50_fpn", "in_chans")]:
        with pytest.raises(TypeError, match=f"unexpected keyword argument '{keyword}'"):
            paperzoo.create_model(name, device="meta", **{keyword: -1})


def test_a_wrong_device_or_dtype_is_one_value_error(monkeypatch):
    """torch's RuntimeError ("Expected one of cpu, cuda, ...", "Found no NVIDIA driver") and an AttributeError for
    a dtype name before."""
    with pytest.raises(ValueError, match=r"^device='gpu0': expected a torch device such as 'cpu', 'cuda'"):
        paperzoo.create_model("resnet18", device="gpu0")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # a machine without a GPU, whichever runs this
    with pytest.raises(ValueError, match=r"^device='cuda:0': this machine has no CUDA GPU that torch can use"):
        paperzoo.create_model("resnet18", device="cuda:0")
    for dtype in ("float33", "int64", torch.int64, "Tensor"):
        with pytest.raises(ValueError, match=rf"^dtype={re.escape(repr(dtype))}: expected a floating-point dtype"):
            paperzoo.create_model("resnet18", device="meta", dtype=dtype)
    model = paperzoo.create_model("resnet18", device="meta", dtype="torch.bfloat16")
    assert next(model.parameters()).dtype == torch.bfloat16


def test_checkpoint_path_loads_a_local_weights_file_as_timm_does(tmp_path):
    """timm's create_model(name, checkpoint_path=...) was a TypeError here: a file of our weights (as a training
    script saves them: under "state_dict", with DataParallel's "module." prefix), or of the reference's, loaded
    after the build; with features_only, the backbone is cut from the loaded network."""
    import torchvision

    from paperzoo.interop import WeightsMismatchError

    torch.manual_seed(0)
    ours = paperzoo.create_model("resnet18").eval()
    torch.save({"state_dict": {"module." + k: v for k, v in ours.state_dict().items()}}, tmp_path / "ours.pth")
    reference = torchvision.models.resnet18().eval()
    torch.save(reference.state_dict(), tmp_path / "torchvision.pth")
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(paperzoo.create_model("resnet18", checkpoint_path=tmp_path / "ours.pth").eval()(x), ours(x))
        loaded = paperzoo.create_model("resnet18", checkpoint_path=str(tmp_path / "torchvision.pth")).eval()
        torch.testing.assert_close(loaded(x), reference(x), rtol=1e-5, atol=1e-5)
        backbone = paperzoo.create_model("resnet18", features_only=True, out_indices=(1, 3),
                                         checkpoint_path=tmp_path / "ours.pth").eval()
        expected = ours.forward_intermediates(x, indices=(1, 3), intermediates_only=True)
        assert all(torch.equal(a, b) for a, b in zip(backbone(x), expected, strict=True))
    with pytest.raises(WeightsMismatchError, match="do not fit"):
        paperzoo.create_model("resnet34", checkpoint_path=tmp_path / "ours.pth")
    with pytest.raises(ValueError, match="^checkpoint_path with device='meta': the meta device holds no values"):
        paperzoo.create_model("resnet18", device="meta", checkpoint_path=tmp_path / "ours.pth")


# The variants whose paper states no parameter count: the card must say how its count was derived, as a sum of
# parts that a reader can check, "a (part) + b (part) + ... = total".
_DERIVED_COUNTS = ["gan", "dcgan", "vae", "autoencoder", "unet", "unet_padded", "pspnet_resnet50", "pspnet_resnet101",
                   "attention_seq2seq", "coordconv_resnet50", "coordconv_classifier", "darknet53",
                   *[f"shufflenet_v1_g{g}" for g in (1, 2, 3, 4, 8)],
                   *[f"shufflenet_v1_g{g}_x0_5" for g in (1, 3, 8)]]
_PART = r"\d[\d,]*(?: \([^)]*\))?"
_EQUATION = re.compile(rf"({_PART}(?: \+ {_PART})+) = (\d[\d,]*)")


@pytest.mark.parametrize("name", _DERIVED_COUNTS)
def test_derived_counts_show_their_derivation(name):
    card = paperzoo.model_card(name)
    assert card.params_source.startswith("derived"), card.params_source
    equation = _EQUATION.search(card.params_source)
    assert equation, f"{name}: no 'a (part) + b (part) = total' in {card.params_source!r}"
    parts = [int(re.sub(r" \(.*", "", part).replace(",", "")) for part in re.split(r" \+ (?![^(]*\))",
                                                                                    equation.group(1))]
    assert sum(parts) == int(equation.group(2).replace(",", "")) == card.params


def test_every_variant_has_its_own_architecture_label():
    """``paperzoo list``, the site's variant tables and the README name each variant by its label; two variants with
    one label (``unet`` and ``unet_padded`` were both "U-Net") cannot be told apart there."""
    by_label: dict[str, list[str]] = {}
    for name in registry.list_models():
        by_label.setdefault(registry.model_card(name).architecture, []).append(name)
    assert not {label: names for label, names in by_label.items() if len(names) > 1}
