"""Reading a study back from MLflow (reports), and logging a report to the parent run."""

from __future__ import annotations

import json
import math
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from mlflow.entities import ViewType
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from textvae_core.measures import SPARSE_SPLITS

from ..trials_table import TrialSummary

from .uris import (
    CONFIG_ARTIFACT,
    PARENT_TAG,
    PRESET_TAG,
    STATUS_REASON_TAG,
    STATUS_TAG,
    STUDY_TAG,
    TRIAL_KEY_TAG,
    TrackingError,
    check_existing_store,
    swept_values,
)


@dataclass(frozen=True)
class LoggedStudy:
    parent_run_id: str
    study: str
    preset: str
    trials: list[TrialSummary]


def search_all(
    client, experiment_id: str, filter_string: str, max_results: int | None = None
) -> list:
    """The active runs of an experiment matching `filter_string`, oldest first, every page of
    MLflow's answer (1000 runs a page), or the first `max_results`."""
    found, token = [], None
    while True:
        page = client.search_runs(
            [experiment_id],
            filter_string,
            ViewType.ACTIVE_ONLY,
            max_results=min(max_results or 1000, 1000),
            order_by=["attributes.start_time ASC"],
            page_token=token,
        )
        found.extend(page)
        token = page.token
        if not token or (max_results and len(found) >= max_results):
            return found[:max_results] if max_results else found


def read_study(
    uri: str, experiment: str, metrics: tuple[str, ...], splits: tuple[str, ...]
) -> LoggedStudy:
    """The latest study launch logged to an MLflow experiment: its parent run and children."""
    check_existing_store(uri)
    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name(experiment)
    if exp is None or exp.lifecycle_stage != "active":
        raise TrackingError(f"no MLflow experiment {experiment!r} at {uri}")
    runs = search_all(client, exp.experiment_id, "")
    parents = [r for r in runs if PARENT_TAG not in r.data.tags and STUDY_TAG in r.data.tags]
    if not parents:
        raise TrackingError(
            f"MLflow experiment {experiment!r} at {uri} holds no vaestudy study run"
        )
    parent = max(parents, key=lambda r: r.info.start_time)
    trials = []
    for run in sorted(
        (r for r in runs if r.data.tags.get(PARENT_TAG) == parent.info.run_id),
        key=lambda r: r.info.start_time,
    ):
        p = run.data.params
        config = _logged_config(client, run.info.run_id)
        swept = swept_values(p, config)
        if swept is None:  # logged before the typed record: values parsed back from strings
            swept = {
                k.removeprefix("sweep."): _parse(v) for k, v in p.items() if k.startswith("sweep.")
            }
            config = {k: _parse(v) for k, v in p.items() if not k.startswith("sweep.")}
        trials.append(
            TrialSummary(
                run.data.tags.get(TRIAL_KEY_TAG, run.info.run_id),
                swept,
                config,
                run.data.tags.get(STATUS_TAG) or run.info.status.lower(),
                run.data.tags.get(STATUS_REASON_TAG),
                _metric_history(client, run, metrics, splits),
                (run.info.end_time - run.info.start_time) / 1000 if run.info.end_time else None,
                run.info.run_id,
            )
        )
    return LoggedStudy(
        parent.info.run_id,
        parent.data.tags[STUDY_TAG],
        parent.data.tags.get(PRESET_TAG, "unknown"),
        trials,
    )


def _logged_config(client: MlflowClient, run_id: str) -> dict[str, Any]:
    """A trial's config record (CONFIG_ARTIFACT), {} where its run has none."""
    with tempfile.TemporaryDirectory() as tmp:
        try:
            path = client.download_artifacts(run_id, CONFIG_ARTIFACT, tmp)
        except (MlflowException, OSError):
            return {}
        return json.loads(Path(path).read_text())


def _parse(text: str) -> Any:
    """A param of a run logged before SWEPT_PARAM (always a string) back to its value."""
    if text in ("True", "False"):
        return text == "True"
    if text == "None":
        return None
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def _metric_history(client, run, metrics, splits) -> list[dict[str, Any]]:
    by_step: dict[int, dict[str, dict[str, float]]] = {}
    for name in run.data.metrics:
        split, _, metric = name.partition("/")
        if split not in splits or metric not in metrics:
            continue
        for m in sorted(
            client.get_metric_history(run.info.run_id, name), key=lambda m: m.timestamp
        ):
            by_step.setdefault(m.step, {s: {} for s in splits})[split][metric] = m.value
    return [
        {
            "step": step,
            "split": split,
            **{m: by_step[step][split].get(m, math.nan) for m in metrics},
        }
        for step in sorted(by_step)
        for split in splits
        if split not in SPARSE_SPLITS or by_step[step][split]  # as history.parquet holds them
    ]


def check_parent_run(uri: str, run_id: str) -> None:
    """The study's parent run must be at `uri` before a report is logged to it."""
    check_existing_store(uri)
    try:
        MlflowClient(tracking_uri=uri).get_run(run_id)
    except MlflowException:
        raise TrackingError(
            f"the study's parent MLflow run {run_id} is not at {uri}; give the tracking URI it "
            "was logged to with --tracking-uri"
        ) from None


SUMMARY_TABLE = "summary.json"  # the summary as an MLflow table: the artifact view shows it
LOGGED_ARTIFACTS_TAG = "mlflow.loggedArtifacts"  # MLflow's own: which artifacts are tables


def log_report(
    uri: str,
    run_id: str,
    folder: Path,
    tags: Mapping[str, str],
    summary: list[Mapping[str, Any]] | None = None,
) -> None:
    """The report's files as artifacts under `report/` of the parent run, the summary (one row
    per trial) as an MLflow table, and the verdict tags."""
    client = MlflowClient(tracking_uri=uri)
    client.log_artifacts(run_id, str(folder), "report")
    if summary:
        # MLflow's table format (log_table's JSON), written whole: log_table itself appends
        # to a table already there, which a second report would double.
        columns = list(dict.fromkeys(k for row in summary for k in row))
        table = {
            "columns": columns,
            "data": [[_table_cell(r.get(c)) for c in columns] for r in summary],
        }
        client.log_text(run_id, json.dumps(table), SUMMARY_TABLE)
        logged = json.loads(client.get_run(run_id).data.tags.get(LOGGED_ARTIFACTS_TAG, "[]"))
        entry = {"path": SUMMARY_TABLE, "type": "table"}  # the UI's cue to draw it as a table
        if entry not in logged:
            client.set_tag(run_id, LOGGED_ARTIFACTS_TAG, json.dumps([*logged, entry]))
    for key, value in tags.items():
        client.set_tag(run_id, key, value)


def _table_cell(value: Any) -> Any:
    """A summary value as MLflow's table JSON holds it: numbers (NaN and inf as None, which
    the table shows empty), strings, booleans; anything else as its text."""
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    return str(value)
