"""vaestudy's platform: studies as data, run on Ray, searched with Optuna, tracked in MLflow."""

from pathlib import Path

# where study folders (and `vaestudy train` runs) go by default
DEFAULT_ROOT = Path("vaestudy-runs")
