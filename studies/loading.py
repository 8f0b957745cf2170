"""Finding and loading study files: the built-in studies by name, any study file by path,
and `validate_study`, which builds every trial config once so a bad study fails before a run.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from .errors import StudyError
from .spec import Study

DEFINITIONS = Path(__file__).parent / "definitions"


def builtin_studies() -> dict[str, Path]:
    return {
        p.stem.replace("_", "-"): p
        for p in sorted(DEFINITIONS.glob("*.py"))
        if not p.stem.startswith("_")
    }


def load_study(name_or_path: str) -> Study:
    """A built-in study by name (`alpha-sweep`) or a study file by path."""
    path = Path(name_or_path)
    if not (path.suffix == ".py" and path.exists()):
        known = builtin_studies()
        if name_or_path not in known:
            raise StudyError(
                f"unknown study {name_or_path!r}: expected one of {', '.join(known)} "
                "or a path to a study .py file"
            )
        path = known[name_or_path]
    spec = importlib.util.spec_from_file_location(f"vaestudy_study_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except StudyError:
        raise
    except Exception as exc:  # a user's study file with an error: say which file and what
        raise StudyError(f"could not load study file {path}: {type(exc).__name__}: {exc}") from None
    study = getattr(module, "STUDY", None)
    if not isinstance(study, Study):
        raise StudyError(f"study file {path} must define STUDY = Study(...)")
    return study


def validate_study(study: Study, but: str | None = None) -> None:
    """Build every trial config of every preset (but one: a run builds its own preset's), so
    a bad study fails before any run."""
    for preset in study.presets:
        if preset == but:
            continue
        if study.is_grid:
            for p in study.points(preset):
                study.trial_config(preset, p)
        else:
            study.trial_config(preset, {})
