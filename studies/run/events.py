"""The driver's side of a trial's life: its MLflow child run and its record in the trial
store, created on its first event, metrics forwarded in batches, closed when it ends; and
after a restart, runs a dead driver left open are settled and their lost reports logged."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from textvae_core import __version__
from textvae_core.diagnostics import chance_levels, probe_set
from textvae_core.measures import key as metric_key

from ..spec import Study, grid_point, trial_key, trial_name
from ..tracking import CONFIG_ARTIFACT, provenance_tags, trial_params
from .datasets import corpus_datasets, corpus_key
from ..store import Status, StudyStore, TrialRecord
from .configs import TrialConfigs
from .trial import TrialReport
from .trial_models import WITH_MODEL, log_trial_model


@dataclass
class TrialEvents:
    """What the driver does when trials start, report and end (tracking, trial store)."""

    on_start: Callable[[dict], None]  # params
    on_result: Callable[[dict, TrialReport], None]  # params, report
    on_end: Callable[[dict, Status, str | None], None]  # params, status, reason


def git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            cwd=Path(__file__).resolve().parent,
        )
        return out.stdout.strip() or None if out.returncode == 0 else None
    except (OSError, subprocess.TimeoutExpired):
        return None


def trial_events(
    study: Study, configs: TrialConfigs, store: StudyStore, tracker, parent: str, corpora
):
    """Driver-side handling of trial events: MLflow runs and the trial store."""
    runs: dict[str, str] = {}
    chances: dict[int, dict[str, float]] = {}  # probe chance levels by fragment length (synthetic)
    commit = git_commit()

    def update(key: str, **fields) -> None:
        store.save_trial(key, dataclasses.replace(store.trial(key), **fields))

    def run_of(params: dict) -> tuple[str, str]:
        key = trial_key(params)
        if key not in runs:
            config = configs.of(params)
            as_dict = config.to_dict()
            corpus = corpora.get(corpus_key(config))
            tags = provenance_tags(
                __version__,
                commit,
                study=study.name,
                preset=configs.ctx.preset,
                model=config.model,
                seed=config.seed,
                corpus=config.corpus,
                corpus_sha256=corpus.sha256 if corpus is not None else "",
            )
            chance = {}
            if (  # the probe's chance levels (character fragments only)
                config.corpus == "synthetic" and config.tokens == "char" and corpus is not None
            ):
                if config.length not in chances:
                    chances[config.length] = chance_levels(
                        probe_set(config.length, corpus.vocab)[1]
                    )
                chance = chances[config.length]
            runs[key] = tracker.child_run(
                parent,
                key,
                trial_name(params),
                {**trial_params(params, as_dict, grid_point(params)), **chance},
                tags,
            )
            tracker.log_text(runs[key], json.dumps(as_dict, indent=1), CONFIG_ARTIFACT)
            if corpus is not None:
                tracker.log_datasets(runs[key], list(corpus_datasets(corpus)))
            known = store.trial(key) or TrialRecord(params, as_dict)
            store.save_trial(
                key,
                dataclasses.replace(
                    known,
                    params=params,
                    config=as_dict,
                    status=Status.RUNNING,
                    mlflow_run_id=runs[key],
                    started=time.time(),
                ),
            )
            _backfill(store, tracker, key, runs[key])
        return key, runs[key]

    def on_start(params: dict) -> None:
        run_of(params)
        store.sync_up()  # a remote study's databases stay current enough to resume elsewhere

    def on_result(params: dict, rep: TrialReport) -> None:
        key, run_id = run_of(params)
        if rep.step >= 0:  # a trial's last report carries where its time went
            spent = {metric_key("time", f"{k}_s"): v for k, v in (rep.seconds or {}).items()}
            spent = spent if rep.final else {}
            tracker.log_metrics(run_id, rep.step, {**rep.metrics, **spent, **(rep.system or {})})
        if rep.final:
            if rep.samples:
                tracker.log_text(run_id, rep.samples, "samples.txt")
            final = {k: v for k, v in rep.metrics.items() if k != "lr"}
            update(
                key,
                final=final,
                last_step=rep.step,
                seconds=dict(rep.seconds or {}),
                trial_wall_s=rep.wall_s,
            )

    def on_end(params: dict, status: Status, reason: str | None) -> None:
        key, run_id = run_of(params)
        if status in WITH_MODEL:  # from its checkpoint, while the run is still open
            log_trial_model(store, tracker, key, run_id)
        tracker.close_trial(run_id, status, reason)
        update(key, status=status, reason=reason, ended=time.time())
        store.sync_up()

    return TrialEvents(on_start, on_result, on_end)


def settle_finished_runs(store: StudyStore, tracker, done: dict[str, TrialRecord]) -> None:
    """A driver killed between recording a trial as finished and closing (or syncing) its
    MLflow run leaves the run open: close it as the trial store says, with every report."""
    for key, record in done.items():
        run_id = record.mlflow_run_id
        run = tracker.get_run(run_id) if run_id else None
        if run is None or run.info.status in ("FINISHED", "FAILED"):
            continue
        _backfill(store, tracker, key, run_id)
        tracker.close_trial(run_id, record.status, record.reason)


def _backfill(store: StudyStore, tracker, key: str, run_id: str) -> None:
    """Log reports a resumed trial made before the driver died but MLflow never received
    (metrics are flushed in batches); steps MLflow already has are skipped."""
    if not store.exists(f"trials/{key}/history.parquet"):
        return
    by_step: dict[int, dict[str, float]] = {}
    for row in store.read_table(f"trials/{key}/history.parquet").to_pylist():
        split, step = row.pop("split"), int(row.pop("step"))
        by_step.setdefault(step, {}).update({f"{split}/{k}": v for k, v in row.items()})
    for step in sorted(by_step):
        tracker.log_metrics(run_id, step, by_step[step])
    tracker.flush()
