"""trials.parquet: one row per trial per report per split, from the trial store.

Columns: study, trial_key, status, every swept hyperparameter (plus the config values the
figures need: model, length, alpha, dropout, depth, anneal, kl, latent, seed, and the
LSTM each trial ran: `lstm_cell`, `z_every_step`), step, split, and the metrics of
`textvae_core.history.METRIC_NAMES`.
"""

from __future__ import annotations

from typing import Any, Mapping

import pyarrow as pa

from textvae_core.config import LSTM_MODELS

from .store import StudyStore

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


def trials_table(store: StudyStore, study_name: str) -> pa.Table:
    tables = []
    for key, record in store.trials().items():
        if not store.exists(f"trials/{key}/history.parquet"):
            continue
        hist = store.read_table(f"trials/{key}/history.parquet")
        n = hist.num_rows
        cols = {
            "study": [study_name] * n,
            "trial_key": [key] * n,
            "status": [record.status.value] * n,
        }
        params = record.params
        for name in params:
            cols[f"param_{name}"] = [params[name]] * n
        for name, value in config_columns(record.config).items():
            cols[name] = [value] * n
        extra = pa.table(cols)
        tables.append(
            pa.Table.from_arrays(
                extra.columns + hist.columns, names=extra.column_names + hist.column_names
            )
        )
    if not tables:
        return pa.table(
            {"study": pa.array([], pa.string()), "trial_key": pa.array([], pa.string())}
        )
    return pa.concat_tables(tables, promote_options="permissive")
