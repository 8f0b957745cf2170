"""The cluster route for real, on loopback: `ray job submit` to a head + worker started with
`ray start`, a study on S3-compatible storage (moto's server) killed and resumed from it,
and PostgreSQL behind both MLflow and Optuna."""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import optuna
import pytest
from mlflow.tracking import MlflowClient

from conftest import process_tree, stop_killed_driver, subprocess_env
from mlflow_server import running_mlflow_server

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
# The virtualenv's commands (`ray`, `moto_server`, `vaestudy`) at the end of PATH: first, its
# ninja would build the LayerNorm LSTM extension where the other tests' processes use the
# system's, and two ninja versions rebuild each other's build folder (15 s each time).
ENV = subprocess_env(PATH=f"{os.environ.get('PATH', '')}:{BIN}")
pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def kill_matching(fragment: str) -> None:
    """SIGKILL every process whose command line mentions `fragment` (a per-test temp dir)."""
    for pid in os.listdir("/proc"):
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            cmd = (
                Path(f"/proc/{pid}/cmdline")
                .read_bytes()
                .replace(b"\0", b" ")
                .decode(errors="replace")
            )
        except OSError:
            continue
        if fragment in cmd:
            try:
                os.kill(int(pid), signal.SIGKILL)
            except OSError:
                pass


def child_runs(tracking_uri: str, experiment: str):
    c = MlflowClient(tracking_uri)
    exp = c.get_experiment_by_name(experiment)
    runs = c.search_runs([exp.experiment_id], max_results=1000)
    return c, [r for r in runs if "mlflow.parentRunId" in r.data.tags]


# --- 1. ray job submit to a head and a worker ----------------------------------------------------

# `ray start --address ...` refuses a worker node when Ray is kept on loopback
# (RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0: "Multi-node Ray clusters are not supported"), and without
# that setting Ray rewrites 127.0.0.1 to the host's address and listens on every interface. Ray's
# own multi-node helper, `ray.cluster_utils.Cluster`, starts a head (with the dashboard and its
# job server) and a worker node as separate processes on 127.0.0.1; `ray job submit` then talks
# to that dashboard exactly as it would to a cluster made by `ray start`.
CLUSTER = """
import json, signal, sys
from ray.cluster_utils import Cluster

signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))
dashboard, agent = int(sys.argv[1]), int(sys.argv[2])
# the head's dashboard agent on a free port: Ray's default (52365) is taken by any other Ray on
# this machine, and then the job server never gets an agent ("No available agent to submit job")
cluster = Cluster(initialize_head=True, head_node_args=dict(
    num_cpus=1, include_dashboard=True, dashboard_host="127.0.0.1", dashboard_port=dashboard,
    dashboard_agent_listen_port=agent))
cluster.add_node(num_cpus=1)
print(json.dumps({"address": cluster.address}), flush=True)
try:
    sys.stdin.read()
finally:
    cluster.shutdown()
"""


def test_ray_job_submit_runs_a_study_on_a_started_cluster(tmp_path):
    temp = Path(
        tempfile.mkdtemp(prefix="vsray-", dir="/tmp")
    )  # short: Ray's socket paths are limited
    env = {
        **ENV,
        "RAY_TMPDIR": str(temp),
        "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
        "RAY_AUTH_MODE": "token",
        "RAY_AUTH_TOKEN": os.urandom(16).hex(),
    }
    dash = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-c", CLUSTER, str(dash), str(free_port())],
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        assert proc.stdout.readline(), "the Ray cluster did not start"
        storage, db = tmp_path / "study", tmp_path / "mlflow.db"
        deadline = time.monotonic() + 120
        while True:  # the head's job agent comes up a little after the dashboard
            res = subprocess.run(
                [
                    str(BIN / "ray"),
                    "job",
                    "submit",
                    "--address",
                    f"http://127.0.0.1:{dash}",
                    "--",
                    "vaestudy",
                    "run",
                    "alpha-sweep",
                    "--preset",
                    "smoke",
                    "--storage",
                    str(storage),
                    "--tracking-uri",
                    f"sqlite:///{db}",
                ],
                env=env,
                capture_output=True,
                text=True,
                timeout=400,
            )
            if "No available agent" not in res.stderr + res.stdout or time.monotonic() > deadline:
                break
            time.sleep(2)
        assert res.returncode == 0 and "succeeded" in res.stdout.lower(), (
            res.stdout[-3000:],
            res.stderr[-3000:],
        )
        assert "2 node(s)" in res.stdout, res.stdout[-3000:]  # the job's driver joined the cluster
        _, runs = child_runs(f"sqlite:///{db}", "alpha-sweep")
        assert len(runs) == 4 and all(r.info.status == "FINISHED" for r in runs)
        # a named SQLite store keeps the artifacts beside its database, not under the job's
        # working folder
        beside = (tmp_path / "mlartifacts").as_uri()
        assert all(r.info.artifact_uri.startswith(beside) for r in runs), runs[0].info.artifact_uri
        assert any((tmp_path / "mlartifacts").rglob("samples.txt"))
    finally:
        try:
            proc.stdin.close()
            proc.wait(timeout=60)
        except (OSError, subprocess.TimeoutExpired):
            pass
        kill_matching(str(temp))
        shutil.rmtree(temp, ignore_errors=True)


# --- 2. S3-compatible storage: kill the driver, resume from the bucket ---------------------------


def test_s3_storage_study_resumes_from_the_bucket_after_sigkill(tmp_path):
    port = free_port()
    moto = subprocess.Popen(
        [str(BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
        env=ENV,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    endpoint = f"http://127.0.0.1:{port}"
    s3env = {
        **ENV,
        "AWS_ENDPOINT_URL": endpoint,
        "MLFLOW_S3_ENDPOINT_URL": endpoint,
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
        "AWS_DEFAULT_REGION": "us-east-1",
        "VAESTUDY_CACHE": str(tmp_path / "cache-1"),
    }
    uri = "s3://vaestudy-test/studies/alpha"
    try:
        import boto3

        deadline = time.monotonic() + 30
        while True:
            try:
                s3 = boto3.client(
                    "s3",
                    endpoint_url=endpoint,
                    aws_access_key_id="test",
                    aws_secret_access_key="test",
                    region_name="us-east-1",
                )
                s3.create_bucket(Bucket="vaestudy-test")
                break
            except Exception:  # noqa: BLE001 - moto still starting
                assert time.monotonic() < deadline, "moto server did not start"
                time.sleep(0.3)
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
                uri,
                "--set",
                "steps=150",
                "--set",
                "eval_every=15",
            ],
            cwd=ROOT,
            env=s3env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )

        def states():
            keys = {
                o["Key"]
                for o in s3.list_objects_v2(
                    Bucket="vaestudy-test", Prefix="studies/alpha/trials/"
                ).get("Contents", [])
            }
            out = {}
            for k in keys:
                if k.endswith("trial.json"):
                    out[k.split("/")[-2]] = json.loads(
                        s3.get_object(Bucket="vaestudy-test", Key=k)["Body"].read()
                    )
            return out, keys

        deadline = time.monotonic() + 240
        while True:
            st, keys = states()
            done = [k for k, s in st.items() if s.get("status") == "completed"]
            half = [
                k
                for k, s in st.items()
                if s.get("status") == "running"
                and f"studies/alpha/trials/{k}/checkpoint.pt" in keys
            ]
            if done and half:
                break
            assert time.monotonic() < deadline and driver.poll() is None, driver.stdout.read()[
                -3000:
            ]
            time.sleep(0.3)
        tree = process_tree(driver.pid)  # the driver and the local Ray it started
        driver.send_signal(signal.SIGKILL)
        driver.communicate()
        stop_killed_driver(tree)  # its trials' last uploads are done before the resume

        # Resume from the bucket alone: a fresh local cache, as on another machine.
        res = subprocess.run(
            [sys.executable, "-m", "cli.main", "resume", uri],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=400,
            env={**s3env, "VAESTUDY_CACHE": str(tmp_path / "cache-2")},
        )
        assert res.returncode == 0, res.stderr[-4000:]
        st, keys = states()
        progress = [ln for ln in res.stderr.splitlines() if ln.startswith("[alpha-sweep]")]
        assert len(st) == 4 and all(s["status"] == "completed" for s in st.values()), (progress, st)
        assert "studies/alpha/trials.parquet" in {
            o["Key"]
            for o in s3.list_objects_v2(Bucket="vaestudy-test", Prefix="studies/alpha/")["Contents"]
        }
        db = tmp_path / "mlflow.db"
        db.write_bytes(
            s3.get_object(Bucket="vaestudy-test", Key="studies/alpha/local/mlflow.db")[
                "Body"
            ].read()
        )
        _, runs = child_runs(f"sqlite:///{db}", "alpha-sweep")
        assert sorted(r.data.tags["vaestudy.trial_key"] for r in runs) == sorted(st), (
            "one run per trial, no duplicates"
        )
        assert all(r.info.status == "FINISHED" for r in runs), [
            (r.info.status, r.data.tags) for r in runs
        ]
        artifacts = [
            o["Key"]
            for o in s3.list_objects_v2(
                Bucket="vaestudy-test", Prefix="studies/alpha/mlartifacts/"
            ).get("Contents", [])
        ]
        assert sum(k.endswith("samples.txt") for k in artifacts) == 4, artifacts
        # The resume wrote the report into the bucket, and `ui` takes the s3:// folder as `run`
        # printed it.
        assert "studies/alpha/report.md" in {
            o["Key"]
            for o in s3.list_objects_v2(Bucket="vaestudy-test", Prefix="studies/alpha/")["Contents"]
        }
        ui = subprocess.Popen(
            [sys.executable, "-m", "cli.main", "ui", uri, "--port", str(free_port())],
            cwd=ROOT,
            env={**s3env, "VAESTUDY_CACHE": str(tmp_path / "cache-3")},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        try:
            line = ui.stdout.readline()
            assert "/#/experiments/" in line and "compareRunsMode=CHART" in line, line
        finally:
            os.killpg(ui.pid, signal.SIGTERM)
            ui.wait(timeout=30)
    finally:
        os.killpg(moto.pid, signal.SIGKILL)


# --- 4. PostgreSQL behind MLflow and Optuna ------------------------------------------------------


def pg_bindir() -> Path | None:
    for candidate in sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True):
        if (candidate / "initdb").exists():
            return candidate
    return None


def test_postgresql_backs_mlflow_server_and_optuna(tmp_path):
    bindir = pg_bindir()
    if bindir is None:
        pytest.skip("PostgreSQL server binaries not found (.ci/run installs Debian's postgresql)")
    data = Path(tempfile.mkdtemp(prefix="vspg-", dir="/tmp"))
    os.chmod(data, 0o755)
    as_pg: list[str] = []
    if os.geteuid() == 0:  # initdb refuses to run as root
        shutil.chown(data, "postgres", "postgres")
        as_pg = ["runuser", "-u", "postgres", "--"]
    port = free_port()
    pgdata = data / "db"
    try:
        subprocess.run(
            [*as_pg, str(bindir / "initdb"), "-D", str(pgdata), "-A", "trust", "-U", "vaestudy"],
            check=True,
            capture_output=True,
        )
        subprocess.run(
            [
                *as_pg,
                str(bindir / "pg_ctl"),
                "-D",
                str(pgdata),
                "-l",
                str(data / "log"),
                "-w",
                "-o",
                f"-h 127.0.0.1 -p {port} -k {data}",
                "start",
            ],
            check=True,
            capture_output=True,
        )
        for name in ("mlflow", "optuna"):
            subprocess.run(
                [
                    str(bindir / "createdb"),
                    "-h",
                    "127.0.0.1",
                    "-p",
                    str(port),
                    "-U",
                    "vaestudy",
                    name,
                ],
                check=True,
                capture_output=True,
            )
        # SQLAlchemy 2.1 defaults to psycopg 3
        pg = f"postgresql+psycopg2://vaestudy@127.0.0.1:{port}"
        with running_mlflow_server(tmp_path, backend_store_uri=f"{pg}/mlflow") as url:
            res = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "cli.main",
                    "run",
                    "historyless",
                    "--preset",
                    "smoke",
                    "--storage",
                    str(tmp_path / "study"),
                    "--tracking-uri",
                    url,
                    "--optuna-storage",
                    f"{pg}/optuna",
                ],
                cwd=ROOT,
                env=ENV,
                capture_output=True,
                text=True,
                timeout=400,
            )
            assert res.returncode == 0, res.stderr[-4000:]
            body = json.dumps(
                {"experiment_ids": [_experiment_id(url, "historyless")], "max_results": 100}
            ).encode()
            req = urllib.request.Request(
                f"{url}/api/2.0/mlflow/runs/search",
                data=body,
                headers={"Content-Type": "application/json"},
            )
            runs = json.loads(urllib.request.urlopen(req, timeout=30).read())["runs"]
            kids = [
                r
                for r in runs
                if any(t["key"] == "mlflow.parentRunId" for t in r["data"].get("tags", []))
            ]
            assert len(kids) == 4 and all(r["info"]["status"] == "FINISHED" for r in kids)
        study = optuna.load_study(study_name="historyless", storage=f"{pg}/optuna")
        assert sorted(t.state.name for t in study.trials) == ["COMPLETE"] * 4
        assert sorted((t.params["variant"], t.params["length"]) for t in study.trials) == [
            ("conv", 10),
            ("conv", 30),
            ("lstm p=1", 10),
            ("lstm p=1", 30),
        ]
    finally:
        subprocess.run(
            [*as_pg, str(bindir / "pg_ctl"), "-D", str(pgdata), "-m", "immediate", "stop"],
            capture_output=True,
        )
        shutil.rmtree(data, ignore_errors=True)


def _experiment_id(url: str, name: str) -> str:
    with urllib.request.urlopen(
        f"{url}/api/2.0/mlflow/experiments/get-by-name?experiment_name={name}", timeout=30
    ) as r:
        return json.loads(r.read())["experiment"]["experiment_id"]
