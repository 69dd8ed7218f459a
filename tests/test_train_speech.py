"""``paperzoo train`` for wav2vec 2.0: the shipped spoken digits, audio folders, pre-training and CTC."""

from __future__ import annotations

import dataclasses
import json
import wave
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

import paperzoo
from paperzoo import cli
from paperzoo.training import audio_data
from paperzoo.training.loop import TrainConfig, plan, train
from paperzoo.training.tasks.speech import greedy_ctc
from resume import whole_and_resumed
from weights_helpers import caches, place_in_hub_cache, small_published_wav2vec2_ctc

__all__ = ["caches"]  # a fixture, used by name

WORDS = {"zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"}


def write_wav(path: Path, audio: np.ndarray, rate: int = 16_000, width: int = 2) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(path), "wb") as writer:
        writer.setnchannels(1)
        writer.setsampwidth(width)
        writer.setframerate(rate)
        scale = 32767 if width == 2 else 127
        writer.writeframes((audio * scale).astype(np.int16 if width == 2 else np.uint8).tobytes())
    return path


def test_spoken_digits_are_real_words_from_held_out_voices():
    data = np.load(audio_data._DIGITS)
    assert len(data["lengths"]) == 160 and set(data["word_names"].tolist()) == WORDS
    train, test = audio_data.spoken_digits("train", 40, seed=1), audio_data.spoken_digits("test", 10, seed=1)
    for dataset in (train, test):
        for waveform, transcript in dataset:
            words = transcript.split()
            assert 1 <= len(words) <= 3 and set(words) <= WORDS
            # 0.3 to 1 s of speech a word at 16 kHz, normalised to zero mean and unit variance (do_normalize)
            assert 0.3 * 16_000 * len(words) < len(waveform) < 1.2 * 16_000 * len(words)
            assert abs(waveform.mean()) < 1e-4 and abs(waveform.std() - 1) < 1e-3
    again = audio_data.spoken_digits("train", 40, seed=1)
    assert train.transcripts == again.transcripts and torch.equal(train[3][0], again[3][0])
    # The μ-law decoding inverts the encoding (scripts/make-spoken-digits): within one quantisation step.
    x = np.linspace(-0.9, 0.9, 1001)
    codes = np.round((np.sign(x) * np.log1p(255 * np.abs(x)) / np.log1p(255) + 1) / 2 * 255).astype(np.uint8)
    assert np.abs(audio_data.mu_law_decode(codes) - x).max() < 0.02


def test_audio_folders_are_read_and_bad_ones_named(tmp_path):
    tone = np.sin(np.linspace(0, 400 * np.pi, 8000)) * 0.5
    for i in range(5):
        write_wav(tmp_path / "ok" / f"{i}.wav", tone)
        (tmp_path / "ok" / f"{i}.txt").write_text("Five  Nine\n")
    train, test = audio_data.audio_folder(tmp_path / "ok")
    assert len(train) + len(test) == 5 and train.transcripts[0] == "five nine"
    with pytest.warns(UserWarning, match="sampled at 8000 Hz; resampled"):
        audio = audio_data.read_wav(write_wav(tmp_path / "slow.wav", tone[:4000], rate=8000))
    assert len(audio) == 8000
    with pytest.raises(ValueError, match="8-bit samples; paperzoo reads 16-bit PCM"):
        audio_data.read_wav(write_wav(tmp_path / "byte.wav", tone, width=1))
    (tmp_path / "noise.wav").write_bytes(b"RIFF1234")
    with pytest.raises(ValueError, match="noise.wav is not a readable WAV file"):
        audio_data.read_wav(tmp_path / "noise.wav")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="holds no .wav files"):
        audio_data.audio_folder(tmp_path / "empty")


def test_max_words_sets_the_longest_utterance_of_the_spoken_digits(tmp_path):
    task = plan(TrainConfig("wav2vec2_base_ctc", out=str(tmp_path / "out"),
                            options={"utterances": 40, "max_words": 1})).task
    assert {len(t.split()) for s in (task.train_set, task.test_set) for t in s.transcripts} == {1}
    task = plan(TrainConfig("wav2vec2_base_ctc", out=str(tmp_path / "out"), options={"utterances": 40})).task
    assert {len(t.split()) for t in task.train_set.transcripts} == {1, 2, 3}  # the default: 1 to 3 words


def test_greedy_ctc_merges_repeats_and_drops_blanks():
    best = [[0, 3, 3, 0, 3, 2, 2, 0], [1, 1, 0, 1, 0, 0, 0, 0]]
    logits = torch.nn.functional.one_hot(torch.tensor(best), 5).float()
    assert greedy_ctc(logits, torch.tensor([8, 3])) == [[3, 3, 2], [1]]  # the second stops at its 3 frames


def test_speech_runs_are_checked_before_anything_is_written(tmp_path, capsys):
    out = str(tmp_path / "out")
    with pytest.raises(ValueError, match="encoder without a training objective"):
        plan(TrainConfig("wav2vec2_base", out=out))
    with pytest.raises(ValueError, match="--encoder starts a CTC model"):
        plan(TrainConfig("wav2vec2_base_pretraining", options={"encoder": "x"}, out=out))
    tone = np.sin(np.linspace(0, 400 * np.pi, 8000)) * 0.5
    for split, name, text in (("train", "0", "one two"), ("train", "1", "two one"), ("val", "0", "one två")):
        write_wav(tmp_path / "audio" / split / f"{name}.wav", tone)
        (tmp_path / "audio" / split / f"{name}.txt").write_text(text)
    audio = str(tmp_path / "audio")
    bad = tmp_path / "audio" / "val" / "0.txt"
    with pytest.raises(ValueError, match=rf"{bad}: the test transcript 'one två' has characters outside the "
                                         r"vocabulary of the training transcripts: 'vå'"):
        plan(TrainConfig("wav2vec2_base_ctc", data="audio", data_path=audio, out=out))
    assert cli.main(["train", "wav2vec2_base_ctc", "--data", "audio", audio, "--out", out]) == 2
    assert f"{bad}: the test transcript" in capsys.readouterr().err
    (tmp_path / "audio" / "train" / "1.txt").unlink()
    untranscribed = tmp_path / "audio" / "train" / "1.wav"
    with pytest.raises(ValueError, match=r"needs a transcript beside every audio file \(name.txt\); 1 training "
                                         rf"files have none, e.g. {untranscribed} has no 1.txt"):
        plan(TrainConfig("wav2vec2_base_ctc", data="audio", data_path=audio, out=out))
    assert not (tmp_path / "out").exists()


def test_an_audio_folder_at_another_sample_rate_is_resampled_with_a_warning_naming_the_file(tmp_path):
    """The issue's bad input: an 8 kHz file in a training folder is resampled to 16 kHz (twice as many samples)
    with a warning that names it, through the training command's own data path, not refused or read as is."""
    tone = np.sin(np.linspace(0, 400 * np.pi, 8000)) * 0.5
    for i in range(4):
        write_wav(tmp_path / "audio" / f"{i}.wav", tone)
        (tmp_path / "audio" / f"{i}.txt").write_text("one")
    slow = write_wav(tmp_path / "audio" / "4.wav", tone, rate=8000)
    (tmp_path / "audio" / "4.txt").write_text("one")
    with pytest.warns(UserWarning, match=rf"{slow} is sampled at 8000 Hz; resampled to the 16000 Hz"):
        task = plan(TrainConfig("wav2vec2_base_ctc", data="audio", data_path=str(tmp_path / "audio"),
                                out=str(tmp_path / "out"))).task
    utterances = {f: len(w) for s in (task.train_set, task.test_set)
                  for f, w in zip(s.files, s.waveforms, strict=True)}
    assert utterances[slow] == 16_000 and utterances[tmp_path / "audio" / "0.wav"] == 8000


SMALL = dict(hidden_size=32, num_layers=2, num_heads=4, ffn_dim=64, feature_channels=32, position_kernel_size=16,
             position_groups=4, dropout=0.0, attention_dropout=0.0, feature_dropout=0.0)
SMALL_PRETRAINING = dict(SMALL, codebook_size=8, codevector_dim=16, final_dim=12, num_negatives=20,
                         quantizer_dropout=0.0)


@pytest.mark.heavy
def test_pretraining_learns_the_contrastive_task_on_spoken_digits(tmp_path):
    """A small wav2vec 2.0 (width 32, 2 layers, 2 codebooks of 8) pre-trained by `paperzoo train` on 200 spoken
    utterances: the contrastive accuracy on the held-out voices (the same masks and distractors every epoch)
    rises from 0.105 after the first epoch to 0.216 after the fifth with this seed (measured on this project's
    machine; 0.247 after 8). This replaces the test's own loop over synthetic tones."""
    config = TrainConfig("wav2vec2_base_pretraining", epochs=5, lr=2e-3, threads=1, options={"utterances": 200},
                         model_kwargs=SMALL_PRETRAINING, out=str(tmp_path))
    summary = train(config)
    history = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    first, last = history[0]["test_accuracy"], history[-1]["test_accuracy"]
    assert last >= 0.17 and last >= 1.5 * first, history
    assert history[-1]["test_loss"] < history[0]["test_loss"] and summary["metric"] == "accuracy"


def test_an_interrupted_pretraining_run_resumes_exactly(tmp_path):
    """Stopped after the first of two epochs and resumed, the run ends with the weights of one that never stopped:
    the masks, the distractors and the Gumbel temperature's schedule are restored. On 40 utterances: until issue 26
    this rode on the learning test above, whose five epochs of 200 it repeated (half that test's time)."""
    config = TrainConfig("wav2vec2_base_pretraining", epochs=2, lr=2e-3, threads=1, options={"utterances": 40},
                         model_kwargs=SMALL_PRETRAINING)
    whole, resumed = whole_and_resumed(config, tmp_path, stop_after=1)
    assert resumed["parameter_digest"] == whole["parameter_digest"]


@pytest.mark.heavy
def test_ctc_fine_tuning_learns_to_transcribe_spoken_digits(tmp_path, capsys):
    """`paperzoo train wav2vec2_base_ctc` from random weights on 48 single-word utterances of the spoken digits
    (--max-words 1 --utterances 48 --mask-prob 0), 35 epochs of 12 steps at lr 6e-3 with the tri-state schedule,
    tested on 12 utterances of the two held-out voices. The model keeps the small layout of the tests above but
    no Transformer layer (num_layers=0: the CTC layer reads the feature encoder through the convolutional
    position embedding): with one or two layers a model trained from scratch stays on the all-blank plateau (a
    held-out loss near 11.5 per utterance) for more than 300 steps, too long for the suite. Measured: the
    held-out CTC loss 11.66 at epoch 6 (the plateau), 4.14 at the end; the training loss 0.81; the word error
    rate 1.00 for 19 epochs, between 0.75 and 0.92 from epoch 20 on (1.00 once, at 23) and 0.75 at the end (9
    of 12 words wrong); about 16 s of one CPU.
    This checks the task's CTC path as a whole (character vocabulary, -100 padding, loss, schedule, greedy
    decoding, jiwer's word error rate) learning real speech; fine-tuning BASE-sized models needs a GPU."""
    config = TrainConfig("wav2vec2_base_ctc", epochs=35, batch_size=4, lr=6e-3, threads=1, out=str(tmp_path),
                         options={"utterances": 48, "max_words": 1, "mask_prob": 0.0},
                         model_kwargs=dict(SMALL, num_layers=0, final_dropout=0.0))
    summary = train(config)
    history = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    plateau = history[5]["test_loss"]
    assert history[-1]["test_loss"] < 0.5 * plateau and history[-1]["train_loss"] < 0.25 * plateau, history[-1]
    assert summary["final_test_wer"] < 1.0, [h["test_wer"] for h in history]
    # The same held-out utterances as 16-bit WAV files through `paperzoo transcribe --checkpoint`: words right
    # there too (measured: "five", "eight" and "two" of the 12, as the run's own word error rate of 0.75)
    test = audio_data.spoken_digits("test", 12, max_words=1)
    files = [write_wav(tmp_path / "wav" / f"{i}.wav", 0.9 * w / np.abs(w).max()) for i, w in enumerate(test.waveforms)]
    capsys.readouterr()
    assert cli.main(["transcribe", "wav2vec2_base_ctc", *map(str, files), "--checkpoint", str(tmp_path)]) == 0
    heard = [line.split(": ", 1)[1] if ": " in line else "" for line in capsys.readouterr().out.splitlines()]
    assert sum(h == t for h, t in zip(heard, test.transcripts, strict=True)) >= 1, (heard, test.transcripts)


def test_ctc_fine_tuning_starts_from_a_pre_training_run(tmp_path):
    """The paper's pipeline through `paperzoo train`: a pre-training run's encoder starts the CTC model (its
    convolutional feature encoder frozen, §4.3; the CTC layer new), the transcripts become character ids padded
    with -100, and the word error rate of greedy decoding is measured on the held-out voices. (Learning to
    transcribe takes minutes: measured in the README, 15 epochs of 400 utterances to a test loss of 10.2 from 27.)"""
    small = {**SMALL_PRETRAINING, "num_negatives": 4}
    train(TrainConfig("wav2vec2_base_pretraining", epochs=1, batch_size=8, threads=1, options={"utterances": 16},
                      model_kwargs=small, out=str(tmp_path / "pre")))
    encoder = str(tmp_path / "pre" / "model.safetensors")
    config = TrainConfig("wav2vec2_base_ctc", epochs=1, batch_size=8, threads=1, out=str(tmp_path / "ctc"),
                         options={"utterances": 16, "encoder": encoder}, model_kwargs=dict(SMALL, final_dropout=0.0))
    checked = plan(config)
    model = checked.task.build_model()
    pre = load_file(encoder)
    assert all(torch.equal(value, pre[f"wav2vec2.{key}"]) for key, value in model.wav2vec2.state_dict().items())
    assert not any(p.requires_grad for p in model.wav2vec2.feature_encoder.parameters())
    vocabulary = checked.task.vocabulary
    assert vocabulary[:2] == ["<blank>", "|"] and set(vocabulary[2:]) == set("".join(WORDS))
    _, _, labels = checked.task.collate([(torch.zeros(800), "one"), (torch.zeros(900), "two six")])
    assert labels[0, 3:].eq(-100).all() and labels[1, 3] == vocabulary.index("|")
    summary = train(config)
    assert summary["metric"] == "wer" and summary["final_test_wer"] >= 0.0
    state = torch.load(tmp_path / "ctc" / "checkpoint.pt", weights_only=True)
    assert state["vocabulary"] == vocabulary
    with pytest.raises(ValueError, match="does not exist"):
        plan(dataclasses.replace(config, options={"encoder": str(tmp_path / "nowhere.safetensors")},
                                 out=str(tmp_path / "other")))  # not "ctc": it holds the run above


# --- paperzoo transcribe ----------------------------------------------------------------------------------------

def test_transcribe_gives_the_greedy_ctc_transcript_of_a_runs_model(tmp_path, capsys, one_thread):
    """`paperzoo transcribe NAME AUDIO --checkpoint RUN`: each WAV file read and normalised as training read its
    utterances, the run's model, best-path decoding into the run's characters. The expected transcripts are
    computed here from model.safetensors and the vocabulary in checkpoint.pt."""
    run = tmp_path / "run"
    kwargs = dict(SMALL, num_layers=0, final_dropout=0.0)
    train(TrainConfig("wav2vec2_base_ctc", epochs=1, batch_size=4, threads=1, out=str(run),
                      options={"utterances": 24, "mask_prob": 0.0}, model_kwargs=kwargs))  # every letter
    # One epoch leaves the model on CTC's all-blank plateau: a wider-spread CTC layer in the run's file makes
    # it spell (nonsense), so that the comparison below is of characters, not of two empty transcripts.
    weights = load_file(run / "model.safetensors")
    weights["ctc_head.weight"] = weights["ctc_head.weight"] * 40
    weights["ctc_head.bias"] = torch.zeros_like(weights["ctc_head.bias"])
    save_file(weights, run / "model.safetensors")
    utterances = audio_data.spoken_digits("test", 2, max_words=2)
    files = [write_wav(tmp_path / f"{i}.wav", 0.9 * w / np.abs(w).max()) for i, w in enumerate(utterances.waveforms)]
    assert cli.main(["transcribe", "wav2vec2_base_ctc", *map(str, files), "--checkpoint", str(run)]) == 0
    printed = capsys.readouterr().out.splitlines()

    vocabulary = torch.load(run / "checkpoint.pt", weights_only=True)["vocabulary"]
    model = paperzoo.create_model("wav2vec2_base_ctc", vocab_size=len(vocabulary), blank_id=0, mask_prob=0.0,
                                  **kwargs)
    model.load_state_dict(load_file(run / "model.safetensors"))
    loaded = paperzoo.from_pretrained(run)  # the run's folder as a model folder: the same CTC model
    assert all(torch.equal(a, b) for a, b in zip(loaded.state_dict().values(), model.state_dict().values(),
                                                 strict=True))
    for path, line in zip(files, printed, strict=True):
        with wave.open(str(path)) as reader:
            audio = torch.from_numpy(np.frombuffer(reader.readframes(reader.getnframes()), np.int16) / 32768).float()
        audio = (audio - audio.mean()) / (audio.std() + 1e-7)
        with torch.no_grad():
            best = model.eval()(audio[None])["logits"][0].argmax(-1)
        frames = ((len(audio) - 400) // 320) + 1  # the feature encoder's 25 ms window, 20 ms stride
        letters = [vocabulary[i] for i in torch.unique_consecutive(best[:frames]).tolist() if i != 0]
        assert len(letters) > 3 and line == f"{path}: " + " ".join("".join(letters).replace("|", " ").split())


def test_transcribe_with_the_published_model_decodes_as_transformers(caches, tmp_path, monkeypatch, capsys):
    """--pretrained: the published CTC model (here a small one with random weights in its place) and the
    vocabulary file of its Hub repository; the transcript is the one transformers' feature extractor, model and
    tokenizer give (skipping the special tokens, as its speech recognition pipeline)."""
    import transformers

    config = small_published_wav2vec2_ctc(monkeypatch)
    torch.manual_seed(0)
    reference = transformers.Wav2Vec2ForCTC(config).eval()
    with torch.no_grad():
        reference.lm_head.weight.mul_(30.0)  # confident, varied characters rather than near-ties
    saved = tmp_path / "saved"
    reference.save_pretrained(saved, safe_serialization=False)
    letters = "ETAONIHSRDLUMWCFGYPBVK'XJQZ"
    (saved / "vocab.json").write_text(json.dumps({"<pad>": 0, "<s>": 1, "</s>": 2, "<unk>": 3, "|": 4,
                                                  **{c: 5 + i for i, c in enumerate(letters)}}))
    place_in_hub_cache(caches, "facebook/wav2vec2-base-960h", {p.name: p for p in saved.iterdir()})
    waveform = audio_data.spoken_digits("test", 1, max_words=3).waveforms[0]
    path = write_wav(tmp_path / "speech.wav", 0.9 * waveform / np.abs(waveform).max())
    assert cli.main(["transcribe", "wav2vec2_base_ctc", str(path), "--pretrained"]) == 0
    printed = capsys.readouterr().out.strip()

    extractor = transformers.Wav2Vec2FeatureExtractor(do_normalize=True)
    tokenizer = transformers.Wav2Vec2CTCTokenizer(str(saved / "vocab.json"))
    with wave.open(str(path)) as reader:
        audio = np.frombuffer(reader.readframes(reader.getnframes()), np.int16) / 32768
    inputs = extractor(audio, sampling_rate=16_000, return_tensors="pt")
    with torch.no_grad():
        ids = reference(inputs.input_values.float()).logits.argmax(-1)
    expected = tokenizer.batch_decode(ids, skip_special_tokens=True)[0]
    assert len(expected.replace(" ", "")) > 3  # characters, not only blanks
    assert printed == f"{path}: {expected}"


def test_transcribe_refuses_what_it_cannot_do_in_one_line(tmp_path, capsys):
    tone = write_wav(tmp_path / "tone.wav", np.sin(np.linspace(0, 400 * np.pi, 8000)) * 0.5)
    for arguments, message in [
        (["wav2vec2_base_ctc", str(tone)], "give --checkpoint RUN (a paperzoo train run of the CTC model) or "
                                           "--pretrained"),
        (["wav2vec2_base", str(tone), "--pretrained"], "wav2vec2_base has no CTC head to transcribe with"),
        (["wav2vec2_base_ctc", str(tmp_path / "missing.wav"), "--pretrained"], "no audio file at"),
        (["wav2vec2_base_ctc", str(tone), "--checkpoint", str(tmp_path)], f"no config.json in {tmp_path}"),
    ]:
        assert cli.main(["transcribe", *arguments]) == 2
        error = capsys.readouterr().err.strip()
        assert message in error and "\n" not in error, error
