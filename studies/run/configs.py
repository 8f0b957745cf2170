"""Each trial's `TrainConfig`, built once on the driver and read everywhere else.

The driver builds a trial's config from the study, the preset, the `--set` values and the
trial's point (`TrialConfigs.of`, kept by trial key), and writes it as JSON to the study
folder, `trials/<key>/config.json`, when the searcher hands the point out: before Ray creates
the trial. Every driver-side reader (the plan's checks, the trial record, MLflow, the progress
line) gets that same object; the worker reads the JSON (`read_trial_config`). A point whose
config cannot be built is recorded as its error, which the worker raises as the trial's
failure.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Mapping

from textvae_core import ConfigError, TrainConfig

from ..spec import trial_key
from ..store import StudyStore

if TYPE_CHECKING:
    from .trial import TrialContext


class TrialConfigs:
    """The driver's record of every trial's config, by trial key."""

    def __init__(self, ctx: "TrialContext", store: StudyStore):
        self.ctx, self.store = ctx, store  # the study folder (ctx.storage) the workers read
        self._built: dict[str, TrainConfig] = {}

    def of(self, params: Mapping[str, Any]) -> TrainConfig:
        """The trial's config, built the first time it is asked for (ConfigError if it
        cannot be)."""
        key = trial_key(params)
        if key not in self._built:
            self._built[key] = self.ctx.make_config(params)
        return self._built[key]

    def publish(self, params: Mapping[str, Any]) -> None:
        """Write the trial's config (or why there is none) where its worker reads it."""
        try:
            record: dict[str, Any] = {"config": self.of(params).to_dict()}
        except ConfigError as exc:
            record = {"error": str(exc)}
        self.store.write_json(config_path(trial_key(params)), record)


def config_path(key: str) -> str:
    return f"trials/{key}/config.json"


def read_trial_config(store: StudyStore, key: str) -> TrainConfig:
    """The worker's side: the config the driver wrote for this trial."""
    record = store.read_json(config_path(key))
    if record is None:
        raise ConfigError(f"trial {key}: no config record at {store.uri_of(config_path(key))}")
    if "error" in record:
        raise ConfigError(record["error"])
    return TrainConfig(**record["config"])
