"""A trial's corpus as MLflow dataset inputs: one per split (training, validation), each named
by the corpus, with the sha256 of the split as the model reads it (its token ids) and where
the text came from. Word corpora add their test split."""

from __future__ import annotations

import functools
import hashlib
import json
from pathlib import Path

from textvae_core.data import PTB_URL, Corpus

DIGEST_CHARS = 32  # MLflow keeps at most 36 characters of a dataset's digest


def corpus_key(config) -> tuple:
    """What names a trial's corpus as loaded: its spec, tokens and vocabulary cap."""
    return (config.corpus, config.tokens, config.vocab_size)


@functools.lru_cache(maxsize=8)
def corpus_datasets(corpus: Corpus) -> tuple[dict[str, str], ...]:
    """The dataset inputs of a corpus (hashed once per driver: PTB's splits take ~20 ms)."""
    if corpus.name == "ptb":
        source_type = "http"
        source = lambda split: {"url": f"{PTB_URL}/ptb.{split}.txt"}  # noqa: E731
        name = "ptb"
    elif corpus.name == "synthetic":
        source_type = "code"
        source = lambda split: {"tags": {"generator": "textvae_core.grammar", "split": split}}  # noqa: E731
        name = "synthetic"
    else:
        source_type = "local"
        source = lambda split: {"uri": Path(corpus.name).as_uri()}  # noqa: E731
        name = Path(corpus.name).name
    out = []
    splits = [("train", corpus.train, "training"), ("valid", corpus.valid, "validation")]
    if corpus.test is not None:  # words: read by the final report only
        splits.append(("test", corpus.test, "testing"))
    for split, data, context in splits:
        if corpus.tokens == "word":
            ids = data.ids
            size = {"sentences": len(data), "tokens": data.tokens, "tokens_unit": "word"}
        else:
            ids, size = data, {"characters": int(data.size)}
        profile = {
            "split": split,
            **size,
            "vocab_size": corpus.vocab.size,
            "source_sha256": corpus.sha256,  # of the raw text, its files in order
        }
        out.append(
            {
                "name": name,
                "digest": hashlib.sha256(ids.tobytes()).hexdigest()[:DIGEST_CHARS],
                "source_type": source_type,
                "source": json.dumps(source(split)),
                "profile": json.dumps(profile),
                "context": context,
            }
        )
    return tuple(out)
