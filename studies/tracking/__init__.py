"""All MLflow I/O of a study (the only package that imports mlflow), done by one process:
the study driver.

Ray workers never talk to MLflow; the driver's Tune callback forwards their reports here.
Keeping every write in one process is what makes runs survive retries and resumes:

* one child run per trial *key* (a stable string), found again by the tag
  `vaestudy.trial_key` after a retry or a driver restart, so it is never duplicated;
* a resumed trial re-reporting steps it already logged is skipped, so histories stay clean;
* `finish_open_children` closes anything still RUNNING when a study ends.

Only `MlflowClient` with explicit run ids is used, never `mlflow.start_run`: the global
"active run" is per-process state that cannot follow many trials at once.

    tracker = StudyTracker(default_tracking_uri(study_dir), "alpha-sweep",
                           artifact_location=str(study_dir / "mlartifacts"))
    parent = tracker.start_parent(None, "alpha-sweep", {"preset": "smoke"}, {})
    child = tracker.child_run(parent, "a1b2c3d4", "alpha=0.2", {"alpha": 0.2}, {})
    tracker.log_metrics(child, 20, {"valid/total_bpc": 1.9})
    tracker.finish(child)
"""

from .reading import LoggedStudy, check_parent_run, log_report, read_study
from .uris import (
    CONFIG_ARTIFACT,
    GRID_POINT_PARAM,
    SWEPT_PARAM,
    trial_params,
    parent_params,
    MODEL_TRIAL_KEY,
    claim_tags,
    provenance_tags,
    PARENT_TAG,
    PRESET_TAG,
    STATUS_REASON_TAG,
    STATUS_TAG,
    STUDY_TAG,
    TRIAL_KEY_TAG,
    TrackingError,
    check_existing_store,
    check_tracking_uri,
    default_tracking_uri,
    quiet_stdout,
    without_secrets,
)
from .writer import StudyTracker

__all__ = [
    "LoggedStudy",
    "StudyTracker",
    "TrackingError",
    "check_existing_store",
    "check_parent_run",
    "check_tracking_uri",
    "default_tracking_uri",
    "log_report",
    "quiet_stdout",
    "read_study",
    "without_secrets",
    "PARENT_TAG",
    "PRESET_TAG",
    "STATUS_REASON_TAG",
    "STATUS_TAG",
    "STUDY_TAG",
    "TRIAL_KEY_TAG",
    "GRID_POINT_PARAM",
    "SWEPT_PARAM",
    "CONFIG_ARTIFACT",
    "trial_params",
    "parent_params",
    "MODEL_TRIAL_KEY",
    "claim_tags",
    "provenance_tags",
]
