"""Optuna: the study's persistent database, its sampler, and reconciling it after a crash.

Grids use Optuna's GridSampler, so every point runs once; search studies use a seeded
TPE (one metric) or NSGA-II (several) sampler. The study lives in a real database (SQLite
in the study folder by default, any SQLAlchemy URL by option) that optuna-dashboard reads.

Resuming never restores Ray's pickled searcher (whose view of the database lags after a
SIGKILL and makes Optuna raise UpdateFinishedTrialError). Instead `reconcile` makes the
database agree with the trial store, which is the source of truth: trials left RUNNING by
a dead driver are closed (COMPLETE with their recorded values if the trial store says they
finished, FAIL otherwise), and every point still to run that the sampler would not hand
out again is enqueued with its exact parameters.
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

import optuna

from ..errors import StudyError
from ..spec import Categorical, Float, Study


def quiet() -> None:
    """Optuna's INFO lines (one per trial) off; the driver calls this, never an import."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)


def rdb_storage(url: str) -> optuna.storages.RDBStorage:
    try:
        return optuna.storages.RDBStorage(url, engine_kwargs=_engine_kwargs(url))
    except Exception as exc:  # noqa: BLE001 - any driver error is a bad URL for the user
        raise StudyError(
            f"--optuna-storage {url!r}: cannot open it ({type(exc).__name__}: "
            f"{str(exc).splitlines()[0]}); expected an SQLAlchemy URL such as sqlite:///PATH"
        ) from None


def _engine_kwargs(url: str) -> dict:
    # Concurrent readers (optuna-dashboard) while the driver writes: wait, don't fail.
    return {"connect_args": {"timeout": 30}} if url.startswith("sqlite") else {}


def make_sampler(
    study: Study, grid: Mapping[str, tuple] | None, seed: int
) -> optuna.samplers.BaseSampler:
    if grid is not None:
        return optuna.samplers.GridSampler({k: list(v) for k, v in grid.items()}, seed=seed)
    if study.sampler == "nsga2":
        return optuna.samplers.NSGAIISampler(seed=seed, population_size=8)
    return optuna.samplers.TPESampler(seed=seed, n_startup_trials=5, multivariate=True)


def distributions(study: Study, grid: Mapping[str, tuple] | None) -> dict[str, Any]:
    """The search space as Optuna distributions (categorical for grids)."""
    if grid is not None:
        return {k: optuna.distributions.CategoricalDistribution(list(v)) for k, v in grid.items()}
    out = {}
    for name, entry in study.space.items():
        if isinstance(entry, Categorical):
            out[name] = optuna.distributions.CategoricalDistribution(list(entry.choices))
        elif isinstance(entry, Float):
            out[name] = optuna.distributions.FloatDistribution(entry.lo, entry.hi, log=entry.log)
        else:  # Int: Study validated the space when it was made
            out[name] = optuna.distributions.IntDistribution(entry.lo, entry.hi, log=entry.log)
    return out


def open_study(storage: optuna.storages.BaseStorage, name: str, study: Study) -> optuna.Study:
    """The study for bookkeeping (create, reconcile). Its sampler is a plain one on purpose:
    GridSampler.after_trial calls study.stop(), which raises outside study.optimize."""
    return optuna.create_study(
        storage=storage,
        study_name=name,
        sampler=optuna.samplers.RandomSampler(),
        directions=list(study.directions),
        load_if_exists=True,
    )


@dataclass
class Plan:
    num_samples: int  # trials the Tune run must start
    closed_stale: int  # RUNNING trials of a dead driver that were closed


def close_running(
    ostudy: optuna.Study, study: Study, done: Mapping[str, dict], key_of: Callable[[dict], str]
) -> dict[str, dict]:
    """Close trials left RUNNING (by a dead driver, or by a tell Ray could not complete, e.g.
    a NaN value): COMPLETE with the values the trial store recorded if it finished, FAIL
    otherwise. Only call it when no Tune run is live. Returns key -> params of the trials
    closed that still have to run."""
    names = list(study.metrics)
    unfinished = {}
    for t in ostudy.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        key = key_of(t.params)
        values = [done[key].final.get(n) if key in done else None for n in names]
        if key in done and all(isinstance(v, (int, float)) and math.isfinite(v) for v in values):
            ostudy.tell(t.number, values if len(values) > 1 else values[0])
        else:
            ostudy.tell(t.number, state=optuna.trial.TrialState.FAIL)
            if key not in done:
                unfinished[key] = dict(t.params)
    return unfinished


def reconcile(
    ostudy: optuna.Study,
    study: Study,
    done: Mapping[str, dict],
    key_of: Callable[[dict], str],
    points: list[dict] | None,
    target: int,
) -> Plan:
    """Close a dead driver's RUNNING and WAITING trials and enqueue what is left to run.

    done: trial key -> TrialRecord of the finished trials (with their `final` metric values).
    points: every grid point (None for search studies); target: trials wanted in all.

    On a fresh study nothing is enqueued and the sampler hands out every point. Once a
    study has history, every grid point still to run is enqueued with its exact parameters,
    so the GridSampler's own bookkeeping (which a killed driver leaves behind) never
    decides what runs; a search study re-enqueues its interrupted trials and samples the rest.
    """
    existing = ostudy.get_trials(deepcopy=False)
    running = sum(t.state == optuna.trial.TrialState.RUNNING for t in existing)
    stale = close_running(ostudy, study, done, key_of)
    for t in ostudy.get_trials(deepcopy=False, states=(optuna.trial.TrialState.WAITING,)):
        # Enqueued by a driver that died before asking for it: drop it and enqueue afresh.
        # (Optuna has no public call to close a WAITING trial; the storage has.)
        ostudy._storage.set_trial_state_values(t._trial_id, optuna.trial.TrialState.FAIL)  # noqa: SLF001
    if points is not None:
        todo = [p for p in points if key_of(p) not in done]
        enqueue = todo if existing else []
        num = len(todo)
    else:
        enqueue = list(stale.values())
        num = max(target - len(done), 0)
    for p in enqueue:
        ostudy.enqueue_trial(p)
    return Plan(num_samples=num, closed_stale=running)


def dashboard(store, host: str, port: int) -> tuple[list[str], str]:
    """optuna-dashboard for a study folder's Optuna database (`store`: its StudyStore): the
    command line that serves it on host:port and the URL of the study's page there."""
    record = store.study()
    if record is None:
        raise StudyError(
            f"{store.uri} is not a study folder (no study.json); give the folder `vaestudy run` "
            "printed"
        )
    url = record.optuna_storage
    if url.startswith("sqlite:///"):
        store.sync_down(("optuna.db",))  # a remote study's database lives in a local cache
        url = f"sqlite:///{store.local_dir / 'optuna.db'}"
    name = record.identity["study"]
    try:
        study_id = rdb_storage(url).get_study_id_from_name(name)
    except KeyError:
        raise StudyError(
            f"{store.uri}: no Optuna study {name!r} in its database yet; run the study first"
        ) from None
    exe = Path(sys.executable).with_name("optuna-dashboard")
    cmd = [
        str(exe) if exe.exists() else "optuna-dashboard",
        url,
        "--host",
        host,
        "--port",
        str(port),
    ]
    return cmd, f"http://{host}:{port}/dashboard/studies/{study_id}"
