"""The driver's side of trials' trained models: each trial that ends completed or collapsed
has its model logged to its MLflow run from its checkpoint in the trial store (workers never
talk to MLflow), and at the study's end `--register NAME` registers the best trial's model
(for a multi-objective study, every Pareto-optimal trial's) in MLflow's model registry.

A model that cannot be logged does not stop the study, and is not lost silently: a tracking
server that stopped answering (or refuses the credentials) is a TrackingError that ends the
study like any other write (`vaestudy resume` logs the model then); any other failure (no
readable checkpoint, an artifact store that refuses the upload) is a warning in the study's
log, the reason in the run's tag `vaestudy.model_error`, and one line at the study's end.
A registration that fails for a reason other than tracking is one line too; the study ends
complete, and `vaestudy resume PATH --register NAME` tries again (a run registered already
keeps its version).
"""

from __future__ import annotations

import logging
import math
import tempfile
from pathlib import Path
from typing import Callable, Mapping

from textvae_core.errors import CheckpointError, one_line

from ..spec import Study
from ..store import Status, StudyStore, TrialRecord
from ..tracking import MODEL_TRIAL_KEY, STUDY_TAG, TRIAL_KEY_TAG, TrackingError
from ..tracking.models import MODEL_BYTES_TAG, MODEL_ERROR_TAG, Candidate
from .trial import resume_point

log = logging.getLogger(__name__)
WITH_MODEL = (Status.COMPLETED, Status.COLLAPSED)  # trials trained to a final report


def log_trial_model(store: StudyStore, tracker, key: str, run_id: str) -> int | None:
    """Log trial `key`'s model from its newest readable checkpoint to run `run_id`, unless the
    run has one: its size in bytes, or None where it was not logged (see the module's note)."""
    run = tracker.get_run(run_id)
    if run is not None and MODEL_BYTES_TAG in run.data.tags:
        return None
    with tempfile.TemporaryDirectory(prefix=f"vaestudy-model-{key}-") as tmp:
        try:
            checkpoint = resume_point(store, key, None, Path(tmp))
            if checkpoint is None:
                raise CheckpointError("the trial store has no checkpoint of it")
            size = tracker.log_model(run_id, checkpoint, {MODEL_TRIAL_KEY: key})
            if run is not None and MODEL_ERROR_TAG in run.data.tags:  # an earlier try's reason
                tracker.delete_tag(run_id, MODEL_ERROR_TAG)
            return size
        except TrackingError:
            raise
        except Exception as exc:  # noqa: BLE001 - one trial's model never ends the study
            why = one_line(f"{type(exc).__name__}: {exc}")[:500]
            log.warning("trial %s: its model was not logged to MLflow: %s", key, why)
            tracker.set_tags(run_id, {MODEL_ERROR_TAG: why})
            return None


def conclude_models(
    study: Study,
    store: StudyStore,
    tracker,
    parent: str,
    register: str | None,
    echo: Callable[[str], None],
) -> None:
    """At the study's end: log the models still missing (trials finished before models were
    logged, or whose logging failed), say how many are missing, and register the best."""
    records = {k: r for k, r in store.finished_trials().items() if r.status in WITH_MODEL}
    for key, record in records.items():
        if record.mlflow_run_id:
            log_trial_model(store, tracker, key, record.mlflow_run_id)
    tags = {r.info.run_id: r.data.tags for r in tracker.runs(parent)}
    logged = {k: r for k, r in records.items() if MODEL_BYTES_TAG in tags.get(r.mlflow_run_id, {})}
    if len(logged) < len(records):
        missing = [k for k in records if k not in logged]
        why = tags.get(records[missing[0]].mlflow_run_id, {}).get(
            MODEL_ERROR_TAG, "no reason recorded"
        )
        echo(
            f"[{study.name}] {len(missing)} trial model(s) not logged to MLflow "
            f"(trial {missing[0]}: {why}); see vaestudy.log"
        )
    if not register:
        return
    chosen = best_candidates(study, logged)
    if not chosen:
        echo(f"[{study.name}] --register {register}: no finished trial with a logged model")
        return
    for c in chosen:
        try:
            version = tracker.register_model(
                register, c, {STUDY_TAG: study.name, TRIAL_KEY_TAG: c.key}
            )
        except TrackingError:
            raise
        except Exception as exc:  # noqa: BLE001 - the study itself is done: say it, end it
            log.warning("--register %s: trial %s", register, c.key, exc_info=True)
            echo(
                f"[{study.name}] --register {register}: trial {c.key} not registered: "
                f"{one_line(exc)}"
            )
            continue
        values = ", ".join(f"{m} {v:.4f}" for m, v in c.values.items())
        echo(f"[{study.name}] registered {register} version {version}: trial {c.key} ({values})")


def best_candidates(study: Study, records: Mapping[str, TrialRecord]) -> list[Candidate]:
    """The trial with the best final value of the study's metric, or for a multi-objective
    study every Pareto-optimal trial (no other is as good in every objective and better in
    one), in key order. Trials without a finite value of every objective are left out."""
    sign = {m: 1.0 if mode == "min" else -1.0 for m, mode in zip(study.metrics, study.modes)}
    pool = [
        Candidate(key, r.mlflow_run_id, {m: float(r.final[m]) for m in study.metrics})
        for key, r in sorted(records.items())
        if r.mlflow_run_id and all(_finite(r.final.get(m)) for m in study.metrics)
    ]
    cost = {c.key: [sign[m] * c.values[m] for m in study.metrics] for c in pool}  # lower wins
    if not study.multi_objective:
        return [min(pool, key=lambda c: cost[c.key])] if pool else []
    return [c for c in pool if not any(_dominates(cost[o.key], cost[c.key]) for o in pool)]


def _dominates(a: list[float], b: list[float]) -> bool:
    return all(x <= y for x, y in zip(a, b)) and any(x < y for x, y in zip(a, b))


def _finite(value) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)
