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

import hashlib
import io
import json
import os
import uuid
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

FINAL_STATUSES = ("completed", "failed", "collapsed", "stopped")


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

    # --- trials ------------------------------------------------------------------------------
    def trial_keys(self) -> list[str]:
        return self.list_dir("trials")

    def trial(self, key: str) -> dict:
        return self.read_json(f"trials/{key}/trial.json", {})

    def update_trial(self, key: str, **fields: Any) -> dict:
        state = {**self.trial(key), **fields}
        self.write_json(f"trials/{key}/trial.json", state)
        return state

    def finished_trials(self) -> dict[str, dict]:
        out = {}
        for key in self.trial_keys():
            state = self.trial(key)
            if state.get("status") in FINAL_STATUSES:
                out[key] = state
        return out

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
