"""Hugging Face folders and friendlier loading: from_pretrained against the reference libraries' own folders,
every refused configuration field, the tokenizer, Hub ids from a local cache; load_weights on folders, shards,
prefixes, sniffed and damaged files, strict=False, and the hints a mismatch gives."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
import torch.nn.functional as F
import transformers
from safetensors.torch import save_file

import paperzoo
from conftest import assert_close_rel, randomize_weights
from paperzoo.interop import LoadResult, WeightsMismatchError, read_state_dict
from paperzoo.interop.huggingface import UnsupportedConfigError
from paperzoo.models.audio.wav2vec2 import compute_span_mask, sample_negatives

pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py: small models, one thread

# Odd sizes everywhere, none of them a registered variant's: depth 3, width 30, 5 heads, feed-forward 41,
# vocabulary 37, 19 positions, 3 segments.
BERT = dict(vocab_size=37, hidden_size=30, num_hidden_layers=3, num_attention_heads=5, intermediate_size=41,
            max_position_embeddings=19, type_vocab_size=3, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
GPT = dict(vocab_size=37, n_embd=30, n_layer=3, n_head=5, n_positions=19)
WAV2VEC2 = dict(hidden_size=30, num_hidden_layers=3, num_attention_heads=5, intermediate_size=41, conv_dim=[16] * 7,
                num_conv_pos_embeddings=12, num_conv_pos_embedding_groups=3, codevector_dim=12, proj_codevector_dim=10,
                num_codevectors_per_group=7)
CONFIGS = {"bert": (transformers.BertConfig, BERT), "openai-gpt": (transformers.OpenAIGPTConfig, GPT),
           "gpt2": (transformers.GPT2Config, GPT), "wav2vec2": (transformers.Wav2Vec2Config, WAV2VEC2)}


def saved(tmp_path, model_class: str, seed: int = 0, **config):
    """A folder written by transformers' own save_pretrained: random weights at a scale where every part counts."""
    reference_class = getattr(transformers, model_class)
    config_class, defaults = CONFIGS[reference_class.config_class.model_type]
    torch.manual_seed(seed)
    reference = randomize_weights(reference_class(config_class(**{**defaults, **config})), seed).eval()
    folder = tmp_path / model_class
    reference.save_pretrained(folder)
    return reference, folder


IDS = torch.tensor([[2, 36, 5, 17, 0, 9, 30], [1, 4, 4, 22, 35, 8, 13]])


@pytest.mark.parametrize("model_class", ["BertModel", "BertForPreTraining"])
def test_bert_folders_give_the_references_outputs_and_losses(tmp_path, model_class):
    reference, folder = saved(tmp_path, model_class)
    model = paperzoo.from_pretrained(folder)
    assert len(model.bert.layers if model_class == "BertForPreTraining" else model.layers) == 3
    segments, mask = torch.tensor([[0, 0, 1, 1, 2, 2, 2]] * 2), torch.tensor([[1] * 7, [1] * 5 + [0] * 2])
    with torch.no_grad():
        expected = reference(IDS, attention_mask=mask, token_type_ids=segments)
        got = model(IDS, mask, segments)
    if model_class == "BertModel":
        assert_close_rel(got["last_hidden_state"], expected.last_hidden_state)
        assert_close_rel(got["pooler_output"], expected.pooler_output)
        return
    assert_close_rel(got["mlm_logits"], expected.prediction_logits)
    assert_close_rel(got["nsp_logits"], expected.seq_relationship_logits)
    labels, next_sentence = torch.full_like(IDS, -100), torch.tensor([0, 1])
    labels[:, 2] = IDS[:, 2]
    with torch.no_grad():
        expected_loss = reference(IDS, attention_mask=mask, token_type_ids=segments, labels=labels,
                                  next_sentence_label=next_sentence).loss
        got_loss = model.loss(IDS, labels, next_sentence, mask, segments)
    assert_close_rel(got_loss, expected_loss)


@pytest.mark.parametrize("model_class", ["GPT2LMHeadModel", "OpenAIGPTLMHeadModel", "GPT2Model", "OpenAIGPTModel"])
def test_gpt_folders_give_the_references_logits_and_loss(tmp_path, model_class):
    reference, folder = saved(tmp_path, model_class, **({"n_inner": 23} if "GPT2" in model_class else {}))
    model = paperzoo.from_pretrained(folder)
    assert len(model.blocks) == 3 and model.blocks[0].feed_forward.fc1.out_features == (23 if "GPT2" in model_class
                                                                                       else 120)
    with torch.no_grad():
        got = model(IDS)
        if "Head" not in model_class:  # no head: the logits are the last states times the tied embedding
            expected = reference(IDS).last_hidden_state @ reference.get_input_embeddings().weight.T
            assert_close_rel(got, expected)
            return
        expected = reference(IDS, labels=IDS)
    assert_close_rel(got, expected.logits)
    assert_close_rel(F.cross_entropy(got[:, :-1].flatten(0, 1), IDS[:, 1:].flatten()), expected.loss)


@pytest.mark.parametrize("model_class", ["Wav2Vec2Model", "Wav2Vec2ForPreTraining"])
@pytest.mark.parametrize("layout", [{}, dict(do_stable_layer_norm=True, feat_extract_norm="layer", conv_bias=True)],
                         ids=["base", "lv60k"])
def test_wav2vec2_folders_give_the_references_outputs_and_loss(tmp_path, model_class, layout):
    reference, folder = saved(tmp_path, model_class, **layout)
    model = paperzoo.from_pretrained(folder)
    x = torch.randn(2, 1600, generator=torch.Generator().manual_seed(0))
    if model_class == "Wav2Vec2Model":
        with torch.no_grad():
            assert_close_rel(model(x)["last_hidden_state"], reference(x).last_hidden_state)
        return
    generator = torch.Generator().manual_seed(1)
    frames = int(model.wav2vec2.num_frames(1600))
    time_mask = compute_span_mask((2, frames), mask_prob=0.3, span_length=2, generator=generator)
    negatives = sample_negatives(time_mask, 3, generator=generator)
    with torch.no_grad():
        expected = reference(x, mask_time_indices=time_mask,
                             sampled_negative_indices=negatives + torch.arange(2)[:, None, None] * frames)
        got = model(x, mask_time_indices=time_mask, sampled_negative_indices=negatives)
    for key in ("projected_states", "projected_quantized_states", "loss"):
        assert_close_rel(got[key], getattr(expected, key))


@pytest.mark.parametrize(("model_class", "config"), [
    ("BertForMaskedLM", {}), ("BertForSequenceClassification", dict(num_labels=3)),
    ("BertForSequenceClassification", dict(num_labels=1)), ("Wav2Vec2ForCTC", dict(vocab_size=11, pad_token_id=2)),
], ids=["BertForMaskedLM", "BertForSequenceClassification", "BertForSequenceClassification-regression",
        "Wav2Vec2ForCTC"])
def test_head_folders_give_the_references_logits_and_losses(tmp_path, model_class, config):
    reference, folder = saved(tmp_path, model_class, **config)
    model = paperzoo.from_pretrained(folder)
    assert paperzoo.count_parameters(model) == sum(p.numel() for p in reference.parameters())
    if model_class == "Wav2Vec2ForCTC":
        assert (model.vocab_size, model.blank_id) == (11, 2)
        x = torch.randn(2, 1600, generator=torch.Generator().manual_seed(0))
        labels = torch.tensor([[1, 3, 3, -100], [4, 5, 10, 1]])
    elif model_class == "BertForMaskedLM":
        x, labels = IDS, torch.where(IDS % 3 == 0, IDS, -100)
    else:
        x, labels = IDS, torch.tensor([2, 0]) if config["num_labels"] == 3 else torch.tensor([0.5, -1.5])
    with torch.no_grad():
        expected, got = reference(x, labels=labels), model(x, labels=labels)
    assert_close_rel(got["logits"], expected.logits)
    assert_close_rel(got["loss"], expected.loss)


REFUSED = [
    ("BertModel", "hidden_act", "gelu_new", "supported: 'gelu'"),
    ("BertModel", "position_embedding_type", "relative_key", "supported: 'absolute'"),
    ("BertModel", "is_decoder", True, "supported: False"),
    ("BertModel", "add_cross_attention", True, "supported: False"),
    ("BertModel", "tie_word_embeddings", False, "supported: True"),
    ("BertModel", "rope_theta", 10000.0, "a BertConfig field paperzoo does not know"),
    ("GPT2Model", "activation_function", "relu", "supported: 'gelu_new' or 'gelu_pytorch_tanh'"),
    ("GPT2Model", "scale_attn_by_inverse_layer_idx", True, "supported: False"),
    ("GPT2Model", "scale_attn_weights", False, "supported: True"),
    ("GPT2Model", "reorder_and_upcast_attn", True, "supported: False"),
    ("GPT2Model", "embd_pdrop", 0.3, "supported: embd_pdrop equal to resid_pdrop"),
    ("OpenAIGPTModel", "afn", "relu", "supported: 'gelu'"),
    ("Wav2Vec2Model", "hidden_act", "relu", "supported: 'gelu'"),
    ("Wav2Vec2Model", "feat_extract_activation", "relu", "supported: 'gelu'"),
    ("Wav2Vec2Model", "conv_kernel", [10, 3, 3, 3, 3, 3, 2], "supported: [10, 3, 3, 3, 3, 2, 2]"),
    ("Wav2Vec2Model", "conv_stride", [5, 2, 2, 2, 2, 2, 3], "supported: [5, 2, 2, 2, 2, 2, 2]"),
    ("Wav2Vec2Model", "conv_dim", [16, 16, 16, 16, 16, 16, 8], "one width for every convolution"),
    ("Wav2Vec2Model", "layer_norm_eps", 1e-6, "supported: 1e-05"),
    ("Wav2Vec2Model", "mask_feature_prob", 0.1, "supported: 0.0"),
    ("Wav2Vec2Model", "add_adapter", True, "supported: False"),
    ("Wav2Vec2Model", "model_type", "hubert", "model_type='hubert': paperzoo reads the configurations of"),
    ("BertModel", "architectures", ["BertForTokenClassification"], "paperzoo has no BertForTokenClassification head"),
    ("Wav2Vec2Model", "architectures", ["Wav2Vec2ForXVector"], "paperzoo has no Wav2Vec2ForXVector head"),
    ("BertModel", "is_encoder_decoder", True, "supported: False"),
]


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("folders")
    return {name: saved(root, name)[1] for name in ("BertModel", "GPT2Model", "OpenAIGPTModel", "Wav2Vec2Model")}


@pytest.mark.parametrize(("model_class", "name", "value", "message"), REFUSED,
                         ids=[f"{c}-{n}" for c, n, _, _ in REFUSED])
def test_each_configuration_value_we_do_not_compute_is_refused_by_name(tmp_path, folders, model_class, name, value,
                                                                       message):
    folder = tmp_path / "edited"
    shutil.copytree(folders[model_class], folder)
    config = json.loads((folder / "config.json").read_text())
    paperzoo.from_pretrained(folder)  # the unedited folder loads: the refusal below is the edit's
    config[name] = value
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(UnsupportedConfigError) as info:
        paperzoo.from_pretrained(folder)
    assert message in str(info.value)
    if name not in ("architectures", "model_type", "conv_dim"):
        assert f"{name}={value!r}" in str(info.value)


def test_bookkeeping_fields_are_ignored_and_overrides_apply(tmp_path, folders):
    folder = tmp_path / "edited"
    shutil.copytree(folders["BertModel"], folder)
    config = json.loads((folder / "config.json").read_text())
    config.update(_name_or_path="someone/tiny-bert", torch_dtype="float32", transformers_version="4.0.0",
                  id2label={"0": "a"}, initializer_range=0.5, use_cache=False)
    (folder / "config.json").write_text(json.dumps(config))
    config.pop("position_embedding_type", None)  # a field the folder lacks is still the reference's name for it
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(UnsupportedConfigError, match="position_embedding_type='relative_key'"):
        paperzoo.from_pretrained(folder, position_embedding_type="relative_key")
    model = paperzoo.from_pretrained(folder, hidden_dropout_prob=0.25, attention_dropout=0.125)
    assert model.embeddings.dropout.p == 0.25  # a config field, by the reference's name
    assert model.layers[0].attention.attention_dropout == 0.125  # a constructor argument, by ours


def test_create_model_takes_the_references_configuration_names():
    """The issue's first report: ``create_model("bert_base", num_hidden_layers=...)`` raised a TypeError. The
    reference's names build the same model as ours; a config.json's contents work as keywords; values we do not
    compute are refused by name."""
    ours = dict(vocab_size=37, hidden_size=30, num_layers=3, num_heads=5, intermediate_size=41, max_positions=19,
                type_vocab_size=3, dropout=0.0, attention_dropout=0.0)
    torch.manual_seed(0)
    expected = paperzoo.create_model("bert_base", **ours)
    torch.manual_seed(0)
    got = paperzoo.create_model("bert_base", **BERT)
    assert same(got, expected) and got.embeddings.dropout.p == 0.0
    torch.manual_seed(0)  # a mix of both namings, as a user might write it
    assert same(paperzoo.create_model("bert_base", num_hidden_layers=3, num_heads=5, hidden_size=30, vocab_size=37,
                                      intermediate_size=41, max_position_embeddings=19, type_vocab_size=3,
                                      hidden_dropout_prob=0.0, attention_dropout=0.0), expected)
    with pytest.raises(ValueError, match="num_layers=4 and num_hidden_layers=3 set the same argument and disagree"):
        paperzoo.create_model("bert_base", num_hidden_layers=3, num_layers=4)
    with pytest.raises(ValueError, match=r"^hidden_act='gelu_new' in the BertConfig .* supported: 'gelu'"):
        paperzoo.create_model("bert_base", hidden_act="gelu_new")
    with pytest.raises(ValueError, match=r"^initializer_range=0.05 .* supported: 0.02"):  # a new model: it matters
        paperzoo.create_model("bert_base", initializer_range=0.05)
    with pytest.raises(TypeError, match="num_layer"):  # a name neither library knows stays Python's error
        paperzoo.create_model("bert_base", num_layer=3)


def test_a_reference_field_named_as_one_of_our_arguments_means_that_argument():
    """create_model passes our own argument names through untranslated: that is right only if no reference field
    spells one of our arguments while meaning another (wav2vec 2.0's intermediate_size is our ffn_dim, and we
    have no intermediate_size there)."""
    import inspect

    from paperzoo.interop.huggingface import BOOKKEEPING, CONFIGS, NO_EFFECT
    from paperzoo.models.audio.wav2vec2 import Wav2Vec2, Wav2Vec2CTC, Wav2Vec2PreTraining
    from paperzoo.models.language.bert import BERT, BERTSequenceClassification
    from paperzoo.models.language.gpt import GPT

    classes = {"bert": [BERT, BERTSequenceClassification], "openai-gpt": [GPT], "gpt2": [GPT],
               "wav2vec2": [Wav2Vec2, Wav2Vec2CTC, Wav2Vec2PreTraining]}
    for model_type, mapping in CONFIGS.items():
        ours = {name for cls in classes[model_type] for name in inspect.signature(cls).parameters} - {"kwargs",
                                                                                                      "wav2vec2_kwargs"}
        for architecture in mapping.architectures:
            for theirs, target in mapping.fields_of(architecture).items():
                assert theirs not in ours or theirs == (target if isinstance(target, str) else target[0]), theirs
        heads = {name for fields in mapping.head_fields.values() for name in fields}  # mapped first (above)
        ignored = {*mapping.required, *mapping.unused, *mapping.derived, *BOOKKEEPING, *NO_EFFECT} - heads
        assert not ignored & ours, f"{model_type}: {sorted(ignored & ours)}"


@pytest.mark.parametrize("model_class", ["BertModel", "BertForSequenceClassification", "OpenAIGPTLMHeadModel",
                                         "GPT2LMHeadModel", "Wav2Vec2ForCTC", "Wav2Vec2ForPreTraining"])
def test_a_config_json_as_keywords_builds_what_from_pretrained_builds(tmp_path, model_class):
    """Every field a reference writes (transformers' ``to_dict()``, bookkeeping included) is read by create_model."""
    extra = {"BertForSequenceClassification": dict(num_labels=4), "Wav2Vec2ForCTC": dict(vocab_size=9)}
    reference, folder = saved(tmp_path, model_class, **extra.get(model_class, {}))
    loaded = paperzoo.from_pretrained(folder)
    with torch.device("meta"):
        built = paperzoo.create_model(loaded.model_name, **reference.config.to_dict())
        from_file = paperzoo.create_model(loaded.model_name, **json.loads((folder / "config.json").read_text()))
    shapes = {k: v.shape for k, v in loaded.state_dict().items()}
    for model in (built, from_file):
        assert type(model) is type(loaded) and {k: v.shape for k, v in model.state_dict().items()} == shapes


def test_wav2vec2_mask_time_prob_is_the_masked_proportion_not_the_span_starts(tmp_path):
    """transformers draws mask_time_prob · T / mask_time_length spans; our mask_prob is the paper's p, spans per
    step: p = mask_time_prob / mask_time_length (it was read as p itself, masking ~10 times too much). And back."""
    _, folder = saved(tmp_path, "Wav2Vec2Model", mask_time_prob=0.3, mask_time_length=4)
    model = paperzoo.from_pretrained(folder)
    assert model.mask_prob == pytest.approx(0.075) and model.mask_span_length == 4
    assert paperzoo.create_model("wav2vec2_base", mask_time_prob=0.3, mask_time_length=4).mask_prob == pytest.approx(
        0.075)
    paperzoo.save_pretrained(model, tmp_path / "back")
    assert transformers.AutoConfig.from_pretrained(tmp_path / "back").mask_time_prob == pytest.approx(0.3)
    assert paperzoo.from_pretrained(folder, apply_spec_augment=False).mask_prob == 0.0


def test_a_heads_checkpoint_loads_its_encoder_when_asked(tmp_path):
    reference, folder = saved(tmp_path, "BertForTokenClassification")
    with pytest.raises(UnsupportedConfigError, match="architecture='BertModel'"):
        paperzoo.from_pretrained(folder)
    with pytest.warns(UserWarning, match="pooler.bias, pooler.weight"):  # BertForTokenClassification has no pooler
        model = paperzoo.from_pretrained(folder, architecture="BertModel")
    with torch.no_grad():
        assert_close_rel(model(IDS)["last_hidden_state"], reference.bert(IDS).last_hidden_state)


def test_a_sharded_folder_loads(tmp_path):
    reference = randomize_weights(transformers.GPT2LMHeadModel(transformers.GPT2Config(**GPT))).eval()
    reference.save_pretrained(tmp_path, max_shard_size="20KB")
    assert len(list(tmp_path.glob("model-*.safetensors"))) > 1 and (tmp_path / "model.safetensors.index.json").exists()
    with torch.no_grad():
        assert_close_rel(paperzoo.from_pretrained(tmp_path)(IDS), reference(IDS).logits)


def test_a_hub_id_is_read_from_the_cache_without_network(tmp_path, folders, monkeypatch):
    import huggingface_hub.constants

    cache = tmp_path / "hub"
    snapshot = cache / "models--someone--tiny-bert" / "snapshots" / ("0" * 40)
    shutil.copytree(folders["BertModel"], snapshot)
    (cache / "models--someone--tiny-bert" / "refs").mkdir()
    (cache / "models--someone--tiny-bert" / "refs" / "main").write_text("0" * 40)
    for name, value in (("HF_HUB_CACHE", str(cache)), ("HF_HUB_OFFLINE", True)):
        monkeypatch.setenv(name, str(value) if name == "HF_HUB_CACHE" else "1")
        monkeypatch.setattr(huggingface_hub.constants, name, value)
    expected = paperzoo.from_pretrained(folders["BertModel"])
    model = paperzoo.from_pretrained("someone/tiny-bert")
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), expected.state_dict().values(),
                                                     strict=True))
    with pytest.raises(FileNotFoundError, match="someone/absent"):  # offline and not cached: never a download
        paperzoo.from_pretrained("someone/absent")
    with pytest.raises(ValueError, match="someone/absent"):  # and, as every bad input, a ValueError (CLI: exit 2)
        paperzoo.from_pretrained("someone/absent")


def test_a_timm_folder_loads(tmp_path):
    import timm
    from timm.models._hub import save_for_hf

    reference = randomize_weights(timm.create_model("resnet18", num_classes=7)).eval()
    save_for_hf(reference, tmp_path)
    model = paperzoo.from_pretrained(tmp_path)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert_close_rel(model(x), reference(x))


WORDS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "cat", "sat", "on", "mat", "##s", "dog", ",", "."]


def test_tokenizers_match_transformers(tmp_path):
    (tmp_path / "vocab.txt").write_text("\n".join(WORDS) + "\n")
    text = "The cats sat on the dog's mat."
    expected = transformers.BertTokenizerFast(str(tmp_path / "vocab.txt"))(text)["input_ids"]
    assert paperzoo.tokenizer(tmp_path).encode(text).ids == expected

    from tokenizers.implementations import ByteLevelBPETokenizer

    trainer = ByteLevelBPETokenizer()
    trainer.train_from_iterator(["the cat sat on the mat"] * 20 + ["a dog, a cat."], vocab_size=280)
    gpt_folder = tmp_path / "gpt"
    gpt_folder.mkdir()
    trainer.save_model(str(gpt_folder))
    reference = transformers.GPT2TokenizerFast(str(gpt_folder / "vocab.json"), str(gpt_folder / "merges.txt"))
    ours = paperzoo.tokenizer(gpt_folder)
    assert ours.encode(text).ids == reference(text)["input_ids"]
    reference.save_pretrained(tmp_path / "fast")  # tokenizer.json
    assert paperzoo.tokenizer(tmp_path / "fast").encode(text).ids == reference(text)["input_ids"]
    assert ours.decode(ours.encode(text).ids) == text


def openai_gpt_vocabulary(folder) -> None:
    """A small vocabulary of GPT's kind: characters with and without the ``</w>`` end-of-word mark, and merges
    that build a few words (a word-final merge makes ``cat</w>``, a medial one ``ca`` and ``cat``)."""
    vocab = {"<unk>": 0}
    for character in "abcdefghijklmnopqrstuvwxyz.,!'":
        vocab[character] = len(vocab)
        vocab[character + "</w>"] = len(vocab)
    merges = ["t h", "th e</w>", "c a", "ca t</w>", "s a", "sa t</w>", "o n</w>", "m a", "ma t</w>", "d o", "do g</w>",
              "ca t", "cat s</w>"]
    for merge in merges:
        vocab.setdefault(merge.replace(" ", ""), len(vocab))
    folder.mkdir()
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n")


def test_gpt_tokenizer_matches_transformers_openai_gpt_tokenizer(tmp_path):
    """GPT's vocab.json + merges.txt (words ending in </w>, lower-cased, BERT's basic splitting) load with the
    tokenizers library and give transformers' OpenAIGPTTokenizer's ids; it was refused before."""
    openai_gpt_vocabulary(tmp_path / "gpt")
    (tmp_path / "gpt" / "config.json").write_text(json.dumps({"model_type": "openai-gpt"}))
    reference = transformers.OpenAIGPTTokenizer.from_pretrained(tmp_path / "gpt")
    ours = paperzoo.tokenizer(tmp_path / "gpt")
    for text in ["The cats sat on the dog's mat.", "THE CAT,  café!\tüber zzz", "catsat\x00 on€mat"]:
        expected = reference(text)["input_ids"]
        assert ours.encode(text).ids == expected, text
        assert ours.decode(expected) == reference.decode(expected)
    assert ours.encode("The cats").tokens == ["the</w>", "cats</w>"]


# --- load_weights ------------------------------------------------------------------------------------------------

def tiny_bert(seed: int, name: str = "bert_base", **kwargs):
    torch.manual_seed(seed)
    config = dict(vocab_size=37, hidden_size=30, num_layers=3, num_heads=5, intermediate_size=41, max_positions=19)
    return paperzoo.create_model(name, **{**config, **kwargs}).eval()


def same(a, b) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values(), strict=True))


@pytest.mark.parametrize("prefix", ["module.", "model.", "backbone.", "bert.", "_orig_mod.", "module.model."])
def test_wrapping_prefixes_are_removed(prefix):
    trained = tiny_bert(0)
    wrapped = {prefix + k: v for k, v in trained.state_dict().items()}
    assert same(paperzoo.load_weights(tiny_bert(1), wrapped), trained)
    assert same(paperzoo.load_weights(tiny_bert(1), {"epoch": 2, "state_dict": wrapped}), trained)


def test_a_reference_state_dict_loads_with_the_default_source_and_a_wrong_source_names_the_right_one():
    reference = randomize_weights(transformers.BertModel(transformers.BertConfig(**BERT)))
    model = paperzoo.load_weights(tiny_bert(1, type_vocab_size=3), reference.state_dict())
    with torch.no_grad():
        assert_close_rel(model(IDS)["last_hidden_state"], reference.eval()(IDS).last_hidden_state)
    with pytest.raises(WeightsMismatchError, match="load them with source='transformers'"):
        paperzoo.load_weights(tiny_bert(1, type_vocab_size=3), reference.state_dict(), source="paperzoo")


def test_a_torchvision_state_dict_loads_by_default():
    import torchvision

    reference = randomize_weights(torchvision.models.resnet18(num_classes=10)).eval()
    model = paperzoo.load_weights(paperzoo.create_model("resnet18", num_classes=10), reference.state_dict()).eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert_close_rel(model(x), reference(x))
    with pytest.raises(WeightsMismatchError) as info:  # the class count is read from the classifier
        paperzoo.load_weights(paperzoo.create_model("resnet18"), reference.state_dict())
    assert "paperzoo.create_model('resnet18', num_classes=10)" in str(info.value)


def test_strict_false_starts_a_model_with_new_heads_from_an_encoder():
    encoder = tiny_bert(0)
    model = tiny_bert(1, "bert_base_pretraining")
    heads = {k: v.clone() for k, v in model.state_dict().items() if not k.startswith("bert.")}
    with pytest.raises(WeightsMismatchError, match="strict=False loads the"):
        paperzoo.load_weights(model, encoder.state_dict())
    result = paperzoo.load_weights(model, encoder.state_dict(), strict=False)
    assert isinstance(result, LoadResult) and not result.unexpected_keys
    assert sorted(result.missing_keys) == sorted(heads)
    assert same(model.bert, encoder)
    assert all(torch.equal(model.state_dict()[k], v) for k, v in heads.items()), "the heads keep their initialisation"


def test_a_mismatch_names_the_arguments_that_fit():
    weights = tiny_bert(0, num_layers=2, vocab_size=41).state_dict()
    with pytest.raises(WeightsMismatchError) as info:
        paperzoo.load_weights(tiny_bert(1), weights)
    assert "num_layers=2" in str(info.value) and "vocab_size=41" in str(info.value)
    with pytest.raises(WeightsMismatchError, match=r"fit paperzoo\.create_model\('resnet18'\)"):
        paperzoo.load_weights(paperzoo.create_model("resnet34"), paperzoo.create_model("resnet18").state_dict())


@pytest.mark.parametrize("name", ["R18.PT", "weights", "weights.BIN", "model.safetensors", "noext_safetensors"])
def test_formats_are_sniffed_not_read_from_the_suffix(tmp_path, name):
    trained = tiny_bert(0)
    state = trained.state_dict()
    if "safetensors" in name:
        save_file({k: v.contiguous() for k, v in state.items()}, str(tmp_path / name))
    else:
        torch.save(state, tmp_path / name)
    assert same(paperzoo.load_weights(tiny_bert(1), tmp_path / name), trained)


@pytest.mark.parametrize("file_name", ["model.safetensors", "pytorch_model.bin"])
def test_a_folder_is_read_like_a_file(tmp_path, file_name):
    trained = tiny_bert(0)
    state = {k: v.contiguous() for k, v in trained.state_dict().items()}
    save_file(state, str(tmp_path / file_name)) if file_name.endswith("safetensors") else torch.save(
        state, tmp_path / file_name)
    assert same(paperzoo.load_weights(tiny_bert(1), tmp_path), trained)


@pytest.mark.parametrize("kind", ["truncated.safetensors", "truncated.pt", "empty.pt", "garbage.bin", "R18.PT"])
def test_a_damaged_file_gives_one_line_naming_it(tmp_path, kind):
    state = {k: v.contiguous() for k, v in tiny_bert(0).state_dict().items()}
    path = tmp_path / kind
    if kind.endswith("safetensors"):
        save_file(state, str(path))
    else:
        torch.save(state, path)
    data = path.read_bytes()
    path.write_bytes({"truncated": data[: len(data) // 2], "empty": b"", "garbage": b"not weights at all",
                      "R18": data[:100]}[kind.split(".")[0]])
    with pytest.raises(ValueError) as info:
        paperzoo.load_weights(tiny_bert(1), path)
    message = str(info.value)
    assert str(path) in message and "\n" not in message and "damaged" in message


def test_read_state_dict_reads_a_sharded_index(tmp_path):
    state = tiny_bert(0).state_dict()
    keys = list(state)
    save_file({k: state[k].contiguous() for k in keys[:5]}, str(tmp_path / "a.safetensors"))
    save_file({k: state[k].contiguous() for k in keys[5:]}, str(tmp_path / "b.safetensors"))
    index = {"weight_map": {k: "a.safetensors" if i < 5 else "b.safetensors" for i, k in enumerate(keys)}}
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps(index))
    assert read_state_dict(tmp_path).keys() == state.keys()
    index["weight_map"]["extra"] = "b.safetensors"
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps(index))
    with pytest.raises(ValueError, match="lack 1 of its tensors: extra"):
        read_state_dict(tmp_path)


def test_the_card_lists_the_accepted_configuration_fields(capsys):
    from paperzoo.cli import main
    from paperzoo.interop.huggingface import accepted_config_fields

    assert "GPT2Config: vocab_size → vocab_size, n_positions → max_positions" in accepted_config_fields("gpt2_medium")
    assert "activation_function ∈ ['gelu_new', 'gelu_pytorch_tanh']" in accepted_config_fields("gpt2")
    assert "num_hidden_layers → num_layers" in accepted_config_fields("bert_large_pretraining")
    assert "conv_dim → feature_channels" in accepted_config_fields("wav2vec2_base")
    assert accepted_config_fields("resnet18") == ""
    assert "num_labels → num_classes" in accepted_config_fields("bert_base_sequence_classification")
    assert "pad_token_id → blank_id" in accepted_config_fields("wav2vec2_base_ctc")
    assert "pad_token_id" not in accepted_config_fields("wav2vec2_base")  # the CTC head's field, not the encoder's
    assert main(["info", "gpt"]) == 0
    assert "n_layer → num_layers" in capsys.readouterr().out
