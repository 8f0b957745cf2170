"""Studies survive a SIGKILLed driver, diverging trials and collapsing trials.

Each test runs `vaestudy` as a subprocess against a real local Ray, a real SQLite MLflow
store and a real Optuna database in a tmp folder.
"""

import json
import math
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import optuna
import pyarrow.parquet as pq
import pytest
import torch
from mlflow.tracking import MlflowClient

from conftest import process_tree, stop_killed_driver, subprocess_env, wait_for
from studies.spec import trial_key

VAESTUDY = [sys.executable, "-m", "cli.main"]
ROOT = Path(__file__).resolve().parents[1]
ENV = subprocess_env()


def vaestudy(*args, timeout=300):
    return subprocess.run(
        [*VAESTUDY, *args], cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=timeout
    )


def trial_states(folder: Path) -> dict[str, dict]:
    out = {}
    for f in (folder / "trials").glob("*/trial.json"):
        try:
            out[f.parent.name] = json.loads(f.read_text())
        except ValueError:  # being written
            pass
    return out


def client(folder: Path) -> MlflowClient:
    return MlflowClient(f"sqlite:///{folder}/mlflow.db")


def children(folder: Path, experiment: str):
    c = client(folder)
    exp = c.get_experiment_by_name(experiment)
    runs = c.search_runs([exp.experiment_id], max_results=1000)
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    return c, parents, [r for r in runs if "mlflow.parentRunId" in r.data.tags]


@pytest.mark.slow
def test_a_sigkilled_study_is_finished_by_the_same_run_without_duplicates_or_reruns(tmp_path):
    folder = tmp_path / "alpha"
    steps, every = 180, 30
    args = [
        "run",
        "alpha-sweep",
        "--preset",
        "smoke",
        "--storage",
        str(folder),
        "--set",
        f"steps={steps}",
        "--set",
        f"eval_every={every}",
        "--max-concurrent",
        "2",
    ]
    driver = subprocess.Popen(
        [*VAESTUDY, *args],
        cwd=ROOT,
        env=ENV,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )

    def mid_study():
        states = trial_states(folder)
        done = [k for k, s in states.items() if s.get("status") == "completed"]
        started = [
            k
            for k, s in states.items()
            if s.get("status") == "running"
            and (folder / "trials" / k / "checkpoint.prev.pt").exists()
        ]  # two checkpoints kept
        return len(done) >= 1 and len(started) >= 1

    try:
        wait_for(mid_study, 240, "one finished and one half-trained trial")
    finally:
        tree = process_tree(driver.pid)  # the driver and the local Ray it started
        driver.send_signal(signal.SIGKILL)
        log = driver.communicate()[0]
    # Ray's reaper takes down the killed driver's cluster; a worker may still finish writing a
    # checkpoint meanwhile, so the folder is read once every one of them has exited
    stop_killed_driver(tree)
    before = trial_states(folder)
    completed_before = {k: s for k, s in before.items() if s.get("status") == "completed"}
    interrupted = {
        k: s
        for k, s in before.items()
        if s.get("status") == "running" and (folder / "trials" / k / "checkpoint.pt").exists()
    }
    assert completed_before and interrupted, (before, log[-3000:])
    history_mtimes = {
        k: (folder / "trials" / k / "history.parquet").stat().st_mtime_ns for k in completed_before
    }
    _, parents_before, _ = children(folder, "alpha-sweep")
    # A damaged latest checkpoint (a disk filled mid-write, say): the trial falls back to the one
    # before.
    damaged = next(
        k for k in interrupted if (folder / "trials" / k / "checkpoint.prev.pt").exists()
    )
    # the checkpoint each interrupted trial will continue from: its latest, the damaged one's
    # the one before
    resume_from = {
        k: torch.load(
            folder / "trials" / k / ("checkpoint.prev.pt" if k == damaged else "checkpoint.pt"),
            weights_only=False,
        )
        for k in interrupted
    }
    prev_step = resume_from[damaged]["step"]
    latest = folder / "trials" / damaged / "checkpoint.pt"
    latest.write_bytes(latest.read_bytes()[:100])

    # The same `vaestudy run` again finishes it (test_faults finishes one with `resume`).
    res = vaestudy(*args, timeout=400)
    assert res.returncode == 0, res.stderr[-4000:]
    assert f"{len(completed_before)} already finished" in res.stderr, res.stderr[-2000:]

    after = trial_states(folder)
    assert len(after) == 4 and all(s["status"] == "completed" for s in after.values()), after
    for k in completed_before:  # completed trials were not rerun
        assert after[k]["ended"] == completed_before[k]["ended"]
        assert (folder / "trials" / k / "history.parquet").stat().st_mtime_ns == history_mtimes[k]
    # Ray's second attempt ran only the unfinished trials; interrupted ones continued from a
    # checkpoint.
    attempt2 = [
        json.loads(line)
        for f in (folder / "ray" / "attempt-2").glob("*/result.json")
        for line in f.read_text().splitlines()
        if line.strip()
    ]
    keys2 = {trial_key(r["config"]) for r in attempt2}
    assert keys2 == set(after) - set(completed_before), keys2
    for k in interrupted:
        first = min(r["step"] for r in attempt2 if trial_key(r["config"]) == k)
        assert first > every, f"trial {k} restarted from scratch (first step {first})"
    first = min(r["step"] for r in attempt2 if trial_key(r["config"]) == damaged)
    assert first == prev_step + every, (damaged, prev_step, first)
    # A continued trial's seconds add up over its processes: its first report after the restart
    # counts more training and more wall time than the checkpoint it continued from had
    # recorded. (When each process counted only its own, a trial continued from its second
    # checkpoint had trained two intervals before the kill and one since.)
    for k in interrupted:
        first2 = min((r for r in attempt2 if trial_key(r["config"]) == k), key=lambda r: r["step"])
        before = resume_from[k]["seconds"]
        assert first2["step"] == resume_from[k]["step"] + every, (k, first2["step"])
        assert first2["seconds/train"] > before["train"], (k, before, first2["seconds/train"])
        assert first2["overhead/trial_wall_s"] > before["wall"], (k, before, first2)

    # MLflow: the same parent, one child per grid point, nothing RUNNING, no duplicated steps.
    c, parents, runs = children(folder, "alpha-sweep")
    assert [p.info.run_id for p in parents] == [p.info.run_id for p in parents_before]
    assert parents[0].info.status == "FINISHED"
    assert sorted(r.data.tags["vaestudy.trial_key"] for r in runs) == sorted(after)
    assert all(r.info.status == "FINISHED" for r in runs)
    expected_steps = list(range(every, steps + 1, every))
    for r in runs:
        steps_logged = [m.step for m in c.get_metric_history(r.info.run_id, "valid/total_bpc")]
        assert sorted(steps_logged) == expected_steps, (
            r.data.tags["vaestudy.trial_key"],
            steps_logged,
        )

    # trials.parquet: every grid point exactly once per step and split.
    table = pq.read_table(folder / "trials.parquet").to_pylist()
    rows = [(t["trial_key"], t["step"], t["split"]) for t in table]
    assert len(rows) == len(set(rows)) == 4 * len(expected_steps) * 2
    # study.json: both driver runs; the killed one never recorded its end, so the report ends it at
    # its last trial event.
    first, second = json.loads((folder / "study.json").read_text())["launches"]
    assert first["ended"] is None and first["concurrency"] == 2, first
    assert first["started"] < second["started"] < second["ended"] and second["attempt"] == 2, second
    from studies.results.read import compute_use
    from studies.store import StudyStore

    use = compute_use([first, second], StudyStore(folder).trials().values())
    assert use["driver_runs"] == 2 and use["estimated"] == 1 and 0 < use["utilisation"] <= 1, use
    # Optuna: nothing left RUNNING or WAITING.
    study = optuna.load_study(study_name="alpha-sweep", storage=f"sqlite:///{folder}/optuna.db")
    states = {t.state.name for t in study.trials}
    assert states <= {"COMPLETE", "FAIL"}, states
    assert sum(t.state.name == "COMPLETE" for t in study.trials) >= 4


@pytest.mark.slow
def test_a_second_driver_on_a_live_study_is_refused_and_the_first_goes_on(tmp_path):
    folder = tmp_path / "alpha"
    args = [
        "run",
        "alpha-sweep",
        "--preset",
        "smoke",
        "--storage",
        str(folder),
        "--set",
        "steps=3000",
        "--set",
        "eval_every=30",
        "--max-concurrent",
        "2",
        "--collapse-threshold",
        "0",
    ]
    driver = subprocess.Popen(
        [*VAESTUDY, *args],
        cwd=ROOT,
        env=ENV,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        wait_for(
            lambda: any(
                (folder / "trials" / k / "checkpoint.pt").exists() for k in trial_states(folder)
            ),
            240,
            "a trial with a checkpoint",
        )
        study_json = (folder / "study.json").read_text()
        # A second driver on the live folder, by `run` and by `resume`, both at once.
        seconds = [
            subprocess.Popen(
                [*VAESTUDY, *second],
                cwd=ROOT,
                env=ENV,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for second in (args, ["resume", str(folder)])
        ]
        for proc in seconds:
            out, err = proc.communicate(timeout=120)
            lines = (out + err).strip().splitlines()
            assert (
                proc.returncode == 2
                and len(lines) == 1
                and "in use by a running driver" in lines[0]
            ), lines
        assert (
            folder / "study.json"
        ).read_text() == study_json  # nothing written by the refused ones
        _, parents, runs = children(folder, "alpha-sweep")
        keys = [r.data.tags["vaestudy.trial_key"] for r in runs]
        assert len(parents) == 1 and len(keys) == len(set(keys)), keys
        # The first driver goes on: its trials keep reporting.
        since = time.time_ns()
        wait_for(
            lambda: any(
                h.stat().st_mtime_ns > since for h in (folder / "trials").glob("*/history.parquet")
            ),
            120,
            "a new report from the first driver",
        )
        assert driver.poll() is None
    finally:
        os.killpg(driver.pid, signal.SIGKILL)
        driver.communicate()


STOPPER_STUDY = """
from studies.spec import Preset, Study

SIZE = dict(steps=360, eval_every=30, eval_batches=2, batch_size=16, length=32, latent=16, lr=3e-3,
            conv_channels=(32, 64), deconv_out=64, anneal=False, iw_samples=4)
P = Preset(size="tiny", corpus="synthetic", overrides=SIZE)
STUDY = Study(
    name="stopper-check", title="a collapsing, a healthy and a diverging trial", reproduces="test",
    model="hybrid-bytenet",
    variants={"collapse": dict(alpha=0.0, depth=6), "healthy": dict(alpha=1.0, depth=6),
              "diverge": dict(model="hybrid-lstm", lr=1e6)},
    grid={"variant": ("collapse", "healthy", "diverge")},
    presets={"smoke": P, "cpu": P, "paper": P},
)
"""


@pytest.mark.slow
def test_diverging_trial_fails_with_reason_and_collapsed_trial_is_stopped(tmp_path):
    study_file = tmp_path / "stopper_check.py"
    study_file.write_text(textwrap.dedent(STOPPER_STUDY))
    folder = tmp_path / "stopper"
    res = vaestudy(
        "run",
        str(study_file),
        "--storage",
        str(folder),
        "--collapse-threshold",
        "0.01",
        "--collapse-patience",
        "2",
        timeout=400,
    )
    assert res.returncode == 0, res.stderr[-4000:]
    by_variant = {s["params"]["variant"]: s for s in trial_states(folder).values()}

    diverged = by_variant["diverge"]
    assert diverged["status"] == "failed" and "nan" in diverged["reason"], diverged
    collapsed = by_variant["collapse"]
    assert collapsed["status"] == "collapsed" and "KL collapsed" in collapsed["reason"], collapsed
    healthy = by_variant["healthy"]
    assert healthy["status"] == "completed" and healthy["last_step"] == 360, healthy
    hist = pq.read_table(
        folder / "trials" / trial_key(collapsed["params"]) / "history.parquet"
    ).to_pylist()
    assert max(r["step"] for r in hist) < 360, "the collapsed trial should have been stopped early"
    # its last report was made final: the IW bound and MI pool are measured, as for a completed
    # trial
    assert (
        collapsed["last_step"] == max(r["step"] for r in hist)
        and len({r["step"] for r in hist}) == len(hist) // 2
    )
    assert (
        math.isfinite(collapsed["final"]["valid/iw_nll_bpc"])
        and "valid/mi_pool" in collapsed["final"]
    )
    assert math.isfinite(healthy["final"]["valid/iw_nll_bpc"])

    c, parents, runs = children(folder, "stopper-check")
    status = {r.data.tags["vaestudy.trial_key"]: r for r in runs}
    key = {v: trial_key(s["params"]) for v, s in by_variant.items()}
    assert status[key["diverge"]].info.status == "FAILED"
    assert "nan" in status[key["diverge"]].data.tags["vaestudy.status_reason"]
    assert status[key["collapse"]].data.tags["vaestudy.status"] == "collapsed"
    assert status[key["healthy"]].info.status == "FINISHED"
    assert parents[0].info.status == "FINISHED"
    study = optuna.load_study(study_name="stopper-check", storage=f"sqlite:///{folder}/optuna.db")
    assert sorted(t.state.name for t in study.trials) == ["COMPLETE", "COMPLETE", "FAIL"]


def test_a_trial_whose_every_checkpoint_is_damaged_fails_with_that_reason(tmp_path):
    from studies.run.trial import resume_point
    from studies.store import StudyStore
    from textvae_core import CheckpointError

    store = StudyStore(tmp_path / "study")
    for name in store.CHECKPOINTS:
        store.write_bytes(f"trials/k/{name}", b"PK\x03\x04 truncated")
    with pytest.raises(
        CheckpointError, match="no readable checkpoint to resume from: checkpoint .* is unreadable"
    ):
        resume_point(store, "k", None, tmp_path)
    assert resume_point(store, "fresh", None, tmp_path) is None


def test_a_folder_whose_trials_ran_with_another_cell_does_not_resume(
    finished_smoke_study, tmp_path
):
    """A study folder made before the LayerNorm cell became the default holds trials with
    lstm_cell=fused: resuming it would mix two cells in one study. One line names the trial,
    the field, both values and what to do; exit 2; the folder is left as it was."""
    import shutil

    folder = tmp_path / "old"
    shutil.copytree(finished_smoke_study.folder, folder)
    trial_json = sorted((folder / "trials").glob("*/trial.json"))[0]
    record = json.loads(trial_json.read_text())
    assert record["config"]["lstm_cell"] == "layernorm"
    record["config"]["lstm_cell"] = "fused"
    trial_json.write_text(json.dumps(record))
    before = {p: p.read_bytes() for p in folder.rglob("*") if p.is_file()}
    res = subprocess.run(
        [sys.executable, "-m", "cli.main", "resume", str(folder), "--no-report"],
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    lines = res.stderr.strip().splitlines()
    assert res.returncode == 2 and len(lines) == 1, res.stderr[-2000:]
    assert f"trial {trial_json.parent.name}: lstm_cell='fused', now 'layernorm'" in lines[0]
    assert "use another --storage folder" in lines[0] and "Traceback" not in res.stderr
    assert {p: p.read_bytes() for p in folder.rglob("*") if p.is_file()} == before
