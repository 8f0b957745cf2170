"""One config per trial (issue 22, item 5): the driver builds a trial's TrainConfig once and
writes it as JSON; the worker builds its own from that JSON and nothing else. MLflow holds
each swept value once, and a reader takes its type from the trial's config record."""

from __future__ import annotations

import json
import textwrap

import pytest
from mlflow.tracking import MlflowClient

from conftest import ROOT, run_vaestudy, subprocess_env
from studies.tracking import CONFIG_ARTIFACT, GRID_POINT_PARAM, SWEPT_PARAM, trial_params
from studies.tracking.uris import swept_values

# Loaded into every Python process of the run (the driver, Ray's workers, its helpers) through
# PYTHONPATH: once textvae_core.config is imported, each TrainConfig construction (dataclass
# __init__, dataclasses.replace included) appends its pid and JSON to $COUNT_CONFIGS.
SITECUSTOMIZE = """
import os, sys, json
if os.environ.get("COUNT_CONFIGS"):
    import importlib.abc, importlib.machinery

    class _Hook(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path, target=None):
            if name != "textvae_core.config":
                return None
            spec = importlib.machinery.PathFinder.find_spec(name, path)
            run = spec.loader.exec_module

            def exec_module(module):
                run(module)
                cls = module.TrainConfig
                init = cls.__init__

                def counted(self, *a, **k):
                    init(self, *a, **k)
                    with open(os.environ["COUNT_CONFIGS"], "a") as f:
                        f.write(json.dumps([os.getpid(), self.to_dict()]) + "\\n")

                cls.__init__ = counted

            spec.loader.exec_module = exec_module
            return spec

    sys.meta_path.insert(0, _Hook())
"""

ONE_TRIAL = textwrap.dedent(
    """
    from studies.presets import cpu, paper, smoke
    from studies.spec import Study

    STUDY = Study(
        name="one-trial",
        title="one smoke trial",
        reproduces="-",
        model="hybrid-lstm",
        base=dict(length=24),
        grid={"alpha": (0.2,)},
        presets={
            "smoke": smoke(grid={"alpha": (0.3,)}, cost="one trial"),
            "cpu": cpu(steps=3000, cost="-"),
            "paper": paper(cost="-"),
        },
    )
    """
)


@pytest.mark.integration
def test_a_trial_config_is_built_once_on_the_driver_and_once_in_the_worker(tmp_path):
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(SITECUSTOMIZE)
    study = tmp_path / "one_trial.py"
    study.write_text(ONE_TRIAL)
    log = tmp_path / "configs.jsonl"
    folder = tmp_path / "study"
    env = subprocess_env(
        COUNT_CONFIGS=str(log),
        PYTHONPATH=f"{hook}:{ROOT}",
    )
    run_vaestudy("run", str(study), "--preset", "smoke", "--storage", str(folder), env=env)

    (key,) = [p.name for p in (folder / "trials").iterdir()]
    record = json.loads((folder / "trials" / key / "config.json").read_text())["config"]
    # 0.3: a value no default holds, so the configs built from defaults alone (the study's
    # description names each preset's LSTM cell) are not this trial's
    assert record["alpha"] == 0.3 and record["length"] == 24
    assert json.loads((folder / "trials" / key / "trial.json").read_text())["config"] == record
    built = [tuple(json.loads(line)) for line in log.read_text().splitlines()]
    of_trial = [pid for pid, config in built if config == record]
    assert len(of_trial) == 2 and len(set(of_trial)) == 2, built  # two processes, once each
    # The worker is the process that built this config and nothing else; the driver also
    # validated the study's other presets (configs of other sizes, not this trial's) and, to
    # log the trained model to MLflow, loaded its checkpoint (a config with device=cpu).
    by_pid = {pid: [c for p, c in built if p == pid] for pid in of_trial}
    workers = [pid for pid, configs in by_pid.items() if configs == [record]]
    assert len(workers) == 1, {pid: len(c) for pid, c in by_pid.items()}


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
