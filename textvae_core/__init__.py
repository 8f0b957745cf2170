"""textvae_core: the text VAEs of Semeniuta et al. (EMNLP 2017) in plain PyTorch.

    from textvae_core import make_config, fit
    trainer = fit(make_config("hybrid-lstm", "tiny", {"corpus": "synthetic"}))
    print(trainer.history[-1].metrics["valid/kl_bpc"])

This package imports torch, numpy and pyarrow only: no Ray, Optuna, MLflow or click. Names
are loaded on first use (PEP 562), so `textvae_core.config` alone does not import torch:
the CLI's `--help` stays instant.
"""

import importlib

__version__ = "0.1.0"

_HOMES = {
    "config": (
        "MODELS",
        "PRESETS",
        "ConfigError",
        "TrainConfig",
        "make_config",
        "parse_assignments",
    ),
    "data": ("Corpus", "fetch_ptb", "load_corpus"),
    "vocab": ("Vocabulary",),
    "fragments": ("FragmentSampler",),
    "errors": ("CheckpointError", "DataError"),
    "losses": ("KLSchedule", "bits_per_char", "gaussian_kl", "sequence_nll", "vae_objective"),
    "models": ("VAEOutput", "build_model", "count_parameters"),
    "checkpoint": ("check_checkpoint", "load_checkpoint"),
    "train": ("DivergenceError", "Trainer", "fit"),
    "history": ("Report", "history_table", "write_history"),
}
_WHERE = {name: module for module, names in _HOMES.items() for name in names}

__all__ = sorted(_WHERE)


def __getattr__(name: str):
    if name not in _WHERE:
        raise AttributeError(f"module 'textvae_core' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_WHERE[name]}", __name__), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(__all__))
