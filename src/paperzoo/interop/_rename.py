"""Renaming state_dict keys by rules: the mechanism every converter shares."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence

import torch

Rule = tuple[str, str | Callable[[re.Match[str]], str]]


def rename(state_dict: Mapping[str, torch.Tensor], rules: Sequence[Rule]) -> dict[str, torch.Tensor]:
    """Rename every key by the first rule whose pattern matches it whole (``re.fullmatch``).

    A rule is ``(pattern, replacement)``, the replacement a template (``r"fc.\\1"``) or a function of the
    match. Keys that no rule matches are kept as they are, so the strict load reports them as unexpected.
    """
    compiled = [(re.compile(pattern), replacement) for pattern, replacement in rules]
    renamed: dict[str, torch.Tensor] = {}
    for key, value in state_dict.items():
        for pattern, replacement in compiled:
            match = pattern.fullmatch(key)
            if match:
                key = replacement(match) if callable(replacement) else match.expand(replacement)
                break
        renamed[key] = value
    return renamed
