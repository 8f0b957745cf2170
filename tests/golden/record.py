"""Record the metric histories that tests/test_same_numbers.py compares against.

Run only when a change is meant to change the numbers (and say so in the commit):
    python tests/golden/record.py
"""

import json
import math
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from textvae_core.config import MODELS, make_config  # noqa: E402
from textvae_core.train import fit  # noqa: E402

GOLDEN = Path(__file__).with_name("metric_histories.json")
TIMING = ("chars_per_s",)  # wall-clock measures differ run to run


def config(model: str):
    return make_config(model, "tiny", dict(corpus="synthetic", steps=40, eval_every=20, iw_samples=4, threads=1,
                                           seed=3, dropout=0.2 if model == "lstm" else 0.0))


def histories() -> dict:
    out = {}
    for model in MODELS:
        trainer = fit(config(model))
        out[model] = [{"step": r.step, **{k: (None if math.isnan(v) else v) for k, v in sorted(r.metrics.items())
                                          if k.split("/")[-1] not in TIMING}} for r in trainer.history]
    return out


if __name__ == "__main__":
    GOLDEN.write_text(json.dumps(histories(), indent=1) + "\n")
    print(f"wrote {GOLDEN}")
