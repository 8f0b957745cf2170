"""`run_study`: validate everything, then run a study's remaining trials on Ray.

Order matters for "bad input leaves nothing behind": the study, preset, overrides, every
trial config, the data, the tracking URI and the cluster address are all checked before
the first folder, database or MLflow run is created.

Running the same study into the same folder again (or `vaestudy resume PATH`) continues
it: finished trials are kept, interrupted ones continue from their checkpoints under the
same MLflow run, and no run is duplicated.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import socket
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

from textvae_core import __version__, load_corpus

from . import logs, search
from .. import DEFAULT_ROOT
from ..errors import StudyError
from ..trials_table import trials_table
from ..spec import Study, load_study, trial_key, validate_study
from ..store import Status, StudyRecord, StudyStatus, StudyStore, is_remote
from .events import git_commit, settle_finished_runs, trial_events
from .trial import CollapseRule, TrialContext

@dataclass(frozen=True)
class RunOptions:
    preset: str = "smoke"
    overrides: Mapping[str, Any] = field(default_factory=dict)  # parsed --set values
    num_samples: int | None = None  # grid: repeats with seeds seed..; search: trials
    seed: int = 0
    storage: str | None = None  # study folder: path or s3://... [default ./vaestudy-runs/<study>]
    tracking_uri: str | None = None  # [default $MLFLOW_TRACKING_URI, else SQLite in the folder]
    optuna_storage: str | None = None  # SQLAlchemy URL [default SQLite in the folder]
    address: str | None = None  # Ray cluster; None starts a local Ray on 127.0.0.1
    cpus_per_trial: float = 1.0
    gpus_per_trial: float = 0.0
    max_concurrent: int | None = None
    max_failures: int = 2
    asha: bool = False
    collapse_threshold: float = 0.005  # valid KL, bits/char (see trial.CollapseRule)
    collapse_mi: float = 0.05  # nats
    collapse_z_gain: float = 0.02  # bits/char
    collapse_patience: int = 3  # reports
    dashboard: bool = True
    report: bool = False  # write the report (claims, figure, tables) at the end, still holding the folder

    def resolved(self) -> "RunOptions":
        """These options with the environment read, once, for what was not given:
        VAESTUDY_STORAGE, MLFLOW_TRACKING_URI, and VAESTUDY_ADDRESS, else RAY_ADDRESS (set for
        a driver that `ray job submit` started, which then joins that cluster)."""
        env = os.environ
        return dataclasses.replace(
            self, storage=self.storage or env.get("VAESTUDY_STORAGE") or None,
            tracking_uri=self.tracking_uri or env.get("MLFLOW_TRACKING_URI") or None,
            address=self.address or env.get("VAESTUDY_ADDRESS") or env.get("RAY_ADDRESS") or None)


@dataclass
class StudyOutcome:
    folder: str
    parent_run_id: str
    tracking_uri: str
    statuses: dict[str, int]
    trials_parquet: str
    wall_time_s: float
    report: Mapping[str, str] | None = None  # file name -> URI of the report written at the end


class DriverLock:
    """One driver per study folder: a second `vaestudy run` on a live study is refused; a
    lock left by a killed driver (its pid is gone) is taken over."""

    def __init__(self, path: Path):
        self.path = path

    def acquire(self) -> None:
        if self.path.exists():
            try:
                held = json.loads(self.path.read_text())
            except (OSError, ValueError):
                held = {}
            if held.get("host") == socket.gethostname() and _alive(held.get("pid", -1)) and held.get("pid") != os.getpid():
                raise StudyError(f"study folder {self.path.parent} is in use by a running driver (pid {held['pid']}); "
                                 "wait for it to finish or stop it first")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_text(json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "since": time.time()}))

    def release(self) -> None:
        try:
            if json.loads(self.path.read_text()).get("pid") == os.getpid():
                self.path.unlink()
        except (OSError, ValueError):
            pass


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except (OSError, TypeError):
        return False
    try:  # a zombie (killed, not yet reaped) is not a live driver
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return True


def plan_trials(study: Study, opts: RunOptions) -> tuple[list[dict] | None, int]:
    """Grid points to run (None for a search study) and the number of trials wanted."""
    preset = study.preset(opts.preset)
    n = opts.num_samples or preset.num_samples
    if n < 1:
        raise StudyError(f"--num-samples {n} is not allowed: expected an integer >= 1")
    if not study.is_grid:
        return None, n
    points = study.points(opts.preset, tuple(range(opts.seed, opts.seed + n)))
    return points, len(points)


@dataclass(frozen=True)
class StudyPlan:
    """Everything `prepare` checked, with no side effect yet: what the steps of `run_study` run."""

    study: Study
    study_ref: str
    opts: RunOptions  # resolved: the environment already read
    points: list[dict] | None  # grid points with their seeds (None for a search study)
    target: int  # trials the study wants in all
    ctx: TrialContext
    corpora: Mapping[str, Any]
    store: StudyStore
    tracking_uri: str
    identity: Mapping[str, Any]
    record: StudyRecord | None  # study.json as found (None for a new study)

    @property
    def grid(self) -> dict[str, tuple] | None:
        """The grid the sampler walks: the preset's, with a seed axis when there are several seeds."""
        if self.points is None:
            return None
        grid = self.study.grid_for(self.opts.preset)
        seeds = tuple(sorted({p.get("seed") for p in self.points if "seed" in p}))
        return {**grid, "seed": seeds} if len(seeds) > 1 else grid


def prepare(study_ref: str, opts: RunOptions) -> StudyPlan:
    """Every check that needs no side effect (`opts` resolved: see RunOptions.resolved)."""
    from ..tracking import check_tracking_uri, default_tracking_uri

    study = load_study(study_ref)
    validate_study(study)
    study.preset(opts.preset)
    swept = set(study.grid_for(opts.preset)) if study.is_grid else set(study.space)
    clash = sorted(swept & set(opts.overrides))
    if clash:
        raise StudyError(f"--set {clash[0]}: {clash[0]} is swept by study {study.name} and cannot be fixed; "
                         f"swept keys are {', '.join(sorted(swept))}")
    if opts.cpus_per_trial <= 0 or opts.gpus_per_trial < 0:
        raise StudyError("--cpus-per-trial must be > 0 and --gpus-per-trial >= 0")
    if opts.max_concurrent is not None and opts.max_concurrent < 1:
        raise StudyError("--max-concurrent must be >= 1")
    if opts.collapse_patience < 1:
        raise StudyError(f"--collapse-patience must be >= 1 (reports in a row), got {opts.collapse_patience}")
    if opts.asha and study.multi_objective:
        raise StudyError(f"--asha needs one metric; study {study.name} optimises {', '.join(study.metrics)}")
    points, target = plan_trials(study, opts)
    storage = opts.storage or str(DEFAULT_ROOT / study.name)
    ctx = TrialContext(study, opts.preset, storage if is_remote(storage) else str(Path(storage).resolve()),
                       dict(opts.overrides), opts.seed, threads=max(1, int(opts.cpus_per_trial)),
                       collapse=CollapseRule(opts.collapse_threshold, opts.collapse_mi, opts.collapse_z_gain,
                                             opts.collapse_patience))
    configs = [ctx.config(p) for p in points] if points is not None else [ctx.config({})]
    corpora = {c.corpus: load_corpus(c.corpus) for c in configs}  # fetches PTB once, or fails here
    store = StudyStore(ctx.storage)
    tracking_uri = opts.tracking_uri or default_tracking_uri(store.local_dir)
    check_tracking_uri(tracking_uri)
    if opts.address:
        from .ray_adapter import check_address

        check_address(opts.address)
    identity = {"study": study.name, "preset": opts.preset, "seed": opts.seed, "trials": target,
                "overrides": {k: list(v) if isinstance(v, tuple) else v for k, v in opts.overrides.items()}}
    existing = store.study()
    if existing is not None and existing.identity != identity:
        raise StudyError(f"{store.uri} holds a different run ({json.dumps(existing.identity)}); "
                         "use another --storage folder, or the same options to resume it")
    return StudyPlan(study, study_ref, opts, points, target, ctx, corpora, store, tracking_uri, identity, existing)


def run_study(study_ref: str, opts: RunOptions, echo: Callable[[str], None] = print) -> StudyOutcome:
    """Run a study's remaining trials: prepare, then open tracking, open Optuna, reconcile,
    run on Ray and finish. Bad input fails in `prepare`, before anything is written."""
    from . import ray_adapter

    start = time.monotonic()
    plan = prepare(study_ref, opts.resolved())
    quiet_third_party()
    ray_adapter.set_environment(plan.opts.address)
    if plan.opts.address:  # join a named cluster before anything is written: a failure leaves nothing behind
        ray_adapter.connect(plan.opts.address, dashboard=plan.opts.dashboard)
    lock = DriverLock(plan.store.local_dir / "driver.lock")
    lock.acquire()
    logs.to_file(plan.store.local_dir / logs.LOG_FILE)
    tracker = parent = None
    streams = contextlib.ExitStack()  # closed in `finally`, before the lock is released
    echo = streams.enter_context(logs.streams_to_log(echo))
    try:
        plan.store.sync_down()
        tracker, parent = open_tracking(plan)
        ostudy, ostorage, attempt = open_optuna(plan, parent)
        done, todo = reconcile(plan, tracker, ostudy)
        echo(f"[{plan.study.name}] {plan.target} trials, {len(done)} already finished, {todo.num_samples} to run"
             + (f" ({todo.closed_stale} interrupted)" if todo.closed_stale else "") + f" | folder {plan.store.uri}")
        if todo.num_samples:
            run_on_ray(plan, tracker, parent, ostorage, attempt, todo.num_samples, len(done), echo)
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
            tracker.finish(parent, "KILLED", "the driver stopped before the study finished; `vaestudy resume` continues it")
            _mark_interrupted(plan.store)
        raise
    finally:
        streams.close()
        plan.store.sync_up()
        lock.release()


def _mark_interrupted(store: StudyStore) -> None:
    if (record := store.study()) is not None:
        store.save_study(dataclasses.replace(record, status=StudyStatus.INTERRUPTED, launches=_ended(record)))


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

    study, opts, store = plan.study, plan.opts, plan.store
    # The default store keeps artifacts beside the study: in the folder, or in the same
    # object store for a remote study. A tracking server chooses its own.
    artifacts = None if opts.tracking_uri else \
        (store.uri_of("mlartifacts") if store.remote else (store.local_dir / "mlartifacts").as_uri())
    tracker = StudyTracker(plan.tracking_uri, experiment=study.name, artifact_location=artifacts)
    parent = tracker.start_parent(
        plan.record.parent_run_id if plan.record else None, name=f"{study.name} [{opts.preset}]",
        params={"study": study.name, "preset": opts.preset, "seed": opts.seed, "trials": plan.target,
                **{f"set.{k}": v for k, v in opts.overrides.items()}},
        tags={"vaestudy.study": study.name, "vaestudy.preset": opts.preset, "vaestudy.reproduces": study.reproduces,
              "vaestudy.version": __version__, "vaestudy.storage": store.uri,
              **({"vaestudy.git_commit": c} if (c := git_commit()) else {})})
    return tracker, parent


def open_optuna(plan: StudyPlan, parent: str):
    """The Optuna study in its database, and study.json saying this launch is running."""
    opts, store, before = plan.opts, plan.store, plan.record
    optuna_url = opts.optuna_storage or (before.optuna_storage if before else None) \
        or f"sqlite:///{store.local_dir / 'optuna.db'}"
    attempt = (before.attempts if before else 0) + 1
    launches = (*(before.launches if before else ()), {"attempt": attempt, "started": time.time(), "ended": None,
                                                       "concurrency": None})
    store.save_study(StudyRecord(
        identity=plan.identity, study_ref=plan.study_ref, parent_run_id=parent, tracking_uri=plan.tracking_uri,
        optuna_storage=optuna_url, options={k: v for k, v in asdict(opts).items() if k != "overrides"},
        attempts=attempt, status=StudyStatus.RUNNING, launches=launches))
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
    first = plan.ctx.config(plan.points[0] if plan.points else {})
    return TuneSettings(
        num_samples=num_samples, cpus_per_trial=opts.cpus_per_trial, gpus_per_trial=opts.gpus_per_trial,
        # With a searcher, Tune keeps one trial pending unless told how many may run at once,
        # which serialises a study: default to the slots the cluster has now.
        max_concurrent=opts.max_concurrent or slots, max_failures=opts.max_failures, asha=opts.asha,
        asha_max_t=first.steps, asha_grace=first.eval_every,
        experiment_name=f"attempt-{attempt}", storage_path=plan.store.uri_of("ray"))


def run_on_ray(plan: StudyPlan, tracker, parent: str, ostorage, attempt: int, num_samples: int, done: int,
               echo: Callable[[str], None]) -> None:
    """The remaining trials through Ray Tune, Optuna's sampler choosing the points."""
    from . import ray_adapter

    study, opts = plan.study, plan.opts
    info = ray_adapter.connect(opts.address, dashboard=opts.dashboard)
    echo(f"[{study.name}] Ray: {info['nodes']} node(s), {info['cpus']:g} CPUs, {info['gpus']:g} GPUs"
         + (f", dashboard http://{info['dashboard']}" if info.get("dashboard") else "")
         + (" (its token: `ray get-auth-token`)" if info.get("dashboard") and not opts.address else "")
         + f" | MLflow: {plan.tracking_uri} (parent run {parent})")
    slots = ray_adapter.trial_slots(opts.cpus_per_trial, opts.gpus_per_trial)
    settings = tune_settings(plan, num_samples, attempt, slots)
    record = plan.store.study()  # trials at once: the cap, or fewer where the cluster has fewer slots
    concurrency = min(settings.max_concurrent, slots) if slots else settings.max_concurrent
    plan.store.save_study(dataclasses.replace(record, launches=_ended(record, concurrency=concurrency)))
    grid = plan.grid
    sampler = search.make_sampler(study, grid, opts.seed)
    metric, mode = (list(study.metrics), list(study.modes)) if study.multi_objective else (study.metric, study.mode)
    searcher = ray_adapter.optuna_searcher(search.distributions(study, grid), metric, mode, sampler, ostorage,
                                           study.name)
    events = trial_events(study, plan.ctx, plan.store, tracker, parent, plan.corpora)
    ray_adapter.run_tuner(plan.ctx, searcher, settings, events, lambda s: echo(f"[{study.name}] {s}"),
                          total=plan.target, done_before=done)


def finish(plan: StudyPlan, tracker, parent: str, ostudy, wall_s: float, echo: Callable[[str], None]) -> StudyOutcome:
    """Close what is still open, write trials.parquet, and say how the study ended."""
    study, store, target = plan.study, plan.store, plan.target
    search.close_running(ostudy, study, store.finished_trials(), trial_key)
    statuses = _finish(store, tracker, parent)
    table = trials_table(store, study.name)
    store.write_table("trials.parquet", table)
    complete = sum(n for s, n in statuses.items() if Status(s).final) >= target
    tracker.finish(parent, "FINISHED" if complete else "KILLED",
                   None if complete else f"{target - sum(statuses.values())} trial(s) did not finish")
    record = store.study()
    store.save_study(dataclasses.replace(record, statuses=statuses, launches=_ended(record),
                                         status=StudyStatus.COMPLETED if complete else StudyStatus.INCOMPLETE))
    return StudyOutcome(store.uri, parent, plan.tracking_uri, statuses, store.uri_of("trials.parquet"), wall_s)


def _finish(store: StudyStore, tracker, parent: str) -> dict[str, int]:
    """Close any run a crashed worker left open and count trial statuses."""
    tracker.flush()
    tracker.finish_open_children(parent, "KILLED")
    statuses: dict[str, int] = {}
    for record in store.trials().values():
        statuses[record.status.value] = statuses.get(record.status.value, 0) + 1
    return statuses


def resume_options(folder: str) -> tuple[str, RunOptions]:
    """The study reference and options saved in a study folder, for `vaestudy resume`."""
    store = StudyStore(folder)
    record = store.study()
    if record is None:
        raise StudyError(f"{folder} is not a study folder (no study.json); `vaestudy run STUDY` starts one")
    identity = record.identity
    saved = {**record.options, "preset": identity["preset"], "seed": identity["seed"], "storage": store.uri,
             "overrides": identity["overrides"]}
    fields = set(RunOptions.__dataclass_fields__)
    opts = RunOptions(**{k: v for k, v in saved.items() if k in fields})
    return record.study_ref, opts
