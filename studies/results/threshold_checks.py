"""Checks of points against bounds fixed in the study file: one value, every point of a
scope, several measures at once, and the encoder-in-use control (see `checks`)."""

from __future__ import annotations

from typing import Any, Mapping

from ..errors import StudyError
from .points import (
    MIN_ACTIVE_UNITS,
    MIN_MI,
    USABLE,
    Lookup,
    Verdict,
    describe,
    distinct,
    one_bound,
    x_range,
)


def value_at(
    rows,
    *,
    where: Mapping[str, Any],
    y: str,
    at_most: float | None = None,
    at_least: float | None = None,
) -> dict:
    """The y of the point `where` <= at_most, or >= at_least (exactly one of the two)."""
    one_bound(at_most=at_most, at_least=at_least)
    look = Lookup(rows, y)
    value = look.one(where)
    measured = {f"{y} at {describe(where)}": value}
    if at_most is not None:
        return look.result(value <= at_most, measured, f"{y} <= {at_most}")
    return look.result(value >= at_least, measured, f"{y} >= {at_least}")


def value_between(
    rows, *, where: Mapping[str, Any], y: str, lo: float, hi: float, at_step: int | None = None
) -> dict:
    """The y of the point `where` lies in [lo, hi] (a published number's band)."""
    if not lo <= hi:
        raise StudyError(f"value_between needs lo <= hi, got lo={lo}, hi={hi}")
    look = Lookup(rows, y, at_step)
    value = look.one(where)
    measured = {f"{y} at {describe(where)}": value}
    return look.result(lo <= value <= hi, measured, f"{lo} <= {y} <= {hi}")


def on_corpus(rows, *, corpus: str) -> dict:
    """Every usable trial trained on `corpus`: the control of a claim tied to one corpus's
    published number (another corpus cannot test it)."""
    used = sorted({str(r.get("corpus")) for r in rows if r.get("status") in USABLE})
    measured = {"corpus": ", ".join(used) or "-"}
    if not used:
        return {
            "verdict": Verdict.INCONCLUSIVE,
            "measured": measured,
            "threshold": f"corpus = {corpus}",
            "note": "no usable trial",
        }
    verdict = Verdict.PASS if used == [corpus] else Verdict.FAIL
    return {"verdict": verdict, "measured": measured, "threshold": f"corpus = {corpus}", "note": ""}


def all_below(
    rows,
    *,
    where: Mapping[str, Any],
    y: str,
    threshold: float,
    x: str | None = None,
    x_min: float | None = None,
    x_max: float | None = None,
    inclusive: bool = False,
    at_step: int | None = None,
) -> dict:
    """Every point matching `where` (and x_min <= x <= x_max when given): y < threshold
    (y <= threshold when inclusive), read at step `at_step` when given."""
    holds = (lambda v: v <= threshold) if inclusive else (lambda v: v < threshold)
    return _every_point(
        rows,
        where,
        y,
        x,
        x_min,
        x_max,
        holds,
        f"{y} {'<=' if inclusive else '<'} {threshold}",
        at_step,
    )


def all_above(
    rows,
    *,
    where: Mapping[str, Any],
    y: str,
    threshold: float,
    x: str | None = None,
    x_min: float | None = None,
    x_max: float | None = None,
    at_step: int | None = None,
) -> dict:
    """Every point matching `where` (and x_min <= x <= x_max when given): y >= threshold."""
    return _every_point(
        rows, where, y, x, x_min, x_max, lambda v: v >= threshold, f"{y} >= {threshold}", at_step
    )


def _every_point(
    rows, where, y, x, x_min, x_max, holds, condition: str, at_step: int | None
) -> dict:
    look = Lookup(rows, y, at_step)
    keep, scope_x = x_range(x, x_min, x_max)
    pts = look.select(where, keep, scope_x)
    # each point labelled by everything that tells it apart, so no two share a key
    shown = {**where, x: None} if x else where
    measured = {describe(distinct(p, pts, shown)): look.value_of(p) for p in pts}
    scope = (
        describe(where) + scope_x.replace(" and", ",") + (f", at step {at_step}" if at_step else "")
    )
    return look.result(
        bool(pts) and all(holds(look.value_of(p)) for p in pts),
        measured,
        f"{condition} at every point with {scope}",
    )


def all_at_least(rows, *, where: Mapping[str, Any], mins: Mapping[str, float]) -> dict:
    """Every point matching `where` has each measure y >= mins[y] (e.g. z gain and MI)."""
    looks = {y: Lookup(rows, y) for y in mins}
    first = next(iter(looks.values()))
    pts = first.select(where)
    for look in looks.values():
        if look is not first:
            look.select(where)
            first.problems += look.problems
    measured = {
        f"{y} at {describe(distinct(p, pts, where))}": looks[y].value_of(p)
        for p in pts
        for y in mins
    }
    passed = bool(pts) and all(looks[y].value_of(p) >= m for p in pts for y, m in mins.items())
    return first.result(
        passed,
        measured,
        " and ".join(f"{y} >= {m}" for y, m in mins.items())
        + f" at every point with {describe(where)}",
    )


def not_collapsed(
    rows,
    *,
    where: Mapping[str, Any],
    require: str = "every",
    min_units: float = MIN_ACTIVE_UNITS,
    min_mi: float = MIN_MI,
) -> dict:
    """The encoder is in use: active units >= min_units and final MI >= min_mi (nats) at every
    point matching `where` (require="every") or at one of them at least (require="any")."""
    if require not in ("every", "any"):
        raise StudyError(f"require={require!r}: expected 'every' or 'any'")
    units, mi = Lookup(rows, "active_units"), Lookup(rows, "mi")
    pts = units.select(where)
    mi.select(where)
    units.problems += mi.problems
    alive = {}
    for p in pts:
        label = describe(distinct(p, pts, where))
        alive[label] = (units.value_of(p), mi.value_of(p))
    ok = [u >= min_units and m >= min_mi for u, m in alive.values()]
    measured = {
        **{f"active units at {k}": u for k, (u, _) in alive.items()},
        **{f"MI at {k}": m for k, (_, m) in alive.items()},
    }
    if require == "any" and any(ok):
        units.problems = []  # one live trial is enough; a missing other does not matter
    passed = bool(ok) and (all(ok) if require == "every" else any(ok))
    return units.result(
        passed,
        measured,
        f"active units >= {min_units} and MI >= {min_mi} nats at {require} "
        f"point with {describe(where)}",
    )
