"""The study folder's typed records, the trial's report to the driver, and the one place a
trial's status is decided."""

import json
import math

import pytest

from studies.errors import StudyError
from studies.run.progress import time_left
from studies.run.tune_result import from_result, to_result
from studies.run.trial import TrialReport, outcome
from studies.store import Status, StudyRecord, StudyStatus, StudyStore, TrialRecord


def test_trial_record_round_trips_through_its_file(tmp_path):
    store = StudyStore(tmp_path)
    record = TrialRecord(
        {"alpha": 0.2},
        {"model": "hybrid-lstm", "steps": 30},
        status=Status.COLLAPSED,
        reason="KL collapsed",
        mlflow_run_id="r1",
        started=10.0,
        ended=25.5,
        final={"valid/kl_bpc": 0.001},
        last_step=30,
        trial_wall_s=14.0,
    )
    store.save_trial("k1", record)
    on_disk = json.loads((tmp_path / "trials" / "k1" / "trial.json").read_text())
    assert on_disk["status"] == "collapsed"
    back = store.trial("k1")
    assert back == record and back.status is Status.COLLAPSED and back.finished
    assert store.trial("absent") is None
    assert store.finished_trials() == {"k1": record}


def test_trial_wall_time_falls_back_to_the_driver_clock():
    assert TrialRecord({}, {}, started=10.0, ended=25.5).wall_s == 15.5
    assert TrialRecord({}, {}, started=10.0, ended=25.5, trial_wall_s=3.0).wall_s == 3.0
    assert TrialRecord({}, {}).wall_s is None and not TrialRecord({}, {}).finished


def test_slot_utilisation_is_trial_compute_over_wall_time_times_concurrency():
    from studies.results.markdown import compute_line
    from studies.results.read import compute_use

    trials = [
        TrialRecord(
            {},
            {},
            started=10.0,
            ended=40.0,
            trial_wall_s=25.0,
            seconds={"train": 20.0, "eval": 4.0, "final": 1.0, "checkpoint": 0.5, "report": 0.25},
        ),
        TrialRecord(
            {},
            {},
            started=12.0,
            ended=70.0,
            trial_wall_s=15.0,
            seconds={"train": 10.0, "eval": 2.0},
        ),
        # stopped without a last report (before worker-side collapse stops): the driver's clock
        # counts
        TrialRecord({}, {}, started=20.0, ended=30.0),
        # ended before any recorded run (a run of an older vaestudy) and one still running: not
        # counted
        TrialRecord({}, {}, started=1.0, ended=4.0, trial_wall_s=3.0),
        TrialRecord({}, {}, started=91.0),
    ]
    # the first run was killed before it wrote its end: it ends at its last trial event (40 s)
    runs = [
        {"attempt": 1, "started": 5.0, "ended": None, "concurrency": 2},
        {"attempt": 2, "started": 50.0, "ended": 75.0, "concurrency": 1},
        {"attempt": 3, "started": 90.0, "ended": None, "concurrency": None},
    ]  # Ray never came up
    use = compute_use(runs, trials)
    assert use["driver_runs"] == 2 and use["estimated"] == 1 and use["concurrency"] == [1, 2]
    assert use["wall_s"] == 35 + 25 and use["trial_s"] == 50 and use["trials"] == 3
    assert use["utilisation"] == pytest.approx(50 / (35 * 2 + 25 * 1))
    assert use["split"] == pytest.approx(
        {"train": 0.75, "eval": 0.15, "final": 0.025, "checkpoint": 0.0125, "report": 0.00625}
    )
    line = compute_line(use)
    assert (
        "2 driver run(s) (1 killed" in line
        and "slot utilisation 53%" in line
        and "train 75.0%" in line
    ), line
    assert compute_use([], trials) is None and compute_line(None).startswith("Not recorded")


def test_time_left_counts_the_running_trials_share_of_their_steps():
    # 10 trials, 2 at a time, 400 s each: at 600 s one finished and two are at 1/2 and 1/4.
    assert time_left(600.0, 1, [0.5, 0.25], left=9) == pytest.approx(600 / 1.75 * (9 - 0.75))
    assert (
        time_left(600.0, 1, [0.5, 0.25], left=9) < 600.0 / 1 * 9
    )  # counting finished trials only says 2x more
    assert time_left(30.0, 0, [0.0, 0.0], left=10) is None  # no work done yet: no estimate
    assert time_left(100.0, 0, [2.0, -1.0], left=2) == pytest.approx(
        100.0
    )  # shares are clamped to [0, 1]


def test_study_record_round_trips_and_a_broken_file_is_one_line(tmp_path):
    store = StudyStore(tmp_path)
    assert store.study() is None
    record = StudyRecord(
        {"study": "dropout", "preset": "smoke", "seed": 0, "trials": 3, "overrides": {}},
        "dropout",
        "parent",
        "sqlite:///x.db",
        "sqlite:///o.db",
        {"max_failures": 2},
        attempts=2,
        launches=[
            {"attempt": 1, "started": 5.0, "ended": None, "concurrency": 2},
            {"attempt": 2, "started": 50.0, "ended": 80.0, "concurrency": 2},
        ],
    )
    store.save_study(record)
    assert store.study() == record and store.study().status is StudyStatus.RUNNING
    (tmp_path / "study.json").write_text('{"identity": {}}')
    with pytest.raises(StudyError, match="study.json is not a vaestudy record: it needs"):
        store.study()
    (tmp_path / "trials" / "k2").mkdir(parents=True)
    (tmp_path / "trials" / "k2" / "trial.json").write_text(
        '{"status": "nonsense", "params": {}, "config": {}}'
    )
    with pytest.raises(StudyError, match="'nonsense' is not a valid Status"):
        store.trial("k2")


def test_the_status_is_decided_from_what_the_driver_saw():
    final = TrialReport(100, {"valid/kl_bpc": 0.3}, final=True)
    midway = TrialReport(50, {"valid/kl_bpc": 0.3})
    assert outcome(final) == (Status.COMPLETED, None)
    assert outcome(midway) == (Status.STOPPED, "stopped early by the scheduler (ASHA)")
    assert outcome(None)[0] is Status.STOPPED
    collapsed = TrialReport(50, {"valid/kl_bpc": 0.001}, final=True, collapsed="KL collapsed")
    assert outcome(collapsed) == (Status.COLLAPSED, "KL collapsed")
    assert outcome(collapsed, error="boom") == (Status.FAILED, "boom")
    assert outcome(final, error="boom") == (Status.FAILED, "boom")
    assert outcome(TrialReport(-1, {}, final=True, failure="loss is nan")) == (
        Status.FAILED,
        "loss is nan",
    )
    assert outcome(TrialReport(100, {}, final=True, replayed=Status.COLLAPSED)) == (
        Status.COLLAPSED,
        "already finished",
    )


def test_a_report_survives_tunes_flat_result():
    rep = TrialReport(
        250,
        {"valid/kl_bpc": 0.12, "train/kl_weight": 1.0, "lr": 1e-3},
        final=True,
        replayed=Status.COMPLETED,
        samples="a -> a\n",
        wall_s=12.0,
        collapsed="KL collapsed: ...",
        seconds={"train": 10.0, "eval": 1.5, "final": 0.5, "checkpoint": 0.25, "report": 0.125},
    )
    flat = to_result(rep)
    assert (
        flat["step"] == 250
        and flat["valid/kl_bpc"] == 0.12
        and all(not isinstance(v, dict) for v in flat.values())
    )
    # Tune adds its own keys; they do not come back as metrics.
    back = from_result(
        {
            **flat,
            "training_iteration": 3,
            "time_total_s": 4.0,
            "config": {"alpha": 0.2},
            "trial_id": "abc",
        }
    )
    assert back == rep
    diverged = from_result(
        to_result(TrialReport(-1, {"valid/total_bpc": math.nan}, final=True, failure="nan"))
    )
    assert diverged.step == -1 and diverged.failure == "nan" and diverged.replayed is None
