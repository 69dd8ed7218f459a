"""The ``paperzoo`` command, driven as a user drives it: in a subprocess, reading its output and exit code."""

from __future__ import annotations

import dataclasses
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import paperzoo
from paperzoo import cli, registry


def paperzoo_command() -> str:
    beside_python = Path(sys.executable).with_name("paperzoo")
    found = str(beside_python) if beside_python.exists() else shutil.which("paperzoo")
    assert found, "the console script `paperzoo` is not installed: pip install -e ."
    return found


def run(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "COLUMNS": "200"}
    return subprocess.run([paperzoo_command(), *args], capture_output=True, text=True, env=env, timeout=600)


def test_list():
    result = run("list")
    assert result.returncode == 0, result.stderr
    assert f"{len(paperzoo.list_models())} models" in result.stdout
    assert "resnet50 *" in result.stdout and "ResNet-50" in result.stdout and "25,557,032" in result.stdout


def test_list_with_pattern_and_task():
    result = run("list", "vgg1?_bn", "--task", "image-classification")
    assert result.returncode == 0, result.stderr
    assert "vgg16_bn" in result.stdout and "4 models" in result.stdout and "resnet50" not in result.stdout


def test_list_markdown_is_the_readme_table():
    result = run("list", "--format", "markdown")
    assert result.returncode == 0
    assert result.stdout.strip() == cli.markdown_table(paperzoo.list_models())


def test_list_info_and_help_import_no_model_file_and_no_torch():
    # info on a model with weights, one without (the reason read from its reference), one whose reference is a
    # transformers class (the configuration fields from_pretrained reads) and a layer
    code = ("import sys; from paperzoo import cli; cli.main(['list'])\n"
            "for name in ('maskrcnn_resnet50_fpn', 'unet', 'bert_base', 'lstm'): cli.main(['info', name])\n"
            "try: cli.main(['--help'])\nexcept SystemExit: pass\n"
            "print(sorted(m for m, module in sys.modules.items() if m.split('.')[0] in ('torch', 'torchvision') "
            "or m.startswith('paperzoo.models.') and not hasattr(module, '__path__')))")  # files, not packages
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "Mask R-CNN" in result.stdout and "usage: paperzoo" in result.stdout
    assert "BertConfig: " in result.stdout and "none published" in result.stdout
    assert result.stdout.strip().splitlines()[-1] == "[]"


def test_a_plain_word_lists_the_names_it_begins():
    result = run("list", "resnet")
    assert result.returncode == 0, result.stderr
    assert "5 models" in result.stdout and "resnet152" in result.stdout and "seresnet50" not in result.stdout
    one = run("list", "alexnet")
    assert re.search(r"\b1 model\b(?!s)", one.stdout) and "AlexNet" in one.stdout


@pytest.mark.parametrize("args, message", [
    (["list", "zzz"], "no model matches 'zzz'"),
    (["list", "resnet*", "--task", "speech"], "no speech model matches 'resnet*'"),
    (["list", "resnt50"], "no model matches 'resnt50'; did you mean resnet50"),
    (["tour", "zzz*"], "no canonical model matches 'zzz*'"),
])
def test_nothing_matching_exits_2_and_says_so(args, message):
    result = run(*args)
    assert result.returncode == 2 and message in result.stderr, result.stdout + result.stderr
    assert "all 0" not in result.stdout and "Traceback" not in result.stderr


def test_version():
    result = run("--version")
    assert result.returncode == 0 and result.stdout.strip() == f"paperzoo {paperzoo.__version__}"


def test_square_brackets_are_printed_not_read_as_markup(monkeypatch, capsys):
    result = run("info", "vit[b]")
    assert result.returncode == 2 and "unknown model 'vit[b]'" in result.stderr
    assert "x_l = H_l([x_0, ..., x_l-1])" in run("info", "densenet121").stdout  # a card's own brackets

    def needs_an_extra(args, console):
        raise ImportError("paperzoo train needs scikit-learn: pip install 'paperzoo[train]'")

    monkeypatch.setattr(cli, "_list", needs_an_extra)
    assert cli.main(["list"]) == 2
    assert "pip install 'paperzoo[train]'" in capsys.readouterr().err


def test_info_shows_the_card():
    result = run("info", "resnet50")
    assert result.returncode == 0, result.stderr
    for text in ("Deep Residual Learning for Image Recognition", "25,557,032 published ",
                 "4.089 on the card", "torchvision.models.resnet50", "classification/resnet.py"):
        assert text in result.stdout, text
    assert "measured" not in result.stdout


def test_info_measure():
    result = run("info", "resnet50", "--measure")
    assert result.returncode == 0, result.stderr
    for text in ("Deep Residual Learning for Image Recognition", "25,557,032 measured, 25,557,032 published ✓",
                 "4.089 measured, 4.089 on the card", "torchvision.models.resnet50", "classification/resnet.py",
                 "sgd (momentum 0.9), lr 0.1 at batch 128, weight decay 0.0001, step ×0.1 at 50%, 75%, 1 warm-up"):
        assert text in result.stdout, text


def test_run():
    result = run("run", "alexnet", "--batch-size", "2")
    assert result.returncode == 0, result.stderr
    assert "61,100,840 parameters ✓" in result.stdout
    assert ("random weights, so the outputs below show shapes, not predictions (`paperzoo predict alexnet IMAGE "
            "--pretrained` uses the published ones)") in " ".join(result.stdout.split())
    assert "input (2, 3, 224, 224) → output (2, 1000)" in result.stdout


def test_tour_checks_every_canonical_model():
    """The README's first command, over every canonical model, on the meta device: each one built, counted and
    traced to its output's shape, in seconds. The forward with values is the contract tests' (the same example
    input, at full size); the command's own CPU path is the next test's."""
    result = run("tour", "--device", "meta")
    assert result.returncode == 0, result.stdout + result.stderr
    canonical = paperzoo.list_models(canonical_only=True)
    assert f"all {len(canonical)} canonical models match" in result.stdout
    assert "on the meta device (structure only)" in result.stdout
    for name in canonical:
        card = paperzoo.model_card(name)
        with torch.device("meta"):
            model = paperzoo.create_model(name)  # built once for both figures
        measured = re.escape(f"{paperzoo.count_parameters(model):,}")
        published = re.escape(f"{card.params:,}")  # equal, or the paper's rounded figure within its precision
        assert re.search(rf"│ {name}\s.*{published}\s*│\s*{measured}\s*│ ✓ │", result.stdout), name
        if card.task == "image-classification":
            assert re.search(rf"│ {name}\s.*│ ✓ │ \(1, {model.num_classes}\)", result.stdout), name


def test_tour_runs_each_model_forward_on_the_cpu():
    result = run("tour", "squeezenet1_0")
    assert result.returncode == 0, result.stdout + result.stderr
    assert re.search(r"│ squeezenet1_0\s.*│ ✓ │ \(1, 1000\)\s*│\s*\d+ ms │", result.stdout), result.stdout
    assert "the canonical model matches its published parameter count" in result.stdout


def test_tour_refuses_a_device_it_cannot_use(monkeypatch, capsys):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert cli.main(["tour", "alexnet", "--device", "cuda"]) == 2
    assert "--device cuda: CUDA is not available here" in capsys.readouterr().err
    assert cli.main(["tour", "alexnet", "--device", "tpu9"]) == 2
    assert "--device tpu9: expected cpu, cuda, cuda:N or meta" in capsys.readouterr().err


def test_tour_fails_on_a_parameter_mismatch(monkeypatch, capsys):
    entry = registry._entry("alexnet")
    wrong = dataclasses.replace(entry.card, params=entry.card.params + 1)
    monkeypatch.setitem(registry._REGISTRY, "alexnet", dataclasses.replace(entry, card=wrong))
    assert cli.main(["tour", "alexnet"]) == 1
    assert "1 of 1 failed: alexnet" in capsys.readouterr().out


def test_unknown_model_exits_2_with_a_suggestion():
    for command in ("info", "run"):
        result = run(command, "resnt50")
        assert result.returncode == 2
        assert "unknown model 'resnt50'; did you mean resnet50" in result.stderr
        assert "Traceback" not in result.stderr


@pytest.mark.parametrize("args", [
    ["list", "--task", "nonsense"], ["frobnicate"], ["run", "resnet50", "--batch-size", "two"], [],
])
def test_wrong_options_exit_2_with_usage(args):
    result = run(*args)
    assert result.returncode == 2
    assert "usage: paperzoo" in result.stderr and "Traceback" not in result.stderr
    if "two" in args:
        assert "argument --batch-size: expected an integer, got 'two'" in result.stderr


@pytest.mark.parametrize("args, unknown, hint", [
    (["train", "gpt", "--num-layers", "2", "--epochs", "1"], "--num-layers 2",
     "; a model's own settings go in --model-kwargs, e.g. --model-kwargs num_layers=2"),
    (["train", "resnet18", "--stem-width=16"], "--stem-width=16", "--model-kwargs stem_width=16"),
    (["train", "resnet18", "--drop-path"], "--drop-path", "--model-kwargs drop_path=VALUE"),
    (["list", "--num-layers"], "--num-layers", None),  # only train builds a model from keywords
])
def test_an_unknown_option_of_train_points_to_model_kwargs(args, unknown, hint, capsys):
    """--num-layers, --hidden-size and --num-heads were train's options once; they, and any model keyword written
    as an option, are now told where they go instead of argparse's bare refusal."""
    with pytest.raises(SystemExit) as exit_:
        cli.main(args)
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and f"unrecognized arguments: {unknown}" in err
    assert (hint in err) if hint else "--model-kwargs" not in err


def test_a_model_file_runs_its_example():
    result = subprocess.run([sys.executable, "-m", "paperzoo.models.classification.resnet"], capture_output=True,
                            text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    assert "input (1, 3, 224, 224) → output (1, 1000)" in result.stdout


def test_python_dash_m_paperzoo():
    result = subprocess.run([sys.executable, "-m", "paperzoo", "list", "alexnet"], capture_output=True, text=True)
    assert result.returncode == 0 and "AlexNet" in result.stdout
