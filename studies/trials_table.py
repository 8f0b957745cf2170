"""A study's trials as reports read them (`TrialSummary`, from the folder or from MLflow), and
trials.parquet: one row per trial per report per split.

Columns: study, trial_key, status, every swept hyperparameter (plus the config values the
figures need: model, length, alpha, dropout, depth, anneal, kl, latent, seed, and the
LSTM each trial ran: `lstm_cell`, `z_every_step`), step, split, and the metrics of
`textvae_core.history.METRIC_NAMES`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import pyarrow as pa

from textvae_core.config import LSTM_MODELS

from .store import StudyStore, TrialRecord

CONFIG_COLUMNS = (
    "model",
    "length",
    "alpha",
    "dropout",
    "depth",
    "anneal",
    "kl",
    "latent",
    "hidden",
    "lr",
    "steps",
    "seed",
    "lstm_cell",
    "z_every_step",
)
# Config values the report needs to judge the remedies (not columns: read by `read`).
REMEDY_CONFIG = ("bn_vae", "bn_gamma", "free_bits")


def config_columns(config: Mapping[str, Any]) -> dict[str, Any]:
    """The CONFIG_COLUMNS of a trial's config. `lstm_cell` is None for a model without an
    LSTM and `z_every_step` None for a model other than the LSTM VAE (the hybrids' features
    reach every step anyway); an LSTM VAE recorded before the field existed read z through
    its initial state only (False)."""
    out = {c: config[c] for c in CONFIG_COLUMNS if c in config}
    model = config.get("model")
    if model is not None:
        out["lstm_cell"] = config.get("lstm_cell") if model in LSTM_MODELS else None
        out["z_every_step"] = bool(config.get("z_every_step")) if model == "lstm" else None
    return out


@dataclass(frozen=True)
class TrialSummary:
    """One trial as a report reads it, the same from the study folder (`store_trials`) and
    from MLflow (`tracking.read_study`): what `results.read.summary_row` and `trials_table`
    are made from."""

    key: str
    params: Mapping[str, Any]  # the swept values, typed
    config: Mapping[str, Any]  # the trial's TrainConfig as its JSON record holds it
    status: str  # a store.Status value
    reason: str | None = None
    history: Sequence[Mapping[str, Any]] = ()  # {"step", "split", measure: value} rows
    wall_s: float | None = None
    run_id: str | None = None  # its MLflow run


def store_trials(
    store: StudyStore, records: Mapping[str, TrialRecord] | None = None
) -> list[TrialSummary]:
    """Every trial with a record in a study folder (`records`, if already read), its history
    from history.parquet."""
    out = []
    for key, record in (store.trials() if records is None else records).items():
        path = f"trials/{key}/history.parquet"
        history = store.read_table(path).to_pylist() if store.exists(path) else []
        out.append(
            TrialSummary(
                key,
                record.params,
                record.config,
                record.status.value,
                record.reason,
                history,
                record.wall_s,
                record.mlflow_run_id,
            )
        )
    return out


def trials_table(trials: Sequence[TrialSummary], study_name: str) -> pa.Table:
    """trials.parquet: each trial's reports (a trial with none has no row)."""
    tables = []
    for t in trials:
        if not t.history:
            continue
        head = {
            "study": study_name,
            "trial_key": t.key,
            "status": t.status,
            **{f"param_{k}": v for k, v in t.params.items()},
            **config_columns(t.config),
        }
        tables.append(pa.Table.from_pylist([{**head, **row} for row in t.history]))
    if not tables:
        return pa.table(
            {"study": pa.array([], pa.string()), "trial_key": pa.array([], pa.string())}
        )
    return pa.concat_tables(tables, promote_options="permissive")
