"""textvae_core: the text VAEs of Semeniuta et al. (EMNLP 2017) in plain PyTorch.

    from textvae_core import make_config, fit
    trainer = fit(make_config("hybrid-lstm", "tiny", {"corpus": "synthetic"}))
    print(trainer.history[-1].metrics["valid/kl_bpc"])

This package imports torch, numpy and pyarrow only: no Ray, Optuna, MLflow or click.
"""

from .config import MODELS, PRESETS, ConfigError, TrainConfig, make_config, parse_assignments
from .data import Corpus, FragmentSampler, Vocabulary, fetch_ptb, load_corpus
from .errors import DataError
from .losses import KLSchedule, bits_per_char, gaussian_kl, sequence_nll, vae_objective
from .models import VAEOutput, build_model, count_parameters
from .train import DivergenceError, Report, Trainer, fit, history_table, load_checkpoint, write_history

__version__ = "0.1.0"

__all__ = [
    "MODELS", "PRESETS", "ConfigError", "TrainConfig", "make_config", "parse_assignments",
    "Corpus", "DataError", "FragmentSampler", "Vocabulary", "fetch_ptb", "load_corpus",
    "KLSchedule", "bits_per_char", "gaussian_kl", "sequence_nll", "vae_objective",
    "VAEOutput", "build_model", "count_parameters",
    "DivergenceError", "Report", "Trainer", "fit", "history_table", "load_checkpoint", "write_history",
]
