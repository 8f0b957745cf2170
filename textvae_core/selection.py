"""Learning-rate schedules and model selection. `lr_at`: the paper's step decay. Decay on
plateau and model selection, as texar's word-level recipe trains: keep the model and optimiser
of the best valid bound so far; after `plateau` reports in a row without a better one, go back
to them and set the learning rate to `plateau_factor` times the best report's; stop at the
`plateau_decays`-th decay. With `select_best` the final report measures the best model.

The decayed rate is the best report's times the factor, not the current rate's, because texar
reloads the optimiser saved with the best model (its rate included) and then steps its
ExponentialLR once: a second plateau with no better report in between gives the same rate
again, and only a decay after a new best halves further."""

from __future__ import annotations

import copy
import math

import torch

from .config import TrainConfig


def lr_at(step: int, config: TrainConfig) -> float:
    """lr * decay ** (completed decay periods after `lr_decay_after`)."""
    periods = max(0, step - config.lr_decay_after) // config.lr_decay_every
    return config.lr * config.lr_decay**periods


class ModelSelection:
    def __init__(self, config: TrainConfig, model: torch.nn.Module, optimizer):
        self.config, self.model, self.optimizer = config, model, optimizer
        self.active = bool(config.select_best or config.plateau)
        self.value = math.inf  # the best valid bound so far
        self.step = -1  # its report's step
        self.waited = 0  # reports since it without a better bound
        self.decays = 0
        self.lr_scale = 1.0
        self.stopped = False  # the last decay ended training
        self.best: dict | None = None  # the model's and optimiser's state at the best report

    def observe(self, valid: dict[str, float], step: int) -> None:
        """A report's valid measures: keep the best bound's model (words: nll_nats, characters:
        total_bpc); on a plateau decay and go back to it."""
        cfg = self.config
        value = valid["nll_nats" if cfg.tokens == "word" else "total_bpc"]
        if value < self.value:
            self.value, self.step, self.waited = value, step, 0
            self.best = {
                "model": copy.deepcopy(self.model.state_dict()),
                "optimizer": copy.deepcopy(self.optimizer.state_dict()),
                "lr_scale": self.lr_scale,
            }
            return
        self.waited += 1
        if cfg.plateau and self.waited >= cfg.plateau:
            self.waited = 0
            self.decays += 1
            at_best = self.best["lr_scale"] if self.best is not None else self.lr_scale
            self.lr_scale = at_best * cfg.plateau_factor
            self.restore()
            self.stopped = self.decays >= cfg.plateau_decays

    def restore(self) -> None:
        """The model and optimiser back to the best report's (nothing before any report)."""
        if self.best is not None:
            self.model.load_state_dict(self.best["model"])
            self.optimizer.load_state_dict(self.best["optimizer"])

    def state_dict(self) -> dict:
        keys = ("value", "step", "waited", "decays", "lr_scale", "stopped", "best")
        return {k: getattr(self, k) for k in keys}

    def load_state_dict(self, state: dict) -> None:
        for k, v in state.items():
            setattr(self, k, v)
