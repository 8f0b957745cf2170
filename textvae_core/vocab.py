"""The character vocabulary: characters <-> ids, built from a corpus's training text.

Ids below N_RESERVED are the reserved tokens (PAD, START, DUMMY, UNK; see `tokens`); a
character outside the vocabulary encodes as UNK.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass

import numpy as np

from .errors import DataError, one_line
from .tokens import N_RESERVED, UNK


@dataclass(frozen=True)
class Vocabulary:
    # sorted distinct characters of the training text; id = N_RESERVED + index
    chars: tuple[str, ...]

    tokens = "char"

    def __post_init__(self) -> None:
        chars = tuple(self.chars)
        object.__setattr__(self, "chars", chars)
        if any(not isinstance(c, str) or len(c) != 1 for c in chars):
            raise DataError(
                "Vocabulary.chars must be single characters; build it with Vocabulary.from_text"
            )
        if list(chars) != sorted(set(chars)):
            raise DataError(
                "Vocabulary.chars must be sorted and distinct; build it with Vocabulary.from_text"
            )

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
            raise DataError(
                f'not a vocabulary JSON ({one_line(exc)}): expected {{"chars": [...]}} '
                "as written by Vocabulary.to_json"
            ) from None


def vocabulary_from_json(s: str):
    """The character or word vocabulary (`words.WordVocabulary`) a `to_json` wrote."""
    from .words import WordVocabulary

    try:
        is_word = json.loads(s).get("tokens") == "word"
    except (ValueError, AttributeError):
        is_word = False
    return WordVocabulary.from_json(s) if is_word else Vocabulary.from_json(s)
