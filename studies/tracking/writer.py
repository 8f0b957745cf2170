"""Writing a study to MLflow: `StudyTracker`, the driver's only MLflow client."""

from __future__ import annotations

import math
import time
from typing import Any, Mapping

from mlflow.entities import Dataset, DatasetInput, InputTag, Metric, Param, Run, RunTag
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from ..store import Status
from . import models
from .reading import search_all
from .views import ORDER_METRIC, ensure_tags, view_tags
from .uris import (
    EXPERIMENT_TAGS,
    MAX_METRICS_PER_BATCH,
    MAX_PARAMS_OR_TAGS_PER_BATCH,
    PARENT_TAG,
    STATUS_REASON_TAG,
    STATUS_TAG,
    TERMINAL_STATUSES,
    DATASET_CONTEXT_TAG,
    TRIAL_KEY_TAG,
    TrackingError,
    auth_problem,
    without_secrets,
)


def _chunks(items: list, size: int) -> list[list]:
    return [items[i : i + size] for i in range(0, len(items), size)]


def _quote(value: str) -> str:
    """A string literal for an MLflow search filter, whose parser has no escape for quotes."""
    if "'" in value or '"' in value:
        raise ValueError(f"trial keys and run ids cannot contain quotes: {value!r}")
    return f"'{value}'"


_UNREACHABLE = (
    "Max retries exceeded",
    "Connection refused",
    "Failed to establish a new connection",
    "Read timed out",
    "Connection aborted",
    "RemoteDisconnected",
)


class _Guarded:
    """The MLflow client, with a server that stopped answering (after the client's own retries:
    MLFLOW_HTTP_REQUEST_MAX_RETRIES, ..._BACKOFF_FACTOR, ..._TIMEOUT) turned into one
    TrackingError, and every later call refused at once: clean-up never waits on it again."""

    def __init__(self, client: MlflowClient, tracking_uri: str):
        self._client, self._uri, self.unreachable = client, tracking_uri, None

    def __getattr__(self, name: str):
        fn = getattr(self._client, name)
        if not callable(fn):
            return fn

        def call(*args, **kwargs):
            if self.unreachable:
                raise TrackingError(self.unreachable)
            try:
                return fn(*args, **kwargs)
            except MlflowException as exc:
                status = {"UNAUTHENTICATED": 401, "PERMISSION_DENIED": 403}.get(exc.error_code)
                if status is not None:  # credentials missing, wrong, expired or short of rights
                    self.unreachable = (
                        f"{auth_problem(self._uri, status)}; the reports not yet sent are kept "
                        "in the trial store: `vaestudy resume` the study once that is fixed"
                    )
                    raise TrackingError(self.unreachable) from None
                if not any(s in str(exc) for s in _UNREACHABLE):
                    raise
                self.unreachable = (
                    f"the tracking server {self._uri} stopped answering (MLflow's client gave up "
                    "after its retries); the reports not yet sent are kept in the trial store: "
                    "`vaestudy resume` the study once the server is back"
                )
                raise TrackingError(self.unreachable) from None

        return call


class StudyTracker:
    """One study's MLflow experiment: a parent run per study launch and a child run per trial key.

    Not thread-safe: it is meant to be called from the driver's Tune callback only.
    """

    def __init__(
        self,
        tracking_uri: str,
        experiment: str,
        artifact_location: str | None = None,
        flush_every: float = 5.0,
        progress_metric: str = ORDER_METRIC,
    ):
        self.client = _Guarded(MlflowClient(tracking_uri=tracking_uri), tracking_uri)
        self.tracking_uri = tracking_uri
        self.flush_every = flush_every  # seconds between metric batches; 0 sends on every report
        # logged at every report; its history says how far a run got
        self.progress_metric = progress_metric
        self.experiment_id = self._experiment_id(experiment, artifact_location)
        self._children: dict[tuple[str, str], str] = {}  # (parent id, trial key) -> child run id
        self._ended: dict[str, str] = {}  # run id -> status, for runs this tracker terminated
        self._last_step: dict[str, int] = {}  # run id -> highest step logged or buffered
        self._pending: dict[str, list[Metric]] = {}  # run id -> metrics not yet sent
        self._last_flush = time.monotonic()

    @property
    def unreachable(self) -> str | None:
        """Why the tracking server is given up on (None while it answers)."""
        return self.client.unreachable

    def _experiment_id(self, name: str, artifact_location: str | None) -> str:
        exp = self.client.get_experiment_by_name(name)
        if exp is None:
            try:
                self.client.create_experiment(
                    name, artifact_location=artifact_location, tags=EXPERIMENT_TAGS
                )
            except MlflowException as exc:  # another driver created it in between
                if exc.error_code != "RESOURCE_ALREADY_EXISTS":
                    raise
            exp = self.client.get_experiment_by_name(name)
        if exp.lifecycle_stage != "active":
            raise TrackingError(
                f"MLflow experiment {name!r} at {self.tracking_uri} is deleted; restore it "
                f"(`mlflow experiments restore --experiment-id {exp.experiment_id}`) "
                "or use another study name"
            )
        # An experiment made before vaestudy tagged its kind or stored its views gets them.
        ensure_tags(self.client, exp, {**EXPERIMENT_TAGS, **view_tags(self.progress_metric)})
        return exp.experiment_id

    # --- runs -------------------------------------------------------------------------------

    def start_parent(
        self, run_id: str | None, name: str, params: Mapping[str, Any], tags: Mapping[str, Any]
    ) -> str:
        """Reopen parent `run_id` (a resumed study) if it exists in this experiment, else create
        one."""
        run = self._get_run(run_id) if run_id else None
        if run is not None and run.info.experiment_id == self.experiment_id:
            self._reopen(run)
            self._log_missing(run, params, tags)
            return run.info.run_id
        run = self.client.create_run(
            self.experiment_id, tags=_str_values(without_secrets(tags)), run_name=name
        )
        self._log_params(run.info.run_id, params)
        return run.info.run_id

    def child_run(
        self,
        parent_id: str,
        key: str,
        name: str,
        params: Mapping[str, Any],
        tags: Mapping[str, Any],
    ) -> str:
        """The one child run of trial `key` under `parent_id`: found again (and reopened unless it
        FINISHED) after a retry or a driver restart, else created."""
        cached = self._children.get((parent_id, key))
        if cached is not None:
            if self._ended.get(cached, "FINISHED") != "FINISHED":  # Tune retrying a failed trial
                self.client.update_run(cached, status="RUNNING")
                del self._ended[cached]
            return cached
        found = self._search(
            f"tags.`{TRIAL_KEY_TAG}` = {_quote(key)} AND tags.`{PARENT_TAG}` = {_quote(parent_id)}",
            max_results=1,
        )
        if found:
            run = found[0]
            if run.info.status != "FINISHED":
                self._reopen(run)
            self._log_missing(run, params, tags)
        else:
            # The identifying tags go in with create_run so the run is findable from its first
            # moment.
            all_tags = {
                **_str_values(without_secrets(tags)),
                PARENT_TAG: parent_id,
                TRIAL_KEY_TAG: key,
            }
            run = self.client.create_run(self.experiment_id, tags=all_tags, run_name=name)
            self._log_params(run.info.run_id, params)
        self._children[(parent_id, key)] = run.info.run_id
        return run.info.run_id

    def runs(self, parent_id: str) -> list[Run]:
        """Every child of `parent_id`, oldest first."""
        return self._search(f"tags.`{PARENT_TAG}` = {_quote(parent_id)}")

    def finish(self, run_id: str, status: str = "FINISHED", reason: str | None = None) -> None:
        if status not in TERMINAL_STATUSES:
            raise ValueError(
                f"run status {status!r}: expected one of {', '.join(TERMINAL_STATUSES)}"
            )
        self.flush()
        if reason:
            self.client.set_tag(run_id, STATUS_REASON_TAG, reason)
        self.client.set_terminated(run_id, status)
        self._ended[run_id] = status

    def close_trial(self, run_id: str, status: Status, reason: str | None = None) -> None:
        """A trial's run, closed as the trial store says: its status as a tag, and the run
        FAILED for a failed trial, FINISHED for every other final status."""
        self.set_tags(run_id, {STATUS_TAG: status.value})
        self.finish(run_id, "FAILED" if status is Status.FAILED else "FINISHED", reason)

    def finish_open_children(self, parent_id: str, status: str = "KILLED") -> int:
        """Terminate every child of `parent_id` still RUNNING (the safety net at study end)."""
        if status not in TERMINAL_STATUSES:
            raise ValueError(
                f"run status {status!r}: expected one of {', '.join(TERMINAL_STATUSES)}"
            )
        self.flush()
        running = self._search(
            f"tags.`{PARENT_TAG}` = {_quote(parent_id)} AND attributes.status = 'RUNNING'"
        )
        for run in running:
            self.client.set_terminated(run.info.run_id, status)
            self._ended[run.info.run_id] = status
        return len(running)

    # --- metrics ----------------------------------------------------------------------------

    def last_step(self, run_id: str) -> int:
        """Highest step logged for `run_id` (-1 if none). Read once from the store's history of
        `progress_metric`, then kept up to date in memory."""
        if run_id not in self._last_step:
            history = self.client.get_metric_history(run_id, self.progress_metric)
            self._last_step[run_id] = max((m.step for m in history), default=-1)
        return self._last_step[run_id]

    def log_metrics(self, run_id: str, step: int, metrics: Mapping[str, float]) -> None:
        """Buffer one report; a step at or below `last_step` is a resumed trial repeating itself
        and is dropped. NaN and inf values are dropped per key (MLflow stores them, but they
        break its charts and any sort by the metric)."""
        if step <= self.last_step(run_id):
            return
        self._last_step[run_id] = step
        now_ms = int(time.time() * 1000)
        self._pending.setdefault(run_id, []).extend(
            Metric(key, float(value), now_ms, step)
            for key, value in metrics.items()
            if math.isfinite(value)
        )
        if time.monotonic() - self._last_flush >= self.flush_every:
            self.flush()

    def flush(self) -> None:
        """Send every buffered metric. A run's batch leaves the buffer only once sent, so a failed
        call can be retried by the next flush."""
        for run_id in list(self._pending):
            batch = self._pending[run_id]
            while batch:
                self.client.log_batch(run_id, metrics=batch[:MAX_METRICS_PER_BATCH])
                del batch[:MAX_METRICS_PER_BATCH]
            del self._pending[run_id]
        self._last_flush = time.monotonic()

    # --- artifacts and tags -----------------------------------------------------------------

    def log_text(self, run_id: str, text: str, artifact_file: str) -> None:
        self.client.log_text(run_id, text, artifact_file)

    def log_datasets(self, run_id: str, datasets: list[Mapping[str, str]]) -> None:
        """The data a run trained and validated on, as MLflow dataset inputs: each a mapping
        with name, digest (at most 36 characters), source_type, source (JSON), profile (JSON)
        and context ("training", "validation"). Logging one again is a no-op in MLflow."""
        self.client.log_inputs(
            run_id,
            datasets=[
                DatasetInput(
                    Dataset(
                        d["name"], d["digest"], d["source_type"], d["source"], None, d["profile"]
                    ),
                    tags=[InputTag(DATASET_CONTEXT_TAG, d["context"])],
                )
                for d in datasets
            ],
        )

    def set_tags(self, run_id: str, tags: Mapping[str, Any]) -> None:
        items = [RunTag(k, v) for k, v in _str_values(without_secrets(tags)).items()]
        for chunk in _chunks(items, MAX_PARAMS_OR_TAGS_PER_BATCH):
            self.client.log_batch(run_id, tags=chunk)

    def delete_tag(self, run_id: str, key: str) -> None:
        self.client.delete_tag(run_id, key)

    # --- models (see models.py) --------------------------------------------------------------

    def log_model(self, run_id: str, checkpoint, metadata: Mapping[str, Any] | None = None) -> int:
        """The trained model of a training checkpoint as an MLflow pyfunc model under `model/`
        of run `run_id`, its size tagged (`models.MODEL_BYTES_TAG`): its size in bytes."""
        return models.log_model(self.client, run_id, checkpoint, dict(metadata or {}))

    def register_model(self, name: str, candidate: models.Candidate, tags: Mapping) -> str:
        """A trial's logged model as a version of registered model `name`: the version."""
        return models.register(self.client, name, candidate, dict(tags))

    # --- helpers ----------------------------------------------------------------------------

    def get_run(self, run_id: str) -> Run | None:
        """The active run with this id, or None if there is none."""
        return self._get_run(run_id)

    def _get_run(self, run_id: str) -> Run | None:
        try:
            run = self.client.get_run(run_id)
        except MlflowException as exc:
            if exc.error_code in (
                "RESOURCE_DOES_NOT_EXIST",
                "NOT_FOUND",
                "INVALID_PARAMETER_VALUE",
            ):
                return None
            raise
        return run if run.info.lifecycle_stage == "active" else None

    def _reopen(self, run: Run) -> None:
        if run.info.status != "RUNNING":
            self.client.update_run(run.info.run_id, status="RUNNING")

    def _log_params(self, run_id: str, params: Mapping[str, Any]) -> None:
        items = [Param(k, v) for k, v in _str_values(without_secrets(params)).items()]
        for chunk in _chunks(items, MAX_PARAMS_OR_TAGS_PER_BATCH):
            self.client.log_batch(run_id, params=chunk)

    def _log_missing(self, run: Run, params: Mapping[str, Any], tags: Mapping[str, Any]) -> None:
        """On a reopened run: log params it lacks (MLflow params are immutable, so a changed value
        is left as first logged) and refresh the tags (those may change)."""
        have = run.data.params
        self._log_params(run.info.run_id, {k: v for k, v in params.items() if k not in have})
        if tags:
            self.set_tags(run.info.run_id, tags)

    def _search(self, filter_string: str, max_results: int | None = None) -> list[Run]:
        return search_all(self.client, self.experiment_id, filter_string, max_results)


def _str_values(values: Mapping[str, Any]) -> dict[str, str]:
    return {str(k): str(v) for k, v in values.items()}
