"""A study's folder: a local path or any pyarrow-filesystem URI (s3://bucket/path, ...).

Layout (relative to the root):
    study.json                 what was run (study, preset, overrides, seed, parent MLflow run)
    trials/<key>/trial.json    one trial: params, status, reason, MLflow run id
    trials/<key>/checkpoint.pt the latest checkpoint (every report)
    trials/<key>/history.parquet every report of the trial so far
    trials.parquet             one row per trial per report per split (written at the end)
    summary.parquet, claims.json, report.md, fig*.png   `vaestudy report` (one row per trial,
                               the paper's claims checked, the figure redrawn)
    ray/                       Ray Tune's experiment state and checkpoints
Files that must be local (the SQLite databases of Optuna and MLflow, the driver lock) live
in `local_dir`: the root itself for a local study, a cache folder for a remote one, whose
databases are copied to the root (`sync_up`) so another machine can resume from it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import os
import uuid
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any, Mapping, Sequence

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from .errors import StudyError


class Status(str, Enum):
    """A trial's status in trial.json. Every one but RUNNING is final."""

    RUNNING = "running"
    COMPLETED = "completed"  # trained to its last step
    FAILED = "failed"  # diverged, or crashed more often than --max-failures
    # stopped early as collapsed (trial.CollapseRule), its last report made final
    COLLAPSED = "collapsed"
    STOPPED = "stopped"  # stopped early by the scheduler (ASHA)

    @property
    def final(self) -> bool:
        return self is not Status.RUNNING


class StudyStatus(str, Enum):
    """How the study's latest launch stands, in study.json."""

    RUNNING = "running"
    INTERRUPTED = "interrupted"  # the driver stopped before the study finished
    COMPLETED = "completed"
    INCOMPLETE = "incomplete"  # the launch ended with trials that did not finish


def _from_json(cls, data: Mapping[str, Any], what: str):
    """A frozen record from its JSON object; a file that is not one is an error in one line."""
    names = {f.name for f in dataclasses.fields(cls)}
    required = {
        f.name
        for f in dataclasses.fields(cls)
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    }
    if not isinstance(data, Mapping) or not required <= set(data):
        raise StudyError(f"{what} is not a vaestudy record: it needs {', '.join(sorted(required))}")
    try:
        return cls(**{k: v for k, v in data.items() if k in names})
    except ValueError as exc:  # a status that is none of the enum's
        raise StudyError(f"{what}: {exc}") from None


@dataclass(frozen=True)
class TrialRecord:
    """trials/<key>/trial.json: one trial as the driver recorded it."""

    params: Mapping[str, Any]  # its sweep point
    config: Mapping[str, Any]  # its full TrainConfig
    status: Status = Status.RUNNING
    reason: str | None = None  # why it failed, collapsed or stopped
    mlflow_run_id: str | None = None
    started: float | None = None  # epoch seconds, first event
    ended: float | None = None
    final: Mapping[str, float] = field(default_factory=dict)  # its last report's metrics
    last_step: int | None = None
    # where trial_wall_s went (TrialReport.seconds)
    seconds: Mapping[str, float] = field(default_factory=dict)
    trial_wall_s: float | None = None  # seconds the trial's own code ran

    def __post_init__(self):
        object.__setattr__(self, "status", Status(self.status))

    @property
    def finished(self) -> bool:
        return self.status.final

    @property
    def wall_s(self) -> float | None:
        if self.trial_wall_s is not None:
            return self.trial_wall_s
        return self.ended - self.started if self.ended and self.started else None

    def to_json(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "status": self.status.value}

    @classmethod
    def from_json(cls, data: Mapping[str, Any], what: str = "trial.json") -> "TrialRecord":
        return _from_json(cls, data, what)


@dataclass(frozen=True)
class StudyRecord:
    """study.json: what was run, where it is tracked, and how its latest launch stands."""

    identity: Mapping[str, Any]  # study, preset, seed, trials, overrides: a resume must match it
    study_ref: str  # the name or study file it was run with
    parent_run_id: str
    tracking_uri: str
    optuna_storage: str
    options: Mapping[str, Any] = field(default_factory=dict)  # the RunOptions, overrides aside
    attempts: int = 1
    status: StudyStatus = StudyStatus.RUNNING
    statuses: Mapping[str, int] = field(default_factory=dict)  # trial status -> count, at the end
    # One per driver run: {"attempt", "started", "ended" (epoch seconds; None while it runs or
    # if it was killed), "concurrency" (trials at once; None until Ray is up)}.
    launches: Sequence[Mapping[str, Any]] = ()

    def __post_init__(self):
        object.__setattr__(self, "status", StudyStatus(self.status))
        # a JSON list reads back equal
        object.__setattr__(self, "launches", tuple(dict(r) for r in self.launches))

    def to_json(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "status": self.status.value}

    @classmethod
    def from_json(cls, data: Mapping[str, Any], what: str = "study.json") -> "StudyRecord":
        return _from_json(cls, data, what)


def is_remote(uri: str) -> bool:
    return "://" in uri and not uri.startswith("file://")


class StudyStore:
    def __init__(self, uri: str | os.PathLike):
        uri = str(uri)
        if is_remote(uri):
            self.fs, self.root = pafs.FileSystem.from_uri(uri)
            self.uri = uri.rstrip("/")
            cache = Path(os.environ.get("VAESTUDY_CACHE", Path.home() / ".cache" / "vaestudy"))
            self.local_dir = cache / "studies" / hashlib.sha256(self.uri.encode()).hexdigest()[:16]
        else:
            path = Path(uri.removeprefix("file://")).expanduser().resolve()
            self.fs, self.root, self.uri = pafs.LocalFileSystem(), str(path), str(path)
            self.local_dir = path
        self.root = self.root.rstrip("/")

    @property
    def remote(self) -> bool:
        return self.local_dir != Path(self.root)

    def path(self, rel: str = "") -> str:
        return f"{self.root}/{rel}" if rel else self.root

    def uri_of(self, rel: str) -> str:
        return f"{self.uri}/{rel}"

    # --- bytes, JSON and Parquet ------------------------------------------------------------
    def exists(self, rel: str) -> bool:
        return self.fs.get_file_info(self.path(rel)).type != pafs.FileType.NotFound

    def read_bytes(self, rel: str) -> bytes:
        with self.fs.open_input_stream(self.path(rel)) as f:
            return f.read()

    def write_bytes(self, rel: str, data: bytes) -> None:
        """Whole-file write: atomic rename locally, a single PUT on object stores."""
        target = self.path(rel)
        parent = target.rsplit("/", 1)[0]
        self.fs.create_dir(parent, recursive=True)
        tmp = target if self.remote else f"{target}.{uuid.uuid4().hex[:8]}.tmp"
        with self.fs.open_output_stream(tmp) as f:
            f.write(data)
        if tmp != target:
            self.fs.move(tmp, target)

    def read_json(self, rel: str, default: Any = None) -> Any:
        if not self.exists(rel):
            return default
        return json.loads(self.read_bytes(rel))

    def write_json(self, rel: str, obj: Any) -> None:
        self.write_bytes(rel, json.dumps(obj, indent=1, sort_keys=True, default=str).encode())

    def write_table(self, rel: str, table: pa.Table) -> None:
        buf = io.BytesIO()
        pq.write_table(table, buf)
        self.write_bytes(rel, buf.getvalue())

    def read_table(self, rel: str) -> pa.Table:
        return pq.read_table(io.BytesIO(self.read_bytes(rel)))

    def upload(self, local: str | os.PathLike, rel: str) -> None:
        self.write_bytes(rel, Path(local).read_bytes())

    def download(self, rel: str, local: str | os.PathLike) -> Path:
        local = Path(local)
        local.parent.mkdir(parents=True, exist_ok=True)
        local.write_bytes(self.read_bytes(rel))
        return local

    def list_dir(self, rel: str) -> list[str]:
        if not self.exists(rel):
            return []
        infos = self.fs.get_file_info(pafs.FileSelector(self.path(rel)))
        return sorted(i.base_name for i in infos)

    # --- the study and its trials -------------------------------------------------------------
    def study(self) -> StudyRecord | None:
        """study.json, or None where there is none (not a study folder yet)."""
        data = self.read_json("study.json")
        return None if data is None else StudyRecord.from_json(data, self.uri_of("study.json"))

    def save_study(self, record: StudyRecord) -> None:
        self.write_json("study.json", record.to_json())

    def trial_keys(self) -> list[str]:
        return self.list_dir("trials")

    def trial(self, key: str) -> TrialRecord | None:
        """trials/<key>/trial.json, or None where the trial has no record (yet)."""
        rel = f"trials/{key}/trial.json"
        data = self.read_json(rel)
        return None if data is None else TrialRecord.from_json(data, self.uri_of(rel))

    def save_trial(self, key: str, record: TrialRecord) -> TrialRecord:
        self.write_json(f"trials/{key}/trial.json", record.to_json())
        return record

    # The last two checkpoints of a trial: a damaged latest one leaves the one before.
    CHECKPOINTS = ("checkpoint.pt", "checkpoint.prev.pt")

    def save_checkpoint(self, key: str, local: str | os.PathLike) -> None:
        latest, previous = (f"trials/{key}/{name}" for name in self.CHECKPOINTS)
        if self.exists(latest):
            self.fs.move(self.path(latest), self.path(previous))
        self.upload(local, latest)

    def checkpoints(self, key: str) -> list[str]:
        """The trial's checkpoints in the store, newest first."""
        return [rel for name in self.CHECKPOINTS if self.exists(rel := f"trials/{key}/{name}")]

    def trials(self) -> dict[str, TrialRecord]:
        """Every trial with a record, by key."""
        return {key: rec for key in self.trial_keys() if (rec := self.trial(key)) is not None}

    def finished_trials(self) -> dict[str, TrialRecord]:
        return {key: rec for key, rec in self.trials().items() if rec.finished}

    # --- local databases of a remote study ----------------------------------------------------
    def sync_down(self, names: tuple[str, ...] = ("optuna.db", "mlflow.db")) -> None:
        if not self.remote:
            return
        for name in names:
            if not (self.local_dir / name).exists() and self.exists(f"local/{name}"):
                self.download(f"local/{name}", self.local_dir / name)

    def sync_up(self, names: tuple[str, ...] = ("optuna.db", "mlflow.db")) -> None:
        if not self.remote:
            return
        for name in names:
            if (self.local_dir / name).exists():
                self.upload(self.local_dir / name, f"local/{name}")
