"""The loop behind ``paperzoo train``, the same for every task.

One run: check everything that can be checked before anything is written (the model exists, a task trains it,
the options and the data are valid, the output folder is writable, a resumed checkpoint belongs to this very
run); build the model for the data; take the optimizer and schedule from the card's paper recipe (AdamW with
cosine decay where the card has none); then, per epoch, train on a shuffled order fixed by ``(seed, epoch)``,
evaluate, and write a checkpoint, the metrics log (JSONL) and a plot into the output folder. What differs
between tasks (data, objective, metrics, pictures) is a :class:`~paperzoo.training.tasks.Task`.

Resuming is exact: the data order depends only on ``(seed, epoch)`` and the checkpoint restores the model,
the optimizers, the schedules and the random generators, so a run interrupted after epoch k and resumed (at the
same thread count, torch version and device) ends with the same weights as one that never stopped.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader

from paperzoo.measure import torch_threads
from paperzoo.registry import DEFAULT_RECIPE, create_model, model_card
from paperzoo.training import checkpoints, distributed, sharding
from paperzoo.training.model_options import key_values
from paperzoo.training.recipes import make_optimizer, make_schedule, precise_batchnorm  # noqa: F401  (public)
from paperzoo.training.tasks import Task, autocast, task_for  # noqa: F401  (autocast: public here too)
from paperzoo.training.tasks.classification import Objective  # noqa: F401  (the classifiers' objective, public)


@dataclass
class TrainConfig:
    """Everything ``paperzoo train`` takes. ``None`` means "from the card": its recipe's batch size and
    learning rate, its input size. ``batch_size`` is the global batch: under torchrun each of the N processes
    takes ``batch_size / N`` examples a step, so the same command trains the same run on any number of
    processes."""

    model: str
    data: str | None = None  # the task's embedded default, or a kind that reads data_path (e.g. "folder")
    data_path: str | None = None
    epochs: int = 10
    batch_size: int | None = None
    lr: float | None = None
    image_size: int | None = None
    device: str = "cpu"
    amp: bool = False
    out: str | None = None
    resume: str | None = None
    seed: int = 0
    workers: int = 0
    pretrained: bool | str = False  # fine-tune from published weights: True (the default ones) or a tag
    threads: int | None = None  # torch's intra-op threads; results depend on it, so config.json records it
    override: bool = False  # resume even where the run's settings differ from the checkpoint's
    options: dict[str, Any] = field(default_factory=dict)  # the task's own options (Task.options)
    # passed to create_model, as timm's --model-kwargs: a dict, or "KEY=VALUE KEY=VALUE" (Python literals)
    model_kwargs: dict[str, Any] | str = field(default_factory=dict)
    shard: bool = False  # fully sharded data parallel (FSDP2) instead of DDP: see paperzoo.training.sharding


# The run's settings a resume must not change silently (the task adds its own, e.g. the image size).
RUN_FIELDS = ("model", "model_kwargs", "data", "data_path", "epochs", "batch_size", "lr", "seed", "amp", "pretrained")


@dataclass
class Plan:
    """A checked configuration: what will be trained on what, decided before anything is written."""

    config: TrainConfig
    task: Task
    batch_size: int
    lr: float
    out: Path
    run: dict[str, Any]  # the settings that define the run (written to config.json, compared on resume)
    notes: list[str]  # where the run departs from the paper's training


def check_device(device: str) -> torch.device:
    """The device as torch names it; one that does not exist here is a ``ValueError`` with the choices."""
    try:
        parsed = torch.device(device)
    except RuntimeError:
        raise ValueError(f"unknown device {device!r}: use cpu, cuda or cuda:N") from None
    if parsed.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"--device {device}: this machine has no CUDA GPU that torch can use; use --device cpu")
        if parsed.index is not None and parsed.index >= torch.cuda.device_count():
            raise ValueError(f"--device {device}: there are {torch.cuda.device_count()} GPUs (cuda:0 ...)")
    elif parsed.type not in ("cpu", "mps"):
        raise ValueError(f"--device {device}: paperzoo train runs on cpu or cuda")
    return parsed


def check_writable(out: Path) -> None:
    """Refuse an output folder that cannot be written before any work is done, not after the first epoch."""
    existing = out
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        raise ValueError(f"cannot write the output folder {out}: {existing} is not a writable folder (--out PATH)")


def plan(config: TrainConfig, context: distributed.Context | None = None) -> Plan:
    """Check the configuration and load the data; raises ``ValueError`` (or the registry's ``KeyError``)."""
    context = context or distributed.Context()
    card = model_card(config.model)
    task = task_for(config, card)  # a model no task trains, or an option of another task, fails here
    for name in ("epochs", "batch_size", "lr", "image_size", "threads"):
        value = getattr(config, name)
        if value is not None and value <= 0:
            raise ValueError(f"--{name.replace('_', '-')} must be positive, got {value}")
    if config.workers < 0:
        raise ValueError(f"--workers must be 0 or more, got {config.workers}")
    check_device(config.device)
    data = config.data or task.data_kinds[0]
    if data not in task.data_kinds:
        raise ValueError(f"unknown data {data!r} for {card.task} models: use "
                         + " or ".join(f"{k} PATH" if k in task.takes_path else k for k in task.data_kinds))
    if data in task.takes_path and config.data_path is None:
        raise ValueError(f"--data {data} needs the path of the data: --data {data} PATH")
    if data not in task.takes_path and config.data_path is not None:
        raise ValueError(f"the {data} data ships with paperzoo's dependencies and takes no path; "
                         f"use --data {' or '.join(task.takes_path) or data} PATH")
    config = replace(config, data=data)
    task.config = config
    out = Path(config.out or f"runs/{config.model}")
    check_writable(out)
    earlier = [name for name in ("model.safetensors", "checkpoint.pt", "checkpoint") if (out / name).exists()]
    if earlier and config.resume is None:  # a second `paperzoo train NAME` replaced the first run's weights, silently
        checkpoint = out / ("checkpoint" if "checkpoint" in earlier else "checkpoint.pt")
        raise ValueError(f"{out} holds an earlier run ({', '.join(earlier)}), which a new run would replace: "
                         f"continue it with --resume {checkpoint}, or give another --out (or remove {out})")
    if importlib.util.find_spec("matplotlib") is None:  # the plot is drawn after the first epoch: say it now
        raise ValueError("paperzoo train draws metrics.png with matplotlib: pip install 'paperzoo[train]'")
    try:
        config = replace(config, model_kwargs=key_values(config.model_kwargs))
    except ValueError as err:
        raise ValueError(f"--model-kwargs takes KEY=VALUE pairs with Python literal values; got {err}") from None
    task.config = config
    if config.model_kwargs:  # a wrong keyword fails here, on the meta device, not after the data is read
        try:
            with torch.device("meta"):
                create_model(config.model, **config.model_kwargs)
        except TypeError as err:
            raise ValueError(f"--model-kwargs: {config.model} does not take {err}".rstrip(".")) from None
    task.prepare()
    derived = task.model_kwargs()  # what the data fixes: the user's --model-kwargs replaced it, silently (a head
    for key in ("num_classes", "in_chans"):  # of 5 outputs for 2 classes trained, with outputs no label has)
        if key in derived and key in config.model_kwargs and config.model_kwargs[key] != derived[key]:
            raise ValueError(f"--model-kwargs {key}={config.model_kwargs[key]}: the data gives {key}={derived[key]}; "
                             f"leave {key} out, the task sets it from the data")
    if config.shard:
        sharding.check(config, task, context)
    batch_size, lr = task.batch_size, task.lr
    notes = list(task.notes())
    if task.recipe is DEFAULT_RECIPE:
        notes.append(f"the card has no training recipe from the paper: {task.recipe.source}")
    if config.lr is None and batch_size != task.recipe.batch_size and task.recipe.optimizer in ("sgd", "rmsprop"):
        # The linear scaling rule (Goyal et al. 2017, §2.1): the same lr per example as the paper's batch.
        lr = lr * batch_size / task.recipe.batch_size
        notes.append(f"batch {batch_size} where the recipe has {task.recipe.batch_size}: learning rate scaled "
                     f"linearly from {task.lr:.4g} to {lr:.4g}")
    if batch_size % context.world_size or batch_size // context.world_size < 2:
        raise ValueError(f"--batch-size {batch_size} is the global batch: it must split into equal parts of at least "
                         f"2 examples over the {context.world_size} processes (e.g. {2 * context.world_size * 16})")
    run = {**{name: getattr(config, name) for name in RUN_FIELDS}, "batch_size": batch_size, "lr": lr,
           **task.settings()}
    if config.resume is not None:
        state = checkpoints.load_checkpoint(config.resume, config.model)  # a bad checkpoint fails here
        if state.get("sharded", False) != config.shard:
            raise ValueError(f"--resume {config.resume}: a sharded checkpoint resumes with --shard only"
                             if config.shard is False else
                             f"--resume {config.resume}: --shard resumes a sharded run's RUN/checkpoint folder, "
                             "not a checkpoint.pt; drop --shard to resume this one")
        check_resume(state, run, config)
    return Plan(config, task, batch_size, lr, out, run, notes)


def environment(device: torch.device, context: distributed.Context) -> dict[str, Any]:
    """What a run's numbers depend on besides its settings: the same seed gives other weights on another thread
    count, torch version or device, so config.json records them and a resume warns where they differ."""
    return {"threads": torch.get_num_threads(), "torch": str(torch.__version__), "device": str(device),
            "world_size": context.world_size}


def check_resume(state: dict[str, Any], run: dict[str, Any], config: TrainConfig) -> None:
    """A resume continues the checkpoint's run: a changed setting would train another run under the same name
    (and a changed epoch count another schedule), so it is refused, naming the fields, unless ``--override``."""
    saved = state.get("run", {})
    changed = [f"{name} {saved.get(name)!r} → {value!r}" for name, value in run.items() if saved.get(name) != value]
    if changed and not config.override:
        raise ValueError(f"--resume {config.resume}: this command differs from the checkpoint's run in "
                         f"{'; '.join(changed)}. Repeat the original settings, or pass --override to continue "
                         "with the new ones")
    if state["epoch"] >= config.epochs:
        raise ValueError(f"--resume {config.resume}: the checkpoint has already trained {state['epoch']} of "
                         f"{config.epochs} epochs; nothing is left to train (more epochs: --epochs N --override)")


def epoch_batches(num_examples: int, batch_size: int, seed: int, epoch: int,
                  context: distributed.Context) -> list[list[int]]:
    """This process's batches for one epoch: a permutation fixed by (seed, epoch) cut into global batches of
    ``batch_size``, each split into equal parts, one per process. So N processes take, step by step, the same
    examples as one process would (DDP averages their gradients into the one-process step), and every process
    takes the same number of steps. A part of fewer than two examples is dropped: BatchNorm cannot normalise a
    single value per channel."""
    order = torch.randperm(num_examples, generator=torch.Generator().manual_seed(seed * 100_003 + epoch)).tolist()
    batches = []
    for start in range(0, num_examples, batch_size):
        part = len(order[start: start + batch_size]) // context.world_size
        if part > 1:
            first = start + context.rank * part
            batches.append(order[first: first + part])
    return batches


def evaluation_batches(num_examples: int, context: distributed.Context, shard: bool) -> list[list[int]]:
    """This process's evaluation batches of up to 256 examples: every ``world_size``-th one from its rank on.
    A sharded model gathers each unit's weights from every process at every forward, so there every process
    cuts its part into as many batches as the largest part needs."""
    mine = list(range(context.rank, num_examples, context.world_size))
    if not shard:
        return [mine[i: i + 256] for i in range(0, len(mine), 256)]
    count = math.ceil(math.ceil(num_examples / context.world_size) / 256)
    return [mine[i * len(mine) // count: (i + 1) * len(mine) // count] for i in range(count)]


def to_device(batch: Any, device: torch.device) -> Any:
    """A batch's tensors on ``device``, through tuples, lists and dicts (detection targets are dicts)."""
    if isinstance(batch, torch.Tensor):
        return batch.to(device)
    if isinstance(batch, dict):
        return {k: to_device(v, device) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)):
        return type(batch)(to_device(v, device) for v in batch)
    return batch


def train(config: TrainConfig, on_epoch: Callable[[dict[str, Any]], None] | None = None,
          progress: Any = None, on_start: Callable[[Plan], None] | None = None) -> dict[str, Any]:
    """Run one training; returns the summary (also written to ``summary.json``). ``on_start`` sees the checked
    plan (its notes: where the run departs from the paper) before the first step."""
    # config.threads holds for this run only: a caller's process (a notebook, a test session) keeps its own
    # thread count afterwards, where two processes on two cores at two threads each run several times slower.
    with torch_threads(config.threads):
        context = distributed.start(config.device, config.shard)
        try:
            checked = plan(config, context)
            if on_start is not None and context.is_main:
                on_start(checked)
            return _train(checked, context, on_epoch, progress)
        finally:
            distributed.stop(context, config.shard)


def _train(p: Plan, context: distributed.Context, on_epoch: Callable[[dict[str, Any]], None] | None,
           progress: Any) -> dict[str, Any]:
    config, task = p.config, p.task
    device = torch.device(f"cuda:{context.local_rank}" if config.device == "cuda" and context.distributed
                          else config.device)
    torch.manual_seed(config.seed)  # the same initial weights on every process
    model = task.build_model().to(device)
    objective = task.objective(model)
    if config.shard:  # before the optimizers, which must hold the sharded parameters
        sharding.shard(model, objective, device)
    optimizers = task.optimizers(model, p.lr)
    steps_per_epoch = len(epoch_batches(len(task.train_set), p.batch_size, config.seed, 0, context))
    schedules = task.schedules(optimizers, config.epochs, steps_per_epoch)
    scaler = torch.amp.GradScaler(device.type, enabled=config.amp and device.type == "cuda")
    env = environment(device, context)
    history: list[dict[str, Any]] = []
    start_epoch = 0
    if config.resume is not None:
        state = checkpoints.load_checkpoint(config.resume, config.model)
        if config.shard:
            sharding.load_checkpoint(config.resume, model, optimizers, state)
        else:
            model.load_state_dict(state["model"])
            for optimizer, saved in zip(optimizers, state["optimizers"], strict=True):
                optimizer.load_state_dict(saved)
        for schedule, saved in zip(schedules, state["schedules"], strict=True):
            schedule.load_state_dict(saved)
        checkpoints.set_rng_state(state["rng"])
        start_epoch, history = state["epoch"], list(state["history"])
        differs = {k: (state["environment"].get(k), v) for k, v in env.items() if state["environment"].get(k) != v}
        if differs and context.is_main:
            warnings.warn("resuming under another " + ", ".join(f"{k} ({a} → {b})" for k, (a, b) in differs.items())
                          + ": the run continues, but its weights will not equal an uninterrupted run's bit for bit",
                          stacklevel=2)
    trained = task.distribute(objective) if context.distributed and not config.shard else objective
    test_loader = DataLoader(task.test_set, num_workers=config.workers, collate_fn=task.collate,
                             batch_sampler=evaluation_batches(len(task.test_set), context, config.shard))
    run_config = json.dumps({**asdict(config), "run": p.run, "notes": p.notes, "environment": env,
                             "recipe": asdict(task.recipe), "inference": task.inference()}, indent=2, default=str)
    started = time.perf_counter()
    plot_due = started  # when metrics.png may be drawn again: see PLOT_SHARE
    for epoch in range(start_epoch, config.epochs):
        batches = epoch_batches(len(task.train_set), p.batch_size, config.seed, epoch, context)
        loader = DataLoader(task.train_set, batch_sampler=batches, num_workers=config.workers,
                            collate_fn=task.collate)
        trained.train()
        totals: dict[str, float] = {"loss": 0.0}
        count = 0
        epoch_start = time.perf_counter()
        bar = progress.add_task(f"epoch {epoch + 1}/{config.epochs}", total=len(batches)) if progress else None
        lr = optimizers[0].param_groups[0]["lr"]
        for step, batch in enumerate(loader):
            batch = to_device(batch, device)
            if hasattr(model, "set_drop_path_progress"):  # NASNet's ScheduledDropPath ramps with training done
                model.set_drop_path_progress((epoch + step / len(batches)) / config.epochs)
            loss, sums, n = task.train_step(trained, batch, optimizers, scaler, device, config.amp)
            for schedule in schedules:
                schedule.step()
            # The progress shows every process's examples: summed over processes at each step.
            values = distributed.all_sum([loss.item() * n, float(n), *(float(v) for v in sums.values())],
                                         context, device)
            totals["loss"] += values[0]
            count += int(values[1])
            for key, value in zip(sums, values[2:], strict=True):
                totals[key] = totals.get(key, 0.0) + value
            if bar is not None:
                fields = {key: total / count for key, total in totals.items()}
                progress.update(bar, advance=1, rate=count / (time.perf_counter() - epoch_start), **fields)
        seconds = time.perf_counter() - epoch_start
        if task.precise_bn:  # statistics of the weights as they are now, from up to 50 of this epoch's batches
            statistics = DataLoader(task.train_set, batch_sampler=batches[:50], num_workers=config.workers,
                                    collate_fn=task.collate)
            with autocast(device, config.amp):
                precise_batchnorm(model, (to_device(b, device) for b in statistics),
                                  lambda b: task.statistics_forward(model, b))
        distributed.sync_buffers(model, context)
        metrics = task.evaluate(model, test_loader, device, context, config.amp)
        row = {"epoch": epoch + 1, **{f"train_{k}": v / count for k, v in totals.items()},
               **{f"test_{k}": v for k, v in metrics.items()}, "lr": lr, "seconds": seconds,
               f"{task.unit}_per_second": count / seconds}
        history.append(row)
        state = {"model_name": config.model, "epoch": epoch + 1, "schedules": [s.state_dict() for s in schedules],
                 "rng": checkpoints.rng_state(), "history": history, "run": p.run, "environment": env,
                 **task.checkpoint_extra()}
        if context.is_main and epoch == start_epoch:
            # The folder and config.json come with the first checkpoint, not before the first batch: a run that
            # stops in its first epoch (an unreadable image, Ctrl-C) left a folder holding config.json alone.
            p.out.mkdir(parents=True, exist_ok=True)
            checkpoints.atomic_write(p.out / "config.json", lambda tmp: tmp.write_text(run_config))
        if config.shard:  # every process writes its shards
            sharding.save_checkpoint(p.out / "checkpoint", model, optimizers, state, context.is_main)
        if context.is_main:
            if not config.shard:
                checkpoints.save_checkpoint(p.out / "checkpoint.pt", {
                    **state, "model": model.state_dict(), "optimizers": [o.state_dict() for o in optimizers]})
            write_log(p.out, history)
            if epoch + 1 == config.epochs or time.perf_counter() >= plot_due:
                drawing = time.perf_counter()
                write_plot(p.out / "metrics.png", history, config.model)
                now = time.perf_counter()
                plot_due = now + (now - drawing) * (1 - PLOT_SHARE) / PLOT_SHARE
            task.after_epoch(model, p.out, epoch + 1)
        if on_epoch is not None and context.is_main:
            on_epoch(row)
    # A sharded model has no replicas to compare: its one copy is gathered for the digest and model.safetensors.
    weights = sharding.full_state_dict(model) if config.shard else model.state_dict()
    identical = None if config.shard else distributed.replicas_identical(model, context)
    best = (max if task.higher_is_better else min)(r[f"test_{task.metric}"] for r in history)
    summary = {"model": config.model, "task": task.card.task, "epochs": config.epochs,
               "world_size": context.world_size, "metric": task.metric,
               f"final_test_{task.metric}": history[-1][f"test_{task.metric}"], f"best_test_{task.metric}": best,
               "final_train_loss": history[-1]["train_loss"], "first_train_loss": history[0]["train_loss"],
               "seconds_this_run": time.perf_counter() - started, "replicas_identical": identical,
               "parameter_digest": distributed.parameter_digest(weights) if weights else None,  # sharded: rank 0's
               "sharded": config.shard, "out": str(p.out), "notes": p.notes,
               "files": ["checkpoint/" if config.shard else "checkpoint.pt", "model.safetensors", "metrics.jsonl",
                         "metrics.png", "summary.json", "config.json", *task.outputs()], **task.summary()}
    if context.is_main:
        from safetensors.torch import save_file

        weights = {k: v.detach().cpu().contiguous() for k, v in weights.items()}
        checkpoints.atomic_write(p.out / "model.safetensors", lambda tmp: save_file(weights, str(tmp)))
        checkpoints.atomic_write(p.out / "summary.json", lambda tmp: tmp.write_text(json.dumps(summary, indent=2)))
    return summary


def write_log(out: Path, history: list[dict[str, Any]]) -> None:
    """metrics.jsonl, one line per finished epoch, rewritten whole from the checkpoint's history so that the
    log always agrees with the checkpoint, also after a resume."""
    text = "".join(json.dumps(row) + "\n" for row in history)
    checkpoints.atomic_write(out / "metrics.jsonl", lambda tmp: tmp.write_text(text))


# The most of a run's time that drawing metrics.png may take. A drawing costs 0.1 to 0.4 s (matplotlib; the
# detectors' five panels the most), as much as a whole epoch of a small model on the digits: after each epoch the
# plot is drawn again only once the time since the last drawing is at least (1 - PLOT_SHARE) / PLOT_SHARE times what
# that drawing took, and always after the last epoch. Epochs of a few seconds or more are each drawn, as before;
# metrics.jsonl has every epoch as soon as it ends.
PLOT_SHARE = 0.05


def write_plot(path: Path, history: list[dict[str, Any]], title: str) -> None:
    """The loss and every metric per epoch, train and test where both exist, as a PNG with one panel each."""
    import matplotlib

    matplotlib.use("Agg")  # no display: render to a file
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    names = ["loss"] + sorted({key.split("_", 1)[1] for key in history[0] if key.startswith("test_")} - {"loss"})
    epochs = [row["epoch"] for row in history]
    figure, panels = plt.subplots(1, len(names), figsize=(5 * len(names), 4), squeeze=False)
    for name, axes in zip(names, panels[0], strict=True):
        for split in ("train", "test"):
            if f"{split}_{name}" in history[0]:
                axes.plot(epochs, [row[f"{split}_{name}"] for row in history], marker="o", label=split)
        axes.set(xlabel="epoch", ylabel=name.replace("_", " "), title=f"{title}: {name.replace('_', ' ')}")
        if "accuracy" in name or name in ("miou", "map", "map50"):
            axes.set_ylim(0, 1)
        axes.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs are whole numbers
        axes.grid(alpha=0.3)
        axes.legend()
    figure.tight_layout()
    checkpoints.atomic_write(path, lambda tmp: figure.savefig(tmp, format="png", dpi=100))
    plt.close(figure)
