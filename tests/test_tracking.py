"""StudyTracker against real MLflow: a sqlite store, and an `mlflow server` read back over REST."""

from __future__ import annotations

import http.server
import json
import math
import os
import threading
import urllib.parse
import urllib.request

import pytest

os.environ["MLFLOW_DISABLE_TELEMETRY"] = "true"  # before mlflow is imported

from mlflow_server import free_port  # noqa: E402
from studies.tracking import (  # noqa: E402
    TrackingError,
    StudyTracker,
    check_tracking_uri,
    default_tracking_uri,
    without_secrets,
)


@pytest.fixture(scope="module")
def sqlite_uri(tmp_path_factory):
    """One store for the module (creating one runs MLflow's migrations, ~1-3 s); tests use
    their own experiment names."""
    return default_tracking_uri(tmp_path_factory.mktemp("study"))


def tracker(uri, experiment, **kw):
    return StudyTracker(uri, experiment, **kw)


def steps(t, run_id, key="valid/total_bpc"):
    return [m.step for m in sorted(t.client.get_metric_history(run_id, key), key=lambda m: m.step)]


def test_child_runs_are_found_again_not_duplicated(sqlite_uri):
    t = tracker(sqlite_uri, "dedup")
    parent = t.start_parent(None, "study", {"preset": "smoke"}, {"vaestudy.study": "dedup"})
    a = t.child_run(
        parent, "aaaa1111", "alpha=0.2", {"alpha": 0.2, "length": 52}, {"model": "lstm"}
    )
    b = t.child_run(parent, "bbbb2222", "alpha=0.4", {"alpha": 0.4}, {})
    assert a != b and t.child_run(parent, "aaaa1111", "alpha=0.2", {"alpha": 0.2}, {}) == a

    resumed = tracker(sqlite_uri, "dedup")  # a restarted driver: empty caches, same store
    assert resumed.experiment_id == t.experiment_id
    assert resumed.child_run(parent, "aaaa1111", "alpha=0.2", {"alpha": 0.2, "seed": 3}, {}) == a
    children = {r.info.run_id: r for r in resumed.runs(parent)}
    assert set(children) == {a, b}
    run_a = children[a]
    assert run_a.data.params == {
        "alpha": "0.2",
        "length": "52",
        "seed": "3",
    }  # only the missing one added
    assert run_a.data.tags["vaestudy.trial_key"] == "aaaa1111"
    assert run_a.data.tags["mlflow.parentRunId"] == parent
    assert run_a.data.tags["mlflow.runName"] == "alpha=0.2"
    assert resumed.runs(resumed.start_parent(None, "other", {}, {})) == []


def test_resumed_trial_logs_each_step_once(sqlite_uri):
    t = tracker(sqlite_uri, "steps", flush_every=3600)
    run = t.child_run(t.start_parent(None, "study", {}, {}), "k", "k", {}, {})
    assert t.last_step(run) == -1
    t.log_metrics(run, 10, {"valid/total_bpc": 2.0, "train/kl_bpc": 0.1})
    t.log_metrics(run, 20, {"valid/total_bpc": 1.8, "train/kl_bpc": math.nan})
    assert steps(t, run) == []  # buffered until flush
    t.flush()
    assert steps(t, run) == [10, 20]
    assert steps(t, run, "train/kl_bpc") == [10]  # NaN dropped for its key only

    resumed = tracker(sqlite_uri, "steps", flush_every=0)  # flush_every=0 sends every report
    assert resumed.last_step(run) == 20
    resumed.log_metrics(run, 20, {"valid/total_bpc": 9.9})  # re-reported after a restore: skipped
    resumed.log_metrics(run, 30, {"valid/total_bpc": 1.7, "lr": math.inf})
    history = sorted(
        resumed.client.get_metric_history(run, "valid/total_bpc"), key=lambda m: m.step
    )
    assert [(m.step, m.value) for m in history] == [(10, 2.0), (20, 1.8), (30, 1.7)]
    assert resumed.client.get_metric_history(run, "lr") == []


def test_batches_beyond_mlflow_limits(sqlite_uri):
    t = tracker(sqlite_uri, "limits", flush_every=3600)
    params = {f"p{i}": i for i in range(250)}  # > 100 params per log_batch call
    run = t.child_run(t.start_parent(None, "study", {}, {}), "k", "k", params, {})
    for step in range(3):
        t.log_metrics(
            run, step, {"valid/total_bpc": 1.0, **{f"m{i}": float(i) for i in range(600)}}
        )
    t.finish(run)  # flushes 1803 metrics: > 1000 per call
    stored = t.client.get_run(run)
    assert len(stored.data.params) == 250 and len(stored.data.metrics) == 601
    assert steps(t, run, "m599") == [0, 1, 2]


def test_finish_reopen_and_safety_net(sqlite_uri):
    t = tracker(sqlite_uri, "status")
    parent = t.start_parent(None, "study", {}, {})
    done = t.child_run(parent, "done", "done", {}, {})
    left = t.child_run(parent, "left", "left", {}, {})
    failed = t.child_run(parent, "failed", "failed", {}, {})
    t.finish(done)
    t.finish(failed, "FAILED", reason="DivergenceError: loss is nan at step 40")
    status = lambda run_id: t.client.get_run(run_id).info.status  # noqa: E731
    assert (status(done), status(left), status(failed)) == ("FINISHED", "RUNNING", "FAILED")
    assert (
        t.client.get_run(failed).data.tags["vaestudy.status_reason"].startswith("DivergenceError")
    )

    # Tune retrying the failed trial in the same driver gets the same run, reopened.
    assert t.child_run(parent, "failed", "failed", {}, {}) == failed
    assert status(failed) == "RUNNING"
    t.finish(failed)
    assert t.child_run(parent, "failed", "failed", {}, {}) == failed
    assert status(failed) == "FINISHED"

    assert t.finish_open_children(parent) == 1
    assert status(left) == "KILLED"
    assert t.finish_open_children(parent) == 0
    t.finish(parent)

    # A resumed study reopens its parent and its unfinished trials, never a finished one.
    resumed = tracker(sqlite_uri, "status")
    assert resumed.start_parent(parent, "study", {}, {}) == parent
    assert status(parent) == "RUNNING"
    assert resumed.child_run(parent, "left", "left", {}, {}) == left
    assert resumed.child_run(parent, "done", "done", {}, {}) == done
    assert (status(left), status(done)) == ("RUNNING", "FINISHED")
    resumed.finish(left)
    resumed.finish(parent)
    assert (status(left), status(parent)) == ("FINISHED", "FINISHED")
    assert (
        resumed.start_parent("0123456789abcdef0123456789abcdef", "new", {}, {}) != parent
    )  # unknown id
    with pytest.raises(ValueError, match="FINISHED, FAILED, KILLED"):
        resumed.finish(left, "DONE")


def test_secrets_never_reach_mlflow(sqlite_uri):
    t = tracker(sqlite_uri, "secrets")
    parent = t.start_parent(
        None, "study", {"db_password": "x", "lr": 0.1}, {"AWS_ACCESS_KEY_ID": "x"}
    )
    run = t.child_run(
        parent,
        "k",
        "k",
        {"hf_token": "x", "Api_Secret": "x", "alpha": 1},
        {"gcp_credentials": "x", "model": "lstm"},
    )
    t.set_tags(run, {"MLFLOW_TRACKING_PASSWORD": "x", "host": "a"})
    p, c = t.client.get_run(parent).data, t.client.get_run(run).data
    assert p.params == {"lr": "0.1"} and "AWS_ACCESS_KEY_ID" not in p.tags
    assert c.params == {"alpha": "1"}
    assert {"model", "host"} <= set(c.tags) and not {
        "gcp_credentials",
        "MLFLOW_TRACKING_PASSWORD",
    } & set(c.tags)
    assert without_secrets({"tokens_per_s": 1}) == {}  # the match is a plain substring, by design
    # but a config field is never a credential: tokens=word reaches the trial's params
    kept = {"tokens": "word", "set.tokens": "word"}
    assert without_secrets({**kept, "set.my_token": "x"}) == kept


def test_a_deleted_experiment_is_refused_not_silently_replaced(sqlite_uri):
    t = tracker(sqlite_uri, "deleted")
    t.client.delete_experiment(t.experiment_id)
    with pytest.raises(TrackingError, match="'deleted' .* is deleted; restore it"):
        tracker(sqlite_uri, "deleted")


def test_check_tracking_uri_accepts_sqlite_and_creates_nothing(tmp_path):
    uri = default_tracking_uri(tmp_path / "new" / "study")
    assert uri == f"sqlite:///{tmp_path.resolve()}/new/study/mlflow.db"
    check_tracking_uri(uri)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("uri", ["file:///x", "/some/folder", "sqlite://", "mongodb://h/db"])
def test_check_tracking_uri_rejects_other_stores(uri):
    with pytest.raises(TrackingError, match=r"sqlite:///PATH .* http\(s\)://HOST:PORT"):
        check_tracking_uri(uri)


def test_check_tracking_uri_rejects_a_closed_port():
    uri = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(TrackingError, match="no server answered"):
        check_tracking_uri(uri, timeout=2.0)


def test_check_tracking_uri_rejects_a_server_that_is_not_mlflow():
    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), http.server.BaseHTTPRequestHandler
    )  # 501s
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        with pytest.raises(TrackingError, match="HTTP 501 .* expected an MLflow server"):
            check_tracking_uri(f"http://127.0.0.1:{server.server_address[1]}", timeout=2.0)
    finally:
        server.shutdown()
        server.server_close()


def rest(url, path, body=None):
    """One MLflow REST call, independent of the client under test."""
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(
        f"{url}/api/2.0/mlflow/{path}", data=data, headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.load(resp)


@pytest.mark.integration  # an `mlflow server`
def test_study_over_a_real_mlflow_server(mlflow_server):
    url = mlflow_server  # conftest's, shared: this test works in experiment "served"
    check_tracking_uri(url, timeout=5.0)
    t = tracker(url, "served", flush_every=3600)
    parent = t.start_parent(None, "study", {"preset": "smoke"}, {})
    kids = {
        key: t.child_run(parent, key, f"trial {key}", {"alpha": alpha}, {})
        for key, alpha in (("k1", 0.2), ("k2", 0.4))
    }
    for step in (20, 40):
        for key, run in kids.items():
            t.log_metrics(run, step, {"valid/total_bpc": 2.0 - step / 100, "valid/kl_bpc": 0.1})
    t.log_text(kids["k1"], "hello", "notes/readme.txt")
    t.finish(kids["k1"])
    assert t.finish_open_children(parent) == 1

    # A restarted driver finds the same children over HTTP.
    again = tracker(url, "served")
    assert again.child_run(parent, "k2", "trial k2", {"alpha": 0.4}, {}) == kids["k2"]
    again.finish(kids["k2"])
    again.finish(parent)

    found = rest(
        url,
        "runs/search",
        {
            "experiment_ids": [t.experiment_id],
            "filter": f"tags.`mlflow.parentRunId` = '{parent}'",
        },
    )["runs"]
    by_key = {
        next(tag["value"] for tag in r["data"]["tags"] if tag["key"] == "vaestudy.trial_key"): r
        for r in found
    }
    assert set(by_key) == {"k1", "k2"}
    for key, alpha in (("k1", "0.2"), ("k2", "0.4")):
        run = by_key[key]
        assert run["info"]["run_id"] == kids[key] and run["info"]["status"] == "FINISHED"
        assert run["data"]["params"] == [{"key": "alpha", "value": alpha}]
        query = urllib.parse.urlencode({"run_id": kids[key], "metric_key": "valid/total_bpc"})
        history = rest(url, f"metrics/get-history?{query}")["metrics"]
        assert sorted((m["step"], m["value"]) for m in history) == [(20, 1.8), (40, 1.6)]
    artifacts = rest(url, f"artifacts/list?run_id={kids['k1']}&path=notes")["files"]
    assert [f["path"] for f in artifacts] == ["notes/readme.txt"]


def test_a_new_sqlite_store_is_copied_from_the_cached_empty_schema(tmp_path, monkeypatch):
    """The first store on a machine makes the template (MLflow's migrations, once); later ones
    are copies of it that MLflow opens as its own, and an existing store is left alone."""
    from mlflow.tracking import MlflowClient

    from studies.tracking.schema import seed_sqlite_store

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    first, second = tmp_path / "a" / "mlflow.db", tmp_path / "b" / "mlflow.db"
    seed_sqlite_store(f"sqlite:///{first}")
    templates = list((tmp_path / "cache" / "vaestudy").glob("mlflow-*-empty.db"))
    assert first.is_file() and len(templates) == 1
    seed_sqlite_store(f"sqlite:///{second}")
    assert second.read_bytes() == templates[0].read_bytes()
    client = MlflowClient(f"sqlite:///{second}")
    exp = client.create_experiment("copied")
    run = client.create_run(exp)
    client.log_metric(run.info.run_id, "valid/total_bpc", 1.5, step=3)
    assert client.get_metric_history(run.info.run_id, "valid/total_bpc")[0].value == 1.5
    before = second.read_bytes()
    seed_sqlite_store(f"sqlite:///{second}")  # an existing store: untouched
    assert second.read_bytes() == before
    seed_sqlite_store("http://127.0.0.1:1")  # not SQLite: nothing to do, nothing made
    assert len(list((tmp_path / "cache" / "vaestudy").iterdir())) == 1
