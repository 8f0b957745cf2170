"""Checks that compare a measure between points: at one point or at several values of x,
as a difference, a ratio, a mean, a maximum, a best or a median (see `checks`)."""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

from .points import Lookup, describe, distinct, one_bound, ratio, x_range


def compare_at(
    rows, *, at: Mapping[str, Any], y: str, group: str, greater: Any, lesser: Any
) -> dict:
    """At the point `at`: y with group=greater >= y with group=lesser."""
    look = Lookup(rows, y)
    hi, lo = look.one({**at, group: greater}), look.one({**at, group: lesser})
    where = describe(at)
    return look.result(
        hi >= lo,
        {f"{y} at {where}, {group}={greater}": hi, f"{y} at {where}, {group}={lesser}": lo},
        f"{y}[{group}={greater}] >= {y}[{group}={lesser}] at {where}",
    )


def ratio_between(
    rows,
    *,
    where: Mapping[str, Any],
    x: str,
    lo: Any,
    y: str,
    hi: Any = None,
    hi_from: float | None = None,
    below: float | None = None,
    at_least: float | None = None,
) -> dict:
    """Within `where`: y at x=hi (or at every x >= hi_from) compared with y at x=lo, as
    y_hi < below * y_lo or y_hi >= at_least * y_lo (exactly one of hi / hi_from, and one bound)."""
    one_bound(below=below, at_least=at_least)
    one_bound(hi=hi, hi_from=hi_from)
    look = Lookup(rows, y)
    y_lo = look.one({**where, x: lo})
    if hi is not None:
        highs = {hi: look.one({**where, x: hi})}
    else:
        pts = look.select(where, *x_range(x, hi_from, None))
        highs = {p[x]: look.value_of(p) for p in sorted(pts, key=lambda p: p[x])}
        if not highs:
            look.problems.append(f"no trial with {describe(where)} and {x} >= {hi_from}")
    measured = {f"{y} at {x}={lo}": y_lo}
    for value, y_hi in highs.items():
        measured[f"{y} at {x}={value}"] = y_hi
        measured[f"ratio {x}={value} / {x}={lo}"] = ratio(y_hi, y_lo)
    scope = f"{x}={hi}" if hi is not None else f"every {x} >= {hi_from}"
    if below is not None:
        return look.result(
            bool(highs) and all(v < below * y_lo for v in highs.values()),
            measured,
            f"{y} at {scope} < {below} x {y}[{x}={lo}] for {describe(where)}",
        )
    return look.result(
        bool(highs) and all(v >= at_least * y_lo for v in highs.values()),
        measured,
        f"{y} at {scope} >= {at_least} x {y}[{x}={lo}] for {describe(where)}",
    )


def ratio_vs(
    rows,
    *,
    x: str,
    at: Sequence[Any],
    y: str,
    numerator: Mapping[str, Any],
    denominator: Mapping[str, Any],
    at_least: float,
) -> dict:
    """At every x in `at`: y of `numerator` >= at_least * y of `denominator`."""
    look = Lookup(rows, y)
    measured, passed = {}, True
    for value in at:
        num, den = look.one({**numerator, x: value}), look.one({**denominator, x: value})
        measured[f"{y} ratio at {x}={value}"] = ratio(num, den)
        passed = passed and num >= at_least * den
    return look.result(
        passed,
        measured,
        f"{y}[{describe(numerator)}] >= {at_least} x {y}[{describe(denominator)}] "
        f"at {x} in {tuple(at)}",
    )


def difference_vs(
    rows,
    *,
    x: str,
    at: Sequence[Any],
    y: str,
    subject: Mapping[str, Any],
    baseline: Mapping[str, Any],
    at_least: float,
    at_step: int | None = None,
) -> dict:
    """At every x in `at`: y of `subject` >= y of `baseline` + at_least (read at `at_step`)."""
    look = Lookup(rows, y, at_step)
    measured, passed = {}, True
    for value in at:
        a, b = look.one({**subject, x: value}), look.one({**baseline, x: value})
        measured[f"{y} difference at {x}={value}"] = a - b
        passed = passed and a - b >= at_least
    when = f" at step {at_step}" if at_step else ""
    return look.result(
        passed,
        measured,
        f"{y}[{describe(subject)}] >= {y}[{describe(baseline)}] + {at_least} "
        f"at {x} in {tuple(at)}{when}",
    )


def below_by(rows, *, where: Mapping[str, Any], y: str, ref: str, margin: float) -> dict:
    """The point `where`: y <= ref - margin (both measures of the same trial)."""
    look, ref_look = Lookup(rows, y), Lookup(rows, ref)
    value, reference = look.one(where), ref_look.one(where)
    look.problems += ref_look.problems
    return look.result(
        value <= reference - margin,
        {f"{y} at {describe(where)}": value, ref: reference},
        f"{y} <= {ref} - {margin}",
    )


def mean_greater(rows, *, group: str, y: str, greater: Any, lesser: Any) -> dict:
    """The mean y over the points with group=greater > the mean over those with group=lesser.
    Every point of both groups is needed."""
    look = Lookup(rows, y)
    means = {}
    for g in (greater, lesser):
        pts = look.select({group: g})
        means[g] = sum(look.value_of(p) for p in pts) / len(pts) if pts else math.nan
    return look.result(
        means[greater] > means[lesser],
        {f"mean {y} at {group}={g}": v for g, v in means.items()},
        f"mean {y}[{group}={greater}] > mean {y}[{group}={lesser}]",
    )


def max_vs(rows, *, y: str, subject: Mapping[str, Any], others: Mapping[str, Any]) -> dict:
    """The y of the point `subject` > the largest y among the points matching `others`
    (each value listed in `others` must be present)."""
    look = Lookup(rows, y)
    value = look.one(subject)
    pts = look.select(others)
    rivals = {describe(distinct(p, pts, others)): look.value_of(p) for p in pts}
    best = max((look.value_of(p) for p in pts), default=math.nan)
    measured = {
        f"{y} at {describe(subject)}": value,
        **{f"{y} at {k}": v for k, v in rivals.items()},
    }
    return look.result(
        value > best, measured, f"{y}[{describe(subject)}] > max {y} over {describe(others)}"
    )


def within_of_best(
    rows, *, y: str, subject: Mapping[str, Any], others: Mapping[str, Any], rel: float
) -> dict:
    """|y of `subject` - min y over `others`| <= rel x that minimum ("comparable")."""
    look = Lookup(rows, y)
    value = look.one(subject)
    pts = look.select(others)
    best = min((look.value_of(p) for p in pts), default=math.nan)
    gap = ratio(value - best, best)
    return look.result(
        abs(gap) <= rel,
        {
            f"{y} at {describe(subject)}": value,
            f"best {y} over {describe(others)}": best,
            "relative difference": gap,
        },
        f"|{y}[{describe(subject)}] - best| <= {rel} x best over {describe(others)}",
    )


def times_baseline(
    rows,
    *,
    y: str,
    subject: Mapping[str, Any],
    baseline: Mapping[str, Any],
    factor: float,
    at_least: float,
) -> dict:
    """y of `subject` >= at_least and >= factor x y of `baseline`."""
    look = Lookup(rows, y)
    value, base = look.one(subject), look.one(baseline)
    return look.result(
        value >= at_least and value >= factor * base,
        {f"{y} at {describe(subject)}": value, f"{y} at {describe(baseline)}": base},
        f"{y}[{describe(subject)}] >= {at_least} and >= {factor} x {y}[{describe(baseline)}]",
    )


def at_least_median(rows, *, y: str, subject: Mapping[str, Any], others: Mapping[str, Any]) -> dict:
    """y of `subject` >= the median y over the points matching `others`."""
    look = Lookup(rows, y)
    value = look.one(subject)
    values = sorted(look.value_of(p) for p in look.select(others))
    n = len(values)
    median = (values[(n - 1) // 2] + values[n // 2]) / 2 if n else math.nan
    return look.result(
        value >= median,
        {f"{y} at {describe(subject)}": value, f"median {y} over {describe(others)}": median},
        f"{y}[{describe(subject)}] >= median {y} over {describe(others)}",
    )
