"""Speech for wav2vec 2.0: the spoken digits that ship with paperzoo, or a folder of yours.

* :func:`spoken_digits`: 160 recordings of the words "zero" to "nine", spoken by Debian's espeak-ng in eight
  voices at two speeds (``scripts/make-spoken-digits`` made them; 8-bit μ-law at 16 kHz, 1 MB). Utterances of
  one to three words are put together from them, each in one voice and speed, with the words' transcript; the
  last two voices are held out, so the test utterances are spoken by voices the model never heard.
* :func:`audio_folder`: ``.wav`` files (16-bit PCM, any sample rate: other rates are resampled to 16 kHz with a
  warning), each with an optional transcript beside it (``name.txt``); ``train/`` and ``val/`` (or ``test/``)
  sub-folders if present, else a fixed random split.
"""

from __future__ import annotations

import warnings
import wave
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

SAMPLE_RATE = 16_000
_DIGITS = Path(__file__).with_name("spoken_digits.npz")
_HELD_OUT_VOICES = 2


class Utterances(Dataset):
    """``(waveform float32 (samples,), transcript str)`` pairs; the waveform normalised to zero mean and unit
    variance, as wav2vec 2.0's feature extractor does (``do_normalize``). ``files`` names where each came from
    (the ``.wav`` files of a folder), for messages about a bad one."""

    def __init__(self, waveforms: list[np.ndarray], transcripts: list[str], files: list[Path] | None = None) -> None:
        self.waveforms, self.transcripts = waveforms, transcripts
        self.files = files

    def __len__(self) -> int:
        return len(self.waveforms)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, str]:
        return normalise(torch.from_numpy(self.waveforms[index])), self.transcripts[index]


def normalise(audio: torch.Tensor) -> torch.Tensor:
    """Zero mean, unit variance (the unbiased standard deviation): how training gives a waveform to the model,
    and ``paperzoo transcribe`` a run's model."""
    audio = audio.float()
    return (audio - audio.mean()) / (audio.std() + 1e-7)


def mu_law_decode(codes: np.ndarray, mu: int = 255) -> np.ndarray:
    """Inverse of G.711 μ-law companding: x = sign(y) ((1 + μ)^|y| − 1) / μ, with y in [−1, 1]."""
    y = codes.astype(np.float64) / mu * 2 - 1
    return (np.sign(y) * np.expm1(np.abs(y) * np.log1p(mu)) / mu).astype(np.float32)


def spoken_digits(split: str, count: int, seed: int = 0, max_words: int = 3) -> Utterances:
    """``count`` utterances of 1 to ``max_words`` spoken digits (fixed by ``seed`` and ``split``)."""
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    data = np.load(_DIGITS)
    clips = np.split(mu_law_decode(data["audio"]), np.cumsum(data["lengths"])[:-1])
    voices, speeds, words = data["voices"], data["speeds"], data["words"]
    names = [str(n) for n in data["word_names"]]
    test_voices = set(range(len(data["voice_names"]) - _HELD_OUT_VOICES, len(data["voice_names"])))
    speakers = sorted({(int(v), int(s)) for v, s in zip(voices, speeds, strict=True)
                       if (int(v) in test_voices) == (split == "test")})
    generator = np.random.default_rng([seed, split == "test"])
    gap = np.zeros(int(0.08 * SAMPLE_RATE), dtype=np.float32)  # 80 ms between words
    waveforms, transcripts = [], []
    for _ in range(count):
        voice, speed = speakers[generator.integers(len(speakers))]
        chosen = generator.integers(0, 10, size=generator.integers(1, max_words + 1))
        parts = []
        for digit in chosen:
            index = np.flatnonzero((voices == voice) & (speeds == speed) & (words == digit))[0]
            parts += [clips[index], gap]
        waveforms.append(np.concatenate([gap, *parts]))
        transcripts.append(" ".join(names[d] for d in chosen))
    return Utterances(waveforms, transcripts)


def read_wav(path: Path) -> np.ndarray:
    """A 16-bit PCM ``.wav`` as float32 mono at 16 kHz; another rate is resampled (with a warning)."""
    try:
        with wave.open(str(path)) as reader:
            rate, channels, width = reader.getframerate(), reader.getnchannels(), reader.getsampwidth()
            frames = reader.readframes(reader.getnframes())
    except (wave.Error, EOFError) as err:
        raise ValueError(f"{path} is not a readable WAV file: {err}") from None
    if width != 2:
        raise ValueError(f"{path} has {8 * width}-bit samples; paperzoo reads 16-bit PCM WAV (convert it, e.g. "
                         "`ffmpeg -i in.wav -acodec pcm_s16le out.wav`)")
    audio = np.frombuffer(frames, dtype=np.int16).astype(np.float32).reshape(-1, channels).mean(1) / 32768
    if rate != SAMPLE_RATE:
        from math import gcd

        from scipy.signal import resample_poly

        warnings.warn(f"{path} is sampled at {rate} Hz; resampled to the 16000 Hz wav2vec 2.0 takes", stacklevel=2)
        divisor = gcd(SAMPLE_RATE, rate)
        audio = resample_poly(audio, SAMPLE_RATE // divisor, rate // divisor).astype(np.float32)
    return audio


def audio_folder(root: str | Path, test_fraction: float = 0.2, seed: int = 0) -> tuple[Utterances, Utterances]:
    """Train and test utterances from a folder of ``.wav`` files with optional ``.txt`` transcripts."""
    root = Path(root)
    if not root.is_dir():
        raise ValueError(f"audio folder {root} does not exist")

    def read(folder: Path) -> Utterances:
        files = sorted(folder.rglob("*.wav"))
        if not files:
            raise ValueError(f"audio folder {folder} holds no .wav files")
        waveforms, transcripts = [], []
        for path in files:
            audio = read_wav(path)
            if len(audio) < 400:  # the feature encoder's receptive field: 25 ms
                raise ValueError(f"{path} is {len(audio)} samples long; wav2vec 2.0 needs at least 400 (25 ms)")
            text = path.with_suffix(".txt")
            waveforms.append(audio)
            transcripts.append(" ".join(text.read_text().split()).lower() if text.is_file() else "")
        return Utterances(waveforms, transcripts, files)

    held_out = next((root / name for name in ("val", "test") if (root / name).is_dir()), None)
    if (root / "train").is_dir() and held_out is not None:
        return read(root / "train"), read(held_out)
    full = read(root)
    order = np.random.default_rng(seed).permutation(len(full)).tolist()
    cut = max(1, round(test_fraction * len(full)))

    def pick(indices: list[int]) -> Utterances:
        return Utterances([full.waveforms[i] for i in indices], [full.transcripts[i] for i in indices],
                          [full.files[i] for i in indices])

    return pick(order[cut:]), pick(order[:cut])
