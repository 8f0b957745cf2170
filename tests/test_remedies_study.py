"""`vaestudy run remedies --preset smoke` end to end: eleven trials (the paper's LSTM VAE, and
two models x five remedies) on Ray, tracked in MLflow, and `vaestudy report` evaluating its
five claims per seed."""

import json
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from conftest import subprocess_env

ROOT = Path(__file__).resolve().parents[1]
ENV = subprocess_env()


@pytest.mark.slow
def test_remedies_smoke_runs_end_to_end_and_its_claims_are_judged(tmp_path):
    folder = tmp_path / "remedies"
    res = subprocess.run(
        [
            sys.executable,
            "-m",
            "cli.main",
            "run",
            "remedies",
            "--preset",
            "smoke",
            "--storage",
            str(folder),
            "--json",
        ],
        cwd=ROOT,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    summary = json.loads(res.stdout)
    assert sum(summary["statuses"].values()) == 11, summary
    assert set(summary["statuses"]) <= {"completed", "collapsed"}, summary  # none failed
    # `run` wrote the report (the `report` command itself is test_report's)
    assert summary["report"] == str(folder / "report.md")
    claims = json.loads((folder / "claims.json").read_text())
    ids = [c["id"] for c in claims["claims"]]
    assert ids == [
        "plain-lstm-collapsed",
        "remedies-use-z",
        "aggressive-raises-mi",
        "hybrid-reads-z-as-much",
        "hybrid-bound-comparable",
    ]
    for c in claims["claims"]:  # one seed: its verdict is the claim's, and no trial is missing
        (seed,) = c["seeds"]
        assert c["verdict"] == seed["verdict"] in ("PASS", "FAIL", "INCONCLUSIVE"), c
        assert "missing" not in seed["note"] and "failed" not in seed["note"], c
    rows = pq.read_table(folder / "summary.parquet").to_pylist()
    assert {r["variant"] for r in rows} == {
        "lstm-paper",
        "lstm",
        "hybrid",
        *(
            f"{m}+{r}"
            for m in ("lstm", "hybrid")
            for r in ("free-bits", "cyclical", "aggressive", "bn-vae")
        ),
    }
    assert all(r["z_gain_bpc"] == r["z_gain_bpc"] for r in rows), (
        rows
    )  # measured (not NaN) for every trial
    text = (folder / "report.md").read_text()
    assert "z gain" in text and "plumbing, not the paper" in text
    # each trial's LSTM: the remedied LSTM VAEs and the plain `lstm` read z at every step
    by_variant = {r["variant"]: r for r in rows}
    assert all(r["lstm_cell"] == "layernorm" for r in rows)
    assert by_variant["lstm-paper"]["z_every_step"] is False
    assert all(by_variant[v]["z_every_step"] is True for v in by_variant if v.startswith("lstm+"))
    assert by_variant["lstm"]["z_every_step"] is True
    assert all(r["z_every_step"] is None for v, r in by_variant.items() if v.startswith("hybrid"))
    assert "| layernorm, z every step |" in text and "| layernorm |" in text
    # the remedies' own measures: BN-VAE's floor and free bits' share at the floor
    assert all(r["bn_kl_floor_bpc"] > 0 for v, r in by_variant.items() if v.endswith("bn-vae"))
    assert all(
        0 <= r["free_bits_active_max"] <= 1
        for v, r in by_variant.items()
        if v.endswith("free-bits")
    )
    aggressive = by_variant["lstm+aggressive"]
    assert aggressive["encoder_updates"] >= 2 * 20  # at least 2 per step while the mode was on

    # the synthetic corpus's probe reaches MLflow: a metric per factor in every child run
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{folder}/mlflow.db")
    exp = client.get_experiment_by_name("remedies")
    runs = [
        r for r in client.search_runs([exp.experiment_id]) if "vaestudy.trial_key" in r.data.tags
    ]
    assert len(runs) == 11
    for r in runs:
        assert {"valid/probe_topic_acc", "valid/probe_topic_chance", "valid/z_gain_bpc"} <= set(
            r.data.metrics
        ), r
        assert {f"probe_{f}_chance" for f in ("topic", "tense", "length")} <= set(r.data.params), (
            r.data.params
        )
        assert (
            float(r.data.params["probe_topic_chance"]) == r.data.metrics["valid/probe_topic_chance"]
        )
