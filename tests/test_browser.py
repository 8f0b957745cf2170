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

from conftest import command_line, process_tree, running, subprocess_env
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


FIRST_CHARTS = ("valid/kl_bpc", "valid/rec_bpc", "valid/total_bpc")
CHART_HEIGHT = 200  # a chart card is at least this high (the view asks for 220 px)
VIEWPORT = {"width": 1400, "height": 900}


def _vaestudy_ui(folder: Path):
    """`vaestudy ui FOLDER` on a free port: the process and the two URLs it prints (the
    study's first screen, and its seeds grouped by grid point), once the server answers."""
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
    first, second = proc.stdout.readline(), proc.stdout.readline()
    urls = [w for w in (first + second).split() if w.startswith("http://")]
    assert len(urls) == 2 and urls[0].startswith(f"http://127.0.0.1:{port}/#/experiments/"), (
        first + second
    )
    _wait_up(f"http://127.0.0.1:{port}", proc)
    return proc, urls


def _stop(proc):
    """SIGTERM to `vaestudy ui`'s process group, as a process manager stops it: the server it
    started (in a session of its own) must go with it."""
    tree = process_tree(proc.pid)
    os.killpg(proc.pid, 15)
    proc.wait(timeout=30)
    deadline = time.monotonic() + 30
    while running(tree):
        assert time.monotonic() < deadline, [command_line(p) for p in running(tree)]
        time.sleep(0.2)


# true when neither the element nor its two nearest ancestors clip their text (ellipsis)
_DRAWN_WHOLE = """el => [el, el.parentElement, el.parentElement?.parentElement]
    .every(e => !e || e.scrollWidth <= e.clientWidth + 1)"""
# the box of the element's nearest ancestor at least as high as a chart card: the card
_CARD_BOX = """(el, height) => {
    for (let e = el; e; e = e.parentElement) {
        if (e.offsetHeight >= height) {
            const r = e.getBoundingClientRect();
            return {x: r.x, y: r.y, width: r.width, height: r.height};
        }
    }
    return null;
}"""


def _inside(box, viewport=VIEWPORT) -> bool:
    return (
        box is not None
        and box["x"] >= 0
        and box["y"] >= 0
        and box["x"] + box["width"] <= viewport["width"]
        and box["y"] + box["height"] <= viewport["height"]
    )


def test_the_first_screen_of_vaestudy_ui_is_the_studys_curves_and_its_trials(browser, smoke_study):
    """The URL `vaestudy ui` prints shows, with no input, in a 1400x900 window: the KL,
    reconstruction and total bits/char charts, and every trial by name; timings come after."""
    folder, names = smoke_study
    proc, (url, _) = _vaestudy_ui(folder)
    try:
        page = browser.new_page(viewport=VIEWPORT)
        page.goto(url)
        for name in names:  # every trial, by its swept values, without expanding anything
            page.get_by_text(name, exact=True).first.wait_for(timeout=60_000)
        assert page.get_by_text(f"{len(names)} matching runs").count() == 1
        titles = {}
        for key in FIRST_CHARTS:
            title = page.get_by_text(key, exact=True).first
            title.wait_for(timeout=30_000)
            titles[key] = title.bounding_box()
        page.wait_for_timeout(1000)  # let the layout settle before measuring
        titles = {k: page.get_by_text(k, exact=True).first.bounding_box() for k in FIRST_CHARTS}
        trials = {n: page.get_by_text(n, exact=True).first.bounding_box() for n in names}
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "mlflow-first-screen.png"))
        assert all(_inside(b) for b in titles.values()), titles
        assert all(_inside(b) for b in trials.values()), trials
        # each chart whole on the screen, its title drawn whole (not cut to "val...")
        for key in FIRST_CHARTS:
            title = page.get_by_text(key, exact=True).first
            assert title.evaluate(_DRAWN_WHOLE), f"{key}'s title is cut on screen"
            assert _inside(title.evaluate(_CARD_BOX, CHART_HEIGHT)), f"{key}'s chart is cut"
        # KL then reconstruction in the first row, the total under them
        kl, rec, total = (titles[k] for k in FIRST_CHARTS)
        assert kl["x"] < rec["x"] and round(kl["y"]) == round(rec["y"]) < total["y"]
        # the timing section comes after the curves (closed: its header only)
        timing = page.get_by_text("time", exact=True).first
        assert (
            timing.bounding_box() is None
            or timing.bounding_box()["y"] > titles[FIRST_CHARTS[0]]["y"]
        )
        # the model-training navigation, not the GenAI one
        assert page.get_by_text("Evaluation runs", exact=True).count() == 0
        page.close()
    finally:
        _stop(proc)


@pytest.fixture(scope="module")
def seeded_store(tmp_path_factory):
    """A study-shaped MLflow store (no training): 2 grid points x 2 seeds, logged through the
    driver's own StudyTracker, with known curves so the groups' bands have width."""
    from studies.spec import grid_point, trial_key, trial_name
    from studies.store import StudyRecord, StudyStore
    from studies.tracking import StudyTracker, trial_params

    folder = tmp_path_factory.mktemp("seeded") / "alpha"
    folder.mkdir()
    uri = f"sqlite:///{folder}/mlflow.db"
    tracker = StudyTracker(uri, "alpha-sweep", (folder / "mlartifacts").as_uri(), flush_every=0)
    parent = tracker.start_parent(None, "alpha-sweep [smoke]", {}, {})
    points = {}
    for alpha in (0.2, 0.8):
        for seed in (0, 1):
            params = {"alpha": alpha, "seed": seed}
            points.setdefault(grid_point(params), []).append(trial_name(params))
            run = tracker.child_run(
                parent,
                trial_key(params),
                trial_name(params),
                trial_params(params, params, grid_point(params)),
                {},
            )
            for step in (10, 20, 30, 40):
                kl = alpha * step / 40 + 0.1 * seed
                tracker.log_metrics(
                    run,
                    step,
                    {
                        "valid/kl_bpc": kl,
                        "valid/rec_bpc": 4 - kl,
                        "valid/total_bpc": 4 + 0.1 * seed,
                    },
                )
            tracker.finish(run)
    tracker.finish(parent)
    StudyStore(folder).save_study(
        StudyRecord(
            {"study": "alpha-sweep", "preset": "smoke", "seed": 0, "trials": 4, "overrides": {}},
            "alpha-sweep",
            parent,
            uri,
            f"sqlite:///{folder}/optuna.db",
        )
    )
    return folder, points


def test_the_seeds_view_has_one_entry_per_grid_point_charted_as_a_mean_with_a_band(
    browser, seeded_store
):
    folder, points = seeded_store
    proc, (_, url) = _vaestudy_ui(folder)
    try:
        page = browser.new_page(viewport=VIEWPORT)
        page.goto(url)
        for point in points:  # one group row per grid point, named by its values
            page.get_by_text(f"Group: {point}").first.wait_for(timeout=60_000)
            assert page.get_by_text(f"Group: {point}").count() == 1
        page.get_by_text(FIRST_CHARTS[0], exact=True).first.wait_for(timeout=30_000)
        page.wait_for_timeout(2000)
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "mlflow-seeds-grouped.png"))
        # each group's line has its min-max band: a filled area per group in each chart
        fills = page.locator("path.js-fill")
        assert fills.count() >= len(points), fills.count()
        # and the chart's legend names the groups, not the seeds' runs
        for point in points:
            assert page.get_by_text(f"{point} (valid/kl_bpc)").count() >= 1
        page.close()
    finally:
        _stop(proc)


def test_the_parent_run_shows_the_summary_as_a_table(browser, smoke_study, tmp_path):
    """The report logs the summary as an MLflow table; the parent run's artifact view draws
    it as a table with a row per trial (the report goes to tmp_path: the shared study's
    folder stays as test_report expects it, while MLflow gets the same artifacts)."""
    from studies.results.report import write_report

    folder, names = smoke_study
    write_report(str(folder), out=str(tmp_path / "report"))
    state = json.loads((folder / "study.json").read_text())
    proc, (url, _) = _vaestudy_ui(folder)
    try:
        base, _, rest = url.partition("/#/experiments/")
        exp = rest.split("/")[0]
        page = browser.new_page(viewport=VIEWPORT)
        page.goto(
            f"{base}/#/experiments/{exp}/runs/{state['parent_run_id']}/artifacts/summary.json"
            "?workflowType=machine_learning"
        )
        table = page.get_by_role("table").first
        table.wait_for(timeout=60_000)
        page.get_by_role("columnheader").first.wait_for(timeout=30_000)
        headers = {t.strip() for t in page.get_by_role("columnheader").all_inner_texts()}
        assert {"trial_key", "status", "total_bpc", "kl_bpc"} <= headers, headers
        assert page.get_by_role("row").count() == 1 + len(names)  # the header and one per trial
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "mlflow-summary-table.png"))
        page.close()
    finally:
        _stop(proc)


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
            "--num-samples",
            "2",  # one round of trials at 2 at a time: enough for a front to show
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
        _stop(proc)


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
            "--dashboard",  # the tests' environment turns it off (VAESTUDY_DASHBOARD=0)
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
