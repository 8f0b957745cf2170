"""`write_report`: a study's measured results as files, checked against the paper's claims.

From a study folder (or, with a tracking URI, an MLflow experiment) it writes

    trials.parquet    one row per trial per report per split (`studies.trials_table`)
    summary.parquet   one row per trial: hyperparameters, status, final valid metrics
                      (total, rec, KL and aux bits/char, active units, mutual information,
                      the pool MI, unigram entropy, importance-weighted bound), steps, wall
                      time, training chars/s
    <figure>.png      the paper's figure redrawn from the measured data (`figures`)
    claims.json       per claim: each seed's verdict and values, the verdict over seeds
    report.md         the claims table, the figure and a per-trial table (`markdown`)

and logs them as artifacts under `report/` of the study's parent MLflow run.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import pyarrow.parquet as pq

from .. import tracking
from ..errors import StudyError
from ..store import StudyStore
from . import claims
from .figures import draw_figures
from .markdown import render_markdown, summary_table
from .read import read_experiment, read_folder


def write_report(
    folder: str,
    tracking_uri: str | None = None,
    experiment: str | None = None,
    out: str | None = None,
) -> dict[str, str]:
    """Write a study's report and log it to its parent MLflow run; returns file name -> URI.

    folder: a study folder, read and written into; with `experiment`, only the folder to
        write into, the trials being read from that MLflow experiment at `tracking_uri`.
    tracking_uri: where the parent run is [default: the one in study.json].
    out: write here instead of into `folder`.
    Raises StudyError (or TrackingError) before writing anything when an input is bad.
    """
    if experiment is not None:
        if not tracking_uri:
            raise StudyError(f"reading MLflow experiment {experiment!r} needs --tracking-uri")
        results = read_experiment(tracking_uri, experiment)
    else:
        results = read_folder(folder, tracking_uri)
    target = StudyStore(out or folder)
    logged = bool(results.parent_run_id and results.tracking_uri)
    if logged:  # the parent run must exist before anything is written
        tracking.check_parent_run(results.tracking_uri, results.parent_run_id)
    verdicts = claims.evaluate(results.study, results.summary, results.preset, results.seeds)

    work = Path(tempfile.mkdtemp(prefix="vaestudy-report-"))
    try:
        pq.write_table(results.trials, work / "trials.parquet")
        pq.write_table(summary_table(results.summary), work / "summary.parquet")
        figures, notes = draw_figures(results, work)
        (work / "claims.json").write_text(
            json.dumps(
                {
                    "study": results.study.name,
                    "preset": results.preset,
                    "corpus": results.corpus,
                    "claims": verdicts,
                    "compute": results.compute,
                },
                indent=1,
                default=str,
            )
        )
        (work / "report.md").write_text(render_markdown(results, verdicts, figures, notes))
        written = {}
        for path in sorted(work.iterdir()):
            target.write_bytes(path.name, path.read_bytes())
            written[path.name] = target.uri_of(path.name)
        if logged:
            tags = tracking.claim_tags(
                claims.tally(verdicts), {c["id"]: c["verdict"] for c in verdicts}
            )
            rows = [{k: v for k, v in r.items() if k != "history"} for r in results.summary]
            tracking.log_report(results.tracking_uri, results.parent_run_id, work, tags, rows)
        if experiment is None:
            StudyStore(folder).sync_up(("mlflow.db",))
        return written
    finally:
        shutil.rmtree(work, ignore_errors=True)
