"""The check functions a claim names, and the points they read.

A study file declares each claim as data: `Claim(id, text, check, params, controls)`, where
`check` names one of the functions below and `params` holds its thresholds, fixed before
any run. A check reads summary rows (one per trial: the swept hyperparameters under their
own names, `status`, the final validation metrics without the `valid/` prefix, and
`history`, the trial's validation reports by step) and answers

    {"verdict": "PASS" | "FAIL" | "INCONCLUSIVE", "measured": {...}, "threshold": "...", "note": "..."}

Rules shared by every check:
* rows with the same hyperparameters are averaged into one point (`studies.results.claims` calls
  the checks once per seed, so a point is one trial there);
* only trials whose status is `completed` or `collapsed` count (a collapsed trial was stopped
  early, and its last metrics are valid data); a point whose trials all failed, or that has
  no trial at all, is missing;
* a claim that needs a missing point, or a value that is not a number, is INCONCLUSIVE and
  its note says which;
* `at_step=N` reads every value from the report at step N instead of the final one;
* derived measures: `kl_share` = kl_bpc / total_bpc, `mi` = the final MI over the large
  pool where the trial has it (`mi_pool`), else over the report's fragments.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Mapping, Sequence

from ..errors import StudyError
from .points import (DERIVED, MEASURES, MIN_ACTIVE_UNITS, MIN_MI, USABLE, VERDICTS, Lookup, average, clean,
                     describe, distinct, is_number, matches, ranks, ratio, same, spearman)

__all__ = ["VERDICTS", "USABLE", "MEASURES", "DERIVED", "average", "ranks", "spearman", "clean"]


# --- checks -------------------------------------------------------------------------------------


MIN_SPEARMAN_POINTS = 3  # with two points a rank correlation is +-1 whatever the data


def spearman_by_group(rows, *, x: str, y: str, group: str, threshold: float,
                      where: Mapping[str, Any] | None = None) -> dict:
    """In every value of `group` (among the points matching `where`), Spearman(x, y) over the
    points >= threshold. Every point of a group is needed; fewer than 3 distinct x values in
    a group is INCONCLUSIVE."""
    look = Lookup(rows, y)
    where = dict(where or {})
    groups = []
    for p in (q for q in look.points if matches(q, where)):
        if group in p and not any(same(p[group], g) for g in groups):
            groups.append(p[group])
    if not groups:
        look.problems.append(f"no trial has a value of {group}")
    rhos: dict[str, float] = {}
    for g in sorted(groups, key=str):
        pts = look.select({**where, group: g})
        xs = [p[x] for p in pts if x in p]
        if len(set(xs)) < MIN_SPEARMAN_POINTS:
            look.problems.append(f"{group}={g}: Spearman needs >= {MIN_SPEARMAN_POINTS} values of {x}, "
                                 f"has {len(set(xs))}")
            continue
        rhos[f"{group}={g}"] = spearman(xs, [look.value_of(p) for p in pts if x in p])
    constant = [k for k, r in rhos.items() if math.isnan(r)]
    passed = bool(rhos) and all(r >= threshold for r in rhos.values())  # NaN compares False
    return look.result(passed, {f"spearman({x}, {y}) at {k}": r for k, r in rhos.items()},
                       f"spearman({x}, {y}) >= {threshold} in every {group} group",
                       f"{y} is constant at {', '.join(constant)}" if constant else "")


def compare_at(rows, *, at: Mapping[str, Any], y: str, group: str, greater: Any, lesser: Any) -> dict:
    """At the point `at`: y with group=greater >= y with group=lesser."""
    look = Lookup(rows, y)
    hi, lo = look.one({**at, group: greater}), look.one({**at, group: lesser})
    where = describe(at)
    return look.result(hi >= lo, {f"{y} at {where}, {group}={greater}": hi, f"{y} at {where}, {group}={lesser}": lo},
                       f"{y}[{group}={greater}] >= {y}[{group}={lesser}] at {where}")


def ratio_between(rows, *, where: Mapping[str, Any], x: str, lo: Any, y: str, hi: Any = None,
                  hi_from: float | None = None, below: float | None = None, at_least: float | None = None) -> dict:
    """Within `where`: y at x=hi (or at every x >= hi_from) compared with y at x=lo, as
    y_hi < below * y_lo or y_hi >= at_least * y_lo (exactly one of hi / hi_from, and one bound)."""
    _one_bound(below=below, at_least=at_least)
    _one_bound(hi=hi, hi_from=hi_from)
    look = Lookup(rows, y)
    y_lo = look.one({**where, x: lo})
    if hi is not None:
        highs = {hi: look.one({**where, x: hi})}
    else:
        pts = look.select(where, *_from(x, hi_from, None))
        highs = {p[x]: look.value_of(p) for p in sorted(pts, key=lambda p: p[x])}
        if not highs:
            look.problems.append(f"no trial with {describe(where)} and {x} >= {hi_from}")
    measured = {f"{y} at {x}={lo}": y_lo}
    for value, y_hi in highs.items():
        measured[f"{y} at {x}={value}"] = y_hi
        measured[f"ratio {x}={value} / {x}={lo}"] = ratio(y_hi, y_lo)
    scope = f"{x}={hi}" if hi is not None else f"every {x} >= {hi_from}"
    if below is not None:
        return look.result(bool(highs) and all(v < below * y_lo for v in highs.values()), measured,
                           f"{y} at {scope} < {below} x {y}[{x}={lo}] for {describe(where)}")
    return look.result(bool(highs) and all(v >= at_least * y_lo for v in highs.values()), measured,
                       f"{y} at {scope} >= {at_least} x {y}[{x}={lo}] for {describe(where)}")


def ratio_vs(rows, *, x: str, at: Sequence[Any], y: str, numerator: Mapping[str, Any],
             denominator: Mapping[str, Any], at_least: float) -> dict:
    """At every x in `at`: y of `numerator` >= at_least * y of `denominator`."""
    look = Lookup(rows, y)
    measured, passed = {}, True
    for value in at:
        num, den = look.one({**numerator, x: value}), look.one({**denominator, x: value})
        measured[f"{y} ratio at {x}={value}"] = ratio(num, den)
        passed = passed and num >= at_least * den
    return look.result(passed, measured, f"{y}[{describe(numerator)}] >= {at_least} x {y}[{describe(denominator)}] "
                                         f"at {x} in {tuple(at)}")


def value_at(rows, *, where: Mapping[str, Any], y: str, at_most: float | None = None,
             at_least: float | None = None) -> dict:
    """The y of the point `where` <= at_most, or >= at_least (exactly one of the two)."""
    _one_bound(at_most=at_most, at_least=at_least)
    look = Lookup(rows, y)
    value = look.one(where)
    measured = {f"{y} at {describe(where)}": value}
    if at_most is not None:
        return look.result(value <= at_most, measured, f"{y} <= {at_most}")
    return look.result(value >= at_least, measured, f"{y} >= {at_least}")


def all_below(rows, *, where: Mapping[str, Any], y: str, threshold: float, x: str | None = None,
              x_min: float | None = None, x_max: float | None = None, inclusive: bool = False,
              at_step: int | None = None) -> dict:
    """Every point matching `where` (and x_min <= x <= x_max when given): y < threshold
    (y <= threshold when inclusive), read at step `at_step` when given."""
    holds = (lambda v: v <= threshold) if inclusive else (lambda v: v < threshold)
    return _every_point(rows, where, y, x, x_min, x_max, holds, f"{y} {'<=' if inclusive else '<'} {threshold}",
                        at_step)


def all_above(rows, *, where: Mapping[str, Any], y: str, threshold: float, x: str | None = None,
              x_min: float | None = None, x_max: float | None = None, at_step: int | None = None) -> dict:
    """Every point matching `where` (and x_min <= x <= x_max when given): y >= threshold."""
    return _every_point(rows, where, y, x, x_min, x_max, lambda v: v >= threshold, f"{y} >= {threshold}", at_step)


def _every_point(rows, where, y, x, x_min, x_max, holds, condition: str, at_step: int | None) -> dict:
    look = Lookup(rows, y, at_step)
    keep, scope_x = _from(x, x_min, x_max)
    pts = look.select(where, keep, scope_x)
    # each point labelled by everything that tells it apart, so no two share a key
    shown = {**where, x: None} if x else where
    measured = {describe(distinct(p, pts, shown)): look.value_of(p) for p in pts}
    scope = describe(where) + scope_x.replace(" and", ",") + (f", at step {at_step}" if at_step else "")
    return look.result(bool(pts) and all(holds(look.value_of(p)) for p in pts), measured,
                       f"{condition} at every point with {scope}")


def mean_greater(rows, *, group: str, y: str, greater: Any, lesser: Any) -> dict:
    """The mean y over the points with group=greater > the mean over those with group=lesser.
    Every point of both groups is needed."""
    look = Lookup(rows, y)
    means = {}
    for g in (greater, lesser):
        pts = look.select({group: g})
        means[g] = sum(look.value_of(p) for p in pts) / len(pts) if pts else math.nan
    return look.result(means[greater] > means[lesser],
                       {f"mean {y} at {group}={g}": v for g, v in means.items()},
                       f"mean {y}[{group}={greater}] > mean {y}[{group}={lesser}]")


def max_vs(rows, *, y: str, subject: Mapping[str, Any], others: Mapping[str, Any]) -> dict:
    """The y of the point `subject` > the largest y among the points matching `others`
    (each value listed in `others` must be present)."""
    look = Lookup(rows, y)
    value = look.one(subject)
    pts = look.select(others)
    rivals = {describe(distinct(p, pts, others)): look.value_of(p) for p in pts}
    best = max((look.value_of(p) for p in pts), default=math.nan)
    measured = {f"{y} at {describe(subject)}": value, **{f"{y} at {k}": v for k, v in rivals.items()}}
    return look.result(value > best, measured,
                       f"{y}[{describe(subject)}] > max {y} over {describe(others)}")


def _one_bound(**bounds: float | None) -> None:
    given = [k for k, v in bounds.items() if v is not None]
    if len(given) != 1:
        raise StudyError(f"give exactly one of {', '.join(bounds)} (got {', '.join(given) or 'none'})")


def _from(x: str | None, x_min: Any, x_max: Any = None) -> tuple[Callable[[Mapping[str, Any]], bool] | None, str]:
    """A `keep` filter (and its description) for the points with x_min <= x <= x_max."""
    if x is None or (x_min is None and x_max is None):
        return None, ""
    lo = -math.inf if x_min is None else x_min
    hi = math.inf if x_max is None else x_max
    text = "".join([f" and {x} >= {x_min}" if x_min is not None else "",
                    f" and {x} <= {x_max}" if x_max is not None else ""])
    return (lambda p: is_number(p.get(x)) and lo <= p[x] <= hi), text


def difference_vs(rows, *, x: str, at: Sequence[Any], y: str, subject: Mapping[str, Any],
                  baseline: Mapping[str, Any], at_least: float, at_step: int | None = None) -> dict:
    """At every x in `at`: y of `subject` >= y of `baseline` + at_least (read at `at_step`)."""
    look = Lookup(rows, y, at_step)
    measured, passed = {}, True
    for value in at:
        a, b = look.one({**subject, x: value}), look.one({**baseline, x: value})
        measured[f"{y} difference at {x}={value}"] = a - b
        passed = passed and a - b >= at_least
    when = f" at step {at_step}" if at_step else ""
    return look.result(passed, measured, f"{y}[{describe(subject)}] >= {y}[{describe(baseline)}] + {at_least} "
                                         f"at {x} in {tuple(at)}{when}")


def below_by(rows, *, where: Mapping[str, Any], y: str, ref: str, margin: float) -> dict:
    """The point `where`: y <= ref - margin (both measures of the same trial)."""
    look, ref_look = Lookup(rows, y), Lookup(rows, ref)
    value, reference = look.one(where), ref_look.one(where)
    look.problems += ref_look.problems
    return look.result(value <= reference - margin, {f"{y} at {describe(where)}": value, ref: reference},
                       f"{y} <= {ref} - {margin}")


def not_collapsed(rows, *, where: Mapping[str, Any], require: str = "every",
                  min_units: float = MIN_ACTIVE_UNITS, min_mi: float = MIN_MI) -> dict:
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
    measured = {**{f"active units at {k}": u for k, (u, _) in alive.items()},
                **{f"MI at {k}": m for k, (_, m) in alive.items()}}
    if require == "any" and any(ok):
        units.problems = []  # one live trial is enough; a missing other does not matter
    passed = bool(ok) and (all(ok) if require == "every" else any(ok))
    return units.result(passed, measured, f"active units >= {min_units} and MI >= {min_mi} nats at {require} "
                                          f"point with {describe(where)}")


def first_reaching(rows, *, x: str, y: str, threshold: float, group: str, earlier: Any, later: Any) -> dict:
    """The smallest x whose y >= threshold is strictly smaller with group=earlier than with
    group=later; it also holds when only `earlier` reaches the threshold. A tie fails; when
    neither group reaches it the claim cannot be tested (INCONCLUSIVE)."""
    look = Lookup(rows, y)
    first = {}
    for g in (earlier, later):
        pts = sorted(look.select({group: g}), key=lambda p: p[x])
        first[g] = next((p[x] for p in pts if look.value_of(p) >= threshold), math.inf)
    a, b = first[earlier], first[later]
    measured = {f"smallest {x} with {y} >= {threshold}, {group}={g}": (v if math.isfinite(v) else None)
                for g, v in first.items()}
    if not math.isfinite(a) and not math.isfinite(b) and not look.problems:
        look.problems.append(f"{y} stays under {threshold} in both groups: this preset cannot test the claim")
    return look.result(a < b, measured, f"smallest {x} with {y} >= {threshold}: {group}={earlier} < {group}={later} "
                                        "(never reached counts as infinite; a tie fails)")


def greater_at_every(rows, *, x: str, y: str, group: str, greater: Any, lesser: Any,
                     where: Mapping[str, Any] | None = None) -> dict:
    """At every x (among the points matching `where`): y with group=greater > y with group=lesser."""
    look = Lookup(rows, y)
    where = dict(where or {})
    xs = sorted({p[x] for p in look.points if matches(p, where) and x in p})
    if not xs:
        look.problems.append(f"no trial with {describe(where)}")
    measured, passed = {}, bool(xs)
    for value in xs:
        hi, lo = look.one({**where, x: value, group: greater}), look.one({**where, x: value, group: lesser})
        measured[f"{y} at {x}={value}: {group}={greater} - {group}={lesser}"] = hi - lo
        passed = passed and hi > lo
    return look.result(passed, measured, f"{y}[{group}={greater}] > {y}[{group}={lesser}] at every {x}")


def increasing(rows, *, where: Mapping[str, Any], x: str, ys: Sequence[str]) -> dict:
    """Over the points matching `where`, each y in `ys` rises strictly with x (>= 2 points)."""
    looks = [Lookup(rows, y) for y in ys]
    measured, passed = {}, True
    for look, y in zip(looks, ys):
        pts = sorted(look.select(where), key=lambda p: p[x])
        values = [look.value_of(p) for p in pts]
        measured.update({f"{y} at {x}={p[x]}": v for p, v in zip(pts, values)})
        passed = passed and len(values) >= 2 and all(b > a for a, b in zip(values, values[1:]))
        if len(pts) < 2:
            look.problems.append(f"{y}: needs >= 2 points with {describe(where)}, has {len(pts)}")
    for other in looks[1:]:
        looks[0].problems += other.problems
    return looks[0].result(passed, measured, f"{' and '.join(ys)} rise strictly with {x} for {describe(where)}")


def within_of_best(rows, *, y: str, subject: Mapping[str, Any], others: Mapping[str, Any], rel: float) -> dict:
    """|y of `subject` - min y over `others`| <= rel x that minimum ("comparable")."""
    look = Lookup(rows, y)
    value = look.one(subject)
    pts = look.select(others)
    best = min((look.value_of(p) for p in pts), default=math.nan)
    gap = ratio(value - best, best)
    return look.result(abs(gap) <= rel, {f"{y} at {describe(subject)}": value, f"best {y} over {describe(others)}": best,
                                         "relative difference": gap},
                       f"|{y}[{describe(subject)}] - best| <= {rel} x best over {describe(others)}")


def all_at_least(rows, *, where: Mapping[str, Any], mins: Mapping[str, float]) -> dict:
    """Every point matching `where` has each measure y >= mins[y] (e.g. z gain and MI)."""
    looks = {y: Lookup(rows, y) for y in mins}
    first = next(iter(looks.values()))
    pts = first.select(where)
    for look in looks.values():
        if look is not first:
            look.select(where)
            first.problems += look.problems
    measured = {f"{y} at {describe(distinct(p, pts, where))}": looks[y].value_of(p) for p in pts for y in mins}
    passed = bool(pts) and all(looks[y].value_of(p) >= m for p in pts for y, m in mins.items())
    return first.result(passed, measured, " and ".join(f"{y} >= {m}" for y, m in mins.items())
                        + f" at every point with {describe(where)}")


def times_baseline(rows, *, y: str, subject: Mapping[str, Any], baseline: Mapping[str, Any], factor: float,
                   at_least: float) -> dict:
    """y of `subject` >= at_least and >= factor x y of `baseline`."""
    look = Lookup(rows, y)
    value, base = look.one(subject), look.one(baseline)
    return look.result(value >= at_least and value >= factor * base,
                       {f"{y} at {describe(subject)}": value, f"{y} at {describe(baseline)}": base},
                       f"{y}[{describe(subject)}] >= {at_least} and >= {factor} x {y}[{describe(baseline)}]")


def at_least_median(rows, *, y: str, subject: Mapping[str, Any], others: Mapping[str, Any]) -> dict:
    """y of `subject` >= the median y over the points matching `others`."""
    look = Lookup(rows, y)
    value = look.one(subject)
    values = sorted(look.value_of(p) for p in look.select(others))
    n = len(values)
    median = (values[(n - 1) // 2] + values[n // 2]) / 2 if n else math.nan
    return look.result(value >= median, {f"{y} at {describe(subject)}": value,
                                         f"median {y} over {describe(others)}": median},
                       f"{y}[{describe(subject)}] >= median {y} over {describe(others)}")
