"""The reference implementations named on the model cards: reading a card's ``reference`` string and building
that reference, randomly initialised.

The parity tests and the benchmark (``paperzoo.benchmark``) build exactly what the card says, so both live here.
"""

from __future__ import annotations

import contextlib
import importlib.util
from collections.abc import Iterator

from torch import nn

from paperzoo.registry import parse_reference  # noqa: F401 (the card's reference string; imported from here too)

# The library a card's reference names → the ``source`` that ``load_weights`` converts its state_dict from.
WEIGHT_SOURCES = {"torchvision": "torchvision", "timm": "timm", "torch.nn": "torch", "transformers": "transformers"}


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


@contextlib.contextmanager
def tensors_on_meta() -> Iterator[None]:
    """Modules built inside hold their parameters and buffers on the meta device: shapes, no data, and their
    initialisation costs nothing.

    ``torch.device("meta")`` does the same for constructors that only create tensors, but a constructor that
    computes with a tensor (torchvision's RegNet reads its stage widths with ``.tolist()``) fails under it; here
    only what a module registers moves to the meta device, so the constructor's own arithmetic still runs. A
    parameter registered again (a tied weight, ``lm_head.weight = embedding.weight``) is already on the meta device
    and stays the same parameter.
    """
    register_parameter, register_buffer = nn.Module.register_parameter, nn.Module.register_buffer

    def parameter_on_meta(module: nn.Module, name: str, parameter: nn.Parameter | None) -> None:
        register_parameter(module, name, parameter)
        if parameter is not None and not parameter.is_meta:
            module._parameters[name] = nn.Parameter(parameter.to("meta"), parameter.requires_grad)

    def buffer_on_meta(module: nn.Module, name: str, tensor, persistent: bool = True) -> None:
        register_buffer(module, name, tensor if tensor is None else tensor.to("meta"), persistent)

    nn.Module.register_parameter, nn.Module.register_buffer = parameter_on_meta, buffer_on_meta
    try:
        yield
    finally:
        nn.Module.register_parameter, nn.Module.register_buffer = register_parameter, register_buffer
