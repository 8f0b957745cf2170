"""Tracking URIs: which are allowed, checked before a study writes anything; the shared tags."""

from __future__ import annotations

import base64
import dataclasses
import os
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any, Mapping

from textvae_core.config import ALIASES, TrainConfig

TRIAL_KEY_TAG = "vaestudy.trial_key"
GRID_POINT_PARAM = "grid_point"  # a trial's swept values without the seed: its seeds share it
SWEPT_PARAM = "swept"  # the names of a trial's swept keys, comma-separated (seed when swept)
CONFIG_ARTIFACT = "config.json"  # a trial's whole TrainConfig as JSON: the typed record
DATASET_CONTEXT_TAG = "mlflow.data.context"  # MLflow's own input tag: "training", "validation"
PARENT_TAG = "mlflow.parentRunId"  # MLflow's own tag: the UI nests children under the parent by it
STATUS_REASON_TAG = "vaestudy.status_reason"
STATUS_TAG, STUDY_TAG, PRESET_TAG = "vaestudy.status", "vaestudy.study", "vaestudy.preset"
CLAIMS_TAG = "vaestudy.claims"  # the parent run's verdict tally; each claim's: CLAIM_TAG + id
CLAIM_TAG = "vaestudy.claim."


def provenance_tags(version: str, commit: str | None, **facts) -> dict[str, object]:
    """A run's tags that say what made it: `vaestudy.<fact>` for each fact given (study,
    preset, reproduces, storage on a study's parent run; study, preset, model, seed, corpus,
    corpus_sha256 on a trial's), the package version and, in a git checkout, the commit."""
    tags = {f"vaestudy.{k}": v for k, v in facts.items()}
    tags["vaestudy.version"] = version
    if commit:
        tags["vaestudy.git_commit"] = commit
    return tags


OVERRIDE_PARAM = "set."  # a parent run's --set values: "set.<field>"
MODEL_TRIAL_KEY = "vaestudy_trial_key"  # a logged model's metadata: the trial it came from


def parent_params(
    study: str, preset: str, seed: int, trials: int, overrides: Mapping[str, Any]
) -> dict[str, Any]:
    """A study launch's parent-run params: what was run, and each --set value as set.<field>."""
    return {
        "study": study,
        "preset": preset,
        "seed": seed,
        "trials": trials,
        **{f"{OVERRIDE_PARAM}{k}": v for k, v in overrides.items()},
    }


def trial_params(
    params: Mapping[str, Any], config: Mapping[str, Any], point: str
) -> dict[str, Any]:
    """A trial's child-run params, each value once: every config field under its own name (a
    swept value included: `alpha`, `length`, `seed`), a swept key that is no config field
    (`variant`) under its own name, the grid point (`GRID_POINT_PARAM`) and the swept keys'
    names (`SWEPT_PARAM`). Readers take the values' types from `CONFIG_ARTIFACT`."""
    extra = {k: v for k, v in params.items() if ALIASES.get(k, k) not in config}
    return {**config, **extra, GRID_POINT_PARAM: point, SWEPT_PARAM: ",".join(params)}


def swept_values(run_params: Mapping[str, str], config: Mapping[str, Any]) -> dict[str, Any] | None:
    """A trial's swept values from its run: config fields typed from its config record, any
    other swept key (a variant's name) as logged. None for a run logged before `SWEPT_PARAM`."""
    if SWEPT_PARAM not in run_params:
        return None
    names = [n for n in run_params[SWEPT_PARAM].split(",") if n]
    return {
        n: config[ALIASES.get(n, n)] if ALIASES.get(n, n) in config else run_params.get(n)
        for n in names
    }


def claim_tags(tally: str, verdicts: Mapping[str, str]) -> dict[str, str]:
    """The parent run's verdict tags: the tally ("none" without claims) and each claim's."""
    return {CLAIMS_TAG: tally or "none", **{CLAIM_TAG + k: v for k, v in verdicts.items()}}


# MLflow 3's UI opens an experiment by its kind: without this tag it guesses, and a study with
# no logged model lands on the GenAI "Overview" page instead of the training runs.
EXPERIMENT_TAGS = {"mlflow.experimentKind": "custom_model_development"}
TERMINAL_STATUSES = ("FINISHED", "FAILED", "KILLED")
# Substrings that mark a key as a credential; such keys never reach MLflow, whose params and
# tags anyone with read access to the tracking server can see.
CONFIG_FIELDS = frozenset(f.name for f in dataclasses.fields(TrainConfig))
SECRET_MARKERS = ("password", "secret", "token", "access_key", "credential")
# MLflow's per-call limits for log_batch (mlflow.utils.validation).
MAX_PARAMS_OR_TAGS_PER_BATCH = 100
MAX_METRICS_PER_BATCH = 1000
ALLOWED_URIS = "sqlite:///PATH (a local study) or http(s)://HOST:PORT (an `mlflow server`)"


class TrackingError(RuntimeError):
    """A tracking URI or store that cannot be used; the message names it and what is allowed."""


def quiet_stdout() -> None:
    """MLflow prints "View run ... at URL" to stdout when a run ends against a server; stdout of
    `vaestudy run` is its own. The driver calls this before it opens tracking (and `vaestudy
    sample` before it downloads a logged model)."""
    os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
    # and its artifact progress bars (a trial's model is saved and uploaded) stay off stderr
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")


def default_tracking_uri(study_dir: Path) -> str:
    return f"sqlite:///{Path(study_dir).resolve()}/mlflow.db"


def check_tracking_uri(uri: str, timeout: float = 5.0) -> None:
    """Raise TrackingError unless `uri` looks usable. Creates nothing (no db file, no experiment),
    so it can run before a study starts and a bad URI leaves nothing behind."""
    scheme = urllib.parse.urlsplit(uri).scheme.lower()
    if scheme in ("http", "https"):
        _check_server(uri, timeout)
    elif scheme == "sqlite":
        _check_sqlite(uri)
    elif scheme.split("+")[0] in ("postgresql", "mysql", "mssql"):
        return  # an MLflow database backend; the driver reports connection errors when it opens it
    elif scheme == "file" or not scheme:
        # MLflow 3.17 refuses its file store unless MLFLOW_ALLOW_FILE_STORE=true (deprecated).
        raise TrackingError(
            f"tracking URI {uri!r}: MLflow's file store is deprecated; use {ALLOWED_URIS}"
        )
    else:
        raise TrackingError(
            f"tracking URI {uri!r}: scheme {scheme!r} is not supported; use {ALLOWED_URIS}"
        )


USERNAME_ENV, PASSWORD_ENV, TOKEN_ENV = (
    "MLFLOW_TRACKING_USERNAME",
    "MLFLOW_TRACKING_PASSWORD",
    "MLFLOW_TRACKING_TOKEN",
)
CREDENTIALS_HINT = f"set {USERNAME_ENV} and {PASSWORD_ENV} (or {TOKEN_ENV})"


def adopt_uri_credentials(uri: str | None) -> str | None:
    """`uri` without the credentials a user may have written into it (http://user:pass@host),
    which move to MLflow's own variables for this process, so that the URI can be recorded
    (study.json, the log, MLflow) and printed with no password in it."""
    if not uri:
        return uri
    parts = urllib.parse.urlsplit(uri)
    if parts.scheme.lower() not in ("http", "https") or "@" not in parts.netloc:
        return uri
    userinfo, _, hostport = parts.netloc.rpartition("@")
    user, _, password = userinfo.partition(":")
    os.environ[USERNAME_ENV] = urllib.parse.unquote(user)
    if password:
        os.environ[PASSWORD_ENV] = urllib.parse.unquote(password)
    return urllib.parse.urlunsplit(parts._replace(netloc=hostport))


def _auth_headers() -> dict[str, str]:
    """The Authorization header MLflow's client sends for these variables."""
    env = os.environ
    if env.get(USERNAME_ENV) and env.get(PASSWORD_ENV):
        pair = f"{env[USERNAME_ENV]}:{env[PASSWORD_ENV]}".encode()
        return {"Authorization": "Basic " + base64.b64encode(pair).decode()}
    if env.get(TOKEN_ENV):
        return {"Authorization": f"Bearer {env[TOKEN_ENV]}"}
    return {}


def auth_problem(uri: str, status: int) -> str:
    """One line for an HTTP 401 or 403 from the tracking server, naming what to set."""
    if status == 403:
        return (
            f"tracking server {uri} denied this user what a study needs (HTTP 403): ask its "
            f"admin for EDIT permission, or {CREDENTIALS_HINT} for a user who has it"
        )
    if _auth_headers():
        return (
            f"tracking server {uri} refused the credentials given (HTTP 401): check "
            f"{USERNAME_ENV} and {PASSWORD_ENV} (or {TOKEN_ENV})"
        )
    return f"tracking server {uri} needs credentials (HTTP 401): {CREDENTIALS_HINT}"


def _check_server(uri: str, timeout: float) -> None:
    base = uri.rstrip("/")
    try:
        with urllib.request.urlopen(f"{base}/health", timeout=timeout):
            return
    except urllib.error.HTTPError:
        pass  # something answered; servers behind a proxy may not expose /health, so ask the API
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise TrackingError(
            f"tracking URI {uri!r}: no server answered within {timeout:g} s "
            f"({_reason(exc)}); start one with `mlflow server` or use {ALLOWED_URIS}"
        ) from None
    request = urllib.request.Request(
        f"{base}/api/2.0/mlflow/experiments/search?max_results=1", headers=_auth_headers()
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout):
            return
    except urllib.error.HTTPError as exc:
        if exc.code in (401, 403):
            raise TrackingError(auth_problem(uri, exc.code)) from None
        raise TrackingError(
            f"tracking URI {uri!r}: the server answered HTTP {exc.code} to the MLflow API; "
            f"expected an MLflow server: {ALLOWED_URIS}"
        ) from None
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise TrackingError(
            f"tracking URI {uri!r}: the MLflow API did not answer ({_reason(exc)})"
        ) from None


def _reason(exc: BaseException) -> str:
    return str(getattr(exc, "reason", None) or exc) or type(exc).__name__


def sqlite_path(uri: str) -> str | None:
    """The database path of an `sqlite:///PATH[?query]` URI, or None for any other URI."""
    return uri.split("?", 1)[0][len("sqlite:///") :] if uri.startswith("sqlite:///") else None


def _check_sqlite(uri: str) -> None:
    path = sqlite_path(uri) or ""
    if path in ("", ":memory:"):
        raise TrackingError(
            f"tracking URI {uri!r}: an in-memory database loses every run when the study "
            f"ends; use {ALLOWED_URIS}"
        )
    db = Path(path).absolute()
    if db.exists():
        if not db.is_file() or not os.access(db, os.R_OK | os.W_OK):
            raise TrackingError(f"tracking URI {uri!r}: {db} is not a readable and writable file")
        return
    # MLflow creates missing folders itself; only the first existing ancestor must be writable.
    folder = db.parent
    while not folder.exists():
        folder = folder.parent
    if not folder.is_dir() or not os.access(folder, os.W_OK | os.X_OK):
        raise TrackingError(
            f"tracking URI {uri!r}: cannot create {db.parent} ({folder} is not a writable folder)"
        )


def without_secrets(values: Mapping[str, Any]) -> dict[str, Any]:
    """`values` less any key that names a credential (see SECRET_MARKERS), case-insensitively.
    A config field's name ("tokens", as in "set.tokens") is never a credential."""
    return {k: v for k, v in values.items() if not _names_credential(str(k))}


def _names_credential(key: str) -> bool:
    if key.rsplit(".", 1)[-1] in CONFIG_FIELDS:
        return False
    return any(m in key.lower() for m in SECRET_MARKERS)


def artifacts_beside(uri: str) -> str | None:
    """Where a study's artifacts go when it names its tracking store: beside an SQLite
    database (`<its folder>/mlartifacts`, where `vaestudy ui` serves them from), not in MLflow's
    default `./mlruns` under whatever folder the driver ran in; a server chooses its own (None)."""
    path = sqlite_path(uri)
    return None if path is None else (Path(path).absolute().parent / "mlartifacts").as_uri()


def check_existing_store(uri: str) -> None:
    """Like `check_tracking_uri`, and an SQLite store must exist: a report reads runs, so a
    mistyped path is an error, not a new empty database."""
    check_tracking_uri(uri)
    if (db := sqlite_path(uri)) is not None:
        path = Path(db)
        if not path.is_file():
            raise TrackingError(f"tracking URI {uri!r}: no MLflow database at {path}")
