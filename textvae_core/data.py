"""Character-level corpora: loading, caching, the PTB download, the synthetic set.

The paper's released code reads Mikolov's word-level PTB files `ptb.{train,valid,test}.txt`
as raw character streams (spaces and newlines are ordinary symbols) and builds the
vocabulary from train: 50 characters (`vocab.Vocabulary`). Training and validation batches
are contiguous L-character windows at uniformly random start positions: no padding, no end
token (`fragments.FragmentSampler`).

A corpus is named by a spec string:
  "ptb"        the PTB files in `<data dir>/ptb` (downloaded and checksummed on first use);
  "synthetic"  text from a small stochastic grammar with known per-sentence latent factors
               (topic, tense, length), so tests can check what a VAE's z encodes;
  a path       a UTF-8 file (the last ~10% is valid) or a folder (train.txt + valid.txt,
               otherwise all *.txt concatenated by name and split like a file).

With tokens=word a corpus is read as sentences of words instead (`words`), with a test split.

Encoded splits are cached as .npy files and memory-mapped read-only, so many trials on one
machine share the same pages. Every user-caused failure is a `DataError` with one line that
says what is wrong and what to do.
"""

from __future__ import annotations

import functools
import hashlib
import os
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from .errors import DataError, one_line
from .grammar import (
    STREAM_TEST,
    STREAM_TRAIN,
    STREAM_VALID,
    SYNTHETIC_TRAIN,
    SYNTHETIC_VALID,
    generate_sentences,
)
from .ptb import PTB_SHA256, PTB_URL, default_data_dir, fetch_ptb  # noqa: F401 (re-exported)
from .vocab import Vocabulary
from .words import WordCorpus, decode_utf8, sentences, word_corpus

MIN_SPLIT_CHARS = 300  # shortest train or valid split a corpus may have
VALID_FRACTION = 0.1  # share of a single text that becomes the valid split


# --- corpora ------------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)  # eq=False: arrays don't compare with ==; hash by identity
class Corpus:
    name: str  # "ptb", "synthetic", or the resolved path; load_corpus(name) gives it back
    train: np.ndarray  # 1-D ids, read-only (memory-mapped .npy for ptb and paths)
    valid: np.ndarray  # 1-D ids, read-only
    vocab: Vocabulary  # built from train
    sha256: str  # sha256 hex of the raw source bytes (train then valid), for provenance tags

    tokens = "char"
    test = None  # character corpora have train and valid only


def load_corpus(
    spec: str,
    data_dir: str | Path | None = None,
    fetch: bool = True,
    tokens: str = "char",
    vocab_size: int = 0,
):
    """The corpus named by `spec`: "ptb", "synthetic", or a path to a UTF-8 file or folder.

    "ptb" reads `<data_dir>/ptb/ptb.{train,valid}.txt` (data_dir defaults to
    `default_data_dir()`), calling `fetch_ptb` first if they are missing and `fetch` is true.
    A file is split by `split_train_valid`; a folder uses train.txt and valid.txt if both
    exist, else all *.txt files sorted by name, concatenated and split like a file. Results
    are memoised per process (keyed by the resolved paths and the files' size and mtime), so
    repeated trials in one worker don't re-read anything.
    """
    spec = str(spec).strip()
    root = Path(data_dir).expanduser() if data_dir is not None else default_data_dir()
    if tokens == "word":
        return _load_word_corpus(spec, root, fetch, vocab_size)
    if spec == "synthetic":
        return _synthetic_corpus()
    if spec == "ptb":
        folder = (root / "ptb").resolve()
        files = (folder / "ptb.train.txt", folder / "ptb.valid.txt")
        if not all(f.is_file() for f in files):
            if not fetch:
                raise DataError(
                    f"the PTB files are missing from {folder}: run `vaestudy data fetch ptb`, "
                    f"copy ptb.train.txt and ptb.valid.txt there, or set VAESTUDY_DATA"
                )
            fetch_ptb(folder)
        return _file_corpus("ptb", "ptb", tuple(map(str, files)), _fingerprint(files), str(folder))

    path = Path(spec).expanduser()
    if not path.exists():
        raise DataError(f"corpus {spec!r} is not 'ptb', 'synthetic' or an existing file or folder")
    path = path.resolve()
    if path.is_dir():
        if (path / "train.txt").is_file() and (path / "valid.txt").is_file():
            kind, files = "pair", (path / "train.txt", path / "valid.txt")
        else:
            kind, files = "concat", tuple(sorted(p for p in path.glob("*.txt") if p.is_file()))
            if not files:
                raise DataError(
                    f"folder {path} has no .txt files: add train.txt and valid.txt, "
                    "or one or more UTF-8 *.txt files"
                )
    else:
        kind, files = "concat", (path,)
    return _file_corpus(
        str(path),
        kind,
        tuple(map(str, files)),
        _fingerprint(files),
        str((root / "corpora").resolve()),
    )


def _load_word_corpus(spec: str, root: Path, fetch: bool, vocab_size: int) -> WordCorpus:
    """`load_corpus` with tokens=word (see `words`): PTB's three files, a folder's
    train/valid/test.txt, or files joined and split 80/10/10 by lines."""
    if spec == "synthetic":
        return _synthetic_word_corpus(vocab_size)
    if spec == "ptb":
        folder = (root / "ptb").resolve()
        files = tuple(folder / f"ptb.{s}.txt" for s in ("train", "valid", "test"))
        if not all(f.is_file() for f in files):
            if not fetch:
                raise DataError(
                    f"the PTB files are missing from {folder}: run `vaestudy data fetch ptb`, "
                    f"copy ptb.train.txt, ptb.valid.txt and ptb.test.txt there, or set "
                    "VAESTUDY_DATA"
                )
            fetch_ptb(folder)
        return word_corpus("ptb", tuple(map(str, files)), False, _fingerprint(files), vocab_size)
    path = Path(spec).expanduser()
    if not path.exists():
        raise DataError(f"corpus {spec!r} is not 'ptb' or an existing file or folder")
    path = path.resolve()
    joined = True
    if path.is_dir():
        files = tuple(path / f"{s}.txt" for s in ("train", "valid", "test"))
        if all(f.is_file() for f in files):
            joined = False
        else:
            files = tuple(sorted(p for p in path.glob("*.txt") if p.is_file()))
            if not files:
                raise DataError(
                    f"folder {path} has no .txt files: add train.txt, valid.txt and test.txt "
                    "(one sentence per line), or one or more UTF-8 *.txt files"
                )
    else:
        files = (path,)
    return word_corpus(str(path), tuple(map(str, files)), joined, _fingerprint(files), vocab_size)


def split_train_valid(text: str) -> tuple[str, str]:
    """The split rule for a single text: the last 10% of characters is valid, cut at a line.

    Valid starts right after the last newline at or before the 90% mark, provided that
    leaves at most 20% of the text to valid; otherwise it starts exactly at the 90% mark.
    """
    mark = int(len(text) * (1 - VALID_FRACTION))
    newline = text.rfind("\n", 0, mark)
    cut = (
        newline + 1
        if newline >= 0 and newline + 1 >= len(text) * (1 - 2 * VALID_FRACTION)
        else mark
    )
    return text[:cut], text[cut:]


def _fingerprint(files) -> tuple:
    return tuple((str(f), os.stat(f).st_size, os.stat(f).st_mtime_ns) for f in files)


def _read_text(path: Path, raw: bytes) -> str:
    if not raw:
        raise DataError(
            f"{path} is empty: a corpus needs UTF-8 text with at least "
            f"{MIN_SPLIT_CHARS} characters in each of train and valid"
        )
    return decode_utf8(path, raw)


@functools.lru_cache(maxsize=16)
def _file_corpus(
    name: str, kind: str, files: tuple[str, ...], fingerprint: tuple, cache_root: str
) -> Corpus:
    """Corpus from text files. kind "ptb"/"pair": files are (train, valid); "concat": the
    files are joined (a newline added after any that lacks one) and split by the rule."""
    del fingerprint  # only part of the memo key: a changed file gives a new entry
    paths = [Path(f) for f in files]
    raws = [p.read_bytes() for p in paths]
    sha = hashlib.sha256(b"".join(raws)).hexdigest()

    def texts() -> tuple[str, str]:
        decoded = [_read_text(p, r) for p, r in zip(paths, raws)]
        if kind != "concat":
            return decoded[0], decoded[1]
        joined = "".join(t if t.endswith("\n") else t + "\n" for t in decoded[:-1]) + decoded[-1]
        return split_train_valid(joined)

    if kind == "ptb":  # cached next to the text, keyed by the sources' hash
        folder, tag = Path(cache_root), sha[:16]
        cache = {s: folder / f"ptb.{s}.{tag}.npy" for s in ("train", "valid")}
        cache["vocab"] = folder / f"ptb.vocab.{tag}.json"
    else:
        folder = Path(cache_root) / sha[:16]
        cache = {
            "train": folder / "train.npy",
            "valid": folder / "valid.npy",
            "vocab": folder / "vocab.json",
        }
    note = "" if kind == "ptb" else "\n".join(files)  # which files a corpora/<hash> entry came from
    train, valid, vocab = _cached_arrays(name, cache, texts, source_note=note)
    return Corpus(name=name, train=train, valid=valid, vocab=vocab, sha256=sha)


def _cached_arrays(
    name: str, cache: dict[str, Path], texts: Callable[[], tuple[str, str]], source_note: str = ""
) -> tuple[np.ndarray, np.ndarray, Vocabulary]:
    """Open the cached encoded splits read-only, encoding and writing them first if absent."""
    if all(p.is_file() for p in cache.values()):
        try:
            vocab = Vocabulary.from_json(cache["vocab"].read_text())
            return (
                np.load(cache["train"], mmap_mode="r"),
                np.load(cache["valid"], mmap_mode="r"),
                vocab,
            )
        except (OSError, ValueError, DataError):
            pass  # a damaged cache entry: rebuild it below
    train_text, valid_text = texts()
    for split, text in (("train", train_text), ("valid", valid_text)):
        if len(text) < MIN_SPLIT_CHARS:
            raise DataError(
                f"corpus {name}: the {split} split has {len(text)} characters, fewer than "
                f"{MIN_SPLIT_CHARS}: give a longer text (a single file is split 90/10)"
            )
    vocab = Vocabulary.from_text(train_text)
    train, valid = vocab.encode(train_text), vocab.encode(valid_text)
    try:
        folder = cache["train"].parent
        folder.mkdir(parents=True, exist_ok=True)
        if source_note:
            _atomic_write(folder / "source.txt", lambda f: f.write(source_note.encode() + b"\n"))
        _atomic_write(cache["train"], lambda f: np.save(f, train))
        _atomic_write(cache["valid"], lambda f: np.save(f, valid))
        # last: marks complete
        _atomic_write(cache["vocab"], lambda f: f.write(vocab.to_json().encode()))
        return np.load(cache["train"], mmap_mode="r"), np.load(cache["valid"], mmap_mode="r"), vocab
    except OSError as exc:
        # A read-only data folder still works; each process just keeps its own copy.
        warnings.warn(
            f"could not cache the encoded corpus in {cache['train'].parent} "
            f"({one_line(exc)}); using in-memory arrays",
            stacklevel=3,
        )
        train.setflags(write=False)
        valid.setflags(write=False)
        return train, valid, vocab


def _atomic_write(path: Path, write: Callable) -> None:
    """Write via a temp file in the same folder and os.replace, so readers never see a part."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; other users' workers may share the cache
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)


@functools.cache
def _synthetic_word_corpus(vocab_size: int) -> WordCorpus:
    """The "synthetic" corpus's sentences as words: train and valid as for characters, and a
    test split of 2000 sentences from a stream of its own."""
    streams = (
        (SYNTHETIC_TRAIN, STREAM_TRAIN),
        (SYNTHETIC_VALID, STREAM_VALID),
        (SYNTHETIC_VALID, STREAM_TEST),
    )
    texts = ["".join(generate_sentences(0, n, stream)[0]) for n, stream in streams]
    sha = hashlib.sha256("".join(texts).encode()).hexdigest()
    return WordCorpus.of("synthetic", [sentences(t) for t in texts], sha, vocab_size)


@functools.cache
def _synthetic_corpus() -> Corpus:
    """The "synthetic" corpus: seed 0, 20000 train and 2000 valid sentences (~1M characters)."""
    train_text = "".join(generate_sentences(0, SYNTHETIC_TRAIN, STREAM_TRAIN)[0])
    valid_text = "".join(generate_sentences(0, SYNTHETIC_VALID, STREAM_VALID)[0])
    vocab = Vocabulary.from_text(train_text)
    train, valid = vocab.encode(train_text), vocab.encode(valid_text)
    train.setflags(write=False)
    valid.setflags(write=False)
    sha = hashlib.sha256(train_text.encode() + valid_text.encode()).hexdigest()
    return Corpus(name="synthetic", train=train, valid=valid, vocab=vocab, sha256=sha)
