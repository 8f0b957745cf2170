"""Every Ray import of the project lives here, so a Ray API change touches one file.

- `connect(address)`: join a cluster, or start a local Ray whose every port listens on
  127.0.0.1 only.
- `run_tuner(...)`: a Tune run of the remaining trials of a study, searched by Optuna,
  with checkpoints through Ray's API, retries from them, optional ASHA, and driver-side
  callbacks for MLflow tracking and progress. (A collapsed trial stops itself: see
  `trial.CollapseRule`.)

Ray is imported lazily: the environment that keeps a local Ray on loopback must be set
before `import ray`, and only for a local Ray (a cluster's driver must be reachable).
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from ..errors import StudyError
from . import logs
from .address import check_address, is_loopback
from .progress import ProgressLine, TrialState
from .trial import TrialContext, TrialReport, outcome, run_trial
from .tune_result import STEP, from_result, to_result

if TYPE_CHECKING:  # the driver's side only: a trial's worker imports this module, never MLflow
    from .events import TrialEvents

LOCAL_ENV = {
    # With this, Ray takes the loopback address as the node IP, and its GCS, raylet,
    # workers, object manager and agents bind 127.0.0.1 instead of every interface.
    "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
    "RAY_USAGE_STATS_ENABLED": "0",
}
# A local Ray's system config.
# - Ray reaps a worker idle for over 1 s while the node has more idle workers than free CPUs,
#   and Tune reserves every CPU (its placement groups) before it creates the trial actors: on a
#   loaded machine the workers Ray prestarted were reaped in that gap (seen in CI) and each trial
#   of the first wave waited for a new interpreter and `import ray`. Here an idle worker lives
#   60 s, which covers the driver's set-up between `ray.init` and the first trial.
# - The workers Ray starts import what a trial actor needs (Tune's function trainable; this
#   module, and with it torch and the model core) as they start, while the driver opens
#   tracking, Optuna and Ray Tune, instead of when the first trial's actor is created: on 2
#   quiet cores that actor's creation took 2.85 s without and 0.05 s with, and the set-up to the
#   first trial's start 5.6-5.7 s without and 4.6-4.9 s with. Ray's own switch, not a runtime
#   env: a runtime env's setup hook gave the trial actors new workers instead of these.
LOCAL_SYSTEM_CONFIG = {
    "idle_worker_killing_time_threshold_ms": 60_000,
    "preload_python_modules": ["ray.tune.trainable.function_trainable", __name__],
}
QUIET_ENV = {
    "RAY_AIR_NEW_OUTPUT": "0",
    "TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S": "0",
}


class _DropMessages(logging.Filter):
    """Drops known-harmless log lines that would bury the study's own progress lines."""

    def __init__(self, *fragments: str):
        super().__init__()
        self.fragments = fragments

    def filter(self, record: logging.LogRecord) -> bool:
        msg = record.getMessage()
        return not any(f in msg for f in self.fragments)


def _quiet_logs() -> None:
    # GridSampler calls study.stop() when the grid is used up, which only works inside
    # study.optimize; Ray logs the RuntimeError although the trial state is stored.
    logging.getLogger("ray.tune.search.optuna.optuna_search").addFilter(_DropMessages("Study.stop"))
    # Ray's INFO lines (one per checkpoint, from Tune's storage layer) are left out: the level
    # `ray.init(logging_level="WARNING")` gives the driver's "ray" logger, here in the trials too
    logging.getLogger("ray").setLevel(logging.WARNING)


# --- connecting ---------------------------------------------------------------------------------


def trial_slots(cpus_per_trial: float, gpus_per_trial: float) -> int:
    """How many trials the connected cluster can run at once (at least 1)."""
    import ray

    res = ray.cluster_resources()
    slots = int(res.get("CPU", 0) // cpus_per_trial) if cpus_per_trial else 10**6
    if gpus_per_trial:
        slots = min(slots, int(res.get("GPU", 0) // gpus_per_trial))
    return max(slots, 1)


def set_environment(address: str | None) -> None:
    """The environment Ray reads when it starts, set by the driver before any Ray call: a
    cluster on loopback (tests, one machine) needs RAY's loopback setting in the driver too,
    or ray.init rewrites 127.0.0.1 to the host's address and never reaches it."""
    if address is None or is_loopback(address):
        for k, v in LOCAL_ENV.items():
            os.environ.setdefault(k, v)
    for k, v in QUIET_ENV.items():
        os.environ.setdefault(k, v)


_started_local = False  # this process started the Ray it is connected to (`connect(None)`)


def connect(address: str | None, num_cpus: int | None = None, dashboard: bool = True) -> dict:
    """ray.init for a study; returns facts about the cluster (nodes, CPUs, GPUs, dashboard)."""
    global _started_local
    set_environment(address)
    import ray

    _quiet_logs()
    logs.capture()  # `import ray` set up Ray's terminal logger: its lines go to the study's log
    if ray.is_initialized():
        return cluster_info()
    # log_to_driver=False: the workers' and raylets' output stays in Ray's session logs (a lost
    # node's "Raylet is terminated" would otherwise land on the driver's stdout, which is ours).
    if address is None:
        # address="local": always a fresh Ray of our own, even when a `ray start` cluster runs
        # on this machine (plain ray.init() would join that one).
        ray.init(
            address="local",
            num_cpus=num_cpus,
            include_dashboard=dashboard,
            dashboard_host="127.0.0.1",
            log_to_driver=False,
            logging_level="WARNING",
            _system_config=LOCAL_SYSTEM_CONFIG,
        )
        _started_local = True
    else:
        check_address(address)
        try:
            ray.init(address=address, log_to_driver=False, logging_level="WARNING")
        except (ConnectionError, RuntimeError) as exc:
            raise StudyError(
                f"--address {address}: could not join the Ray cluster: {str(exc).splitlines()[0]}"
            ) from None
    return cluster_info()


def cluster_info() -> dict:
    import ray

    res = ray.cluster_resources()
    return {
        "nodes": len([n for n in ray.nodes() if n.get("Alive")]),
        "cpus": res.get("CPU", 0),
        "gpus": res.get("GPU", 0),
        "dashboard": _dashboard_url(),
        "gcs_address": ray.get_runtime_context().gcs_address,
    }


def _dashboard_url() -> str | None:
    try:
        import ray

        return ray._private.worker.get_dashboard_url() or None  # noqa: SLF001 - no public API
    except Exception:  # noqa: BLE001
        return None


def _trial_actors_take_prestarted_workers() -> None:
    """Ray Tune creates every trial actor with a runtime env: PL_DISABLE_FORK=1 (for PyTorch
    Lightning, which vaestudy does not use) and the AWS and Ray Train variables the driver
    has (`ray.tune.execution.class_cache`). A worker with a runtime env cannot be one of the
    Python workers Ray starts with the node, so each trial of the first wave waited for a new
    interpreter and `import ray` while the prestarted workers went unused (~1.3 s on 2 busy
    cores). A local Ray's workers inherit the driver's environment, AWS and Ray variables
    included, so there the trial actors are created without a runtime env and take the
    prestarted workers. A cluster keeps Tune's way: its workers do not share the driver's
    environment."""
    import ray
    from ray.tune.execution import class_cache

    cache = class_cache._ActorClassCache  # noqa: SLF001 - Tune has no option for it
    if getattr(cache.get, "vaestudy_local", False):
        return
    tune_get = cache.get

    def get(self, trainable_cls):
        if not _started_local:  # a cluster joined later in this process: Tune's way
            return tune_get(self, trainable_cls)
        if trainable_cls not in self._cache:
            self._cache[trainable_cls] = ray.remote(trainable_cls)
        return self._cache[trainable_cls]

    get.vaestudy_local = True
    cache.get = get


def shutdown() -> None:
    global _started_local
    import ray

    if ray.is_initialized():
        ray.shutdown()
    _started_local = False


# --- the trainable ------------------------------------------------------------------------------


def trainable(params: dict, ctx: TrialContext) -> None:
    """Ray Tune function trainable: a thin shell over `studies.run.trial.run_trial`."""
    from ray import tune

    _quiet_logs()
    restored = None
    checkpoint = tune.get_checkpoint()
    work = None
    if checkpoint is not None:  # a retry after a crash: continue from the last checkpoint
        work = Path(tempfile.mkdtemp(prefix="vaestudy-restore-"))
        with checkpoint.as_directory() as d:
            shutil.copy(Path(d) / "checkpoint.pt", work / "checkpoint.pt")
        restored = work / "checkpoint.pt"

    def report(rep: TrialReport, ckpt_dir: Path | None) -> None:
        if ckpt_dir is not None:
            tune.report(to_result(rep), checkpoint=tune.Checkpoint.from_directory(str(ckpt_dir)))
        else:
            tune.report(to_result(rep))

    try:
        run_trial(params, ctx, report, restored)
    finally:
        if work is not None:
            shutil.rmtree(work, ignore_errors=True)


# --- callbacks ----------------------------------------------------------------------------------


def make_callbacks(events: TrialEvents, line: ProgressLine):
    """Tune callbacks that hand trial events to `events` and Tune's trials to the progress line."""
    from ray import tune

    class StudyCallback(tune.Callback):
        """Forwards trial events to the study (one MLflow run per trial key, trial store)."""

        def __init__(self):
            self.last: dict[str, TrialReport] = {}

        def on_trial_start(self, iteration, trials, trial, **info):
            events.on_start(dict(trial.config))

        def on_trial_result(self, iteration, trials, trial, result, **info):
            self.last[trial.trial_id] = rep = from_result(result)
            events.on_result(dict(trial.config), rep)

        def on_trial_complete(self, iteration, trials, trial, **info):
            events.on_end(dict(trial.config), *outcome(self.last.get(trial.trial_id)))

        def on_trial_error(self, iteration, trials, trial, **info):
            events.on_end(
                dict(trial.config),
                *outcome(self.last.get(trial.trial_id), error=_error_line(trial)),
            )

    class Progress(tune.Callback):
        """Feeds the progress line (`progress.ProgressLine`) with Tune's trials."""

        def on_trial_result(self, iteration, trials, trial, result, **info):
            line.on_result(result)

        def on_step_end(self, iteration, trials, **info):
            line.on_step(lambda: _states(trials))

        def on_experiment_end(self, trials, **info):
            line.emit(_states(trials))

    return [StudyCallback(), Progress()]


def _states(trials) -> list[TrialState]:
    """Tune's trials as the progress line reads them."""
    return [
        TrialState(t.status, (t.last_result or {}).get(STEP, 0), dict(t.config)) for t in trials
    ]


def _error_line(trial) -> str:
    path = trial.error_file
    if path and os.path.exists(path):
        lines = [ln for ln in Path(path).read_text(errors="replace").splitlines() if ln.strip()]
        if lines:
            return lines[-1][:500]
    return "trial crashed (no error file)"


# --- the Tune run --------------------------------------------------------------------------------


@dataclass(frozen=True)
class TuneSettings:
    num_samples: int
    cpus_per_trial: float = 1.0
    gpus_per_trial: float = 0.0
    max_concurrent: int | None = None
    max_failures: int = 2
    asha: bool = False
    asha_max_t: int = 0
    asha_grace: int = 1
    experiment_name: str = "tune"
    storage_path: str = ""


def optuna_searcher(
    space: dict, metric, mode, sampler, storage, study_name: str, on_suggest: Callable[[dict], None]
):
    """Optuna's searcher, telling `on_suggest` each point it hands out before Ray creates the
    trial (the driver writes the trial's config there: `configs.TrialConfigs.publish`)."""
    from ray.tune.search.optuna import OptunaSearch

    class Search(OptunaSearch):
        def suggest(self, trial_id: str):
            params = super().suggest(trial_id)
            if isinstance(params, dict):
                on_suggest(params)
            return params

    return Search(
        space=space,
        metric=metric,
        mode=mode,
        sampler=sampler,
        storage=storage,
        study_name=study_name,
    )


def run_tuner(
    ctx: TrialContext,
    searcher,
    settings: TuneSettings,
    events: TrialEvents,
    progress: Callable[[str], None],
    total: int,
    done_before: int,
    steps_of: Callable[[dict], float],
) -> None:
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler

    study = ctx.study
    metric, mode = study.metrics[0], study.modes[0]
    scheduler = None
    if settings.asha:
        scheduler = ASHAScheduler(
            time_attr=STEP,
            metric=metric,
            mode=mode,
            max_t=settings.asha_max_t,
            grace_period=settings.asha_grace,
        )
    if _started_local:
        _trial_actors_take_prestarted_workers()
    fn = tune.with_parameters(trainable, ctx=ctx)
    resources = {"cpu": settings.cpus_per_trial, "gpu": settings.gpus_per_trial}
    tuner = tune.Tuner(
        tune.with_resources(fn, resources),
        tune_config=tune.TuneConfig(
            search_alg=searcher,
            scheduler=scheduler,
            num_samples=settings.num_samples,
            max_concurrent_trials=settings.max_concurrent,
            reuse_actors=True,
        ),
        run_config=tune.RunConfig(
            name=settings.experiment_name,
            storage_path=settings.storage_path,
            callbacks=make_callbacks(
                events,
                ProgressLine(
                    progress,
                    total,
                    done_before,
                    metric,
                    mode,
                    steps_of=steps_of,
                ),
            ),
            checkpoint_config=tune.CheckpointConfig(num_to_keep=2),
            failure_config=tune.FailureConfig(max_failures=settings.max_failures),
            verbose=0,
        ),
    )
    tuner.fit()
