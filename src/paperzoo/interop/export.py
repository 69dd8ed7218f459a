"""Back to the reference libraries: ``export_weights`` and ``save_pretrained``.

Each converter in ``interop/<library>.py`` is written once, in the direction reference → ours, as renaming
rules plus a few tensor changes (packing query, key and value; transposing Conv1D weights; reshaping codebooks).
Its inverse is not written a second time: it is *measured*. The reference model is built on the meta device
(its names and shapes, no memory), every one of its tensors is filled with the positions of its elements in
one numbering of all of them, and that state_dict is converted. Each of our tensors then holds, element by
element, the reference position it came from, whatever renaming, concatenation, transposition or reshaping the
converter did; the export puts our values back at those positions. It is exact (values are copied, never
computed), and a converter that changes gains its inverse with it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from paperzoo.interop import convert_state_dict
from paperzoo.interop.hints import _bert, _gpt, _wav2vec2
from paperzoo.interop.references import tensors_on_meta

StateDict = dict[str, torch.Tensor]
LIBRARIES = ("torchvision", "timm", "transformers", "torch")


# --- our model → its transformers configuration (the inverse of huggingface.constructor_arguments) ---------

def _arguments_of(model: nn.Module) -> tuple[str, str, dict[str, Any]]:
    """``(model_type, transformers class, our constructor's arguments)`` read from a built model."""
    kind = type(model).__name__
    state = model.state_dict()
    bert_classes = {"BERT": "BertModel", "BERTPreTraining": "BertForPreTraining", "BERTMaskedLM": "BertForMaskedLM",
                    "BERTSequenceClassification": "BertForSequenceClassification"}
    if kind in bert_classes:
        bert = model if kind == "BERT" else model.bert
        arguments = _bert(bert.state_dict())
        arguments.update(num_heads=bert.layers[0].attention.num_heads, layer_norm_eps=bert.embeddings.norm.eps,
                         dropout=bert.embeddings.dropout.p,
                         attention_dropout=bert.layers[0].attention.attention_dropout,
                         pad_token_id=bert.embeddings.token_embedding.padding_idx)
        if kind == "BERTSequenceClassification":
            arguments.update(num_classes=model.num_classes, classifier_dropout=model.dropout.p,
                             problem_type=model.problem_type)
        return "bert", bert_classes[kind], arguments
    if kind == "GPT":
        arguments = _gpt(state)
        pre_norm = arguments.pop("pre_norm")
        block = model.blocks[0]
        arguments.update(num_heads=block.attention.num_heads, layer_norm_eps=block.attention_norm.eps,
                         dropout=model.embedding_dropout.p, attention_dropout=block.attention.attention_dropout)
        if not pre_norm and arguments["intermediate_size"] != 4 * arguments["hidden_size"]:
            raise ValueError("OpenAIGPTConfig has no feed-forward width field (it is 4 × n_embd); this GPT's is "
                             f"{arguments['intermediate_size']}")
        if not pre_norm:
            del arguments["intermediate_size"]
        return ("gpt2", "GPT2LMHeadModel", arguments) if pre_norm else ("openai-gpt", "OpenAIGPTLMHeadModel", arguments)
    if kind in ("Wav2Vec2", "Wav2Vec2PreTraining", "Wav2Vec2CTC"):
        encoder = model if kind == "Wav2Vec2" else model.wav2vec2
        arguments = _wav2vec2(encoder.state_dict())
        layer, context = encoder.context_network.layers[0], encoder.context_network
        arguments.update(num_heads=layer.attention.num_heads,
                         position_kernel_size=context.position_embedding.kernel_size,
                         position_groups=context.position_embedding.groups, dropout=context.dropout.p,
                         attention_dropout=layer.attention.attention_dropout,
                         activation_dropout=layer.feed_forward.activation_dropout.p,
                         feature_dropout=encoder.feature_projection.dropout.p, layerdrop=context.layerdrop,
                         mask_prob=encoder.mask_prob, mask_span_length=encoder.mask_span_length,
                         mask_min_spans=encoder.mask_min_spans)
        if kind == "Wav2Vec2":
            return "wav2vec2", "Wav2Vec2Model", arguments
        if kind == "Wav2Vec2CTC":
            arguments.update(vocab_size=model.vocab_size, blank_id=model.blank_id, final_dropout=model.final_dropout.p,
                             ctc_loss_reduction=model.ctc_loss_reduction, ctc_zero_infinity=model.ctc_zero_infinity)
            return "wav2vec2", "Wav2Vec2ForCTC", arguments
        quantizer = model.quantizer
        arguments.update(num_codebooks=quantizer.num_groups, codebook_size=quantizer.num_entries,
                         codevector_dim=quantizer.num_groups * quantizer.codebooks.shape[-1],
                         final_dim=model.project_context.out_features, num_negatives=model.num_negatives,
                         contrastive_temperature=model.contrastive_temperature,
                         diversity_weight=model.diversity_weight, quantizer_dropout=model.quantizer_dropout.p)
        return "wav2vec2", "Wav2Vec2ForPreTraining", arguments
    raise ValueError(f"no transformers configuration for {kind}; transformers models: {', '.join(bert_classes)}, "
                     "GPT, Wav2Vec2, Wav2Vec2PreTraining, Wav2Vec2CTC")


def transformers_config(model: nn.Module) -> dict[str, Any]:
    """The ``config.json`` contents of the transformers model that ``model`` is: every field
    :data:`~paperzoo.interop.huggingface.CONFIGS` maps, read back from the model, and the required values."""
    from paperzoo.interop.huggingface import CONFIGS

    model_type, architecture, arguments = _arguments_of(model)
    mapping = CONFIGS[model_type]
    config: dict[str, Any] = {"model_type": model_type, "architectures": [architecture]}
    written = set()
    for theirs, ours in mapping.fields_of(architecture).items():
        ours = ours if isinstance(ours, str) else ours[0]
        if arguments.get(ours) is not None and ours not in written and theirs != "id2label":  # num_labels makes it
            config[theirs] = [arguments[ours]] * 7 if theirs == "conv_dim" else arguments[ours]  # one width
            written.add(ours)
    for theirs, supported in mapping.required.items():
        config[theirs] = list(supported[0]) if isinstance(supported[0], tuple) else supported[0]
    if model_type in ("gpt2", "openai-gpt"):
        config["embd_pdrop"] = config["resid_pdrop"]  # our one dropout
    if model_type == "wav2vec2":  # transformers' mask_time_prob is p·M (huggingface._wav2vec2_adjust)
        config["mask_time_prob"] = arguments["mask_prob"] * arguments["mask_span_length"]
    return config


# --- the reference, built on the meta device --------------------------------------------------------------

def reference_for(model: nn.Module, library: str) -> nn.Module:
    """The reference model ``model`` exports to in ``library``, built on the meta device: transformers' from
    :func:`transformers_config`; torchvision's, timm's or torch.nn's as the model's card names it (the
    registered name for timm when the card names torchvision), with the model's ``num_classes``."""
    try:
        with torch.device("meta"):
            return _build_reference(model, library)
    except (NotImplementedError, RuntimeError):  # a constructor that computes with values (torchvision's RegNet)
        with tensors_on_meta():  # it computes on the CPU; what it registers moves to the meta device
            return _build_reference(model, library)


def _build_reference(model: nn.Module, library: str) -> nn.Module:
    """:func:`reference_for` on the current device."""
    from paperzoo.interop.references import parse_reference
    from paperzoo.registry import model_card

    if library == "transformers":
        import transformers

        config = transformers_config(model)
        model_class = getattr(transformers, config["architectures"][0])
        fields = {k: v for k, v in config.items() if k not in ("model_type", "architectures")}
        return model_class(model_class.config_class(**fields))
    name = getattr(model, "model_name", None)
    try:
        card_library, constructor, kwargs = parse_reference(model_card(name).reference)
    except (KeyError, TypeError):
        raise ValueError(f"{type(model).__name__} was not built by create_model: its {library} reference "
                         "is unknown") from None
    if card_library != {"torch": "torch.nn"}.get(library, library):
        if library != "timm":
            raise ValueError(f"{name}'s reference is {model_card(name).reference}, not a {library} model")
        constructor, kwargs = name, {}  # timm knows most of torchvision's classifiers by our names
    if isinstance(getattr(model, "num_classes", None), int):
        kwargs["num_classes"] = model.num_classes
    if library == "torchvision":
        import torchvision

        return torchvision.models.get_model(constructor, **{"weights": None, **kwargs})
    if library == "timm":
        import timm

        if not timm.is_model(constructor):  # timm's own RuntimeError, "Unknown model (unet)", said less
            reference = model_card(name).reference
            where = ("the paper alone: no library has it, and model.state_dict() is its layout" if reference == "paper"
                     else f"{reference}: export_weights(model, {card_library!r}) writes that layout")
            raise ValueError(f"{name} has no timm counterpart; its reference is {where}")
        return timm.create_model(constructor, pretrained=False, **kwargs)
    return getattr(nn, constructor)(**kwargs)


def export_positions(model: nn.Module, library: str) -> tuple[StateDict, StateDict, int, dict[str, torch.dtype]]:
    """The measured inverse (module docstring): ``(probe, positions, total, dtypes)``, where ``probe`` is the
    reference's state_dict with each tensor holding its elements' positions (tied tensors share them),
    ``positions`` is that converted to our layout, ``total`` the number of positions and ``dtypes`` the
    reference's. Reads only ``model``'s structure, so
    a model on the meta device will do."""
    if library not in LIBRARIES:
        raise ValueError(f"unknown library {library!r}; expected one of {', '.join(LIBRARIES)}")
    template = reference_for(model, library).state_dict(keep_vars=True)
    index_type = torch.int32 if sum(t.numel() for t in template.values()) < 2**31 else torch.int64
    probe: dict[str, torch.Tensor] = {}
    first_key: dict[int, str] = {}
    total = 0
    for key, tensor in template.items():
        if id(tensor) in first_key:  # a tied tensor (GPT's lm_head is its token embedding): the same positions
            probe[key] = probe[first_key[id(tensor)]]
            continue
        first_key[id(tensor)] = key
        probe[key] = torch.arange(total, total + tensor.numel(), dtype=index_type).view(tensor.shape)
        total += tensor.numel()
    positions = convert_state_dict(model, probe, library)
    own = {k: v.shape for k, v in model.state_dict().items()}
    wrong = sorted(positions.keys() ^ own.keys()) + [k for k in own if k in positions and positions[k].shape != own[k]]
    if wrong:
        raise ValueError(f"the {library} reference built for this {type(model).__name__} does not have its "
                         f"layout ({len(wrong)} keys differ: {', '.join(wrong[:8])}); was it built with arguments "
                         "its reference does not take?")
    return probe, positions, total, {k: t.dtype for k, t in template.items()}


def export_weights(model: nn.Module, library: str) -> StateDict:
    """``model``'s state_dict in ``library``'s layout (``"torchvision"``, ``"timm"``, ``"transformers"`` or
    ``"torch"``): the inverse of ``load_weights(..., source=library)``, measured (module docstring). The
    reference library must be installed: the layout is read from its model. Takes about the model's size in
    memory once more while it runs."""
    probe, positions, total, dtypes = export_positions(model, library)
    own = model.state_dict()
    by_position = torch.empty(total, dtype=torch.float64)  # float64 holds fp32, fp16, bf16 and counters exactly
    covered = torch.zeros(total, dtype=torch.bool)
    for key, where in positions.items():
        by_position[where.flatten().long()] = own[key].detach().flatten().to(torch.float64)
        covered[where.flatten().long()] = True
    dtype = next((t.dtype for t in own.values() if t.is_floating_point()), torch.float32)
    exported: StateDict = {}
    for key, where in probe.items():
        index = where.flatten().long()
        if not bool(covered[index].all()):
            continue  # a buffer the converter drops (nothing of ours becomes it): the reference makes its own
        kind = dtype if dtypes[key].is_floating_point else dtypes[key]  # counters stay integers
        exported[key] = by_position[index].view(where.shape).to(kind)
    return exported


# --- folders ----------------------------------------------------------------------------------------------

def save_pretrained(model: nn.Module, folder: str | Path) -> Path:
    """Write ``model`` as a Hugging Face model folder, ``config.json`` and ``model.safetensors``: one that
    ``transformers.AutoModel.from_pretrained`` reads (BERT, GPT, GPT-2, wav2vec 2.0), or, for a model with a
    timm reference or a timm converter, one that ``timm.create_model(name, pretrained=True,
    pretrained_cfg_overlay=dict(file=folder / "model.safetensors"))`` reads. ``paperzoo.from_pretrained``
    reads both."""
    from safetensors.torch import save_file

    from paperzoo.interop.transformers import CONVERTERS as TRANSFORMERS

    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise ValueError(f"save_pretrained writes a folder, and {folder} is a file; name a folder")
    if type(model).__name__ in TRANSFORMERS:
        config, weights = transformers_config(model), export_weights(model, "transformers")
    else:
        weights = export_weights(model, "timm")
        name = model.model_name
        from paperzoo.interop.references import parse_reference
        from paperzoo.registry import model_card

        library, constructor, _ = parse_reference(model_card(name).reference)
        architecture = constructor if library == "timm" else name
        classes = getattr(model, "num_classes", None)
        config = {"architecture": architecture, "num_classes": classes, "pretrained_cfg": {"num_classes": classes}}
        config = {k: v for k, v in config.items() if v is not None}
    # Everything is converted before the folder is made, and each file is written under a temporary name, then
    # renamed: a model that cannot be written, or a write that fails, leaves no file behind (nor the folder, if this
    # call made it), and a folder written before keeps its files.
    made = not folder.exists()
    folder.mkdir(parents=True, exist_ok=True)
    written = {name: folder / f".{name}.partial" for name in ("config.json", "model.safetensors")}
    try:
        written["config.json"].write_text(json.dumps(config, indent=2) + "\n")
        save_file({k: v.contiguous() for k, v in weights.items()}, str(written["model.safetensors"]),
                  metadata={"format": "pt"})
    except BaseException:
        for partial in written.values():
            partial.unlink(missing_ok=True)
        if made:
            folder.rmdir()
        raise
    for final, partial in written.items():
        partial.replace(folder / final)
    return folder
