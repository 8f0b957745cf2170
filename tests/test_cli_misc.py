"""The CLI outside the study runs: train/sample round trip, `vaestudy ui`, and a plain
(non-editable) install that finds its built-in studies from any directory."""

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from click.testing import CliRunner

from cli.main import cli
from conftest import command_line, process_tree, running, subprocess_env

ROOT = Path(__file__).resolve().parents[1]
ENV = subprocess_env()


def test_train_then_sample_round_trip(tmp_path):
    out = tmp_path / "run"
    runner = CliRunner()
    res = runner.invoke(
        cli,
        [
            "train",
            "hybrid-lstm",
            "--preset",
            "tiny",
            "--set",
            "corpus=synthetic",
            "--set",
            "steps=30",
            "--set",
            "eval_every=10",
            "--out",
            str(out),
        ],
    )
    assert res.exit_code == 0, res.output
    assert (out / "checkpoint.pt").exists() and (out / "metrics.parquet").exists()
    import pyarrow.parquet as pq

    table = pq.read_table(out / "metrics.parquet").to_pylist()
    assert sorted({(r["step"], r["split"]) for r in table}) == [
        (s, sp) for s in (10, 20, 30) for sp in ("train", "valid")
    ]
    # resume to more steps continues from the checkpoint
    res = runner.invoke(
        cli,
        [
            "train",
            "hybrid-lstm",
            "--preset",
            "tiny",
            "--set",
            "corpus=synthetic",
            "--set",
            "steps=40",
            "--set",
            "eval_every=10",
            "--out",
            str(out),
            "--resume",
        ],
    )
    assert res.exit_code == 0, res.output
    assert [
        r["step"]
        for r in pq.read_table(out / "metrics.parquet").to_pylist()
        if r["split"] == "valid"
    ] == [10, 20, 30, 40]

    res = runner.invoke(
        cli,
        [
            "sample",
            str(out / "checkpoint.pt"),
            "-n",
            "2",
            "--reconstruct",
            "the topic of",
            "--interpolate",
            "alpha",
            "omega",
            "--steps",
            "3",
        ],
    )
    assert res.exit_code == 0, res.output
    lines = res.output.splitlines()
    assert lines[0].startswith("# 2 samples from the prior") and len(lines) == 1 + 2 + 1 + 1 + 1 + 3

    # a checkpoint of an older format (its parameter names differ) is refused in one line
    import torch

    state = torch.load(out / "checkpoint.pt", weights_only=False)
    torch.save({**state, "format": 1}, tmp_path / "old.pt")
    for args in (["sample", str(tmp_path / "old.pt")],):
        res = runner.invoke(cli, args)
        assert (
            res.exit_code == 2 and "has format 1; this vaestudy reads format 2 only" in res.output
        ), res.output
        assert len(res.output.strip().splitlines()) == 1 and "Traceback" not in res.output
    (out / "checkpoint.pt").write_bytes((tmp_path / "old.pt").read_bytes())
    res = runner.invoke(
        cli,
        [
            "train",
            "hybrid-lstm",
            "--preset",
            "tiny",
            "--set",
            "corpus=synthetic",
            "--set",
            "steps=50",
            "--set",
            "eval_every=10",
            "--out",
            str(out),
            "--resume",
        ],
    )
    assert (
        res.exit_code == 2
        and "has format 1" in res.output
        and len(res.output.strip().splitlines()) == 1
    ), res.output


def test_train_bad_inputs_are_one_line_exit_2(tmp_path):
    runner = CliRunner()
    for args, text in [
        (["train", "lstm", "--set", "dropout=2"], "dropout=2.0 is not allowed"),
        (["train", "lstm", "--set", "nope=1"], "unknown key 'nope'"),
        (["train", "lstm", "--preset", "huge"], "preset='huge' is not allowed"),
        (["train", "lstm", "--resume", "--out", str(tmp_path / "none")], "no checkpoint"),
    ]:
        res = runner.invoke(cli, args)
        assert res.exit_code == 2, (args, res.output)
        assert text in res.output and "Traceback" not in res.output
        assert len(res.output.strip().splitlines()) == 1, res.output


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_ui_serves_the_study_store_on_loopback(tmp_path):
    folder = tmp_path / "study"
    folder.mkdir()
    from mlflow.tracking import MlflowClient

    MlflowClient(f"sqlite:///{folder}/mlflow.db").create_experiment("probe")
    port = _free_port()
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
        first = proc.stdout.readline()
        assert f"http://127.0.0.1:{port}" in first and first.startswith("MLflow UI for "), first
        deadline = time.monotonic() + 90
        while True:
            try:
                with urllib.request.urlopen(
                    f"http://127.0.0.1:{port}/api/2.0/mlflow/experiments/get-by-name"
                    "?experiment_name=probe",
                    timeout=2,
                ) as r:
                    assert b"probe" in r.read()
                break
            except OSError:
                assert time.monotonic() < deadline and proc.poll() is None, "UI did not come up"
                time.sleep(0.5)
        listening = subprocess.run(
            ["ss", "-ltnH", f"sport = :{port}"], capture_output=True, text=True
        ).stdout
        assert listening.strip() and all(
            "127.0.0.1:" in line for line in listening.strip().splitlines()
        ), listening
        tree = process_tree(proc.pid)  # `vaestudy ui` and the server it started
        assert len(tree) >= 2, tree
    finally:
        os.kill(proc.pid, 15)  # SIGTERM to `vaestudy ui` alone, as `kill PID` sends it
        proc.wait(timeout=30)
    # the server (in a session of its own) stopped with it
    deadline = time.monotonic() + 30
    while running(tree):
        assert time.monotonic() < deadline, [command_line(p) for p in running(tree)]
        time.sleep(0.2)
    # The terminal holds vaestudy's line only; the server's own (uvicorn's INFO lines, any
    # deprecation warning) are in the study's log.
    assert proc.stdout.read().strip() == ""
    assert "Uvicorn running on" in (folder / "vaestudy.log").read_text()


@pytest.mark.slow
def test_plain_install_runs_from_any_directory(tmp_path):
    target = tmp_path / "site"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            "--target",
            str(target),
            str(ROOT),
        ],
        check=True,
        env=ENV,
        capture_output=True,
    )
    assert (target / "studies" / "definitions" / "alpha_sweep.py").exists()
    for top in ("textvae_core", "studies", "cli"):  # every package of the tree is installed
        for init in (ROOT / top).rglob("__init__.py"):
            assert (target / init.relative_to(ROOT)).exists(), (
                f"{init.parent.relative_to(ROOT)} is not installed"
            )
    workdir = tmp_path / "elsewhere"
    workdir.mkdir()
    env = {**ENV, "PYTHONPATH": str(target)}
    res = subprocess.run(
        [sys.executable, "-c", "from cli.main import main; main()", "list"],
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
    )
    assert res.returncode == 0, res.stderr
    assert "alpha-sweep" in res.stdout and "kl-frontier" in res.stdout
    res = subprocess.run(
        [sys.executable, "-c", "import studies, sys; print(studies.__file__)"],
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
    )
    assert res.stdout.startswith(str(target)), res.stdout
    res = subprocess.run(
        [
            sys.executable,
            "-c",
            "from cli.main import main; main()",
            "run",
            "kl-frontier",
            "--num-samples",
            "1",
            "--storage",
            str(workdir / "study"),
        ],
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    assert (workdir / "study" / "mlflow.db").exists() and (
        workdir / "study" / "trials.parquet"
    ).exists()


@pytest.mark.slow
def test_ui_of_a_study_tracked_by_a_server_prints_its_experiment_url(tmp_path, mlflow_server):
    from mlflow.tracking import MlflowClient

    from studies.store import StudyRecord, StudyStore

    url = mlflow_server  # conftest's, shared: this test works in experiment "dropout"
    exp = MlflowClient(url).create_experiment("dropout")
    StudyStore(tmp_path / "study").save_study(
        StudyRecord(
            {"study": "dropout", "preset": "smoke", "seed": 0, "trials": 3, "overrides": {}},
            "dropout",
            "p",
            url,
            "sqlite:///o.db",
        )
    )
    res = CliRunner().invoke(cli, ["ui", str(tmp_path / "study")])
    tags = MlflowClient(url).get_experiment(exp).tags  # the views, stored on the server
    assert res.exit_code == 0, res.output
    first, second = res.output.strip().splitlines()
    assert first.endswith(
        f"{url}/#/experiments/{exp}/runs?viewStateShareKey=vaestudy-curves"
        "&compareRunsMode=CHART&workflowType=machine_learning"
    ), res.output
    assert "viewStateShareKey=vaestudy-seeds" in second, res.output
    assert {
        "mlflow.sharedViewState.vaestudy-curves",
        "mlflow.sharedViewState.vaestudy-seeds",
    } <= set(tags)


def test_ui_of_a_folder_that_is_no_study_says_what_to_give(tmp_path):
    res = CliRunner().invoke(cli, ["ui", str(tmp_path)])
    assert res.exit_code == 2
    lines = res.output.strip().splitlines()
    assert len(lines) == 1 and "is not a study folder" in lines[0] and "vaestudy run" in lines[0], (
        res.output
    )


def test_gpu_check_without_cuda_is_one_line_and_its_code_paths_run_on_cpu(tmp_path):
    """`make gpu-check` on a machine without CUDA: one line, exit 0. `--cpu --tiny` runs every
    measurement it would make on a GPU (throughput both cells, short fits, shared trials)."""
    import torch

    root = Path(__file__).resolve().parents[1]
    if not torch.cuda.is_available():
        res = subprocess.run(
            ["make", "-s", "gpu-check"], cwd=root, capture_output=True, text=True, timeout=120
        )
        assert res.returncode == 0 and res.stdout.count("\n") == 1, (res.stdout, res.stderr)
        assert res.stdout.startswith("gpu-check: no CUDA device here"), res.stdout
    out = tmp_path / "gpu.json"
    res = subprocess.run(
        [sys.executable, "-m", "textvae_core.gpu_check", "--cpu", "--tiny", "--out", str(out)],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    result = json.loads(out.read_text())
    models = result["throughput"]["models"]
    assert {
        "hybrid-lstm",
        "hybrid-bytenet",
        "lstm",
        "hybrid-lstm+layernorm",
        "lstm+layernorm",
    } <= set(models)
    # each ratio is the median of its rounds' ratios of the two models' measured rates
    ln = models["lstm+layernorm"]
    rounds = [a / b for a, b in zip(ln["rounds_chars_per_s"], models["lstm"]["rounds_chars_per_s"])]
    assert ln["rounds_ratio_to_fused"] == pytest.approx(rounds)
    assert min(rounds) <= ln["ratio_to_fused"] <= max(rounds)
    assert models["hybrid-bytenet"]["executed_gflops"] < models["hybrid-bytenet"]["achieved_gflops"]
    fit = result["fit"]
    # chars/s from the steps timed (64 fragments of 52 characters a step)
    for m in ("lstm", "hybrid-lstm"):
        assert fit[m]["chars_per_s"] == pytest.approx(fit[m]["steps"] * 64 * 52 / fit[m]["train_s"])
    assert fit["ratio_hybrid_lstm_over_lstm"] == pytest.approx(
        fit["hybrid-lstm"]["chars_per_s"] / fit["lstm"]["chars_per_s"]
    )
    assert result["shared"]["trials"] == 4 and len(result["shared"]["per_trial_chars_per_s"]) == 4


def test_bench_throughput_reports_round_by_round_ratios_at_cpu_sizes():
    """`bench throughput --preset cpu --rounds N --json`: the cpu preset's sizes, one rate per
    round per model, each LayerNorm/fused ratio the median of the per-round ratios (each from
    rates of one round) with its range, and ByteNet's share of the matmul reference."""
    res = CliRunner().invoke(
        cli,
        [
            "bench",
            "throughput",
            "--preset",
            "cpu",
            "--rounds",
            "3",
            "--seconds",
            "0.6",
            "--length",
            "12",
            "--json",
        ],
    )
    assert res.exit_code == 0, res.output
    r = json.loads(res.output)
    assert (r["preset"], r["batch_size"], r["sizes"]["hidden"], r["rounds"]) == ("cpu", 32, 256, 3)
    assert r["layernorm_cell"]["compiled"], r["layernorm_cell"]
    for m in ("hybrid-lstm", "lstm"):
        ln, fused = r["models"][f"{m}+layernorm"], r["models"][m]
        assert (ln["lstm_cell"], fused["lstm_cell"]) == ("layernorm", "fused")
        per_round = [a / b for a, b in zip(ln["rounds_chars_per_s"], fused["rounds_chars_per_s"])]
        assert len(per_round) == 3 and ln["rounds_ratio_to_fused"] == pytest.approx(per_round)
        assert ln["ratio_to_fused"] == pytest.approx(sorted(per_round)[1])
        assert ln["ratio_to_fused_spread"] == pytest.approx([min(per_round), max(per_round)])
    bytenet = r["models"]["hybrid-bytenet"]
    lo, hi = bytenet["fraction_of_matmul_spread"]
    assert bytenet["fraction_of_matmul"] == pytest.approx(
        bytenet["achieved_gflops"] / r["matmul_gflops"]
    )
    assert 0 < lo <= hi


@pytest.mark.slow
def test_bench_overhead_splits_trial_time_and_projects_the_eval_share():
    """`vaestudy bench overhead`: the same four trials through `vaestudy run` and as bare fits,
    cut to 20 of the preset's 40 steps, two pairs of passes in alternating order; the split,
    the projection and the medians over pairs come out consistent."""
    res = subprocess.run(
        [
            sys.executable,
            "-m",
            "cli.main",
            "bench",
            "overhead",
            "--limit-steps",
            "20",
            "--repeats",
            "2",
            "--json",
        ],
        cwd=ROOT,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    r = json.loads(res.stdout)
    assert (
        r["trials"] == 4
        and r["steps"] == [20]
        and r["preset_steps"] == [40]
        and r["concurrency"] == 2
    ), r
    assert (
        r["bare_wall_s"] > 0
        and r["ratio_platform_over_bare"] == pytest.approx(r["platform_wall_s"] / r["bare_wall_s"])
        and 0 < r["ratio_after_setup"] < r["ratio_platform_over_bare"]
    )
    rounds = r["rounds"]  # the reported pair is the one of median ratio after set-up (the lower)
    assert [x["first"] for x in rounds] == ["bare", "platform"], rounds
    ratios = sorted(x["ratio_after_setup"] for x in rounds)
    assert r["ratio_after_setup"] == ratios[0] and r["ratio_after_setup_spread"] == ratios
    assert r["ratio_after_setup_median"] == pytest.approx(sum(ratios) / 2)
    assert r["setup_s_median"] == pytest.approx(sum(x["setup_s"] for x in rounds) / 2)
    phases = r["setup_split_s"]  # every phase the driver passed through, in order
    assert list(phases) == [
        "call",
        "prepare",
        "tracking",
        "optuna",
        "reconcile",
        "ray",
        "tune_settings",
        "first_trial",
    ], phases
    assert all(v >= 0 for v in phases.values()) and sum(phases.values()) == pytest.approx(
        r["setup_s"]
    )
    split = r["split"]
    assert set(split) == {"train", "eval", "checkpoint", "report"} and all(
        v > 0 for v in split.values()
    ), split
    assert sum(split.values()) < 1 and 0 < r["final_eval_share"] <= split["eval"], r
    # 20 steps are one (final) report; 40 add one periodic one, so the projected share is of that
    # shape
    assert 0 < r["eval_share_at_preset_steps"] < 1, r
