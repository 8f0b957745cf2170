"""A run's reports and their table: one `Report` per `eval_every` steps, and the history
table (one row per report per split) that a trial writes as history.parquet."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from . import measures
from .measures import SPARSE_SPLITS

SPLITS = measures.SPLITS  # test: a word corpus's final report only
METRIC_NAMES = measures.HISTORY_NAMES  # every measure of the vocabulary the Trainer reports
# probe_*: synthetic corpus only. aggressive / encoder_updates / encoder_s: aggressive=True only
# (mode still on; encoder-only updates and their seconds since the last report). bn_mu_var
# (valid): bn_vae=True only, the mean per-dimension batch variance of the posterior means entering
# the BatchNorm. free_bits_active (train): free_bits > 0 only, the share of latent dimensions at
# the free-bits floor, averaged over the steps since the last report. Final report
# only: mi_pool, I(x; z) over `mi_pool` validation fragments (ceiling log N), and unigram_bpc,
# the training characters' entropy. Words: nll/rec/kl/aux_nats per sentence, ppl per token
# (end tokens counted), the IW bound on iw_sentences sentences, unigram_nats (the training
# tokens' unigram cost of a valid sentence), sentences measured and truncated (longer than the
# model's maximum); train: plateau_decays so far; final: selected_step, the step of the model
# measured (select_best), and the test split, its only use.


@dataclass
class Report:
    step: int
    metrics: dict[str, float]  # keyed by textvae_core.measures.key(split, name)
    final: bool = False


def history_table(history: list[Report]) -> pa.Table:
    """One row per report per split: step, split, and every metric in METRIC_NAMES."""
    rows: dict[str, list] = {"step": [], "split": [], **{m: [] for m in METRIC_NAMES}}
    for rep in history:
        for split in SPLITS:
            if split in SPARSE_SPLITS and not any(k.startswith(f"{split}/") for k in rep.metrics):
                continue
            rows["step"].append(rep.step)
            rows["split"].append(split)
            for m in METRIC_NAMES:
                value = rep.metrics.get(f"{split}/{m}", math.nan)  # split/name: measures.key
                rows[m].append(float(value))
    return pa.table(rows)


def write_history(history: list[Report], path: str | os.PathLike) -> Path:
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    pq.write_table(history_table(history), tmp)
    os.replace(tmp, path)
    return path
