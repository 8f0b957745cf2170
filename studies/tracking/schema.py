"""A new SQLite tracking store, copied from an empty one made once per machine and MLflow
version: MLflow builds a store by running its ~60 schema migrations (1.5-3.5 s measured here),
which every study launch and every smoke run in the test suite would pay again."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import mlflow
from mlflow.tracking import MlflowClient

from .uris import sqlite_path


def _cache_dir() -> Path:
    root = os.environ.get("XDG_CACHE_HOME", "").strip() or Path.home() / ".cache"
    return Path(root) / "vaestudy"


def seed_sqlite_store(uri: str) -> None:
    """Give `uri` (sqlite:///PATH) an empty MLflow schema if PATH does not exist yet, from the
    cached template (made here the first time). Any other URI, or an existing file: nothing.
    The template's own "Default" experiment (id 0) comes with it; studies never use it."""
    path = sqlite_path(uri)
    if path is None:
        return
    db = Path(path)
    if db.exists():
        return
    template = _cache_dir() / f"mlflow-{mlflow.__version__}-empty.db"
    try:
        if not template.exists():
            template.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=template.parent, suffix=".db")
            os.close(fd)
            os.unlink(tmp)  # MLflow makes the file itself
            MlflowClient(tracking_uri=f"sqlite:///{tmp}").search_experiments(max_results=1)
            os.replace(tmp, template)  # atomic: a concurrent driver sees all or nothing
        db.parent.mkdir(parents=True, exist_ok=True)
        fd, part = tempfile.mkstemp(dir=db.parent, prefix=".mlflow-", suffix=".db")
        os.close(fd)
        shutil.copyfile(template, part)
        os.replace(part, db)
    except OSError:
        return  # no cache to write (read-only home): MLflow builds the store itself
