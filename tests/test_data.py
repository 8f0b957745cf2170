"""Corpora: PTB vocabulary and caching, fragments, the PTB download, the synthetic grammar.

No internet: downloads go to a real HTTP server on 127.0.0.1 serving the shared PTB folder.
Every test points VAESTUDY_DATA at its own tmp folder, so nothing touches ~/.cache.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import socket
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from cli.data import data as data_cli
from textvae_core.data import PTB_SHA256, Corpus, fetch_ptb, load_corpus, split_train_valid
from textvae_core.errors import DataError
from textvae_core.fragments import FragmentSampler
from textvae_core.grammar import _SUBJECTS, synthetic_probe_set, synthetic_text
from textvae_core.tokens import DUMMY, N_RESERVED, PAD, START, UNK
from textvae_core.vocab import Vocabulary

SHARED_PTB = Path(
    os.environ.get(
        "VAESTUDY_TEST_PTB", Path(__file__).resolve().parents[2] / "shared" / "data" / "ptb"
    )
)
needs_ptb = pytest.mark.skipif(
    not (SHARED_PTB / "ptb.train.txt").is_file(),
    reason=f"PTB files not found in {SHARED_PTB} (set VAESTUDY_TEST_PTB)",
)
PTB_CHARS = (
    "\n #$&'*-./0123456789<>N\\abcdefghijklmnopqrstuvwxyz"  # SOURCE.md: the 50 train characters
)


@pytest.fixture(autouse=True)
def isolated_env(tmp_path, monkeypatch):
    monkeypatch.setenv("VAESTUDY_DATA", str(tmp_path / "cache"))
    monkeypatch.delenv("VAESTUDY_PTB_URL", raising=False)
    for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    return tmp_path / "cache"


@pytest.fixture
def ptb_data_dir(tmp_path):
    """A data dir whose ptb/ links to the shared PTB files (the cache is written beside them)."""
    folder = tmp_path / "data" / "ptb"
    folder.mkdir(parents=True)
    for name in PTB_SHA256:
        (folder / name).symlink_to(SHARED_PTB / name)
    return tmp_path / "data"


@contextlib.contextmanager
def http_server(folder: Path):
    """Serve `folder` on 127.0.0.1 (a free port); yields (base URL, list of requested paths)."""
    hits: list[str] = []

    class Handler(SimpleHTTPRequestHandler):
        def do_GET(self):
            hits.append(self.path)
            super().do_GET()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(Handler, directory=str(folder))
    )
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    )
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", hits
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# --- vocabulary ---------------------------------------------------------------------------
def test_vocabulary_round_trip_unknowns_and_reserved_ids():
    vocab = Vocabulary.from_text("hello world\n")
    assert (
        vocab.chars == ("\n", " ", "d", "e", "h", "l", "o", "r", "w")
        and vocab.size == N_RESERVED + 9
    )
    ids = vocab.encode("hello world\n")
    assert ids.dtype == np.uint8 and ids.min() >= N_RESERVED
    assert (
        vocab.decode(ids)
        == vocab.decode(torch.as_tensor(ids))
        == vocab.decode(ids.tolist())
        == "hello world\n"
    )
    assert vocab.encode("hé{o").tolist() == [vocab.encode("h")[0], UNK, UNK, vocab.encode("o")[0]]
    assert vocab.decode([PAD, START, DUMMY, UNK, 99]) == "_??"
    assert Vocabulary.from_json(vocab.to_json()) == vocab
    big = Vocabulary.from_text("".join(map(chr, range(0x100, 0x300))))
    assert big.size > 255 and big.encode("\u0150").dtype == np.uint16
    with pytest.raises(DataError):
        Vocabulary(("b", "a"))


@needs_ptb
def test_ptb_is_read_as_50_characters_and_cached(ptb_data_dir):
    corpus = load_corpus("ptb", data_dir=ptb_data_dir, fetch=False)
    assert (
        corpus.name == "ptb"
        and "".join(corpus.vocab.chars) == PTB_CHARS
        and corpus.vocab.size == 54
    )
    assert (len(corpus.train), len(corpus.valid)) == (5_101_618, 399_782)
    assert isinstance(corpus.train, np.memmap) and not corpus.train.flags.writeable
    raw = (SHARED_PTB / "ptb.train.txt").read_bytes()
    assert corpus.vocab.decode(corpus.train[:2000]) == raw[:2000].decode()
    assert UNK not in np.asarray(corpus.valid)  # valid characters all occur in train
    both = raw + (SHARED_PTB / "ptb.valid.txt").read_bytes()
    assert corpus.sha256 == hashlib.sha256(both).hexdigest()
    cached = sorted(p.name for p in (ptb_data_dir / "ptb").glob("ptb.*.npy"))
    assert cached == [f"ptb.train.{corpus.sha256[:16]}.npy", f"ptb.valid.{corpus.sha256[:16]}.npy"]
    assert load_corpus("ptb", data_dir=ptb_data_dir) is corpus  # memoised per process


def test_missing_ptb_without_fetch_says_how_to_get_it(tmp_path):
    with pytest.raises(DataError, match="vaestudy data fetch ptb") as err:
        load_corpus("ptb", data_dir=tmp_path / "empty", fetch=False)
    assert "\n" not in str(err.value)


def test_missing_ptb_with_unreachable_mirror_is_one_line(tmp_path, monkeypatch):
    monkeypatch.setenv("VAESTUDY_PTB_URL", closed_port_url())
    with pytest.raises(DataError, match="could not download") as err:
        load_corpus("ptb", data_dir=tmp_path / "empty", fetch=True)
    assert "\n" not in str(err.value)


# --- fragments ----------------------------------------------------------------------------
def test_fragment_sampler_shapes_seeding_and_contiguity():
    ids = np.arange(5000, dtype=np.int32)  # every window is identified by its first element
    a, b = FragmentSampler(ids, 20, 8, seed=3), FragmentSampler(ids, 20, 8, seed=3)
    x = a.sample()
    assert x.shape == (8, 20) and x.dtype == torch.long
    assert torch.equal(x, b.sample())
    assert not torch.equal(x, FragmentSampler(ids, 20, 8, seed=4).sample())
    for row in a.sample():
        assert torch.equal(row, torch.arange(int(row[0]), int(row[0]) + 20))


def test_fragment_sampler_covers_both_ends():
    starts = torch.cat(
        [FragmentSampler(np.arange(30), 25, 64, seed=s).sample()[:, 0] for s in range(4)]
    )
    assert set(starts.tolist()) == set(range(6))  # 0 .. n - length, uniformly


def test_fragment_sampler_resume_draws_the_same_windows():
    ids = np.arange(10_000, dtype=np.int64)
    a = FragmentSampler(ids, 12, 4, seed=0)
    a.sample()
    state = json.loads(json.dumps(a.state_dict()))  # JSON-able
    expected = [a.sample() for _ in range(3)]
    b = FragmentSampler(ids, 12, 4, seed=99)
    b.load_state_dict(state)
    assert all(torch.equal(e, b.sample()) for e in expected)
    with pytest.raises(DataError):
        b.load_state_dict({"something": "else"})


def test_fragment_sampler_windows_are_substrings_of_the_text():
    text, _ = synthetic_text(seed=1, n_sentences=50)
    vocab = Vocabulary.from_text(text)
    for row in FragmentSampler(vocab.encode(text), 30, 16, seed=0).sample():
        assert vocab.decode(row) in text


def test_fragment_sampler_rejects_a_split_shorter_than_length_plus_one():
    with pytest.raises(DataError, match="too few"):
        FragmentSampler(np.arange(52), 52, 4, seed=0)


# --- fetch_ptb against a real HTTP server -------------------------------------------------
@needs_ptb
def test_fetch_ptb_downloads_verifies_and_skips_good_files(tmp_path):
    dest = tmp_path / "dest"
    with http_server(SHARED_PTB) as (url, hits):
        assert fetch_ptb(dest, base_url=url) == dest
        assert sorted(hits) == sorted(f"/{name}" for name in PTB_SHA256)
        assert {p.name for p in dest.iterdir()} == set(PTB_SHA256)  # no temp files left
        assert all(sha256(dest / name) == digest for name, digest in PTB_SHA256.items())
        hits.clear()
        fetch_ptb(dest, base_url=url + "/")
        assert hits == []  # present with a good checksum: not downloaded again


def test_fetch_ptb_rejects_a_corrupt_file_and_leaves_nothing(tmp_path):
    served = tmp_path / "served"
    served.mkdir()
    (served / "ptb.train.txt").write_text(" not the penn treebank \n")
    dest = tmp_path / "dest"
    with http_server(served) as (url, _), pytest.raises(DataError) as err:
        fetch_ptb(dest, base_url=url)
    message = str(err.value)
    got = hashlib.sha256(b" not the penn treebank \n").hexdigest()
    assert "ptb.train.txt" in message and PTB_SHA256["ptb.train.txt"] in message and got in message
    assert "\n" not in message and not dest.exists()  # not even the folder it made


def test_fetch_ptb_unreachable_host_is_one_line_with_remedies(tmp_path):
    url = closed_port_url()
    with pytest.raises(DataError) as err:
        fetch_ptb(tmp_path / "dest", base_url=url, timeout=5)
    message = str(err.value)
    assert "\n" not in message and f"{url}/ptb.train.txt" in message
    assert (
        "vaestudy data fetch ptb" in message
        and "VAESTUDY_DATA" in message
        and str(tmp_path / "dest") in message
    )
    assert not (tmp_path / "dest").exists()


def test_fetch_ptb_missing_file_on_server(tmp_path):
    (tmp_path / "served").mkdir()
    with http_server(tmp_path / "served") as (url, _), pytest.raises(DataError, match="HTTP 404"):
        fetch_ptb(tmp_path / "dest", base_url=url)


# --- the CLI ------------------------------------------------------------------------------
@needs_ptb
def test_cli_fetch_ptb(tmp_path, isolated_env):
    runner = CliRunner()
    with http_server(SHARED_PTB) as (url, _):
        result = runner.invoke(
            data_cli, ["fetch", "ptb", "--dir", str(tmp_path / "dest"), "--url", url]
        )
        assert result.exit_code == 0, result.output
        assert (
            "sha256 ok" in result.output
            and sha256(tmp_path / "dest" / "ptb.valid.txt") == PTB_SHA256["ptb.valid.txt"]
        )
        result = runner.invoke(
            data_cli, ["fetch", "ptb", "--url", url]
        )  # default: $VAESTUDY_DATA/ptb
        assert result.exit_code == 0, result.output
        assert (isolated_env / "ptb" / "ptb.train.txt").is_file()


def test_cli_fetch_bad_url_is_one_line_exit_2(tmp_path):
    result = CliRunner().invoke(
        data_cli, ["fetch", "ptb", "--dir", str(tmp_path / "d"), "--url", closed_port_url()]
    )
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: could not download")
    assert "Traceback" not in result.output


def test_cli_help_has_example_and_rejects_other_corpora():
    runner = CliRunner()
    assert "Example" in runner.invoke(data_cli, ["--help"]).output
    assert "vaestudy data fetch ptb" in runner.invoke(data_cli, ["fetch", "--help"]).output
    assert runner.invoke(data_cli, ["fetch", "wikitext"]).exit_code == 2


# --- the synthetic corpus -----------------------------------------------------------------
def test_synthetic_text_is_deterministic_and_aligned_with_its_factors():
    text, factors = synthetic_text(seed=5, n_sentences=300)
    again, factors_again = synthetic_text(seed=5, n_sentences=300)
    assert text == again and all(np.array_equal(factors[k], factors_again[k]) for k in factors)
    assert synthetic_text(seed=6, n_sentences=300)[0] != text
    assert set(text) <= set("abcdefghijklmnopqrstuvwxyz .\n")
    sentences = text.splitlines()
    assert len(sentences) == 300 and all(
        len(v) == 300 and v.dtype == np.int64 for v in factors.values()
    )
    assert set(factors["topic"].tolist()) == {0, 1, 2, 3} and set(factors["tense"].tolist()) == {
        0,
        1,
        2,
    }
    for sentence, topic, tense, long_ in zip(
        sentences, factors["topic"], factors["tense"], factors["length"]
    ):
        words = sentence.split()
        assert words[0] == "the" and words[1] in _SUBJECTS[topic] and words[-1] == "."
        assert (" will " in sentence) == (tense == 2)
        assert (len(words) > 8) == bool(long_)


def test_synthetic_probe_set_starts_at_sentences_and_shows_the_topic_early():
    vocab = Vocabulary.from_text(synthetic_text(seed=0, n_sentences=200)[0])
    fragments, labels = synthetic_probe_set(seed=1, n=400, length=12, vocab=vocab)
    assert fragments.shape == (400, 12) and fragments.dtype == np.int64
    assert set(labels) == {"topic", "tense", "length"} and all(
        len(v) == 400 for v in labels.values()
    )
    topic_of_prefix: dict[str, int] = {}
    for row, topic in zip(fragments, labels["topic"]):
        prefix = vocab.decode(row)
        assert prefix.startswith("the ") and topic_of_prefix.setdefault(prefix, int(topic)) == topic
    long_fragments, long_labels = synthetic_probe_set(seed=1, n=5, length=200, vocab=vocab)
    assert long_fragments.shape == (5, 200) and np.array_equal(
        long_labels["topic"], labels["topic"][:5]
    )
    assert PAD not in long_fragments and all("\n" in vocab.decode(r) for r in long_fragments)


def test_load_synthetic_corpus():
    corpus = load_corpus("synthetic")
    assert (
        isinstance(corpus, Corpus)
        and corpus.name == "synthetic"
        and load_corpus("synthetic") is corpus
    )
    assert {"\n", " ", "."} < set(corpus.vocab.chars) <= set("abcdefghijklmnopqrstuvwxyz .\n")
    assert 500_000 < len(corpus.train) < 2_000_000 and 50_000 < len(corpus.valid) < 200_000
    assert not corpus.train.flags.writeable and corpus.train.dtype == np.uint8
    text = synthetic_text(0, 20000)[0]
    assert corpus.vocab.decode(corpus.train[:300]) == text[:300]
    assert corpus.vocab.decode(corpus.valid[:300]) not in text[:10_000]  # a separate set


# --- user files and folders ---------------------------------------------------------------
def test_split_rule_cuts_the_last_tenth_at_a_newline():
    text = "".join(f"line {i:04d}\n" for i in range(100))  # 10 characters a line
    train, valid = split_train_valid(text)
    assert train + valid == text and train.endswith("\n") and len(valid) == 100
    train, valid = split_train_valid("x" * 1000)  # no newline: exactly at 90%
    assert (len(train), len(valid)) == (900, 100)


def test_user_file_loads_with_the_split_rule_and_is_cached(tmp_path, isolated_env):
    text, _ = synthetic_text(seed=2, n_sentences=150)
    path = tmp_path / "my corpus.txt"
    path.write_text(text)
    corpus = load_corpus(str(path))
    assert corpus.name == str(path.resolve()) and load_corpus(corpus.name) is corpus
    train, valid = split_train_valid(text)
    assert corpus.vocab.decode(corpus.train) == train and corpus.vocab.decode(corpus.valid) == valid
    assert 0.08 < len(valid) / len(text) <= 0.2 and train.endswith("\n")
    assert corpus.sha256 == hashlib.sha256(text.encode()).hexdigest()
    assert isinstance(corpus.train, np.memmap)
    assert (isolated_env / "corpora" / corpus.sha256[:16] / "train.npy").is_file()

    path.write_text(text.replace("the", "a"))  # a changed file is re-read and re-encoded
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    changed = load_corpus(str(path))
    assert changed.sha256 != corpus.sha256 and "the" not in changed.vocab.decode(changed.train)


def test_user_folders(tmp_path):
    text, _ = synthetic_text(seed=3, n_sentences=100)
    pair = tmp_path / "pair"
    pair.mkdir()
    (pair / "train.txt").write_text(text)
    (pair / "valid.txt").write_text(text[:400])
    corpus = load_corpus(str(pair))
    assert (
        corpus.vocab.decode(corpus.train) == text
        and corpus.vocab.decode(corpus.valid) == text[:400]
    )

    many = tmp_path / "many"
    many.mkdir()
    (many / "b.txt").write_text(text[len(text) // 2 :])
    (many / "a.txt").write_text(
        text[: len(text) // 2].rstrip("\n")
    )  # a newline is added between files
    (many / "notes.md").write_text("ignored")
    corpus = load_corpus(str(many))
    joined = text[: len(text) // 2].rstrip("\n") + "\n" + text[len(text) // 2 :]
    assert corpus.vocab.decode(corpus.train) + corpus.vocab.decode(corpus.valid) == joined
    assert (
        corpus.vocab.decode(corpus.train),
        corpus.vocab.decode(corpus.valid),
    ) == split_train_valid(joined)


@pytest.mark.parametrize(
    "content, match",
    [
        ("caf\u00e9 latin-1 ".encode("latin-1") * 100, "not UTF-8"),
        (b"", "is empty"),
        (b"too short\n" * 20, "fewer than 300"),
    ],
)
def test_bad_user_files_are_one_line_errors(tmp_path, content, match):
    path = tmp_path / "bad.txt"
    path.write_bytes(content)
    with pytest.raises(DataError, match=match) as err:
        load_corpus(str(path))
    assert "\n" not in str(err.value)


def test_unknown_spec_and_empty_folder(tmp_path):
    with pytest.raises(DataError, match="not 'ptb', 'synthetic' or an existing"):
        load_corpus("ptbx")
    with pytest.raises(DataError, match="no .txt files"):
        load_corpus(str(tmp_path))
