"""trials.parquet: one row per trial per report per split, from the trial store.

Columns: study, trial_key, status, every swept hyperparameter (plus the config values the
figures need: model, length, alpha, dropout, depth, anneal, kl, latent, seed), step,
split, and the metrics of `textvae_core.train.METRIC_NAMES`.
"""

from __future__ import annotations

import pyarrow as pa

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
)


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
        params, config = record.params, record.config
        for name in params:
            cols[f"param_{name}"] = [params[name]] * n
        for name in CONFIG_COLUMNS:
            if name in config:
                cols[name] = [config[name]] * n
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
