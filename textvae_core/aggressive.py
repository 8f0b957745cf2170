"""The two rules of aggressive inference-network training (He et al. 2019, "Lagging inference
networks"), as their code (jxhe/vae-lagging-encoder) runs them; `Trainer` applies them.

- Inner loop: before each decoder update, encoder-only updates, the first on the decoder's
  batch and the rest on fresh ones, until the mean loss over a window of AGGRESSIVE_WINDOW
  updates is higher than over the window before (so never before 2 windows), or the cap.
- Outer rule: held-out MI is measured every `check_every` steps (theirs: once per epoch);
  aggressive mode ends at the first check whose MI is below the previous check's, the first
  check comparing with 0. A check that ties the previous one keeps the mode on.
"""

from __future__ import annotations

from typing import Sequence

AGGRESSIVE_WINDOW = 15  # encoder updates per window of the inner loop's stopping rule


def inner_loop_done(losses: Sequence[float], cap: int, window: int = AGGRESSIVE_WINDOW) -> bool:
    """True once the encoder-only updates whose losses are `losses` (in order) should stop:
    `cap` of them, or a full window whose mean loss is higher than the window's before."""
    n = len(losses)
    if n >= cap:
        return True
    if n < 2 * window or n % window:
        return False
    return sum(losses[-window:]) > sum(losses[-2 * window : -window])


def mode_ends(mi: float, previous: float) -> bool:
    """Aggressive mode ends on a strict drop of held-out MI against the previous check (0
    before the first check)."""
    return mi < previous


def steps_per_epoch(train_chars: int, length: int, batch_size: int) -> int:
    """One pass over the training data in steps: the split's non-overlapping fragments of
    `length` characters, `batch_size` per step (at least 1)."""
    return max(1, train_chars // length // batch_size)
