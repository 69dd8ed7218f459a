"""What to do when weights do not fit: the mismatch, and the source, variant or constructor arguments that fit.

The arguments are read from the weights' shapes (layers counted from the numbered keys, widths and vocabularies
from the embeddings, classes from the classifier); only what the shapes determine is read: the number of
attention heads, for one, is not in any tensor's shape.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from paperzoo.interop import Fit, best_fit, candidate_sources

StateDict = dict[str, torch.Tensor]


def _rows(state_dict: StateDict, key: str, dim: int = 0) -> int | None:
    return int(state_dict[key].shape[dim]) if key in state_dict else None


def _count(state_dict: StateDict, pattern: str) -> int:
    return len({m[1] for k in state_dict if (m := re.match(pattern, k))})


def _bert(sd: StateDict, p: str = "") -> dict[str, Any]:
    return dict(vocab_size=_rows(sd, f"{p}embeddings.token_embedding.weight"),
                hidden_size=_rows(sd, f"{p}embeddings.token_embedding.weight", 1),
                num_layers=_count(sd, rf"{re.escape(p)}layers\.(\d+)\."),
                intermediate_size=_rows(sd, f"{p}layers.0.feed_forward.fc1.weight"),
                max_positions=_rows(sd, f"{p}embeddings.position_embedding.weight"),
                type_vocab_size=_rows(sd, f"{p}embeddings.segment_embedding.weight"))


def _gpt(sd: StateDict) -> dict[str, Any]:
    return dict(vocab_size=_rows(sd, "token_embedding.weight"), hidden_size=_rows(sd, "token_embedding.weight", 1),
                num_layers=_count(sd, r"blocks\.(\d+)\."),
                intermediate_size=_rows(sd, "blocks.0.feed_forward.fc1.weight"),
                max_positions=_rows(sd, "position_embedding.weight"), pre_norm="final_norm.weight" in sd)


def _wav2vec2(sd: StateDict, p: str = "") -> dict[str, Any]:
    return dict(hidden_size=_rows(sd, f"{p}feature_projection.projection.weight"),
                num_layers=_count(sd, rf"{re.escape(p)}context_network\.layers\.(\d+)\."),
                ffn_dim=_rows(sd, f"{p}context_network.layers.0.feed_forward.fc1.weight"),
                feature_channels=_rows(sd, f"{p}feature_encoder.blocks.0.conv.weight"),
                conv_bias=f"{p}feature_encoder.blocks.0.conv.bias" in sd,
                feature_encoder_norm="layer" if f"{p}feature_encoder.blocks.1.norm.weight" in sd else "group",
                layer_norm_first=f"{p}context_network.output_norm.weight" in sd)


# Our class → the constructor arguments its state_dict's shapes determine.
SHAPE_READERS: dict[str, Callable[[StateDict], dict[str, Any]]] = {
    "BERT": _bert,
    "BERTPreTraining": lambda sd: _bert(sd, "bert."),
    "BERTMaskedLM": lambda sd: _bert(sd, "bert."),
    "BERTSequenceClassification": lambda sd: {**_bert(sd, "bert."), "num_classes": _rows(sd, "classifier.weight")},
    "GPT": _gpt,
    "Wav2Vec2": _wav2vec2,
    "Wav2Vec2PreTraining": lambda sd: _wav2vec2(sd, "wav2vec2."),
    "Wav2Vec2CTC": lambda sd: {**_wav2vec2(sd, "wav2vec2."), "vocab_size": _rows(sd, "ctc_head.weight")},
}


def arguments_from_shapes(model: nn.Module, found: Fit) -> dict[str, Any]:
    """The constructor arguments in which ``found`` (weights in our names) differs from ``model``."""
    reader = SHAPE_READERS.get(type(model).__name__)
    if reader is not None:
        theirs, ours = reader(found.state_dict), reader(model.state_dict())
        return {k: v for k, v in theirs.items() if v not in (None, 0) and v != ours[k]}  # 0: no such keys read
    num_classes = getattr(model, "num_classes", None)
    own = model.state_dict()
    classes = {int(found.state_dict[k].shape[0]) for k in own if k in found.state_dict
               and found.state_dict[k].shape != own[k].shape and own[k].shape[:1] == (num_classes,)
               and found.state_dict[k].shape[1:] == own[k].shape[1:]}
    return {"num_classes": classes.pop()} if isinstance(num_classes, int) and len(classes) == 1 else {}


def _siblings(name: str) -> list[str]:
    """Registered variants built in the same file as ``name`` (the same architecture), ``name`` first."""
    from paperzoo.registry import list_models, model_builder

    module = model_builder(name).__module__
    return [name] + [n for n in list_models() if n != name and model_builder(n).__module__ == module]


def fitting_variants(model: nn.Module, state_dict: StateDict, arguments: dict[str, Any], limit: int = 12) -> list[str]:
    """``create_model(...)`` calls (as text) that build a model these weights fit, tried on the meta device."""
    from paperzoo.registry import create_model

    name = getattr(model, "model_name", None)
    try:
        names = _siblings(name)[:limit] if name else []
    except KeyError:
        return []
    fits = []
    for kwargs in ({}, arguments) if arguments else ({},):
        for variant in names:
            if (variant, kwargs) == (name, {}):
                continue  # the model itself: known not to fit
            try:
                with torch.device("meta"):
                    candidate = create_model(variant, **kwargs)
                if best_fit(candidate, state_dict, candidate_sources(candidate)).perfect:
                    shown = "".join(f", {k}={v!r}" for k, v in kwargs.items())
                    fits.append(f"paperzoo.create_model({variant!r}{shown})")
            except Exception:  # noqa: BLE001 - a variant that cannot take these arguments is simply not a fit
                continue
        if fits:
            return fits
    return fits


def mismatch_lines(found: Fit, limit: int = 20) -> list[str]:
    lines = []
    for title, items in (("missing keys", found.missing), ("unexpected keys", found.unexpected),
                         ("shape conflicts", found.conflicts)):
        if items:
            more = f" … and {len(items) - limit} more" if len(items) > limit else ""
            lines.append(f"{len(items)} {title}: {', '.join(items[:limit])}{more}")
    return lines


def mismatch_message(model: nn.Module, state_dict: StateDict, found: Fit, explicit_source: bool) -> str:
    """The error for weights that do not fit: what differs, read in the best layout, and what would fit."""
    name = getattr(model, "model_name", "")
    reading = f"read in {found.source}'s layout"
    if found.prefix:
        added = found.prefix.startswith("+")
        reading += f" with the prefix {found.prefix.lstrip('+')!r} {'added' if added else 'removed'}"
    lines = [f"the weights do not fit {type(model).__name__}" + (f" ({name})" if name else "") + f", {reading}",
             *mismatch_lines(found)]
    if explicit_source:
        auto = best_fit(model, state_dict, candidate_sources(model))
        if auto.source != found.source and auto.matched > found.matched:
            lines.append(f"hint: these weights are in {auto.source}'s layout: load them with source={auto.source!r} "
                         "(or the default source='auto')")
            if auto.perfect:
                return "\n  ".join(lines)
            found = auto
    arguments = arguments_from_shapes(model, found)
    variants = fitting_variants(model, state_dict, arguments)
    if variants:
        lines.append("hint: these weights fit " + " or ".join(variants))
    elif arguments:
        shown = ", ".join(f"{k}={v!r}" for k, v in arguments.items())
        lines.append(f"hint: the weights' shapes say {shown}; build the model with those arguments")
    if found.missing and not found.unexpected and not found.conflicts and found.matched:
        lines.append(f"hint: strict=False loads the {found.matched} matching tensors and returns the missing keys "
                     "(they keep their initialisation)")
    return "\n  ".join(lines)
