"""A tracking server with authentication (`mlflow server --app-name basic-auth` on 127.0.0.1):
no credentials and a wrong password are one line and exit 2 with nothing created, and
credentials lost mid-study are one line. (A study run with the credentials written into the
URI, and the password written nowhere: test_platform's `server_run`.)"""

from __future__ import annotations

import subprocess
import sys

import pytest
from conftest import ROOT, smoke_run, subprocess_env
from mlflow_server import ADMIN_PASSWORD as PASSWORD


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
            "needs credentials (HTTP 401): set MLFLOW_TRACKING_USERNAME and "
            "MLFLOW_TRACKING_PASSWORD",
        ),
        (
            {"MLFLOW_TRACKING_USERNAME": "admin", "MLFLOW_TRACKING_PASSWORD": "wrong"},
            "refused the credentials given (HTTP 401)",
        ),
    ],
    ids=["no-credentials", "wrong-password"],
)
def test_a_server_that_turns_the_user_away_is_one_line_and_nothing_is_created(
    basic_auth_server, tmp_path, env, says
):
    folder = tmp_path / "study"
    res = vaestudy([*smoke_run(folder), "--tracking-uri", basic_auth_server], **env)
    assert res.returncode == 2, res.stderr[-2000:]
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and says in lines[0] and "Traceback" not in res.stderr, res.stderr
    assert not folder.exists() and res.stdout == ""


def test_credentials_lost_mid_study_stop_tracking_in_one_line(basic_auth_server, monkeypatch):
    """A password changed or revoked while a study runs: the driver's next MLflow call is
    refused, and the tracker gives one line naming what to set instead of MLflow's traceback."""
    from studies.tracking import StudyTracker, TrackingError

    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "admin")
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", PASSWORD)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    tracker = StudyTracker(basic_auth_server, "auth-mid-study", flush_every=0)
    parent = tracker.start_parent(None, "p", {}, {})
    tracker.log_metrics(parent, 1, {"valid/total_bpc": 2.0})
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "revoked")
    with pytest.raises(TrackingError) as err:
        tracker.log_metrics(parent, 2, {"valid/total_bpc": 1.9})
    assert "refused the credentials given (HTTP 401)" in str(err.value)
    assert "vaestudy resume" in str(err.value) and "\n" not in str(err.value)
    assert tracker.unreachable == str(err.value)
