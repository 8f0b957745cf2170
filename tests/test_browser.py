"""What a user sees, in a real headless Chromium (Debian's `chromium`, driven by Playwright):
the MLflow UI that `vaestudy ui` opens for a finished smoke study.

Screenshots are kept in test-artifacts/ (or $VAESTUDY_TEST_ARTIFACTS). Without chromium or
Playwright these tests skip, unless VAESTUDY_REQUIRE_BROWSER=1 (CI sets it after installing
chromium), where a missing browser is a failure.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from conftest import subprocess_env
from mlflow_server import free_port

ROOT = Path(__file__).resolve().parents[1]
ENV = subprocess_env()
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
# As the machine's own probe starts it: no sandbox as root, and no calls to Google's hosts.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = Path(os.environ.get("VAESTUDY_TEST_ARTIFACTS", ROOT / "test-artifacts"))

pytestmark = pytest.mark.browser


def _require_browser():
    missing = None if importlib.util.find_spec("playwright") else "the playwright package"
    if not os.path.exists(CHROMIUM):
        missing = f"chromium ({CHROMIUM})"
    if missing:
        if os.environ.get("VAESTUDY_REQUIRE_BROWSER") == "1":
            pytest.fail(f"browser tests need {missing}")
        pytest.skip(f"browser tests need {missing} (apt install chromium)")


@pytest.fixture(scope="module")
def browser():
    _require_browser()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield b
        b.close()


@pytest.fixture(scope="module")
def smoke_study(finished_smoke_study):
    folder = finished_smoke_study.folder
    params = [json.loads(p.read_text())["params"] for p in (folder / "trials").glob("*/trial.json")]
    return folder, sorted(",".join(f"{k}={v}" for k, v in p.items()) for p in params)


def _wait_up(url: str, proc: subprocess.Popen, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2):
                return
        except OSError:
            assert time.monotonic() < deadline and proc.poll() is None, "the UI did not come up"
            time.sleep(0.5)


def test_vaestudy_ui_lands_on_every_trial_with_its_kl_chart(browser, smoke_study):
    folder, names = smoke_study
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "cli.main", "ui", str(folder), "--port", str(port)],
        cwd=ROOT,
        env=ENV,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        line = proc.stdout.readline()
        url = next(w for w in line.split() if w.startswith("http://"))
        assert url.startswith(f"http://127.0.0.1:{port}/#/experiments/"), line
        _wait_up(f"http://127.0.0.1:{port}", proc)
        page = browser.new_page(viewport={"width": 1600, "height": 1000})
        page.goto(url)
        for name in names:  # every trial, by its swept values, without expanding anything
            page.get_by_text(name, exact=True).first.wait_for(timeout=60_000)
        assert page.get_by_text(f"{len(names)} matching runs").count() == 1
        page.get_by_placeholder("Search metric charts").fill("valid/kl_bpc")
        chart = page.get_by_text("valid/kl_bpc", exact=True)
        chart.first.wait_for(timeout=30_000)
        for name in names:  # the chart's legend names the trials it draws
            page.get_by_text(f"{name} (valid/kl_bpc)").first.wait_for(timeout=30_000)
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "mlflow-ui.png"))
        page.close()
    finally:
        os.killpg(proc.pid, 15)
        proc.wait(timeout=30)


def _serve(args: list[str], port: int):
    proc = subprocess.Popen(
        [sys.executable, "-m", "cli.main", *args, "--port", str(port)],
        cwd=ROOT,
        env=ENV,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    line = proc.stdout.readline()
    url = next((w for w in line.split() if w.startswith("http://")), None)
    assert url, line
    return proc, url


def _wait_http(url: str, proc: subprocess.Popen, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            assert time.monotonic() < deadline and proc.poll() is None, f"{url} did not come up"
            time.sleep(0.5)


def test_optuna_dashboard_shows_the_trials_and_the_pareto_front_of_kl_frontier(browser, tmp_path):
    import optuna

    folder = tmp_path / "klf"
    res = subprocess.run(
        [
            sys.executable,
            "-m",
            "cli.main",
            "run",
            "kl-frontier",
            "--preset",
            "smoke",
            "--storage",
            str(folder),
            "--json",
            "--no-report",
        ],
        cwd=ROOT,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    study = optuna.load_study(study_name="kl-frontier", storage=f"sqlite:///{folder}/optuna.db")
    done = [t.number for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    front = sorted(t.number for t in study.best_trials)
    assert done and front
    port = free_port()
    proc, url = _serve(["ui", str(folder), "--optuna"], port)
    try:
        assert url.startswith(f"http://127.0.0.1:{port}/dashboard/studies/"), url
        _wait_http(f"http://127.0.0.1:{port}/api/studies", proc)
        page = browser.new_page(viewport={"width": 1600, "height": 1200})
        page.goto(url)
        page.get_by_text("Pareto Front", exact=True).first.wait_for(timeout=60_000)
        page.get_by_text("Best Trials", exact=True).first.wait_for(timeout=30_000)
        for number in front:  # the front's trials, listed under Best Trials
            page.get_by_text(f"Trial {number}", exact=True).first.wait_for(timeout=30_000)
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "optuna-dashboard.png"), full_page=True)
        page.goto(f"{url}/trials")
        for number in done:  # every trial of the study in the trial list
            page.get_by_text(f"Trial {number}", exact=False).first.wait_for(timeout=30_000)
        page.close()
    finally:
        os.killpg(proc.pid, 15)
        proc.wait(timeout=30)


def test_ray_dashboard_lists_the_trials_actors_of_a_running_study(browser, tmp_path):
    folder = tmp_path / "alpha"
    driver = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "cli.main",
            "run",
            "alpha-sweep",
            "--preset",
            "smoke",
            "--storage",
            str(folder),
            "--set",
            "steps=3000",
            "--set",
            "eval_every=100",
            "--collapse-threshold",
            "0",
            "--no-report",
        ],
        cwd=ROOT,
        env=ENV,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        dashboard = None
        for line in driver.stderr:  # vaestudy's own progress lines: the dashboard is named in one
            if "dashboard http://" in line:
                dashboard = line.split("dashboard ", 1)[1].split()[0]
                break
        assert dashboard and dashboard.startswith("http://127.0.0.1:"), dashboard
        # The user's way to the token of a local cluster, never printed here.
        ray_cli = Path(sys.executable).with_name("ray")
        token = (
            subprocess.run(
                [str(ray_cli), "get-auth-token"], capture_output=True, text=True, env=ENV
            )
            .stdout.strip()
            .splitlines()[-1]
        )
        assert len(token) >= 16
        page = browser.new_page(viewport={"width": 1600, "height": 1000})
        page.goto(dashboard)
        page.get_by_placeholder("Enter your authentication token").fill(token)
        page.get_by_role("button", name="Submit").click()
        page.get_by_text("Authentication Token Required").wait_for(state="hidden", timeout=30_000)
        deadline = time.monotonic() + 120
        while (
            True
        ):  # the Actors page, reloaded until Tune's trial actors are listed (the dashboard polls)
            page.goto(f"{dashboard}/#/actors")
            try:
                page.get_by_text("trainable", exact=True).first.wait_for(timeout=10_000)
                break
            except Exception:  # noqa: BLE001 - playwright's TimeoutError: try again until the deadline
                assert time.monotonic() < deadline and driver.poll() is None, (
                    "no trial actor on the Actors page"
                )
                page.reload()
        assert page.get_by_text("ImplicitFunc", exact=True).count() >= 1
        assert page.get_by_text("ALIVE", exact=True).count() >= 1
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "ray-dashboard.png"))
        page.close()
    finally:
        os.killpg(driver.pid, 9)
        out, err = driver.communicate(timeout=60)
    seen = out + err + (folder / "vaestudy.log").read_text()
    assert token not in seen, "the cluster's token was printed or logged"
