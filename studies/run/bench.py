"""`vaestudy bench overhead`: what the platform costs over bare training.

The same trials (a study's grid points at one preset, optionally cut to `limit_steps`) run
twice, side by side in one invocation: once through `run_study` (Ray, Optuna, MLflow,
checkpoints) and once as bare `textvae_core.fit` calls in a process pool of the same
concurrency. Printed: both wall times and their ratio, Ray's start-up, the per-trial
scheduling cost, and where the platform's trial time went (train / eval / checkpoint /
report, as the trials measured it), with the eval share projected to the preset's full
length: a cut trial pays its final IW bound and MI pool over fewer steps.

On a shared or throttled host the speed of training drifts by several percent within a
minute, as much as the platform costs; `repeats` runs the pair that many times, alternating
which goes first, and reports the pair of median ratio after set-up with the medians and
ranges over pairs.
"""

from __future__ import annotations

import dataclasses
import multiprocessing as mp
import statistics
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from .plan import RunOptions, plan_trials
from .runner import run_study
from ..loading import load_study
from ..store import StudyStore
from .trial import TrialContext

PARTS = ("train", "eval", "checkpoint", "report")


def _fit_one(config_dict: dict) -> dict[str, float]:
    from textvae_core import TrainConfig, fit

    start = time.perf_counter()
    trainer = fit(TrainConfig(**config_dict))
    return {"wall": time.perf_counter() - start, **trainer.seconds}


def measure_overhead(
    study_name: str = "dropout",
    preset: str = "smoke",
    concurrency: int = 2,
    limit_steps: int | None = None,
    num_samples: int | None = 1,
    echo=lambda s: None,
    repeats: int = 1,
) -> dict:
    study = load_study(study_name)
    overrides = {"steps": limit_steps} if limit_steps else {}
    opts = RunOptions(
        preset=preset,
        overrides=overrides,
        num_samples=num_samples,
        max_concurrent=concurrency,
        cpus_per_trial=1.0,
        dashboard=False,
    )
    points, n = plan_trials(study, opts)
    configs = [
        TrialContext(study, preset, "unused", overrides, 0, threads=1).make_config(p).to_dict()
        for p in (points or [{}] * n)
    ]
    full = [
        TrialContext(study, preset, "unused", {}, 0, threads=1).make_config(p)
        for p in (points or [{}] * n)
    ]

    passes, rounds = [], []
    for r in range(repeats):
        # alternate the order (bare first, then platform first, ...), so drift in the host's
        # speed over an invocation does not favour either side
        first = "platform" if r % 2 else "bare"
        if first == "platform":
            plat = _platform(study_name, study.name, opts, concurrency, echo)
        bare = _bare(configs, concurrency)
        if first == "bare":
            plat = _platform(study_name, study.name, opts, concurrency, echo)
        passes.append((bare, plat))
        rounds.append({**_compare(bare, plat), "first": first})
    middle = sorted(rounds, key=lambda x: x["ratio_after_setup"])[(len(rounds) - 1) // 2]
    fits = [f for (_, fs), _ in passes for f in fs]
    trials = [t for _, plat in passes for t in plat["trials"]]
    trial_wall = sum(t.trial_wall_s or 0 for t in trials)
    spent = {k: sum(t.seconds.get(k, 0.0) for t in trials) for k in (*PARTS, "final")}
    return {
        "study": study_name,
        "preset": preset,
        "trials": len(configs),
        "concurrency": concurrency,
        "steps": sorted({c["steps"] for c in configs}),
        "preset_steps": sorted({c.steps for c in full}),
        "repeats": repeats,
        # the pass pair of median ratio after set-up (with repeats=1, the only one); every pair in
        # "rounds", with the medians and ranges of its measures below
        **middle,
        **{
            f"{k}_median": statistics.median(x[k] for x in rounds)
            for k in ("ratio_platform_over_bare", "ratio_after_setup", "setup_s")
        },
        **{
            f"{k}_spread": [min(x[k] for x in rounds), max(x[k] for x in rounds)]
            for k in ("ratio_platform_over_bare", "ratio_after_setup", "setup_s")
        },
        "rounds": [{k: v for k, v in x.items() if k != "setup_split_s"} for x in rounds],
        "mean_fit_s": sum(f["wall"] for f in fits) / len(fits),
        "split": {k: spent[k] / trial_wall for k in PARTS} if trial_wall else {},
        "final_eval_share": spent["final"] / trial_wall if trial_wall else None,
        "eval_share_at_preset_steps": _projected_eval_share(passes[0][0][1], configs, full),
    }


def _bare(configs: list[dict], concurrency: int) -> tuple[float, list[dict]]:
    """The configs as bare fits in a pool of the same size (spawned workers pay torch's
    import, as Ray's workers do): the wall time and each fit's clocks."""
    start = time.perf_counter()
    with ProcessPoolExecutor(concurrency, mp_context=mp.get_context("spawn")) as pool:
        fits = list(pool.map(_fit_one, configs))
    return time.perf_counter() - start, fits


def _platform(study_name: str, folder_name: str, opts: RunOptions, concurrency: int, echo) -> dict:
    """The study through `run_study`, into a fresh folder and MLflow store, on a Ray started
    beforehand (timed apart)."""
    from . import ray_adapter

    with tempfile.TemporaryDirectory(prefix="vaestudy-bench-") as tmp:
        folder = Path(tmp) / folder_name
        t0 = time.perf_counter()
        ray_adapter.connect(None, num_cpus=concurrency, dashboard=False)
        ray_start = time.perf_counter() - t0
        t1, wall1 = time.perf_counter(), time.time()
        run_study(study_name, dataclasses.replace(opts, storage=str(folder)), echo=echo)
        platform, wall2 = time.perf_counter() - t1, time.time()
        trials = list(StudyStore(folder).finished_trials().values())
        marks = StudyStore(folder).study().launches[-1].get("marks", {})
        ray_adapter.shutdown()
    return dict(
        wall=platform, began=wall1, ended=wall2, ray_start=ray_start, trials=trials, marks=marks
    )


def _compare(bare: tuple[float, list[dict]], plat: dict) -> dict:
    """One bare pass against one platform pass."""
    bare_wall, trials = bare[0], plat["trials"]
    first, last = min(t.started for t in trials), max(t.ended for t in trials)
    setup, teardown = first - plat["began"], plat["ended"] - last
    # Driver-observed trial time (start callback to end callback) less the time the trial's
    # own code ran: scheduling, actor hand-off, result and checkpoint plumbing.
    per_trial = [
        t.ended - t.started - t.trial_wall_s
        for t in trials
        if t.trial_wall_s and t.ended and t.started
    ]
    return {
        "bare_wall_s": bare_wall,
        "platform_wall_s": plat["wall"],
        "ratio_platform_over_bare": plat["wall"] / bare_wall,
        # the same without the study's one-off set-up and teardown (MLflow and Optuna databases,
        # Ray Tune, the first workers): what each further trial costs over a bare fit
        "ratio_after_setup": (plat["wall"] - setup - teardown) / bare_wall,
        "ray_start_s": plat["ray_start"],
        "setup_s": setup,
        # the set-up by phase (runner.SETUP_PHASES), then Ray Tune up to the first trial's start
        "setup_split_s": _setup_split(plat["began"], plat["marks"], first),
        "teardown_s": teardown,
        "per_trial_overhead_s": sum(per_trial) / len(per_trial) if per_trial else None,
    }


def _setup_split(begin: float, marks: dict[str, float], first_trial: float) -> dict[str, float]:
    """Seconds per set-up phase: from `begin` through each phase's recorded end, then to the
    first trial's start ("first_trial": Ray Tune's own start and the first trial's actor)."""
    from .runner import SETUP_PHASES

    names = [*(m for m in SETUP_PHASES if m in marks), "first_trial"]
    times = [begin, *(marks[m] for m in names[:-1]), first_trial]
    return {name: b - a for name, a, b in zip(names, times, times[1:])}


def _projected_eval_share(fits: list[dict], configs: list[dict], full: list) -> float | None:
    """The eval share of the bare fits scaled to the preset's own steps: training and the
    periodic evaluations grow with the steps, the final report's extra cost does not."""
    train = evals = 0.0
    if any(not cut["eval_every"] for cut in configs) or any(not c.eval_every for c in full):
        return None  # a report per epoch (words): not projected
    for f, cut, cfg in zip(fits, configs, full):
        reports = max(cut["steps"] // cut["eval_every"], 1)
        periodic = (f["eval"] - f["final"]) / max(reports - 1, 1) if reports > 1 else f["final"]
        scale = cfg.steps / cut["steps"]
        train += f["train"] * scale
        evals += periodic * (cfg.steps // cfg.eval_every - 1) + f["final"]
    return evals / (train + evals) if train + evals > 0 else None
