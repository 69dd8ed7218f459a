"""``paperzoo train NAME --shard``: fully sharded data parallel (FSDP2) under torchrun, tested with 2 CPU
processes on gloo: a sharded run resumes from its sharded checkpoint to the same weights as a run that never
stopped, its model.safetensors (and the export of its checkpoint folder) loads into an unsharded model that
computes the held-out loss the sharded one reported, and what cannot work is refused in one line."""

from __future__ import annotations

import copy
import json
import math
import os
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import paperzoo
from paperzoo import cli
from paperzoo.models.classification.convnext_v2 import ConvNeXtV2
from paperzoo.models.classification.vision_transformer import VisionTransformer
from paperzoo.training import checkpoints, distributed, sharding
from paperzoo.training import text_data as texts
from paperzoo.training.loop import TrainConfig, evaluation_batches, plan, train

SIZES = {"num_layers": 2, "hidden_size": 32, "num_heads": 2}
OPTIONS = {"seq_len": 32, "vocab_size": 300}


@pytest.fixture
def small_text(tmp_path: Path) -> Path:
    small = tmp_path / "small.txt"
    small.write_text(texts.DEFAULT_TEXT.read_text(encoding="utf-8")[:12_000], encoding="utf-8")
    return small


@pytest.mark.heavy
def test_a_sharded_run_on_two_processes_resumes_exactly_and_exports_one_safetensors(tmp_path, small_text,
                                                                                  one_thread):
    config = {"model": "gpt", "data": "text", "data_path": str(small_text), "epochs": 2, "lr": 3e-3,
              "batch_size": 16, "shard": True, "options": OPTIONS, "model_kwargs": SIZES}
    result = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
         str(Path(__file__).with_name("sharded_run.py")), str(tmp_path), json.dumps(config)],
        capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    whole, cut = (json.loads((tmp_path / run / "summary.json").read_text()) for run in ("whole", "cut"))
    assert whole["world_size"] == 2 and whole["sharded"] is True
    assert math.isfinite(whole["final_train_loss"]) and whole["final_train_loss"] < whole["first_train_loss"]
    assert cut["parameter_digest"] == whole["parameter_digest"]  # resumed after epoch 1 = never stopped

    def results(run: str) -> list[tuple]:  # the log without the timings; written by the first process only
        rows = [json.loads(line) for line in (tmp_path / run / "metrics.jsonl").read_text().splitlines()]
        return [(r["epoch"], r["train_loss"], r["test_loss"], r["lr"]) for r in rows]

    assert results("cut") == results("whole") and len(results("whole")) == 2
    assert checkpoints.load_checkpoint(tmp_path / "whole" / "checkpoint", "gpt")["epoch"] == 2

    # The unsharded model from model.safetensors: the held-out loss the sharded model reported.
    saved = json.loads((tmp_path / "whole" / "config.json").read_text())
    model = paperzoo.create_model("gpt", vocab_size=saved["run"]["vocabulary"], num_layers=2, hidden_size=32,
                                  num_heads=2)
    paperzoo.load_weights(model, tmp_path / "whole" / "model.safetensors")
    tokenizer = texts.tokenizers_library().Tokenizer.from_file(str(tmp_path / "whole" / "tokenizer.json"))
    held_out = texts.split_text(texts.read_text(small_text))[1]
    windows = torch.stack(list(texts.TokenWindows(texts.encode(tokenizer, held_out), OPTIONS["seq_len"])))
    with torch.no_grad():
        loss = model.eval().loss(windows).item()
    history = [json.loads(line) for line in (tmp_path / "whole" / "metrics.jsonl").read_text().splitlines()]
    assert loss == pytest.approx(history[-1]["test_loss"], rel=1e-5)

    # The checkpoint folder exported without processes: the same weights, bit for bit.
    exported = sharding.export(tmp_path / "whole" / "checkpoint", tmp_path / "exported.safetensors")
    final, again = load_file(tmp_path / "whole" / "model.safetensors"), load_file(exported)
    assert final.keys() == again.keys() and all(torch.equal(final[k], again[k]) for k in final)

    # The two processes' shards, cut again for one process: a third epoch resumes from them.
    with pytest.warns(UserWarning, match=r"world_size \(2 → 1\)"):
        one = train(TrainConfig(**{**config, "epochs": 3, "override": True, "out": str(tmp_path / "one"),
                                   "resume": str(tmp_path / "whole" / "checkpoint")}))
    assert one["world_size"] == 1 and math.isfinite(one["final_train_loss"])
    first = [json.loads(line) for line in (tmp_path / "one" / "metrics.jsonl").read_text().splitlines()]
    assert [row["epoch"] for row in first] == [1, 2, 3] and first[:2] == history


def test_every_process_evaluates_as_many_batches_under_shard():
    for n in (1, 2, 3, 255, 256, 257, 513, 1000):
        for world in (1, 2, 3):
            if n < world:
                continue
            parts = [evaluation_batches(n, distributed.Context(rank, world), shard=True) for rank in range(world)]
            assert len({len(p) for p in parts}) == 1 and all(map(all, parts))  # as many, none empty
            assert sorted(i for p in parts for b in p for i in b) == list(range(n))
            assert max(len(b) for p in parts for b in p) <= 256


def test_the_units_are_the_repeated_blocks():
    with torch.device("meta"):
        gpt = paperzoo.create_model("gpt", num_layers=3)
        convnext = paperzoo.create_model("convnextv2_atto")
    assert sharding.units(gpt) == list(gpt.blocks)
    # The blocks, not the stages around them: the classifier API runs a stage's downsampling and blocks one by one.
    assert {type(unit).__name__ for unit in sharding.units(convnext)} == {"ConvNeXtV2Block"}
    assert len(sharding.units(convnext)) == sum(len(stage.blocks) for stage in convnext.stages)


@pytest.fixture
def group_of_one():
    context = distributed.start("cpu", shard=True)
    yield
    distributed.stop(context, shard=True)


def image_loss(model: torch.nn.Module) -> torch.Tensor:
    return model(torch.linspace(-1, 1, 2 * 3 * 32 * 32).reshape(2, 3, 32, 32)).square().mean()


STEPS = {  # a small model and the loss of one batch, for the architectures the issue names (GPT, ViT, ConvNeXt V2)
    "gpt": (lambda: paperzoo.create_model("gpt", num_layers=2, hidden_size=32, num_heads=2, vocab_size=50),
            lambda model: model.loss(torch.arange(32).reshape(2, 16) % 50)),
    "vit": (lambda: VisionTransformer(img_size=32, patch_size=8, num_layers=2, num_heads=2, hidden_dim=32, mlp_dim=64,
                                      num_classes=10), image_loss),
    "convnextv2": (lambda: ConvNeXtV2(depths=(2, 2, 2, 2), widths=(8, 16, 32, 64), num_classes=10), image_loss),
}


@pytest.mark.parametrize("name", list(STEPS))
def test_a_sharded_step_is_the_unsharded_step(name, group_of_one):
    """Every parameter gathered where it is used: a unit's weights used outside its forward would fail here
    (ConvNeXt's stages did: the classifier API runs a stage's downsampling and blocks one by one)."""
    build, loss = STEPS[name]
    torch.manual_seed(0)
    reference = build()
    sharded = copy.deepcopy(reference)
    sharding.shard(sharded, sharded, torch.device("cpu"))
    for model in (reference, sharded):
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
        torch.manual_seed(1)  # the same dropout
        loss(model).backward()
        optimizer.step()
    expected, got = reference.state_dict(), sharding.full_state_dict(sharded)
    assert expected.keys() == got.keys()
    for key in expected:
        torch.testing.assert_close(got[key], expected[key], rtol=1e-5, atol=1e-6, msg=key)


def one_line_error(capsys, *args: str) -> str:
    assert cli.main(["train", *args]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    return err


def test_what_a_sharded_run_cannot_do_is_refused_in_one_line(tmp_path, small_text, capsys):
    gpt = ["gpt", "--data", "text", str(small_text), "--model-kwargs", "num_layers=1", "hidden_size=32",
           "num_heads=2", "--seq-len", "32", "--vocab-size", "300", "--out", str(tmp_path / "run")]
    assert "--shard does not train generative models" in one_line_error(capsys, "dcgan", "--shard", "--epochs", "1")
    assert "--shard runs on cpu (gloo) or cuda" in one_line_error(capsys, *gpt, "--shard", "--device", "mps")
    import torch.distributed.checkpoint as dcp

    with pytest.MonkeyPatch.context() as patch:  # an older torch
        patch.delattr(dcp, "HuggingFaceStorageReader")
        assert "upgrade torch" in one_line_error(capsys, *gpt, "--shard")
    checkpoints.save_checkpoint(tmp_path / "checkpoint.pt", {"model_name": "gpt", "epoch": 1})
    assert "not a checkpoint.pt" in one_line_error(capsys, *gpt, "--shard", "--resume", str(tmp_path / "checkpoint.pt"))
    folder = tmp_path / "sharded"
    folder.mkdir()
    checkpoints.save_checkpoint(folder / sharding.STATE, {"model_name": "gpt", "epoch": 1, "sharded": True})
    assert "resumes with --shard only" in one_line_error(capsys, *gpt, "--resume", str(folder))
    (folder / sharding.STATE).unlink()
    assert "not a sharded paperzoo checkpoint" in one_line_error(capsys, *gpt, "--shard", "--resume", str(folder))
    # More processes than held-out examples: planned for 100,000 processes (the check reads the world size from the
    # run's context, which torchrun's environment gives the command line).
    config = TrainConfig(model="gpt", data="text", data_path=str(small_text), shard=True, options=OPTIONS,
                         model_kwargs=SIZES, out=str(tmp_path / "run"))
    with pytest.raises(ValueError, match=r"^--shard: the held-out set has \d+ examples for 100000 processes"):
        plan(config, distributed.Context(rank=0, world_size=100_000))
    assert not (tmp_path / "run").exists()  # nothing written


class _PlantsAFile:
    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_a_save_that_dies_leaves_the_previous_checkpoint(tmp_path, monkeypatch):
    import torch.distributed.checkpoint as dcp

    context = distributed.start("cpu", shard=True)  # a process group of one
    try:
        def sharded() -> tuple[torch.nn.Module, torch.optim.Optimizer]:
            torch.manual_seed(0)
            model = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.Linear(4, 2))
            sharding.shard(model, model, torch.device("cpu"))
            return model, torch.optim.AdamW(model.parameters())

        model, optimizer = sharded()
        for _ in range(2):
            model(torch.ones(2, 4)).sum().backward()
            optimizer.step()
        path = tmp_path / "checkpoint"
        sharding.save_checkpoint(path, model, [optimizer], {"model_name": "m", "epoch": 1}, True)

        def dies(*args, **kwargs):
            raise OSError("No space left on device")

        monkeypatch.setattr(dcp, "save", dies)
        with pytest.raises(OSError):
            sharding.save_checkpoint(path, model, [optimizer], {"model_name": "m", "epoch": 2}, True)
        assert checkpoints.load_checkpoint(path, "m")["epoch"] == 1
        path.rename(tmp_path / ".checkpoint.old")  # as if it died between moving the old folder aside and the new in
        state = checkpoints.load_checkpoint(path, "m")
        assert state["epoch"] == 1
        monkeypatch.undo()
        (tmp_path / ".checkpoint.old").rename(path)
        shutil.copytree(path, tmp_path / ".checkpoint.old")  # as if it died after the new one was in, not deleted
        sharding.save_checkpoint(path, model, [optimizer], {"model_name": "m", "epoch": 2}, True)
        assert checkpoints.load_checkpoint(path, "m")["epoch"] == 2
        assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint"]
        state = checkpoints.load_checkpoint(path, "m")
        # DCP's default storage would unpickle an index named .metadata; the safetensors storage never reads one.
        marker = tmp_path / "pwned"
        (path / ".metadata").write_bytes(pickle.dumps(_PlantsAFile(str(marker))))
        fresh, fresh_optimizer = sharded()
        sharding.load_checkpoint(path, fresh, [fresh_optimizer], state)
        sharding.export(path, tmp_path / "exported.safetensors")
        assert not marker.exists()
        saved, loaded = sharding.full_state_dict(model), sharding.full_state_dict(fresh)
        assert all(torch.equal(saved[k], loaded[k]) for k in saved)
        assert int(fresh_optimizer.state_dict()["state"][0]["step"]) == 2  # Adam's step count came back too
    finally:
        distributed.stop(context, shard=True)
