"""The ``paperzoo`` command: ``list``, ``info``, ``run``, ``tour``, ``train``, ``bench``, ``predict``, ``generate``
and ``translate``.

Built on the public API only. Every command that takes a model name exits with status 2 and a
"did you mean" line for an unknown name; ``tour`` exits with status 1 if any canonical model's measured
parameter count differs from its card or its example forward pass fails.

torch is imported by the commands that build a model, not here: ``list``, ``info`` and ``--help`` read the
registry's cards alone and answer in a fraction of the 1.5 s that importing torch takes.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from paperzoo import __version__
from paperzoo.registry import (
    TASKS,
    TrainingRecipe,
    UnknownModelError,
    closest_names,
    create_model,
    list_models,
    model_card,
    model_module,
)
from paperzoo.weights import describe_weights

if TYPE_CHECKING:
    import torch


def describe_output(output: Any) -> str:
    """Shapes of whatever a forward pass returns: a tensor, a tuple or list of them, or a dict."""
    import torch

    if isinstance(output, torch.Tensor):
        return "(" + ", ".join(map(str, output.shape)) + ")"
    if isinstance(output, dict):
        return "{" + ", ".join(f"{k}: {describe_output(v)}" for k, v in output.items()) + "}"
    if isinstance(output, (list, tuple)):
        return "[" + ", ".join(describe_output(v) for v in output) + "]"
    return type(output).__name__


def is_detections(output: Any) -> bool:
    """Whether ``output`` is a detector's: one dict per image with ``boxes`` and ``scores``."""
    return (isinstance(output, list) and len(output) > 0
            and all(isinstance(d, dict) and "boxes" in d and "scores" in d for d in output))


def describe_detections(output: list[dict[str, torch.Tensor]], top: int = 3) -> list[str]:
    """One line per image of a detector's output: how many detections, the best ``top`` scores with their labels,
    and what else each detection carries (``masks (K, 1, H, W)``)."""
    lines = []
    for index, detection in enumerate(output):
        scores = detection["scores"]
        order = scores.argsort(descending=True)[:top]
        labels = detection.get("labels")
        best = ", ".join(f"{scores[i].item():.2f}" + (f" (label {int(labels[i])})" if labels is not None else "")
                         for i in order)
        extra = ", ".join(f"{k} {describe_output(v)}" for k, v in detection.items()
                          if k not in ("boxes", "scores", "labels"))
        line = f"image {index}: {len(scores)} detection{'s' if len(scores) != 1 else ''}"
        line += f", top scores {best}" if len(scores) else ""
        lines.append(line + (f"; {extra}" if extra else ""))
    return lines


def describe_result(output: Any) -> str:
    """A forward pass's output in one line: shapes, or for a detector the detections per image and top score."""
    if not is_detections(output):
        return describe_output(output)
    parts = []
    for detection in output:
        scores = detection["scores"]
        parts.append(f"{len(scores)} det." + (f", top {scores.max().item():.2f}" if len(scores) else ""))
    return "[" + "; ".join(parts) + "]"


def describe_recipe(recipe: TrainingRecipe) -> str:
    """One line for ``paperzoo info``: ``sgd (momentum 0.9) lr 0.1 …, step ×0.1 at 50%, 75% (He et al. …)``."""
    optimizer = recipe.optimizer
    if recipe.optimizer in ("sgd", "rmsprop") and recipe.momentum:
        optimizer += f" ({'Nesterov ' if recipe.nesterov else ''}momentum {recipe.momentum:g})"
    schedule = {"cosine": "cosine decay", "linear": "linear decay to 0",
                "step": f"step ×{recipe.gamma:g} at " + ", ".join(f"{m:.0%}" for m in recipe.milestones),
                "exponential": f"×{recipe.gamma:g} every {recipe.decay_every:g} epochs"}[recipe.schedule]
    warmup = f", {recipe.warmup_epochs} warm-up epoch(s) at ×{recipe.warmup_factor:g}" if recipe.warmup_epochs else ""
    return (f"{optimizer}, lr {recipe.lr:g} at batch {recipe.batch_size}, weight decay {recipe.weight_decay:g}, "
            f"{schedule}{warmup}\n({recipe.source})")


def markdown_table(names: Sequence[str]) -> str:
    """The README's model table: one row per registered variant, with the tag that ``pretrained=True`` loads
    (and how many other published weights there are), or "—" where none are published."""
    from paperzoo.weights import published_weights

    rows = ["| name | architecture | year | task | parameters | reference | pretrained |",
            "| --- | --- | --- | --- | ---: | --- | --- |"]
    for name in names:
        card = model_card(name)
        weights = published_weights(name)
        pretrained = f"`{weights[0].tag}`" + (f" (+{len(weights) - 1})" if len(weights) > 1 else "") if weights \
            else "—"
        rows.append(f"| `{name}` | {card.architecture} | {card.paper.year} | {card.task} | "
                    f"{card.params:,} | {card.reference} | {pretrained} |")
    return "\n".join(rows)


def matching_models(pattern: str, task: str | None = None, canonical_only: bool = False) -> list[str]:
    """The names that ``list`` and ``tour`` show: a shell wildcard as given, a plain word as the names it begins
    (``bert`` as ``bert*``, as one types a family's name). Nothing matching is an error, not an empty table."""
    plain_word = not any(c in pattern for c in "*?[")
    names = list_models(pattern + "*" if plain_word else pattern, task=task, canonical_only=canonical_only)
    if not names:
        what = " ".join(filter(None, ("canonical" if canonical_only else "", task, "model")))
        close = closest_names(pattern, list_models()) if plain_word else []
        raise ValueError(f"no {what} matches {pattern!r}" + (f"; did you mean {', '.join(close)}?" if close else ""))
    return names


def _list(args: argparse.Namespace, console: Console) -> int:
    names = matching_models(args.pattern, task=args.task)
    if args.format == "markdown":
        print(markdown_table(names))
        return 0
    table = Table(title=f"{len(names)} model{'s' if len(names) != 1 else ''}")
    for column in ("name", "architecture", "year", "task", "parameters"):
        table.add_column(column, justify="right" if column == "parameters" else "left", no_wrap=True)
    table.add_column("reference", overflow="fold", max_width=48)  # the one column that wraps: some carry kwargs
    for name in names:
        card = model_card(name)
        table.add_row(name + (" *" if card.canonical else ""), escape(card.architecture), str(card.paper.year),
                      card.task, f"{card.params:,}", escape(card.reference))
    console.print(table)
    console.print("* the canonical variant of its architecture")
    return 0


def _info(args: argparse.Namespace, console: Console) -> int:
    card = model_card(args.name)
    params = f"{card.params:,} published"
    gmacs = f"{card.gmacs:.3f} on the card"
    if args.measure:
        import torch

        from paperzoo.measure import count_parameters, measure_gmacs

        with torch.device("meta"):  # measure without allocating the weights
            model = create_model(args.name).eval()
            measured = count_parameters(model)
            mark = "[green]✓[/]" if card.params_match(measured) else "[red]✗[/]"
            params = f"{measured:,} measured, {params} {mark}"
            gmacs = f"{measure_gmacs(model, card.example_input(1)):.3f} measured, {gmacs}"
    source = Path(importlib.util.find_spec(model_module(args.name)).origin or "?")
    table = Table(show_header=False, title=escape(f"{card.name}: {card.architecture}"))
    table.add_row("task", card.task)
    # the card's text is escaped: its square brackets (x_l = H_l([x_0, ..., x_l-1])) are not Rich markup
    table.add_row("paper", escape(f"{card.paper.title} ({card.paper.year})"))
    table.add_row("authors", escape(card.paper.authors))
    table.add_row("url", card.paper.url)
    table.add_row("innovations", escape("\n".join(f"• {line}" for line in card.innovations)))
    table.add_row("input", escape(card.input.describe()))
    table.add_row("parameters", f"{params}\n({escape(card.params_source)})")
    table.add_row("GMACs", gmacs + (
        "\n(the dense network up to the first data-dependent step: backbone, neck, dense heads)"
        if card.input.kind == "image-list" else ""))
    table.add_row("reference", escape(card.reference))
    table.add_row("weights", escape(describe_weights(args.name)))
    from paperzoo.interop.huggingface import accepted_config_fields

    if fields := accepted_config_fields(card.name):  # what from_pretrained reads, the reference's names first
        table.add_row("config fields", escape(fields))
    if card.recipe is not None:
        table.add_row("recipe", escape(describe_recipe(card.recipe)))
    if card.notes:
        table.add_row("notes", escape(card.notes))
    table.add_row("file", str(source))
    console.print(table)
    return 0


def _run(args: argparse.Namespace, console: Console) -> int:
    import torch

    from paperzoo.measure import count_parameters, run_example

    card = model_card(args.name)
    console.print(f"[bold]{escape(card.architecture)}[/] " + escape(f"({card.paper.title}, {card.paper.year})"))
    start = time.perf_counter()
    model = create_model(args.name).eval()
    built = time.perf_counter() - start
    params = count_parameters(model)
    mark = "✓" if card.params_match(params) else f"✗ (published {card.params:,})"
    # `run` shows that the model builds, counts and computes; with random weights its numbers (a random detector's
    # confident "top scores 0.98", a classifier's logits) mean nothing, and a reader must not take them for results
    from paperzoo.weights import published_weights

    if not published_weights(args.name):
        where = "no published weights exist for it"
    elif card.task in PREDICT_TASKS:
        where = f"`paperzoo predict {args.name} IMAGE --pretrained` uses the published ones"
    else:
        where = f"create_model('{args.name}', pretrained=True) loads the published ones"
    console.print(f"built in {built:.2f} s: {params:,} parameters {mark}; random weights, so the outputs below "
                  f"show shapes, not predictions ({where})")
    x = card.example_input(args.batch_size)
    with torch.no_grad():
        start = time.perf_counter()
        output = run_example(model, x)
        elapsed = time.perf_counter() - start
    if is_detections(output):
        console.print(f"input {describe_output(x)} → detections for {len(output)} image(s) in {elapsed * 1000:.0f} ms")
        for line in describe_detections(output):
            console.print(f"  {line}")
        return 0
    console.print(f"input {describe_output(x)} → output {describe_output(output)} in {elapsed * 1000:.0f} ms")
    return 0


def _tour(args: argparse.Namespace, console: Console) -> int:
    import torch

    from paperzoo.measure import count_parameters, run_example

    names = matching_models(args.pattern, canonical_only=True)
    device = _command_device(args.device, meta=True)
    table = Table(title="the zoo: canonical models" + (" on the meta device (structure only)" if device.type == "meta"
                                                      else f" on {device}" if device.type != "cpu" else ""))
    for column in ("name", "architecture", "year", "published", "measured", "", "output", "forward"):
        table.add_column(column, justify="right" if column in ("published", "measured", "forward") else "left",
                         no_wrap=column != "output")
    failures = []
    with Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                  TimeElapsedColumn(), console=console, transient=True) as progress:
        task = progress.add_task("touring", total=len(names))
        for name in names:
            progress.update(task, description=f"touring {name}")
            card = model_card(name)
            model = None
            try:
                with device:  # built where it runs: on the meta device no weights are drawn at all
                    model = create_model(name).eval()
                params = count_parameters(model)
                with torch.no_grad():
                    start = time.perf_counter()
                    try:
                        output = describe_result(run_example(model, card.example_input(1, device=device)))
                    except NotImplementedError:
                        if device.type != "meta":
                            raise
                        # A detector's score threshold and NMS keep a number of boxes that only values decide.
                        output = "(detections depend on values: run on a real device to see them)"
                    elapsed = (f"{(time.perf_counter() - start) * 1000:.0f} ms" if device.type != "meta" else "-")
                ok = card.params_match(params)
                measured = f"{params:,}"
            except Exception as err:  # a tour reports every model, then fails at the end
                ok, measured, output, elapsed = False, "error", f"{type(err).__name__}: {err}", "-"
            if not ok:
                failures.append(name)
            table.add_row(name, escape(card.architecture), str(card.paper.year), f"{card.params:,}", measured,
                          "[green]✓[/]" if ok else "[red]✗[/]", escape(output), elapsed)
            del model
            progress.advance(task)
    console.print(table)
    if failures:
        console.print(f"[red]{len(failures)} of {len(names)} failed: {', '.join(failures)}[/]")
        return 1
    console.print("[green]" + (f"all {len(names)} canonical models match their published parameter counts"
                               if len(names) > 1 else "the canonical model matches its published parameter count"))
    return 0


def _command_device(name: str, meta: bool, why: str = ""):
    """``--device`` of tour (``meta``: the structure only) and bench (``why`` it takes no meta): a torch device
    this machine has, else one line with the choices."""
    import torch

    try:
        device = torch.device(name)
    except RuntimeError:
        device = None
    if device is None or device.type not in ("cpu", "cuda", *(("meta",) if meta else ())):
        choices = "cpu, cuda, cuda:N or meta" if meta else "cpu, cuda or cuda:N"
        raise ValueError(f"--device {name}: {why}expected {choices}")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device {name}: CUDA is not available here; use cpu"
                         + (", or meta for the structure only" if meta else ""))
    return device


def _train(args: argparse.Namespace, console: Console) -> int:
    from paperzoo.training import distributed
    from paperzoo.training.loop import TrainConfig, train
    from paperzoo.training.tasks import all_options

    if len(args.data) > 2:
        raise ValueError("--data takes a kind and at most one path: --data KIND [PATH]")
    options = {name: getattr(args, name) for name in all_options() if getattr(args, name, None) is not None}
    config = TrainConfig(model=args.name, data=args.data[0] if args.data else None,
                         data_path=args.data[1] if len(args.data) == 2 else None, epochs=args.epochs,
                         batch_size=args.batch_size, lr=args.lr, image_size=args.image_size, device=args.device,
                         amp=args.amp, out=args.out, resume=args.resume, seed=args.seed, workers=args.workers,
                         pretrained=args.pretrained, threads=args.threads, override=args.override, options=options,
                         model_kwargs=" ".join(args.model_kwargs or ()), shard=args.shard)
    main_process = distributed.Context(int(os.environ.get("RANK", "0"))).is_main
    shown: dict[str, str] = {}  # the progress bar's fields: the loss, then the task's own metric

    def report(row: dict[str, Any]) -> None:
        def part(split: str) -> str:
            return " ".join(f"{key[len(split) + 1:]} {_number(key, value)}" for key, value in row.items()
                            if key.startswith(split + "_"))
        rate = next(key for key in row if key.endswith("_per_second"))
        console.print(f"epoch {row['epoch']}: train {part('train')} | test {part('test')} | "
                      f"{row[rate]:.0f} {rate.removesuffix('_per_second')}/s, lr {row['lr']:.3g}")

    class _Fields(Progress):  # every epoch's bar starts with its metric fields at zero
        def add_task(self, description: str, **kwargs: Any) -> Any:
            return super().add_task(description, loss=0.0, rate=0.0, **dict.fromkeys(shown, 0.0), **kwargs)

    from paperzoo.registry import model_card as card_of
    from paperzoo.training.tasks import task_for

    task = task_for(config, card_of(config.model))  # for the progress bar's columns; train() checks it all
    metric = ""
    if task.progress_metric is not None:
        key, label, spec = task.progress_metric
        shown[key] = label
        metric = f"{label} {{task.fields[{key}]:{spec}}}  "
    columns = [TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
               TextColumn("loss {task.fields[loss]:.4f}  " + metric + "{task.fields[rate]:.0f} " + task.unit + "/s"),
               TimeElapsedColumn()]
    with _Fields(*columns, console=console, disable=not main_process) as progress:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", UserWarning)
            summary = train(config, on_epoch=report, progress=progress if main_process else None,
                            on_start=lambda plan: [console.print(f"note: {escape(note)}", highlight=False)
                                                   for note in plan.notes])
    for warning in caught if main_process else ():  # after the bars, which would overwrite them
        console.print(f"[yellow]warning:[/] {escape(str(warning.message))}", highlight=False)
    if main_process:
        table = Table(title=f"trained {summary['model']}", show_header=False)
        metric = summary["metric"]
        final, best = summary[f"final_test_{metric}"], summary[f"best_test_{metric}"]
        table.add_row(f"test {metric.replace('_', ' ')}", f"{_number(metric, final)} (best {_number(metric, best)})")
        table.add_row("train loss", f"{summary['first_train_loss']:.4f} → {summary['final_train_loss']:.4f}")
        table.add_row("processes", f"{summary['world_size']} (sharded)" if summary["sharded"] else
                      f"{summary['world_size']} (replicas identical: {summary['replicas_identical']})")
        table.add_row("time", f"{summary['seconds_this_run']:.1f} s")
        table.add_row("written to", f"{summary['out']}: {', '.join(summary['files'])}")
        console.print(table)
    return 0


FRACTIONS = ("accuracy", "iou", "map")  # metrics that are fractions, shown as percentages


def _number(name: str, value: float) -> str:
    """A metric as people read it: a fraction as a percentage, anything else with four significant digits."""
    return f"{value:.2%}" if any(word in name for word in FRACTIONS) else f"{value:.4g}"


def _bench(args: argparse.Namespace, console: Console) -> int:
    from paperzoo import benchmark
    from paperzoo.measure import torch_threads

    if not args.names and not args.all:
        raise ValueError("name the models to benchmark (names or wildcards such as 'resnet*'), or pass --all")
    if args.all:
        names = benchmark.referenced_models(canonical_only=args.canonical)
        paper_only = len(list_models(canonical_only=args.canonical)) - len(names)
        console.print(f"{len(names)} models with a reference implementation; {paper_only} more have only their "
                      "paper as reference and are skipped", highlight=False)
    else:
        names = benchmark.select_models(args.names, canonical_only=args.canonical)
    with torch_threads(args.threads):  # a caller's process keeps its own count afterwards
        return _bench_models(args, console, names)


def _bench_models(args: argparse.Namespace, console: Console, names: list[str]) -> int:
    import json

    import torch

    from paperzoo import benchmark

    threads = torch.get_num_threads()
    # meta computes nothing: each model failed on "Tensor.item() cannot be called on meta tensors"
    _command_device(args.device, meta=False, why="bench times computations: ")
    settings = benchmark.Settings(device=args.device, batch=args.batch, repeats=args.repeats, warmup=args.warmup,
                                  train=args.train, precisions=tuple(args.precision or ()),
                                  max_image_size=args.max_image_size, compile=args.compile)
    if args.compile and args.compile not in benchmark.compile_backends():
        raise ValueError(f"--compile {args.compile}: not a torch.compile backend here; expected one of "
                         f"{', '.join(sorted(torch.compiler.list_backends()))}, or a debugging one "
                         "(eager, aot_eager)")
    import_seconds = None if args.no_import_time else benchmark.import_time(args.import_repeats)

    def write(results: list) -> str:  # after every model, so that a long run's partial results survive
        data = benchmark.report(results, settings, threads=threads, label=args.label, import_seconds=import_seconds)
        text = benchmark.markdown(data)
        for path, content in ((args.json, json.dumps(data, indent=1)), (args.markdown, text)):
            if path:
                Path(path).parent.mkdir(parents=True, exist_ok=True)
                Path(path).write_text(content + "\n")
        return text

    results = []
    for name in names:
        start = time.perf_counter()
        result = benchmark.benchmark_model(name, settings, log=lambda line: console.print(line, highlight=False))
        if args.memory and result.status != "skipped":
            result.memory = benchmark.training_memory(name, settings)
        if result.status == "skipped":
            console.print(f"[yellow]skipped[/] {name}: {escape(result.reason)}", highlight=False)
        elif result.status == "error":
            console.print(f"[red]error[/] {name}: {escape(result.reason)}", highlight=False)
        else:
            console.print(f"[green]done[/] {name} in {time.perf_counter() - start:.1f} s", highlight=False)
        results.append(result)
        write(results)
        if args.device.startswith("cuda"):  # hand the pair's memory back before the next, larger one
            import gc

            gc.collect()
            torch.cuda.empty_cache()
    from rich.markdown import Markdown  # here: markdown-it is not worth importing for every command

    # rendered for the reader (a Markdown table on a terminal is a wall of pipes and asterisks); --markdown
    # writes the source for the documentation
    console.print(Markdown(write(results)))
    return 1 if any(result.status == "error" for result in results) else 0


PREDICT_TASKS = ("image-classification", "semantic-segmentation", "object-detection", "instance-segmentation")


def _read_images(paths: Sequence[str]) -> list[Any]:
    """The images at ``paths`` as RGB PIL images; a missing or unreadable file is a one-line ``ValueError``."""
    from PIL import Image, UnidentifiedImageError

    images = []
    for path in paths:
        if not Path(path).is_file():
            raise ValueError(f"no image file at {path}")
        try:
            with Image.open(path) as image:
                images.append(image.convert("RGB"))
        except (UnidentifiedImageError, OSError) as err:
            raise ValueError(f"cannot read {path} as an image ({type(err).__name__}); Pillow reads JPEG, PNG, "
                             "BMP, GIF, TIFF, WebP and more") from None
    return images


def _label_color(label: int) -> tuple[int, int, int]:
    """A fixed, distinct colour per class index (the same class gets the same colour in every image)."""
    return tuple((c * (label + 3)) % 230 + 25 for c in (37, 17, 101))  # type: ignore[return-value]


def _predict(args: argparse.Namespace, console: Console) -> int:
    import torch
    from torchvision.transforms import v2
    from torchvision.transforms.v2 import functional as TF
    from torchvision.utils import draw_bounding_boxes, draw_segmentation_masks

    from paperzoo.weights import IMAGENET_MEAN, IMAGENET_STD, Preprocessing, image_preprocessing, published_weights
    from paperzoo.weights._categories import CATEGORIES

    card = model_card(args.name)
    if card.task not in PREDICT_TASKS:
        raise ValueError(f"{args.name}'s task is {card.task}; paperzoo predict takes image classifiers, detectors "
                         "and segmentation models")
    images = _read_images(args.inputs)
    offset = 0  # the label of names[0]: a detector trained by paperzoo train numbers its classes from first_label
    if args.checkpoint is not None:
        if args.pretrained is not None:
            raise ValueError("give --checkpoint (the weights of a paperzoo train run) or --pretrained (the published "
                             "ones), not both")
        from paperzoo.training.checkpoints import load_trained, run_transforms

        model, inference = load_trained(args.checkpoint, args.name)
        console.print(f"{args.name} trained by paperzoo train ({args.checkpoint})", highlight=False)
        names, offset = inference["classes"], inference.get("first_label", 0)
        transform = run_transforms(card.task, inference)  # each image as training gave it to the model
    elif args.pretrained is not None:
        model = create_model(args.name, pretrained=args.pretrained).eval()
        weights = model.pretrained_weights
        console.print(f"{args.name} with the {weights.tag} weights ({weights.source})", highlight=False)
        preprocessing, names = image_preprocessing(weights), weights.category_names
    else:
        model = create_model(args.name).eval()
        available = published_weights(args.name)
        hint = (f"pass --pretrained for the {available[0].tag} weights" if available
                else "it has no published weights")
        console.print(f"[yellow]{args.name} with random weights: its predictions mean nothing ({hint})[/]",
                      highlight=False)
        size, channels = card.input.shape[-1], card.input.shape[0]
        # ImageNet's statistics for an RGB network; a greyscale one (CapsNet, ODE-Net, U-Net) gets the image in
        # grey, in [0, 1] (it was "expects (N, 1, H, W) ... got 3 channels" before)
        mean, std = (IMAGENET_MEAN, IMAGENET_STD) if channels == 3 else ((), ())
        preprocessing = {"image-classification": Preprocessing(resize=size, crop=size, mean=mean, std=std),
                         "semantic-segmentation": Preprocessing(resize=size, mean=mean, std=std),
                         }.get(card.task, Preprocessing())
        names = CATEGORIES["imagenet-1k"] if card.task == "image-classification" and model.num_classes == 1000 else None
    if args.checkpoint is None:
        transform = preprocessing.transforms()
        if card.input.kind == "image" and card.input.shape[0] == 1:
            transform = v2.Compose([v2.Grayscale(1), transform])
    if card.task == "semantic-segmentation":
        from paperzoo.training.tasks.segmentation import Segmenter

        model = Segmenter(model)  # a U-Net of valid convolutions: the mirrored tile whose output covers the image

    def label(index: int) -> str:
        return names[index - offset] if names is not None and 0 <= index - offset < len(names) else f"class {index}"

    out = Path(args.out)
    with torch.no_grad():
        for path, image in zip(args.inputs, images, strict=True):
            pixels = TF.pil_to_tensor(image)  # uint8 (3, H, W), what the drawings are made on
            if card.task == "image-classification":
                scores = model(transform(image).unsqueeze(0))[0]
                # CapsNet's scores are capsule lengths, each already the probability that its class is present
                probabilities = scores if getattr(model, "scores_are_probabilities", False) else scores.softmax(-1)
                top = probabilities.topk(min(args.top_k, len(probabilities)))
                console.print(f"[bold]{path}[/]", highlight=False)
                for rank, (p, index) in enumerate(zip(top.values.tolist(), top.indices.tolist(), strict=True), 1):
                    console.print(f"  {rank}. {label(index):<30} {p:7.2%}", highlight=False)
                continue
            if card.task == "semantic-segmentation":
                logits = model(transform(image).unsqueeze(0))["out"]
                logits = torch.nn.functional.interpolate(logits, size=pixels.shape[1:], mode="bilinear",
                                                         align_corners=False)
                classes = logits[0].argmax(0)  # (H, W)
                present = [c for c in classes.unique().tolist() if c != 0]  # 0: background, left undrawn
                drawn = draw_segmentation_masks(pixels, classes[None] == torch.tensor(present).view(-1, 1, 1),
                                                alpha=0.6, colors=[_label_color(c) for c in present]) \
                    if present else pixels
                found = ", ".join(f"{label(c)} {(classes == c).float().mean().item():.1%}" for c in present)
                summary = f"{len(present)} classes: {found}" if present else "background only"
                details = []
            else:
                detections = model([transform(image)])[0]
                keep = detections["scores"] >= args.threshold
                boxes, scores, labels = (detections[k][keep] for k in ("boxes", "scores", "labels"))
                drawn = pixels
                if "masks" in detections:
                    masks = detections["masks"][keep][:, 0] > 0.5
                    if len(masks):
                        drawn = draw_segmentation_masks(drawn, masks, alpha=0.5,
                                                        colors=[_label_color(int(c)) for c in labels])
                texts = [f"{label(int(c))} {s:.2f}" for c, s in zip(labels, scores.tolist(), strict=True)]
                drawn = draw_bounding_boxes(drawn, boxes, labels=texts, width=3,
                                            colors=[_label_color(int(c)) for c in labels])
                summary = f"{len(boxes)} detections with score >= {args.threshold:g}"
                details = [f"{text} at ({', '.join(f'{v:.0f}' for v in box.tolist())})"
                           for text, box in zip(texts, boxes, strict=True)]
            out.mkdir(parents=True, exist_ok=True)
            target = out / f"{Path(path).stem}_{args.name}.png"
            TF.to_pil_image(drawn).save(target)
            console.print(f"[bold]{path}[/]: {summary} → {target}", highlight=False)
            for line in details:
                console.print(f"  {line}", highlight=False)
    return 0


def _sample(args: argparse.Namespace, console: Console) -> int:
    import torch
    from torchvision.utils import save_image

    from paperzoo.training.checkpoints import atomic_write, load_trained

    card = model_card(args.name)
    if card.task != "generative":
        raise ValueError(f"{args.name}'s task is {card.task}; paperzoo sample draws from the generative models "
                         "(gan, dcgan, vae)")
    out = Path(args.out or f"{args.name}_samples.png")
    if out.suffix.lower() != ".png":
        raise ValueError(f"--out {out}: the samples are written as one PNG grid; name a .png file")
    model, inference = load_trained(args.checkpoint, args.name)
    if not hasattr(model, "sample"):
        raise ValueError(f"{args.name} draws no samples: an autoencoder codes and reconstructs the images it is "
                         "given (its run's reconstructions/ show them)")
    low, high = inference["value_range"]
    with torch.no_grad():
        images = model.sample(args.count, torch.Generator().manual_seed(args.seed))
    grid = ((images.float() - low) / (high - low)).clamp(0, 1)  # the generator's range (DCGAN: tanh) → [0, 1]
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(out, lambda tmp: save_image(grid, tmp, nrow=min(8, len(grid)), padding=2, format="png"))
    console.print(f"{args.count} samples of {args.name} trained by paperzoo train ({args.checkpoint}) → {out}",
                  highlight=False, soft_wrap=True)  # a path is not broken across lines
    return 0


def _transcribe(args: argparse.Namespace, console: Console) -> int:
    import torch

    from paperzoo.training.audio_data import read_wav
    from paperzoo.training.tasks.speech import load_transcriber, transcribe

    model_card(args.name)  # an unknown name: "did you mean"
    for path in args.inputs:
        if not Path(path).is_file():
            raise ValueError(f"no audio file at {path}")
    audio = [torch.from_numpy(read_wav(Path(path))) for path in args.inputs]  # a bad file: before the model loads
    model, vocabulary, normalisation = load_transcriber(args.name, args.checkpoint, args.pretrained)
    for path, waveform in zip(args.inputs, audio, strict=True):
        console.print(f"[bold]{path}[/]: {escape(transcribe(model, vocabulary, waveform, normalisation))}",
                      highlight=False, soft_wrap=True)  # one line per file, however long
    return 0


def _translate(args: argparse.Namespace, console: Console) -> int:
    from paperzoo.training.tasks.translation import load_translator, translate_sentences, unknown_words

    model_card(args.name)  # an unknown name: "did you mean"
    model, source, target, beam_size = load_translator(args.checkpoint, args.name)
    translations = translate_sentences(model, source, target, args.texts, args.beam_size or beam_size)
    for text, translation in zip(args.texts, translations, strict=True):
        unknown = unknown_words(source, text)
        if unknown:
            console.print(f"[yellow]not in the training vocabulary, read as <unk>: {escape(' '.join(unknown))}[/]",
                          highlight=False)
        console.print(translation, highlight=False, markup=False)
    return 0


GENERATE_TASKS = ("language-model", "sequence")


def _generate(args: argparse.Namespace, console: Console) -> int:
    """Continue a prompt with a language model that ``paperzoo train`` trained (``--checkpoint RUN``) or with
    published weights (``--pretrained``), through the model's ``generate`` (GPT: with its key/value cache)."""
    import torch

    card = model_card(args.name)
    if card.task not in GENERATE_TASKS:
        raise ValueError(f"{args.name}'s task is {card.task}; paperzoo generate takes language models (GPT, GPT-2) "
                         "and the LSTM or GRU trained as one (paperzoo list --task language-model)")
    if (args.checkpoint is None) == (args.pretrained is None):
        raise ValueError("pass one of --checkpoint RUN (the folder of a paperzoo train run, or its "
                         "model.safetensors) and --pretrained (the published weights)")
    if not args.prompt:
        raise ValueError("--prompt is empty: give the text to continue")
    if args.top_p is not None and not 0 < args.top_p <= 1:
        raise ValueError(f"--top-p must lie in (0, 1], got {args.top_p}")
    if args.checkpoint is not None:
        from paperzoo.training.tasks.language_model import load_run

        model, tokenizer = load_run(args.name, args.checkpoint)
    else:
        from paperzoo.interop.huggingface import tokenizer as published_tokenizer
        from paperzoo.weights import get_weights

        model = create_model(args.name, pretrained=args.pretrained).eval()
        tokenizer = published_tokenizer(get_weights(args.name, args.pretrained).hub_repo)
    ids = tokenizer.encode(args.prompt).ids
    if not ids:
        raise ValueError(f"--prompt {args.prompt!r} encodes to no tokens")
    sample = args.temperature is not None or args.top_k is not None or args.top_p is not None
    end = tokenizer.token_to_id("<|endoftext|>")
    output = model.generate(torch.tensor([ids]), args.max_new_tokens, do_sample=sample,
                            temperature=args.temperature or 1.0, top_k=args.top_k, top_p=args.top_p,
                            eos_token_id=end, generator=torch.Generator().manual_seed(args.seed))
    new = [t for t in output[0, len(ids):].tolist() if t != end]
    console.print(f"[bold]{escape(args.prompt)}[/]{escape(tokenizer.decode(new))}", highlight=False)
    return 0


def positive(kind: type) -> Any:
    """An argparse type: a number above zero, else the one-line usage error (exit 2)."""
    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            expected = "an integer" if kind is int else "a number"
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}") from None
        if not value > 0:
            raise argparse.ArgumentTypeError(f"must be positive, got {text}")
        return value
    parse.__name__ = f"positive {kind.__name__}"
    return parse


def non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {text}")
    return value


def build_parser(with_task_options: bool = False) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="paperzoo", description="Landmark neural networks, each "
                                     "readable like its paper and proven equal to its reference.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = commands.add_parser("list", help="the registered models, as a table")
    p.add_argument("pattern", nargs="?", default="*",
                   help="shell wildcard, e.g. 'resnet*'; a plain word lists the names it begins (resnet: 'resnet*')")
    p.add_argument("--task", choices=TASKS, help="only models of this task")
    p.add_argument("--format", choices=("table", "markdown"), default="table",
                   help="markdown prints the README's model table")
    p.set_defaults(handler=_list)

    p = commands.add_parser("info", help="a model's card and its file")
    p.add_argument("name")
    p.add_argument("--measure", action="store_true",
                   help="also build the model on the meta device and measure its parameters and GMACs")
    p.set_defaults(handler=_info)

    p = commands.add_parser("run", help="build one model, count it, and run its example input")
    p.add_argument("name")
    p.add_argument("--batch-size", type=positive(int), default=1)
    p.set_defaults(handler=_run)

    p = commands.add_parser("train", help="train any model: its paper's recipe on built-in data or yours")
    p.add_argument("name")
    p.add_argument("--data", nargs="+", default=[], metavar="KIND [PATH]",
                   help="the task's built-in data (default; classifiers: digits; language models: genesis) or a kind "
                   "of data with its path, e.g. --data folder PATH for an ImageFolder tree, --data text PATH for a "
                   "UTF-8 text file")
    p.add_argument("--epochs", type=positive(int), default=10)
    p.add_argument("--batch-size", type=positive(int), help="the global batch: under torchrun each of N processes "
                   "takes 1/N of it (default: the paper's recipe on the card)")
    p.add_argument("--lr", type=positive(float), help="peak learning rate (default: the paper's recipe on the card)")
    p.add_argument("--image-size", type=positive(int), help="input height and width (default: the card's input)")
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (under torchrun: cuda picks the local rank)")
    p.add_argument("--amp", action="store_true", help="mixed precision (bfloat16 on CPU, float16 on CUDA)")
    p.add_argument("--out", help="output folder (default: runs/NAME)")
    p.add_argument("--resume", metavar="CKPT", help="continue from a checkpoint.pt of an earlier run, or the "
                   "checkpoint folder of a --shard run (with the same settings: a changed one is refused unless "
                   "--override)")
    p.add_argument("--override", action="store_true", help="resume with settings that differ from the checkpoint's")
    p.add_argument("--shard", action="store_true", help="fully sharded data parallel (FSDP2) for models too large for "
                   "one device: each of torchrun's processes holds 1/N of the weights, gradients and optimizer state; "
                   "checkpoints go to the folder RUN/checkpoint (resume with --resume RUN/checkpoint --shard)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=positive(int), help="torch's CPU threads (results depend on it; recorded in "
                   "config.json; default: torch's)")
    p.add_argument("--workers", type=non_negative_int, default=0, help="data-loading worker processes")
    p.add_argument("--pretrained", nargs="?", const=True, default=False, metavar="TAG",
                   help="fine-tune from the published weights (TAG picks others than the default): a new head for "
                   "the data's classes, the weights' input size and normalisation, a tenth of the recipe's lr")
    p.add_argument("--model-kwargs", nargs="+", metavar="KEY=VALUE",
                   help="constructor arguments for the model, as timm's train.py takes them (e.g. num_layers=2 "
                   "hidden_size=64 for a model small enough for a CPU); recorded with the run")
    if with_task_options:  # each task's own options (importing the tasks imports torch: only for `train`)
        from paperzoo.training.tasks import all_options

        for name, option in all_options().items():
            p.add_argument("--" + name.replace("_", "-"), dest=name, type=str, choices=None,
                           help=option.help + (f" (default {option.default})" if option.default is not None else ""))
    p.set_defaults(handler=_train)

    p = commands.add_parser("predict", help="classify images, or draw a detector's boxes or a segmentation's mask")
    p.add_argument("name")
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="image files (any format Pillow reads)")
    p.add_argument("--pretrained", nargs="?", const=True, metavar="TAG",
                   help="load the published weights (default: the reference's; TAG picks others); without it or "
                   "--checkpoint the model has random weights")
    p.add_argument("--checkpoint", metavar="RUN", help="the weights of a paperzoo train run (its folder): its "
                   "classes, and its images' size and normalisation")
    p.add_argument("--top-k", type=positive(int), default=5, help="classifiers: how many labels to print")
    p.add_argument("--threshold", type=float, default=0.5, help="detectors: the lowest score drawn")
    p.add_argument("--out", default="predictions", help="where detectors and segmentation models write their images")
    p.set_defaults(handler=_predict)

    p = commands.add_parser("sample", help="draw images from a GAN, DCGAN or VAE trained by paperzoo train")
    p.add_argument("name")
    p.add_argument("--checkpoint", required=True, metavar="RUN", help="the paperzoo train run (its folder)")
    p.add_argument("--count", type=positive(int), default=64, help="images to draw (default 64, in rows of 8)")
    p.add_argument("--seed", type=int, default=0, help="the random numbers of the draws")
    p.add_argument("--out", help="the PNG grid to write (default NAME_samples.png)")
    p.set_defaults(handler=_sample)

    p = commands.add_parser("transcribe", help="transcribe speech with a wav2vec 2.0 CTC model trained by paperzoo "
                            "train or published")
    p.add_argument("name")
    p.add_argument("inputs", nargs="+", metavar="AUDIO", help="16-bit PCM WAV files (other rates are resampled to "
                   "16 kHz)")
    p.add_argument("--checkpoint", metavar="RUN", help="a paperzoo train run of the CTC model (its folder)")
    p.add_argument("--pretrained", nargs="?", const=True, metavar="TAG",
                   help="the published weights and their vocabulary (TAG picks others)")
    p.set_defaults(handler=_transcribe)

    p = commands.add_parser("translate", help="translate sentences with a model trained by paperzoo train")
    p.add_argument("name")
    p.add_argument("texts", nargs="+", metavar="TEXT", help="sentences in the source language, one per argument")
    p.add_argument("--checkpoint", required=True, metavar="RUN_DIR",
                   help="the output folder of `paperzoo train NAME` (its translation.json and weights)")
    p.add_argument("--beam-size", type=positive(int), help="beams (default: the run's, the paper's)")
    p.set_defaults(handler=_translate)

    p = commands.add_parser("generate", help="continue a prompt with a language model trained by paperzoo train or "
                            "published")
    p.add_argument("name")
    p.add_argument("--prompt", required=True, help="the text to continue")
    p.add_argument("--checkpoint", metavar="RUN", help="a paperzoo train run: its folder or its model.safetensors "
                   "(with config.json and tokenizer.json beside it)")
    p.add_argument("--pretrained", nargs="?", const=True, metavar="TAG", help="the published weights and tokenizer")
    p.add_argument("--max-new-tokens", type=positive(int), default=50)
    p.add_argument("--temperature", type=positive(float), help="sample, with this temperature (default: greedy)")
    p.add_argument("--top-k", type=positive(int), help="sample from the k most likely tokens")
    p.add_argument("--top-p", type=float, help="sample from the smallest set of tokens whose probability reaches p")
    p.add_argument("--seed", type=int, default=0, help="the random numbers of sampling")
    p.set_defaults(handler=_generate)

    p = commands.add_parser("tour", help="every canonical model: published vs measured parameters, a forward pass")
    p.add_argument("pattern", nargs="?", default="*",
                   help="only the canonical models matching this wildcard (a plain word: the names it begins)")
    p.add_argument("--device", default="cpu",
                   help="cpu, cuda or cuda:N; meta checks the structure only (parameters counted, output shapes "
                        "traced, nothing computed: every model in seconds)")
    p.set_defaults(handler=_tour)

    p = commands.add_parser("bench", help="time ours against the reference implementations, with the same weights")
    p.add_argument("names", nargs="*", metavar="NAME", help="names or shell wildcards, e.g. resnet50 'vit_*'")
    p.add_argument("--all", action="store_true", help="every model whose card names a reference implementation")
    p.add_argument("--canonical", action="store_true", help="only the canonical variant of each architecture")
    p.add_argument("--device", default="cpu", help="cpu or cuda (cuda also times bf16 autocast, CNNs channels_last)")
    p.add_argument("--batch", type=positive(int), default=2, help="examples per call (default 2: BatchNorm in "
                   "training mode needs two values per channel after global pooling)")
    p.add_argument("--train", action="store_true", help="also time a training step (forward, backward, SGD step)")
    p.add_argument("--max-image-size", type=positive(int), metavar="PIXELS",
                   help="shrink larger images (and a detector's resizing) to this many pixels a side, for the models "
                   "that take any size (DeepLabV3's 520 and the R-CNNs' 800 cost minutes on a CPU)")
    p.add_argument("--repeats", type=positive(int), default=5,
                   help="timed samples per model and phase (the median is shown)")
    p.add_argument("--warmup", type=non_negative_int, default=2, help="untimed calls before the samples")
    p.add_argument("--threads", type=positive(int), help="torch intra-op threads (default: torch's)")
    p.add_argument("--precision", action="append", choices=("fp32", "bf16"),
                   help="repeatable (default: fp32 on CPU; fp32 and bf16 on CUDA)")
    p.add_argument("--compile", nargs="?", const="inductor", metavar="BACKEND",
                   help="also time both models wrapped by torch.compile with this backend (default inductor), beside "
                   "eager; compiling takes seconds to minutes a model")
    p.add_argument("--memory", action="store_true",
                   help="also the peak training memory with and without gradient checkpointing, where a model has it")
    p.add_argument("--json", metavar="PATH", help="write every measurement as JSON")
    p.add_argument("--markdown", metavar="PATH", help="write the tables as Markdown (for the docs)")
    p.add_argument("--label", default="", help="a description of the machine for the report")
    p.add_argument("--no-import-time", action="store_true", help="skip timing `import paperzoo` in fresh processes")
    p.add_argument("--import-repeats", type=positive(int), default=5, help="fresh interpreters for the import time")
    p.set_defaults(handler=_bench)
    return parser


def _unrecognized(unknown: list[str], command: str) -> str:
    """argparse's message, and for ``train`` where a model's own setting goes (the flags --num-layers,
    --hidden-size and --num-heads were replaced by --model-kwargs, as timm's train.py takes them)."""
    message = "unrecognized arguments: " + " ".join(unknown)
    option = next((i for i, arg in enumerate(unknown) if arg.startswith("--")), None)
    if command == "train" and option is not None:
        key, _, value = unknown[option][2:].partition("=")
        if not value and option + 1 < len(unknown) and not unknown[option + 1].startswith("-"):
            value = unknown[option + 1]
        message += (f"; a model's own settings go in --model-kwargs, e.g. --model-kwargs "
                    f"{key.replace('-', '_')}={value or 'VALUE'}")
    return message


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(with_task_options="train" in argv[:1])
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        parser.error(_unrecognized(unknown, args.command))
    console = Console()
    if not console.is_terminal:  # piped or captured: rich would assume 80 columns and cut the numbers
        console = Console(width=max(console.width, 160))
    try:
        return args.handler(args, console)
    except (UnknownModelError, ValueError, ImportError) as err:  # a wrong name, option, file or missing extra
        # escaped: a message's square brackets (pip install 'paperzoo[train]', masks[k]) are not Rich markup
        Console(stderr=True, soft_wrap=True).print(f"[red]error:[/] {escape(_one_line(err))}", highlight=False)
        return 2


def _one_line(err: Exception) -> str:
    """The error's message; one raised in a DataLoader worker (--workers) comes back with the worker's traceback
    in it ("Caught ValueError in DataLoader worker process 0. Original Traceback ..."): its last line, our own."""
    message = str(err)
    if "\nOriginal Traceback" not in message:
        return message
    return message.rstrip().splitlines()[-1].removeprefix(f"{type(err).__name__}: ")


if __name__ == "__main__":
    sys.exit(main())
