"""Text for the language models of ``paperzoo train``: a plain-text file, its tokenizer, and the examples cut
from it.

* :data:`DEFAULT_TEXT` is the book of Genesis in the World English Bible (``texts/genesis_web.txt``, 183 KB,
  1,533 verses one a line, a blank line between chapters), real English prose that ships inside the package.
  The World English Bible is dedicated to the public domain by its translators (eBible.org); the text was taken
  offline from Debian's ``sword-text-web`` package (module engWEB2015eb, copyright file: "License:
  public-domain") with ``diatheke -b engWEB2015eb -o n -f plain -k Genesis``, its Strong's-number tags and verse
  references removed.
* :func:`read_text` reads a user's UTF-8 file, refusing what no model can learn from (a missing, empty or
  binary file) with the file's name.
* The tokenizers are trained on the training part of the text with the ``tokenizers`` library, as the papers'
  own vocabularies were built from their corpora: GPT-2's byte-level BPE (:func:`train_byte_level_bpe`) for the
  left-to-right language models and BERT's WordPiece (:func:`train_wordpiece`) for the masked one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset

DEFAULT_TEXT = Path(__file__).parent / "texts" / "genesis_web.txt"
TEST_FRACTION = 0.1  # the held-out part: the end of the text, never seen in training
END_OF_TEXT = "<|endoftext|>"  # GPT-2's one special token
BERT_SPECIAL = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")  # BERT's, ids 0..4 in this order


def tokenizers_library() -> Any:
    """The ``tokenizers`` package, or an ImportError that says how to install it."""
    try:
        import tokenizers
    except ImportError:
        raise ImportError("training a language model needs the tokenizers library: "
                          "pip install 'paperzoo[train]'") from None
    return tokenizers


def read_text(path: str | Path | None) -> str:
    """The UTF-8 text of ``path`` (``None``: the embedded default). A missing, binary, non-UTF-8 or empty file is
    a ``ValueError`` naming it."""
    path = Path(path) if path is not None else DEFAULT_TEXT
    if not path.is_file():
        raise ValueError(f"text file {path} does not exist (--data text PATH takes a plain UTF-8 text file)")
    raw = path.read_bytes()
    if b"\0" in raw:
        offset = raw.index(b"\0")
        raise ValueError(f"text file {path} is binary (a NUL byte at offset {offset}): --data text takes a plain "
                         "UTF-8 text file")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise ValueError(f"text file {path} is not UTF-8 (byte {raw[err.start]:#04x} at offset {err.start}): "
                         "convert it, e.g. iconv -f latin1 -t utf-8") from None
    if not text.strip():
        raise ValueError(f"text file {path} is empty: a language model needs text to learn from")
    return text


def split_text(text: str) -> tuple[str, str]:
    """The first 90% of the lines for training, the last 10% held out (a contiguous end of the text, so no
    held-out sentence is also a training one). A text of one line is cut by characters instead."""
    lines = text.splitlines(keepends=True)
    if len(lines) >= 10:
        cut = len(lines) - max(1, round(TEST_FRACTION * len(lines)))
        return "".join(lines[:cut]), "".join(lines[cut:])
    cut = round(len(text) * (1 - TEST_FRACTION))
    return text[:cut], text[cut:]


def train_byte_level_bpe(text: str, vocab_size: int) -> Any:
    """GPT-2's tokenizer trained on ``text``: byte-level BPE (any string encodes, with no unknown token) with
    ``vocab_size`` tokens, the 256 bytes and ``<|endoftext|>`` among them."""
    tokenizers = tokenizers_library()
    from tokenizers import decoders, models, pre_tokenizers, trainers

    tokenizer = tokenizers.Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=[END_OF_TEXT], show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tokenizer.train_from_iterator(text.splitlines(keepends=True), trainer=trainer)
    return tokenizer


def train_wordpiece(text: str, vocab_size: int) -> Any:
    """BERT's tokenizer trained on ``text``: lower-cased WordPiece with ``vocab_size`` pieces, the special tokens
    [PAD], [UNK], [CLS], [SEP], [MASK] first (ids 0-4)."""
    tokenizers = tokenizers_library()
    from tokenizers import decoders, models, normalizers, pre_tokenizers, trainers

    tokenizer = tokenizers.Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.BertNormalizer(lowercase=True)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tokenizer.decoder = decoders.WordPiece()
    trainer = trainers.WordPieceTrainer(vocab_size=vocab_size, special_tokens=list(BERT_SPECIAL), show_progress=False)
    tokenizer.train_from_iterator(text.splitlines(), trainer=trainer)
    # The trainer numbers pieces of equal frequency in hash order, which differs between runs (and so between
    # the processes of one torchrun run): the same pieces, renumbered in a fixed order, special tokens first.
    learned = sorted(set(tokenizer.get_vocab()) - set(BERT_SPECIAL))
    vocab = {token: index for index, token in enumerate([*BERT_SPECIAL, *learned])}
    tokenizer.model = models.WordPiece(vocab, unk_token="[UNK]")
    return tokenizer


def encode(tokenizer: Any, text: str) -> torch.Tensor:
    """The token ids of ``text`` as one int64 tensor."""
    ids: list[int] = []
    for encoding in tokenizer.encode_batch(text.splitlines(keepends=True)):
        ids.extend(encoding.ids)
    return torch.tensor(ids, dtype=torch.int64)


class TokenWindows(Dataset):
    """A token stream cut into consecutive windows of ``length`` tokens, one example each: ``(length,)`` ids.
    The language model predicts every token of a window from those before it (the first has no context)."""

    def __init__(self, ids: torch.Tensor, length: int) -> None:
        self.windows = ids[: len(ids) // length * length].view(-1, length)  # (num_windows, length)

    def __len__(self) -> int:
        return len(self.windows)

    def __getitem__(self, index: int) -> torch.Tensor:
        return self.windows[index]


class SentencePairs(Dataset):
    """BERT's pre-training examples (§3.1, Appendix A.2): segment A, lines of the text up to half the length,
    and segment B, the lines that follow it (IsNext, label 0) or, half of the time, lines from a random other
    place (NotNext, label 1). The choices are drawn once from ``seed``, so every epoch and every process sees
    the same pairs; the masking is drawn anew for each batch. Each example: ``(ids, token_type_ids, label)``
    with ``[CLS] A [SEP] B [SEP]``, at most ``length`` tokens."""

    def __init__(self, lines: list[list[int]], length: int, cls_id: int, sep_id: int, seed: int) -> None:
        generator = torch.Generator().manual_seed(seed)
        budget = (length - 3) // 2  # tokens per segment: [CLS], two [SEP]s and the two halves fill the length
        self.examples: list[tuple[torch.Tensor, torch.Tensor, int]] = []
        lines = [line for line in lines if line]
        i = 0
        while i < len(lines) - 1:
            first, i = self._segment(lines, i, budget)
            if i >= len(lines):
                break
            not_next = int(torch.rand((), generator=generator) < 0.5)
            start = int(torch.randint(len(lines), (), generator=generator)) if not_next else i
            if not_next and abs(start - i) < 2:  # a "random" segment that happens to follow A is IsNext after all
                start = (start + len(lines) // 2) % len(lines)
            second, after = self._segment(lines, start, budget)
            if not not_next:
                i = after
            ids = [cls_id, *first, sep_id, *second, sep_id]
            types = [0] * (len(first) + 2) + [1] * (len(second) + 1)
            self.examples.append((torch.tensor(ids), torch.tensor(types), not_next))

    @staticmethod
    def _segment(lines: list[list[int]], start: int, budget: int) -> tuple[list[int], int]:
        """Whole lines from ``start`` while they fit ``budget`` tokens (at least one, cut to the budget)."""
        tokens, i = list(lines[start][:budget]), start + 1
        while i < len(lines) and len(tokens) + len(lines[i]) <= budget:
            tokens += lines[i]
            i += 1
        return tokens, i

    def __len__(self) -> int:
        return len(self.examples)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor, int]:
        return self.examples[index]
