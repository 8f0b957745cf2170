"""Each trial's trained model as an MLflow pyfunc model, logged by the driver from the
trial's checkpoint; `vaestudy sample` on runs:/ and models:/ URIs; `--register NAME`.

The session's shared smoke study (conftest), run with `--register`, serves every test here.
The acceptance test loads a logged model with MLflow's own loader in a process that cannot
import the project, so the model's modules come from its logged code only.
"""

from __future__ import annotations

import dataclasses
import json
import math
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
from click.testing import CliRunner
from mlflow.tracking import MlflowClient

from cli.main import cli
from studies.run.trial_models import best_candidates
from studies.spec import Float, Study
from studies.store import Status, StudyStore, TrialRecord
from studies.tracking.models import MODEL_BYTES_TAG, pinned_requirements
from conftest import ROOT, SMOKE_MODEL, subprocess_env

NAME = SMOKE_MODEL  # registered by the shared smoke study (conftest)
METRIC = "valid/total_bpc"


@pytest.fixture(scope="module")
def study(finished_smoke_study):
    """The session's smoke study (conftest: run with `--register vae-smoke`): its folder, its
    tracking URI and what the driver printed on stderr."""
    folder = finished_smoke_study.folder
    return folder, f"sqlite:///{folder / 'mlflow.db'}", finished_smoke_study.stderr


def _completed(folder: Path) -> dict[str, TrialRecord]:
    trials = StudyStore(folder).trials()
    assert trials and all(r.status is Status.COMPLETED for r in trials.values()), trials
    return trials


def test_every_trial_run_holds_its_model(study):
    folder, uri, _ = study
    client = MlflowClient(uri)
    for key, record in _completed(folder).items():
        run = client.get_run(record.mlflow_run_id)
        size = int(run.data.tags[MODEL_BYTES_TAG])
        files = {f.path for f in client.list_artifacts(run.info.run_id, "model")}
        assert {"model/MLmodel", "model/requirements.txt", "model/artifacts"} <= files, files
        # the smoke model: ~0.23 MB of weights, ~0.18 MB of code and MLflow's files
        assert 100_000 < size < 2_000_000, size
        local = Path(run.info.artifact_uri.removeprefix("file://")) / "model"
        assert size == sum(f.stat().st_size for f in local.rglob("*") if f.is_file())
        pinned = (local / "requirements.txt").read_text().split()
        assert pinned == pinned_requirements() and all("==" in p for p in pinned), pinned
        assert not list(local.rglob("*.cpp")) and not list(local.rglob("studies")), key


def test_the_best_trial_is_registered(study):
    folder, uri, stderr = study
    trials = _completed(folder)
    best = min(trials.values(), key=lambda r: r.final[METRIC])
    client = MlflowClient(uri, registry_uri=uri)
    versions = client.search_model_versions(f"name = '{NAME}'")
    assert [str(v.version) for v in versions] == ["1"], versions
    version = versions[0]
    assert version.run_id == best.mlflow_run_id
    assert version.source == f"{client.get_run(best.mlflow_run_id).info.artifact_uri}/model"
    assert math.isclose(float(version.tags[METRIC]), best.final[METRIC])
    assert f"registered {NAME} version 1" in stderr, stderr[-2000:]


LOAD = """
import importlib.util, json, sys
site, uri, model_uri, texts = sys.argv[1], sys.argv[2], sys.argv[3], json.loads(sys.argv[4])
sys.path.append(site)  # python -I -S: no .pth file runs, so the editable install is not seen
assert all(importlib.util.find_spec(m) is None for m in ("textvae_core", "studies", "cli"))
import mlflow.pyfunc
mlflow.set_tracking_uri(uri)
model = mlflow.pyfunc.load_model(model_uri)
import textvae_core
print(json.dumps({
    "textvae_core": textvae_core.__file__,
    "reconstructions": model.predict(texts),
    "samples": model.predict(
        [""], params={"mode": "sample", "n": 3, "temperature": 1.0, "seed": 7}
    ),
}))
"""


def test_a_logged_model_loads_without_the_project(study, tmp_path, monkeypatch):
    """MLflow's loader, in a fresh process with no access to the repository, decodes what
    the trial's checkpoint decodes: greedy reconstructions of validation fragments, and
    samples from the prior at temperature 1 with a fixed seed."""
    from textvae_core import load_corpus
    from textvae_core.checkpoint import load_checkpoint
    from textvae_core.sampling import reconstruct, sample_prior

    folder, uri, _ = study
    key, record = sorted(_completed(folder).items())[0]
    model, config, vocab = load_checkpoint(folder / "trials" / key / "checkpoint.pt")
    valid = load_corpus("synthetic").valid
    texts = [vocab.decode(valid[i : i + config.length]) for i in (0, 500)]
    monkeypatch.setenv("VAESTUDY_LSTM_EXT", "0")  # the logged model runs the cell's Python loop
    expected = reconstruct(model, vocab, texts), sample_prior(model, vocab, 3, 1.0, 7)

    script = tmp_path / "load.py"
    script.write_text(LOAD)
    site = sysconfig.get_paths()["purelib"]
    env = {k: v for k, v in subprocess_env().items() if k != "PYTHONPATH"}
    res = subprocess.run(
        [sys.executable, "-I", "-S", str(script), site, uri, f"runs:/{record.mlflow_run_id}/model"]
        + [json.dumps(texts)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    got = json.loads(res.stdout.strip().splitlines()[-1])
    assert not got["textvae_core"].startswith(str(ROOT)), got["textvae_core"]
    assert "/model/code/textvae_core/" in got["textvae_core"], got["textvae_core"]
    assert (got["reconstructions"], got["samples"]) == (expected[0], expected[1])
    assert len(set(got["samples"])) == 3 and all(len(s) == config.length for s in got["samples"])


def test_sample_reads_a_logged_model(study, monkeypatch):
    folder, uri, _ = study
    run_id = sorted(_completed(folder).items())[0][1].mlflow_run_id
    # what `sample` sets (once, like the driver) is set here first, and so undone after
    monkeypatch.setenv("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    monkeypatch.setenv("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    runner = CliRunner()
    res = runner.invoke(cli, ["sample", f"runs:/{run_id}/model", "--tracking-uri", uri, "-n", "2"])
    assert res.exit_code == 0, res.output
    assert res.output.startswith("# 2 samples from the prior") and len(res.output.splitlines()) == 3
    res = runner.invoke(
        cli, ["sample", f"models:/{NAME}/1", "-n", "1"], env={"MLFLOW_TRACKING_URI": uri}
    )
    assert res.exit_code == 0 and len(res.output.splitlines()) == 2, res.output

    for args, said in (
        (["runs:/nope/model", "--tracking-uri", uri], "Run with id=nope not found"),
        ([f"models:/{NAME}/9", "--tracking-uri", uri], "not found"),
        (["models:/only-a-name", "--tracking-uri", uri], "expected runs:/RUN_ID/model"),
        (["runs:/nope/model"], "--tracking-uri or $MLFLOW_TRACKING_URI"),
        (["no-such.pt"], "no such file"),
    ):
        res = runner.invoke(cli, ["sample", *args])
        assert res.exit_code == 2 and said in res.output, (args, res.output)
        assert len(res.output.strip().splitlines()) == 1 and "Traceback" not in res.output


def test_a_bad_register_name_is_refused_before_anything_is_written(tmp_path):
    res = CliRunner().invoke(
        cli, ["run", "alpha-sweep", "--storage", str(tmp_path / "s"), "--register", "a/b"]
    )
    assert res.exit_code == 2 and "--register 'a/b'" in res.output, res.output
    assert not (tmp_path / "s").exists()


FRONT = Study(
    name="front",
    title="",
    reproduces="search",
    sampler="tpe",
    space={"alpha": Float(0.0, 1.0)},
    metric=("valid/total_bpc", "valid/kl_bpc"),
    mode=("min", "max"),
    presets={p: None for p in ("smoke", "cpu", "paper")},
)


def _trial(total: float, kl: float) -> TrialRecord:
    return TrialRecord(
        {},
        {},
        Status.COMPLETED,
        mlflow_run_id=f"run-{total}-{kl}",
        final={"valid/total_bpc": total, "valid/kl_bpc": kl},
    )


FRONT_TRIALS = {
    "a": _trial(1.0, 0.1),  # best bound
    "b": _trial(1.2, 0.5),  # more KL for a worse bound: on the front
    "c": _trial(1.3, 0.4),  # dominated by b
    "d": _trial(1.5, 0.9),  # most KL
    "e": _trial(float("nan"), 2.0),  # no bound: left out
}


def test_the_best_trial_or_every_pareto_optimal_one_is_chosen():
    assert [c.key for c in best_candidates(FRONT, FRONT_TRIALS)] == ["a", "b", "d"]
    single = dataclasses.replace(FRONT, metric="valid/total_bpc", mode="min")
    assert [c.key for c in best_candidates(single, FRONT_TRIALS)] == ["a"]


def test_a_multi_objective_study_registers_its_front_with_the_objectives_as_tags(tmp_path):
    from types import SimpleNamespace

    from studies.run.trial_models import conclude_models

    store = StudyStore(tmp_path / "s")
    for key, record in FRONT_TRIALS.items():
        store.save_trial(key, record)
    runs = [
        SimpleNamespace(
            info=SimpleNamespace(run_id=r.mlflow_run_id),
            data=SimpleNamespace(tags={MODEL_BYTES_TAG: "1"}),  # every model logged
        )
        for r in FRONT_TRIALS.values()
    ]
    registered = []
    tracker = SimpleNamespace(
        get_run=lambda run_id: next(r for r in runs if r.info.run_id == run_id),
        runs=lambda parent: runs,
        register_model=lambda name, c, tags: registered.append((name, c, tags)) or len(registered),
    )
    said = []
    conclude_models(FRONT, store, tracker, "parent", "front-best", said.append)
    assert [(n, c.key, c.run_id) for n, c, _ in registered] == [
        ("front-best", k, FRONT_TRIALS[k].mlflow_run_id) for k in ("a", "b", "d")
    ]
    assert registered[1][1].values == {"valid/total_bpc": 1.2, "valid/kl_bpc": 0.5}
    assert registered[1][2] == {"vaestudy.study": "front", "vaestudy.trial_key": "b"}
    assert said[-1] == (
        "[front] registered front-best version 3: trial d (valid/total_bpc 1.5000, "
        "valid/kl_bpc 0.9000)"
    )


class _Tracker:
    """What `log_trial_model` asks of a StudyTracker, with `log_model` failing as told."""

    def __init__(self, fail: Exception | None = None):
        self.fail, self.tags = fail, {}

    def get_run(self, run_id):
        return None

    def log_model(self, run_id, checkpoint, metadata):
        if self.fail is not None:
            raise self.fail
        return 123

    def set_tags(self, run_id, tags):
        self.tags.update(tags)


def test_a_model_that_cannot_be_logged_is_said_and_a_lost_server_stops_the_study(tmp_path, caplog):
    import torch

    from studies.run.trial_models import log_trial_model
    from studies.tracking import TrackingError
    from studies.tracking.models import MODEL_ERROR_TAG
    from textvae_core.checkpoint import CHECKPOINT_FORMAT

    store = StudyStore(tmp_path / "s")
    tracker = _Tracker()
    assert log_trial_model(store, tracker, "k1", "run1") is None  # no checkpoint: said, not raised
    assert "no checkpoint" in tracker.tags[MODEL_ERROR_TAG]
    assert "k1: its model was not logged to MLflow" in caplog.text

    torch.save({"format": CHECKPOINT_FORMAT}, tmp_path / "c.pt")
    store.save_checkpoint("k1", tmp_path / "c.pt")
    assert log_trial_model(store, _Tracker(), "k1", "run1") == 123
    refused = _Tracker(RuntimeError("the artifact store refused the upload"))
    assert log_trial_model(store, refused, "k1", "run1") is None
    assert "refused the upload" in refused.tags[MODEL_ERROR_TAG]
    with pytest.raises(TrackingError):  # the server is gone: the study stops, resumable
        log_trial_model(store, _Tracker(TrackingError("stopped answering")), "k1", "run1")
