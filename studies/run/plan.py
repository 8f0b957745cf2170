"""Planning a study run: the options (`RunOptions`), and `prepare`, which checks everything
and returns the `StudyPlan` that `runner.run_study` drives.

Order matters for "bad input leaves nothing behind": the study, preset, overrides, every
trial config, the data, the tracking URI and the cluster address are all checked before
the first folder, database or MLflow run is created. `prepare` has no side effect.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from textvae_core import load_corpus

from .. import DEFAULT_ROOT
from ..errors import StudyError
from ..loading import load_study, validate_study
from ..spec import Study
from ..store import StudyRecord, StudyStore, is_remote
from .datasets import corpus_key
from .address import check_address
from .configs import TrialConfigs
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
    # write the report (claims, figure, tables) at the end, still holding the folder
    report: bool = False
    register: str | None = None  # at the end, register the best trial's model under this name

    def resolved(self) -> "RunOptions":
        """These options with the environment read, once, for what was not given:
        VAESTUDY_STORAGE, MLFLOW_TRACKING_URI, and VAESTUDY_ADDRESS, else RAY_ADDRESS (set for
        a driver that `ray job submit` started, which then joins that cluster)."""
        from ..tracking.uris import adopt_uri_credentials

        env = os.environ
        uri = self.tracking_uri or env.get("MLFLOW_TRACKING_URI") or None
        return dataclasses.replace(
            self,
            storage=self.storage or env.get("VAESTUDY_STORAGE") or None,
            # a password in the URI moves to MLflow's variables: the URI is recorded
            tracking_uri=adopt_uri_credentials(uri),
            address=self.address or env.get("VAESTUDY_ADDRESS") or env.get("RAY_ADDRESS") or None,
        )


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
    configs: TrialConfigs  # each trial's config, built once here
    corpora: Mapping[str, Any]
    store: StudyStore
    tracking_uri: str
    identity: Mapping[str, Any]
    record: StudyRecord | None  # study.json as found (None for a new study)

    @property
    def grid(self) -> dict[str, tuple] | None:
        """The grid the sampler walks: the preset's, with a seed axis when there are several
        seeds."""
        if self.points is None:
            return None
        grid = self.study.grid_for(self.opts.preset)
        seeds = tuple(sorted({p.get("seed") for p in self.points if "seed" in p}))
        return {**grid, "seed": seeds} if len(seeds) > 1 else grid


def prepare(study_ref: str, opts: RunOptions) -> StudyPlan:
    """Every check that needs no side effect (`opts` resolved: see RunOptions.resolved)."""
    from ..tracking import check_tracking_uri, default_tracking_uri
    from ..tracking.models import check_model_name

    study = load_study(study_ref)
    study.preset(opts.preset)
    validate_study(study, but=opts.preset)  # this preset's configs are built below, once
    swept = set(study.grid_for(opts.preset)) if study.is_grid else set(study.space)
    clash = sorted(swept & set(opts.overrides))
    if clash:
        raise StudyError(
            f"--set {clash[0]}: {clash[0]} is swept by study {study.name} and cannot be fixed; "
            f"swept keys are {', '.join(sorted(swept))}"
        )
    if opts.cpus_per_trial <= 0 or opts.gpus_per_trial < 0:
        raise StudyError("--cpus-per-trial must be > 0 and --gpus-per-trial >= 0")
    if opts.max_concurrent is not None and opts.max_concurrent < 1:
        raise StudyError("--max-concurrent must be >= 1")
    if opts.collapse_patience < 1:
        raise StudyError(
            f"--collapse-patience must be >= 1 (reports in a row), got {opts.collapse_patience}"
        )
    if opts.asha and study.multi_objective:
        raise StudyError(
            f"--asha needs one metric; study {study.name} optimises {', '.join(study.metrics)}"
        )
    if opts.register is not None:
        check_model_name(opts.register)
    points, target = plan_trials(study, opts)
    storage = opts.storage or str(DEFAULT_ROOT / study.name)
    ctx = TrialContext(
        study,
        opts.preset,
        storage if is_remote(storage) else str(Path(storage).resolve()),
        dict(opts.overrides),
        opts.seed,
        threads=max(1, int(opts.cpus_per_trial)),
        collapse=CollapseRule(
            opts.collapse_threshold, opts.collapse_mi, opts.collapse_z_gain, opts.collapse_patience
        ),
    )
    store = StudyStore(ctx.storage)
    configs = TrialConfigs(ctx, store)  # each point's config, with the --set values, or an error
    built = [configs.of(p) for p in points] if points is not None else [configs.of({})]
    corpora = {  # fetches PTB once, or fails here
        corpus_key(c): load_corpus(c.corpus, tokens=c.tokens, vocab_size=c.vocab_size)
        for c in built
    }
    tracking_uri = opts.tracking_uri or default_tracking_uri(store.local_dir)
    check_tracking_uri(tracking_uri)
    if opts.address:
        check_address(opts.address)
    identity = {
        "study": study.name,
        "preset": opts.preset,
        "seed": opts.seed,
        "trials": target,
        "overrides": {k: list(v) if isinstance(v, tuple) else v for k, v in opts.overrides.items()},
    }
    existing = store.study()
    if existing is not None and existing.identity != identity:
        raise StudyError(
            f"{store.uri} holds a different run ({json.dumps(existing.identity)}); "
            "use another --storage folder, or the same options to resume it"
        )
    if existing is not None:
        _check_trial_configs(store, configs)
    return StudyPlan(
        study,
        study_ref,
        opts,
        points,
        target,
        ctx,
        configs,
        corpora,
        store,
        tracking_uri,
        identity,
        existing,
    )


def resume_options(folder: str) -> tuple[str, RunOptions]:
    """The study reference and options saved in a study folder, for `vaestudy resume`."""
    store = StudyStore(folder)
    record = store.study()
    if record is None:
        raise StudyError(
            f"{folder} is not a study folder (no study.json); `vaestudy run STUDY` starts one"
        )
    identity = record.identity
    saved = {
        **record.options,
        "preset": identity["preset"],
        "seed": identity["seed"],
        "storage": store.uri,
        "overrides": identity["overrides"],
    }
    fields = set(RunOptions.__dataclass_fields__)
    opts = RunOptions(**{k: v for k, v in saved.items() if k in fields})
    return record.study_ref, opts


RUNTIME_FIELDS = ("threads", "device")  # where a trial runs, not what it trains


def _check_trial_configs(store: StudyStore, configs: TrialConfigs) -> None:
    """A folder resumes only if each trial it holds would get the same config today: code
    that changed a default since (the LSTM cell, say) would otherwise mix two settings in
    one study. Fields a trial record lacks (added since) count as their current value."""
    for key, record in sorted(store.trials().items()):
        now = json.loads(json.dumps(configs.of(dict(record.params)).to_dict()))
        for name, value in record.config.items():
            if name in RUNTIME_FIELDS or name not in now or now[name] == value:
                continue
            why = "; the default is the paper's LayerNorm cell since 2026-12-06" * (
                name == "lstm_cell"
            )
            raise StudyError(
                f"{store.uri} holds trials run with other settings (trial {key}: {name}={value!r}, "
                f"now {now[name]!r}{why}): use another --storage folder"
            )
