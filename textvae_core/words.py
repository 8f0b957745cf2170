"""Word-level corpora (`tokens=word`): one sentence per line, words split on whitespace, an
end-of-sentence token after each, and a vocabulary from the training split.

The ids keep the character vocabulary's reserved tokens (`tokens`: PAD, START, DUMMY, UNK);
UNK is the word "<unk>" (PTB writes its rare words so already), and the end token "<eos>" is
the first word id. `vocab_size` caps the word types counted with "<eos>" and "<unk>", keeping
the most frequent training words (ties by first appearance) and mapping the rest to UNK: PTB
has 9,998 words besides those two, so its 10,000 fit a cap of 10,000 exactly.

Where the splits come from:
  "ptb"      `<data dir>/ptb/ptb.{train,valid,test}.txt`, downloaded and checksummed if absent;
  a folder   its train.txt, valid.txt and test.txt; without them, every *.txt by name, joined
             and split like one file;
  a file     split by lines (`split_lines`): the first 80% of its non-blank lines train, the
             next 10% valid, the last 10% test.
Blank lines are not sentences. A split is a `SentenceSplit`: every sentence's ids, each ended
by "<eos>", in one flat array with the sentences' start offsets.
"""

from __future__ import annotations

import collections
import functools
import hashlib
import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .errors import DataError, one_line
from .fragments import pcg64_state
from .tokens import DUMMY, N_RESERVED, PAD, START, UNK

EOS_WORD, UNK_WORD = "<eos>", "<unk>"
EOS = N_RESERVED  # the end token's id: the first word id
TRAIN_SHARE, VALID_SHARE = 0.8, 0.1  # a single file's lines; the rest is test
BUCKET_BATCHES = 50  # a bucket: this many batches' worth of shuffled sentences, sorted by length


@dataclass(frozen=True)
class WordVocabulary:
    """Words <-> ids. `words[0]` is "<eos>" (id EOS); "<unk>" is the reserved UNK id."""

    words: tuple[str, ...]

    def __post_init__(self) -> None:
        words = tuple(self.words)
        object.__setattr__(self, "words", words)
        if not words or words[0] != EOS_WORD or UNK_WORD in words or len(set(words)) != len(words):
            raise DataError(
                "WordVocabulary.words must start with '<eos>' and hold distinct words other "
                "than '<unk>': build it with WordVocabulary.from_sentences"
            )

    tokens = "word"

    @classmethod
    def from_sentences(cls, sentences: list[list[str]], cap: int = 0) -> WordVocabulary:
        """The training split's words by frequency (ties: first appearance), at most `cap`
        types counted with "<eos>" and "<unk>" (0: all)."""
        counts = collections.Counter(w for s in sentences for w in s)
        counts.pop(UNK_WORD, None)
        counts.pop(EOS_WORD, None)
        order = sorted(counts, key=lambda w: -counts[w])  # stable: first appearance breaks ties
        if cap:
            if cap < 3:
                raise DataError(
                    f"vocab_size={cap} does not fit a word vocabulary: it counts '<eos>', '<unk>' "
                    "and at least one word, so use 3 or more (0 keeps every word)"
                )
            order = order[: cap - 2]
        return cls((EOS_WORD, *order))

    @property
    def size(self) -> int:
        return N_RESERVED + len(self.words)

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(np.uint16 if self.size <= 65535 else np.uint32)

    @functools.cached_property
    def _index(self) -> dict[str, int]:
        return {w: N_RESERVED + i for i, w in enumerate(self.words)}

    def encode_sentence(self, words: list[str]) -> list[int]:
        """Ids of a sentence's words then EOS; unknown words (and "<unk>") are UNK."""
        index = self._index
        return [index.get(w, UNK) for w in words if w != EOS_WORD] + [EOS]

    def decode(self, ids) -> str:
        """The words of a 1-D id sequence up to its first EOS, joined by spaces; PAD and START
        are dropped, DUMMY shows as '_', UNK and ids outside the vocabulary as '<unk>'."""
        if hasattr(ids, "tolist"):
            ids = ids.tolist()
        out = []
        for i in (int(i) for i in ids):
            if i == EOS:
                break
            if i in (PAD, START):
                continue
            out.append(
                "_"
                if i == DUMMY
                else self.words[i - N_RESERVED]
                if N_RESERVED < i < self.size
                else UNK_WORD
            )
        return " ".join(out)

    def to_json(self) -> str:
        return json.dumps({"tokens": "word", "words": list(self.words)})

    @classmethod
    def from_json(cls, s: str) -> WordVocabulary:
        try:
            data = json.loads(s)
            if data.get("tokens") != "word":
                raise KeyError("tokens")
            return cls(tuple(data["words"]))
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise DataError(
                f'not a word vocabulary JSON ({one_line(exc)}): expected {{"tokens": "word", '
                '"words": [...]}} as written by WordVocabulary.to_json'
            ) from None


@dataclass(frozen=True, eq=False)
class SentenceSplit:
    """A split's sentences: `ids` (1-D, every sentence then EOS), `offsets` (n + 1,)."""

    ids: np.ndarray
    offsets: np.ndarray

    def __len__(self) -> int:
        return len(self.offsets) - 1

    @functools.cached_property
    def lengths(self) -> np.ndarray:
        """Tokens per sentence, EOS included (n,)."""
        return np.diff(self.offsets)

    @property
    def tokens(self) -> int:
        return int(self.offsets[-1])

    def truncated(self, max_len: int) -> int:
        """How many sentences are longer than `max_len` tokens (0: no maximum)."""
        return int((self.lengths > max_len).sum()) if max_len else 0

    def batch(self, indices, max_len: int = 0) -> torch.Tensor:
        """Sentences `indices` as a LongTensor (B, T), PAD after each; T is the longest
        one's length, cut at `max_len` tokens (0: no maximum)."""
        lengths = self.lengths[indices]
        if max_len:
            lengths = np.minimum(lengths, max_len)
        out = np.full((len(indices), int(lengths.max())), PAD, dtype=np.int64)
        for row, (i, n) in enumerate(zip(indices, lengths)):
            start = self.offsets[i]
            out[row, :n] = self.ids[start : start + n]
        return torch.from_numpy(out)

    @classmethod
    def of(cls, vocab: WordVocabulary, sentences: list[list[str]]) -> SentenceSplit:
        encoded = [vocab.encode_sentence(s) for s in sentences]
        offsets = np.zeros(len(encoded) + 1, dtype=np.int64)
        np.cumsum([len(e) for e in encoded], out=offsets[1:])
        ids = np.fromiter((i for e in encoded for i in e), dtype=vocab.dtype, count=offsets[-1])
        ids.setflags(write=False)
        offsets.setflags(write=False)
        return cls(ids, offsets)


class SentenceBatcher:
    """Training batches over epochs: each epoch shuffles the sentences, sorts every bucket of
    BUCKET_BATCHES batches' worth by length, cuts the buckets into batches (the last of an
    epoch may be smaller) and shuffles the batches. Sorting only groups similar lengths, so
    there is little padding; padding is never scored."""

    def __init__(self, split: SentenceSplit, batch_size: int, seed: int, max_len: int = 0):
        if len(split) == 0:
            raise DataError("the training split has no sentences")
        self.split, self.batch_size, self.max_len = split, batch_size, max_len
        self._rng = np.random.Generator(np.random.PCG64(seed))
        self._epoch_state = self._rng.bit_generator.state
        self._batches = self._order()
        self._pos = 0

    @property
    def steps_per_epoch(self) -> int:
        return math.ceil(len(self.split) / self.batch_size)

    def _order(self) -> list[np.ndarray]:
        perm = self._rng.permutation(len(self.split))
        bucket = self.batch_size * BUCKET_BATCHES
        lengths = self.split.lengths
        batches = []
        for start in range(0, len(perm), bucket):
            chunk = perm[start : start + bucket]
            chunk = chunk[np.argsort(lengths[chunk], kind="stable")]
            batches += [
                chunk[i : i + self.batch_size] for i in range(0, len(chunk), self.batch_size)
            ]
        return [batches[i] for i in self._rng.permutation(len(batches))]

    def sample(self) -> torch.Tensor:
        """The next batch (B, T), PAD after each sentence; a new epoch when one ends."""
        if self._pos == len(self._batches):
            self._epoch_state = self._rng.bit_generator.state
            self._batches, self._pos = self._order(), 0
        batch = self._batches[self._pos]
        self._pos += 1
        return self.split.batch(batch, self.max_len)

    def state_dict(self) -> dict:
        return {"epoch_state": self._epoch_state, "pos": self._pos}

    def load_state_dict(self, d: dict) -> None:
        state = pcg64_state(d, "epoch_state", "SentenceBatcher")
        self._rng.bit_generator.state = state
        self._epoch_state = state
        self._batches, self._pos = self._order(), int(d["pos"])


def fixed_batches(split: SentenceSplit, batch_size: int, max_len: int = 0, limit: int = 0):
    """The split's first `limit` sentences (0: all) in batches of sentences of similar length
    (sorted by length, ties by position): the same batches at every call, for evaluation.
    Yields (indices, LongTensor (B, T))."""
    n = min(limit, len(split)) if limit else len(split)
    order = np.argsort(split.lengths[:n], kind="stable")
    for start in range(0, n, batch_size):
        idx = order[start : start + batch_size]
        yield idx, split.batch(idx, max_len)


def split_lines(lines: list) -> tuple[list, list, list]:
    """The split rule for a single word-level text: of its non-blank lines, the first 80% are
    train, the next 10% valid and the rest (about 10%) test; with 3 or more lines, each split
    gets at least one. Fewer than 3 lines leave valid and test empty (an error when loaded)."""
    n = len(lines)
    if n < 3:
        return lines, [], []
    n_valid = max(1, int(n * VALID_SHARE))
    n_train = max(1, min(int(n * TRAIN_SHARE), n - n_valid - 1))
    return lines[:n_train], lines[n_train : n_train + n_valid], lines[n_train + n_valid :]


@dataclass(frozen=True, eq=False)
class WordCorpus:
    """A word-level corpus: its three splits, the vocabulary from train, the sources' hash."""

    name: str
    train: SentenceSplit
    valid: SentenceSplit
    test: SentenceSplit
    vocab: WordVocabulary
    sha256: str

    tokens = "word"

    @classmethod
    def of(cls, name: str, splits: list, sha256: str, cap: int = 0) -> WordCorpus:
        """The corpus of (train, valid, test) lists of sentences (lists of words), its
        vocabulary from train capped at `cap` types."""
        vocab = WordVocabulary.from_sentences(splits[0], cap)
        train, valid, test = (SentenceSplit.of(vocab, s) for s in splits)
        return cls(name, train, valid, test, vocab, sha256)


def sentences(text: str) -> list[list[str]]:
    """The words of each non-blank line of `text`."""
    return [line.split() for line in text.splitlines() if line.split()]


def decode_utf8(path: Path, raw: bytes) -> str:
    """A file's bytes as text (a BOM dropped); DataError naming the first bad byte if not UTF-8."""
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DataError(
            f"{path} is not UTF-8 text (invalid byte 0x{raw[exc.start]:02x} at offset "
            f"{exc.start}): convert it first, e.g. `iconv -f latin1 -t utf-8`"
        ) from None


@functools.lru_cache(maxsize=8)
def word_corpus(
    name: str, files: tuple[str, ...], joined: bool, fingerprint: tuple, cap: int
) -> WordCorpus:
    """The corpus from (train, valid, test) files, or with `joined` from files joined in order
    and split by `split_lines`. Memoised per process by the files' paths, sizes and mtimes."""
    del fingerprint  # only part of the memo key
    paths = [Path(f) for f in files]
    raws = [p.read_bytes() for p in paths]
    sha = hashlib.sha256(b"".join(raws)).hexdigest()
    parts = [sentences(decode_utf8(p, r)) for p, r in zip(paths, raws)]
    if not joined:
        splits = parts
    else:
        lines = [s for part in parts for s in part]
        splits = list(split_lines(lines))
    for split, found in zip(("train", "valid", "test"), splits):
        if not found:
            raise DataError(
                f"corpus {name}: the {split} split has no sentences: give one sentence per line "
                "(a single file needs at least 3 non-blank lines; it is split 80/10/10 by lines)"
            )
    return WordCorpus.of(name, splits, sha, cap)
