"""A TrialReport as the flat dict Ray Tune's `tune.report` takes, and back. Plain dicts: no
Ray import (`ray_adapter` hands them to Tune)."""

from __future__ import annotations

from ..store import Status
from .system import SYSTEM_PREFIX
from .trial import TrialReport, is_metric

# Tune wants a flat result dict: a TrialReport's metrics go in as they are (ASHA and the
# progress line read the metric by name), the rest under these.
STEP = "step"
_FIELDS = {
    "final": "vaestudy/final",
    "failure": "vaestudy/failure",
    "replayed": "vaestudy/replayed",
    "collapsed": "vaestudy/collapsed",
    "samples": "vaestudy/samples",
    "wall_s": "overhead/trial_wall_s",
}
SECONDS = "seconds/"  # TrialReport.seconds, one key each: "seconds/train", "seconds/eval", ...


def to_result(report: TrialReport) -> dict:
    """A TrialReport as the flat dict `tune.report` takes."""
    extra = {
        flat: getattr(report, name)
        for name, flat in _FIELDS.items()
        if getattr(report, name) is not None
    }
    if report.replayed is not None:
        extra[_FIELDS["replayed"]] = report.replayed.value
    extra.update({SECONDS + k: v for k, v in (report.seconds or {}).items()})
    extra.update(report.system or {})  # already "system/..." keys
    return {**report.metrics, STEP: report.step, **extra}


def from_result(result: dict) -> TrialReport:
    """The TrialReport that `to_result` flattened (Tune's own keys dropped)."""
    metrics = {k: v for k, v in result.items() if is_metric(k)}
    values = {name: result[flat] for name, flat in _FIELDS.items() if flat in result}
    if "replayed" in values:
        values["replayed"] = Status(values["replayed"])
    seconds = {k[len(SECONDS) :]: v for k, v in result.items() if k.startswith(SECONDS)}
    system = {k: v for k, v in result.items() if k.startswith(SYSTEM_PREFIX)}
    return TrialReport(
        int(result.get(STEP, -1)),
        metrics,
        **values,
        seconds=seconds or None,
        system=system or None,
    )
