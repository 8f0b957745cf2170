"""Record the metric histories that tests/test_same_numbers.py compares against.

CPU kernels differ between hosts in their last bits (AVX2 vs AVX-512 reductions), so the file
holds one recording per host kind; a run must equal one of them exactly. Run it only from a
commit whose numbers are the reference (before a refactor), or when a change is meant to
change the numbers (then replace every recording, and say so in the commit):
    python tests/golden/record.py "a description of this host"   # adds this host's recording
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


def recordings() -> list[dict]:
    return json.loads(GOLDEN.read_text())["recordings"]


if __name__ == "__main__":
    host = sys.argv[1] if len(sys.argv) > 1 else "unnamed host"
    kept = recordings() if GOLDEN.exists() else []
    GOLDEN.write_text(json.dumps({"recordings": [*kept, {"host": host, "histories": histories()}]}, indent=1) + "\n")
    print(f"added the recording of {host} to {GOLDEN}")
