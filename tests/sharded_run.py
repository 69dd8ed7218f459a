"""Run by ``test_train_sharded.py`` under ``torchrun --nproc_per_node 2``: one sharded training twice, once
whole (``OUT/whole``) and once stopped on every process right after its first checkpoint (as if killed then)
and resumed from that checkpoint (``OUT/cut``). Usage: ``sharded_run.py OUT CONFIG_JSON``."""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path

from paperzoo.training import sharding
from paperzoo.training.loop import TrainConfig, train


class Interrupted(Exception):
    pass


def main(out: Path, config: TrainConfig) -> None:
    train(dataclasses.replace(config, out=str(out / "whole")))
    save = sharding.save_checkpoint

    def save_then_stop(path, model, optimizers, state, is_main):  # every process stops after the same save
        save(path, model, optimizers, state, is_main)
        raise Interrupted

    sharding.save_checkpoint = save_then_stop
    try:
        train(dataclasses.replace(config, out=str(out / "cut")))
    except Interrupted:
        pass
    sharding.save_checkpoint = save
    train(dataclasses.replace(config, out=str(out / "cut"), resume=str(out / "cut" / "checkpoint")))


if __name__ == "__main__":
    main(Path(sys.argv[1]), TrainConfig(**json.loads(sys.argv[2])))
