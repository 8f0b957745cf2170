"""The keys a study's claims name, checked when the study loads: a misspelt hyperparameter in
a `where` or a misspelt measure in a `y` would otherwise run the whole study and come back
INCONCLUSIVE. Values are not checked here: a value missing from a smaller preset's grid stays
an INCONCLUSIVE with its reason."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any, Iterator, Mapping

from textvae_core.config import TrainConfig

from .errors import StudyError

if TYPE_CHECKING:
    from .spec import Study

# Check parameters whose mapping keys, or whose string value, name a hyperparameter (a summary
# row's column: a swept key, the variant, the seed or a config field)...
POINT_MAPPINGS = ("where", "subject", "baseline", "others", "numerator", "denominator", "at")
POINT_NAMES = ("x", "group")
# ...and those that name a measure (a final validation metric, or one derived from them).
MEASURE_NAMES = ("y", "ref")
MEASURE_LISTS = ("ys",)
MEASURE_MAPPINGS = ("mins",)


def hyperparameters(study: "Study") -> set[str]:
    swept = set(study.grid) | set(study.space)
    for preset in study.presets.values():
        swept |= set(getattr(preset, "grid", None) or {})
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    return swept | fields | {"seed"} | ({"variant"} if study.variants else set())


def measures() -> tuple[str, ...]:
    from .results.points import ALL_MEASURES, DERIVED

    return (*ALL_MEASURES, *DERIVED)


def _named(params: Mapping[str, Any]) -> Iterator[tuple[str, str, str]]:
    """(parameter, name, kind) for every name a check's params hold; kind "point" or "measure"."""
    for key, value in params.items():
        if key in POINT_MAPPINGS and isinstance(value, Mapping):
            yield from ((key, k, "point") for k in value)
        elif key in POINT_NAMES and isinstance(value, str):
            yield key, value, "point"
        elif key in MEASURE_NAMES and isinstance(value, str):
            yield key, value, "measure"
        elif key in MEASURE_LISTS and not isinstance(value, str):
            yield from ((key, v, "measure") for v in value)
        elif key in MEASURE_MAPPINGS and isinstance(value, Mapping):
            yield from ((key, k, "measure") for k in value)


def check_claim_keys(study: "Study") -> None:
    """Raise StudyError (one line) at the first claim or control key that names nothing."""
    if not study.claims:
        return
    points, known = hyperparameters(study), measures()
    swept = sorted(
        (set(study.grid) | set(study.space) | {"seed"}) | ({"variant"} if study.variants else set())
    )
    for claim in study.claims:
        checks = [(f"claim {claim.id}", claim.params)] + [
            (f"claim {claim.id}, control {c.text!r}", c.params) for c in claim.controls
        ]
        for where, params in checks:
            for param, name, kind in _named(params):
                if kind == "point" and name not in points:
                    raise StudyError(
                        f"study {study.name}: {where}: {param} key {name!r} is not a "
                        f"hyperparameter of this study; expected a swept key "
                        f"({', '.join(swept)}) or a config field (model, length, alpha, ...)"
                    )
                if kind == "measure" and name not in known:
                    raise StudyError(
                        f"study {study.name}: {where}: {param}={name!r} is not a measure; "
                        f"expected one of {', '.join(known)}"
                    )
