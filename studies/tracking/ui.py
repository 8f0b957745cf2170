"""`vaestudy ui`: the MLflow UI for a study (the server, not the API).

A study folder says where it is tracked (study.json): a SQLite store in the folder is served
here; a tracking server already serves it, so only its URL is given. Either way the URL
lands on the study's experiment, in the training runs view with its charts.
"""

from __future__ import annotations

import os
import sys
import urllib.parse
from dataclasses import dataclass
from pathlib import Path

from mlflow.tracking import MlflowClient

from ..store import StudyStore
from .uris import TrackingError
from .views import CURVES, ensure_tags, view_tags, view_url


@dataclass(frozen=True)
class UiTarget:
    """What `vaestudy ui PATH` shows: a SQLite store to serve, or a server to point at."""

    tracking_uri: str
    experiment: str | None  # the study's experiment (None: a bare store, the UI's own landing page)
    db: Path | None  # the SQLite file to serve; None when a tracking server serves the study
    others: int = 0  # further stores found under a folder of studies


def ui_target(path: str) -> UiTarget:
    """The tracking store of a study folder (local or s3://), or the mlflow.db of a bare store
    folder or of the studies under it; anything else is an error that says what to give."""
    store = StudyStore(path)
    record = store.study()
    if record is not None:
        name = record.identity["study"]
        scheme = urllib.parse.urlsplit(record.tracking_uri).scheme.lower()
        if scheme in ("http", "https"):
            return UiTarget(record.tracking_uri, name, None)
        if scheme != "sqlite":
            raise TrackingError(
                f"{path} is tracked at {record.tracking_uri}; open that store's own UI"
            )
        store.sync_down(("mlflow.db",))  # a remote study's store lives in a local cache
        db = store.local_dir / "mlflow.db"
        if not db.exists():
            raise TrackingError(f"{path} has no MLflow store yet ({db}); run the study first")
        return UiTarget(f"sqlite:///{db}", name, db)
    if store.remote:
        raise TrackingError(
            f"{path} is not a study folder (no study.json); give the folder `vaestudy run` printed"
        )
    folder = Path(path)
    dbs = sorted(folder.glob("mlflow.db")) or sorted(folder.glob("*/mlflow.db"))
    if not dbs:
        raise TrackingError(
            f"{path} is not a study folder (no study.json) and holds no MLflow store (mlflow.db); "
            "give the folder `vaestudy run` printed"
        )
    return UiTarget(f"sqlite:///{dbs[0].resolve()}", None, dbs[0], others=len(dbs) - 1)


def experiment_url(base: str, target: UiTarget, view: str = CURVES) -> str:
    """The UI's page for the study: its experiment's runs page with one of the study's shared
    views (`views`): the KL, reconstruction and total bits/char charts of every trial first,
    or (SEEDS) the trials grouped by grid point, each a mean with its min-max band. A study
    tracked before the views existed gets them here. A bare store: the UI's landing page."""
    base = base.rstrip("/")
    exp = None
    if target.experiment is not None:
        client = MlflowClient(tracking_uri=target.tracking_uri)
        exp = client.get_experiment_by_name(target.experiment)
        if exp is not None:
            ensure_tags(client, exp, view_tags())
    if exp is None:
        return f"{base}/"
    return view_url(base, exp.experiment_id, view)


def server_command(db: Path, host: str, port: int) -> tuple[list[str], dict[str, str]]:
    """The `mlflow server` command line (the one next to this Python, else on PATH) and its
    environment for a study's SQLite store and artifacts, on host:port."""
    exe = Path(sys.executable).with_name("mlflow")
    cmd = [
        str(exe) if exe.exists() else "mlflow",
        "server",
        "--backend-store-uri",
        f"sqlite:///{db.resolve()}",
        "--host",
        host,
        "--port",
        str(port),
        "--workers",
        "1",
        "--default-artifact-root",
        (db.parent / "mlartifacts").resolve().as_uri(),
    ]
    env = {
        **os.environ,
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
    }
    return cmd, env
