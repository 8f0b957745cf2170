"""What the test modules share: the environment of a process a test starts, and one finished
smoke study for every test that only reads a finished smoke study.

A study run costs a Ray start-up and its trials, so the suite runs this one once per session.
A test that changes a study (resumes it, kills it, runs it again) starts its own.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import pytest

ROOT = Path(__file__).resolve().parents[1]
# Set for every process a test starts: no usage stats or telemetry, lines as they are written
# (tests read a driver's output while it runs), matplotlib without a display, and a local Ray
# without its dashboard (about 1-2 s of every study launch; the test of the dashboard asks for
# it with --dashboard).
QUIET = {
    "RAY_USAGE_STATS_ENABLED": "0",
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "PYTHONUNBUFFERED": "1",
    "MPLBACKEND": "Agg",
    "VAESTUDY_DASHBOARD": "0",
}
# A training test's torch threads: 1 where the runner asks for one (OMP_NUM_THREADS=1: `make
# test`'s unit tier beside the other tiers, each of `make test-fast`'s two xdist workers), else 2.
# Two 2-thread processes on 2 cores stall at every parallel region (a 4.5 s test took 17 s).
TORCH_THREADS = 1 if os.environ.get("OMP_NUM_THREADS") == "1" else 2
# Variables that would point a run somewhere else than the test says.
LEAKY = ("MLFLOW_TRACKING_URI", "VAESTUDY_STORAGE", "VAESTUDY_ADDRESS", "RAY_ADDRESS")


def subprocess_env(**extra: str) -> dict[str, str]:
    """The environment for a process a test starts: this process's, without LEAKY, with QUIET
    and `extra` set."""
    return {**{k: v for k, v in os.environ.items() if k not in LEAKY}, **QUIET, **extra}


def smoke_run(folder: Path) -> list[str]:
    """`vaestudy`'s arguments for the smoke alpha-sweep into `folder` (add options after)."""
    return ["run", "alpha-sweep", "--preset", "smoke", "--storage", str(folder)]


def process_tree(pid: int) -> set[tuple[int, str]]:
    """`pid` and its descendants now, each as (pid, start time) from /proc (a reused pid is
    another process)."""
    parents: dict[int, list[int]] = {}
    starts: dict[int, str] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        p = int(stat.parent.name)
        parents.setdefault(int(fields[1]), []).append(p)
        starts[p] = fields[19]
    tree, todo = set(), [pid]
    while todo:
        p = todo.pop()
        if p in starts:
            tree.add((p, starts[p]))
        todo.extend(parents.get(p, []))
    return tree


def running(procs: set[tuple[int, str]]) -> set[int]:
    """The processes of `procs` still running (a zombie has ended)."""
    alive = set()
    for pid, start in procs:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[19] == start and fields[0] != "Z":
            alive.add(pid)
    return alive


def command_line(pid: int) -> str:
    """A process's command line ("" once it has gone)."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_text().replace("\0", " ")
    except OSError:
        return ""


def wait_for(predicate, timeout: float, what: str) -> None:
    """Poll `predicate` every 0.2 s until it holds; fail naming `what` after `timeout` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def stop_killed_driver(tree: set[tuple[int, str]]) -> None:
    """After a driver's SIGKILL: wait (bounded) until Ray's reaper has taken down the local Ray
    it started (`tree`: its process tree from before the kill), then stop Ray's two agents,
    which outlive a killed driver."""
    agents = {p for p in tree if "Agent" in command_line(p[0])}
    wait_for(lambda: not running(tree - agents), 60, "the killed driver's Ray processes to exit")
    for pid in running(agents):
        os.kill(pid, signal.SIGKILL)


@dataclass(frozen=True)
class FinishedStudy:
    """A study run to its end: its folder and what the driver printed."""

    folder: Path
    stdout: str
    stderr: str
    configs: Path  # every TrainConfig its processes built: (pid, config) JSON lines


SMOKE_MODEL = "vae-smoke"  # the registered model of the shared smoke study's best trial
COUNT_HOOK = ROOT / "tests" / "config_count"  # its sitecustomize counts TrainConfig constructions


@pytest.fixture(scope="session")
def finished_smoke_study(tmp_path_factory) -> FinishedStudy:
    """`vaestudy run alpha-sweep --preset smoke --no-report --register vae-smoke`, once per
    session, as a user runs it: a subprocess with the human summary on stdout. Its readers:
    test_report (which also writes the report into it, the only change anyone makes),
    test_browser, test_models_logged and test_trial_config (which reads `configs`, the
    TrainConfig constructions its processes logged)."""
    folder = tmp_path_factory.mktemp("smoke-study") / "alpha"
    configs = folder.parent / "configs.jsonl"
    path = os.pathsep.join(
        p for p in (str(COUNT_HOOK), str(ROOT), os.environ.get("PYTHONPATH")) if p
    )
    res = run_vaestudy(
        *smoke_run(folder),
        "--no-report",
        "--register",
        SMOKE_MODEL,
        env=subprocess_env(COUNT_CONFIGS=str(configs), PYTHONPATH=path),
    )
    return FinishedStudy(folder, res.stdout, res.stderr, configs)


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory) -> Iterator[str]:
    """One plain `mlflow server` on 127.0.0.1 for the session, for the tests that only talk to
    one: each works in an experiment of its own name (a start costs ~6-10 s; the outage
    tests and PostgreSQL's start their own)."""
    from mlflow_server import running_mlflow_server

    with running_mlflow_server(tmp_path_factory.mktemp("mlflow-server")) as url:
        yield url


@pytest.fixture(scope="session")
def basic_auth_server(tmp_path_factory) -> Iterator[str]:
    """One `mlflow server --app-name basic-auth` for the session (test_auth, test_platform's
    `server_run`): its admin is mlflow_server.ADMIN_USER, and nothing changes its users."""
    from mlflow_server import BASIC_AUTH, running_mlflow_server

    with running_mlflow_server(tmp_path_factory.mktemp("auth-server"), **BASIC_AUTH) as url:
        yield url


def run_vaestudy(
    *args: str, timeout: float = 600, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    """`vaestudy ARGS` as a user runs it, a subprocess in the repository; it must exit 0."""
    res = subprocess.run(
        [sys.executable, "-m", "cli.main", *args],
        cwd=ROOT,
        env=env or subprocess_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    return res


# --- tiers -----------------------------------------------------------------------------------
# `unit`: no Ray, no server, no study run, no browser (`make test-fast`); `integration`: starts
# Ray, a server or a study run; `browser`: drives Chromium. A test is `integration` when it is
# marked so (or `slow`), or uses a fixture that runs a study or a server; `browser` when its
# module says so; every other test is `unit`.
INTEGRATION_FIXTURES = {
    "finished_smoke_study",  # conftest: one study run per session
    "smoke",  # test_platform: a study run
    "server_run",  # test_platform: a study on an MLflow server
    "two_node_cluster",  # test_platform: a Ray cluster
    "mlflow_server",  # conftest: an MLflow server
    "basic_auth_server",  # conftest: an MLflow server with basic auth
}


def pytest_collection_modifyitems(config, items):
    for item in items:
        if item.get_closest_marker("browser"):
            continue
        if (
            item.get_closest_marker("integration")
            or item.get_closest_marker("slow")
            or INTEGRATION_FIXTURES & set(item.fixturenames)
        ):
            item.add_marker(pytest.mark.integration)
        else:
            item.add_marker(pytest.mark.unit)
