"""A tracking server with authentication (`mlflow server --app-name basic-auth` on 127.0.0.1):
no credentials and a wrong password are one line and exit 2 with nothing created; the right
credentials, even written into the URI, run the study and the password is written nowhere."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.parse

import pytest
from conftest import ROOT, subprocess_env
from mlflow_server import MlflowServer

PASSWORD = "s3cret-Pw-4417"  # the admin's: the server creates the user from it
SECRET_KEY = "flask-session-key-for-tests"


@pytest.fixture(scope="module")
def auth_server(tmp_path_factory):
    server = MlflowServer(
        tmp_path_factory.mktemp("auth"),
        app_name="basic-auth",
        env={"MLFLOW_AUTH_ADMIN_PASSWORD": PASSWORD, "MLFLOW_FLASK_SERVER_SECRET_KEY": SECRET_KEY},
    )
    server.start()
    yield server
    server.stop()


def vaestudy(args, **env):
    return subprocess.run(
        [sys.executable, "-m", "cli.main", *args],
        cwd=ROOT,
        env={
            **{k: v for k, v in subprocess_env().items() if not k.startswith("MLFLOW_TRACKING_")},
            **env,
        },
        capture_output=True,
        text=True,
        timeout=600,
    )


@pytest.mark.parametrize(
    "env, says",
    [
        (
            {},
            "needs credentials (HTTP 401): set MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD",
        ),
        (
            {"MLFLOW_TRACKING_USERNAME": "admin", "MLFLOW_TRACKING_PASSWORD": "wrong"},
            "refused the credentials given (HTTP 401)",
        ),
    ],
    ids=["no-credentials", "wrong-password"],
)
def test_a_server_that_turns_the_user_away_is_one_line_and_nothing_is_created(
    auth_server, tmp_path, env, says
):
    folder = tmp_path / "study"
    res = vaestudy(
        [
            "run",
            "alpha-sweep",
            "--preset",
            "smoke",
            "--storage",
            str(folder),
            "--tracking-uri",
            auth_server.url,
        ],
        **env,
    )
    assert res.returncode == 2, res.stderr[-2000:]
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and says in lines[0] and "Traceback" not in res.stderr, res.stderr
    assert not folder.exists() and res.stdout == ""


def test_credentials_lost_mid_study_stop_tracking_in_one_line(auth_server, monkeypatch):
    """A password changed or revoked while a study runs: the driver's next MLflow call is
    refused, and the tracker gives one line naming what to set instead of MLflow's traceback."""
    from studies.tracking import StudyTracker, TrackingError

    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "admin")
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", PASSWORD)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    tracker = StudyTracker(auth_server.url, "auth-mid-study", flush_every=0)
    parent = tracker.start_parent(None, "p", {}, {})
    tracker.log_metrics(parent, 1, {"valid/total_bpc": 2.0})
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "revoked")
    with pytest.raises(TrackingError) as err:
        tracker.log_metrics(parent, 2, {"valid/total_bpc": 1.9})
    assert "refused the credentials given (HTTP 401)" in str(err.value)
    assert "vaestudy resume" in str(err.value) and "\n" not in str(err.value)
    assert tracker.unreachable == str(err.value)


def test_credentials_in_the_uri_run_the_study_and_the_password_is_written_nowhere(
    auth_server, tmp_path, monkeypatch
):
    from mlflow.tracking import MlflowClient

    folder = tmp_path / "study"
    host = urllib.parse.urlsplit(auth_server.url).netloc
    res = vaestudy(
        [
            "run",
            "alpha-sweep",
            "--preset",
            "smoke",
            "--storage",
            str(folder),
            "--no-report",
            "--tracking-uri",
            f"http://admin:{PASSWORD}@{host}",
        ],
    )
    assert res.returncode == 0, res.stderr[-3000:]
    assert json.loads((folder / "study.json").read_text())["tracking_uri"] == auth_server.url
    secret = PASSWORD.encode()
    leaks = [p for p in folder.rglob("*") if p.is_file() and secret in p.read_bytes()]
    assert leaks == [] and PASSWORD not in res.stdout + res.stderr
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "admin")
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", PASSWORD)
    client = MlflowClient(auth_server.url)
    runs = client.search_runs([client.get_experiment_by_name("alpha-sweep").experiment_id])
    assert len(runs) == 5  # the parent and the 4 trials
    assert all(r.info.status == "FINISHED" for r in runs)
    for run in runs:
        values = [*run.data.params.values(), *run.data.tags.values()]
        assert not any(PASSWORD in v for v in values), run.info.run_id
