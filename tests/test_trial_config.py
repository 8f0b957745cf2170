"""What a trial is given and how it is run: one config per trial (the driver builds a trial's
TrainConfig once and writes it as JSON; the worker builds its own from that JSON and nothing
else), each swept value once in MLflow with its type from the config record, one reader of a
trial from the folder or MLflow, seeded searches, the collapse flags, samples.txt and ASHA."""

from __future__ import annotations

import json

import pyarrow.parquet as pq
import pytest
from mlflow.tracking import MlflowClient

from conftest import run_vaestudy
from studies.tracking import CONFIG_ARTIFACT, GRID_POINT_PARAM, SWEPT_PARAM, trial_params
from studies.tracking.uris import swept_values


@pytest.mark.integration
def test_a_trial_config_is_built_once_on_the_driver_and_once_in_the_worker(finished_smoke_study):
    """The shared smoke study ran with tests/config_count on PYTHONPATH, which logs every
    TrainConfig its processes built. Each trial's config (its record in the study folder) was
    built exactly twice: once by the driver and once by a worker, from the same JSON."""
    folder = finished_smoke_study.folder
    records = {}
    for trial in (folder / "trials").iterdir():
        record = json.loads((trial / "config.json").read_text())["config"]
        assert json.loads((trial / "trial.json").read_text())["config"] == record
        records[trial.name] = record
    assert len(records) == 4
    lines = finished_smoke_study.configs.read_text().splitlines()
    built = [tuple(json.loads(line)) for line in lines]
    # The driver is the process that also built configs that are no trial's: the study's
    # other presets, validated at load, and the models logged from checkpoints (device=cpu).
    (driver,) = {pid for pid, config in built if config not in records.values()}
    for key, record in records.items():
        by = [pid for pid, config in built if config == record]
        assert len(by) == 2 and by.count(driver) == 1, (key, by, driver)
    # a worker built trial configs only, each once (one worker may run several trials)
    in_workers = [config for pid, config in built if pid != driver]
    canon = lambda c: json.dumps(c, sort_keys=True)  # noqa: E731
    assert sorted(map(canon, in_workers)) == sorted(map(canon, records.values()))


@pytest.mark.integration
def test_the_dashboard_switch_reaches_the_local_ray(finished_smoke_study):
    """The shared smoke study ran with VAESTUDY_DASHBOARD=0 (conftest.QUIET): its local Ray
    started without the dashboard, so the Ray line names none. The dashboard's own test runs
    with --dashboard and reads the address from the same line."""
    ray_line = [ln for ln in finished_smoke_study.stderr.splitlines() if "] Ray: " in ln]
    assert len(ray_line) == 1 and "node(s)" in ray_line[0], ray_line
    assert "dashboard" not in ray_line[0], ray_line


def test_each_swept_value_is_one_param_and_reads_back_typed():
    config = {"alpha": 0.5, "anneal": True, "length": 24, "seed": 1, "dropout": 0.2}
    params = {"variant": "lstm p=0.2", "alpha": 0.5, "seed": 1, "p": 0.2}
    logged = trial_params(params, config, "alpha=0.5")
    assert logged == {
        **config,
        "variant": "lstm p=0.2",
        GRID_POINT_PARAM: "alpha=0.5",
        SWEPT_PARAM: "variant,alpha,seed,p",
    }
    as_mlflow = {k: str(v) for k, v in logged.items()}  # MLflow keeps strings
    back = swept_values(as_mlflow, config)
    assert back == params
    assert [type(v) for v in back.values()] == [str, float, int, float]
    assert swept_values({"sweep.alpha": "0.5"}, {}) is None  # logged before the record


@pytest.mark.integration
def test_mlflow_reader_takes_types_from_the_config_record(finished_smoke_study):
    from studies.tracking import read_study

    uri = f"sqlite:///{finished_smoke_study.folder}/mlflow.db"
    logged = read_study(uri, "alpha-sweep", ("total_bpc",), ("valid",))
    assert len(logged.trials) == 4
    for t in logged.trials:
        assert set(t.params) == {"alpha", "anneal"}
        assert isinstance(t.params["alpha"], float) and isinstance(t.params["anneal"], bool)
        saved = json.loads(
            (finished_smoke_study.folder / "trials" / t.key / "trial.json").read_text()
        )
        assert t.config == saved["config"]
    client = MlflowClient(tracking_uri=uri)
    run = client.get_run(logged.trials[0].run_id)
    assert not any(k.startswith("sweep.") for k in run.data.params)
    assert CONFIG_ARTIFACT in {a.path for a in client.list_artifacts(run.info.run_id)}


@pytest.mark.integration
def test_the_folder_and_mlflow_give_the_same_trial_summaries(finished_smoke_study):
    """One typed TrialSummary from either source: the same keys, swept values, config,
    status and validation reports (MLflow holds the measures of history.METRIC_NAMES)."""
    from studies.store import StudyStore
    from studies.tracking import read_study
    from studies.trials_table import store_trials
    from textvae_core.history import METRIC_NAMES

    folder = {t.key: t for t in store_trials(StudyStore(str(finished_smoke_study.folder)))}
    uri = f"sqlite:///{finished_smoke_study.folder}/mlflow.db"
    logged = {t.key: t for t in read_study(uri, "alpha-sweep", METRIC_NAMES, ("valid",)).trials}
    assert set(folder) == set(logged) and len(folder) == 4
    for key, a in folder.items():
        b = logged[key]
        assert (a.params, a.config, a.status, a.run_id) == (b.params, b.config, b.status, b.run_id)
        valid = [r for r in a.history if r["split"] == "valid"]
        assert [r["step"] for r in valid] == [r["step"] for r in b.history]
        for mine, theirs in zip(valid, b.history):
            assert mine["total_bpc"] == pytest.approx(theirs["total_bpc"], rel=1e-6)


def _suggestions(sampler_name: str, seed: int, rounds: int = 14) -> list[dict]:
    """What a seeded search study's sampler proposes over `rounds` asks, each told a value
    that depends only on the point (so a run is repeatable whenever the sampler is)."""
    import dataclasses

    import optuna

    from studies.loading import load_study
    from studies.run import search

    study = load_study("kl-frontier")
    if sampler_name == "tpe":  # the default sampler, on the same space with one objective
        study = dataclasses.replace(study, sampler="tpe")
    space = search.distributions(study, None)
    directions = (
        ["minimize", "minimize"] if sampler_name == "nsga2" else ["minimize"]
    )  # two objectives for NSGA-II
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    ostudy = optuna.create_study(
        sampler=search.make_sampler(study, None, seed), directions=directions
    )
    out = []
    for _ in range(rounds):
        trial = ostudy.ask(space)
        values = [sum(v if isinstance(v, (int, float)) else len(v) for v in trial.params.values())]
        ostudy.tell(trial, values * len(directions))
        out.append(trial.params)
    return out


@pytest.mark.parametrize("sampler", ["tpe", "nsga2"])
def test_a_seeded_search_proposes_the_same_points_again(sampler):
    """Seeded TPE (5 random starts, then the model) and NSGA-II (a population of 8, then
    offspring): the same seed gives the same points past the random start; another seed
    gives others."""
    first, again, other = (
        _suggestions(sampler, 3),
        _suggestions(sampler, 3),
        _suggestions(sampler, 4),
    )
    assert first == again
    assert first != other


def test_collapse_flags_reach_the_rule_every_trial_carries(tmp_path, monkeypatch):
    """`--collapse-threshold/-mi/-z-gain/-patience` as a user types them end up in the
    CollapseRule of the plan's trial context (what each worker receives), unchanged."""
    from click.testing import CliRunner

    import studies.run.runner as runner
    from cli.main import cli
    from studies.run.plan import prepare

    seen = {}

    def plan_only(study, opts, echo):  # the real plan, without starting Ray
        seen["rule"] = prepare(study, opts.resolved()).ctx.collapse
        raise SystemExit(0)

    monkeypatch.setattr(runner, "run_study", plan_only)
    flags = ["--collapse-threshold", "0.01", "--collapse-mi", "0.3", "--collapse-z-gain", "0.07"]
    args = ["run", "alpha-sweep", "--preset", "smoke", "--storage", str(tmp_path / "s")]
    res = CliRunner().invoke(cli, [*args, *flags, "--collapse-patience", "5"])
    assert res.exit_code == 0, res.output
    rule = seen["rule"]
    assert (rule.kl, rule.mi, rule.z_gain, rule.patience) == (0.01, 0.3, 0.07, 5)
    assert not (tmp_path / "s").exists()  # planning has no side effect


def test_samples_txt_reconstructs_the_first_validation_fragments():
    """samples.txt's reconstructions: the first six validation fragments, each with the
    greedy decoding of its own posterior mean (computed here from the batch's token ids, not
    through the text re-encoding `vaestudy sample` uses)."""
    import torch

    from studies.run.trial import final_extras
    from textvae_core import make_config
    from textvae_core.train import Trainer

    tr = Trainer(make_config("hybrid-lstm", "tiny", {"corpus": "synthetic", "steps": 4}))
    for _ in range(4):
        tr.train_step()
    text = final_extras(tr)["samples"]
    section = text.split("# reconstructions of validation fragments (input -> output)\n")[1]
    lines = section.split("\n\n")[0].splitlines()
    x = tr.evaluator.validation_batches()[0][:6]
    with torch.no_grad():
        tr.model.eval()
        mu, _ = tr.model.encode(x)
        out = tr.model.generate(mu, tr.config.length, 0.0, torch.Generator().manual_seed(0))
    show = lambda s: s.replace("\n", "\\n")  # noqa: E731
    want = [f"{show(tr.vocab.decode(a))}  ->  {show(tr.vocab.decode(b))}" for a, b in zip(x, out)]
    assert lines == want and len(lines) == 6


ASHA_STUDY = """
from studies.spec import Preset, Study

SIZE = dict(steps=40, eval_every=10, eval_batches=2, batch_size=16, length=24, latent=8,
            conv_channels=(16, 32), deconv_out=32, hidden=32, anneal=False, iw_samples=2)
P = Preset(size="tiny", corpus="synthetic", overrides=SIZE)
STUDY = Study(
    name="asha-check", title="trials ASHA can tell apart at its first rung", reproduces="test",
    model="hybrid-lstm",
    variants={"learns": dict(lr=3e-3), "stuck": dict(lr=1e-7)},
    grid={"variant": ("learns", "stuck")},
    presets={"smoke": P, "cpu": P, "paper": P},
)
"""


@pytest.mark.integration
def test_asha_stops_a_trial_that_is_behind_at_its_first_rung(tmp_path):
    """`--asha`: a trial whose bound is worse than those before it at the first rung (step
    10 of 40; here one whose learning rate is 1e-7) stops there as `stopped`, with the
    scheduler named; the trials that learn run to the end. One trial at a time and the
    sampler's seed fix the order."""
    study = tmp_path / "asha_check.py"
    study.write_text(ASHA_STUDY)
    folder = tmp_path / "asha"
    run_vaestudy(
        "run", str(study), "--storage", str(folder), "--asha", "--max-concurrent", "1",
        "--num-samples", "2", "--collapse-threshold", "0", "--no-report",
    )  # fmt: skip
    trials = {}
    for t in (folder / "trials").iterdir():
        record = json.loads((t / "trial.json").read_text())
        steps = [r["step"] for r in pq.read_table(t / "history.parquet").to_pylist()]
        trials[(record["params"]["variant"], record["params"]["seed"])] = (record, max(steps))
    assert len(trials) == 4
    for seed in (0, 1):
        record, last = trials[("learns", seed)]
        assert record["status"] == "completed" and last == 40, (record["status"], last)
    stopped = [(r, last) for (v, _), (r, last) in trials.items() if r["status"] == "stopped"]
    assert stopped and all(last == 10 for _, last in stopped), stopped
    assert all("ASHA" in r["reason"] for r, _ in stopped)
