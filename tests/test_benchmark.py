"""The benchmark's machinery (``paperzoo bench``, ``paperzoo.benchmark``): what it builds, checks, reports and
writes. No test here asserts a speed: the numbers depend on the machine and its load, and the benchmark measures
them; these tests check that the measuring is done right.

Measured on one thread: the command-line test (with its import probe) takes 7 s of CPU time (55 s of wall time on
the 2-core machine shared by 8 jobs), the rest 2 s.
"""

from __future__ import annotations

import json
import math
import os
import statistics
import subprocess
import sys

import pytest
import torch

import paperzoo
from paperzoo import benchmark, cli


def test_bench_command_writes_consistent_json_and_markdown(tmp_path):
    """Two small referenced models (torch.nn's GRU and LSTM) and one whose reference is the paper."""
    json_path, markdown_path = tmp_path / "out" / "bench.json", tmp_path / "bench.md"
    result = subprocess.run(
        [sys.executable, "-m", "paperzoo", "bench", "gru", "lstm", "capsnet", "--train", "--batch", "2",
         "--repeats", "2", "--warmup", "0", "--threads", "1", "--import-repeats", "1", "--label", "test machine",
         "--json", str(json_path), "--markdown", str(markdown_path)],
        capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "skipped capsnet: no reference implementation" in " ".join(result.stdout.split())
    data = json.loads(json_path.read_text())
    assert data["machine"]["label"] == "test machine" and data["machine"]["threads"] == 1
    assert data["settings"]["precisions"] == ["fp32"] and data["settings"]["batch"] == 2
    measured = data["import_time"]  # in a fresh interpreter; its size is the benchmark's to report, not ours
    assert measured["repeats"] == 1 and measured["target_s"] == 0.2 and len(measured["paperzoo_samples_s"]) == 1
    assert measured["torch_s"] > 0 and measured["paperzoo_s"] > 0
    rows = {row["model"]: row for row in data["results"]}
    assert list(rows) == ["gru", "lstm", "capsnet"]
    assert rows["capsnet"]["status"] == "skipped" and rows["capsnet"]["timings"] == {}
    ratios = {"forward": [], "train": []}
    for name in ("gru", "lstm"):
        assert rows[name]["status"] == "ok", rows[name]["reason"]
        assert rows[name]["max_relative_difference"] <= benchmark.PARITY_TOLERANCE
        for phase in ("forward", "train"):
            timing = rows[name]["timings"]["fp32"][phase]
            assert len(timing["ours_samples_ms"]) == len(timing["reference_samples_ms"]) == 2
            assert timing["ours_ms"] == pytest.approx(statistics.median(timing["ours_samples_ms"]))
            assert timing["reference_ms"] == pytest.approx(statistics.median(timing["reference_samples_ms"]))
            assert timing["ratio"] == pytest.approx(timing["ours_ms"] / timing["reference_ms"])
            ratios[phase].append(timing["ratio"])
    for phase, values in ratios.items():
        summary = data["summary"]["fp32"][phase]
        assert summary["models"] == 2
        assert summary["geometric_mean"] == pytest.approx(math.sqrt(values[0] * values[1]))
    text = markdown_path.read_text()
    assert "| `gru` | torch.nn.GRU(input_size=256, hidden_size=512, batch_first=True) |" in text
    assert f"{rows['gru']['timings']['fp32']['train']['ratio']:.2f}" in text
    assert "`capsnet` (skipped): no reference implementation" in text
    assert "test machine" in text and "`import paperzoo` adds" in text
    # the terminal gets the report rendered, not its Markdown source
    assert "**float32**" not in result.stdout and "| --- |" not in result.stdout
    assert "float32" in result.stdout and "torch.nn.GRU(input_size=256" in result.stdout


def test_compiled_phases_beside_the_eager_ones(tmp_path, capsys):
    """--compile BACKEND times both phases again with ours and the reference each wrapped by torch.compile
    (here with Dynamo's "eager" backend: the same wrapping and graph capture as inductor, without compiling the
    graph), reports each side's speed-up over its own eager timing, and tables them beside the eager columns."""
    json_path, markdown_path = tmp_path / "bench.json", tmp_path / "bench.md"
    assert cli.main(["bench", "gru", "--train", "--compile", "eager", "--batch", "2", "--repeats", "1",
                     "--warmup", "0", "--threads", "1", "--no-import-time", "--json", str(json_path),
                     "--markdown", str(markdown_path)]) == 0
    data = json.loads(json_path.read_text())
    assert data["settings"]["compile"] == "eager"
    assert data["settings"]["phases"] == ["forward", "train", "compiled forward", "compiled train"]
    (row,) = data["results"]
    assert row["status"] == "ok", row["reason"]
    timings = row["timings"]["fp32"]
    for phase in ("forward", "train"):
        eager, compiled = timings[phase], timings[f"compiled {phase}"]
        assert compiled["ratio"] == pytest.approx(compiled["ours_ms"] / compiled["reference_ms"])
        speedup = data["summary"]["fp32"][f"compiled {phase}"]["speedup"]
        assert speedup["ours"] == pytest.approx(eager["ours_ms"] / compiled["ours_ms"])
        assert speedup["reference"] == pytest.approx(eager["reference_ms"] / compiled["reference_ms"])
        assert "speedup" not in data["summary"]["fp32"][phase]
    text = markdown_path.read_text()
    assert "| compiled forward ours (ms) | reference (ms) | ratio | compiled train step ours (ms) |" in text
    assert 'torch.compile(backend="eager")' in text
    assert f"{timings['compiled train']['ratio']:.2f}" in text


def test_a_compiled_pair_whose_outputs_differ_is_not_timed(monkeypatch):
    """The compiled pair is checked like the eager one: a compiled model that computed something else is reported,
    its compiled phases not timed, the eager ones still are."""
    def compiled_wrongly(pair, backend):
        class Doubled(torch.nn.Module):
            def __init__(self, model):
                super().__init__()
                self.model = model

            def forward(self, x):
                output, state = self.model(x)
                return 2 * output, state
        return benchmark.Pair(pair.name, pair.card, pair.library, Doubled(pair.ours), pair.reference)

    monkeypatch.setattr(benchmark, "compiled", compiled_wrongly)
    result = benchmark.benchmark_model("gru", benchmark.Settings(repeats=1, warmup=0, compile="aot_eager"))
    timings = result.timings["fp32"]
    assert "ratio" in timings["forward"] and "ratio" in timings["train"]
    assert "differ" in timings["compiled forward"]["error"] and result.status == "error"
    assert timings["compiled train"]["error"] == timings["compiled forward"]["error"]


def test_a_compiled_pair_is_checked_from_the_state_the_eager_pair_was_checked_in(monkeypatch):
    """The training phase steps ours and the reference as many times as each is timed for, which differs; with
    BatchNorm their eval outputs then differ by several percent (DeepLabV3 7%, EfficientNet-B0 6%, measured), so
    the compiled pair's check refused every such model until both were given back the checked state."""
    def uneven(functions, device, **kwargs):  # ours stepped three times, the reference once
        for key, function in functions.items():
            for _ in range(3 if key == "ours" else 1):
                function()
        return {key: [1.0] for key in functions}

    monkeypatch.setattr(benchmark, "time_interleaved", uneven)
    monkeypatch.setattr(benchmark, "compiled", lambda pair, backend: pair)  # the check, not the compiler, is tested
    result = benchmark.benchmark_model("resnet18", benchmark.Settings(batch=2, repeats=1, warmup=0, compile="eager",
                                                                       max_image_size=32))
    assert result.status == "ok", result.reason
    assert set(result.timings["fp32"]) == {"forward", "train", "compiled forward", "compiled train"}


def test_an_unknown_compile_backend_exits_2(capsys):
    assert cli.main(["bench", "gru", "--compile", "inductr", "--no-import-time"]) == 2
    err = capsys.readouterr().err
    assert "--compile inductr: not a torch.compile backend here; expected one of" in err and "inductor" in err


def _report_with_ratios(*ratios: float) -> dict:
    """A report as ``benchmark.report`` shapes it, with one forward timing per ratio."""
    rows = [{"model": f"m{i}", "reference": "ref", "status": "ok", "reason": "", "notes": [],
             "timings": {"fp32": {"forward": {"ours_ms": ratio, "reference_ms": 1.0, "ratio": ratio}}}}
            for i, ratio in enumerate(ratios)]
    return {"machine": {"label": "x", "processor": "x", "cpu_count": 2, "threads": 1, "torch": "2"},
            "settings": {"device": "cpu", "batch": 1, "repeats": 1, "warmup": 0, "train": False,
                         "precisions": ["fp32"]},
            "summary": {"fp32": {"forward": {"geometric_mean": 1.0, "models": len(ratios)}}}, "results": rows}


def test_the_warning_legend_appears_only_with_a_flagged_row():
    assert "⚠" not in benchmark.markdown(_report_with_ratios(1.0, 1.10))
    flagged = benchmark.markdown(_report_with_ratios(1.0, 1.25))
    assert "| 1.25 ⚠ |" in flagged and "⚠: above 1.10." in flagged


def test_unknown_name_exits_2(capsys):
    assert cli.main(["bench", "resnet5O"]) == 2
    assert "resnet50" in capsys.readouterr().err  # the "did you mean" line
    assert cli.main(["bench", "nothing_like_this_*"]) == 2
    assert cli.main(["bench"]) == 2


@pytest.mark.parametrize("option, message", [
    (["--batch", "0"], "--batch: must be positive, got 0"),  # each model failed on an empty batch, exit 1
    (["--repeats", "0"], "--repeats: must be positive, got 0"),  # "no median for empty data"
    (["--import-repeats", "0"], "--import-repeats: must be positive, got 0"),
    (["--warmup", "-1"], "--warmup: must be 0 or more, got -1"),  # ran as if 0
    (["--max-image-size", "0"], "--max-image-size: must be positive, got 0"),  # ran as if not given
])
def test_options_no_benchmark_can_take_exit_2(option, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["bench", "gru", "--no-import-time", *option])
    assert exit_info.value.code == 2 and message in capsys.readouterr().err


def test_devices_bench_cannot_time_are_one_line(capsys, monkeypatch):
    """The meta device computes nothing: each model failed on "Tensor.item() cannot be called on meta tensors"."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    for device, message in [("meta", "--device meta: bench times computations: expected cpu, cuda or cuda:N"),
                            ("cuda", "--device cuda: CUDA is not available here; use cpu\n"),
                            ("tpu", "--device tpu: bench times computations: expected cpu, cuda or cuda:N")]:
        assert cli.main(["bench", "gru", "--no-import-time", "--device", device]) == 2
        assert message in capsys.readouterr().err


def test_threads_hold_for_the_run_and_the_caller_keeps_its_own(tmp_path, capsys):
    """--threads sets torch's count for the benchmark only: called in a process (a notebook, a test), the process
    keeps its own count afterwards (it used to keep the benchmark's)."""
    before = torch.get_num_threads()
    json_path = tmp_path / "bench.json"
    assert cli.main(["bench", "gru", "--threads", str(before + 1), "--batch", "1", "--repeats", "1", "--warmup", "0",
                     "--no-import-time", "--json", str(json_path)]) == 0
    assert json.loads(json_path.read_text())["machine"]["threads"] == before + 1
    assert torch.get_num_threads() == before
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["bench", "gru", "--threads", "0"])
    assert exit_info.value.code == 2 and "must be positive, got 0" in capsys.readouterr().err


def test_a_failed_conversion_is_refused():
    """A reference of another size cannot give its weights to ours: the pair is not built, so it is never timed."""
    with pytest.raises(benchmark.BenchmarkError, match="converting the weights"):
        benchmark.build_pair("gru", reference="torch.nn.GRU(input_size=256, hidden_size=256, batch_first=True)")


def test_a_pair_whose_outputs_differ_is_reported_and_not_timed(monkeypatch):
    pair = benchmark.build_pair("gru")
    x = pair.card.example_input(2)
    assert benchmark.check_same_outputs(pair, x) <= 1e-6  # the converted pair: the same network
    with torch.no_grad():
        pair.ours.weight_hh_l0[0, 0] += 0.5
    with pytest.raises(benchmark.BenchmarkError, match="differ"):
        benchmark.check_same_outputs(pair, x)
    # A converter that silently copies nothing: the benchmark reports the model, with no timings.
    monkeypatch.setattr(benchmark, "load_weights", lambda model, weights, source: model)
    result = benchmark.benchmark_model("gru", benchmark.Settings(repeats=1, warmup=0))
    assert result.status == "error" and "differ" in result.reason and result.timings == {}


def test_time_interleaved_alternates_the_order():
    calls = []
    samples = benchmark.time_interleaved({"ours": lambda: calls.append("o"), "reference": lambda: calls.append("r")},
                                         torch.device("cpu"), warmup=1, repeats=3, min_seconds=0.0)
    assert calls == ["o", "r", "o", "r"] + ["o", "r", "r", "o", "o", "r"]  # warm-up, one calibration call, repeats
    assert [len(v) for v in samples.values()] == [3, 3]


def test_primary_output_and_geometric_mean():
    logits = torch.ones(2, 3)
    assert benchmark.primary_output({"aux": torch.zeros(1), "out": logits}) is logits
    assert benchmark.primary_output((logits, (torch.zeros(1), torch.zeros(1)))) is logits
    assert benchmark.geometric_mean([0.5, 2.0, 1.0]) == pytest.approx(1.0)


def test_reference_unavailable_says_why():
    assert "paper" in benchmark.reference_unavailable("paper")
    assert "no builder" in benchmark.reference_unavailable("keras:ResNet50")
    assert benchmark.reference_unavailable("torchvision.models.resnet50") is None


def test_training_memory_with_and_without_checkpointing(monkeypatch):
    """A stand-in model with ``set_grad_checkpointing``: the memory row holds both measurements, and recomputing
    each layer in the backward pass keeps fewer activations (checkpointing the whole stack as one would not: its
    recomputation brings every activation back at once, and the measurement counts recomputations)."""

    class Stack(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            # Blocks of two layers: a block's inner activation is what checkpointing drops (with one layer per
            # block, what a checkpoint keeps, its input, is the very tensor the plain graph keeps).
            self.layers = torch.nn.Sequential(*[torch.nn.Sequential(
                torch.nn.Linear(256, 256), torch.nn.Tanh(), torch.nn.Linear(256, 256), torch.nn.Tanh())
                for _ in range(6)])
            self.checkpointing = False

        def set_grad_checkpointing(self, enable: bool = True) -> None:
            self.checkpointing = enable

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            for layer in self.layers:  # one checkpoint per block, as the models' set_grad_checkpointing
                x = torch.utils.checkpoint.checkpoint(layer, x, use_reentrant=False) if self.checkpointing else layer(x)
            return x

    monkeypatch.setattr(benchmark, "create_model", lambda name: Stack())
    row = benchmark.training_memory("gru", benchmark.Settings(batch=2))  # gru's card: features (N, 35, 256)
    assert row["measured_by"] and 0 < row["checkpointing"] < row["plain"]


def test_a_detector_is_checked_and_timed_with_its_losses():
    """RetinaNet against torchvision's at 64 pixels: the check compares real detections (the score threshold is
    lowered for it, then restored), and the training step runs both on the same synthetic boxes."""
    settings = benchmark.Settings(batch=2, repeats=1, warmup=0, train=True, max_image_size=64)
    pair = benchmark.build_pair("retinanet_resnet50_fpn")
    for model in (pair.ours, pair.reference):
        benchmark.resize_detector(model, 64)
        assert model.transform.min_size == (64,) and model.transform.max_size == 64
    images = benchmark.example_input(pair.card, settings)
    assert [tuple(image.shape) for image in images] == [(3, 64, 64)] * 2
    assert benchmark.check_same_outputs(pair, images[:1]) <= benchmark.PARITY_TOLERANCE
    assert pair.ours.score_thresh == pair.reference.score_thresh == 0.05  # restored after the check
    pair.ours.eval()
    with torch.no_grad():
        saved = benchmark._score_thresholds(pair.ours, 0.0)
        assert len(pair.call_ours(images[:1])[0]["boxes"]) > 0  # what the check compared was not empty
        for owner, attribute, value in saved:
            setattr(owner, attribute, value)
    targets = benchmark.detection_targets(images, with_masks=True)
    for target in targets:
        boxes = target["boxes"]
        assert boxes.shape == (2, 4) and (boxes[:, 2:] > boxes[:, :2]).all() and (boxes <= 64).all()
        assert target["masks"].shape == (2, 64, 64) and target["masks"].sum() > 0
    pair.ours.train()
    losses = pair.call_ours(images, [{k: v for k, v in t.items() if k != "masks"} for t in targets])
    assert set(losses) == {"classification", "bbox_regression"}
    assert benchmark.training_loss(losses).item() == pytest.approx(sum(loss.item() for loss in losses.values()))

    result = benchmark.benchmark_model("retinanet_resnet50_fpn", settings)
    assert result.status == "ok", result.reason
    assert result.input == "2 images 3 × 64 × 64"
    assert set(result.timings["fp32"]) == {"forward", "train"}


def test_max_image_size_shrinks_only_larger_images_of_models_that_take_any_size():
    capped = benchmark.Settings(batch=1, max_image_size=256)
    assert benchmark.describe_input(benchmark.example_input(paperzoo.model_card("deeplabv3_resnet50"), capped)) \
        == "1 × 3 × 256 × 256"
    assert benchmark.describe_input(benchmark.example_input(paperzoo.model_card("resnet50"), capped)) \
        == "1 × 3 × 224 × 224"
    assert benchmark.describe_input(benchmark.example_input(paperzoo.model_card("vit_b_16"), capped)) \
        == "1 × 3 × 224 × 224"  # fixed size: its position embeddings are for 224
    assert benchmark.describe_input(benchmark.example_input(paperzoo.model_card("gru"), capped)) == "1 × 35 × 256"


def test_bf16_autocast_is_timed_beside_fp32():
    """The precision loop that CUDA runs by default (fp32, then bf16 autocast), here on the CPU's autocast."""
    result = benchmark.benchmark_model("gru", benchmark.Settings(batch=2, repeats=1, warmup=0, train=True,
                                                                 precisions=("fp32", "bf16")))
    assert result.status == "ok", result.reason
    assert set(result.timings) == {"fp32", "bf16"}
    for phases in result.timings.values():
        assert set(phases) == {"forward", "train"} and all(row["ratio"] > 0 for row in phases.values())
        assert not any(row["channels_last"] for row in phases.values())  # a sequence model, and not on CUDA
