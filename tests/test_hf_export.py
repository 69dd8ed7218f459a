"""Export back to the references: save_pretrained folders that transformers and timm load with our outputs,
export_weights bit-identical round trips (reference → ours → reference), and the measured inverse of every
converter over the registry."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import transformers

import paperzoo
from conftest import assert_close_rel, randomize_weights
from paperzoo.interop import convert_state_dict
from paperzoo.interop.export import export_positions, reference_for
from paperzoo.interop.references import (
    WEIGHT_SOURCES,
    build_reference,
    parse_reference,
    reference_unavailable,
    tensors_on_meta,
)

pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py: small models, one thread

TEXT = dict(vocab_size=37, hidden_size=30, num_layers=3, num_heads=5, max_positions=19)
AUDIO = dict(hidden_size=30, num_layers=3, num_heads=5, ffn_dim=41, feature_channels=16, position_kernel_size=12,
             position_groups=3)
# (variant, odd arguments, transformers class save_pretrained writes, its output ↔ ours)
TRANSFORMERS_CASES = [
    ("bert_base", {**TEXT, "intermediate_size": 41, "type_vocab_size": 3}, "BertModel",
     ("last_hidden_state", "last_hidden_state")),
    ("bert_base_pretraining", {**TEXT, "intermediate_size": 41}, "BertForPreTraining",
     ("prediction_logits", "mlm_logits")),
    ("gpt2", {**TEXT, "intermediate_size": 23}, "GPT2LMHeadModel", ("logits", None)),
    ("gpt", TEXT, "OpenAIGPTLMHeadModel", ("logits", None)),
    ("bert_base_masked_lm", {**TEXT, "intermediate_size": 41}, "BertForMaskedLM", ("logits", "logits")),
    ("bert_base_sequence_classification", {**TEXT, "intermediate_size": 41, "num_classes": 3},
     "BertForSequenceClassification", ("logits", "logits")),
    ("wav2vec2_base", AUDIO, "Wav2Vec2Model", ("last_hidden_state", "last_hidden_state")),
    ("wav2vec2_base_ctc", {**AUDIO, "vocab_size": 11, "blank_id": 3}, "Wav2Vec2ForCTC", ("logits", "logits")),
    ("wav2vec2_large_pretraining", {**AUDIO, "codevector_dim": 12, "final_dim": 10, "codebook_size": 7},
     "Wav2Vec2ForPreTraining", ("projected_states", "projected_states")),
]


@pytest.mark.parametrize(("name", "kwargs", "architecture", "outputs"), TRANSFORMERS_CASES,
                         ids=[c[0] for c in TRANSFORMERS_CASES])
def test_save_pretrained_writes_a_folder_transformers_loads_with_our_outputs(tmp_path, name, kwargs, architecture,
                                                                           outputs):
    torch.manual_seed(0)
    model = randomize_weights(paperzoo.create_model(name, **kwargs)).eval()
    paperzoo.save_pretrained(model, tmp_path)
    assert transformers.AutoConfig.from_pretrained(tmp_path).architectures == [architecture]
    reference = getattr(transformers, architecture).from_pretrained(tmp_path).eval()
    transformers.AutoModel.from_pretrained(tmp_path)  # the base class reads the folder too
    ids = torch.tensor([[2, 36, 5, 17, 0, 9, 30], [1, 4, 4, 22, 35, 8, 13]])
    x = torch.randn(2, 1600) if "wav2vec2" in name else ids
    theirs, ours = outputs
    with torch.no_grad():
        expected, got = getattr(reference(x), theirs), model(x)
    assert_close_rel(got if ours is None else got[ours], expected)
    back = paperzoo.from_pretrained(tmp_path)  # and our own loader reads it back, bit for bit
    assert type(back) is type(model)
    assert all(torch.equal(a, b) for a, b in zip(back.state_dict().values(), model.state_dict().values(), strict=True))


@pytest.mark.parametrize(("name", "kwargs", "architecture", "outputs"), TRANSFORMERS_CASES,
                         ids=[c[0] for c in TRANSFORMERS_CASES])
def test_transformers_weights_round_trip_bit_identically(name, kwargs, architecture, outputs):
    from paperzoo.interop.export import transformers_config

    config = transformers_config(paperzoo.create_model(name, **kwargs))
    model_class = getattr(transformers, architecture)
    fields = {k: v for k, v in config.items() if k not in ("model_type", "architectures")}
    torch.manual_seed(0)
    reference = randomize_weights(model_class(model_class.config_class(**fields)))
    model = paperzoo.load_weights(paperzoo.create_model(name, **kwargs), reference, source="transformers")
    exported, expected = paperzoo.export_weights(model, "transformers"), reference.state_dict()
    assert exported.keys() == expected.keys()
    assert all(torch.equal(exported[k], expected[k]) for k in expected)


@pytest.mark.parametrize("num_classes", [1000, 7])
def test_save_pretrained_writes_a_folder_timm_loads_with_our_outputs(tmp_path, num_classes):
    import timm

    model = randomize_weights(paperzoo.create_model("resnet18", num_classes=num_classes)).eval()
    paperzoo.save_pretrained(model, tmp_path)
    overlay = dict(file=str(tmp_path / "model.safetensors"), num_classes=num_classes)  # timm's own default: 1000
    reference = timm.create_model("resnet18", pretrained=True, num_classes=num_classes,
                                  pretrained_cfg_overlay=overlay).eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert_close_rel(model(x), reference(x))
    assert all(torch.equal(a, b) for a, b in zip(paperzoo.from_pretrained(tmp_path).state_dict().values(),
                                                 model.state_dict().values(), strict=True))


def round_trip(name: str, **kwargs) -> None:
    """reference → ours → reference, bit-identical, with every reference key back."""
    card = paperzoo.model_card(name)
    library = parse_reference(card.reference)[0]
    torch.manual_seed(0)
    reference = randomize_weights(build_reference(card.reference))
    source = WEIGHT_SOURCES[library]
    model = paperzoo.load_weights(paperzoo.create_model(name, **kwargs), reference, source=source)
    exported = paperzoo.export_weights(model, source)
    expected = reference.state_dict()
    dropped = expected.keys() - exported.keys()
    assert not (exported.keys() - expected.keys())
    assert all(not k.endswith(("weight", "bias")) for k in dropped), f"weights lost on the way: {sorted(dropped)}"
    for key, value in exported.items():
        assert value.dtype == expected[key].dtype and torch.equal(value, expected[key]), key


SMALL = ["resnet18", "squeezenet1_1", "mobilenet_v2", "shufflenet_v2_x0_5", "densenet121", "lstm",
         "regnet_y_400mf", "ghostnet", "mixnet_s"]


@pytest.mark.parametrize("name", SMALL)
def test_small_variants_round_trip_bit_identically(name):
    if name not in paperzoo.list_models():
        pytest.skip(f"{name} is not registered")
    round_trip(name)


def test_a_torchvision_model_holding_exported_weights_gives_our_outputs():
    import torchvision

    model = randomize_weights(paperzoo.create_model("shufflenet_v2_x0_5")).eval()
    reference = torchvision.models.shufflenet_v2_x0_5()
    reference.load_state_dict(paperzoo.export_weights(model, "torchvision"))
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert_close_rel(model(x), reference.eval()(x))


def test_export_refuses_a_library_that_is_not_the_models_reference():
    with pytest.raises(ValueError, match="not a torchvision model"):
        paperzoo.export_weights(paperzoo.create_model("lstm"), "torchvision")
    with pytest.raises(ValueError, match="unknown library 'keras'"):
        paperzoo.export_weights(paperzoo.create_model("lstm"), "keras")


def test_save_pretrained_refuses_what_it_cannot_write_and_leaves_nothing_behind(tmp_path, monkeypatch):
    """A model with no timm or transformers counterpart ended in timm's RuntimeError "Unknown model (unet)" after
    making an empty folder; a write that failed left config.json without its weights; a file where the folder
    should be gave pathlib's FileExistsError."""
    import safetensors.torch

    for name, reference in [("unet", "the paper alone"),
                            ("fcn_resnet50", r"torchvision\.models\.segmentation\.fcn_resnet50\(.*\): "
                                             r"export_weights\(model, 'torchvision'\) writes that layout")]:
        with pytest.raises(ValueError, match=f"^{name} has no timm counterpart; its reference is {reference}"):
            paperzoo.save_pretrained(paperzoo.create_model(name, device="meta"), tmp_path / name)
        assert not (tmp_path / name).exists()
    (tmp_path / "file").write_text("")
    with pytest.raises(ValueError, match="^save_pretrained writes a folder, and .*file is a file; name a folder$"):
        paperzoo.save_pretrained(paperzoo.create_model("resnet18"), tmp_path / "file")

    def disk_full(tensors, path, metadata=None):
        Path(path).write_bytes(b"half")
        raise OSError(28, "No space left on device")

    model = paperzoo.create_model("resnet18")
    paperzoo.save_pretrained(model, tmp_path / "earlier")
    before = {f.name: f.read_bytes() for f in (tmp_path / "earlier").iterdir()}
    monkeypatch.setattr(safetensors.torch, "save_file", disk_full)
    for folder in (tmp_path / "new", tmp_path / "earlier"):
        with pytest.raises(OSError, match="No space left"):
            paperzoo.save_pretrained(model, folder)
    assert not (tmp_path / "new").exists()
    assert {f.name: f.read_bytes() for f in (tmp_path / "earlier").iterdir()} == before


def referenced_variants(max_params: int | None = None) -> list[str]:
    names = []
    for name in paperzoo.list_models():
        card = paperzoo.model_card(name)
        if reference_unavailable(card.reference) is None and (max_params is None or card.params <= max_params):
            names.append(name)
    return names


@pytest.mark.heavy
@pytest.mark.parametrize("name", referenced_variants())
def test_every_reference_layout_converts_to_ours(name):
    """On the meta device, for every variant with a reference: the reference's names and shapes, converted,
    are ours exactly (what export_weights relies on)."""
    card = paperzoo.model_card(name)
    library = WEIGHT_SOURCES[parse_reference(card.reference)[0]]
    with torch.device("meta"):
        model = paperzoo.create_model(name)
    reference = reference_for(model, library)
    converted = convert_state_dict(model, reference.state_dict(), library)
    own = model.state_dict()
    assert converted.keys() == own.keys()
    assert all(converted[k].shape == own[k].shape for k in own)


def test_a_reference_whose_constructor_computes_is_built_on_the_meta_device_too():
    """torchvision's RegNet computes its stage widths with tensors, which torch.device("meta") refuses: its
    reference was built on the CPU instead (regnet_y_128gf: 644M parameters drawn, 6 s, 2.6 GB, to read a layout)."""
    with torch.device("meta"):
        model = paperzoo.create_model("regnet_y_128gf")
    reference = reference_for(model, "torchvision")
    assert all(t.is_meta for t in reference.state_dict().values())
    assert sum(p.numel() for p in reference.parameters()) == paperzoo.model_card("regnet_y_128gf").params


def test_tensors_on_meta_keeps_a_tied_weight_one_parameter():
    class Tied(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.embedding = torch.nn.Embedding(5, 3)
            self.head = torch.nn.Linear(3, 5, bias=False)
            self.head.weight = self.embedding.weight  # GPT's tied output layer

    with tensors_on_meta():
        model = Tied()
    assert model.head.weight is model.embedding.weight and model.head.weight.is_meta
    assert len(list(model.parameters())) == 1


@pytest.mark.heavy
@pytest.mark.parametrize("name", referenced_variants(max_params=15_000_000))
def test_every_converter_has_an_exact_inverse(name):
    """Every reference element becomes exactly one of ours and the other way round (a buffer the converter
    drops, such as a causal mask, may become none): the export, which puts each value back where it came from,
    is then exact for any values. Checked where the position tensors stay small (up to 15M parameters)."""
    card = paperzoo.model_card(name)
    library = WEIGHT_SOURCES[parse_reference(card.reference)[0]]
    with torch.device("meta"):
        model = paperzoo.create_model(name)
    probe, positions, total, _ = export_positions(model, library)
    used = torch.cat([p.flatten().long() for p in positions.values()])
    # How many of our elements each reference element becomes: a count in one pass (torch.unique sorted the 14M
    # positions of DenseNet-169 in 1.4 s of its 2 s, issue 26).
    becomes = torch.bincount(used, minlength=total)
    assert becomes.max() <= 1, "two of our elements come from one reference element"
    covered = becomes > 0
    lost = [k for k, p in probe.items() if not covered[p.flatten().long()].all() and k.endswith(("weight", "bias"))]
    assert not lost, f"reference weights that no tensor of ours becomes: {lost}"
