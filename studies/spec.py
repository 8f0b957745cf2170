"""A study is data: which model(s), base config, the sweep, the metric, presets, claims.

Each file in `studies/definitions/` defines `STUDY = Study(...)`; `loading.load_study` finds
one by name or by path, so a user adds a study by writing one more file (or passing its path).

A trial's config is built in layers (see `Study.trial_config`):
    core size preset (`ptb` or `tiny`)  <- study.base  <- preset.overrides
    <- preset.model_overrides[model]  <- the variant's values  <- the grid/search point
"""

from __future__ import annotations

import hashlib
import inspect
import itertools
import json
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from textvae_core.measures import key as metric_key, parse_key
from textvae_core.config import LSTM_MODELS, TrainConfig, make_config

from .errors import StudyError

PRESET_NAMES = ("smoke", "cpu", "paper")


@dataclass(frozen=True)
class Preset:
    """How big a run is: smoke (seconds per trial, synthetic corpus), cpu, paper."""

    size: str  # core size preset: "tiny" or "ptb" (released defaults)
    corpus: str  # "synthetic", "ptb" or a path
    overrides: Mapping[str, Any] = field(default_factory=dict)  # config values for every trial
    model_overrides: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)  # per model
    grid: Mapping[str, tuple] | None = None  # a smaller grid than the study's (grid studies)
    num_samples: int = 1  # grid: repeats of each point with seeds seed, seed+1, ...; search: trials
    cost: str = ""  # expected wall time, said plainly ("~40 s on 2 CPU cores")


# --- the search space --------------------------------------------------------------------


@dataclass(frozen=True)
class Float:
    """A float hyperparameter in [lo, hi], sampled on a log scale when `log`."""

    lo: float
    hi: float
    log: bool = False

    def __post_init__(self) -> None:
        if not self.lo < self.hi or (self.log and self.lo <= 0):
            raise StudyError(
                f"Float({self.lo}, {self.hi}, log={self.log}): expected lo < hi "
                "(and lo > 0 for log)"
            )


@dataclass(frozen=True)
class Int:
    """An integer hyperparameter in [lo, hi], sampled on a log scale when `log`."""

    lo: int
    hi: int
    log: bool = False

    def __post_init__(self) -> None:
        if (
            not (isinstance(self.lo, int) and isinstance(self.hi, int))
            or not self.lo < self.hi
            or (self.log and self.lo <= 0)
        ):
            raise StudyError(
                f"Int({self.lo}, {self.hi}, log={self.log}): expected integers lo < hi "
                "(and lo > 0 for log)"
            )


@dataclass(frozen=True)
class Categorical:
    """A hyperparameter taking one of `choices`."""

    choices: tuple

    def __post_init__(self) -> None:
        object.__setattr__(self, "choices", tuple(self.choices))
        if not self.choices:
            raise StudyError("Categorical(): expected at least one choice")


SPACE_KINDS = (Float, Int, Categorical)


# --- the figure ----------------------------------------------------------------------------

FIGURE_KINDS = {  # kind -> (fields it needs, fields it may take)
    "lines": (
        ("x", "series"),
        ("panel",),
    ),  # final cost (solid) and KL (dashed) against x, a line per series
    "bars": (("x",), ("panel",)),  # stacked reconstruction and KL bars per value of x (Table 2)
    "curves": (("series",), ("panel",)),  # train/valid reconstruction against the step (Fig 3)
    "measures": (
        ("x",),
        (),
    ),  # z gain, KL, MI, AU and IW bound per value of x, seed spread (remedies)
    "pareto": ((), ()),  # Optuna's Pareto front and importances (search studies)
}


@dataclass(frozen=True)
class Figure:
    """Which figure a study's report draws (values averaged over seeds); see FIGURE_KINDS."""

    kind: str
    x: str | None = None
    series: str | None = None
    panel: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in FIGURE_KINDS:
            raise StudyError(
                f"Figure(kind={self.kind!r}): expected one of {', '.join(FIGURE_KINDS)}"
            )
        needs, may = FIGURE_KINDS[self.kind]
        given = {k for k in ("x", "series", "panel") if getattr(self, k) is not None}
        if set(needs) - given or given - set(needs) - set(may):
            raise StudyError(
                f"Figure(kind={self.kind!r}) takes {', '.join(needs) or 'no fields'}"
                + (f" (and optionally {', '.join(may)})" if may else "")
                + f"; got {', '.join(sorted(given)) or 'none'}"
            )


# --- claims --------------------------------------------------------------------------------


def check_call(check: Callable, params: Mapping[str, Any], where: str) -> None:
    """A claim's or control's check must be a function taking (rows, **params)."""
    if not callable(check):
        raise StudyError(
            f"{where}: check={check!r} is not a function; use one of studies.results.checks"
        )
    try:
        inspect.signature(check).bind(None, **params)
    except TypeError as exc:
        names = [n for n in inspect.signature(check).parameters if n != "rows"]
        raise StudyError(
            f"{where}: check {check.__name__} takes {', '.join(names)} ({exc})"
        ) from None


@dataclass(frozen=True)
class Control:
    """A condition without which a claim cannot be tested (judged like a claim's check)."""

    text: str
    check: Callable[..., dict]  # a function of studies.results.checks
    params: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        check_call(self.check, self.params, f"control {self.text!r}")


@dataclass(frozen=True)
class Claim:
    """A statement of the paper a study checks; thresholds are fixed before any run. When a
    control fails, the claim is INCONCLUSIVE for that seed, never PASS or FAIL."""

    id: str
    text: str
    check: Callable[..., dict]  # a function of studies.results.checks
    params: Mapping[str, Any] = field(default_factory=dict)
    controls: tuple[Control, ...] = ()

    def __post_init__(self) -> None:
        check_call(self.check, self.params, f"claim {self.id}")


@dataclass(frozen=True)
class Study:
    name: str
    title: str
    reproduces: str  # "Fig 5", "Table 2", or "search"
    model: str = "hybrid-lstm"  # default model; a variant may name another
    base: Mapping[str, Any] = field(default_factory=dict)  # config values for every preset
    variants: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)  # name -> config values
    grid: Mapping[str, tuple] = field(default_factory=dict)  # param -> values (grid studies)
    space: Mapping[str, Float | Int | Categorical] = field(default_factory=dict)  # search studies
    sampler: str = "grid"  # grid, tpe or nsga2
    metric: str | tuple[str, ...] = metric_key(
        "valid", "total_bpc"
    )  # keys of textvae_core.measures
    mode: str | tuple[str, ...] = "min"
    presets: Mapping[str, Preset] = field(default_factory=dict)
    claims: tuple[Claim, ...] = ()
    figure: Figure | None = None  # which figure the report draws
    description: str = ""

    def __post_init__(self) -> None:
        if self.sampler not in ("grid", "tpe", "nsga2"):
            raise StudyError(
                f"study {self.name}: sampler={self.sampler!r}; expected grid, tpe or nsga2"
            )
        if self.sampler == "grid" and not self.grid:
            raise StudyError(f"study {self.name}: a grid study needs a grid")
        if self.sampler != "grid" and not self.space:
            raise StudyError(f"study {self.name}: a search study needs a space")
        for name, entry in self.space.items():
            if not isinstance(entry, SPACE_KINDS):
                raise StudyError(
                    f"study {self.name}: space entry {name}={entry!r}; expected Float(lo, hi), "
                    "Int(lo, hi) or Categorical(choices) from studies.spec"
                )
        if self.figure is not None and not isinstance(self.figure, Figure):
            raise StudyError(
                f"study {self.name}: figure={self.figure!r}; expected Figure(kind, ...) from "
                "studies.spec or None"
            )
        for claim in self.claims:
            if not isinstance(claim, Claim):
                raise StudyError(
                    f"study {self.name}: claims must be Claim(...) objects, got {claim!r}"
                )
        for metric in self.metrics:
            try:
                split, _ = parse_key(metric)
            except ValueError as exc:
                raise StudyError(f"study {self.name}: metric={metric!r}: {exc}") from None
            if split != "valid":
                raise StudyError(
                    f"study {self.name}: metric={metric!r} is not a valid-split measure: a study "
                    "ranks its trials on what every report measures on the valid split"
                )
        missing = [p for p in PRESET_NAMES if p not in self.presets]
        if missing:
            raise StudyError(f"study {self.name}: presets {', '.join(missing)} are missing")
        from .claim_keys import check_claim_keys  # the claims' keys name something

        check_claim_keys(self)

    @property
    def is_grid(self) -> bool:
        return self.sampler == "grid"

    @property
    def multi_objective(self) -> bool:
        return not isinstance(self.metric, str)

    @property
    def metrics(self) -> tuple[str, ...]:
        """The metric(s) the study optimises, always a tuple."""
        return (self.metric,) if isinstance(self.metric, str) else tuple(self.metric)

    @property
    def modes(self) -> tuple[str, ...]:
        """Ray Tune's mode per metric: "min" or "max"."""
        return (self.mode,) if isinstance(self.mode, str) else tuple(self.mode)

    @property
    def directions(self) -> tuple[str, ...]:
        """Optuna's direction per metric: "minimize" or "maximize"."""
        return tuple("minimize" if m == "min" else "maximize" for m in self.modes)

    def preset(self, name: str) -> Preset:
        if name not in self.presets:
            raise StudyError(
                f"unknown preset {name!r} for study {self.name}: expected one of "
                f"{', '.join(self.presets)}"
            )
        return self.presets[name]

    def grid_for(self, preset: str) -> dict[str, tuple]:
        grid = self.presets[preset].grid or self.grid
        return {k: tuple(v) for k, v in grid.items()}

    def points(self, preset: str, seeds: tuple[int, ...] = (0,)) -> list[dict[str, Any]]:
        """Every grid point (with a `seed` entry when several seeds are asked for)."""
        grid = self.grid_for(preset)
        names = list(grid)
        pts = [dict(zip(names, values)) for values in itertools.product(*grid.values())]
        if len(seeds) > 1:
            pts = [{**p, "seed": s} for s in seeds for p in pts]
        return pts

    def trial_config(
        self, preset: str, params: Mapping[str, Any], overrides: Mapping[str, Any] | None = None
    ) -> TrainConfig:
        """The validated config of one trial: layers as described in the module docstring."""
        pr = self.preset(preset)
        params = dict(params)
        variant = {}
        if "variant" in params:
            name = params.pop("variant")
            if name not in self.variants:
                raise StudyError(f"study {self.name}: unknown variant {name!r}")
            variant = dict(self.variants[name])
        model = variant.pop("model", params.pop("model", self.model))
        values = {
            **self.base,
            "corpus": pr.corpus,
            **pr.overrides,
            **pr.model_overrides.get(model, {}),
            **variant,
            **params,
            **(overrides or {}),
        }
        return make_config(model, pr.size, values)

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "title": self.title,
            "reproduces": self.reproduces,
            "model": self.model,
            "sampler": self.sampler,
            "metric": self.metric,
            "mode": self.mode,
            "grid": {k: list(v) for k, v in self.grid.items()},
            "space": {
                k: {"kind": type(v).__name__, **_plain(vars(v))} for k, v in self.space.items()
            },
            "figure": _plain(vars(self.figure)) if self.figure else None,
            "variants": {k: dict(v) for k, v in self.variants.items()},
            "presets": {
                n: {
                    "size": p.size,
                    "corpus": p.corpus,
                    "cost": p.cost,
                    "num_samples": p.num_samples,
                    "trials": self.trial_count(n),
                    "overrides": _plain(p.overrides),
                    "model_overrides": _plain(p.model_overrides),
                    "grid": {k: list(v) for k, v in self.grid_for(n).items()}
                    if self.is_grid
                    else None,
                    "seeds": list(range(p.num_samples)) if self.is_grid else None,
                    "lstm_cells": self.lstm_cells(n),
                }
                for n, p in self.presets.items()
            },
            "claims": [
                {
                    "id": c.id,
                    "text": c.text,
                    "check": c.check.__name__,
                    "params": _plain(c.params),
                    "controls": [
                        {"text": k.text, "check": k.check.__name__, "params": _plain(k.params)}
                        for k in c.controls
                    ],
                }
                for c in self.claims
            ],
        }

    def lstm_cells(self, preset: str) -> dict[str, str]:
        """The LSTM cell each model with an LSTM trains with under this preset."""
        points = [{"variant": v} for v in self.variants] or [{}]  # a variant's own settings
        if "model" in self.space:
            points += [{"model": m} for m in getattr(self.space["model"], "choices", ())]
        cells = {}
        for p in points:
            config = self.trial_config(preset, p)
            if config.model in LSTM_MODELS:
                cells.setdefault(config.model, config.lstm_cell)
        return dict(sorted(cells.items()))

    def trial_count(self, preset: str, num_samples: int | None = None) -> int:
        n = num_samples or self.presets[preset].num_samples
        if not self.is_grid:
            return n
        return len(self.points(preset)) * n


def _plain(value: Any) -> Any:
    """Study-file data as JSON-ready values (tuples become lists)."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (tuple, list)):
        return [_plain(v) for v in value]
    return value


def trial_key(params: Mapping[str, Any]) -> str:
    """A stable id for a trial's point in the sweep: the same point always maps to the same
    key, which is how checkpoints and MLflow runs are found again after a resume."""
    blob = json.dumps({k: params[k] for k in sorted(params)}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def trial_name(params: Mapping[str, Any]) -> str:
    return ",".join(f"{k}={v}" for k, v in params.items())


def grid_point(params: Mapping[str, Any]) -> str:
    """The grid point a trial belongs to: its name without the seed, so a point's seeds share
    it (the MLflow UI groups runs by it). A study with nothing swept but seeds has one point."""
    return trial_name({k: v for k, v in params.items() if k != "seed"}) or "all"
