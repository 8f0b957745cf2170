"""The driver's progress line: done / running / pending, the best value so far and the time
left, printed every few seconds while a study runs. Plain Python: the Ray adapter feeds it
the trials' states from Tune's callbacks."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Callable, Sequence

from textvae_core import ConfigError

from .configs import TrialConfigs


@dataclass(frozen=True)
class TrialState:
    """What the progress line needs of one trial: Tune's status, its last step, its params."""

    status: str  # "PENDING", "RUNNING", "TERMINATED", "ERROR", ...
    step: float  # the step of its last report (0 before any)
    params: dict


def time_left(elapsed: float, finished: int, running: Sequence[float], left: int) -> float | None:
    """Seconds left at this run's pace: trials finished in it plus the done share of each running
    one (its step over its steps) against `left`, the trials not yet finished. None before
    any work is done. Counting the running trials' shares keeps the first estimates from
    reading as if the trials ran one at a time."""
    partial = sum(min(max(f, 0.0), 1.0) for f in running)
    work = finished + partial
    return elapsed / work * (left - partial) if work > 0 else None


class ProgressLine:
    """One line every `interval` seconds: done / running / pending, best, time left."""

    def __init__(
        self,
        progress: Callable[[str], None],
        total: int,
        done_before: int,
        metric: str,
        mode: str,
        interval: float = 10.0,
        steps_of: Callable[[dict], int] | None = None,
    ):
        self.progress, self.total, self.done_before = progress, total, done_before
        self.metric, self.mode, self.interval, self.steps_of = metric, mode, interval, steps_of
        self.start = time.monotonic()
        self.last_print = 0.0
        self.best: float | None = None

    def on_result(self, result: dict) -> None:
        value = result.get(self.metric)
        if isinstance(value, (int, float)) and math.isfinite(value):
            if self.best is None or (
                value < self.best if self.mode == "min" else value > self.best
            ):
                self.best = value

    def on_step(self, trials: Callable[[], list[TrialState]]) -> None:
        """Emit the line if `interval` seconds have passed since the last one."""
        now = time.monotonic()
        if now - self.last_print >= self.interval:
            self.last_print = now
            self.emit(trials())

    def emit(self, trials: list[TrialState]) -> None:
        finished = sum(t.status in ("TERMINATED", "ERROR") for t in trials)
        running = sum(t.status == "RUNNING" for t in trials)
        done = self.done_before + finished
        total = self.total
        pending = max(total - done - running, 0)
        elapsed = time.monotonic() - self.start
        shares = [
            t.step / (self.steps_of(t.params) if self.steps_of else math.inf)
            for t in trials
            if t.status == "RUNNING"
        ]
        eta = time_left(elapsed, finished, shares, total - done) if done < total else None
        best = f"{self.best:.4f}" if self.best is not None else "-"
        self.progress(
            f"{done}/{total} done, {running} running, {pending} pending | "
            f"best {self.metric} {best} | elapsed {_fmt(elapsed)}"
            + (f", ~{_fmt(eta)} left" if eta is not None else "")
        )


def trial_steps(configs: TrialConfigs, params: dict) -> float:
    """A trial's steps, for the progress line (inf where its config cannot be built: no share)."""
    try:
        return max(configs.of(params).steps, 1)
    except ConfigError:  # the trial itself fails with it; the line goes on
        return math.inf


def _fmt(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"
