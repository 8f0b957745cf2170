"""A trained text VAE as an MLflow pyfunc model, in MLflow's "models from code" form.

This file is logged with every trial's model (`models.save_model`) and run again by
`mlflow.pyfunc.load_model`, which first puts the model's own copy of `textvae_core` on
sys.path: so it imports mlflow (and pandas, which mlflow needs) and textvae_core only, never
`studies` or `cli`.

    model = mlflow.pyfunc.load_model("runs:/<run id>/model")
    model.predict(pd.DataFrame({"text": ["the company said"]}))  # greedy reconstructions
    model.predict(["the company said", "it was"])  # the same, from a list of strings
    model.predict([""], params={"mode": "sample", "n": 4, "temperature": 1.0, "seed": 1})

Decoding is greedy (temperature 0) unless `temperature` says otherwise; a reconstruction
decodes each text's posterior mean, so greedy ones are deterministic.
"""

from __future__ import annotations

import mlflow
import pandas as pd
from mlflow.pyfunc import PythonModel

MODES = ("reconstruct", "sample")
DEFAULTS = {"mode": "reconstruct", "n": 5, "temperature": 0.0, "seed": 0}


def texts_of(model_input: pd.DataFrame) -> list[str]:
    """The texts of the input: its "text" column, else its only column (MLflow makes a
    DataFrame of a list of strings or of one string, with a column named 0)."""
    columns = list(model_input.columns)
    if "text" not in columns and len(columns) != 1:
        raise ValueError(f"expected a 'text' column (or a single column), got columns {columns}")
    return [str(t) for t in model_input["text" if "text" in columns else columns[0]]]


class TextVAEModel(PythonModel):
    """Reconstructions of texts (mode "reconstruct"), or `n` samples from the prior (mode
    "sample"), decoded by the functions `vaestudy sample` uses."""

    def load_context(self, context) -> None:
        from textvae_core.checkpoint import load_checkpoint

        self.model, self.config, self.vocab = load_checkpoint(context.artifacts["checkpoint"])

    def predict(self, context, model_input: pd.DataFrame, params=None) -> list[str]:
        from textvae_core.sampling import reconstruct, sample_prior

        p = {**DEFAULTS, **{k: v for k, v in (params or {}).items() if v is not None}}
        if p["mode"] not in MODES:
            raise ValueError(f"params mode={p['mode']!r}: expected one of {', '.join(MODES)}")
        temperature, seed = float(p["temperature"]), int(p["seed"])
        if p["mode"] == "sample":
            return sample_prior(self.model, self.vocab, int(p["n"]), temperature, seed)
        texts = texts_of(model_input)
        if not texts:
            return []
        return reconstruct(self.model, self.vocab, texts, temperature, seed)


mlflow.models.set_model(TextVAEModel())
