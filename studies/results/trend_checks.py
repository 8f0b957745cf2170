"""Checks of how a measure moves along a swept axis: rank correlation, a strict rise,
which group reaches a threshold first, one group above another at every x (see `checks`)."""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

from .points import Lookup, describe, matches, same, spearman

MIN_SPEARMAN_POINTS = 3  # with two points a rank correlation is +-1 whatever the data


def spearman_by_group(
    rows, *, x: str, y: str, group: str, threshold: float, where: Mapping[str, Any] | None = None
) -> dict:
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
            look.problems.append(
                f"{group}={g}: Spearman needs >= {MIN_SPEARMAN_POINTS} values of {x}, "
                f"has {len(set(xs))}"
            )
            continue
        rhos[f"{group}={g}"] = spearman(xs, [look.value_of(p) for p in pts if x in p])
    constant = [k for k, r in rhos.items() if math.isnan(r)]
    passed = bool(rhos) and all(r >= threshold for r in rhos.values())  # NaN compares False
    return look.result(
        passed,
        {f"spearman({x}, {y}) at {k}": r for k, r in rhos.items()},
        f"spearman({x}, {y}) >= {threshold} in every {group} group",
        f"{y} is constant at {', '.join(constant)}" if constant else "",
    )


def first_reaching(
    rows, *, x: str, y: str, threshold: float, group: str, earlier: Any, later: Any
) -> dict:
    """The smallest x whose y >= threshold is strictly smaller with group=earlier than with
    group=later; it also holds when only `earlier` reaches the threshold. A tie fails; when
    neither group reaches it the claim cannot be tested (INCONCLUSIVE)."""
    look = Lookup(rows, y)
    first = {}
    for g in (earlier, later):
        pts = sorted(look.select({group: g}), key=lambda p: p[x])
        first[g] = next((p[x] for p in pts if look.value_of(p) >= threshold), math.inf)
    a, b = first[earlier], first[later]
    measured = {
        f"smallest {x} with {y} >= {threshold}, {group}={g}": (v if math.isfinite(v) else None)
        for g, v in first.items()
    }
    if not math.isfinite(a) and not math.isfinite(b) and not look.problems:
        look.problems.append(
            f"{y} stays under {threshold} in both groups: this preset cannot test the claim"
        )
    return look.result(
        a < b,
        measured,
        f"smallest {x} with {y} >= {threshold}: {group}={earlier} < {group}={later} "
        "(never reached counts as infinite; a tie fails)",
    )


def greater_at_every(
    rows,
    *,
    x: str,
    y: str,
    group: str,
    greater: Any,
    lesser: Any,
    where: Mapping[str, Any] | None = None,
) -> dict:
    """At every x (among the points matching `where`): y with group=greater > y with
    group=lesser."""
    look = Lookup(rows, y)
    where = dict(where or {})
    xs = sorted({p[x] for p in look.points if matches(p, where) and x in p})
    if not xs:
        look.problems.append(f"no trial with {describe(where)}")
    measured, passed = {}, bool(xs)
    for value in xs:
        hi, lo = (
            look.one({**where, x: value, group: greater}),
            look.one({**where, x: value, group: lesser}),
        )
        measured[f"{y} at {x}={value}: {group}={greater} - {group}={lesser}"] = hi - lo
        passed = passed and hi > lo
    return look.result(
        passed, measured, f"{y}[{group}={greater}] > {y}[{group}={lesser}] at every {x}"
    )


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
    return looks[0].result(
        passed, measured, f"{' and '.join(ys)} rise strictly with {x} for {describe(where)}"
    )
