"""A tracking server that goes away mid-study: back after ~15 s, the study completes with every
report once; gone for good, the study stops in one line and `vaestudy resume` finishes it.

Real processes throughout: `vaestudy run` as a subprocess, a real `mlflow server` on 127.0.0.1
stopped and started again on the same port and store, a real local Ray.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from conftest import subprocess_env, wait_for
from mlflow_server import MlflowServer

ROOT = Path(__file__).resolve().parents[1]
VAESTUDY = [sys.executable, "-m", "cli.main"]
ENV = subprocess_env()
STEPS, EVERY = 60, 15


def study_args(folder: Path, url: str) -> list[str]:
    return [
        "run",
        "alpha-sweep",
        "--preset",
        "smoke",
        "--storage",
        str(folder),
        "--set",
        f"steps={STEPS}",
        "--set",
        f"eval_every={EVERY}",
        "--collapse-threshold",
        "0",
        "--tracking-uri",
        url,
        "--json",
        "--no-report",
    ]


def start_mid_study(folder: Path, url: str, env: dict) -> subprocess.Popen:
    """`vaestudy run` as a subprocess, returned once two trials have reported."""
    driver = subprocess.Popen(
        [*VAESTUDY, *study_args(folder, url)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    reported = lambda: sum(1 for _ in (folder / "trials").glob("*/checkpoint.pt")) >= 2  # noqa: E731
    wait_for(lambda: reported() or driver.poll() is not None, 240, "reports from two trials")
    assert driver.poll() is None, driver.communicate()[1][-3000:]
    return driver


def logged(url: str) -> tuple[list, dict[str, list[int]]]:
    """The children of the study's experiment and the steps of valid/total_bpc each logged."""
    client = MlflowClient(url)
    exp = client.get_experiment_by_name("alpha-sweep")
    runs = [
        r
        for r in client.search_runs([exp.experiment_id], max_results=100)
        if "mlflow.parentRunId" in r.data.tags
    ]
    return runs, {
        r.data.tags["vaestudy.trial_key"]: sorted(
            m.step for m in client.get_metric_history(r.info.run_id, "valid/total_bpc")
        )
        for r in runs
    }


def assert_complete_once(url: str) -> None:
    runs, steps = logged(url)
    expected = list(range(EVERY, STEPS + 1, EVERY))
    assert len(runs) == len(steps) == 4, [
        r.data.tags["vaestudy.trial_key"] for r in runs
    ]  # no duplicate run
    assert all(r.info.status == "FINISHED" for r in runs), [r.info.status for r in runs]
    assert all(s == expected for s in steps.values()), steps  # every report once, none lost


@pytest.mark.slow
def test_a_tracking_server_back_after_15_s_loses_and_duplicates_nothing(tmp_path):
    server = MlflowServer(tmp_path)
    url = server.start()
    folder = tmp_path / "alpha"
    # Retries 1, 2, 4, 8, 16, 32 s apart (63 s in all) outlast the 15 s outage and a restart
    # that takes up to ~45 s on a loaded machine (MLflow's defaults, 7 retries with factor 2,
    # wait minutes in all).
    window = 63
    env = {**ENV, "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "7", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1"}
    driver = start_mid_study(folder, url, env)
    try:
        server.stop()
        down = time.monotonic()
        time.sleep(15)
        server.start()  # returns once the server answers (bounded by its start timeout)
        # shown if the driver fails: an outage past the retries' window explains it
        print(f"server down {time.monotonic() - down:.1f} s (retries span {window} s)")
        out, err = driver.communicate(timeout=400)
        assert driver.returncode == 0, err[-4000:]
        assert json.loads(out)["statuses"] == {"completed": 4}
        assert_complete_once(url)
    finally:
        if driver.poll() is None:
            os.killpg(driver.pid, signal.SIGKILL)
        server.stop()


@pytest.mark.slow
def test_a_tracking_server_gone_for_good_stops_the_study_in_one_line_and_resume_finishes(tmp_path):
    server = MlflowServer(tmp_path)
    url = server.start()
    folder = tmp_path / "alpha"
    # The client gives up within seconds here (MLflow's defaults wait minutes).
    env = {
        **ENV,
        "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1",
        "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
        "MLFLOW_HTTP_REQUEST_TIMEOUT": "3",
    }
    driver = start_mid_study(folder, url, env)
    try:
        server.stop()
        down = time.monotonic()
        out, err = driver.communicate(timeout=300)
        stopped_after = time.monotonic() - down
    finally:
        if driver.poll() is None:
            os.killpg(driver.pid, signal.SIGKILL)
    foreign = [ln for ln in err.splitlines() if ln.strip() and not ln.startswith("[alpha-sweep] ")]
    assert driver.returncode == 2 and out == "", (driver.returncode, out, err[-3000:])
    assert (
        len(foreign) == 1
        and foreign[0].startswith("Error: the tracking server")
        and "resume" in foreign[0]
    ), foreign
    assert "Traceback" not in err
    print(f"stopped {stopped_after:.1f} s after the server went away")
    assert json.loads((folder / "study.json").read_text())["status"] == "interrupted"

    server.start()
    try:
        res = subprocess.run(
            [*VAESTUDY, "resume", str(folder), "--json", "--no-report"],
            cwd=ROOT,
            env=ENV,
            capture_output=True,
            text=True,
            timeout=400,
        )
        assert res.returncode == 0, res.stderr[-4000:]
        assert json.loads(res.stdout)["statuses"] == {"completed": 4}
        assert_complete_once(url)
    finally:
        server.stop()
