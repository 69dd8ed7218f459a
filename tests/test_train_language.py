"""``paperzoo train`` for the language models (GPT, BERT's pre-training, the LSTM and GRU) and ``paperzoo
generate``: learning on the embedded text through the loop, exact resume, the run's tokenizer, bad text files."""

from __future__ import annotations

import collections
import json
import math

import pytest
import torch

from paperzoo import cli
from paperzoo.training import checkpoints
from paperzoo.training import text_data as texts
from paperzoo.training.loop import TrainConfig, plan, train
from resume import whole_and_resumed
from weights_helpers import caches  # noqa: F401  (a fixture: empty, offline Hub and torch caches)

TINY_GPT = {"num_layers": 2, "hidden_size": 64, "num_heads": 4}  # --model-kwargs: the model's own names
TINY_TEXT = {"seq_len": 64, "vocab_size": 512}



def held_out_unigram_perplexity(run) -> float:
    """The perplexity of the held-out tokens under the training tokens' add-one unigram frequencies, with the
    run's own tokenizer.json: the best any model that ignores context can do, computed apart from the loop."""
    import tokenizers

    tokenizer = tokenizers.Tokenizer.from_file(str(run / "tokenizer.json"))
    lines = texts.DEFAULT_TEXT.read_text(encoding="utf-8").splitlines(keepends=True)
    cut = len(lines) - round(0.1 * len(lines))  # the last tenth of the lines is held out

    def tokens(part: list[str]) -> list[int]:
        return [i for e in tokenizer.encode_batch(part) for i in e.ids]

    train_ids, test_ids = tokens(lines[:cut]), tokens(lines[cut:])
    counts, total, vocab = collections.Counter(train_ids), len(train_ids), tokenizer.get_vocab_size()
    return math.exp(-sum(math.log((counts[t] + 1) / (total + vocab)) for t in test_ids) / len(test_ids))


@pytest.mark.heavy
def test_a_small_gpt2_learns_the_embedded_text_far_below_the_unigram_perplexity(tmp_path, one_thread):
    """Three epochs of a 2-block GPT-2 on Genesis, BPE of 512 tokens: the held-out perplexity falls below 70% of
    the unigram perplexity (measured: 100.0 against 179.3)."""
    summary = train(TrainConfig("gpt2", epochs=3, lr=3e-3, out=str(tmp_path), options=TINY_TEXT,
                                model_kwargs=TINY_GPT))
    unigram = held_out_unigram_perplexity(tmp_path)
    assert summary["final_test_perplexity"] < 0.7 * unigram, (summary["final_test_perplexity"], unigram)
    assert summary["final_train_loss"] < summary["first_train_loss"]
    assert {"tokenizer.json", "model.safetensors"} <= {p.name for p in tmp_path.iterdir()}
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["run"]["vocabulary"] == 512 and config["recipe"]["lr"] == 2.5e-4  # GPT §4.1's, --lr overrides


def test_an_interrupted_and_resumed_language_model_ends_with_the_same_weights(tmp_path, one_thread):
    """Dropout and the warm-up schedule must resume exactly; the resumed run keeps its checkpoint's tokenizer."""
    small = tmp_path / "small.txt"
    small.write_text(texts.DEFAULT_TEXT.read_text(encoding="utf-8")[:20_000], encoding="utf-8")
    config = TrainConfig("gpt", data="text", data_path=str(small), epochs=2, lr=3e-3, batch_size=16,
                         options={"seq_len": 32, "vocab_size": 300},
                         model_kwargs={"num_layers": 1, "hidden_size": 32, "num_heads": 2})
    whole, resumed = whole_and_resumed(config, tmp_path)
    assert "tokenizer" in checkpoints.load_checkpoint(tmp_path / "cut" / "checkpoint.pt", "gpt")
    assert resumed["parameter_digest"] == whole["parameter_digest"]
    assert (tmp_path / "cut" / "tokenizer.json").read_text() == (tmp_path / "whole" / "tokenizer.json").read_text()


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """One epoch of a one-block GPT on 20,000 characters: a run folder for generate."""
    folder = tmp_path_factory.mktemp("lm")
    small = folder / "small.txt"
    small.write_text(texts.DEFAULT_TEXT.read_text(encoding="utf-8")[:20_000], encoding="utf-8")
    train(TrainConfig("gpt", data="text", data_path=str(small), epochs=1, lr=3e-3, batch_size=16,
                      out=str(folder / "run"), options={"seq_len": 32, "vocab_size": 300},
                      model_kwargs={"num_layers": 1, "hidden_size": 32, "num_heads": 2}))
    return folder / "run"


def test_generate_continues_a_prompt_with_the_runs_model_and_tokenizer(tiny_run, capsys):
    """Greedy ``paperzoo generate`` prints what the trained model's cache-free greedy decoding gives."""
    from paperzoo.training.tasks.language_model import load_run

    assert cli.main(["generate", "gpt", "--checkpoint", str(tiny_run), "--prompt", "In the beginning",
                     "--max-new-tokens", "12"]) == 0
    printed = capsys.readouterr().out.strip()
    model, tokenizer = load_run("gpt", tiny_run / "model.safetensors")
    prompt = tokenizer.encode("In the beginning").ids
    expected = model.generate(torch.tensor([prompt]), 12, use_cache=False)[0, len(prompt):].tolist()
    assert printed == "In the beginning" + tokenizer.decode(expected)
    assert cli.main(["generate", "gpt", "--checkpoint", str(tiny_run), "--prompt", "God", "--top-k", "5",
                     "--temperature", "0.8", "--seed", "3"]) == 0
    first = capsys.readouterr().out
    assert cli.main(["generate", "gpt", "--checkpoint", str(tiny_run), "--prompt", "God", "--top-k", "5",
                     "--temperature", "0.8", "--seed", "3"]) == 0
    assert capsys.readouterr().out == first  # the seed fixes the draws


def test_generate_refuses_what_it_cannot_do(tiny_run, tmp_path, capsys):
    cases = [
        (["generate", "gpt", "--prompt", "x"], "pass one of --checkpoint"),
        (["generate", "bert_base", "--checkpoint", str(tiny_run), "--prompt", "x"], "masked-language-model"),
        (["generate", "gpt", "--checkpoint", str(tmp_path), "--prompt", "x"], "no model.safetensors, config.json"),
        (["generate", "gpt2", "--checkpoint", str(tiny_run), "--prompt", "x"], "holds a 'gpt' run, not 'gpt2'"),
        (["generate", "gpt", "--checkpoint", str(tiny_run), "--prompt", ""], "--prompt is empty"),
        (["generate", "gpt", "--checkpoint", str(tiny_run), "--prompt", "x", "--top-p", "1.5"], "--top-p must"),
        (["generate", "gpt", "--checkpoint", str(tiny_run), "--prompt", "x", "--max-new-tokens", "600"],
         "fit its 512 positions"),
    ]
    for args, message in cases:
        assert cli.main(args) == 2, args
        assert message in capsys.readouterr().err, args


@pytest.mark.heavy
def test_an_lstm_language_model_learns_the_embedded_text(tmp_path, one_thread):
    """The registered LSTM (256 inputs, here 128 cells) between an embedding and a read-out, one epoch on Genesis
    with a 320-token BPE: held-out perplexity below 70% of the unigram perplexity (measured: 35.7)."""
    summary = train(TrainConfig("lstm", epochs=1, lr=3e-3, out=str(tmp_path),
                                options={"seq_len": 64, "vocab_size": 320}, model_kwargs={"hidden_size": 128}))
    unigram = held_out_unigram_perplexity(tmp_path)
    assert summary["final_test_perplexity"] < 0.7 * unigram, (summary["final_test_perplexity"], unigram)


def test_a_gru_language_model_trains_and_generates(tmp_path, one_thread, capsys):
    small = tmp_path / "small.txt"
    small.write_text(texts.DEFAULT_TEXT.read_text(encoding="utf-8")[:10_000], encoding="utf-8")
    summary = train(TrainConfig("gru", data="text", data_path=str(small), epochs=1, out=str(tmp_path / "run"),
                                options={"seq_len": 32, "vocab_size": 300}, model_kwargs={"hidden_size": 32}))
    assert summary["final_train_loss"] < summary["first_train_loss"] + 1  # it ran; the learning test is the LSTM's
    from safetensors.torch import load_file

    assert {"embedding.weight", "recurrent.weight_ih_l0", "head.weight"} <= set(load_file(tmp_path / "run" /
                                                                                           "model.safetensors"))
    assert cli.main(["generate", "gru", "--checkpoint", str(tmp_path / "run"), "--prompt", "God",
                     "--max-new-tokens", "5"]) == 0
    assert capsys.readouterr().out.startswith("God")


@pytest.mark.heavy
def test_bert_pretraining_learns_masked_tokens_of_the_embedded_text(tmp_path, one_thread):
    """A 2-layer BERT pre-trained with the paper's masking and loss on Genesis (WordPiece of 300 pieces): its
    held-out masked-token loss falls below the unigram cross-entropy and its accuracy above always answering the
    most frequent training token, by a fifth (measured: 7.8% against 5.8%, loss 4.95 against 5.09). At this size
    and budget next-sentence prediction stays at chance on real text; the motif test below checks it."""
    import tokenizers

    summary = train(TrainConfig("bert_base_pretraining", epochs=6, lr=3e-3, batch_size=32, out=str(tmp_path),
                                options={"seq_len": 32, "vocab_size": 300},
                                model_kwargs={"num_layers": 2, "hidden_size": 64, "num_heads": 4}))
    tokenizer = tokenizers.Tokenizer.from_file(str(tmp_path / "tokenizer.json"))
    lines = [line for line in texts.DEFAULT_TEXT.read_text(encoding="utf-8").splitlines(keepends=True)]
    cut = len(lines) - round(0.1 * len(lines))

    def tokens(part: list[str]) -> list[int]:
        encoded = tokenizer.encode_batch([line for line in part if line.strip()], add_special_tokens=False)
        return [i for e in encoded for i in e.ids]

    train_ids, test_ids = tokens(lines[:cut]), tokens(lines[cut:])
    counts, total = collections.Counter(train_ids), len(train_ids)
    unigram = -sum(math.log((counts[t] + 1) / (total + tokenizer.get_vocab_size())) for t in test_ids) / len(test_ids)
    most_frequent = counts.most_common(1)[0][0]
    share = sum(t == most_frequent for t in test_ids) / len(test_ids)
    final = json.loads((tmp_path / "metrics.jsonl").read_text().splitlines()[-1])
    assert summary["metric"] == "mlm_accuracy"
    assert final["test_mlm_loss"] < unigram, (final["test_mlm_loss"], unigram)
    assert summary["final_test_mlm_accuracy"] > 1.2 * share, (summary["final_test_mlm_accuracy"], share)


@pytest.mark.heavy
def test_bert_pretraining_learns_masked_words_and_next_segments_of_a_motif_text(tmp_path, one_thread):
    """A text of 300 paragraphs, each 10 lines repeating one motif of 4 words 3 times: a masked word is the word
    4 positions away, and B follows A exactly when it repeats A's motif. Pre-trained through paperzoo train with
    the paper's masking, loss and schedule, a 2-layer BERT predicts the masked words far above chance (1 in 20)
    and the next segment far above a coin toss (measured: 0.957 and 0.853 after 12 epochs; the masked words
    are learnt late, near epoch 8, so a shorter schedule, whose rate decays sooner, does not get there)."""
    import random

    generator = random.Random(0)
    words = ["ox", "ram", "fig", "oak", "sea", "sun", "dew", "elm", "ash", "ivy", "owl", "bee", "cow", "hen", "yak",
             "eel", "ant", "bat", "cod", "doe"]
    lines = []
    for _ in range(300):
        motif = [generator.choice(words) for _ in range(4)]
        lines += [" ".join(motif * 3)] * 10
    (tmp_path / "motifs.txt").write_text("\n".join(lines) + "\n")
    summary = train(TrainConfig("bert_base_pretraining", data="text", data_path=str(tmp_path / "motifs.txt"),
                                epochs=12, lr=2e-3, batch_size=64, out=str(tmp_path / "run"),
                                options={"seq_len": 29, "vocab_size": 100},
                                model_kwargs={"num_layers": 2, "hidden_size": 64, "num_heads": 4}))
    final = json.loads((tmp_path / "run" / "metrics.jsonl").read_text().splitlines()[-1])
    assert summary["final_test_mlm_accuracy"] > 0.5, summary
    assert final["test_nsp_accuracy"] > 0.75, final


def test_bad_text_inputs_are_refused_before_anything_is_written(tmp_path, capsys):
    out = tmp_path / "out"
    (tmp_path / "empty.txt").write_text("  \n\n")
    (tmp_path / "latin1.txt").write_bytes("Caf\xe9 au lait\n".encode("latin-1") * 50)
    (tmp_path / "binary.txt").write_bytes(b"abc\0def" * 20)
    (tmp_path / "short.txt").write_text("In the beginning.\n")
    cases = [
        (["train", "gpt", "--data", "text", str(tmp_path / "none.txt")], "none.txt does not exist"),
        (["train", "gpt", "--data", "text", str(tmp_path / "empty.txt")], "empty.txt is empty"),
        (["train", "gpt", "--data", "text", str(tmp_path / "latin1.txt")], "latin1.txt is not UTF-8 (byte 0xe9"),
        (["train", "gpt", "--data", "text", str(tmp_path / "binary.txt")], "binary.txt is binary"),
        (["train", "gpt", "--data", "text", str(tmp_path / "short.txt"), "--seq-len", "64"],
         "short.txt is too short"),
        (["train", "bert_base_pretraining", "--data", "text", str(tmp_path / "short.txt")], "short.txt is too short"),
        (["train", "gpt", "--data", "text"], "needs the path"),
        (["train", "gpt", "--seq-len", "600"], "exceeds gpt's 512 positions"),
        (["train", "gpt", "--model-kwargs", "max_positions=16", "--seq-len", "32"], "exceeds gpt's 16 positions"),
        (["train", "gpt", "--seq-len", "0"], "--seq-len must be positive"),
        (["train", "gpt", "--seq-len", "1"], "a window needs at least 2 tokens"),
        (["train", "gpt", "--vocab-size", "many"], "--vocab-size takes an integer, got 'many'"),
        (["train", "bert_base"], "train bert_base_pretraining"),
        (["train", "lstm", "--model-kwargs", "num_heads=4"], "--model-kwargs: lstm does not take"),
        (["train", "gpt2", "--pretrained", "--model-kwargs", "num_layers=2"],
         "--pretrained keeps the published gpt2's size: drop --model-kwargs num_layers=2"),
        (["train", "gpt", "--model-kwargs", "vocab_size=100"], "set its size with --vocab-size"),
        (["train", "lstm", "--pretrained"], "lstm has no published weights"),
    ]
    for args, message in cases:
        assert cli.main([*args, "--out", str(out)]) == 2, args
        assert message in capsys.readouterr().err, args
        assert not out.exists(), f"{args} wrote into the output folder"


def test_the_tasks_take_the_papers_recipes():
    gpt = plan(TrainConfig("gpt2", out="unused", options={"seq_len": 16, "vocab_size": 300})).task
    assert (gpt.recipe.lr, gpt.recipe.weight_decay) == (2.5e-4, 0.01)  # GPT §4.1
    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
    schedule = gpt.schedules([optimizer], epochs=10, steps_per_epoch=100)[0]  # 1,000 steps: 100 of warm-up
    factors = []
    for _ in range(1000):
        factors.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        schedule.step()
    assert factors[0] == pytest.approx(0.01) and factors[99] == pytest.approx(1.0)  # linear warm-up
    assert factors[100 + 450] == pytest.approx(0.5, abs=0.01) and factors[-1] < 1e-4  # cosine to 0
    bert = plan(TrainConfig("bert_base_pretraining", out="unused", options={"seq_len": 16, "vocab_size": 300})).task
    assert (bert.recipe.lr, bert.recipe.weight_decay, bert.decay) == (1e-4, 0.01, "linear")  # Appendix A.2


def test_model_kwargs_size_the_language_models_with_their_own_keywords():
    """--model-kwargs is the one way to size a language model (the flags --num-layers, --hidden-size and
    --num-heads are gone); a narrower BERT keeps the paper's 4H feed-forward unless intermediate_size is given."""
    bert = plan(TrainConfig("bert_base_pretraining", out="unused", options={"seq_len": 16, "vocab_size": 300},
                            model_kwargs="num_layers=1 hidden_size=32 num_heads=2")).task.build_model()
    assert bert.bert.layers[0].feed_forward.fc1.out_features == 4 * 32
    wide = plan(TrainConfig("bert_base_pretraining", out="unused", options={"seq_len": 16, "vocab_size": 300},
                            model_kwargs={"num_layers": 1, "hidden_size": 32, "num_heads": 2,
                                          "intermediate_size": 40})).task.build_model()
    assert wide.bert.layers[0].feed_forward.fc1.out_features == 40
    lstm = plan(TrainConfig("lstm", out="unused", options={"seq_len": 16, "vocab_size": 300},
                            model_kwargs={"hidden_size": 24, "num_layers": 2})).task.build_model()
    assert (lstm.recurrent.hidden_size, lstm.recurrent.num_layers) == (24, 2)


def test_pretrained_gpt2_fine_tunes_with_its_published_tokenizer_and_generates(request, monkeypatch, tmp_path, capsys,
                                                                                one_thread):
    """--pretrained starts from the published weights (here a small GPT-2 laid out in the Hub cache, as
    test_weights does) and keeps the published tokenizer instead of training one; generate --pretrained reads both."""
    import transformers

    from paperzoo.weights import _published
    from test_weights import place_in_hub_cache

    cache_root = request.getfixturevalue("caches")
    small = dict(vocab_size=300, max_positions=32, hidden_size=32, num_layers=1, num_heads=2)
    monkeypatch.setitem(_published.PUBLISHED, "gpt2", [dict(row, model_kwargs=small)
                                                       for row in _published.PUBLISHED["gpt2"]])
    transformers.GPT2LMHeadModel(transformers.GPT2Config(vocab_size=300, n_positions=32, n_embd=32, n_layer=1,
                                                         n_head=2)).save_pretrained(cache_root / "saved")
    text = texts.DEFAULT_TEXT.read_text(encoding="utf-8")[:10_000]
    texts.train_byte_level_bpe(text, 300).save(str(cache_root / "saved" / "tokenizer.json"))
    place_in_hub_cache(cache_root, "openai-community/gpt2", {p.name: p for p in (cache_root / "saved").iterdir()})
    (tmp_path / "small.txt").write_text(text, encoding="utf-8")

    assert cli.main(["train", "gpt2", "--pretrained", "--data", "text", str(tmp_path / "small.txt"), "--seq-len",
                     "16", "--epochs", "1", "--batch-size", "16", "--out", str(tmp_path / "run")]) == 0
    published = json.loads((cache_root / "saved" / "tokenizer.json").read_text())
    assert json.loads((tmp_path / "run" / "tokenizer.json").read_text()) == published
    capsys.readouterr()
    assert cli.main(["generate", "gpt2", "--pretrained", "--prompt", "God", "--max-new-tokens", "4"]) == 0
    assert capsys.readouterr().out.startswith("God")
    assert cli.main(["generate", "gpt2", "--checkpoint", str(tmp_path / "run"), "--prompt", "God",
                     "--max-new-tokens", "4"]) == 0


def test_the_tokenizers_trained_on_the_embedded_text_are_the_same_every_time():
    """The learning tests' thresholds hold only for one vocabulary: the BPE and the WordPiece trained on Genesis
    come out the same each time (the WordPiece trainer numbers pieces of equal frequency in hash order, which
    differed between runs until the training renumbered them; under torchrun the first process's is shared)."""
    text = texts.split_text(texts.read_text(None))[0]
    assert len({texts.train_wordpiece(text, 300).to_str() for _ in range(3)}) == 1
    assert len({texts.train_byte_level_bpe(text, 512).to_str() for _ in range(2)}) == 1
    wordpiece = texts.train_wordpiece(text, 300)
    assert [wordpiece.token_to_id(t) for t in texts.BERT_SPECIAL] == [0, 1, 2, 3, 4]


@pytest.mark.heavy
def test_bert_pretraining_under_torchrun_with_two_processes(tmp_path):
    """torchrun with 2 CPU processes (gloo): the masked-LM objective trains under DistributedDataParallel, every
    process uses the same tokenizer (the first's), the replicas end bit-identical, and only rank 0 writes."""
    import os
    import subprocess
    import sys

    small = tmp_path / "small.txt"
    small.write_text(texts.DEFAULT_TEXT.read_text(encoding="utf-8")[:30_000], encoding="utf-8")
    out = tmp_path / "ddp"
    result = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m", "paperzoo",
         "train", "bert_base_pretraining", "--data", "text", str(small), "--epochs", "1", "--batch-size", "16",
         "--model-kwargs", "num_layers=1 hidden_size=32 num_heads=2", "--seq-len", "32", "--vocab-size", "200",
         "--out", str(out)],
        capture_output=True, text=True, env={**os.environ, "COLUMNS": "200", "OMP_NUM_THREADS": "1"}, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["world_size"] == 2 and summary["replicas_identical"] is True
    assert result.stdout.count("trained bert_base_pretraining") == 1
