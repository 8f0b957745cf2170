"""The architecture as the imports show it: every mlflow import in studies/tracking/, every
ray import in the Ray adapter, the wings pointing one way, and no source file over 400 lines."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SOURCES = sorted(p for top in ("studies", "textvae_core", "cli") for p in (ROOT / top).rglob("*.py"))
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
    return sorted(str(p.relative_to(ROOT)) for p in SOURCES
                  if any(n == top or n.startswith(top + ".") for n in imported(p)))


def test_mlflow_is_imported_only_by_the_tracking_package():
    assert owners("mlflow") and all(p.startswith("studies/tracking/") for p in owners("mlflow")), owners("mlflow")


def test_ray_is_imported_only_by_the_ray_adapter():
    assert owners("ray") == ["studies/run/ray_adapter.py"]


def test_the_core_imports_no_platform_package():
    for top in ("ray", "optuna", "mlflow", "click", "studies", "cli"):
        assert not [o for o in owners(top) if o.startswith("textvae_core/")], top


def test_the_results_wing_does_not_import_the_driver_and_studies_never_import_the_cli():
    results = [p for p in SOURCES if "studies/results/" in str(p)]
    for path in results:
        bad = {n for n in imported(path) if n.startswith(("studies.run.runner", "studies.run.trial",
                                                           "studies.run.ray_adapter"))}
        assert not bad, (path, bad)
    assert not [o for o in owners("cli") if o.startswith("studies/")]


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_source_file_is_over_400_lines(path):
    assert len(path.read_text().splitlines()) <= MAX_LINES
