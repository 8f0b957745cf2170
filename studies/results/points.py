"""Summary rows as the points a claim's check reads: rows with the same hyperparameters
averaged into one point, values read at a report's step, and a `Lookup` that remembers
every value it could not find (so a check turns INCONCLUSIVE instead of guessing).

A summary row holds the swept hyperparameters under their own names, `status`, the final
validation metrics without the `valid/` prefix (`MEASURES`) and `history`, the trial's
validation reports by step. Derived measures: `kl_share` = kl_bpc / total_bpc, `mi` = the
final MI over the large pool where the trial has it (`mi_pool`), else over the report's
fragments.
"""

from __future__ import annotations

import dataclasses
import math
from enum import StrEnum
from typing import Any, Callable, Iterable, Mapping, Sequence

from textvae_core.config import ALIASES, TrainConfig
from textvae_core.measures import CHAR_SUMMARY, TEST_SUMMARY, WORD_SUMMARY

from ..errors import StudyError
from ..store import Status


class Verdict(StrEnum):
    """A claim's verdict. A seed's is PASS, FAIL or INCONCLUSIVE (`VERDICTS`); over seeds any
    mix is UNSTABLE. A StrEnum: it is its name in JSON, Parquet, MLflow tags and the report."""

    PASS = "PASS"
    FAIL = "FAIL"
    INCONCLUSIVE = "INCONCLUSIVE"
    UNSTABLE = "UNSTABLE"


VERDICTS = (Verdict.PASS, Verdict.FAIL, Verdict.INCONCLUSIVE)  # a seed's
USABLE = (Status.COMPLETED.value, Status.COLLAPSED.value)  # trials whose metrics count
# Final validation measures of a summary row (textvae_core.measures: a character corpus's), and
# what a check may derive from them.
MEASURES = CHAR_SUMMARY
# A word corpus's (tokens=word) final validation measures, nats per sentence and perplexity per
# token, and its final test measures ("test_nll_nats": the test split is read once, at the end).
WORD_MEASURES, TEST_MEASURES = WORD_SUMMARY, TEST_SUMMARY
ALL_MEASURES = MEASURES + WORD_MEASURES + TEST_MEASURES


def _final_mi(m: Mapping[str, Any]) -> float:
    pool = m.get("mi_pool")
    return pool if is_number(pool) else m.get("mutual_info", math.nan)


DERIVED = {
    "kl_share": lambda m: m["kl_bpc"] / m["total_bpc"] if m.get("total_bpc") else math.nan,
    "mi": _final_mi,
}
# "Not collapsed" (the controls): at least this many active units and this much MI (nats).
MIN_ACTIVE_UNITS, MIN_MI = 1, 0.1
# A summary row's hyperparameters, named, not "every other key": the variant and the config
# fields it holds (swept, or beside the swept ones: model, length, lstm_cell, ...), by their
# names or aliases, less the seed (averaged over), the steps trained and the corpus. A column
# added to the summary later is therefore never taken for a hyperparameter by accident (it
# would split the seeds of a point into groups).
HYPERPARAMETERS = (
    (frozenset(f.name for f in dataclasses.fields(TrainConfig)) | {"variant"} | frozenset(ALIASES))
    - {"seed", "steps", "corpus"}
    - frozenset(ALL_MEASURES)
    - frozenset(DERIVED)
)


# --- points: rows averaged over seeds ----------------------------------------------------------


def hyperparameters(row: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in row.items() if k in HYPERPARAMETERS}


def _hashable(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value


def average(rows: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """One point per set of hyperparameters: its measures averaged over the usable seeds.

    Each point holds the hyperparameters, every measure (NaN where no usable seed has it),
    `seeds` (usable trials averaged) and `status`: "ok" if at least one trial is usable,
    else the statuses of its trials ("failed", "missing", ...).
    """
    groups: dict[tuple, list[Mapping[str, Any]]] = {}
    for row in rows:
        key = tuple(sorted((k, _hashable(v)) for k, v in hyperparameters(row).items()))
        groups.setdefault(key, []).append(row)
    points = []
    for members in groups.values():
        usable = [r for r in members if r.get("status") in USABLE]
        point = hyperparameters(members[0])
        for m in ALL_MEASURES:
            values = [float(r[m]) for r in usable if is_number(r.get(m))]
            point[m] = sum(values) / len(values) if values else math.nan
        point["seeds"] = len(usable)
        point["status"] = (
            "ok" if usable else "+".join(sorted({str(r.get("status", "unknown")) for r in members}))
        )
        points.append(point)
    return points


def at_step_rows(rows: Iterable[Mapping[str, Any]], step: int) -> list[dict[str, Any]]:
    """The rows with every measure read from the trial's validation report at `step`; a
    usable trial without that report becomes unusable, its status saying why."""
    out = []
    for row in rows:
        report = (row.get("history") or {}).get(step)
        new = {k: v for k, v in row.items() if k not in ALL_MEASURES}
        new.update({m: (report or {}).get(m, math.nan) for m in MEASURES + WORD_MEASURES})
        if report is None and row.get("status") in USABLE:
            new["status"] = f"no report at step {step}"
        out.append(new)
    return out


def is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def same(a: Any, b: Any) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)
    return a == b


def matches(point: Mapping[str, Any], where: Mapping[str, Any]) -> bool:
    """`where` maps a name to a value, or to a tuple/list of allowed values."""
    for name, wanted in where.items():
        if name not in point:
            return False
        options = wanted if isinstance(wanted, (tuple, list)) else (wanted,)
        if not any(same(point[name], w) for w in options):
            return False
    return True


def describe(where: Mapping[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in where.items()) or "all trials"


class Lookup:
    """The points of a set of rows, and the reasons any requested value could not be found.

    A check asks for values; whatever is missing, failed or not a number is remembered, and
    `result` turns a PASS/FAIL condition into INCONCLUSIVE if anything was.
    """

    def __init__(self, rows: Iterable[Mapping[str, Any]], y: str, at_step: int | None = None):
        if y not in ALL_MEASURES and y not in DERIVED:
            raise StudyError(
                f"y={y!r} is not a measure: expected one of "
                f"{', '.join(ALL_MEASURES + tuple(DERIVED))}"
            )
        self.points = average(rows if at_step is None else at_step_rows(rows, at_step))
        self.y = y
        self.problems: list[str] = []

    def value_of(self, point: Mapping[str, Any]) -> float:
        value = DERIVED[self.y](point) if self.y in DERIVED else point[self.y]
        return float(value)

    def select(
        self,
        where: Mapping[str, Any],
        keep: Callable[[Mapping[str, Any]], bool] | None = None,
        scope: str = "",
    ) -> list[dict[str, Any]]:
        """Every usable point matching `where` (and `keep`, described by `scope`). Each value
        listed in `where` must have a point; a matching point that is unusable, or whose y is
        not a number, is a problem."""
        found = [p for p in self.points if matches(p, where) and (keep is None or keep(p))]
        for name, wanted in where.items():
            for w in wanted if isinstance(wanted, (tuple, list)) else (wanted,):
                if not any(same(p[name], w) for p in found):
                    self.problems.append(f"no trial with {describe({**where, name: w})}{scope}")
        if not where and not found:
            self.problems.append(f"no trial{scope}")
        good = []
        for p in found:
            if p["status"] != "ok":
                self.problems.append(f"{describe(distinct(p, self.points, where))}: {p['status']}")
            elif not math.isfinite(self.value_of(p)):
                self.problems.append(
                    f"{describe(distinct(p, self.points, where))}: {self.y} is not a number"
                )
            else:
                good.append(p)
        return good

    def one(self, where: Mapping[str, Any]) -> float:
        """The y of the one point matching `where` (NaN, and a problem noted, if none)."""
        found = [p for p in self.points if matches(p, where)]
        if len(found) > 1:
            self.problems.append(
                f"{len(found)} trials with different hyperparameters match {describe(where)}"
            )
            return math.nan
        good = self.select(where)
        return self.value_of(good[0]) if good else math.nan

    def result(
        self, passed: bool, measured: Mapping[str, Any], threshold: str, note: str = ""
    ) -> dict[str, Any]:
        if self.problems:
            verdict = Verdict.INCONCLUSIVE
            note = "; ".join(dict.fromkeys(self.problems)) + (f"; {note}" if note else "")
        else:
            verdict = Verdict.PASS if passed else Verdict.FAIL
        return {
            "verdict": verdict,
            "measured": {k: clean(v) for k, v in measured.items()},
            "threshold": threshold,
            "note": note,
        }


def distinct(
    point: Mapping[str, Any], among: Sequence[Mapping[str, Any]], where: Mapping[str, Any]
) -> dict:
    """`where`'s keys plus the hyperparameters that tell `point` apart from the others (for
    notes)."""
    shown = {k: point[k] for k in where}
    for k, v in point.items():
        if k in ("status", "seeds") or k in ALL_MEASURES or k in shown:
            continue
        if any(k in o and not same(o[k], v) for o in among):
            shown[k] = v
    return shown


def clean(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Mapping):
        return {k: clean(v) for k, v in value.items()}
    return value


def ratio(a: float, b: float) -> float:
    return a / b if b else math.nan


def one_bound(**bounds: float | None) -> None:
    """Exactly one of `bounds` is given (a check's mutually exclusive parameters)."""
    given = [k for k, v in bounds.items() if v is not None]
    if len(given) != 1:
        raise StudyError(
            f"give exactly one of {', '.join(bounds)} (got {', '.join(given) or 'none'})"
        )


def x_range(
    x: str | None, x_min: Any, x_max: Any = None
) -> tuple[Callable[[Mapping[str, Any]], bool] | None, str]:
    """A `keep` filter (and its description) for the points with x_min <= x <= x_max."""
    if x is None or (x_min is None and x_max is None):
        return None, ""
    lo = -math.inf if x_min is None else x_min
    hi = math.inf if x_max is None else x_max
    text = "".join(
        [
            f" and {x} >= {x_min}" if x_min is not None else "",
            f" and {x} <= {x_max}" if x_max is not None else "",
        ]
    )
    return (lambda p: is_number(p.get(x)) and lo <= p[x] <= hi), text


# --- rank correlation -------------------------------------------------------------------------


def ranks(values: Sequence[float]) -> list[float]:
    """1-based ranks; tied values share the average of the ranks they span."""
    order = sorted(range(len(values)), key=lambda i: values[i])
    out = [0.0] * len(values)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        for k in range(i, j + 1):
            out[order[k]] = (i + j) / 2 + 1
        i = j + 1
    return out


def spearman(xs: Sequence[float], ys: Sequence[float]) -> float:
    """Spearman's rho: the Pearson correlation of the ranks (NaN if either side is constant)."""
    if len(xs) != len(ys) or len(xs) < 2:
        raise ValueError("spearman needs two sequences of equal length >= 2")
    rx, ry = ranks(xs), ranks(ys)
    mx, my = sum(rx) / len(rx), sum(ry) / len(ry)
    cov = sum((a - mx) * (b - my) for a, b in zip(rx, ry))
    vx = sum((a - mx) ** 2 for a in rx)
    vy = sum((b - my) ** 2 for b in ry)
    return cov / math.sqrt(vx * vy) if vx > 0 and vy > 0 else math.nan
