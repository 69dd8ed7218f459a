"""What a backbone built with ``features_only=True`` returns, described for the heads built on it."""

from __future__ import annotations

from typing import NamedTuple


class FeatureInfo(NamedTuple):
    """One feature map of a backbone: its channel count, its stride relative to the input, and the module
    (dotted name) whose output it is. ``model.feature_info`` is a list of these, one per returned map."""

    channels: int
    stride: int
    module: str
