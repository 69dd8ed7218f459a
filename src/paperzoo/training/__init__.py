"""Training: the bundled data, the loop, checkpoints and multi-process runs behind `paperzoo train`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def train(model: str, *, on_epoch: Callable[[dict[str, Any]], None] | None = None, **settings: Any) -> dict[str, Any]:
    """``paperzoo train`` in one call, as ``paperzoo.train``: ``paperzoo.train("resnet18", epochs=10,
    image_size=32)`` trains exactly as the command with those options does (the same run, the same files in
    ``out``, default ``runs/NAME``) and returns its summary, the contents of ``summary.json``.

    ``settings`` are :class:`~paperzoo.training.loop.TrainConfig`'s fields (``data`` and ``data_path`` for
    ``--data KIND PATH``, ``epochs``, ``batch_size``, ``lr``, ``image_size``, ``device``, ``amp``, ``out``,
    ``resume``, ``seed``, ``workers``, ``pretrained``, ``threads``, ``override``, ``model_kwargs``, ``shard``);
    any other keyword is one of the task's own options, as on the command line (``seq_len=64`` for a language
    model). ``on_epoch`` is called with each epoch's row of ``metrics.jsonl``.
    """
    from dataclasses import fields

    from paperzoo.training import loop
    from paperzoo.training.tasks import all_options

    known = {f.name for f in fields(loop.TrainConfig)} - {"model", "options"}
    options = {key: settings.pop(key) for key in list(settings) if key not in known}
    for key in options.keys() - set(all_options()):  # a typo (epoch=3): Python's own words for it
        raise TypeError(f"train() got an unexpected keyword argument {key!r}; its settings are "
                        f"{', '.join(sorted(known))}, and the tasks' options")
    return loop.train(loop.TrainConfig(model, **settings, options=options), on_epoch=on_epoch)
