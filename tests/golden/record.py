"""Record the metric histories that tests/test_same_numbers.py compares against.

The histories are computed in float64: float32 CPU kernels differ between host kinds
(AVX2 vs AVX-512 reductions) in their last bits, and 40 training steps amplify that to ~1%
in small metrics, so a float32 recording holds on one host kind only. In float64 the same
amplification stays under 1e-7 relative, so one recording serves every host, and a change
that keeps the model's arithmetic (a refactor, a gather in place of a one-hot product)
stays within the test's 1e-6. Run it only from a commit whose numbers are the reference,
or when a change is meant to change the numbers (say so in the commit):
    python tests/golden/record.py "the reference commit and why"
"""

import json
import math
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from textvae_core.config import MODELS, make_config  # noqa: E402

LSTM_MODELS = ("hybrid-lstm", "lstm")
from textvae_core.train import fit  # noqa: E402

GOLDEN = Path(__file__).with_name("metric_histories.json")
TIMING = ("chars_per_s",)  # wall-clock measures differ run to run


# The recorded runs: every model with the default cell (the paper's LayerNorm LSTM, recorded
# on its Python loop before the compiled cell existed; both paths must reproduce it), and the
# LSTM models with the fused stand-in as "<model>+fused".
RUNS = {
    **{m: {} for m in MODELS},
    **{f"{m}+fused": {"lstm_cell": "fused"} for m in LSTM_MODELS},
}


def config(run: str):
    model = run.split("+")[0]
    return make_config(
        model,
        "tiny",
        dict(
            corpus="synthetic",
            steps=40,
            eval_every=20,
            iw_samples=4,
            threads=1,
            seed=3,
            dropout=0.2 if model == "lstm" else 0.0,
            **RUNS[run],
        ),
    )


def histories(runs=tuple(RUNS)) -> dict:
    """Each run's metric history, trained in float64."""
    default = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        out = {}
        for model in runs:
            trainer = fit(config(model))
            out[model] = [
                {
                    "step": r.step,
                    **{
                        k: (None if math.isnan(v) else v)
                        for k, v in sorted(r.metrics.items())
                        if k.split("/")[-1] not in TIMING
                    },
                }
                for r in trainer.history
            ]
        return out
    finally:
        torch.set_default_dtype(default)


def recording() -> dict:
    return json.loads(GOLDEN.read_text())


if __name__ == "__main__":
    reference = sys.argv[1] if len(sys.argv) > 1 else "unnamed reference"
    GOLDEN.write_text(
        json.dumps({"reference": reference, "dtype": "float64", "histories": histories()}, indent=1)
        + "\n"
    )
    print(f"recorded {reference} in {GOLDEN}")
