"""The ``paperzoo`` command: ``list``, ``info``, ``run``, ``tour``, ``train`` and ``bench``.

Built on the public API only. Every command that takes a model name exits with status 2 and a
"did you mean" line for an unknown name; ``tour`` exits with status 1 if any canonical model's measured
parameter count differs from its card or its example forward pass fails.
"""

from __future__ import annotations

import argparse
import inspect
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from paperzoo.measure import count_parameters, measure_gmacs, run_example
from paperzoo.registry import (
    TASKS,
    TrainingRecipe,
    UnknownModelError,
    create_model,
    list_models,
    model_builder,
    model_card,
)


def describe_output(output: Any) -> str:
    """Shapes of whatever a forward pass returns: a tensor, a tuple or list of them, or a dict."""
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
    """The README's model table: one row per registered variant."""
    rows = ["| name | architecture | year | task | parameters | reference |",
            "| --- | --- | --- | --- | ---: | --- |"]
    for name in names:
        card = model_card(name)
        rows.append(f"| `{name}` | {card.architecture} | {card.paper.year} | {card.task} | "
                    f"{card.params:,} | {card.reference} |")
    return "\n".join(rows)


def _list(args: argparse.Namespace, console: Console) -> int:
    names = list_models(args.pattern, task=args.task)
    if args.format == "markdown":
        print(markdown_table(names))
        return 0
    table = Table(title=f"{len(names)} models")
    for column in ("name", "architecture", "year", "task", "parameters"):
        table.add_column(column, justify="right" if column == "parameters" else "left", no_wrap=True)
    table.add_column("reference", overflow="fold", max_width=48)  # the one column that wraps: some carry kwargs
    for name in names:
        card = model_card(name)
        table.add_row(name + (" *" if card.canonical else ""), card.architecture, str(card.paper.year),
                      card.task, f"{card.params:,}", card.reference)
    console.print(table)
    console.print("* the canonical variant of its architecture")
    return 0


def _info(args: argparse.Namespace, console: Console) -> int:
    card = model_card(args.name)
    with torch.device("meta"):  # measure without allocating the weights
        model = create_model(args.name).eval()
        params = count_parameters(model)
        gmacs = measure_gmacs(model, card.example_input(1))
    source = Path(inspect.getsourcefile(model_builder(args.name)) or "?")
    mark = "[green]✓[/]" if card.params_match(params) else "[red]✗[/]"
    table = Table(show_header=False, title=f"{card.name}: {card.architecture}")
    table.add_row("task", card.task)
    table.add_row("paper", f"{card.paper.title} ({card.paper.year})")
    table.add_row("authors", card.paper.authors)
    table.add_row("url", card.paper.url)
    table.add_row("innovations", "\n".join(f"• {line}" for line in card.innovations))
    table.add_row("input", card.input.describe())
    table.add_row("parameters", f"{params:,} measured, {card.params:,} published {mark}\n({card.params_source})")
    table.add_row("GMACs", f"{gmacs:.3f} measured, {card.gmacs:.3f} on the card" + (
        "\n(the dense network up to the first data-dependent step: backbone, neck, dense heads)"
        if card.input.kind == "image-list" else ""))
    table.add_row("reference", card.reference)
    from paperzoo.interop.huggingface import accepted_config_fields

    if fields := accepted_config_fields(card.name):  # what from_pretrained reads, the reference's names first
        table.add_row("config fields", fields)
    if card.recipe is not None:
        table.add_row("recipe", describe_recipe(card.recipe))
    if card.notes:
        table.add_row("notes", card.notes)
    table.add_row("file", str(source))
    console.print(table)
    return 0


def _run(args: argparse.Namespace, console: Console) -> int:
    card = model_card(args.name)
    console.print(f"[bold]{card.architecture}[/] ({card.paper.title}, {card.paper.year})")
    start = time.perf_counter()
    model = create_model(args.name).eval()
    built = time.perf_counter() - start
    params = count_parameters(model)
    mark = "✓" if card.params_match(params) else f"✗ (published {card.params:,})"
    console.print(f"built in {built:.2f} s: {params:,} parameters {mark}")
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
    names = list_models(args.pattern, canonical_only=True)
    table = Table(title="the zoo: canonical models")
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
                model = create_model(name).eval()
                params = count_parameters(model)
                with torch.no_grad():
                    start = time.perf_counter()
                    output = describe_result(run_example(model, card.example_input(1)))
                    elapsed = f"{(time.perf_counter() - start) * 1000:.0f} ms"
                ok = card.params_match(params)
                measured = f"{params:,}"
            except Exception as err:  # a tour reports every model, then fails at the end
                ok, measured, output, elapsed = False, "error", f"{type(err).__name__}: {err}", "-"
            if not ok:
                failures.append(name)
            table.add_row(name, card.architecture, str(card.paper.year), f"{card.params:,}", measured,
                          "[green]✓[/]" if ok else "[red]✗[/]", output, elapsed)
            del model
            progress.advance(task)
    console.print(table)
    if failures:
        console.print(f"[red]{len(failures)} of {len(names)} failed: {', '.join(failures)}[/]")
        return 1
    console.print(f"[green]all {len(names)} canonical models match their published parameter counts[/]")
    return 0


def _train(args: argparse.Namespace, console: Console) -> int:
    from paperzoo.training import distributed
    from paperzoo.training.loop import TrainConfig, train

    data = args.data[0]
    if len(args.data) > 2 or (data == "digits" and len(args.data) != 1):
        raise ValueError("--data takes `digits` or `folder PATH`")
    config = TrainConfig(model=args.name, data=data, data_path=args.data[1] if len(args.data) == 2 else None,
                         epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, image_size=args.image_size,
                         device=args.device, amp=args.amp, out=args.out, resume=args.resume, seed=args.seed,
                         workers=args.workers)
    main_process = distributed.Context(int(os.environ.get("RANK", "0"))).is_main
    columns = [TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
               TextColumn("loss {task.fields[loss]:.4f}  acc {task.fields[accuracy]:.2%}  "
                          "{task.fields[rate]:.0f} img/s"),
               TimeElapsedColumn()]

    def report(row: dict[str, Any]) -> None:
        console.print(f"epoch {row['epoch']}: train loss {row['train_loss']:.4f} acc {row['train_accuracy']:.2%} | "
                      f"test loss {row['test_loss']:.4f} acc {row['test_accuracy']:.2%} | "
                      f"{row['images_per_second']:.0f} img/s, lr {row['lr']:.3g}")

    class _Fields(Progress):  # every epoch's bar starts with its metric fields at zero
        def add_task(self, description: str, **kwargs: Any) -> Any:
            return super().add_task(description, loss=0.0, accuracy=0.0, rate=0.0, **kwargs)

    with _Fields(*columns, console=console, disable=not main_process) as progress:
        summary = train(config, on_epoch=report, progress=progress if main_process else None)
    if main_process:
        table = Table(title=f"trained {summary['model']}", show_header=False)
        accuracy, best = summary["final_test_accuracy"], summary["best_test_accuracy"]
        table.add_row("test accuracy", f"{accuracy:.2%} (best {best:.2%})")
        table.add_row("train loss", f"{summary['first_train_loss']:.4f} → {summary['final_train_loss']:.4f}")
        table.add_row("processes", f"{summary['world_size']} (replicas identical: {summary['replicas_identical']})")
        table.add_row("time", f"{summary['seconds_this_run']:.1f} s")
        table.add_row("written to", f"{summary['out']}: checkpoint.pt, model.safetensors, metrics.jsonl, "
                                    "metrics.png, summary.json")
        console.print(table)
    return 0


def _bench(args: argparse.Namespace, console: Console) -> int:
    import json

    from paperzoo import benchmark

    if not args.names and not args.all:
        raise ValueError("name the models to benchmark (names or wildcards such as 'resnet*'), or pass --all")
    if args.all:
        names = benchmark.referenced_models(canonical_only=args.canonical)
        paper_only = len(list_models(canonical_only=args.canonical)) - len(names)
        console.print(f"{len(names)} models with a reference implementation; {paper_only} more have only their "
                      "paper as reference and are skipped", highlight=False)
    else:
        names = benchmark.select_models(args.names, canonical_only=args.canonical)
    if args.threads:
        torch.set_num_threads(args.threads)
    threads = torch.get_num_threads()
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"--device {args.device}: CUDA is not available here")
    settings = benchmark.Settings(device=args.device, batch=args.batch, repeats=args.repeats, warmup=args.warmup,
                                  train=args.train, precisions=tuple(args.precision or ()),
                                  max_image_size=args.max_image_size)
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
            console.print(f"[yellow]skipped[/] {name}: {result.reason}", highlight=False)
        elif result.status == "error":
            console.print(f"[red]error[/] {name}: {result.reason}", highlight=False)
        else:
            console.print(f"[green]done[/] {name} in {time.perf_counter() - start:.1f} s", highlight=False)
        results.append(result)
        write(results)
        if args.device.startswith("cuda"):  # hand the pair's memory back before the next, larger one
            import gc

            gc.collect()
            torch.cuda.empty_cache()
    print(write(results))
    return 1 if any(result.status == "error" for result in results) else 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="paperzoo", description="Landmark neural networks, each "
                                     "readable like its paper and proven equal to its reference.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = commands.add_parser("list", help="the registered models, as a table")
    p.add_argument("pattern", nargs="?", default="*", help="shell wildcard, e.g. 'resnet*'")
    p.add_argument("--task", choices=TASKS, help="only models of this task")
    p.add_argument("--format", choices=("table", "markdown"), default="table",
                   help="markdown prints the README's model table")
    p.set_defaults(handler=_list)

    p = commands.add_parser("info", help="a model's card, measured parameters and GMACs, and its file")
    p.add_argument("name")
    p.set_defaults(handler=_info)

    p = commands.add_parser("run", help="build one model, count it, and run its example input")
    p.add_argument("name")
    p.add_argument("--batch-size", type=int, default=1)
    p.set_defaults(handler=_run)

    p = commands.add_parser("train", help="train an image classifier on the bundled digits or your own images")
    p.add_argument("name")
    p.add_argument("--data", nargs="+", default=["digits"], metavar="digits|folder PATH",
                   help="scikit-learn's bundled digits (default), or an ImageFolder tree: --data folder PATH")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--batch-size", type=int, help="per process (default: the paper's recipe on the card)")
    p.add_argument("--lr", type=float, help="peak learning rate (default: the paper's recipe on the card)")
    p.add_argument("--image-size", type=int, help="input height and width (default: the card's input)")
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (under torchrun: cuda picks the local rank)")
    p.add_argument("--amp", action="store_true", help="mixed precision (bfloat16 on CPU, float16 on CUDA)")
    p.add_argument("--out", help="output folder (default: runs/NAME)")
    p.add_argument("--resume", metavar="CKPT", help="continue from a checkpoint.pt of an earlier run")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workers", type=int, default=0, help="data-loading worker processes")
    p.set_defaults(handler=_train)

    p = commands.add_parser("tour", help="every canonical model: published vs measured parameters, a forward pass")
    p.add_argument("pattern", nargs="?", default="*", help="only the canonical models matching this wildcard")
    p.set_defaults(handler=_tour)

    p = commands.add_parser("bench", help="time ours against the reference implementations, with the same weights")
    p.add_argument("names", nargs="*", metavar="NAME", help="names or shell wildcards, e.g. resnet50 'vit_*'")
    p.add_argument("--all", action="store_true", help="every model whose card names a reference implementation")
    p.add_argument("--canonical", action="store_true", help="only the canonical variant of each architecture")
    p.add_argument("--device", default="cpu", help="cpu or cuda (cuda also times bf16 autocast, CNNs channels_last)")
    p.add_argument("--batch", type=int, default=2, help="examples per call (default 2: BatchNorm in training mode "
                   "needs two values per channel after global pooling)")
    p.add_argument("--train", action="store_true", help="also time a training step (forward, backward, SGD step)")
    p.add_argument("--max-image-size", type=int, metavar="PIXELS",
                   help="shrink larger images (and a detector's resizing) to this many pixels a side, for the models "
                   "that take any size (DeepLabV3's 520 and the R-CNNs' 800 cost minutes on a CPU)")
    p.add_argument("--repeats", type=int, default=5, help="timed samples per model and phase (the median is shown)")
    p.add_argument("--warmup", type=int, default=2, help="untimed calls before the samples")
    p.add_argument("--threads", type=int, help="torch intra-op threads (default: torch's)")
    p.add_argument("--precision", action="append", choices=("fp32", "bf16"),
                   help="repeatable (default: fp32 on CPU; fp32 and bf16 on CUDA)")
    p.add_argument("--memory", action="store_true",
                   help="also the peak training memory with and without gradient checkpointing, where a model has it")
    p.add_argument("--json", metavar="PATH", help="write every measurement as JSON")
    p.add_argument("--markdown", metavar="PATH", help="write the tables as Markdown (for the docs)")
    p.add_argument("--label", default="", help="a description of the machine for the report")
    p.add_argument("--no-import-time", action="store_true", help="skip timing `import paperzoo` in fresh processes")
    p.add_argument("--import-repeats", type=int, default=5, help="fresh interpreters for the import time")
    p.set_defaults(handler=_bench)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    console = Console()
    if not console.is_terminal:  # piped or captured: rich would assume 80 columns and cut the numbers
        console = Console(width=max(console.width, 160))
    try:
        return args.handler(args, console)
    except (UnknownModelError, ValueError, ImportError) as err:  # a wrong name, option, file or missing extra
        Console(stderr=True, soft_wrap=True).print(f"[red]error:[/] {err}", highlight=False)
        return 2


if __name__ == "__main__":
    sys.exit(main())
