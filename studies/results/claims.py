"""The paper's claims, judged per seed against a study's measured trials.

A claim (`studies.spec.Claim`) calls a check of `studies.results.checks` with thresholds fixed
before any run, and may carry controls: checks that must hold for the claim to be testable
at all ("the LSTM VAE is not collapsed at L=12"). For each seed of the study:

* a control that FAILs makes the seed's verdict INCONCLUSIVE, with the control's text and
  values as the reason (a control that is itself INCONCLUSIVE does too);
* otherwise the seed's verdict is the check's: PASS, FAIL or INCONCLUSIVE.

Over the seeds: all PASS is PASS, all FAIL is FAIL, all INCONCLUSIVE is INCONCLUSIVE, and
any mix is UNSTABLE, whose note counts the seeds of each verdict. `measured` is the mean of
each value over the seeds that have it and `spread` its [min, max].
"""

from __future__ import annotations

import math
from typing import Any, Callable, Mapping, Sequence

from ..errors import StudyError
from .points import USABLE, Verdict, clean, is_number, matches
from .points import VERDICTS as SEED_VERDICTS
from ..spec import Claim, Study

VERDICTS = tuple(Verdict)  # over seeds: UNSTABLE too


def tally(verdicts: Sequence[Mapping[str, Any]]) -> str:
    """How many claims got each verdict, e.g. "2 PASS, 1 UNSTABLE" ("" for no claim): the
    report's tag on the parent run and the summary `vaestudy run` prints say the same."""
    counts = {v: sum(c["verdict"] == v for c in verdicts) for v in VERDICTS}
    return ", ".join(f"{n} {v}" for v, n in counts.items() if n)


__all__ = [
    "tally",
    "VERDICTS",
    "SEED_VERDICTS",
    "SPEED_THRESHOLD",
    "USABLE",
    "evaluate",
    "expected_rows",
    "overall",
    "speed_claim",
]


def expected_rows(study: Study, preset: str, seed: int | None = None) -> list[dict[str, Any]]:
    """The grid points of a preset, each as a row with status "missing" (search studies: none)."""
    if not study.is_grid:
        return []
    extra = {} if seed is None else {"seed": seed}
    return [{**p, **extra, "status": "missing"} for p in study.points(preset)]


def overall(verdicts: Sequence[str]) -> tuple[str, str]:
    """The verdict over seeds and, for UNSTABLE, a note with how many seeds gave which."""
    kinds = list(dict.fromkeys(verdicts))
    if len(kinds) == 1:
        return kinds[0], ""
    counts = ", ".join(f"{sum(v == k for v in verdicts)} {k}" for k in SEED_VERDICTS if k in kinds)
    return Verdict.UNSTABLE, f"seeds disagree: {counts} of {len(verdicts)}"


def evaluate(
    study: Study,
    rows: Sequence[Mapping[str, Any]],
    preset: str | None = None,
    seeds: Sequence[int] | None = None,
) -> list[dict[str, Any]]:
    """Every claim of `study` judged per seed against the summary `rows`: a list of
    {id, text, check, params, controls, verdict, note, threshold, measured, spread, seeds}.

    seeds: the seeds the study ran [default: those in `rows`]; with `preset`, a grid point of
    that preset with no row for a seed counts as missing in that seed.
    """
    rows = list(rows)
    if seeds is None:
        seeds = sorted({r["seed"] for r in rows if is_number(r.get("seed"))}) or [0]
    by_seed = {}
    for s in seeds:
        mine = [r for r in rows if r.get("seed", s) == s]
        if preset is not None:
            mine += [
                e
                for e in expected_rows(study, preset, s)
                if not any(matches(r, {k: v for k, v in e.items() if k != "status"}) for r in mine)
            ]
        by_seed[s] = mine
    out = []
    for claim in study.claims:
        per_seed = [{"seed": s, **_judge(study, claim, by_seed[s])} for s in seeds]
        verdict, note = overall([p["verdict"] for p in per_seed])
        if verdict != Verdict.UNSTABLE:
            note = "; ".join(dict.fromkeys(p["note"] for p in per_seed if p["note"]))
        measured, spread = _over_seeds([p["measured"] for p in per_seed])
        out.append(
            {
                "id": claim.id,
                "text": claim.text,
                "check": claim.check.__name__,
                "params": _jsonable(claim.params),
                "controls": [
                    {"text": c.text, "check": c.check.__name__, "params": _jsonable(c.params)}
                    for c in claim.controls
                ],
                "verdict": verdict,
                "note": note,
                "threshold": per_seed[0]["threshold"],
                "measured": measured,
                "spread": spread,
                "seeds": per_seed,
            }
        )
    return out


# Claim 5 of the paper (Sec 4): the hybrid trains ~2x faster than an LSTM VAE of equal size. The
# threshold is fixed at 1.4x: the FLOP ratio of the two at the released sizes is ~1.35-1.47x.
SPEED_THRESHOLD = 1.4


def speed_claim(ratio: float) -> dict[str, Any]:
    """The speed claim judged on a measured hybrid-lstm / lstm training chars/s ratio."""
    return {
        "text": f"hybrid-lstm trains >= {SPEED_THRESHOLD}x as many chars/s as lstm",
        "threshold": SPEED_THRESHOLD,
        "measured": ratio,
        "verdict": Verdict.PASS
        if ratio >= SPEED_THRESHOLD
        else (Verdict.FAIL if math.isfinite(ratio) else Verdict.INCONCLUSIVE),
    }


def _judge(study: Study, claim: Claim, rows) -> dict[str, Any]:
    """One seed's verdict: the controls first, then the claim's own check."""
    reasons, control_results = [], []
    for control in claim.controls:
        r = _call(study, claim.id, control.check, rows, control.params)
        control_results.append(
            {
                "text": control.text,
                "verdict": r["verdict"],
                "measured": r["measured"],
                "note": r["note"],
            }
        )
        if r["verdict"] == Verdict.FAIL:
            shown = ", ".join(f"{k} {_short(v)}" for k, v in r["measured"].items())
            reasons.append(
                f"control failed: {control.text} ({shown}): this preset cannot test the claim"
            )
        elif r["verdict"] == Verdict.INCONCLUSIVE:
            reasons.append(f"control not testable: {r['note']}")
    result = _call(study, claim.id, claim.check, rows, claim.params)
    if reasons:
        result = {**result, "verdict": Verdict.INCONCLUSIVE, "note": "; ".join(reasons)}
    return {**result, "controls": control_results}


def _short(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _over_seeds(measured: Sequence[Mapping[str, Any]]) -> tuple[dict[str, Any], dict[str, Any]]:
    keys = list(dict.fromkeys(k for m in measured for k in m))
    mean, spread = {}, {}
    for k in keys:
        values = [m[k] for m in measured if is_number(m.get(k))]
        mean[k] = sum(values) / len(values) if values else None
        spread[k] = [min(values), max(values)] if values else None
    return mean, spread


def _call(
    study: Study, claim: str, check: Callable, rows, params: Mapping[str, Any]
) -> dict[str, Any]:
    try:
        return check(rows, **params)
    except StudyError as exc:
        raise StudyError(f"study {study.name}, claim {claim}: {exc}") from None


def _jsonable(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (tuple, list)):
        return [_jsonable(v) for v in value]
    return clean(value)  # a non-finite float becomes None
