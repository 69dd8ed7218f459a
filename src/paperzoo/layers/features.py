"""What a classifier's feature levels are, described for ``forward_intermediates``, ``features_only`` backbones and
the heads built on them.

:class:`FeatureInfo` answers as timm's object of the same name does (``channels()``, ``reduction()``,
``module_name()``, indexing, ``len``), so code written for a timm backbone reads ours unchanged; each level is a
dict with timm's keys (``num_chs``, ``reduction``, ``module``) that also reads as attributes under the names the
detection and segmentation heads use (``level.channels``, ``level.stride``, ``level.module``).
"""

from __future__ import annotations

from collections.abc import Container, Iterable, Iterator, Sequence
from typing import Any, overload

import torch
from torch import nn


class FeatureLevel(dict):
    """One feature map: ``num_chs`` channels at ``reduction`` (the stride relative to the input), the output of the
    module ``module`` (a dotted name in the model)."""

    def __init__(self, channels: int, stride: int, module: str) -> None:
        super().__init__(num_chs=int(channels), reduction=int(stride), module=module)

    @property
    def channels(self) -> int:
        return self["num_chs"]

    @property
    def stride(self) -> int:
        return self["reduction"]

    @property
    def module(self) -> str:
        return self["module"]

    def __eq__(self, other: object) -> bool:
        if isinstance(other, tuple):  # (channels, stride, module), as the levels were written before issue 21
            return (self.channels, self.stride, self.module) == other
        return dict.__eq__(self, other)

    __hash__ = None  # a dict: mutable, unhashable


class FeatureInfo(Sequence):
    """The feature levels of a network, shallow to deep, as timm's ``FeatureInfo``: ``channels()``,
    ``reduction()`` and ``module_name()`` list every level (or give one with ``idx``), ``len()`` counts them and
    ``info[i]`` is the :class:`FeatureLevel` ``i``. Built from levels or ``(channels, stride, module)`` tuples."""

    def __init__(self, levels: Iterable[FeatureLevel | tuple[int, int, str] | dict[str, Any]] = ()) -> None:
        self.info: list[FeatureLevel] = []
        for level in levels:
            if isinstance(level, dict):
                level = FeatureLevel(level["num_chs"], level["reduction"], level["module"])
            elif not isinstance(level, FeatureLevel):
                level = FeatureLevel(*level)
            self.info.append(level)
        self.out_indices = tuple(range(len(self.info)))

    def select(self, indices: Iterable[int]) -> FeatureInfo:
        """The levels at ``indices`` (a ``features_only`` backbone describes only the maps it returns)."""
        return FeatureInfo(self.info[i] for i in indices)

    def get(self, key: str, idx: int | Sequence[int] | None = None) -> Any:
        if idx is None:
            return [level[key] for level in self.info]
        if isinstance(idx, int):
            return self.info[idx][key]
        return [self.info[i][key] for i in idx]

    def channels(self, idx: int | Sequence[int] | None = None) -> Any:
        return self.get("num_chs", idx)

    def reduction(self, idx: int | Sequence[int] | None = None) -> Any:
        return self.get("reduction", idx)

    def module_name(self, idx: int | Sequence[int] | None = None) -> Any:
        return self.get("module", idx)

    def get_dicts(self, keys: Sequence[str] | None = None, idx: Sequence[int] | None = None) -> list[dict]:
        levels = self.info if idx is None else [self.info[i] for i in idx]
        return [dict(level) if keys is None else {k: level[k] for k in keys} for level in levels]

    @overload
    def __getitem__(self, index: int) -> FeatureLevel: ...
    @overload
    def __getitem__(self, index: slice) -> list[FeatureLevel]: ...
    def __getitem__(self, index: int | slice) -> FeatureLevel | list[FeatureLevel]:
        return self.info[index]

    def __len__(self) -> int:
        return len(self.info)

    def __iter__(self) -> Iterator[FeatureLevel]:
        return iter(self.info)

    def __eq__(self, other: object) -> bool:
        return list(self) == list(other) if isinstance(other, (FeatureInfo, list, tuple)) else NotImplemented

    def __repr__(self) -> str:
        return f"FeatureInfo({self.info!r})"


def stage_outputs(x: torch.Tensor, stages: Iterable[nn.Module], keep: Container[int]) -> list[torch.Tensor]:
    """Pass ``x`` through ``stages`` in order and return the outputs of the stages whose index is in ``keep``."""
    outputs = []
    for index, stage in enumerate(stages):
        x = stage(x)
        if index in keep:
            outputs.append(x)
    return outputs
