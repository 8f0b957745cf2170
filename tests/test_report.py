"""`vaestudy report`: one real smoke study (Ray, SQLite MLflow, Optuna) reported from its
folder and from its MLflow experiment, checked against MLflow's runs; every figure kind
drawn from synthetic tables."""

import dataclasses
import json
import math
import os
import random
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

os.environ.setdefault("MPLBACKEND", "Agg")
os.environ["MLFLOW_DISABLE_TELEMETRY"] = "true"  # before mlflow is imported

from cli.report_cmd import report  # noqa: E402
from studies.results import claims  # noqa: E402
from studies.results.figures import draw_figures, figure_files  # noqa: E402
from studies.results.read import StudyResults, summary_row  # noqa: E402
from studies.trials_table import TrialSummary  # noqa: E402
from studies.errors import StudyError  # noqa: E402
from studies.loading import builtin_studies, load_study  # noqa: E402
from studies.spec import Figure, trial_key  # noqa: E402

REPORT_FILES = {"trials.parquet", "summary.parquet", "fig5.png", "claims.json", "report.md"}
SUMMARY_COLUMNS = {
    "study",
    "preset",
    "trial_key",
    "status",
    "alpha",
    "anneal",
    "total_bpc",
    "rec_bpc",
    "kl_bpc",
    "aux_bpc",
    "active_units",
    "mutual_info",
    "iw_nll_bpc",
    "mi_pool",
    "mi_pool_max",
    "unigram_bpc",
    "steps",
    "wall_s",
    "chars_per_s",
}


@pytest.fixture(scope="module")
def study_dir(finished_smoke_study):
    folder, res = finished_smoke_study.folder, finished_smoke_study
    # A person at the terminal: progress on stderr, a summary that says where to go next on stdout.
    assert not (folder / "report.md").exists()
    lines = res.stdout.splitlines()
    assert lines[0].startswith("[alpha-sweep] finished in ") and lines[0].endswith(
        ": 4 completed"
    ), lines
    assert f"  folder   {folder}" in lines and any(f"vaestudy ui {folder}" in ln for ln in lines), (
        lines
    )
    assert any(f"vaestudy report {folder}" in ln for ln in lines), lines
    assert all(ln.startswith("[alpha-sweep] ") for ln in res.stderr.splitlines() if ln.strip()), (
        res.stderr
    )
    return folder


@pytest.fixture(scope="module")
def reported(study_dir):
    res = CliRunner().invoke(report, [str(study_dir)])
    assert res.exit_code == 0, res.output
    return res.output


@pytest.fixture(scope="module")
def mlflow_runs(study_dir):
    from mlflow.tracking import MlflowClient

    state = json.loads((study_dir / "study.json").read_text())
    client = MlflowClient(state["tracking_uri"])
    exp = client.get_experiment_by_name("alpha-sweep")
    children = client.search_runs(
        [exp.experiment_id], f"tags.`mlflow.parentRunId` = '{state['parent_run_id']}'"
    )
    return client, state["parent_run_id"], {r.data.tags["vaestudy.trial_key"]: r for r in children}


def test_report_writes_every_file(study_dir, reported):
    assert REPORT_FILES <= {p.name for p in study_dir.iterdir()}
    lines = reported.strip().splitlines()
    assert lines[-1].startswith("report: ") and lines[-1].endswith("(5 files)")
    assert {line.split()[1] for line in lines[:-1]} == {
        c.id for c in load_study("alpha-sweep").claims
    }


def test_summary_has_one_row_per_trial_with_the_listed_columns(study_dir, reported, mlflow_runs):
    summary = pq.read_table(study_dir / "summary.parquet")
    assert SUMMARY_COLUMNS <= set(summary.column_names)
    rows = summary.to_pylist()
    assert len(rows) == 4 and {(r["alpha"], r["anneal"]) for r in rows} == {
        (a, b) for a in (0.2, 0.8) for b in (True, False)
    }
    assert all(
        r["status"] == "completed" and r["steps"] == 40 and r["wall_s"] > 0 and r["chars_per_s"] > 0
        for r in rows
    )
    assert all(
        math.isfinite(r[m]) for r in rows for m in ("total_bpc", "kl_bpc", "aux_bpc", "iw_nll_bpc")
    )


def test_parquet_files_match_mlflow_runs(study_dir, reported, mlflow_runs):
    client, _, runs = mlflow_runs
    summary = {r["trial_key"]: r for r in pq.read_table(study_dir / "summary.parquet").to_pylist()}
    trials = pq.read_table(study_dir / "trials.parquet").to_pylist()
    assert set(summary) == set(runs) == {r["trial_key"] for r in trials}
    for key, run in runs.items():
        assert summary[key]["mlflow_run_id"] == run.info.run_id
        assert summary[key]["status"] == run.data.tags["vaestudy.status"]
        # MI is estimated on batch_size x eval_batches validation fragments, so it is at most log of
        # that
        n = int(run.data.params["batch_size"]) * int(run.data.params["eval_batches"])
        assert summary[key]["mi_max"] == pytest.approx(math.log(n))
        assert summary[key]["mutual_info"] <= summary[key]["mi_max"] + 1e-6
        # the final MI over the larger pool states its own ceiling
        pool = int(run.data.params["mi_pool"])
        assert summary[key]["mi_pool_max"] == pytest.approx(math.log(pool)) and pool > n
        assert summary[key]["mi_pool"] <= summary[key]["mi_pool_max"] + 1e-6
        for metric in ("total_bpc", "kl_bpc", "rec_bpc"):
            history = sorted(
                client.get_metric_history(run.info.run_id, f"valid/{metric}"), key=lambda m: m.step
            )
            assert summary[key][metric] == history[-1].value
            parquet = sorted(
                (r["step"], r[metric])
                for r in trials
                if r["trial_key"] == key and r["split"] == "valid"
            )
            assert parquet == [(m.step, m.value) for m in history]


def test_files_are_logged_to_the_parent_run(study_dir, reported, mlflow_runs):
    client, parent, _ = mlflow_runs
    logged = {Path(a.path).name: a.file_size for a in client.list_artifacts(parent, "report")}
    assert set(logged) == REPORT_FILES
    assert logged["summary.parquet"] == (study_dir / "summary.parquet").stat().st_size
    tags = client.get_run(parent).data.tags
    verdicts = json.loads((study_dir / "claims.json").read_text())["claims"]
    assert all(tags[f"vaestudy.claim.{c['id']}"] == c["verdict"] for c in verdicts)


def test_report_from_the_mlflow_experiment_matches_the_folder(
    study_dir, reported, mlflow_runs, tmp_path
):
    state = json.loads((study_dir / "study.json").read_text())
    out = tmp_path / "from-mlflow"
    res = CliRunner().invoke(
        report, ["alpha-sweep", "--tracking-uri", state["tracking_uri"], "--out", str(out)]
    )
    assert res.exit_code == 0, res.output
    assert REPORT_FILES == {p.name for p in out.iterdir()}
    a = {r["trial_key"]: r for r in pq.read_table(study_dir / "summary.parquet").to_pylist()}
    b = {r["trial_key"]: r for r in pq.read_table(out / "summary.parquet").to_pylist()}
    assert set(a) == set(b)
    for key in a:
        for col, value in a[key].items():
            if col != "wall_s" and not (isinstance(value, float) and math.isnan(value)):
                assert b[key][col] == value, (key, col)
    ta, tb = pq.read_table(study_dir / "trials.parquet"), pq.read_table(out / "trials.parquet")
    assert ta.column_names == tb.column_names and ta.num_rows == tb.num_rows
    assert (
        json.loads((out / "claims.json").read_text())["claims"]
        == json.loads((study_dir / "claims.json").read_text())["claims"]
    )
    client, parent, _ = (
        mlflow_runs  # this report was logged to the same parent run, replacing the first
    )
    logged = {Path(a.path).name: a.file_size for a in client.list_artifacts(parent, "report")}
    assert logged["summary.parquet"] == (out / "summary.parquet").stat().st_size


def assert_nontrivial_png(path: Path) -> None:
    import matplotlib.image as mpimg

    assert path.stat().st_size > 10_000, path
    pixels = mpimg.imread(path)
    assert pixels.ndim == 3 and pixels.shape[0] > 200 and pixels.shape[1] > 200
    assert pixels[..., :3].var() > 1e-3, path


def test_figure_is_a_nontrivial_png(study_dir, reported):
    assert_nontrivial_png(study_dir / "fig5.png")


def test_claims_json_has_a_verdict_per_declared_claim(study_dir, reported):
    data = json.loads((study_dir / "claims.json").read_text())
    assert (data["study"], data["preset"], data["corpus"]) == ("alpha-sweep", "smoke", "synthetic")
    study = load_study("alpha-sweep")
    assert [c["id"] for c in data["claims"]] == [c.id for c in study.claims]
    for c in data["claims"]:
        assert c["threshold"] and "measured" in c and "spread" in c
        (seed,) = c["seeds"]  # one seed: its verdict is the claim's
        assert seed["seed"] == 0 and c["verdict"] == seed["verdict"] in claims.SEED_VERDICTS
        assert "missing" not in seed["note"], c
    md = (study_dir / "report.md").read_text()
    assert "| claim | measured: mean [min, max] over seeds | threshold | per seed | verdict |" in md
    assert "![fig5.png](fig5.png)" in md
    # a smoke report says at the top that it checks plumbing, not the paper
    assert md.index("check the plumbing, not the paper") < md.index("## Claims")
    assert all(c["id"] in md for c in data["claims"]) and md.count("| completed |") == 4


def test_bad_inputs_are_one_line_exit_2(study_dir, reported, tmp_path):
    from mlflow.tracking import MlflowClient

    MlflowClient(
        f"sqlite:///{tmp_path}/other.db"
    ).search_experiments()  # a store without the study's runs
    runner = CliRunner()
    for args, text in [
        ([str(tmp_path / "none")], "is not a study folder"),
        (
            ["no-such-experiment", "--tracking-uri", f"sqlite:///{study_dir}/mlflow.db"],
            "no MLflow experiment 'no-such-experiment'",
        ),
        ([str(study_dir), "--tracking-uri", f"sqlite:///{tmp_path}/other.db"], "is not at"),
        ([str(study_dir), "--tracking-uri", f"sqlite:///{tmp_path}/typo.db"], "no MLflow database"),
        ([str(tmp_path), "--experiment", "alpha-sweep"], "needs --tracking-uri"),
    ]:
        res = runner.invoke(report, args)
        assert res.exit_code == 2, (args, res.output)
        assert text in res.output and "Traceback" not in res.output
        assert len(res.output.strip().splitlines()) == 1, res.output
    assert not (tmp_path / "typo.db").exists()


def test_help_has_an_example():
    res = CliRunner().invoke(report, ["--help"])
    assert res.exit_code == 0 and "Example:" in res.output and "vaestudy report" in res.output


# --- every figure kind from synthetic tables ----------------------------------------------------


def synthetic_results(study, preset="cpu", figure=None, seeds=(0, 1)) -> StudyResults:
    """A study's trials with made-up but plausible metrics and histories (no training)."""
    rng = random.Random(0)
    study = dataclasses.replace(study, figure=figure) if figure is not None else study
    if study.is_grid:
        points = [{**p, "seed": s} for s in seeds for p in study.points(preset)]
    else:
        space = study.space
        points = [
            {
                "model": rng.choice(space["model"].choices),
                "alpha": rng.random(),
                "dropout": rng.uniform(0, 0.9),
                "length": rng.randint(12, 60),
                "depth": rng.randint(1, 10),
                "latent": rng.randint(8, 128),
                "lr": 10 ** rng.uniform(-4, -2.6),
            }
            for _ in range(12)
        ]
    summary, history_rows = [], []
    for i, params in enumerate(points):
        key = trial_key(params)
        status = "failed" if i == 3 else "completed"
        history = []
        for step in (250, 500, 750, 1000):
            for split in ("train", "valid"):
                rec = (
                    1.0
                    + 2.0 / (1 + step / 300)
                    + 0.3 * rng.random()
                    + (0.1 if split == "valid" else 0.0)
                )
                kl = 0.05 + 0.2 * rng.random()
                history.append(
                    {
                        "step": step,
                        "split": split,
                        "total_bpc": rec + kl,
                        "rec_bpc": rec,
                        "kl_bpc": kl,
                        "aux_bpc": rec + 0.5,
                        "kl_weight": 1.0,
                        "chars_per_s": 5000.0 if split == "train" else math.nan,
                        "active_units": 5.0,
                        "mutual_info": 1.0,
                        "iw_nll_bpc": rec + kl,
                        "z_gain_bpc": 0.3 * rng.random(),
                    }
                )
        config = {"corpus": "ptb", **{k: v for k, v in params.items() if k != "variant"}}
        summary.append(
            {
                "study": study.name,
                "preset": preset,
                **summary_row(TrialSummary(key, params, config, status, None, history, 60.0, None)),
            }
        )
        history_rows += [
            {"study": study.name, "trial_key": key, "status": status, **h} for h in history
        ]
    return StudyResults(
        study, preset, "ptb", summary, pa.Table.from_pylist(history_rows), None, None, "synthetic"
    )


FIGURES = [
    ("alpha-sweep", None),
    ("fragment-length", None),
    ("bytenet-depth", None),
    ("dropout", None),
    ("historyless", Figure("curves", series="variant", panel="length")),
    ("kl-frontier", None),
    ("fragment-length", Figure("bars", x="variant", panel="length")),
    ("fragment-length", Figure("lines", x="length", series="variant", panel="variant")),
    ("remedies", None),
]


# Each study's figure files, written out: named after the figure it reproduces.
FIGURE_FILES = {
    "alpha-sweep": ["fig5.png"],
    "fragment-length": ["fig4.png"],
    "bytenet-depth": ["fig6.png"],
    "dropout": ["table2.png"],
    "historyless": ["fig3.png"],
    "kl-frontier": ["pareto_front.png", "param_importances.png"],
    "remedies": ["beyondthepaper.png"],
    "ptb-words": ["beyondthepaper.png"],
}


@pytest.mark.parametrize("name,figure", FIGURES)
def test_every_figure_kind_draws_from_synthetic_tables(tmp_path, name, figure):
    results = synthetic_results(load_study(name), figure=figure)
    files, notes = draw_figures(results, tmp_path)
    assert files == FIGURE_FILES[name] == figure_files(results.study) and not notes, notes
    assert sorted(files) == sorted(p.name for p in tmp_path.iterdir())  # and nothing else
    for f in files:
        assert_nontrivial_png(tmp_path / f)


def test_figures_are_validated_where_they_are_made():
    assert Figure("lines", x="alpha", series="anneal").kind == "lines"
    for bad, message in (
        (
            dict(kind="line", x="a", series="b"),
            "expected one of lines, bars, curves, measures, pareto",
        ),
        (dict(kind="lines", x="alpha"), "takes x, series"),
        (dict(kind="curves", series="variant", x="step"), "got series, x"),
        (dict(kind="pareto", panel="length"), "takes no fields"),
    ):
        with pytest.raises(StudyError, match=message):
            Figure(**bad)
    for name in builtin_studies():  # every built-in study draws one figure
        assert isinstance(load_study(name).figure, Figure)


def test_summary_rows_name_their_trials():
    results = synthetic_results(load_study("dropout"), seeds=(0,))
    assert [r["name"] for r in results.summary] == [  # written out: the grid in study order
        "variant=lstm p=0.2,seed=0",
        "variant=lstm p=0.5,seed=0",
        "variant=lstm p=0.8,seed=0",
        "variant=hybrid a=0.2,seed=0",
    ]


@pytest.mark.parametrize(
    "name,figure",
    [
        ("alpha-sweep", None),
        ("dropout", None),
        ("kl-frontier", None),
        ("remedies", None),
        ("historyless", Figure("curves", series="variant", panel="length")),
    ],
)
def test_figures_of_a_study_whose_trials_all_failed_still_draw(tmp_path, name, figure):
    results = synthetic_results(load_study(name), figure=figure, seeds=(0,))
    for r in results.summary:
        r["status"] = "failed"
    files, _ = draw_figures(results, tmp_path)
    assert files == FIGURE_FILES[name] and all((tmp_path / f).stat().st_size > 5000 for f in files)


def test_a_trial_that_failed_before_its_first_report_has_an_empty_summary_row():
    r = summary_row(
        TrialSummary(
            "k", {"alpha": 0.2}, {"corpus": "ptb"}, "failed", "loss became nan", [], None, None
        )
    )
    assert (
        r["status"] == "failed"
        and r["steps"] is None
        and math.isnan(r["total_bpc"])
        and math.isnan(r["wall_s"])
    )
    results = synthetic_results(load_study("alpha-sweep"), seeds=(0,))
    results.summary.append({"study": "alpha-sweep", "preset": "cpu", **r})
    judged = claims.evaluate(results.study, results.summary, "cpu")  # no error on NaN rows
    assert [c["id"] for c in judged] == [c.id for c in results.study.claims]
    assert all(c["verdict"] in claims.VERDICTS for c in judged)
    from studies.results.markdown import summary_table

    assert summary_table(results.summary).num_rows == len(results.summary)


def test_aggressive_trials_report_their_encoder_updates_and_when_the_mode_ended():
    from studies.results.markdown import aggressive_lines, summary_table
    from studies.results.points import average

    def train(step, updates, seconds):
        return {
            "step": step,
            "split": "train",
            "total_bpc": 2.0,
            "encoder_updates": updates,
            "encoder_s": seconds,
        }

    history = [
        train(250, 3400.0, 300.0),
        train(500, 3100.0, 280.0),
        train(750, 0.0, 0.0),
        {"step": 750, "split": "valid", "total_bpc": 2.1},
    ]
    rows = [
        summary_row(
            TrialSummary(
                "a",
                {"variant": "lstm+aggressive", "seed": 0},
                {"corpus": "ptb"},
                "completed",
                None,
                history,
                1000.0,
                None,
            )
        ),
        summary_row(
            TrialSummary(
                "b",
                {"variant": "lstm", "seed": 0},
                {"corpus": "ptb"},
                "completed",
                None,
                [{"step": 750, "split": "train", "total_bpc": 2.0}],
                400.0,
                None,
            )
        ),
    ]
    a, b = rows
    assert (a["encoder_updates"], a["encoder_s"], a["aggressive_until"]) == (6500.0, 580.0, 500.0)
    assert "encoder_updates" not in b  # only trials that trained aggressively have the columns
    lines = aggressive_lines(rows, ["variant", "seed"])
    assert len([ln for ln in lines if ln.startswith("- ")]) == 1
    assert "variant=lstm+aggressive, seed=0: 6500 encoder updates through step 500" in lines[-1]
    assert "580 s, 58% of its 1000 s" in lines[-1]
    # a record from before wall times added up over a resumed trial's processes: no share
    # over 100%, the line says what the wall time covers
    old = [{**a, "wall_s": 120.0}]
    assert aggressive_lines(old, ["variant"])[-1].endswith(
        "580 s (its wall time, 120 s, counts only its last process)"
    )
    assert aggressive_lines(rows[1:], ["variant"]) == []
    # the cost columns are bookkeeping, not hyperparameters: seeds of one variant still average
    # together
    c = summary_row(
        TrialSummary(
            "c",
            {"variant": "lstm+aggressive", "seed": 1},
            {"corpus": "ptb"},
            "completed",
            None,
            [train(250, 10.0, 1.0)],
            50.0,
            None,
        )
    )
    assert len([p for p in average([a, c]) if p["variant"] == "lstm+aggressive"]) == 1
    assert summary_table(rows).column("encoder_updates").to_pylist() == [6500.0, None]


def _remedy_row(key, params, config, reports):
    """A summary row of a trial with these reports: (step, split, metrics)."""
    history = [{"step": step, "split": split, **m} for step, split, m in reports]
    return summary_row(
        TrialSummary(
            key, params, {"corpus": "ptb", **config}, "completed", None, history, 9.0, None
        )
    )


def test_the_report_flags_a_bn_vae_trial_below_its_kl_floor_with_the_reason():
    from studies.results.markdown import remedy_lines
    from studies.results.points import average

    # gamma 0.6, Z=32, L=36: floor 0.6^2 * 32 / 2 = 5.76 nats per fragment = 0.2308 bits/char
    bn = {"model": "lstm", "bn_vae": True, "bn_gamma": 0.6, "latent": 32, "length": 36}
    reports = [(250, "train", {"kl_bpc": 0.2}), (250, "valid", {"kl_bpc": 0.3, "bn_mu_var": 0.5})]
    rows = [
        _remedy_row("held", {"variant": "lstm+bn-vae", "seed": 0}, bn, reports),
        _remedy_row(
            "eps",
            {"variant": "lstm+bn-vae", "seed": 1},
            bn,
            [(4000, "valid", {"kl_bpc": 0.043, "bn_mu_var": 5e-8})],
        ),
        _remedy_row(
            "running",
            {"variant": "lstm+bn-vae", "seed": 2},
            bn,
            [(4000, "valid", {"kl_bpc": 0.1, "bn_mu_var": 0.02})],
        ),
        _remedy_row(
            "plain",
            {"variant": "lstm", "seed": 0},
            {"model": "lstm", "latent": 32, "length": 36},
            [(4000, "valid", {"kl_bpc": 0.001})],
        ),
    ]
    held, eps, running, plain = rows
    assert held["bn_kl_floor_bpc"] == pytest.approx(5.76 / (36 * math.log(2)))
    assert held["bn_kl_floor_bpc"] == pytest.approx(0.2308, abs=1e-4)
    assert held["bn_mu_var"] == 0.5 and "bn_kl_floor_bpc" not in plain
    lines = [ln for ln in remedy_lines(rows, ["variant", "seed"]) if ln.startswith("- ")]
    assert lines == [
        "- variant=lstm+bn-vae, seed=1: KL 0.043 bits/char is below BN-VAE's floor 0.2308 "
        "(gamma^2 Z / 2 nats per fragment): the variance of mu entering the BatchNorm (5e-08) "
        "fell below its eps (1e-05), so the BatchNorm no longer fixes the means' spread",
        "- variant=lstm+bn-vae, seed=2: KL 0.1 bits/char is below BN-VAE's floor 0.2308 "
        "(gamma^2 Z / 2 nats per fragment): the variance of mu entering the BatchNorm (0.02) is "
        "above its eps (1e-05); the floor holds for a batch's own statistics, and evaluation "
        "uses the running ones",
    ]
    # the remedy columns are bookkeeping: the seeds of a variant still average into one point
    assert len([p for p in average(rows) if p["variant"] == "lstm+bn-vae"]) == 1


def test_the_report_says_when_free_bits_never_engaged():
    from studies.results.markdown import remedy_lines, summary_table
    from studies.results.points import average

    fb = {"model": "hybrid-lstm", "free_bits": 0.25}
    never = [(s, "train", {"free_bits_active": 0.0}) for s in (250, 500)]
    once = [(250, "train", {"free_bits_active": 0.0}), (500, "train", {"free_bits_active": 0.25})]
    rows = [
        _remedy_row("a", {"variant": "hybrid+free-bits", "seed": 0}, fb, never),
        _remedy_row("b", {"variant": "hybrid+free-bits", "seed": 1}, fb, once),
        _remedy_row("c", {"variant": "hybrid", "seed": 0}, {"model": "hybrid-lstm"}, never[:1]),
    ]
    assert [r.get("free_bits_active_max") for r in rows] == [0.0, 0.25, None]
    lines = [ln for ln in remedy_lines(rows, ["variant", "seed"]) if ln.startswith("- ")]
    assert lines == [
        "- variant=hybrid+free-bits, seed=0: free bits never engaged: no latent dimension was at "
        "the floor at any report (train/free_bits_active 0), so it trained on the plain objective"
    ]
    assert len([p for p in average(rows) if p["variant"] == "hybrid+free-bits"]) == 1
    assert summary_table(rows).column("free_bits_active_max").to_pylist() == [0.0, 0.25, None]


def test_the_report_says_where_a_posterior_with_no_kl_term_ran_away():
    from studies.results.markdown import runaway_lines

    def valid(*kls):  # valid reports every 250 steps
        return [(250 * (i + 1), "valid", {"kl_bpc": kl}) for i, kl in enumerate(kls)]

    conv = {"model": "conv", "kl": False, "length": 50}
    rows = [  # Fig 3's conv at batch 32 (ran away, then fitted) and at batch 64 (held)
        _remedy_row("a", {"length": 50, "seed": 0}, conv, valid(3e8, 2e11, 9e7, 280.0)),
        _remedy_row("b", {"length": 50, "seed": 1}, conv, valid(240.0, 250.0, 252.0, 252.0)),
        # a run with the KL term: a large KL there is the objective's business, not a runaway
        _remedy_row("c", {"length": 50, "seed": 2}, {"model": "conv"}, valid(5e4, 3e4)),
    ]
    lines = [ln for ln in runaway_lines(rows, ["length", "seed"]) if ln.startswith("- ")]
    assert lines == [
        "- length=50, seed=0: with no KL term its posterior ran away from the prior at steps "
        "250-750 (valid KL up to 2e+11 bits/char at step 500): z was noise to the decoder there"
    ]


def test_every_trial_records_its_lstm_cell_and_how_z_reaches_the_decoder():
    from studies.results.markdown import lstm_label
    from studies.results.points import average

    def row(key, variant, seed, config):
        return _remedy_row(key, {"variant": variant, "seed": seed}, config, [])

    rows = [
        row("a", "lstm", 0, {"model": "lstm", "lstm_cell": "layernorm", "z_every_step": True}),
        row("b", "lstm", 1, {"model": "lstm", "lstm_cell": "layernorm", "z_every_step": True}),
        row("c", "lstm-paper", 0, {"model": "lstm", "lstm_cell": "layernorm"}),
        row("d", "hybrid", 0, {"model": "hybrid-lstm", "lstm_cell": "fused"}),
        row("e", "conv", 0, {"model": "conv", "lstm_cell": "layernorm"}),
    ]
    cells = [(r["lstm_cell"], r["z_every_step"]) for r in rows]
    assert cells == [
        ("layernorm", True),
        ("layernorm", True),
        ("layernorm", False),  # recorded before the field existed: initial state only
        ("fused", None),
        (None, None),  # no LSTM
    ]
    assert [lstm_label(r) for r in rows] == [
        "layernorm, z every step",
        "layernorm, z every step",
        "layernorm",
        "fused",
        None,
    ]
    # constant over a variant's seeds, so they do not split its point
    assert sorted(p["variant"] for p in average(rows)) == [
        "conv",
        "hybrid",
        "lstm",
        "lstm-paper",
    ]


def test_each_trial_run_records_its_data_its_grid_point_and_its_process(study_dir, mlflow_runs):
    """The corpus as two MLflow dataset inputs (training, validation) named by the corpus with
    the sha256 of each split's ids; the swept values without the seed as `grid_point`; and the
    worker's CPU share and resident memory under `system/` at every report."""
    import hashlib

    from textvae_core.data import load_corpus

    client, _, runs = mlflow_runs
    for run in runs.values():
        corpus = load_corpus(run.data.params["corpus"])
        inputs = {
            {t.key: t.value for t in d.tags}["mlflow.data.context"]: d.dataset
            for d in run.inputs.dataset_inputs
        }
        assert set(inputs) == {"training", "validation"}
        for context, ids in (("training", corpus.train), ("validation", corpus.valid)):
            assert inputs[context].name == run.data.params["corpus"]
            assert inputs[context].digest == hashlib.sha256(ids.tobytes()).hexdigest()[:32]
            assert json.loads(inputs[context].profile)["characters"] == ids.size
        assert run.data.params["swept"] == "alpha,anneal"  # each swept value once, as its field
        point = f"alpha={run.data.params['alpha']},anneal={run.data.params['anneal']}"
        assert run.data.params["grid_point"] == point
        steps = [m.step for m in client.get_metric_history(run.info.run_id, "valid/total_bpc")]
        cpu = client.get_metric_history(run.info.run_id, "system/process_cpu_percent")
        rss = client.get_metric_history(run.info.run_id, "system/process_rss_megabytes")
        assert sorted(m.step for m in cpu) == sorted(m.step for m in rss) == sorted(steps)
        # a training process is busy (one thread per trial: at most one core, with slack for
        # the clock) and holds torch in memory
        assert all(5 < m.value < 200 for m in cpu), [m.value for m in cpu]
        assert all(100 < m.value < 8000 for m in rss), [m.value for m in rss]
    assert len({r.data.params["grid_point"] for r in runs.values()}) == 4


def test_runs_carry_their_provenance_and_the_experiment_its_kind(study_dir, mlflow_runs):
    """The tags that say what made a trial: the corpus's sha256 (from the corpus itself), the
    package version and this checkout's commit; the experiment opens as model training."""
    import subprocess

    import textvae_core
    from textvae_core.data import load_corpus

    client, parent, runs = mlflow_runs
    head = subprocess.run(
        ["git", "rev-parse", "HEAD"], capture_output=True, text=True, cwd=Path(__file__).parent
    ).stdout.strip()
    for run in [*runs.values(), client.get_run(parent)]:
        tags = run.data.tags
        assert tags["vaestudy.version"] == textvae_core.__version__
        assert tags["vaestudy.study"] == "alpha-sweep" and tags["vaestudy.preset"] == "smoke"
        if head:  # a git checkout (CI's fresh clone is one)
            assert tags["vaestudy.git_commit"] == head
    for run in runs.values():
        corpus = load_corpus(run.data.params["corpus"])
        assert run.data.tags["vaestudy.corpus_sha256"] == corpus.sha256
    exp = client.get_experiment(client.get_run(parent).info.experiment_id)
    assert exp.tags["mlflow.experimentKind"] == "custom_model_development"


def test_the_parent_run_holds_the_summary_as_an_mlflow_table(study_dir, reported, mlflow_runs):
    client, parent, _ = mlflow_runs
    path = client.download_artifacts(parent, "summary.json", str(study_dir / "dl"))
    table = json.loads(Path(path).read_text())  # MLflow's table: {"columns": [...], "data": [...]}
    rows = [dict(zip(table["columns"], row)) for row in table["data"]]
    summary = pq.read_table(study_dir / "summary.parquet").to_pylist()
    assert sorted(r["trial_key"] for r in rows) == sorted(r["trial_key"] for r in summary)
    by_key = {r["trial_key"]: r for r in rows}
    for r in summary:
        assert by_key[r["trial_key"]]["total_bpc"] == pytest.approx(r["total_bpc"])
        assert by_key[r["trial_key"]]["status"] == r["status"]
    tags = client.get_run(parent).data.tags
    assert "summary.json" in tags.get("mlflow.loggedArtifacts", "")  # the UI's cue: a table
