"""`vaestudy bench overhead`: what the platform costs over bare training.

The same smoke-sized trials run twice, side by side in one invocation: once through
`run_study` (Ray, Optuna, MLflow, checkpoints) and once as bare `textvae_core.fit` calls
in a process pool of the same concurrency. Printed: both wall times, their ratio, Ray's
start-up, the per-trial start-up cost, and the share of each trial spent reporting
(checkpoint save and hand-off) as measured inside the trials.
"""

from __future__ import annotations

import multiprocessing as mp
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from .runner import RunOptions, plan_trials, run_study
from ..spec import load_study
from ..store import StudyStore
from .trial import TrialContext


def _fit_one(config_dict: dict) -> float:
    from textvae_core import TrainConfig, fit

    start = time.perf_counter()
    fit(TrainConfig(**config_dict))
    return time.perf_counter() - start


def measure_overhead(study_name: str = "alpha-sweep", preset: str = "smoke", concurrency: int = 2,
                     echo=lambda s: None) -> dict:
    study = load_study(study_name)
    opts = RunOptions(preset=preset, max_concurrent=concurrency, cpus_per_trial=1.0, dashboard=False)
    points, n = plan_trials(study, opts)
    ctx = TrialContext(study, preset, "unused", {}, 0, threads=1)
    configs = [ctx.config(p).to_dict() for p in (points or [{}] * n)]

    # Bare: the same configs in a pool of the same size (spawned workers pay torch's import,
    # as Ray's workers do).
    start = time.perf_counter()
    with ProcessPoolExecutor(concurrency, mp_context=mp.get_context("spawn")) as pool:
        fit_times = list(pool.map(_fit_one, configs))
    bare = time.perf_counter() - start

    # The platform, into a fresh folder and MLflow store.
    from . import ray_adapter

    with tempfile.TemporaryDirectory(prefix="vaestudy-bench-") as tmp:
        folder = Path(tmp) / study.name
        t0 = time.perf_counter()
        ray_adapter.connect(None, num_cpus=concurrency, dashboard=False)
        ray_start = time.perf_counter() - t0
        t1, wall1 = time.perf_counter(), time.time()
        run_study(study_name, RunOptions(**{**opts.__dict__, "storage": str(folder)}), echo=echo)
        platform, wall2 = time.perf_counter() - t1, time.time()
        trials = list(StudyStore(folder).finished_trials().values())
        report_s = sum(t.report_overhead_s or 0 for t in trials)
        trial_wall = sum(t.trial_wall_s or 0 for t in trials)
        ray_adapter.shutdown()
    # Driver-observed trial time (start callback to end callback) less the time the trial's
    # own code ran: scheduling, actor hand-off, result and checkpoint plumbing.
    per_trial = [t.ended - t.started - t.trial_wall_s for t in trials if t.trial_wall_s and t.ended and t.started]
    return {
        "study": study_name, "preset": preset, "trials": len(configs), "concurrency": concurrency,
        "bare_wall_s": bare, "platform_wall_s": platform, "ratio_platform_over_bare": platform / bare,
        "ray_start_s": ray_start,
        "setup_s": min(t.started for t in trials) - wall1,
        "teardown_s": wall2 - max(t.ended for t in trials),
        "per_trial_overhead_s": sum(per_trial) / len(per_trial) if per_trial else None,
        "mean_fit_s": sum(fit_times) / len(fit_times),
        "report_share_of_trial": report_s / trial_wall if trial_wall else None,
    }
