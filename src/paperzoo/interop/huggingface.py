"""Hugging Face model folders and Hub ids: ``from_pretrained`` and ``tokenizer``.

A transformers folder holds ``config.json`` (a ``BertConfig``, ``OpenAIGPTConfig``, ``GPT2Config`` or
``Wav2Vec2Config`` written out) and its weights; a timm folder holds ``config.json`` with ``architecture`` and
``pretrained_cfg``. Every field of the configuration is accounted for by :data:`CONFIGS`: it becomes one of our
constructor's arguments, or it must hold a value we compute (``hidden_act="gelu"``), or it is listed as not
changing what the model computes (initialisation, runtime switches, heads we do not build), or it is bookkeeping
(:data:`BOOKKEEPING`). Anything else is refused with the field, its value and what we support, so that a
checkpoint never loads into a model that computes something other than what it was trained as.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # annotations only: `paperzoo info` reads the configuration tables below without torch
    from torch import nn

# Fields that record where a configuration came from or how transformers' Python API returns outputs; none
# changes a computed value.
BOOKKEEPING = (
    "_name_or_path", "name_or_path", "architectures", "model_type", "transformers_version", "torch_dtype", "dtype",
    "_commit_hash", "_attn_implementation", "_attn_implementation_autoset", "attn_implementation", "auto_map",
    "return_dict", "use_return_dict", "output_attentions", "output_hidden_states", "torchscript",
    "tokenizer_class", "prefix", "task_specific_params", "finetuning_task", "id2label", "label2id", "num_labels",
    "problem_type", "bos_token_id", "eos_token_id", "sep_token_id", "decoder_start_token_id",
)
# Fields that change how a model is initialised or run, never what its loaded weights compute.
NO_EFFECT = {
    "initializer_range": "initialisation only: the weights are loaded",
    "use_cache": "a runtime switch of transformers' generation (our GPT takes a cache per call)",
    "chunk_size_feed_forward": "computes the same values in chunks",
    "gradient_checkpointing": "a training switch (set_grad_checkpointing())",
}

Supported = tuple[Any, ...]


@dataclass(frozen=True)
class ConfigMap:
    """How one transformers configuration class becomes our constructor's arguments.

    ``fields``: reference field → our argument (with an optional conversion of the value); ``required``:
    reference field → the values we compute (anything else is refused); ``unused``: reference field → why it
    does not matter here; ``architectures``: transformers model class → our registered variant (its builder
    takes the arguments); ``refused_heads``: task heads we do not have → the class whose weights they contain.
    """

    config_class: str
    fields: dict[str, str | tuple[str, Callable[[Any], Any]]]
    required: dict[str, Supported]
    unused: dict[str, str]
    architectures: dict[str, str]
    refused_heads: dict[str, str] = field(default_factory=dict)
    check: Callable[[dict[str, Any]], None] | None = None


def _one_width(value: Any) -> int:
    widths = set(value)
    if len(widths) != 1:
        raise UnsupportedConfigError(f"conv_dim={value!r}: paperzoo's feature encoder has one width for every "
                                     "convolution; supported: seven equal widths (512 in every released model)")
    return widths.pop()


class UnsupportedConfigError(ValueError):
    """A configuration value that paperzoo does not compute: names the field, its value and what is supported."""


class MissingFilesError(ValueError, FileNotFoundError):
    """A folder, Hub id or file that is not there: a ``ValueError`` like every bad input (the CLI's one line, exit
    2), and a ``FileNotFoundError`` for code that catches missing files."""


def _gpt_check(config: dict[str, Any]) -> None:
    if config.get("embd_pdrop", 0.1) != config.get("resid_pdrop", 0.1):
        raise UnsupportedConfigError(f"embd_pdrop={config['embd_pdrop']!r}: paperzoo's GPT has one dropout for the "
                                     f"embeddings and the residual branches; supported: embd_pdrop equal to "
                                     f"resid_pdrop ({config.get('resid_pdrop', 0.1)!r})")
    if "n_ctx" in config and config["n_ctx"] != config.get("n_positions", config["n_ctx"]):
        raise UnsupportedConfigError(f"n_ctx={config['n_ctx']!r}: supported: equal to n_positions")


_GPT_FIELDS: dict[str, str | tuple[str, Callable[[Any], Any]]] = {
    "vocab_size": "vocab_size", "n_positions": "max_positions", "n_embd": "hidden_size", "n_layer": "num_layers",
    "n_head": "num_heads", "resid_pdrop": "dropout", "attn_pdrop": "attention_dropout",
    "layer_norm_epsilon": "layer_norm_eps",
}
_GPT_UNUSED = {
    "embd_pdrop": "equal to resid_pdrop (checked): our one dropout", "n_ctx": "equal to n_positions (checked)",
    "pad_token_id": "a tokenizer id: GPT embeds every id alike",
    **{f"summary_{k}": "GPT-DoubleHeads' multiple-choice head, which paperzoo does not build"
       for k in ("type", "use_proj", "activation", "proj_to_labels", "first_dropout")},
    "predict_special_tokens": "unused by transformers' models",
}

CONFIGS: dict[str, ConfigMap] = {
    "bert": ConfigMap(
        config_class="BertConfig",
        fields={"vocab_size": "vocab_size", "hidden_size": "hidden_size", "num_hidden_layers": "num_layers",
                "num_attention_heads": "num_heads", "intermediate_size": "intermediate_size",
                "max_position_embeddings": "max_positions", "type_vocab_size": "type_vocab_size",
                "hidden_dropout_prob": "dropout", "attention_probs_dropout_prob": "attention_dropout",
                "layer_norm_eps": "layer_norm_eps", "pad_token_id": "pad_token_id"},
        required={"hidden_act": ("gelu",), "position_embedding_type": ("absolute",), "is_decoder": (False,),
                  "add_cross_attention": (False,), "tie_word_embeddings": (True,), "pruned_heads": ({},)},
        unused={"classifier_dropout": "the dropout of BertForSequenceClassification's head, not built here"},
        architectures={"BertModel": "bert_base", "BertForPreTraining": "bert_base_pretraining"},
        refused_heads={"BertForMaskedLM": "BertModel", "BertForSequenceClassification": "BertModel",
                       "BertForTokenClassification": "BertModel", "BertForQuestionAnswering": "BertModel",
                       "BertForNextSentencePrediction": "BertModel", "BertForMultipleChoice": "BertModel",
                       "BertLMHeadModel": "BertModel"},
    ),
    "openai-gpt": ConfigMap(
        config_class="OpenAIGPTConfig",
        fields=_GPT_FIELDS,
        # transformers' OpenAIGPT "gelu" is the tanh approximation (its ACT_FNS), which our GPT computes.
        required={"afn": ("gelu",), "tie_word_embeddings": (True,), "n_special": (0,)},
        unused=_GPT_UNUSED,
        architectures={"OpenAIGPTLMHeadModel": "gpt", "OpenAIGPTModel": "gpt"},
        refused_heads={"OpenAIGPTDoubleHeadsModel": "OpenAIGPTModel",
                       "OpenAIGPTForSequenceClassification": "OpenAIGPTModel"},
        check=_gpt_check,
    ),
    "gpt2": ConfigMap(
        config_class="GPT2Config",
        fields={**_GPT_FIELDS, "n_inner": ("intermediate_size", lambda v: v)},
        required={"activation_function": ("gelu_new", "gelu_pytorch_tanh"), "scale_attn_weights": (True,),
                  "scale_attn_by_inverse_layer_idx": (False,), "reorder_and_upcast_attn": (False,),
                  "add_cross_attention": (False,), "tie_word_embeddings": (True,)},
        unused=_GPT_UNUSED,
        architectures={"GPT2LMHeadModel": "gpt2", "GPT2Model": "gpt2"},
        refused_heads={"GPT2DoubleHeadsModel": "GPT2Model", "GPT2ForSequenceClassification": "GPT2Model",
                       "GPT2ForTokenClassification": "GPT2Model", "GPT2ForQuestionAnswering": "GPT2Model"},
        check=_gpt_check,
    ),
    "wav2vec2": ConfigMap(
        config_class="Wav2Vec2Config",
        fields={"hidden_size": "hidden_size", "num_hidden_layers": "num_layers",
                "num_attention_heads": "num_heads", "intermediate_size": "ffn_dim",
                "conv_dim": ("feature_channels", _one_width), "feat_extract_norm": "feature_encoder_norm",
                "conv_bias": "conv_bias", "do_stable_layer_norm": "layer_norm_first",
                "num_conv_pos_embeddings": "position_kernel_size", "num_conv_pos_embedding_groups": "position_groups",
                "hidden_dropout": "dropout", "attention_dropout": "attention_dropout",
                "activation_dropout": "activation_dropout", "feat_proj_dropout": "feature_dropout",
                "layerdrop": "layerdrop", "mask_time_prob": "mask_prob", "mask_time_length": "mask_span_length",
                "mask_time_min_masks": "mask_min_spans",
                # the pre-training head's; Wav2Vec2Model takes them as unused (below)
                "num_codevector_groups": "num_codebooks", "num_codevectors_per_group": "codebook_size",
                "codevector_dim": "codevector_dim", "proj_codevector_dim": "final_dim",
                "num_negatives": "num_negatives", "contrastive_logits_temperature": "contrastive_temperature",
                "diversity_loss_weight": "diversity_weight", "feat_quantizer_dropout": "quantizer_dropout"},
        required={"hidden_act": ("gelu",), "feat_extract_activation": ("gelu",), "layer_norm_eps": (1e-5,),
                  "num_feat_extract_layers": (7,), "conv_kernel": ((10, 3, 3, 3, 3, 2, 2),),
                  "conv_stride": ((5, 2, 2, 2, 2, 2, 2),), "mask_feature_prob": (0.0, 0),
                  "add_adapter": (False,), "apply_spec_augment": (True, False)},
        unused={"pad_token_id": "the CTC blank id: Wav2Vec2ForCTC's head, not built here",
                "vocab_size": "Wav2Vec2ForCTC's output vocabulary, not built here",
                "final_dropout": "Wav2Vec2ForCTC's head, not built here",
                "ctc_loss_reduction": "Wav2Vec2ForCTC's loss, not built here",
                "ctc_zero_infinity": "Wav2Vec2ForCTC's loss, not built here",
                "mask_feature_length": "feature masking is off (mask_feature_prob = 0, checked)",
                "mask_feature_min_masks": "feature masking is off (mask_feature_prob = 0, checked)",
                "adapter_kernel_size": "no adapter (add_adapter = False, checked)",
                "adapter_stride": "no adapter (add_adapter = False, checked)",
                "num_adapter_layers": "no adapter (add_adapter = False, checked)",
                "adapter_attn_dim": "no adapter (add_adapter = False, checked)",
                "output_hidden_size": "the adapter's width: no adapter (add_adapter = False, checked)",
                "use_weighted_layer_sum": "the classification heads', not built here",
                "classifier_proj_size": "the classification heads', not built here",
                "tdnn_dim": "Wav2Vec2ForXVector's head, not built here",
                "tdnn_kernel": "Wav2Vec2ForXVector's head, not built here",
                "tdnn_dilation": "Wav2Vec2ForXVector's head, not built here",
                "xvector_output_dim": "Wav2Vec2ForXVector's head, not built here",
                # fairseq-era fields that the released configs (facebook/wav2vec2-base) still carry and that
                # transformers' Wav2Vec2 never reads: ignoring them is what the reference does
                **{name: "a fairseq-era field that transformers' Wav2Vec2 does not read" for name in (
                    "freeze_feat_extract_train", "hidden_dropout_prob", "feat_extract_dropout", "mask_channel_length",
                    "mask_channel_min_space", "mask_channel_other", "mask_channel_prob", "mask_channel_selection",
                    "mask_time_min_space", "mask_time_other", "mask_time_selection", "no_mask_channel_overlap",
                    "no_mask_time_overlap")}},
        architectures={"Wav2Vec2Model": "wav2vec2_base", "Wav2Vec2ForPreTraining": "wav2vec2_base_pretraining"},
        refused_heads={"Wav2Vec2ForCTC": "Wav2Vec2Model", "Wav2Vec2ForSequenceClassification": "Wav2Vec2Model",
                       "Wav2Vec2ForAudioFrameClassification": "Wav2Vec2Model", "Wav2Vec2ForXVector": "Wav2Vec2Model"},
    ),
}
# The quantiser's fields mean nothing to the encoder alone.
_PRETRAINING_ONLY = ("num_codebooks", "codebook_size", "codevector_dim", "final_dim", "num_negatives",
                     "contrastive_temperature", "diversity_weight", "quantizer_dropout")


def _as_supported(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value


def constructor_arguments(config: dict[str, Any], architecture: str) -> tuple[str, dict[str, Any]]:
    """``(registered variant, its constructor's arguments)`` for a transformers ``config`` (``config.json``'s
    contents) and model class ``architecture``; raises :class:`UnsupportedConfigError` for a field or value we
    do not compute."""
    model_type = config.get("model_type")
    if model_type not in CONFIGS:
        raise UnsupportedConfigError(f"model_type={model_type!r}: paperzoo reads the configurations of "
                                     + ", ".join(f"{m.config_class} ({t!r})" for t, m in CONFIGS.items()))
    mapping = CONFIGS[model_type]
    if architecture in mapping.refused_heads:
        raise UnsupportedConfigError(
            f"architectures=[{architecture!r}]: paperzoo has no {architecture} head; supported: "
            f"{', '.join(mapping.architectures)}. Its encoder loads with "
            f"from_pretrained(..., architecture={mapping.refused_heads[architecture]!r}) (the head is left out)")
    if architecture not in mapping.architectures:
        raise UnsupportedConfigError(f"architectures=[{architecture!r}]: supported for {mapping.config_class}: "
                                     f"{', '.join(mapping.architectures)}")
    arguments: dict[str, Any] = {}
    for name, value in config.items():
        if name in BOOKKEEPING or name in NO_EFFECT or name in mapping.unused:
            continue
        if name in mapping.required:
            supported = mapping.required[name]
            if _as_supported(value) not in supported:
                shown = " or ".join(repr(list(s) if isinstance(s, tuple) else s) for s in supported)
                raise UnsupportedConfigError(f"{name}={value!r} in the {mapping.config_class} is not what paperzoo "
                                             f"computes; supported: {shown}")
            continue
        if name not in mapping.fields:
            raise UnsupportedConfigError(f"{name}={value!r}: a {mapping.config_class} field paperzoo does not know, "
                                         "so it cannot tell whether the model would compute what it was trained as")
        target = mapping.fields[name]
        ours, convert = (target, None) if isinstance(target, str) else target
        if value is not None:
            arguments[ours] = convert(value) if convert else value
    if mapping.check is not None:
        mapping.check(config)
    variant = mapping.architectures[architecture]
    if model_type == "wav2vec2" and architecture == "Wav2Vec2Model":
        arguments = {k: v for k, v in arguments.items() if k not in _PRETRAINING_ONLY}
    if model_type == "wav2vec2" and config.get("apply_spec_augment") is False:
        arguments["mask_prob"] = 0.0  # transformers masks nothing without SpecAugment
    return variant, arguments


def accepted_config_fields(name: str) -> str:
    """The configuration fields ``from_pretrained`` reads for the registered variant ``name``, the reference's
    name beside ours, and the values it checks ("" for a variant with no transformers configuration)."""
    from paperzoo.registry import model_card, parse_reference

    library, reference_class, _ = parse_reference(model_card(name).reference)
    for mapping in CONFIGS.values():
        if library == "transformers" and reference_class in mapping.architectures:
            mapped = ", ".join(f"{theirs} → {ours if isinstance(ours, str) else ours[0]}"
                               for theirs, ours in mapping.fields.items())
            checked = ", ".join(f"{theirs} ∈ {list(values)}" for theirs, values in mapping.required.items())
            return f"{mapping.config_class}: {mapped}\nchecked: {checked}"
    return ""


# --- files and Hub ids ----------------------------------------------------------------------------------------

_HUB_FILES = ["*.json", "*.safetensors", "*.bin", "vocab.txt", "merges.txt", "*.model"]


def resolve_folder(path_or_repo_id: str | Path) -> Path:
    """A local folder as it is; otherwise a Hub repo id, downloaded (or found in the cache) with
    ``huggingface_hub.snapshot_download``."""
    path = Path(path_or_repo_id)
    if path.is_dir():
        return path
    text = str(path_or_repo_id)
    if path.exists() or text.startswith((".", "/", "~")) or text.count("/") > 1:
        raise MissingFilesError(f"no model folder at {path_or_repo_id}")
    try:
        from huggingface_hub import snapshot_download
    except ImportError:
        raise ImportError(f"{text!r} is not a local folder; loading it from the Hugging Face Hub needs "
                          'huggingface_hub: pip install "paperzoo[hub]"') from None
    try:
        return Path(snapshot_download(text, allow_patterns=_HUB_FILES))
    except Exception as err:  # huggingface_hub's many errors: offline, not cached, unknown repo, no network
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise MissingFilesError(f"{text!r} is not a local folder, and the Hugging Face Hub did not give it: "
                                f"{reason}") from None


def read_config(folder: Path) -> dict[str, Any]:
    path = folder / "config.json"
    if not path.is_file():
        raise MissingFilesError(f"no config.json in {folder}: from_pretrained reads a Hugging Face model folder "
                                "(config.json and the weights); for weights alone use load_weights")
    return json.loads(path.read_text())


def from_pretrained(path_or_repo_id: str | Path, *, architecture: str | None = None, **overrides: Any) -> nn.Module:
    """Build and load a model from a Hugging Face model folder or Hub id: a transformers one (``config.json``
    of a BERT, GPT, GPT-2 or wav2vec 2.0 model, and its weights) or a timm one (``config.json`` with
    ``architecture``). The configuration's every field is mapped to our constructor or checked (module
    docstring); the weights load strictly.

    ``overrides`` replace configuration fields before they are read (``hidden_dropout_prob=0.0``) or, under
    our own names, constructor arguments (``dropout=0.0``). ``architecture`` picks the transformers class whose
    weights to load when the folder's is a head we do not have: ``"BertModel"`` loads a ``BertForMaskedLM``'s
    encoder and leaves its head out.
    """
    from paperzoo.interop import load_weights
    from paperzoo.registry import create_model

    folder = resolve_folder(path_or_repo_id)
    config = read_config(folder)
    if "architecture" in config and "pretrained_cfg" in config:
        return _from_timm_folder(folder, config, overrides)
    mapping = CONFIGS.get(config.get("model_type"))
    known = () if mapping is None else (*mapping.fields, *mapping.required, *mapping.unused)
    config_overrides = {k: v for k, v in overrides.items() if k in config or k in known}
    config.update(config_overrides)
    saved = (config.get("architectures") or [None])[0]
    variant, arguments = constructor_arguments(config, architecture or saved)
    arguments.update({k: v for k, v in overrides.items() if k not in config_overrides})
    model = create_model(variant, **arguments)
    if architecture is not None and architecture != saved:  # a head's checkpoint read for its encoder only
        result = load_weights(model, folder, source="transformers", strict=False)
        if result.missing_keys:  # e.g. BertForMaskedLM has no pooler: transformers, too, initialises it and warns
            warnings.warn(f"the weights in {folder} ({saved}) lack {len(result.missing_keys)} tensors of "
                          f"{architecture}, which keep their initialisation: {', '.join(result.missing_keys[:10])}",
                          stacklevel=2)
    else:
        load_weights(model, folder, source="transformers")
    return model.eval()


# timm's config.json fields beside the architecture: what they are.
_TIMM_BOOKKEEPING = ("pretrained_cfg", "label_names", "label_descriptions", "num_features")


def _from_timm_folder(folder: Path, config: dict[str, Any], overrides: dict[str, Any]) -> nn.Module:
    from paperzoo.interop import load_weights
    from paperzoo.registry import create_model, list_models, model_card, parse_reference

    name = config["architecture"]
    variants = [n for n in list_models() if parse_reference(model_card(n).reference)[:2] == ("timm", name)]
    variants = variants or [n for n in list_models() if n == name]
    if not variants:
        raise UnsupportedConfigError(f"architecture={name!r}: no paperzoo variant has timm's {name} as its "
                                     "reference or its name")
    arguments = dict(config.get("model_args") or {})
    for key in config:
        if key not in ("architecture", "model_args", "num_classes", "global_pool", *_TIMM_BOOKKEEPING):
            raise UnsupportedConfigError(f"{key}={config[key]!r}: a timm config.json field paperzoo does not know")
    if "num_classes" in config:
        arguments.setdefault("num_classes", config["num_classes"])
    pool = arguments.pop("global_pool", config.get("global_pool", "avg"))
    if pool not in ("avg", None):
        raise UnsupportedConfigError(f"global_pool={pool!r}: paperzoo's classifiers average-pool; supported: 'avg'")
    model = create_model(variants[0], **{**arguments, **overrides})
    load_weights(model, folder, source="timm")
    return model.eval()


# --- tokenizers ------------------------------------------------------------------------------------------------

def tokenizer(path_or_repo_id: str | Path) -> Any:
    """The ``tokenizers.Tokenizer`` of a model folder or Hub id: ``tokenizer.json`` as it is; otherwise
    ``vocab.txt`` as BERT's WordPiece (lower-cased unless ``tokenizer_config.json`` says ``do_lower_case:
    false``) or ``vocab.json`` + ``merges.txt`` as GPT-2's byte-level BPE."""
    try:
        import tokenizers
    except ImportError:
        raise ImportError('paperzoo.tokenizer needs the tokenizers library: '
                          'pip install "paperzoo[tokenizers]"') from None
    folder = resolve_folder(path_or_repo_id)
    if (folder / "tokenizer.json").is_file():
        return tokenizers.Tokenizer.from_file(str(folder / "tokenizer.json"))
    settings_file = folder / "tokenizer_config.json"
    settings = json.loads(settings_file.read_text()) if settings_file.is_file() else {}
    if (folder / "vocab.txt").is_file():
        from tokenizers.implementations import BertWordPieceTokenizer

        return BertWordPieceTokenizer(str(folder / "vocab.txt"), lowercase=settings.get("do_lower_case", True))
    if (folder / "vocab.json").is_file() and (folder / "merges.txt").is_file():
        config_file = folder / "config.json"
        if config_file.is_file() and json.loads(config_file.read_text()).get("model_type") == "openai-gpt":
            raise ValueError(f"{folder} holds OpenAI GPT's vocab.json and merges.txt, a BPE over lower-cased, "
                             "ftfy-fixed words with '</w>' ends that the tokenizers library does not reproduce: "
                             "save the tokenizer as tokenizer.json with transformers (OpenAIGPTTokenizerFast)")
        from tokenizers.implementations import ByteLevelBPETokenizer

        return ByteLevelBPETokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"))
    raise MissingFilesError(f"no tokenizer in {folder}: expected tokenizer.json, vocab.txt, or vocab.json with "
                            "merges.txt")
