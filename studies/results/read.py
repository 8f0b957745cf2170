"""A study's results read into one typed table: from its folder (the trial store, the source
of truth) or from its MLflow experiment (through `studies.tracking`). One summary row per
trial: hyperparameters, status, final valid metrics, steps, wall time, training chars/s,
and `history`, the trial's validation reports by step (for claims; not written to Parquet).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import pyarrow as pa

from textvae_core.history import METRIC_NAMES, SPLITS  # the columns of a trial's history

from .. import tracking
from ..errors import StudyError
from .points import is_number
from ..trials_table import TrialSummary, config_columns, store_trials, trials_table
from ..loading import load_study
from ..spec import Study, trial_name
from ..store import StudyStore, TrialRecord
from .points import MEASURES, TEST_MEASURES, WORD_MEASURES


@dataclass
class StudyResults:
    """What a report is made of, whichever source it was read from."""

    study: Study
    preset: str
    corpus: str
    summary: list[dict[str, Any]]  # one row per trial
    trials: pa.Table  # one row per trial per report per split
    parent_run_id: str | None
    tracking_uri: str | None
    source: str  # where the trials were read from, said plainly
    seeds: tuple[int, ...] | None = None  # the seeds the study ran (None: those in the rows)
    compute: Mapping[str, Any] | None = None  # `compute_use` of a study folder (None: not recorded)


def read_folder(folder: str, tracking_uri: str | None = None) -> StudyResults:
    """The trials of a study folder, from its trial store (the source of truth)."""
    store = StudyStore(folder)
    record = store.study()
    if record is None:
        raise StudyError(
            f"{folder} is not a study folder (no study.json); `vaestudy run STUDY` makes one, "
            "or give an MLflow experiment name with --tracking-uri"
        )
    identity = record.identity
    study = _definition(record.study_ref, identity["study"])
    store.sync_down(("mlflow.db",))  # a remote study's tracking store lives in a local cache
    records = store.trials()
    trials = store_trials(store, records)
    summary = [summary_row(t) for t in trials]
    preset = identity["preset"]
    return StudyResults(
        study,
        preset,
        _corpus(summary, study, preset),
        _with_identity(summary, study, preset),
        trials_table(trials, study.name),
        record.parent_run_id,
        tracking_uri or record.tracking_uri,
        store.uri,
        _seeds(study, identity),
        compute_use(record.launches, records.values()),
    )


def compute_use(
    launches: Sequence[Mapping[str, Any]], trials: Iterable[TrialRecord]
) -> dict[str, Any] | None:
    """How well the driver runs used their trial slots: trial compute (the seconds each
    trial's own code ran) over the sum of each run's wall time times its concurrency, and
    where the trials' time went (train / eval / checkpoint / report). A run killed before it
    could record its end ends at its last trial event (counted in "estimated"). None where
    study.json records no driver run with its concurrency (a study run before they were)."""
    trials = list(trials)
    events = sorted(x for t in trials for x in (t.started, t.ended) if x)
    runs, estimated = [], 0
    for i, r in enumerate(launches):
        if not (r.get("started") and r.get("concurrency")):
            continue
        end = r.get("ended")
        if not end:
            upto = launches[i + 1]["started"] if i + 1 < len(launches) else math.inf
            end = max((x for x in events if r["started"] <= x < upto), default=None)
            estimated += end is not None
        if end:
            runs.append((r["started"], end - r["started"], r["concurrency"]))
    if not runs:
        return None
    # Trials that ended inside a recorded run: a trial's wall time is its last process's, so a
    # trial resumed across runs counts in the run it ended in, and one from before they were
    # recorded (or still running) in none.
    trials = [
        t
        for t in trials
        if t.ended and any(start <= t.ended <= start + wall for start, wall, _ in runs)
    ]
    slot_s = sum(wall * n for _, wall, n in runs)
    trial_s = sum(t.wall_s or 0.0 for t in trials)  # the driver's clock where the trial never said
    split: dict[str, float] = {}
    timed = [t for t in trials if t.seconds]  # the split is over the trials that measured it
    for t in timed:
        for k, v in t.seconds.items():
            split[k] = split.get(k, 0.0) + v
    timed_s = sum(t.wall_s or 0.0 for t in timed)
    return {
        "driver_runs": len(runs),
        "estimated": estimated,
        "wall_s": sum(wall for _, wall, _ in runs),
        "concurrency": sorted({n for _, _, n in runs}),
        "trials": len(trials),
        "trial_s": trial_s,
        "utilisation": trial_s / slot_s if slot_s > 0 else None,
        "split": {k: v / timed_s for k, v in split.items()} if timed_s > 0 else {},
    }


def _seeds(study: Study, identity: Mapping[str, Any]) -> tuple[int, ...] | None:
    """A grid study's seeds: `trials` repeats of its points from seed `seed` on."""
    if not study.is_grid or identity["preset"] not in study.presets:
        return None
    points = len(study.points(identity["preset"]))
    first, repeats = (
        int(identity.get("seed", 0)),
        max(1, int(identity.get("trials", points)) // max(points, 1)),
    )
    return tuple(range(first, first + repeats))


def _definition(ref: str | None, name: str) -> Study:
    """The study's definition: by the reference it was run with (a name or a study file), else
    by its name; a study file that exists but does not load is an error in its own words."""
    for candidate in (ref, name):
        if not candidate:
            continue
        try:
            return load_study(candidate)
        except StudyError:
            if Path(candidate).is_file():
                raise
    raise StudyError(
        f"cannot load the definition of study {name!r} (run as {ref!r}): neither a built-in study "
        "nor an existing study file"
    )


def summary_row(trial: TrialSummary) -> dict[str, Any]:
    """One trial: its hyperparameters, status, last valid metrics, steps, wall time and mean
    training chars/s over its reports."""
    key, params, config, history = trial.key, trial.params, trial.config, trial.history
    valid = [r for r in history if r["split"] == "valid"]
    last = max(valid, key=lambda r: r["step"]) if valid else {}
    speeds = [
        r["chars_per_s"]
        for r in history
        if r["split"] == "train" and is_number(r.get("chars_per_s"))
    ]
    row: dict[str, Any] = {
        "trial_key": key,
        "name": trial_name(params),
        "status": trial.status,
        "reason": trial.reason,
        "corpus": config.get("corpus"),
    }
    row.update(params)
    # config values beside the swept ones (`steps` is the steps trained, set below)
    row.update({c: v for c, v in config_columns(config).items() if c != "steps" and c not in row})
    row.update({m: _float(last.get(m)) for m in MEASURES + WORD_MEASURES})
    tests = [r for r in history if r["split"] == "test"]
    if tests:  # a word corpus's final report: the test split
        test = max(tests, key=lambda r: r["step"])
        row.update({m: _float(test.get(m[len("test_") :])) for m in TEST_MEASURES})
    decays = [r["plateau_decays"] for r in history if is_number(r.get("plateau_decays"))]
    if decays:
        row["plateau_decays"] = decays[-1]
    row["steps"] = max((int(r["step"]) for r in history), default=None)
    row["wall_s"] = _float(trial.wall_s)
    row["chars_per_s"] = sum(speeds) / len(speeds) if speeds else math.nan
    tokens = [r["tokens_per_s"] for r in history if is_number(r.get("tokens_per_s"))]
    if tokens:  # words: tokens (words and end tokens) per second
        row["tokens_per_s"] = sum(tokens) / len(tokens)
    row["mlflow_run_id"] = trial.run_id
    # mutual_info is estimated on the validation fragments, so it never exceeds log of their number
    n = (config.get("batch_size") or 0) * (config.get("eval_batches") or 0)
    row["mi_max"] = math.log(n) if n else math.nan
    pool = config.get("mi_pool") or 0  # the final MI over a larger pool, capped at its own log N
    row["mi_pool_max"] = math.log(pool) if pool else math.nan
    # the validation reports by step, for claims that read a trial's history (not in
    # summary.parquet)
    row["history"] = {
        int(r["step"]): {m: _float(r.get(m)) for m in MEASURES + WORD_MEASURES} for r in valid
    }
    row.update(
        _aggressive(
            [r for r in history if r["split"] == "train" and is_number(r.get("encoder_updates"))]
        )
    )
    row.update(_remedies(config, last, history))
    return row


def _remedies(
    config: Mapping[str, Any], last: Mapping[str, Any], history: Sequence[Mapping[str, Any]]
) -> dict[str, float]:
    """Whether a remedy did what it promises (none for a trial without BN-VAE or free bits):
    BN-VAE's final `bn_mu_var` and its KL floor gamma^2 Z / 2 nats per fragment in bits/char
    (`bn_kl_floor_bpc`); free bits' largest share of latent dimensions at the floor over the
    training reports (`free_bits_active_max`, 0: it never engaged)."""
    out: dict[str, float] = {}
    if config.get("bn_vae"):
        # Zhu et al. (2020): E[KL] >= gamma^2 Z / 2 nats per fragment; bits/char as kl_bpc
        nats = config["bn_gamma"] ** 2 * config["latent"] / 2
        out["bn_kl_floor_bpc"] = nats / (config["length"] * math.log(2))
        out["bn_mu_var"] = _float(last.get("bn_mu_var"))
    shares = [r["free_bits_active"] for r in history if is_number(r.get("free_bits_active"))]
    if (config.get("free_bits") or 0) > 0 and shares:
        out["free_bits_active_max"] = max(shares)
    return out


def _aggressive(train: Sequence[Mapping[str, Any]]) -> dict[str, float]:
    """Aggressive training's cost from its training reports (none for other trials): encoder-only
    updates and their seconds in all, and the last step whose report window had any
    (aggressive mode was on through it)."""
    if not train:
        return {}
    on = [int(r["step"]) for r in train if r["encoder_updates"] > 0]
    return {
        "encoder_updates": sum(r["encoder_updates"] for r in train),
        "encoder_s": sum(
            _float(r.get("encoder_s")) for r in train if is_number(r.get("encoder_s"))
        ),
        "aggressive_until": float(max(on, default=0)),
    }


def _with_identity(rows: list[dict], study: Study, preset: str) -> list[dict]:
    """Rows with the study and preset first, in the order of the study's grid."""
    names = swept(study, preset)
    rows = sorted(rows, key=lambda r: tuple(rank(study, k, r.get(k)) for k in names))
    return [{"study": study.name, "preset": preset, **r} for r in rows]


def _corpus(rows: Sequence[Mapping[str, Any]], study: Study, preset: str) -> str:
    found = sorted({str(r["corpus"]) for r in rows if r.get("corpus")})
    if found:
        return ", ".join(found)
    return study.presets[preset].corpus if preset in study.presets else "unknown"


def _float(value: Any) -> float:
    return (
        float(value)
        if isinstance(value, (int, float)) and not isinstance(value, bool)
        else math.nan
    )


def read_experiment(tracking_uri: str, experiment: str) -> StudyResults:
    """The trials of the latest study launch logged to an MLflow experiment: its parent run's
    child runs (`sweep.*` params are the swept values; tags give key and status; metric
    histories give the reports)."""
    logged = tracking.read_study(tracking_uri, experiment, METRIC_NAMES, SPLITS)
    study = _definition(None, logged.study)
    summary = [summary_row(t) for t in logged.trials]
    trials = trials_table(logged.trials, study.name)
    preset = logged.preset
    return StudyResults(
        study,
        preset,
        _corpus(summary, study, preset),
        _with_identity(summary, study, preset),
        trials,
        logged.parent_run_id,
        tracking_uri,
        f"MLflow experiment {experiment!r} at {tracking_uri}",
    )


def swept(study: Study, preset: str) -> list[str]:
    """The names a study's trials differ by, in the study's order (seed last)."""
    if not study.is_grid:
        return list(study.space)
    grid = study.grid_for(preset) if preset in study.presets else study.grid
    return [*grid, "seed"]


def ordered(study: Study, name: str | None, values: Sequence[Any]) -> list[Any]:
    """Distinct values in the study's declared order (grid or variants), else sorted."""
    distinct: list[Any] = []
    for v in values:
        if v is not None and v not in distinct:
            distinct.append(v)
    return sorted(distinct, key=lambda v: rank(study, name, v))


def rank(study: Study, name: str | None, value: Any) -> tuple:
    """Sort key: position in the study's grid (or variants) first, then numbers, then text."""
    declared = list(study.grid.get(name, ())) + (list(study.variants) if name == "variant" else [])
    position = next(
        (i for i, d in enumerate(declared) if d == value and type(d) is type(value)), len(declared)
    )
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return (position, 0, value, "")
    return (position, 1, 0, str(value))
