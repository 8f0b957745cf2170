"""`vaestudy ui`: the MLflow UI for a study folder's tracking store (the server, not the API)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from .uris import TrackingError


def find_store(folder: Path) -> tuple[Path, list[Path]]:
    """The mlflow.db of a study folder, or of the studies under it (the first, and all found)."""
    dbs = sorted(folder.glob("mlflow.db")) or sorted(folder.glob("*/mlflow.db"))
    if not dbs:
        raise TrackingError(f"no MLflow store (mlflow.db) in {folder} or its subfolders; run a study first")
    return dbs[0], dbs


def server_command(db: Path, host: str, port: int) -> tuple[list[str], dict[str, str]]:
    """The `mlflow server` command line (the one next to this Python, else on PATH) and its
    environment for a study's SQLite store and artifacts, on host:port."""
    exe = Path(sys.executable).with_name("mlflow")
    cmd = [str(exe) if exe.exists() else "mlflow", "server", "--backend-store-uri", f"sqlite:///{db.resolve()}",
           "--host", host, "--port", str(port), "--workers", "1",
           "--default-artifact-root", (db.parent / "mlartifacts").resolve().as_uri()]
    env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true", "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    return cmd, env
