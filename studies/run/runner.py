"""`run_study`: drive a study's remaining trials on Ray, from the plan `plan.prepare` made.

The driver takes the study folder's lock, opens tracking and Optuna, reconciles what an
earlier launch finished, runs the rest through the Ray adapter and closes everything.

Running the same study into the same folder again (or `vaestudy resume PATH`) continues
it: finished trials are kept, interrupted ones continue from their checkpoints under the
same MLflow run, and no run is duplicated.
"""

from __future__ import annotations

import contextlib
import dataclasses
import shutil
import time
from dataclasses import asdict, dataclass
from typing import Any, Callable, Mapping

from textvae_core import __version__

from . import logs, search
from ..trials_table import store_trials, trials_table
from ..spec import trial_key
from ..store import Status, StudyRecord, StudyStatus, StudyStore
from .lock import DriverLock
from .events import git_commit, settle_finished_runs, trial_events
from .plan import RunOptions, StudyPlan, prepare
from .progress import trial_steps
from .trial_models import conclude_models


@dataclass
class StudyOutcome:
    folder: str
    parent_run_id: str
    tracking_uri: str
    statuses: dict[str, int]
    trials_parquet: str
    wall_time_s: float
    report: Mapping[str, str] | None = None  # file name -> URI of the report written at the end


def run_study(
    study_ref: str, opts: RunOptions, echo: Callable[[str], None] = print
) -> StudyOutcome:
    """Run a study's remaining trials: prepare, then open tracking, open Optuna, reconcile,
    run on Ray and finish. Bad input fails in `prepare`, before anything is written."""
    from . import ray_adapter

    start = time.monotonic()
    marks = {"call": time.time()}  # when each set-up phase ended (see SETUP_PHASES)
    plan = prepare(study_ref, opts.resolved())
    marks["prepare"] = time.time()
    quiet_third_party()
    ray_adapter.set_environment(plan.opts.address)
    if (
        plan.opts.address
    ):  # join a named cluster before anything is written: a failure leaves nothing behind
        ray_adapter.connect(plan.opts.address, dashboard=plan.opts.dashboard)
    # A first launch the tracking server turns away (credentials) leaves no folder behind.
    fresh = not plan.store.remote and not plan.store.local_dir.exists()
    opened = False
    lock = DriverLock(plan.store.local_dir / "driver.lock")
    lock.acquire()
    logs.to_file(plan.store.local_dir / logs.LOG_FILE)
    tracker = parent = None
    streams = contextlib.ExitStack()  # closed in `finally`, before the lock is released
    echo = streams.enter_context(logs.streams_to_log(echo))
    try:
        plan.store.sync_down()
        tracker, parent = open_tracking(plan)
        opened = True
        marks["tracking"] = time.time()
        ostudy, ostorage, attempt = open_optuna(plan, parent)
        marks["optuna"] = time.time()
        done, todo = reconcile(plan, tracker, ostudy)
        marks["reconcile"] = time.time()
        echo(
            f"[{plan.study.name}] {plan.target} trials, {len(done)} already finished, "
            f"{todo.num_samples} to run"
            + (f" ({todo.closed_stale} interrupted)" if todo.closed_stale else "")
            + f" | folder {plan.store.uri}"
        )
        if todo.num_samples:
            run_on_ray(
                plan, tracker, parent, ostorage, attempt, todo.num_samples, len(done), echo, marks
            )
        conclude_models(plan.study, plan.store, tracker, parent, plan.opts.register, echo)
        outcome = finish(plan, tracker, parent, ostudy, time.monotonic() - start, echo)
        if plan.opts.report:
            from ..results.report import write_report

            outcome = dataclasses.replace(outcome, report=write_report(plan.store.uri))
        return outcome
    except BaseException:
        if tracker is not None and tracker.unreachable:
            # Nothing more is sent to a server that stopped answering; study.json says how it ended.
            from ..tracking import TrackingError

            _mark_interrupted(plan.store)
            raise TrackingError(tracker.unreachable) from None
        if tracker is not None and parent is not None:
            tracker.flush()
            tracker.finish_open_children(parent, "KILLED")
            tracker.finish(
                parent,
                "KILLED",
                "the driver stopped before the study finished; `vaestudy resume` continues it",
            )
            _mark_interrupted(plan.store)
        raise
    finally:
        streams.close()
        if fresh and not opened:
            lock.release()
            shutil.rmtree(plan.store.local_dir, ignore_errors=True)
        else:
            plan.store.sync_up()
            lock.release()


# A launch's set-up in study.json ("marks": epoch seconds as each phase ended): `call` (run_study
# entered), `prepare` (the study, its configs and data checked), `tracking` (MLflow's store and
# parent run), `optuna` (its database), `reconcile` (what an earlier launch finished), `ray`
# (Ray joined or started) and `tune_settings` (Ray Tune about to start the first trial).
SETUP_PHASES = ("call", "prepare", "tracking", "optuna", "reconcile", "ray", "tune_settings")


def _mark_interrupted(store: StudyStore) -> None:
    if (record := store.study()) is not None:
        store.save_study(
            dataclasses.replace(record, status=StudyStatus.INTERRUPTED, launches=_ended(record))
        )


def _ended(record: StudyRecord, **changes: Any) -> tuple[Mapping[str, Any], ...]:
    """The record's launches with the latest one's `changes` made ("ended" = now, by default)."""
    if not record.launches:
        return tuple(record.launches)
    *earlier, last = record.launches
    return (*earlier, {**last, **(changes or {"ended": time.time()})})


def quiet_third_party() -> None:
    """What the driver asks of third-party libraries before it uses them (never at import):
    their log lines and warnings to the study's log file (see `logs`), MLflow's run URLs off
    stdout, Optuna's per-trial INFO lines off."""
    from ..tracking import quiet_stdout

    quiet_stdout()
    search.quiet()
    logs.capture()


def open_tracking(plan: StudyPlan):
    """The study's MLflow experiment and its parent run (the same one again on a resume)."""
    from ..tracking import StudyTracker
    from ..tracking.schema import seed_sqlite_store
    from ..tracking.uris import artifacts_beside, parent_params, provenance_tags

    study, opts, store = plan.study, plan.opts, plan.store
    # The default store keeps artifacts beside the study: in the folder, or in the same
    # object store for a remote study. A named SQLite store keeps them beside its database; a
    # tracking server chooses its own.
    artifacts = (
        artifacts_beside(opts.tracking_uri)
        if opts.tracking_uri
        else (
            store.uri_of("mlartifacts")
            if store.remote
            else (store.local_dir / "mlartifacts").as_uri()
        )
    )
    seed_sqlite_store(plan.tracking_uri)  # a new store from the cached empty schema
    progress = study.metrics[0]  # a valid measure every report logs (words: nats per sentence)
    tracker = StudyTracker(plan.tracking_uri, study.name, artifacts, progress_metric=progress)
    parent = tracker.start_parent(
        plan.record.parent_run_id if plan.record else None,
        name=f"{study.name} [{opts.preset}]",
        params=parent_params(study.name, opts.preset, opts.seed, plan.target, opts.overrides),
        tags=provenance_tags(
            __version__,
            git_commit(),
            study=study.name,
            preset=opts.preset,
            reproduces=study.reproduces,
            storage=store.uri,
        ),
    )
    return tracker, parent


def open_optuna(plan: StudyPlan, parent: str):
    """The Optuna study in its database, and study.json saying this launch is running."""
    opts, store, before = plan.opts, plan.store, plan.record
    optuna_url = (
        opts.optuna_storage
        or (before.optuna_storage if before else None)
        or f"sqlite:///{store.local_dir / 'optuna.db'}"
    )
    attempt = (before.attempts if before else 0) + 1
    launches = (
        *(before.launches if before else ()),
        {"attempt": attempt, "started": time.time(), "ended": None, "concurrency": None},
    )
    store.save_study(
        StudyRecord(
            identity=plan.identity,
            study_ref=plan.study_ref,
            parent_run_id=parent,
            tracking_uri=plan.tracking_uri,
            optuna_storage=optuna_url,
            options={k: v for k, v in asdict(opts).items() if k != "overrides"},
            attempts=attempt,
            status=StudyStatus.RUNNING,
            launches=launches,
        )
    )
    ostorage = search.rdb_storage(optuna_url)
    return search.open_study(ostorage, plan.study.name, plan.study), ostorage, attempt


def reconcile(plan: StudyPlan, tracker, ostudy):
    """The trials already finished (their MLflow runs closed as the store says) and what is left."""
    done = plan.store.finished_trials()
    settle_finished_runs(plan.store, tracker, done)
    return done, search.reconcile(ostudy, plan.study, done, trial_key, plan.points, plan.target)


def tune_settings(plan: StudyPlan, num_samples: int, attempt: int, slots: int):
    """Ray Tune's settings for this launch, derived from the run options."""
    from .ray_adapter import TuneSettings

    opts = plan.opts
    first = plan.configs.of(plan.points[0] if plan.points else {})
    return TuneSettings(
        num_samples=num_samples,
        cpus_per_trial=opts.cpus_per_trial,
        gpus_per_trial=opts.gpus_per_trial,
        # With a searcher, Tune keeps one trial pending unless told how many may run at once,
        # which serialises a study: default to the slots the cluster has now.
        max_concurrent=opts.max_concurrent or slots,
        max_failures=opts.max_failures,
        asha=opts.asha,
        asha_max_t=first.steps,
        asha_grace=max(first.eval_every, 1),  # 0: a report per epoch (words)
        experiment_name=f"attempt-{attempt}",
        storage_path=plan.store.uri_of("ray"),
    )


def run_on_ray(
    plan: StudyPlan,
    tracker,
    parent: str,
    ostorage,
    attempt: int,
    num_samples: int,
    done: int,
    echo: Callable[[str], None],
    marks: dict[str, float],
) -> None:
    """The remaining trials through Ray Tune, Optuna's sampler choosing the points."""
    from . import ray_adapter

    study, opts = plan.study, plan.opts
    _prepare_lstm_cell(study.name, echo)
    info = ray_adapter.connect(opts.address, dashboard=opts.dashboard)
    marks["ray"] = time.time()
    echo(
        f"[{study.name}] Ray: {info['nodes']} node(s), {info['cpus']:g} CPUs, {info['gpus']:g} GPUs"
        + (f", dashboard http://{info['dashboard']}" if info.get("dashboard") else "")
        + (
            " (its token: `ray get-auth-token`)"
            if info.get("dashboard") and not opts.address
            else ""
        )
        + f" | MLflow: {plan.tracking_uri} (parent run {parent})"
    )
    slots = ray_adapter.trial_slots(opts.cpus_per_trial, opts.gpus_per_trial)
    settings = tune_settings(plan, num_samples, attempt, slots)
    # trials at once: the cap, or fewer where the cluster has fewer slots
    record = plan.store.study()
    concurrency = min(settings.max_concurrent, slots) if slots else settings.max_concurrent
    marks["tune_settings"] = time.time()
    plan.store.save_study(
        dataclasses.replace(record, launches=_ended(record, concurrency=concurrency, marks=marks))
    )
    grid = plan.grid
    sampler = search.make_sampler(study, grid, opts.seed)
    metric, mode = (
        (list(study.metrics), list(study.modes))
        if study.multi_objective
        else (study.metric, study.mode)
    )
    searcher = ray_adapter.optuna_searcher(
        search.distributions(study, grid),
        metric,
        mode,
        sampler,
        ostorage,
        study.name,
        on_suggest=plan.configs.publish,
    )
    events = trial_events(study, plan.configs, plan.store, tracker, parent, plan.corpora)
    ray_adapter.run_tuner(
        plan.ctx,
        searcher,
        settings,
        events,
        lambda s: echo(f"[{study.name}] {s}"),
        total=plan.target,
        done_before=done,
        steps_of=lambda params: trial_steps(plan.configs, params),
    )


def _prepare_lstm_cell(name: str, echo: Callable[[str], None]) -> None:
    """Build (first time on this machine) or load the compiled LayerNorm LSTM here, before
    any trial starts, so the trials' workers find it in the cache instead of waiting on one
    build; say so when it was built, or when trials will run the Python loop."""
    from textvae_core import lstm_ext

    cell = lstm_ext.status()
    if not cell["compiled"]:
        echo(f"[{name}] LayerNorm LSTM: Python loop ({cell['why_not']})")
    elif cell["load_seconds"] > 2:
        echo(
            f"[{name}] LayerNorm LSTM: compiled cell built in {cell['load_seconds']:.0f} s (cached)"
        )


def finish(
    plan: StudyPlan, tracker, parent: str, ostudy, wall_s: float, echo: Callable[[str], None]
) -> StudyOutcome:
    """Close what is still open, write trials.parquet, and say how the study ended."""
    study, store, target = plan.study, plan.store, plan.target
    search.close_running(ostudy, study, store.finished_trials(), trial_key)
    statuses = _finish(store, tracker, parent)
    table = trials_table(store_trials(store), study.name)
    store.write_table("trials.parquet", table)
    complete = sum(n for s, n in statuses.items() if Status(s).final) >= target
    tracker.finish(
        parent,
        "FINISHED" if complete else "KILLED",
        None if complete else f"{target - sum(statuses.values())} trial(s) did not finish",
    )
    record = store.study()
    store.save_study(
        dataclasses.replace(
            record,
            statuses=statuses,
            launches=_ended(record),
            status=StudyStatus.COMPLETED if complete else StudyStatus.INCOMPLETE,
        )
    )
    return StudyOutcome(
        store.uri, parent, plan.tracking_uri, statuses, store.uri_of("trials.parquet"), wall_s
    )


def _finish(store: StudyStore, tracker, parent: str) -> dict[str, int]:
    """Close any run a crashed worker left open and count trial statuses."""
    tracker.flush()
    tracker.finish_open_children(parent, "KILLED")
    statuses: dict[str, int] = {}
    for record in store.trials().values():
        statuses[record.status.value] = statuses.get(record.status.value, 0) + 1
    return statuses
