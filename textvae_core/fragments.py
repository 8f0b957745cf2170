"""Training and validation fragments: contiguous character windows at random positions."""

from __future__ import annotations

import numpy as np
import torch

from .errors import DataError


class FragmentSampler:
    """Batches of contiguous `length`-character windows at uniformly random start positions
    (the paper's training and validation fragments: no padding, no end token)."""

    def __init__(self, ids: np.ndarray, length: int, batch_size: int, seed: int):
        if ids.ndim != 1:
            raise DataError(f"FragmentSampler needs a 1-D id array, got shape {tuple(ids.shape)}")
        if length < 1 or batch_size < 1:
            raise DataError(
                f"FragmentSampler needs length >= 1 and batch_size >= 1, got {length}, {batch_size}"
            )
        if len(ids) < length + 1:
            raise DataError(
                f"the split has {len(ids)} characters, too few for fragments of length {length}: "
                f"use a shorter length or a corpus of at least {length + 1} characters"
            )
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
        self._rng.bit_generator.state = pcg64_state(d, "bit_generator", "FragmentSampler")


def pcg64_state(d, key: str, owner: str) -> dict:
    """The PCG64 generator state under `key` of a sampler's state dict `d` (DataError if none)."""
    state = d.get(key) if isinstance(d, dict) else None
    if not isinstance(state, dict) or state.get("bit_generator") != "PCG64":
        raise DataError(f"not a {owner} state: expected the dict {owner}.state_dict() returns")
    return state
