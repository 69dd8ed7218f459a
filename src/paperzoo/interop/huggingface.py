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

Supported = tuple[Any, ...]
# our argument's name, or (its name, a conversion of the reference's value)
Target = str | tuple[str, Callable[[Any], Any]]

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
    "initializer_range": "initialisation only: the weights are loaded (a new model: checked, FRESH_REQUIRED)",
    "use_cache": "a runtime switch of transformers' generation (our GPT takes a cache per call)",
    "chunk_size_feed_forward": "computes the same values in chunks",
    "gradient_checkpointing": "a training switch (set_grad_checkpointing())",
}
# What a model that is built without loading weights (create_model with the reference's names) computes of them:
# our models initialise every weight with σ = 0.02, transformers' default for all four configurations.
FRESH_REQUIRED: dict[str, Supported] = {"initializer_range": (0.02,)}
# Fields of every transformers configuration (PretrainedConfig's), with the one value our models compute.
COMMON_REQUIRED: dict[str, Supported] = {"is_encoder_decoder": (False,)}


@dataclass(frozen=True)
class ConfigMap:
    """How one transformers configuration class becomes our constructor's arguments.

    ``fields``: reference field → our argument (with an optional conversion of the value); ``required``:
    reference field → the values we compute (anything else is refused); ``unused``: reference field → why it
    does not matter here; ``architectures``: transformers model class → our registered variant (its builder
    takes the arguments); ``head_fields``: transformers model class → the fields only its head reads (mapped as
    ``fields`` for that class, ignored for the others, as transformers ignores them); ``refused_heads``: task
    heads we do not have → the class whose weights they contain; ``adjust(config, arguments)``: checks that
    span several fields, and arguments computed from several fields, which ``derived`` describes (reference
    field → how our argument is computed from it).
    """

    config_class: str
    fields: dict[str, Target]
    required: dict[str, Supported]
    unused: dict[str, str]
    architectures: dict[str, str]
    head_fields: dict[str, dict[str, Target]] = field(default_factory=dict)
    refused_heads: dict[str, str] = field(default_factory=dict)
    adjust: Callable[[dict[str, Any], dict[str, Any]], None] | None = None
    derived: dict[str, str] = field(default_factory=dict)

    def fields_of(self, architecture: str) -> dict[str, Target]:
        """The fields that become ``architecture``'s constructor arguments: the common ones and its head's."""
        return {**self.fields, **self.head_fields.get(architecture, {})}

    def other_heads(self, architecture: str) -> dict[str, str]:
        """Fields of the other heads' (ignored for ``architecture``) → the head that reads them."""
        own = self.head_fields.get(architecture, {})
        return {name: head for head, fields in self.head_fields.items() if head != architecture
                for name in fields if name not in own and name not in self.fields}


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


def _gpt_adjust(config: dict[str, Any], arguments: dict[str, Any]) -> None:
    """Our GPT has one dropout for the embeddings and the residual branches, and its context is its positions."""
    embedding, residual = config.get("embd_pdrop", 0.1), config.get("resid_pdrop", 0.1)  # both configs' default
    if embedding != residual:
        raise UnsupportedConfigError(f"embd_pdrop={embedding!r}: paperzoo's GPT has one dropout for the embeddings "
                                     f"and the residual branches; supported: embd_pdrop equal to resid_pdrop "
                                     f"({residual!r}); set both")
    if "n_ctx" in config and config["n_ctx"] != config.get("n_positions", config["n_ctx"]):
        raise UnsupportedConfigError(f"n_ctx={config['n_ctx']!r}: supported: equal to n_positions")


def _wav2vec2_adjust(config: dict[str, Any], arguments: dict[str, Any]) -> None:
    """transformers' ``mask_time_prob`` is the proportion of steps masked before spans overlap, p·M
    (``_compute_mask_indices`` draws ``mask_time_prob · T / M`` spans); our ``mask_prob`` is the paper's p, the
    proportion of steps that start a span. Without SpecAugment transformers masks nothing."""
    if "mask_time_prob" in config:
        arguments["mask_prob"] = config["mask_time_prob"] / config.get("mask_time_length", 10)
    if config.get("apply_spec_augment") is False:
        arguments["mask_prob"] = 0.0


_GPT_FIELDS: dict[str, Target] = {
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
        unused={},
        architectures={"BertModel": "bert_base", "BertForPreTraining": "bert_base_pretraining",
                       "BertForMaskedLM": "bert_base_masked_lm",
                       "BertForSequenceClassification": "bert_base_sequence_classification"},
        # id2label's length is the number of classes (transformers' num_labels); the two must agree
        head_fields={"BertForSequenceClassification": {
            "num_labels": "num_classes", "id2label": ("num_classes", len), "classifier_dropout": "classifier_dropout",
            "problem_type": "problem_type"}},
        refused_heads={"BertForTokenClassification": "BertModel", "BertForQuestionAnswering": "BertModel",
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
        adjust=_gpt_adjust,
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
        adjust=_gpt_adjust,
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
                "layerdrop": "layerdrop", "mask_time_length": "mask_span_length",
                "mask_time_min_masks": "mask_min_spans"},
        required={"hidden_act": ("gelu",), "feat_extract_activation": ("gelu",), "layer_norm_eps": (1e-5,),
                  "num_feat_extract_layers": (7,), "conv_kernel": ((10, 3, 3, 3, 3, 2, 2),),
                  "conv_stride": ((5, 2, 2, 2, 2, 2, 2),), "mask_feature_prob": (0.0, 0),
                  "add_adapter": (False,), "apply_spec_augment": (True, False)},
        unused={"mask_feature_length": "feature masking is off (mask_feature_prob = 0, checked)",
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
        architectures={"Wav2Vec2Model": "wav2vec2_base", "Wav2Vec2ForPreTraining": "wav2vec2_base_pretraining",
                       "Wav2Vec2ForCTC": "wav2vec2_base_ctc"},
        head_fields={
            "Wav2Vec2ForPreTraining": {
                "num_codevector_groups": "num_codebooks", "num_codevectors_per_group": "codebook_size",
                "codevector_dim": "codevector_dim", "proj_codevector_dim": "final_dim",
                "num_negatives": "num_negatives", "contrastive_logits_temperature": "contrastive_temperature",
                "diversity_loss_weight": "diversity_weight", "feat_quantizer_dropout": "quantizer_dropout"},
            # the CTC blank is the padding token (transformers: blank=config.pad_token_id)
            "Wav2Vec2ForCTC": {
                "vocab_size": "vocab_size", "pad_token_id": "blank_id", "final_dropout": "final_dropout",
                "ctc_loss_reduction": "ctc_loss_reduction", "ctc_zero_infinity": "ctc_zero_infinity"}},
        refused_heads={"Wav2Vec2ForSequenceClassification": "Wav2Vec2Model",
                       "Wav2Vec2ForAudioFrameClassification": "Wav2Vec2Model", "Wav2Vec2ForXVector": "Wav2Vec2Model"},
        adjust=_wav2vec2_adjust,
        derived={"mask_time_prob": "mask_prob = mask_time_prob / mask_time_length (transformers' is p·M, ours the "
                                   "paper's p)"},
    ),
}


def _as_supported(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value


def _check_supported(name: str, value: Any, supported: Supported, config_class: str) -> None:
    if _as_supported(value) not in supported:
        shown = " or ".join(repr(list(s) if isinstance(s, tuple) else s) for s in supported)
        raise UnsupportedConfigError(f"{name}={value!r} in the {config_class} is not what paperzoo computes; "
                                     f"supported: {shown}")


def translate(config: dict[str, Any], mapping: ConfigMap, architecture: str, *, weights_loaded: bool,
              unknown: str = "refuse") -> tuple[dict[str, Any], dict[str, Any]]:
    """``config``'s fields (the reference's names) → ``(our constructor's arguments, the fields left over)``.

    Every field is mapped (:meth:`ConfigMap.fields_of`), checked against the values we compute, or ignored as
    bookkeeping, as having no effect, as unused or as another head's; ``weights_loaded=False`` (a new model)
    also checks what only initialisation reads (:data:`FRESH_REQUIRED`). A field no table knows is refused
    (``unknown="refuse"``) or returned among the left-over fields (``"keep"``: our own argument names, for
    ``create_model``). Two fields that set one argument to different values are refused.
    """
    fields, other_heads = mapping.fields_of(architecture), mapping.other_heads(architecture)
    arguments: dict[str, Any] = {}
    source: dict[str, str] = {}  # our argument → the field that set it
    rest: dict[str, Any] = {}
    for name, value in config.items():
        if name in fields:
            target = fields[name]
            ours, convert = (target, None) if isinstance(target, str) else target
            if value is None:
                continue
            value = convert(value) if convert else value
            if ours in arguments and arguments[ours] != value:
                raise UnsupportedConfigError(f"{source[ours]}={config[source[ours]]!r} and {name}={config[name]!r} "
                                             f"both set {ours} and disagree: give one")
            arguments[ours], source[ours] = value, name
        elif name in mapping.required or name in COMMON_REQUIRED:
            supported = mapping.required.get(name) or COMMON_REQUIRED[name]
            _check_supported(name, value, supported, mapping.config_class)
        elif not weights_loaded and name in FRESH_REQUIRED:
            _check_supported(name, value, FRESH_REQUIRED[name], mapping.config_class)
        elif (name in BOOKKEEPING or name in NO_EFFECT or name in mapping.unused or name in other_heads
              or name in mapping.derived):  # derived: read by mapping.adjust
            continue
        elif unknown == "keep":
            rest[name] = value
        else:
            raise UnsupportedConfigError(f"{name}={value!r}: a {mapping.config_class} field paperzoo does not know, "
                                         "so it cannot tell whether the model would compute what it was trained as")
    if mapping.adjust is not None:
        mapping.adjust(config, arguments)
    return arguments, rest


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
    arguments, _ = translate(config, mapping, architecture, weights_loaded=True)
    return mapping.architectures[architecture], arguments


def _mapping_of(name: str) -> tuple[ConfigMap, str] | None:
    """The configuration table and transformers class of the registered variant ``name`` (``None`` when its
    card's reference is not a transformers class we map)."""
    from paperzoo.registry import model_card, parse_reference

    library, reference_class, _ = parse_reference(model_card(name).reference)
    if library == "transformers":
        for mapping in CONFIGS.values():
            if reference_class in mapping.architectures:
                return mapping, reference_class
    return None


def our_keywords(name: str, kwargs: dict[str, Any]) -> dict[str, Any]:
    """``create_model(name, **kwargs)``'s keywords with the reference configuration's names translated to ours,
    for a variant whose card names a transformers class: ``num_hidden_layers=6`` → ``num_layers=6``, a
    ``config.json``'s contents as they are (bookkeeping ignored, values we do not compute refused by name).
    Our own argument names pass as they are; a name that is both (``hidden_size``) means the same in both."""
    found = _mapping_of(name)
    if found is None:
        return kwargs
    mapping, architecture = found
    target_of = {theirs: t if isinstance(t, str) else t[0] for theirs, t in mapping.fields_of(architecture).items()}
    ours = set(target_of.values())
    theirs = {k: v for k, v in kwargs.items() if k not in ours}
    arguments, rest = translate(theirs, mapping, architecture, weights_loaded=False, unknown="keep")
    for key in ours & kwargs.keys() & arguments.keys():
        if arguments[key] != kwargs[key]:
            field_name = next((t for t in theirs if target_of.get(t) == key), None)
            given = f"{field_name}={theirs[field_name]!r}" if field_name else f"the {mapping.config_class} fields given"
            raise UnsupportedConfigError(f"{key}={kwargs[key]!r} and {given} set the same argument and disagree: "
                                         "give one")
    return {**{k: v for k, v in kwargs.items() if k in ours}, **arguments, **rest}


def accepted_config_fields(name: str) -> str:
    """The configuration fields ``from_pretrained`` and ``create_model`` read for the registered variant
    ``name``, the reference's name beside ours, and the values it checks ("" for a variant with no transformers
    configuration)."""
    found = _mapping_of(name)
    if found is None:
        return ""
    mapping, architecture = found
    mapped = ", ".join(f"{theirs} → {ours if isinstance(ours, str) else ours[0]}"
                       for theirs, ours in mapping.fields_of(architecture).items())
    checked, fresh = (", ".join(f"{theirs} ∈ {list(values)}" for theirs, values in table.items())
                      for table in ({**mapping.required, **COMMON_REQUIRED}, FRESH_REQUIRED))
    mapped += "".join(f", {how}" for how in mapping.derived.values())
    return f"{mapping.config_class}: {mapped}\nchecked: {checked}; for a new model (create_model): {fresh}"


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
    docstring); the weights load strictly. The folder of a ``paperzoo train`` run of a classifier, segmentation
    model, detector, CTC model or generative model loads too: its model, as ``paperzoo predict`` (``transcribe``,
    ``sample``) ``--checkpoint`` builds it.

    ``overrides`` replace configuration fields before they are read (``hidden_dropout_prob=0.0``) or, under
    our own names, constructor arguments (``dropout=0.0``). ``architecture`` picks the transformers class whose
    weights to load when the folder's is a head we do not have: ``"BertModel"`` loads a
    ``BertForTokenClassification``'s encoder and leaves its head out.
    """
    from paperzoo.interop import load_weights
    from paperzoo.registry import create_model

    folder = resolve_folder(path_or_repo_id)
    config = read_config(folder)
    if "architecture" in config and "pretrained_cfg" in config:
        return _from_timm_folder(folder, config, overrides)
    if "run" in config and "model" in config:  # the folder of a `paperzoo train` run
        return _from_training_run(folder, config, overrides)
    mapping = CONFIGS.get(config.get("model_type"))
    targets = {} if mapping is None else {theirs: t if isinstance(t, str) else t[0]
                                          for fields in (mapping.fields, *mapping.head_fields.values())
                                          for theirs, t in fields.items()}
    known = () if mapping is None else (*targets, *mapping.required, *mapping.unused, *mapping.derived, *BOOKKEEPING,
                                        *NO_EFFECT)
    config_overrides = {k: v for k, v in overrides.items() if k in config or k in known}
    for name in config_overrides:  # an override replaces every saved field that sets its argument (id2label)
        for other in [k for k in config if k != name and name in targets and targets.get(k) == targets[name]]:
            del config[other]
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


def _from_training_run(folder: Path, config: dict[str, Any], overrides: dict[str, Any]) -> nn.Module:
    """A classifier, segmentation model, detector, CTC speech model or generative model that ``paperzoo train``
    left in ``folder``, as ``paperzoo predict``, ``transcribe`` or ``sample --checkpoint`` builds it; the runs of
    other tasks have their own readers, named in the error."""
    from paperzoo.training.checkpoints import load_trained

    name = config["model"]
    if overrides:
        raise TypeError(f"{folder} is a paperzoo train run of {name}: its config.json fixes the model; "
                        f"{', '.join(overrides)} cannot change it")
    if not config.get("inference"):
        raise ValueError(f"{folder} is a paperzoo train run of {name}, whose model from_pretrained does not build "
                         "(it reads the runs of classifiers, segmentation models, detectors, CTC models and "
                         "generative models); `paperzoo generate` or `paperzoo translate` read language models' and "
                         "translation models' runs")
    return load_trained(folder, name)[0]


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
    false``), ``vocab.json`` + ``merges.txt`` as GPT-2's byte-level BPE, or as GPT's BPE over words (a vocabulary
    whose word-final pieces end in ``</w>``: ``openai-community/openai-gpt``)."""
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
        vocab = json.loads((folder / "vocab.json").read_text(encoding="utf-8"))
        if any(token.endswith("</w>") for token in vocab):  # GPT's words end in </w>; GPT-2's bytes never do
            return _openai_gpt_tokenizer(folder, settings.get("unk_token", "<unk>"))
        from tokenizers.implementations import ByteLevelBPETokenizer

        return ByteLevelBPETokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"))
    raise MissingFilesError(f"no tokenizer in {folder}: expected tokenizer.json, vocab.txt, or vocab.json with "
                            "merges.txt")


def _openai_gpt_tokenizer(folder: Path, unk_token: str) -> Any:
    """GPT's tokenizer as transformers' ``OpenAIGPTTokenizer`` builds it: text normalised and split into words and
    punctuation as BERT's basic tokenizer does (lower case, accents stripped, control characters removed), then a
    BPE over each word whose last piece carries the ``</w>`` end-of-word mark, decoded by joining the words with
    spaces. The original release instead fixed the text with ftfy and split it with spaCy, which transformers
    (and so this) does not reproduce: a few punctuation and spacing cases tokenise differently from 2018's."""
    from tokenizers import Tokenizer, decoders, normalizers, pre_tokenizers
    from tokenizers.models import BPE

    vocab, merges = BPE.read_file(str(folder / "vocab.json"), str(folder / "merges.txt"))
    bpe = BPE(vocab, merges, unk_token=unk_token, continuing_subword_prefix="", end_of_word_suffix="</w>",
              fuse_unk=False)
    tokenizer = Tokenizer(bpe)
    tokenizer.normalizer = normalizers.BertNormalizer(lowercase=True)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tokenizer.decoder = decoders.BPEDecoder(suffix="</w>")
    return tokenizer
