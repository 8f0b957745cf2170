"""Checkpoint files: reading one, checking its format, and loading a model from it.

A checkpoint holds every piece of a Trainer's state (see `Trainer.state_dict`); a damaged
or foreign file is a CheckpointError in one line.
"""

from __future__ import annotations

import os

import torch

from .config import TrainConfig
from .vocab import Vocabulary, vocabulary_from_json
from .errors import CheckpointError
from .models import TextVAE, build_model

# 2: the hybrids' autoregressive head is one module, `head` (was `rnn` + `out`, or `bytenet`).
CHECKPOINT_FORMAT = 2


def read_checkpoint(path: str | os.PathLike, device: str = "cpu") -> dict:
    """A checkpoint's state; a truncated or corrupt file is a CheckpointError in one line."""
    try:
        return torch.load(path, map_location=device, weights_only=False)
    except FileNotFoundError:
        raise
    except Exception as exc:  # noqa: BLE001 - torch raises many kinds for a damaged file
        raise CheckpointError(
            f"checkpoint {path} is unreadable (truncated or corrupt): "
            f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        ) from None


def check_format(state: dict, path: str | os.PathLike | None = None) -> None:
    found = state.get("format") if isinstance(state, dict) else None
    if found != CHECKPOINT_FORMAT:
        where = f"{path} " if path is not None else ""
        raise CheckpointError(
            f"checkpoint {where}has format {found}; this vaestudy reads format {CHECKPOINT_FORMAT} "
            "only: retrain the model (or use the vaestudy version that wrote it)"
        )


def check_checkpoint(path: str | os.PathLike) -> None:
    """Raise CheckpointError unless `path` holds a checkpoint this version can load."""
    check_format(read_checkpoint(path), path)


def load_checkpoint(
    path: str | os.PathLike, device: str = "cpu"
) -> tuple[TextVAE, TrainConfig, Vocabulary]:
    """Model (in eval mode), config and vocabulary from a checkpoint file."""
    state = read_checkpoint(path, device)
    check_format(state, path)
    config = TrainConfig(**{**state["config"], "device": device})
    vocab = vocabulary_from_json(state["vocab"])
    model = build_model(config, vocab.size).to(device)
    model.load_state_dict(state["model"])
    return model.eval(), config, vocab


# What inference needs; the rest of a checkpoint (optimizer, sampler, history) resumes training.
INFERENCE_KEYS = ("format", "config", "vocab", "corpus_sha256", "step", "model")


def save_inference_checkpoint(src: str | os.PathLike, dest: str | os.PathLike) -> None:
    """`src`, a training checkpoint, less what only resuming needs: a file `load_checkpoint`
    reads as it reads `src`, about a third of its size (Adam keeps two moments per weight)."""
    state = read_checkpoint(src)
    check_format(state, src)
    torch.save({k: state[k] for k in INFERENCE_KEYS if k in state}, dest)
