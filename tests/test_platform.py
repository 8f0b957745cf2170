"""Acceptance tests of the study platform, end to end against real parts: a local Ray, SQLite
MLflow and Optuna stores, a real `mlflow server` read back over REST, and a two-node Ray
cluster on loopback.

Ray start-ups are few and shared: one in-process smoke study (read by several tests), one
subprocess study tracked by an `mlflow server` (read back over REST and watched for listening
sockets while it runs), and one two-node cluster.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request
import uuid
from pathlib import Path

import click
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from cli.main import cli
from conftest import LEAKY, QUIET, smoke_run, subprocess_env
from mlflow_server import ADMIN_PASSWORD, ADMIN_USER, free_port
from studies.spec import trial_key

ROOT = Path(__file__).resolve().parents[1]
VAESTUDY = [sys.executable, "-m", "cli.main"]
ENV = subprocess_env()
METRICS = (
    "train/total_bpc",
    "train/rec_bpc",
    "train/kl_bpc",
    "train/aux_bpc",
    "train/kl_weight",
    "train/chars_per_s",
    "valid/total_bpc",
    "valid/rec_bpc",
    "valid/kl_bpc",
    "valid/aux_bpc",
    "valid/active_units",
    "valid/mutual_info",
)
LOOPBACK = {"127.0.0.1", "::ffff:127.0.0.1", "::1"}


@pytest.fixture(scope="module", autouse=True)
def quiet_env():
    """The module's environment, restored afterwards (a local Ray sets variables of its own)."""
    saved = dict(os.environ)
    for k in LEAKY:
        os.environ.pop(k, None)
    os.environ.update(QUIET)
    yield
    os.environ.clear()
    os.environ.update(saved)


def vaestudy_cli(*args: str):
    """`vaestudy ARGS` in-process; stdout and stderr kept apart."""
    return CliRunner().invoke(cli, list(args))


def _stat(pid: int | str) -> tuple[int, int] | None:
    """(parent pid, start time) of a process, or None once it is gone."""
    try:
        fields = (
            Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        )  # the name may hold spaces
    except OSError:
        return None
    return int(fields[1]), int(fields[19])


def descendants(root: int) -> dict[int, int]:
    """pid -> start time of `root` and every process below it, from /proc."""
    children: dict[int, list[tuple[int, int]]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (st := _stat(entry)) is not None:
            children.setdefault(st[0], []).append((int(entry), st[1]))
    root_stat = _stat(root)
    if root_stat is None:
        return {}
    found, todo = {}, [(root, root_stat[1])]
    while todo:
        pid, start = todo.pop()
        if pid not in found:
            found[pid] = start
            todo.extend(children.get(pid, []))
    return found


def listening_sockets() -> list[tuple[str, int, str]]:
    """(process name, pid, local address) of every listening TCP socket, from `ss`."""
    out = subprocess.run(["ss", "-ltnpH"], capture_output=True, text=True, check=True).stdout
    found = []
    for line in out.splitlines():
        fields = line.split()
        if len(fields) < 6:
            continue
        host = fields[3].rsplit(":", 1)[0].strip("[]")
        for name, pid in re.findall(r'\("([^"]*)",pid=(\d+)', line):
            found.append((name, int(pid), host))
    return found


def kill_all(procs: dict[int, int]) -> None:
    """SIGKILL each process of `procs` (pid -> start time) still alive; a pid now used by
    another process (another start time) is left alone."""
    for pid, start in procs.items():
        st = _stat(pid)
        if st is not None and st[1] == start:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass


# --- 1. a smoke study in-process, tracked in the folder's SQLite store ----------------------------


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    """One `vaestudy run alpha-sweep --preset smoke` for every test that reads its results."""
    import ray

    from mlflow.tracking import MlflowClient

    from studies.run import ray_adapter

    folder = tmp_path_factory.mktemp("smoke") / "alpha"
    ray_adapter.shutdown()  # a Ray another test module left initialised would be reused
    # The run starts its local Ray here, in this process, as a user's run does in theirs; every
    # Ray worker process it ever has is seen by its title while it lives.
    watch = TitleWatch(("ray::IDLE", "ray::ImplicitFunc"))
    try:
        with watch:
            res = vaestudy_cli(
                "run", "alpha-sweep", "--preset", "smoke", "--storage", str(folder), "--json"
            )
    finally:
        ray_adapter.shutdown()  # the tests below only read what the run left behind
    assert not ray.is_initialized()
    assert res.exit_code == 0, (res.output[-4000:], res.exception)
    assert (
        "4 trials, 0 already finished, 4 to run" in res.stderr and "Ray: 1 node(s)" in res.stderr
    ), res.stderr
    cpus = int(re.search(r"Ray: 1 node\(s\), (\d+) CPUs", res.stderr).group(1))
    client = MlflowClient(f"sqlite:///{folder}/mlflow.db")
    return {
        "folder": folder,
        "summary": json.loads(res.stdout),
        "client": client,
        "cpus": cpus,
        "workers": set(watch.seen),
        "actors": {pid for pid, seen in watch.seen.items() if "ray::ImplicitFunc" in seen},
    }


def titles() -> dict[int, str]:
    """pid -> command line (a Ray worker's process title) of this process's descendants."""
    found = {}
    for pid in descendants(os.getpid()):
        try:
            found[pid] = Path(f"/proc/{pid}/cmdline").read_text().replace("\0", " ").strip()
        except OSError:
            pass
    return found


class TitleWatch(threading.Thread):
    """Collects, every 0.1 s while in its `with`, each descendant titled with one of
    `prefixes`: pid -> the prefixes it was seen with."""

    def __init__(self, prefixes: tuple[str, ...]):
        super().__init__(daemon=True)
        self.prefixes, self.seen, self.done = prefixes, {}, threading.Event()

    def run(self):
        while not self.done.is_set():
            for pid, title in titles().items():
                for prefix in self.prefixes:
                    if title.startswith(prefix):
                        self.seen.setdefault(pid, set()).add(prefix)
            self.done.wait(0.1)

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.done.set()
        self.join()


def test_a_local_rays_trials_run_in_the_workers_it_prestarted(smoke):
    """Ray Tune gives each trial actor a runtime env, which a prestarted worker cannot take;
    on a local Ray vaestudy creates them without one (`ray_adapter`), so the first trials
    start in the Python workers Ray started with the node instead of waiting for new ones.
    Ray starts one worker per CPU with the node; a trial actor that could not take one would
    have had a worker of its own started for it (and the idle one stopped), so the run's
    whole life would have seen more worker processes than CPUs. (With Ray's default, an idle
    worker reaped 1 s after Tune reserved the CPUs, this failed in CI on a loaded machine, and
    here every time with a reaping delay of 0; `ray_adapter.LOCAL_SYSTEM_CONFIG` holds it.)"""
    assert smoke["actors"], "no trial actor was seen"
    assert smoke["actors"] == smoke["workers"] and len(smoke["workers"]) == smoke["cpus"], (
        smoke["actors"],
        smoke["workers"],
        smoke["cpus"],
    )


def _maps(pid: int, library: str) -> bool:
    try:
        return library in Path(f"/proc/{pid}/maps").read_text()
    except OSError:
        return False


@pytest.mark.integration
def test_a_local_rays_workers_load_torch_before_any_trial_asks_for_them():
    """The workers a local Ray starts import what a trial needs (torch among it) as they start
    (`ray_adapter.LOCAL_SYSTEM_CONFIG`), so the first trials' actors do not wait for it; with
    Ray's default an idle worker has only Ray loaded, and this waits in vain."""
    from studies.run import ray_adapter

    ray_adapter.shutdown()  # a Ray another test module left initialised would be reused
    ray_adapter.connect(None, num_cpus=1, dashboard=False)
    try:
        deadline, idle, loaded = time.monotonic() + 120, [], []
        while not (idle and loaded == idle):  # nothing is submitted: the workers stay idle
            assert time.monotonic() < deadline, (idle, loaded)
            time.sleep(0.2)
            idle = sorted(pid for pid, t in titles().items() if t.startswith("ray::IDLE"))
            loaded = [pid for pid in idle if _maps(pid, "libtorch_cpu")]
    finally:
        ray_adapter.shutdown()


def runs_of(client, experiment: str):
    exp = client.get_experiment_by_name(experiment)
    assert exp is not None, f"no MLflow experiment {experiment!r}"
    runs = client.search_runs([exp.experiment_id], max_results=1000)
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    return parents, [r for r in runs if "mlflow.parentRunId" in r.data.tags]


def test_smoke_study_tracks_one_finished_child_run_per_grid_point(smoke):
    from studies.loading import load_study

    client, folder = smoke["client"], smoke["folder"]
    assert smoke["summary"]["statuses"] == {"completed": 4}, smoke["summary"]
    parents, children = runs_of(client, "alpha-sweep")
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    assert parents[0].info.run_id == smoke["summary"]["parent_run_id"]

    points = load_study("alpha-sweep").points("smoke")
    assert len(points) == 4
    assert sorted(r.data.tags["vaestudy.trial_key"] for r in children) == sorted(
        trial_key(p) for p in points
    )
    for run in children:
        key = run.data.tags["vaestudy.trial_key"]
        assert run.info.status == "FINISHED", key
        assert run.data.tags["mlflow.parentRunId"] == parents[0].info.run_id
        # params: the trial's full config (every scalar value as logged), and its sweep point
        config = json.loads((folder / "trials" / key / "trial.json").read_text())["config"]
        assert {"alpha", "anneal", "length", "model", "steps", "latent", "seed"} <= set(config)
        for name, value in config.items():
            assert name in run.data.params, (key, name)
            if not isinstance(value, list):
                assert run.data.params[name] == str(value), (
                    key,
                    name,
                    run.data.params[name],
                    value,
                )
        assert run.data.params["length"] == "52"
        # one history point per report for every metric
        for metric in METRICS:
            steps = sorted(m.step for m in client.get_metric_history(run.info.run_id, metric))
            assert steps == [20, 40], (key, metric, steps)
        artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
        assert {"samples.txt", "config.json"} <= artifacts, (key, artifacts)
        local = Path(client.download_artifacts(run.info.run_id, "samples.txt", str(folder.parent)))
        text = local.read_text()
        assert text.startswith("# samples from the prior"), key
        assert (
            "# samples from the prior (temperature 1)" in text and "# interpolation between" in text
        ), text
        # where the trial's time went, as its worker measured it: parts of its wall time, in MLflow
        # too
        trial = json.loads((folder / "trials" / key / "trial.json").read_text())
        spent = trial["seconds"]
        assert set(spent) == {"train", "eval", "final", "checkpoint", "report"}, spent
        assert (
            spent["train"] > 0 and 0 < spent["final"] <= spent["eval"] and spent["checkpoint"] > 0
        ), spent
        assert (
            sum(spent[k] for k in ("train", "eval", "checkpoint", "report"))
            <= trial["trial_wall_s"]
        ), trial
        assert run.data.metrics["time/train_s"] == pytest.approx(spent["train"]), key
    # study.json: this one driver run, its start, end and concurrency; the report states the use of
    # its slots
    (launch,) = json.loads((folder / "study.json").read_text())["launches"]
    assert (
        launch["attempt"] == 1
        and launch["concurrency"] >= 1
        and launch["started"] < launch["ended"]
    ), launch
    report = (folder / "report.md").read_text()
    assert (
        "1 driver run(s)" in report
        and "trial(s) at once" in report
        and "slot utilisation" in report
    ), report
    use = json.loads((folder / "claims.json").read_text())["compute"]
    assert (
        0 < use["utilisation"] <= 1
        and use["concurrency"] == [launch["concurrency"]]
        and not use["estimated"]
    ), use


def test_smoke_trials_parquet_matches_the_mlflow_runs(smoke):
    client, folder = smoke["client"], smoke["folder"]
    rows = pq.read_table(folder / "trials.parquet").to_pylist()
    _, children = runs_of(client, "alpha-sweep")
    by_key = {r.data.tags["vaestudy.trial_key"]: r for r in children}
    assert {r["trial_key"] for r in rows} == set(by_key)
    for key, run in by_key.items():
        valid = {
            r["step"]: r["total_bpc"]
            for r in rows
            if r["trial_key"] == key and r["split"] == "valid"
        }
        history = {
            m.step: m.value for m in client.get_metric_history(run.info.run_id, "valid/total_bpc")
        }
        assert set(valid) == set(history), key
        for step, value in valid.items():
            assert history[step] == pytest.approx(value, rel=1e-9), (key, step)


def test_smoke_study_leaves_no_run_running_and_a_rerun_runs_nothing(smoke):
    client, folder = smoke["client"], smoke["folder"]
    exp = client.get_experiment_by_name("alpha-sweep")
    running = client.search_runs([exp.experiment_id], "attributes.status = 'RUNNING'")
    assert running == []
    _, children_before = runs_of(client, "alpha-sweep")

    res = vaestudy_cli(
        "run", "alpha-sweep", "--preset", "smoke", "--storage", str(folder), "--json", "--no-report"
    )
    assert res.exit_code == 0, (res.output[-3000:], res.exception)
    assert "4 already finished, 0 to run" in res.stderr, res.stderr
    assert "Ray:" not in res.stderr  # nothing to run: no Ray started
    assert json.loads(res.stdout)["statuses"] == {"completed": 4}
    parents, children = runs_of(client, "alpha-sweep")
    assert sorted(r.info.run_id for r in children) == sorted(r.info.run_id for r in children_before)
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    assert client.search_runs([exp.experiment_id], "attributes.status = 'RUNNING'") == []


# --- 2 and 5. a subprocess study tracked by an `mlflow server`, watched for listening sockets -----


@pytest.fixture(scope="module")
def server_run(tmp_path_factory, basic_auth_server):
    """A short alpha-sweep run as a subprocess, tracked by a real `mlflow server`. While it runs,
    every 0.5 s, the listening TCP sockets of its process tree are recorded."""
    tmp = tmp_path_factory.mktemp("server")
    url = basic_auth_server  # conftest's, shared with test_auth
    # the server asks for credentials; the user writes them into the URI
    host = urllib.parse.urlsplit(url).netloc
    driver = subprocess.Popen(
        [
            *VAESTUDY,
            *smoke_run(tmp / "alpha"),
            "--set",
            "steps=20",
            "--set",
            "eval_every=10",
            "--tracking-uri",
            f"http://{ADMIN_USER}:{ADMIN_PASSWORD}@{host}",
            "--json",
        ],
        cwd=ROOT,
        env={k: v for k, v in ENV.items() if not k.startswith("MLFLOW_TRACKING_")},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    sockets: set[tuple[str, int, str]] = set()
    tree: dict[int, int] = {}
    try:
        deadline = time.monotonic() + 300
        while driver.poll() is None:
            assert time.monotonic() < deadline, "the study did not finish in 300 s"
            now = descendants(driver.pid)
            tree.update(now)
            sockets |= {s for s in listening_sockets() if s[1] in now}
            time.sleep(0.1)  # a trial's worker listens for seconds: polled often enough
        out, err = driver.communicate(timeout=30)
    finally:
        kill_all(tree)  # the driver if it hangs, and any Ray process it failed to stop
        driver.wait(timeout=30)
    assert driver.returncode == 0, err[-4000:]
    yield {
        "url": url,
        "summary": json.loads(out.strip().splitlines()[-1]),
        "stdout": out,
        "stderr": err,
        "sockets": sockets,
    }


def rest(url: str, path: str, body: dict | None = None, **query) -> dict:
    full = f"{url}/api/2.0/mlflow/{path}" + (f"?{urllib.parse.urlencode(query)}" if query else "")
    data = json.dumps(body).encode() if body is not None else None
    login = base64.b64encode(f"{ADMIN_USER}:{ADMIN_PASSWORD}".encode()).decode()
    req = urllib.request.Request(
        full,
        data=data,
        headers={"Content-Type": "application/json", "Authorization": f"Basic {login}"},
        method="POST" if data else "GET",
    )
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.loads(r.read())


@pytest.mark.slow
def test_study_tracked_by_an_mlflow_server_reads_back_over_rest(server_run):
    url = server_run["url"]
    assert server_run["summary"]["tracking_uri"] == url
    exp = rest(url, "experiments/get-by-name", experiment_name="alpha-sweep")["experiment"]
    runs = rest(
        url, "runs/search", {"experiment_ids": [exp["experiment_id"]], "max_results": 1000}
    )["runs"]
    tags = {
        r["info"]["run_id"]: {t["key"]: t["value"] for t in r["data"].get("tags", [])} for r in runs
    }
    parents = [r for r in runs if "mlflow.parentRunId" not in tags[r["info"]["run_id"]]]
    children = [r for r in runs if "mlflow.parentRunId" in tags[r["info"]["run_id"]]]
    assert len(parents) == 1 and parents[0]["info"]["status"] == "FINISHED"
    assert parents[0]["info"]["run_id"] == server_run["summary"]["parent_run_id"]
    assert len(children) == 4 and all(r["info"]["status"] == "FINISHED" for r in children)
    assert len({tags[r["info"]["run_id"]]["vaestudy.trial_key"] for r in children}) == 4
    for run in children:
        run_id = run["info"]["run_id"]
        assert tags[run_id]["mlflow.parentRunId"] == parents[0]["info"]["run_id"]
        params = {p["key"]: p["value"] for p in run["data"]["params"]}
        assert params["steps"] == "20" and params["alpha"] in ("0.2", "0.8"), params
        for metric in ("valid/total_bpc", "train/kl_weight", "valid/active_units"):
            history = rest(url, "metrics/get-history", run_id=run_id, metric_key=metric)["metrics"]
            assert sorted(m["step"] for m in history) == [10, 20], (run_id, metric, history)
        files = {f["path"] for f in rest(url, "artifacts/list", run_id=run_id).get("files", [])}
        assert {"samples.txt", "config.json"} <= files, (run_id, files)


@pytest.mark.slow
def test_credentials_written_into_the_uri_are_written_nowhere_else(server_run):
    """The study ran against a server that asks for credentials, given inside the URI: the
    password is in no file of the study folder, not on the terminal, and in no run's params
    or tags; the URI is recorded without it."""
    folder = Path(server_run["summary"]["folder"])
    assert json.loads((folder / "study.json").read_text())["tracking_uri"] == server_run["url"]
    secret = ADMIN_PASSWORD.encode()
    assert [p for p in folder.rglob("*") if p.is_file() and secret in p.read_bytes()] == []
    assert ADMIN_PASSWORD not in server_run["stdout"] + server_run["stderr"]
    exp = rest(server_run["url"], "experiments/get-by-name", experiment_name="alpha-sweep")
    runs = rest(
        server_run["url"],
        "runs/search",
        {"experiment_ids": [exp["experiment"]["experiment_id"]], "max_results": 1000},
    )["runs"]
    assert len(runs) == 5  # the parent and the 4 trials
    for run in runs:
        values = [x["value"] for x in run["data"].get("params", []) + run["data"].get("tags", [])]
        assert not any(ADMIN_PASSWORD in v for v in values), run["info"]["run_id"]


# MLflow's client would write "View run ... at: URL" to stdout each time a run ends on an HTTP
# tracking server; stdout must stay the JSON summary alone.
@pytest.mark.slow
def test_stdout_is_only_the_json_summary_with_a_tracking_server(server_run):
    assert server_run["stdout"].strip().splitlines() == [json.dumps(server_run["summary"])]


@pytest.mark.slow
def test_the_terminal_shows_only_vaestudys_lines_and_the_log_file_the_rest(server_run, tmp_path):
    # Ray's token warning and MLflow's "Creating initial MLflow database tables" used to be here.
    foreign = [
        ln
        for ln in server_run["stderr"].splitlines()
        if ln.strip() and not ln.startswith("[alpha-sweep] ")
    ]
    assert not foreign, foreign
    log = (Path(server_run["summary"]["folder"]) / "vaestudy.log").read_text()
    assert "ray." in log and "WARNING" in log, log[
        -2000:
    ]  # what was kept off the terminal is kept here


def test_a_run_writes_its_report_and_the_parent_run_carries_it(smoke):
    folder, client, summary = smoke["folder"], smoke["client"], smoke["summary"]
    assert summary["report"] == str(folder / "report.md") and (folder / "claims.json").exists()
    verdicts = json.loads((folder / "claims.json").read_text())["claims"]
    assert summary["claims"] == {c["id"]: c["verdict"] for c in verdicts} and verdicts
    # The verdicts as worked out here from the smoke grid (two alphas) and summary.parquet:
    # Spearman needs three values of alpha; the onset claim needs kl_bpc >= 0.05 somewhere.
    rows = pq.read_table(folder / "summary.parquet").to_pylist()
    onset = {}
    for anneal in (True, False):
        reached = sorted(r["alpha"] for r in rows if r["anneal"] is anneal and r["kl_bpc"] >= 0.05)
        onset[anneal] = reached[0] if reached else None
    if onset[True] is None and onset[False] is None:
        want_onset = "INCONCLUSIVE"
    elif onset[True] is not None and (onset[False] is None or onset[True] < onset[False]):
        want_onset = "PASS"
    else:
        want_onset = "FAIL"
    assert summary["claims"] == {
        "kl-grows-with-alpha": "INCONCLUSIVE",
        "bound-worsens-with-alpha": "INCONCLUSIVE",
        "annealing-lowers-onset": want_onset,
    }, (summary["claims"], onset)
    notes = {c["id"]: c["note"] for c in verdicts}
    assert "Spearman needs >= 3 values of alpha, has 2" in notes["kl-grows-with-alpha"]
    parent = client.get_run(summary["parent_run_id"])
    assert {a.path for a in client.list_artifacts(parent.info.run_id, "report")} >= {
        "report/report.md",
        "report/claims.json",
        "report/summary.parquet",
    }
    assert all(parent.data.tags[f"vaestudy.claim.{c['id']}"] == c["verdict"] for c in verdicts)


@pytest.mark.slow
def test_local_ray_listens_on_loopback_only(server_run):
    sockets = server_run["sockets"]
    names = {name for name, _, _ in sockets}
    # the watch saw the cluster's services and a trial's worker, not only the driver
    assert {"gcs_server", "raylet"} <= names, names
    assert any(n.startswith("ray::ImplicitF") for n in names), names
    exposed = sorted(s for s in sockets if s[2] not in LOOPBACK)
    assert exposed == [], f"Ray processes listen beyond loopback: {exposed}"


# --- 3. a two-node cluster on loopback -----------------------------------------------------------

# `ray start --address ...` refuses to start a worker node under RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0
# ("Multi-node Ray clusters are not supported on Windows and OSX"), and without that variable Ray
# rewrites 127.0.0.1 to the host's address and binds every interface. Ray's own test helper for
# several nodes on one machine, `ray.cluster_utils.Cluster`, starts both nodes on 127.0.0.1.
# It answers "actors" on stdin with the GCS actor table: which node each actor process ran on.
CLUSTER = """
import json, signal, sys
from ray.cluster_utils import Cluster

signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))
dashboard, head_agent, worker_agent = (int(p) for p in sys.argv[1:4])
cluster = Cluster(initialize_head=True, head_node_args=dict(
    num_cpus=1, include_dashboard=False, dashboard_port=dashboard,
    dashboard_agent_listen_port=head_agent))
worker = cluster.add_node(num_cpus=1, dashboard_agent_listen_port=worker_agent)
print(json.dumps({"address": cluster.address, "head": cluster.head_node.node_id,
                  "worker": worker.node_id}),
      flush=True)
try:
    for line in sys.stdin:
        # the worker node lost: its raylet and workers killed at once
        if line.strip() == "kill-worker":
            cluster.remove_node(worker, allow_graceful=False)
            print(json.dumps("killed"), flush=True)
            continue
        actors = cluster.global_state.actor_table(None).values()
        print(json.dumps([{"class": a["ActorClassName"], "pid": a["Pid"],
                           "node": a["Address"]["NodeID"], "state": a["State"]}
                          for a in actors]), flush=True)
finally:
    cluster.shutdown()
"""


@pytest.fixture
def two_node_cluster():
    """(address, head node id, worker node id, ask for the actor table, env to join it)."""
    temp = tempfile.mkdtemp(prefix="vsray-", dir="/tmp")  # short: Ray's socket paths are limited
    # A private RAY_TMPDIR keeps the cluster out of /tmp/ray (its ray_current_cluster file), and
    # token auth (Ray's default) is on with a token of this test's own.
    env = {
        **ENV,
        "RAY_TMPDIR": temp,
        "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
        "RAY_AUTH_MODE": "token",
        "RAY_AUTH_TOKEN": uuid.uuid4().hex,
    }
    proc = subprocess.Popen(
        [sys.executable, "-c", CLUSTER, str(free_port()), str(free_port()), str(free_port())],
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    tree: dict[int, int] = {}
    watchdog = threading.Timer(
        180, proc.kill
    )  # a helper that never answers fails the test, not the run
    watchdog.start()
    try:
        line = proc.stdout.readline()
        watchdog.cancel()
        assert line, "the Ray cluster did not start"
        info = json.loads(line)

        def ask(what: str):
            proc.stdin.write(f"{what}\n")
            proc.stdin.flush()
            return json.loads(proc.stdout.readline())

        def actors() -> list[dict]:
            return ask("actors")

        tree.update(descendants(proc.pid))
        yield info["address"], info["head"], info["worker"], actors, env, lambda: ask("kill-worker")
    finally:
        watchdog.cancel()
        tree.update(descendants(proc.pid))
        try:
            proc.stdin.close()  # the helper shuts the cluster down
            proc.wait(timeout=60)
        except (OSError, subprocess.TimeoutExpired):
            pass
        kill_all(tree)  # whatever shutdown left behind, by pid: only processes this test started
        shutil.rmtree(temp, ignore_errors=True)


@pytest.mark.slow
def test_study_runs_trials_on_both_nodes_of_a_cluster(tmp_path, two_node_cluster):
    address, head, worker, actors, env, _ = two_node_cluster
    folder = tmp_path / "alpha"
    # --max-concurrent 2 lets Tune hold two trials pending at once (with a searcher it holds one
    # otherwise), so the second trial waits for the other node's CPU instead of reusing the first
    # node's actor.
    res = subprocess.run(
        [
            *VAESTUDY,
            "run",
            "alpha-sweep",
            "--preset",
            "smoke",
            "--storage",
            str(folder),
            "--address",
            address,
            "--cpus-per-trial",
            "1",
            "--max-concurrent",
            "2",
            "--json",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=400,
    )
    assert res.returncode == 0, res.stderr[-4000:]
    assert "Ray: 2 node(s), 2 CPUs" in res.stderr, res.stderr[-2000:]
    assert json.loads(res.stdout)["statuses"] == {"completed": 4}

    # Ray's result rows carry the pid of the trainable actor; the GCS actor table says on which
    # node that actor process ran (both nodes share 127.0.0.1 and a hostname, so node_ip can't).
    node_of = {a["pid"]: a["node"] for a in actors() if a["class"] == "ImplicitFunc"}
    trial_nodes = {}
    for result in (folder / "ray" / "attempt-1").glob("*/result.json"):
        rows = [json.loads(line) for line in result.read_text().splitlines() if line.strip()]
        assert rows, result
        pids = {r["pid"] for r in rows}
        assert len(pids) == 1 and pids <= set(node_of), (result, pids, node_of)
        trial_nodes[trial_key(rows[0]["config"])] = node_of[pids.pop()]
    assert len(trial_nodes) == 4
    assert set(trial_nodes.values()) == {head, worker}, trial_nodes


@pytest.mark.slow
def test_a_trial_on_a_lost_worker_node_continues_from_its_checkpoint(tmp_path, two_node_cluster):
    address, head, worker, actors, env, kill_worker = two_node_cluster
    folder, steps, every = tmp_path / "alpha", 600, 30
    driver = subprocess.Popen(
        [
            *VAESTUDY,
            "run",
            "alpha-sweep",
            "--preset",
            "smoke",
            "--storage",
            str(folder),
            "--address",
            address,
            "--cpus-per-trial",
            "1",
            "--max-concurrent",
            "2",
            "--set",
            f"steps={steps}",
            "--set",
            f"eval_every={every}",
            "--collapse-threshold",
            "0",
            "--json",
            "--no-report",
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )

    def rows_by_trial() -> dict[str, list[dict]]:
        out = {}
        for result in (folder / "ray" / "attempt-1").glob("*/result.json"):
            rows = [json.loads(ln) for ln in result.read_text().splitlines() if ln.strip()]
            if rows:
                out[trial_key(rows[0]["config"])] = rows
        return out

    try:
        victim, deadline = None, time.monotonic() + 240
        while victim is None:  # a trial of the worker node with two reports (so two checkpoints)
            assert time.monotonic() < deadline and driver.poll() is None, (
                "no trial reported on the worker node"
            )
            on_worker = {
                a["pid"] for a in actors() if a["node"] == worker and a["state"] == "ALIVE"
            }
            victim = next(
                (
                    k
                    for k, rows in rows_by_trial().items()
                    if len(rows) >= 2 and rows[-1]["pid"] in on_worker
                ),
                None,
            )
            time.sleep(0.5)
        reported = max(r["step"] for r in rows_by_trial()[victim])
        assert kill_worker() == "killed"
        killed_at = time.time()
        out, err = driver.communicate(timeout=400)
    finally:
        if driver.poll() is None:
            os.killpg(driver.pid, signal.SIGKILL)
            driver.communicate()
    assert driver.returncode == 0, err[-4000:]
    assert out.strip().startswith("{"), (
        out[-3000:],
        err[-3000:],
    )  # Ray's own lines stay off stdout
    assert json.loads(out)["statuses"] == {"completed": 4}, err[-3000:]
    rows = rows_by_trial()[victim]
    lost = [r for r in rows if r["pid"] == rows[0]["pid"]]
    after = [r for r in rows if r["pid"] != rows[0]["pid"]]
    assert after, "the lost trial never ran again"
    # It went on from a checkpoint (the last one that reached the driver), not from scratch.
    assert every < after[0]["step"] <= lost[-1]["step"] + every, [
        (r["step"], r["pid"]) for r in rows
    ]
    recovered_s = after[0]["timestamp"] - killed_at  # Ray's timestamp: whole epoch seconds
    print(
        f"lost trial {victim}: step {reported} seen at the kill, {lost[-1]['step']} its last "
        f"report, resumed at step {after[0]['step']}, "
        f"next report {recovered_s:.1f} s after the kill"
    )
    # One MLflow run per trial, the lost one included, each step of it logged exactly once.
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{folder}/mlflow.db")
    _, children = runs_of(client, "alpha-sweep")
    assert sorted(r.data.tags["vaestudy.trial_key"] for r in children) == sorted(rows_by_trial())
    assert all(r.info.status == "FINISHED" for r in children)
    run = next(r for r in children if r.data.tags["vaestudy.trial_key"] == victim)
    logged = [m.step for m in client.get_metric_history(run.info.run_id, "valid/total_bpc")]
    assert sorted(logged) == list(range(every, steps + 1, every)), logged


# --- 4. bad input: one line, exit code 2, nothing created -----------------------------------------


BAD_RUNS = {
    "unknown study": (["run", "no-such-study"], "unknown study 'no-such-study'"),
    "unknown preset": (["run", "alpha-sweep", "--preset", "huge"], "unknown preset 'huge'"),
    "unknown key": (["run", "alpha-sweep", "--set", "alhpa=1"], "alhpa"),
    "bad value": (["run", "alpha-sweep", "--set", "length=4"], "length"),
    "swept key": (["run", "alpha-sweep", "--set", "alpha=0.5"], "swept"),
    "unreachable cluster": (["run", "alpha-sweep", "--address", "127.0.0.1:1"], "127.0.0.1:1"),
    "unreachable server": (
        ["run", "alpha-sweep", "--tracking-uri", "http://127.0.0.1:1"],
        "http://127.0.0.1:1",
    ),
    "file store": (["run", "alpha-sweep", "--tracking-uri", "file:///tmp/x"], "file:///tmp/x"),
    "missing corpus": (
        ["run", "alpha-sweep", "--set", "corpus=/nonexistent/path.txt"],
        "/nonexistent/path.txt",
    ),
    "ptb offline": (["run", "alpha-sweep", "--preset", "cpu"], "ptb"),
}


@pytest.mark.parametrize("case", list(BAD_RUNS))
def test_bad_run_input_is_one_line_exit_2_and_creates_nothing(case, tmp_path, monkeypatch):
    data = tmp_path / "data"
    data.mkdir()
    monkeypatch.setenv("VAESTUDY_DATA", str(data))  # no PTB here, and no way to download it
    monkeypatch.setenv("VAESTUDY_PTB_URL", "http://127.0.0.1:1")
    monkeypatch.chdir(tmp_path)
    args, text = BAD_RUNS[case]
    folder = tmp_path / "study"
    res = vaestudy_cli(*args, "--storage", str(folder))
    assert_one_line_error(res, text)
    assert not folder.exists(), sorted(p.name for p in folder.rglob("*"))
    assert not list(tmp_path.rglob("mlflow.db")) and not list(tmp_path.rglob("optuna.db"))
    assert not (tmp_path / "vaestudy-runs").exists()


BAD_STUDY_FILES = {  # a study file passed by path, with one bad entry each
    "space": (
        'space={"alpha": ("float", 0.0, 1.0)}, sampler="tpe", metric="valid/kl_bpc"',
        "space entry alpha=('float', 0.0, 1.0); expected Float(lo, hi)",
    ),
    "figure": (
        'grid={"alpha": (0.2,)}, figure="alpha|anneal"',
        "figure='alpha|anneal'; expected Figure(kind, ...)",
    ),
    "claim": (
        'grid={"alpha": (0.2,)}, claims=(Claim("c", "c", "all_above", dict(where={}, y="kl_bpc", '
        "threshold=0.1)),)",
        "claim c: check='all_above' is not a function",
    ),
}


@pytest.mark.parametrize("case", list(BAD_STUDY_FILES))
def test_a_bad_study_file_is_one_line_exit_2_and_creates_nothing(case, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    fields, text = BAD_STUDY_FILES[case]
    path = tmp_path / "my_study.py"
    path.write_text(
        "from studies.presets import cpu, paper, smoke\n"
        "from studies.spec import Claim, Study\n"
        f'STUDY = Study(name="mine", title="t", reproduces="search", {fields}, '
        'presets={"smoke": smoke(), "cpu": cpu(steps=10), "paper": paper()})\n'
    )
    folder = tmp_path / "study"
    res = vaestudy_cli("run", str(path), "--storage", str(folder))
    assert_one_line_error(res, text)
    assert not folder.exists() and not (tmp_path / "vaestudy-runs").exists()
    assert not list(tmp_path.rglob("mlflow.db")) and not list(tmp_path.rglob("optuna.db"))


@pytest.mark.parametrize(
    "args", [["train", "transformer"], ["resume", "/nonexistent"]], ids=" ".join
)
def test_bad_command_input_is_one_line_exit_2(args, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    res = vaestudy_cli(*args)
    assert_one_line_error(res, args[1])
    assert list(tmp_path.iterdir()) == []


def assert_one_line_error(res, text: str) -> None:
    assert res.exit_code == 2, (res.exit_code, res.output, res.exception)
    assert "Traceback" not in res.output
    lines = res.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error:"), res.output
    assert text in lines[0], lines[0]


# --- 6. every command's help has an example -------------------------------------------------------


def all_commands(group: click.Group, path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    found = [path]
    for name, cmd in sorted(group.commands.items()):
        found += (
            all_commands(cmd, (*path, name)) if isinstance(cmd, click.Group) else [(*path, name)]
        )
    return found


def test_the_command_walk_finds_nested_commands():
    assert {(), ("run",), ("resume",), ("data",), ("data", "fetch"), ("bench", "overhead")} <= set(
        all_commands(cli)
    )


@pytest.mark.parametrize("path", all_commands(cli), ids=lambda p: " ".join(("vaestudy", *p)))
def test_every_command_has_an_example_in_its_help(path):
    res = CliRunner().invoke(cli, [*path, "--help"])
    assert res.exit_code == 0, res.output
    assert "Example" in res.output, res.output
