"""The one check every task's tests make of ``paperzoo train``'s resume: a run stopped after an epoch (its
checkpoint on disk, as if the process were killed at that moment) and resumed ends as a run that never stopped."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest

from paperzoo.training import checkpoints
from paperzoo.training.loop import TrainConfig, train


class Interrupted(Exception):
    pass


def whole_and_resumed(config: TrainConfig, tmp_path: Path,
                      stop_after: int = 1) -> tuple[dict[str, Any], dict[str, Any]]:
    """Train ``config`` once without a stop (into ``tmp_path/whole``), once stopped after epoch ``stop_after`` and
    resumed from its checkpoint (``tmp_path/cut``); returns the two summaries."""
    whole = train(dataclasses.replace(config, out=str(tmp_path / "whole")))

    def interrupt(row: dict[str, Any]) -> None:
        if row["epoch"] == stop_after:
            raise Interrupted

    with pytest.raises(Interrupted):
        train(dataclasses.replace(config, out=str(tmp_path / "cut")), on_epoch=interrupt)
    checkpoint = tmp_path / "cut" / "checkpoint.pt"
    assert checkpoints.load_checkpoint(checkpoint, config.model)["epoch"] == stop_after
    resumed = train(dataclasses.replace(config, out=str(tmp_path / "cut"), resume=str(checkpoint)))
    return whole, resumed
