"""`run_study`: validate everything, then run a study's remaining trials on Ray.

Order matters for "bad input leaves nothing behind": the study, preset, overrides, every
trial config, the data, the tracking URI and the cluster address are all checked before
the first folder, database or MLflow run is created.

Running the same study into the same folder again (or `vaestudy resume PATH`) continues
it: finished trials are kept, interrupted ones continue from their checkpoints under the
same MLflow run, and no run is duplicated.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

from textvae_core import __version__, load_corpus

from . import search
from .. import DEFAULT_ROOT
from ..errors import StudyError
from ..records import trials_table
from ..spec import Study, load_study, trial_key, trial_name, validate_study
from ..store import FINAL_STATUSES, StudyStore, is_remote
from .trial import FINAL, OVERHEAD, SAMPLES, STEP, TRIAL_WALL, TrialContext

METRIC_PREFIXES = ("train/", "valid/")


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
    collapse_threshold: float = 0.005  # bits/char
    collapse_patience: int = 3  # reports
    dashboard: bool = True


@dataclass
class StudyOutcome:
    folder: str
    parent_run_id: str
    tracking_uri: str
    statuses: dict[str, int]
    trials_parquet: str
    wall_time_s: float


def _git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
                             cwd=Path(__file__).resolve().parent)
        return out.stdout.strip() or None if out.returncode == 0 else None
    except (OSError, subprocess.TimeoutExpired):
        return None


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


def prepare(study_ref: str, opts: RunOptions):
    """Every check that needs no side effect; returns what `run_study` needs."""
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
    if opts.asha and study.multi_objective:
        raise StudyError(f"--asha needs one metric; study {study.name} optimises {', '.join(study.metric)}")
    points, target = plan_trials(study, opts)
    storage = opts.storage or os.environ.get("VAESTUDY_STORAGE") or str(DEFAULT_ROOT / study.name)
    ctx = TrialContext(study, opts.preset, storage if is_remote(storage) else str(Path(storage).resolve()),
                       dict(opts.overrides), opts.seed, threads=max(1, int(opts.cpus_per_trial)))
    configs = [ctx.config(p) for p in points] if points is not None else [ctx.config({})]
    corpora = {c.corpus: load_corpus(c.corpus) for c in configs}  # fetches PTB once, or fails here
    store = StudyStore(ctx.storage)
    tracking_uri = opts.tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or default_tracking_uri(store.local_dir)
    check_tracking_uri(tracking_uri)
    # RAY_ADDRESS is set for a driver started by `ray job submit`: join that cluster.
    address = opts.address or os.environ.get("VAESTUDY_ADDRESS") or os.environ.get("RAY_ADDRESS") or None
    if address:
        from .ray_adapter import check_address

        check_address(address)
    identity = {"study": study.name, "preset": opts.preset, "seed": opts.seed, "trials": target,
                "overrides": {k: list(v) if isinstance(v, tuple) else v for k, v in opts.overrides.items()}}
    existing = store.read_json("study.json")
    if existing and existing.get("identity") != identity:
        raise StudyError(f"{store.uri} holds a different run ({json.dumps(existing.get('identity'))}); "
                         "use another --storage folder, or the same options to resume it")
    return study, points, target, ctx, corpora, store, tracking_uri, address, identity, existing or {}


def run_study(study_ref: str, opts: RunOptions, echo: Callable[[str], None] = print) -> StudyOutcome:
    from . import ray_adapter
    from ..tracking import StudyTracker

    start = time.monotonic()
    study, points, target, ctx, corpora, store, tracking_uri, address, identity, state = prepare(study_ref, opts)
    if address:  # join a named cluster before anything is written: a failure leaves nothing behind
        ray_adapter.connect(address, dashboard=opts.dashboard)
    lock = DriverLock(store.local_dir / "driver.lock")
    lock.acquire()
    tracker = parent = None
    try:
        store.sync_down()
        # The default store keeps artifacts beside the study: in the folder, or in the same
        # object store for a remote study. A tracking server chooses its own.
        artifacts = None if (opts.tracking_uri or os.environ.get("MLFLOW_TRACKING_URI")) else \
            (store.uri_of("mlartifacts") if store.remote else (store.local_dir / "mlartifacts").as_uri())
        tracker = StudyTracker(tracking_uri, experiment=study.name, artifact_location=artifacts)
        parent = tracker.start_parent(
            state.get("parent_run_id"), name=f"{study.name} [{opts.preset}]",
            params={"study": study.name, "preset": opts.preset, "seed": opts.seed, "trials": target,
                    **{f"set.{k}": v for k, v in opts.overrides.items()}},
            tags={"vaestudy.study": study.name, "vaestudy.preset": opts.preset, "vaestudy.reproduces": study.reproduces,
                  "vaestudy.version": __version__, "vaestudy.storage": store.uri,
                  **({"vaestudy.git_commit": c} if (c := _git_commit()) else {})})
        optuna_url = opts.optuna_storage or state.get("optuna_storage") or f"sqlite:///{store.local_dir / 'optuna.db'}"
        attempt = state.get("attempts", 0) + 1
        store.write_json("study.json", {**state, "identity": identity, "parent_run_id": parent,
                                        "tracking_uri": tracking_uri, "optuna_storage": optuna_url,
                                        "attempts": attempt, "status": "running", "study_ref": study_ref,
                                        "options": {k: v for k, v in asdict(opts).items() if k != "overrides"}})

        ostorage = search.rdb_storage(optuna_url)
        grid = study.grid_for(opts.preset) if points is not None else None
        if grid is not None and len({p.get("seed") for p in points}) > 1:
            grid = {**grid, "seed": tuple(sorted({p["seed"] for p in points}))}
        sampler = search.make_sampler(study, grid, opts.seed)
        ostudy = search.open_study(ostorage, study.name, study)
        done = store.finished_trials()
        _settle_finished_runs(store, tracker, done)
        plan = search.reconcile(ostudy, study, done, trial_key, points, target)
        echo(f"[{study.name}] {target} trials, {len(done)} already finished, {plan.num_samples} to run"
             + (f" ({plan.closed_stale} interrupted)" if plan.closed_stale else "") + f" | folder {store.uri}")
        if plan.num_samples:
            info = ray_adapter.connect(address, dashboard=opts.dashboard)
            echo(f"[{study.name}] Ray: {info['nodes']} node(s), {info['cpus']:g} CPUs, {info['gpus']:g} GPUs"
                 + (f", dashboard http://{info['dashboard']}" if info.get("dashboard") else "")
                 + f" | MLflow: {tracking_uri} (parent run {parent})")
            events = _events(study, ctx, store, tracker, parent, corpora)
            first = ctx.config(points[0] if points else {})
            settings = ray_adapter.TuneSettings(
                num_samples=plan.num_samples, cpus_per_trial=opts.cpus_per_trial, gpus_per_trial=opts.gpus_per_trial,
                # With a searcher, Tune keeps one trial pending unless told how many may run at
                # once, which serialises a study: default to the slots the cluster has now.
                max_concurrent=opts.max_concurrent or ray_adapter.trial_slots(opts.cpus_per_trial, opts.gpus_per_trial),
                max_failures=opts.max_failures, asha=opts.asha,
                asha_max_t=first.steps, asha_grace=first.eval_every,
                collapse_threshold=opts.collapse_threshold, collapse_patience=opts.collapse_patience,
                experiment_name=f"attempt-{attempt}", storage_path=store.uri_of("ray"))
            searcher = ray_adapter.optuna_searcher(search.distributions(study, grid), list(study.metrics)
                                                   if study.multi_objective else study.metric,
                                                   study.mode if isinstance(study.mode, str) else list(study.mode),
                                                   sampler, ostorage, study.name)
            ray_adapter.run_tuner(ctx, searcher, settings, events, lambda s: echo(f"[{study.name}] {s}"),
                                  total=target, done_before=len(done))
        search.close_running(ostudy, study, store.finished_trials(), trial_key)
        statuses = _finish(store, tracker, parent)
        table = trials_table(store, study.name)
        store.write_table("trials.parquet", table)
        complete = sum(statuses.get(s, 0) for s in FINAL_STATUSES) >= target
        tracker.finish(parent, "FINISHED" if complete else "KILLED",
                       None if complete else f"{target - sum(statuses.values())} trial(s) did not finish")
        store.write_json("study.json", {**store.read_json("study.json"), "status": "completed" if complete else "incomplete",
                                        "statuses": statuses})
        echo(f"[{study.name}] done: " + ", ".join(f"{v} {k}" for k, v in sorted(statuses.items()))
             + f" | {store.uri_of('trials.parquet')} ({table.num_rows} rows)")
        return StudyOutcome(store.uri, parent, tracking_uri, statuses, store.uri_of("trials.parquet"),
                            time.monotonic() - start)
    except BaseException:
        if tracker is not None and parent is not None:
            tracker.flush()
            tracker.finish_open_children(parent, "KILLED")
            tracker.finish(parent, "KILLED", "the driver stopped before the study finished; `vaestudy resume` continues it")
            if store.exists("study.json"):
                store.write_json("study.json", {**store.read_json("study.json"), "status": "interrupted"})
        raise
    finally:
        store.sync_up()
        lock.release()


def _finish(store: StudyStore, tracker, parent: str) -> dict[str, int]:
    """Close any run a crashed worker left open and count trial statuses."""
    tracker.flush()
    tracker.finish_open_children(parent, "KILLED")
    statuses: dict[str, int] = {}
    for key in store.trial_keys():
        s = store.trial(key).get("status", "unknown")
        statuses[s] = statuses.get(s, 0) + 1
    return statuses


def _events(study: Study, ctx: TrialContext, store: StudyStore, tracker, parent: str, corpora):
    """Driver-side handling of trial events: MLflow runs and the trial store."""
    from .ray_adapter import TrialEvents

    runs: dict[str, str] = {}
    commit = _git_commit()

    def run_of(params: dict) -> tuple[str, str]:
        key = trial_key(params)
        if key not in runs:
            config = ctx.config(params)
            tags = {"vaestudy.study": study.name, "vaestudy.preset": ctx.preset, "vaestudy.model": config.model,
                    "vaestudy.seed": config.seed, "vaestudy.corpus": config.corpus,
                    "vaestudy.corpus_sha256": corpora[config.corpus].sha256 if config.corpus in corpora else "",
                    "vaestudy.version": __version__, **({"vaestudy.git_commit": commit} if commit else {})}
            runs[key] = tracker.child_run(parent, key, trial_name(params), {**config.to_dict(), **{
                f"sweep.{k}": v for k, v in params.items()}}, tags)
            store.update_trial(key, params=params, config=config.to_dict(), status="running",
                               mlflow_run_id=runs[key], started=time.time())
            _backfill(store, tracker, key, runs[key])
        return key, runs[key]

    def on_start(params: dict) -> None:
        run_of(params)
        store.sync_up()  # a remote study's databases stay current enough to resume elsewhere

    def on_result(params: dict, result: dict) -> None:
        key, run_id = run_of(params)
        if result.get(STEP, -1) >= 0:
            metrics = {k: v for k, v in result.items() if k.startswith(METRIC_PREFIXES) or k == "lr"}
            tracker.log_metrics(run_id, int(result[STEP]), metrics)
        if result.get(FINAL):
            if result.get(SAMPLES):
                tracker.log_text(run_id, result[SAMPLES], "samples.txt")
            if result.get("config_json"):
                tracker.log_text(run_id, result["config_json"], "config.json")
            final = {k: v for k, v in result.items() if k.startswith(METRIC_PREFIXES)}
            store.update_trial(key, final=final, last_step=result.get(STEP), report_overhead_s=result.get(OVERHEAD),
                               trial_wall_s=result.get(TRIAL_WALL))

    def on_end(params: dict, status: str, reason: str | None) -> None:
        key, run_id = run_of(params)
        tracker.set_tags(run_id, {"vaestudy.status": status})
        tracker.finish(run_id, "FAILED" if status == "failed" else "FINISHED", reason)
        store.update_trial(key, status=status, reason=reason, ended=time.time())
        store.sync_up()

    return TrialEvents(on_start, on_result, on_end)


def _settle_finished_runs(store: StudyStore, tracker, done: dict[str, dict]) -> None:
    """A driver killed between recording a trial as finished and closing (or syncing) its
    MLflow run leaves the run open: close it as the trial store says, with every report."""
    for key, state in done.items():
        run_id = state.get("mlflow_run_id")
        run = tracker.get_run(run_id) if run_id else None
        if run is None or run.info.status in ("FINISHED", "FAILED"):
            continue
        _backfill(store, tracker, key, run_id)
        tracker.set_tags(run_id, {"vaestudy.status": state["status"]})
        tracker.finish(run_id, "FAILED" if state["status"] == "failed" else "FINISHED", state.get("reason"))


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


def resume_options(folder: str) -> tuple[str, RunOptions]:
    """The study reference and options saved in a study folder, for `vaestudy resume`."""
    store = StudyStore(folder)
    state = store.read_json("study.json")
    if not state:
        raise StudyError(f"{folder} is not a study folder (no study.json); `vaestudy run STUDY` starts one")
    saved = dict(state.get("options", {}))
    identity = state["identity"]
    saved.update(preset=identity["preset"], seed=identity["seed"], storage=store.uri,
                 overrides=identity["overrides"])
    fields = set(RunOptions.__dataclass_fields__)
    opts = RunOptions(**{k: v for k, v in saved.items() if k in fields})
    return state.get("study_ref", identity["study"]), opts
