"""``--model-kwargs``: arguments for the model's constructor, as timm's ``train.py`` takes them, so that a
narrow variant of a paper's network (a U-Net of 16 base channels, a DCGAN of 64 projected maps) trains on a
CPU in minutes with the same command as the full one."""

from __future__ import annotations

import ast
import re
from typing import Any


def key_values(text: str | dict[str, Any]) -> dict[str, Any]:
    """``"base_width=8 depth=3"`` → ``{"base_width": 8, "depth": 3}``: values are Python literals, as timm's
    ``--model-kwargs``; a dict passes through (the Python API)."""
    if isinstance(text, dict):
        return dict(text)
    pairs = [part for part in re.split(r"\s+(?=[A-Za-z_]\w*=)", str(text).strip()) if part]
    kwargs = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.isidentifier():
            raise ValueError(pair)
        try:
            kwargs[key] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            kwargs[key] = value  # a bare word: a string such as backbone=resnet18
    return kwargs


key_values.__name__ = "list of key=value pairs (e.g. 'base_width=8 depth=3')"
