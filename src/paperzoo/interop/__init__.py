"""Loading weights: our own files, and the state_dicts of the reference implementations, converted.

``load_weights(model, weights, source="auto")`` takes a path (a file in either format, whatever its suffix, a
sharded checkpoint's index or a model folder: :mod:`paperzoo.interop.files`, never an unrestricted pickle), a
state_dict, or a reference ``nn.Module``; converts its keys from the ``source`` library's layout to ours with
the converter that ``interop/<source>.py`` registers for the model's class (for ``source="torch"``:
``interop/torch_nn.py``, and a class it does not list keeps torch.nn's names as they are), or, with ``"auto"``,
with whichever of them fits; and loads the result strictly. A mismatch raises a :class:`WeightsMismatchError`
that lists the missing keys, the unexpected keys and the shape conflicts, and says what would fit
(:mod:`paperzoo.interop.hints`). The way back is :mod:`paperzoo.interop.export`; Hugging Face folders with their
configuration are :mod:`paperzoo.interop.huggingface`.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from paperzoo.interop.files import read_state_dict
    from paperzoo.interop.loading import (
        PREFIXES,
        SOURCES,
        LoadResult,
        WeightsMismatchError,
        check_state_dict,
        convert_state_dict,
        load_weights,
    )

# Loading needs torch; the configuration tables that `paperzoo info` reads (huggingface.CONFIGS) do not. So the
# loading functions come from interop/loading.py on first use, and importing a submodule of this package runs no
# torch import of its own.
_LOADING = "paperzoo.interop.loading"


def __getattr__(name: str) -> Any:
    module = importlib.import_module(_LOADING)
    if name.startswith("__") or not hasattr(module, name):
        raise AttributeError(f"module 'paperzoo.interop' has no attribute {name!r}")
    return getattr(module, name)


__all__ = ["PREFIXES", "SOURCES", "LoadResult", "WeightsMismatchError", "check_state_dict", "convert_state_dict",
           "load_weights", "read_state_dict"]
