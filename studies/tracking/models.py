"""A trial's trained model as an MLflow pyfunc model: built by the driver from the trial's
checkpoint (`save_model`), read back as a checkpoint for `vaestudy sample`
(`download_checkpoint`), and registered as a version of a named model (`register`).

The model is MLflow's "models from code" form: `model_code.py` is the model, the weights
are an inference checkpoint (`textvae_core.checkpoint.save_inference_checkpoint`) beside
the config and vocabulary as JSON, the code is a copy of `textvae_core`, and the
requirements are pinned to this environment's versions, never inferred (inference runs the
model in a subprocess: seconds per trial). The copy leaves out the compiled LayerNorm
cell's source, so a loaded model runs that cell's Python loop (the same equations): a
build from the copy would take over the machine's torch extension cache, keyed by name,
from the studies running there (one rebuild each time the source path changes).
Logged under the trial's run as `model/`:

    model/MLmodel, python_env.yaml, requirements.txt, conda.yaml
    model/model_code.py                   the pyfunc (TextVAEModel)
    model/code/textvae_core/              the model code it imports
    model/artifacts/checkpoint.pt         weights, config and vocabulary (torch.load)
    model/artifacts/config.json, vocab.json
"""

from __future__ import annotations

import json
import re
import shutil
import tempfile
import warnings
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from mlflow.exceptions import MlflowException
from mlflow.models import Model
from mlflow.models.signature import ModelSignature
from mlflow.types import ColSpec, ParamSchema, ParamSpec, Schema

from .uris import TrackingError

MODEL_ARTIFACT = "model"  # the model's folder in a trial's run
MODEL_BYTES_TAG = "vaestudy.model_bytes"  # its size on disk, every file of the folder
MODEL_ERROR_TAG = "vaestudy.model_error"  # why a trial's model could not be logged
CODE_FILE = Path(__file__).with_name("model_code.py")
MODEL_URI = re.compile(r"^(runs:/[^/]+/.+|models:/[^/]+/[^/]+)$")
MODEL_URIS = "runs:/RUN_ID/model or models:/NAME/VERSION"

SIGNATURE = ModelSignature(
    # one column of texts: a DataFrame's "text" column, or a list of strings (model_code.py)
    inputs=Schema([ColSpec("string")]),
    outputs=Schema([ColSpec("string")]),
    params=ParamSchema(
        [
            ParamSpec("mode", "string", "reconstruct"),  # or "sample": n texts from the prior
            ParamSpec("n", "long", 5),
            ParamSpec("temperature", "double", 0.0),  # 0 decodes greedily
            ParamSpec("seed", "long", 0),
        ]
    ),
)


def pinned_requirements() -> list[str]:
    """What the model needs, at this environment's versions (torch's local build tag, such as
    +cpu, dropped: pip resolves it from the index the serving side uses)."""
    return [
        f"{name}=={metadata.version(name).split('+')[0]}" for name in ("torch", "numpy", "mlflow")
    ]


def save_model(checkpoint: str | Path, dest: str | Path, metadata_: dict | None = None) -> int:
    """The pyfunc model of a training checkpoint, saved into the new folder `dest`: its size
    in bytes (every file)."""
    import mlflow.pyfunc

    import textvae_core
    from textvae_core.checkpoint import load_checkpoint, save_inference_checkpoint

    dest = Path(dest)
    with tempfile.TemporaryDirectory(prefix="vaestudy-model-") as tmp:
        work = Path(tmp)
        weights = work / "checkpoint.pt"
        save_inference_checkpoint(checkpoint, weights)
        model, config, vocab = load_checkpoint(weights)
        (work / "config.json").write_text(json.dumps(config.to_dict(), indent=1))
        (work / "vocab.json").write_text(vocab.to_json())
        code = work / "code" / "textvae_core"
        shutil.copytree(
            Path(textvae_core.__file__).parent,
            code,
            ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "*.so", "*.cpp"),
        )
        with warnings.catch_warnings():  # no input example on purpose: it would run the model
            warnings.filterwarnings("ignore", message=".*input example was not provided")
            mlflow.pyfunc.save_model(
                path=str(dest),
                python_model=str(CODE_FILE),
                artifacts={
                    "checkpoint": str(weights),
                    "config": str(work / "config.json"),
                    "vocab": str(work / "vocab.json"),
                },
                code_paths=[str(code)],
                pip_requirements=pinned_requirements(),
                signature=SIGNATURE,
                metadata={
                    "vaestudy_model": config.model,
                    "parameters": sum(p.numel() for p in model.parameters()),
                    **(metadata_ or {}),
                },
            )
    return sum(f.stat().st_size for f in dest.rglob("*") if f.is_file())


def log_model(client, run_id: str, checkpoint: str | Path, metadata_: dict | None = None) -> int:
    """The model of a training checkpoint logged under run `run_id` (as `model/`) through
    `client` (explicit run id, never the active run), its size tagged: its size in bytes."""
    with tempfile.TemporaryDirectory(prefix="vaestudy-model-") as tmp:
        size = save_model(checkpoint, Path(tmp) / MODEL_ARTIFACT, metadata_)
        client.log_artifacts(run_id, str(Path(tmp) / MODEL_ARTIFACT), MODEL_ARTIFACT)
    client.set_tag(run_id, MODEL_BYTES_TAG, str(size))
    return size


def download_checkpoint(uri: str, tracking_uri: str, dest: str | Path) -> Path:
    """The checkpoint of the model at `uri` (runs:/RUN_ID/model or models:/NAME/VERSION),
    downloaded from `tracking_uri` into `dest`. A URI of no vaestudy model, or one the
    store does not have, is a TrackingError in one line."""
    import mlflow.artifacts
    from mlflow.tracking import MlflowClient

    if not MODEL_URI.match(uri):
        raise TrackingError(f"model URI {uri!r}: expected {MODEL_URIS}")
    try:
        source = uri
        if uri.startswith("models:/"):  # MLflow resolves these through its global registry URI
            name, version = uri.removeprefix("models:/").split("/")
            client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
            source = client.get_model_version_download_uri(name, version)
        local = Path(
            mlflow.artifacts.download_artifacts(
                artifact_uri=source, dst_path=str(dest), tracking_uri=tracking_uri
            )
        )
    except (MlflowException, OSError) as exc:
        why = getattr(exc, "message", None) or str(exc) or type(exc).__name__
        raise TrackingError(
            f"model {uri} at {tracking_uri}: {' '.join(why.split())[:300]}"
        ) from None
    pyfunc = Model.load(local).flavors.get("python_function", {}) if local.is_dir() else {}
    checkpoint = pyfunc.get("artifacts", {}).get("checkpoint", {}).get("path")
    if checkpoint is None or not (local / checkpoint).is_file():
        raise TrackingError(
            f"{uri} at {tracking_uri} is not a vaestudy model (no checkpoint in it)"
        )
    return local / checkpoint


def check_model_name(name: str) -> None:
    """A registered model's name as MLflow allows it (not empty, no '/' or ':'), and one a
    search filter can quote."""
    if not name.strip() or any(c in name for c in "/:'\""):
        raise TrackingError(
            f"--register {name!r}: a model name cannot be empty or hold / : ' or \""
        )


@dataclass(frozen=True)
class Candidate:
    """A trial whose model can be registered: its run and its final objective values."""

    key: str
    run_id: str
    values: dict[str, float]  # metric -> final value, the study's objectives


def register(client, name: str, candidate: Candidate, tags: dict[str, str]) -> str:
    """`candidate`'s logged model as a new version of registered model `name` (created if
    missing), its objective values and `tags` on the version: the version. A run already
    registered under `name` (a study concluded again) keeps its version."""
    done = client.search_model_versions(f"name = '{name}' AND run_id = '{candidate.run_id}'")
    if done:
        return done[0].version
    try:
        client.create_registered_model(name)
    except MlflowException as exc:
        if exc.error_code != "RESOURCE_ALREADY_EXISTS":
            raise
    run = client.get_run(candidate.run_id)
    version = client.create_model_version(
        name,
        source=f"{run.info.artifact_uri}/{MODEL_ARTIFACT}",
        run_id=candidate.run_id,
        tags={**tags, **{k: str(v) for k, v in candidate.values.items()}},
    )
    return version.version
