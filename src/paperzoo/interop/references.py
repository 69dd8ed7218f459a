"""The reference implementations named on the model cards: reading a card's ``reference`` string and building
that reference, randomly initialised.

The parity tests and the benchmark (``paperzoo.benchmark``) build exactly what the card says, so both live here.
"""

from __future__ import annotations

import ast
import importlib.util

from torch import nn

# The library a card's reference names → the ``source`` that ``load_weights`` converts its state_dict from.
WEIGHT_SOURCES = {"torchvision": "torchvision", "timm": "timm", "torch.nn": "torch", "transformers": "transformers"}


def parse_reference(reference: str) -> tuple[str, str, dict]:
    """Split a card's ``reference`` into (library, constructor name, keyword arguments).

    ``torchvision.models.googlenet(aux_logits=False)`` → ("torchvision", "googlenet", {"aux_logits": False});
    ``timm:seresnet50`` → ("timm", "seresnet50", {}); ``torch.nn.LSTM(input_size=8, hidden_size=16)`` →
    ("torch.nn", "LSTM", {"input_size": 8, "hidden_size": 16}); ``transformers:BertModel(hidden_size=1024)`` →
    ("transformers", "BertModel", {"hidden_size": 1024}). The keyword values are Python literals. A torchvision
    submodule (``torchvision.models.segmentation.fcn_resnet50``) is dropped: ``get_model`` knows every builder by
    its name alone. ``paper`` (no implementation) gives ("paper", "", {}).
    """
    if reference.startswith("torchvision.models."):
        library, call = "torchvision", reference.removeprefix("torchvision.models.")
    elif reference.startswith("torch.nn."):
        library, call = "torch.nn", reference.removeprefix("torch.nn.")
    elif ":" in reference:
        library, call = reference.split(":", 1)
    else:
        return reference, "", {}
    parsed = ast.parse(call if "(" in call else call + "()", mode="eval").body
    if not (isinstance(parsed, ast.Call) and isinstance(parsed.func, (ast.Name, ast.Attribute))):
        raise ValueError(f"unreadable reference {reference!r}")
    name = parsed.func.id if isinstance(parsed.func, ast.Name) else parsed.func.attr
    return library, name, {kw.arg: ast.literal_eval(kw.value) for kw in parsed.keywords}


def reference_unavailable(reference: str) -> str | None:
    """Why ``reference`` cannot be built here (``None`` if it can): the card names the paper only, a library
    this module does not know, or a library that is not installed."""
    library = parse_reference(reference)[0]
    if library == "paper":
        return "no reference implementation: the card's reference is the paper"
    if library not in WEIGHT_SOURCES:
        return f"no builder for references from {library!r}"
    module = "torch" if library == "torch.nn" else library
    if importlib.util.find_spec(module) is None:
        return f"the reference library {module} is not installed (pip install {module})"
    return None


def build_reference(reference: str) -> nn.Module:
    """A randomly initialised reference model for a card's ``reference``: torchvision's ``get_model``, timm's
    ``create_model`` (no pretrained weights), a torch.nn class, or a transformers class built from its config
    class (``transformers:BertModel(hidden_size=1024)`` → ``BertModel(BertConfig(hidden_size=1024))``)."""
    library, name, kwargs = parse_reference(reference)
    if library == "torchvision":
        import torchvision

        return torchvision.models.get_model(name, **{"weights": None, **kwargs})  # no download, whatever the card says
    if library == "timm":
        import timm

        return timm.create_model(name, pretrained=False, **kwargs)
    if library == "torch.nn":
        return getattr(nn, name)(**kwargs)
    if library == "transformers":
        import transformers

        model_class = getattr(transformers, name)
        return model_class(model_class.config_class(**kwargs))
    raise ValueError(f"no reference builder for {reference!r}")
