"""The architecture as the imports show it: every mlflow import in studies/tracking/, every
ray import in the Ray adapter, the wings pointing one way, and no source file over 400 lines."""

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SOURCES = sorted(
    p for top in ("studies", "textvae_core", "cli") for p in (ROOT / top).rglob("*.py")
)
MAX_LINES = 400


def imported(path: Path) -> set[str]:
    """Top-level package names a file imports (absolute imports only), and its relative imports
    as resolved dotted module names."""
    tree = ast.parse(path.read_text())
    package = ".".join(path.relative_to(ROOT).with_suffix("").parts[:-1])
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                names.add(".".join(base + ([node.module] if node.module else [])))
            else:
                names.add(node.module)
    return names


def owners(top: str) -> list[str]:
    return sorted(
        str(p.relative_to(ROOT))
        for p in SOURCES
        if any(n == top or n.startswith(top + ".") for n in imported(p))
    )


def test_mlflow_is_imported_only_by_the_tracking_package():
    assert owners("mlflow") and all(p.startswith("studies/tracking/") for p in owners("mlflow")), (
        owners("mlflow")
    )


def test_a_trials_worker_never_imports_mlflow():
    """A Ray worker imports the Ray adapter (the trainable lives there) and the trial code:
    neither may pull in MLflow (seconds of import and ~100 MB per worker for nothing)."""
    code = (
        "import sys, studies.run.ray_adapter, studies.run.trial; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'mlflow')[:3])"
    )
    res = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert res.returncode == 0 and res.stdout.strip() == "[]", res.stdout + res.stderr[-2000:]


def test_ray_is_imported_only_by_the_ray_adapter():
    assert owners("ray") == ["studies/run/ray_adapter.py"]


def test_the_core_imports_no_platform_package():
    for top in ("ray", "optuna", "mlflow", "click", "studies", "cli"):
        assert not [o for o in owners(top) if o.startswith("textvae_core/")], top


def test_the_results_wing_does_not_import_the_driver_and_studies_never_import_the_cli():
    results = [p for p in SOURCES if "studies/results/" in str(p)]
    for path in results:
        bad = {
            n
            for n in imported(path)
            if n.startswith(("studies.run.runner", "studies.run.trial", "studies.run.ray_adapter"))
        }
        assert not bad, (path, bad)
    assert not [o for o in owners("cli") if o.startswith("studies/")]


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_source_file_is_over_400_lines(path):
    assert len(path.read_text().splitlines()) <= MAX_LINES


def test_study_and_trial_files_are_read_and_written_only_through_their_records():
    raw = re.compile(r"(read|write)_json\([^)]*(study|trial)\.json")
    offenders = [
        f"{p.relative_to(ROOT)}:{i}"
        for p in SOURCES
        if p.name != "store.py"
        for i, line in enumerate(p.read_text().splitlines(), 1)
        if raw.search(line)
    ]
    assert not offenders, offenders


def test_importing_the_platform_changes_no_environment_and_no_logger():
    import subprocess
    import sys

    # the third-party packages are imported first: what they do to the environment is theirs
    code = (
        "import os, mlflow, optuna, ray; before = dict(os.environ); "
        "level = optuna.logging.get_verbosity()\n"
        "import studies.tracking, studies.run.search, studies.run.ray_adapter, studies.run.runner, "
        "cli.main\n"
        "assert dict(os.environ) == before, set(os.environ) ^ set(before)\n"
        "assert optuna.logging.get_verbosity() == level\n"
    )
    res = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert res.returncode == 0, res.stderr[-2000:]


def test_the_environment_is_read_once_by_run_options(monkeypatch):
    from studies.run.plan import RunOptions

    monkeypatch.setenv("VAESTUDY_STORAGE", "/tmp/from-env")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5999")
    monkeypatch.delenv("VAESTUDY_ADDRESS", raising=False)
    monkeypatch.setenv(
        "RAY_ADDRESS", "127.0.0.1:6399"
    )  # set for a driver that `ray job submit` started
    resolved = RunOptions().resolved()
    assert (resolved.storage, resolved.tracking_uri, resolved.address) == (
        "/tmp/from-env",
        "http://127.0.0.1:5999",
        "127.0.0.1:6399",
    )
    monkeypatch.setenv("VAESTUDY_ADDRESS", "auto")
    given = RunOptions(storage="/tmp/given", tracking_uri="sqlite:////tmp/x.db").resolved()
    assert (given.storage, given.tracking_uri, given.address) == (
        "/tmp/given",
        "sqlite:////tmp/x.db",
        "auto",
    )


METRIC_KEY = re.compile(r"^(train|valid|test|time|system)/")


def _docstrings(tree: ast.AST) -> set[int]:
    nodes = (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)
    return {
        id(n.body[0].value)
        for n in ast.walk(tree)
        if isinstance(n, nodes)
        and n.body
        and isinstance(n.body[0], ast.Expr)
        and isinstance(n.body[0].value, ast.Constant)
    }


@pytest.mark.parametrize(
    "path",
    [p for p in SOURCES if p.name != "measures.py" and "definitions" not in p.parts],
    ids=lambda p: str(p.relative_to(ROOT)),
)
def test_metric_keys_are_spelt_only_by_the_measure_vocabulary(path):
    """No "valid/kl_bpc"-like literal (or f-string head) outside textvae_core/measures.py: every
    layer names a measure through `measures.key` (study files may name one by its key; the study
    checks it when it loads). Docstrings may quote keys."""
    tree = ast.parse(path.read_text())
    skip = _docstrings(tree)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in skip:
            if METRIC_KEY.match(node.value):
                found.append(f"line {node.lineno}: {node.value!r}")
    assert not found, found
